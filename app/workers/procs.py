"""Small process helpers shared by the worker launchers: commands, liveness, signals, log files."""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from collections import deque
from pathlib import Path

from ul_engine.core.supervisor import pid_alive as pid_alive  # one liveness check for the GUI and the CLI
from ul_engine.core.supervisor import worker_argv, worker_command


def python_command(*args: str) -> tuple[str, list[str]]:
    """(program, arguments) that run this interpreter: `sys.executable` also works inside a frozen app."""
    return sys.executable, list(args)


def train_command(
    home: Path, run_id: int, *, steps: int | None = None, minutes: float | None = None
) -> tuple[str, list[str]]:
    """The training worker's command line: the engine's own (`ul_engine.core.supervisor.worker_command`)."""
    argv = worker_command(home, int(run_id), steps=steps, minutes=minutes)
    return argv[0], argv[1:]


def session_command(home: Path) -> tuple[str, list[str]]:
    argv = worker_argv("--home", str(home), "session")  # frozen-aware, like the training worker's
    return argv[0], argv[1:]


WORKER_ENV_DEFAULTS = {
    "PYTHONUNBUFFERED": "1",
    # OpenMP threads that spin while waiting make training crawl when the CPU is shared (the GUI, other
    # work): the smoke preset measured 116 s instead of 8 s on 2 busy cores. Passive waiting costs ~nothing.
    "OMP_WAIT_POLICY": "PASSIVE",
}


def worker_environment(extra: dict[str, str] | None = None):  # -> QProcessEnvironment
    """The system environment plus the worker defaults (a value the user set wins) and `extra`."""
    from PySide6.QtCore import QProcessEnvironment

    env = QProcessEnvironment.systemEnvironment()
    for key, value in WORKER_ENV_DEFAULTS.items():
        if not env.contains(key):
            env.insert(key, value)
    for key, value in (extra or {}).items():
        env.insert(key, value)
    return env


def signal_pid(pid: int, *, kill: bool = False) -> None:
    """Ask a process to end (SIGTERM; the worker then finishes its step and checkpoints) or kill it,
    children included when psutil is there (accelerate launches one process per GPU)."""
    try:
        import psutil

        proc = psutil.Process(pid)
        targets = [*proc.children(recursive=True), proc] if kill else [proc]
        for p in targets:
            with contextlib.suppress(psutil.NoSuchProcess):
                p.kill() if kill else p.terminate()
        return
    except ImportError:  # pragma: no cover
        pass
    except Exception:
        return
    with contextlib.suppress(OSError):  # pragma: no cover - fallback without psutil
        os.kill(pid, signal.SIGKILL if kill and hasattr(signal, "SIGKILL") else signal.SIGTERM)


def tail_lines(path: Path, n: int = 200, max_bytes: int = 256 * 1024) -> list[str]:
    """The last `n` lines of a text file (reading at most its last `max_bytes`)."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - max_bytes))
            data = f.read()
    except OSError:
        return []
    lines = data.decode("utf-8", errors="replace").splitlines()
    if size > max_bytes and lines:
        lines = lines[1:]  # the first one is probably cut
    return list(deque(lines, maxlen=n))


def log_dir(home: Path, run_id: int) -> Path:
    """home/runs/<id>/logs/: the worker's stdout (JSON-line events) and stderr, one pair per launch."""
    path = Path(home) / "runs" / str(int(run_id)) / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def newest_logs(home: Path, run_id: int) -> tuple[Path | None, Path | None]:
    """(events file, stderr file) of the run's most recent launch, if any."""
    folder = Path(home) / "runs" / str(int(run_id)) / "logs"
    outs = sorted(folder.glob("worker-*.events.jsonl"), key=lambda p: p.stat().st_mtime) if folder.is_dir() else []
    if not outs:
        return None, None
    out = outs[-1]
    err = out.with_name(out.name.replace(".events.jsonl", ".stderr.log"))
    return out, (err if err.exists() else None)
