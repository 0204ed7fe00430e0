"""Starting, stopping and queueing training workers. Torch-free: the CLI and the GUI both use it.

Stop ladder: a cooperative stop request on the run row (the worker checkpoints and exits at the next
step) → SIGTERM to the process group after a grace period (the worker still checkpoints) → SIGKILL.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

STDERR_TAIL_LINES = 200


@dataclass
class LaunchOptions:
    """How many processes, and accelerate's multi-machine flags (passed through unchanged)."""

    num_processes: int = 1
    num_machines: int = 1
    machine_rank: int = 0
    main_process_ip: str | None = None
    main_process_port: int | None = None
    mixed_precision: str = "no"

    @property
    def distributed(self) -> bool:
        return self.num_processes > 1 or self.num_machines > 1


def is_frozen() -> bool:
    """Whether this process is the frozen (PyInstaller) bundle, whose executable is the app, not Python."""
    return bool(getattr(sys, "frozen", False))


def worker_argv(*args: str) -> list[str]:
    """A worker process's argv: `python -m ul_engine.worker ARGS`, or in the frozen bundle its own
    executable with the worker flag (`ul-studio --worker ARGS`, see app/launcher.py)."""
    if is_frozen():
        return [sys.executable, "--worker", *args]
    return [sys.executable, "-m", "ul_engine.worker", *args]


def cli_argv(*args: str) -> list[str]:
    """The `ul` command line in a child process: `python -m ul_engine.cli`, or `ul-studio --cli` when frozen."""
    if is_frozen():
        return [sys.executable, "--cli", *args]
    return [sys.executable, "-m", "ul_engine.cli", *args]


def worker_command(
    home: Path,
    run_id: int,
    *,
    steps: int | None = None,
    minutes: float | None = None,
    launch: LaunchOptions | None = None,
) -> list[str]:
    """The argv of a training worker: plain Python, or `accelerate launch` for several processes."""
    tail = ["-m", "ul_engine.worker", "--home", str(home), "train", "--run", str(run_id)]
    if steps is not None:
        tail += ["--steps", str(steps)]
    if minutes is not None:
        tail += ["--minutes", str(minutes)]
    launch = launch or LaunchOptions()
    if not launch.distributed:
        return worker_argv(*tail[2:])
    cmd = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu",
        "--num_processes", str(launch.num_processes * launch.num_machines),
        "--num_machines", str(launch.num_machines), "--machine_rank", str(launch.machine_rank),
        "--mixed_precision", launch.mixed_precision, "--dynamo_backend", "no",
    ]  # fmt: skip
    if launch.main_process_ip:
        cmd += ["--main_process_ip", launch.main_process_ip]
    if launch.main_process_port:
        cmd += ["--main_process_port", str(launch.main_process_port)]
    return [*cmd, *tail]


def gpu_count_hint() -> int:
    """GPUs visible to a worker, without importing torch (nvidia-smi when present)."""
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return 0
    return sum(1 for line in out.stdout.splitlines() if line.startswith("GPU "))


@dataclass
class WorkerProcess:
    """A running worker: its process, the last stderr lines, and the JSON events it printed."""

    run_id: int
    popen: subprocess.Popen[str]
    stderr_tail: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=STDERR_TAIL_LINES))
    events: list[dict[str, Any]] = field(default_factory=list)
    _threads: list[threading.Thread] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.popen.pid

    def poll(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float | None = None) -> int:
        code = self.popen.wait(timeout)
        for t in self._threads:
            t.join(timeout=2)
        return code


def start_worker(command: list[str], run_id: int, *, env: dict[str, str] | None = None) -> WorkerProcess:
    """Start a worker in its own process group (so the whole tree can be signalled) and drain its pipes."""
    from ul_engine.core import protocol

    popen = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        bufsize=1,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    worker = WorkerProcess(run_id, popen)

    def drain_out() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            message = protocol.decode(line)
            if message is not None:
                worker.events.append(message)

    def drain_err() -> None:
        assert popen.stderr is not None
        for line in popen.stderr:
            worker.stderr_tail.append(line.rstrip("\n"))

    for target in (drain_out, drain_err):
        t = threading.Thread(target=target, daemon=True)
        t.start()
        worker._threads.append(t)
    return worker


def signal_tree(pid: int, sig: int) -> bool:
    """Signal a worker's whole process group (accelerate's children included)."""
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def pid_alive(pid: int | None, started_at: float | None = None) -> bool:
    """Whether process `pid` on this machine exists, is not a zombie and (given `started_at`) is the same process."""
    from ul_engine.store.liveness import process_alive

    return process_alive(pid, started_at)


def stop_run(
    store: Any, run_id: int, *, worker: WorkerProcess | None = None, grace_s: float = 10.0, term_s: float = 5.0
) -> str:
    """Walk the stop ladder for the run's current worker session; returns how it ended: 'cooperative',
    'terminated', 'killed', 'requested' (the worker runs on another machine: it stops at its next step) or
    'not running' (no worker: a dead one leaves the run interrupted, resumable at once)."""
    from ul_engine.core.errors import RunStateError
    from ul_engine.store import ACTIVE_RUN_STATUSES
    from ul_engine.store.liveness import worker_alive

    store.mark_stale_runs()
    run = store.get_run(run_id)
    if run.status not in ACTIVE_RUN_STATUSES:
        return "not running"
    store.request(run_id, "stop", session=run.session)
    with contextlib.suppress(RunStateError):
        store.transition(run_id, "stopping", expect=("running", "paused"), session=run.session)
    if worker is None and worker_alive(run.pid, run.pid_started_at, run.host) is None:
        return "requested"
    pid = worker.pid if worker is not None else run.pid
    assert pid is not None

    def exited(deadline: float) -> bool:
        while time.monotonic() < deadline:
            if worker is not None:
                if worker.poll() is not None:
                    return True
            elif not pid_alive(pid, run.pid_started_at):
                return True
            time.sleep(0.05)
        return False

    if exited(time.monotonic() + grace_s):
        return "cooperative"
    signal_tree(pid, signal.SIGTERM)
    if exited(time.monotonic() + term_s):
        return "terminated"
    signal_tree(pid, signal.SIGKILL)
    exited(time.monotonic() + 5)
    with contextlib.suppress(RunStateError):
        store.transition(
            run_id, "stopped", expect=ACTIVE_RUN_STATUSES, session=run.session, pid=None,
            error="killed after it did not stop in time",
        )  # fmt: skip
    return "killed"


def run_job(store: Any, job: Any, *, launch: LaunchOptions | None = None, env: dict[str, str] | None = None) -> int:
    """Run one queued training job to its end and record the outcome on the job row."""
    from datetime import UTC, datetime

    command = worker_command(store.home, job.run_id, launch=launch)
    store.update_job(job.id, status="running", started_at=datetime.now(UTC))
    worker = start_worker(command, job.run_id, env=env)  # the worker itself moves the run to "running"
    code = worker.wait()
    tail = "\n".join(worker.stderr_tail)
    session = worker_session(worker.events)
    run = store.get_run(job.run_id)
    failed = code != 0 or run.status == "failed"
    error, ended = None, False
    if failed:
        error = run.error or next(
            (e.get("message") for e in reversed(worker.events) if e.get("event") == "error"), None
        )
        last_line = tail.strip().splitlines()[-1] if tail.strip() else f"worker exited with code {code}"
        error = error or last_line
        ended = end_session(store, job.run_id, session, "failed", error=error)
    store.update_job(
        job.id,
        status="failed" if failed else "done",
        exit_code=code,
        stderr_tail=tail,
        error=error,
        finished_at=datetime.now(UTC),
    )
    if session is not None or ended:  # a worker refused because another process trains the run leaves it alone
        store.update_run(job.run_id, exit_code=code, stderr_tail=tail)
    return code


def worker_session(events: list[dict[str, Any]]) -> int | None:
    """The session a worker announced when it claimed its run (None: it never did)."""
    return next((e["session"] for e in events if e.get("event") == "status" and "session" in e), None)


def end_session(store: Any, run_id: int, session: int | None, to: str, **fields: Any) -> bool:
    """After a worker exited: move its run to `to` if that worker's session still owns it (session known), or
    if the run is still "queued" (the worker never claimed it). Another process's session is left alone."""
    from ul_engine.core.errors import RunStateError
    from ul_engine.store import ACTIVE_RUN_STATUSES

    expect = ACTIVE_RUN_STATUSES if session is not None else ("queued",)
    try:
        store.transition(run_id, to, expect=expect, session=session, **fields)
    except RunStateError:
        return False
    return True


def run_queue(store: Any, device: str = "cpu", *, launch: LaunchOptions | None = None, once: bool = False) -> list[int]:
    """Process queued jobs for `device` one at a time; a failed job does not stop the queue."""
    done: list[int] = []
    while True:
        job = store.next_job(device)
        if job is None:
            return done
        run_job(store, job, launch=launch)
        done.append(job.id)
        if once:
            return done
