"""One training worker seen from the GUI: launch it, follow its events and log, stop it.

The worker's stdout (JSON-line events) and stderr go to files in `runs/<id>/logs/`, not to pipes, so a run
can keep training after the app quits (a worker writing to a closed pipe would die) and a restarted app can
follow the same files. The GUI tails them on a timer.

Stop ladder: the engine's one `StopLadder` (ul_engine.core.supervisor), climbed from Qt timers: a cooperative
`stop` request on the run row and the status "stopping" at once → `terminate()` (SIGTERM: the worker finishes
its step and checkpoints) after the grace period → `kill()`.
"""

from __future__ import annotations

import contextlib
import time
from collections import deque
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QProcess, QTimer, Signal

from app.workers import procs
from ul_engine.core import protocol
from ul_engine.core.supervisor import STDERR_TAIL_LINES, StopLadder, StopRung, request_stop
from ul_engine.store import ACTIVE_RUN_STATUSES, Store

_DETACHED: list[Any] = []
"""Processes left running when the app quits ("keep training in the background")."""


def detached_processes() -> list[Any]:
    return list(_DETACHED)


def describe_event(ev: dict[str, Any]) -> str | None:
    """One log line for a worker event (None for progress events, which the progress bar shows)."""
    kind = ev.get("event")
    if kind == "progress":
        return None
    if kind == "metrics":
        values = ev.get("values") or {}
        parts = [f"step {ev.get('step')}"]
        for key, label in (("loss/total", "loss"), ("rate/bits_per_pixel", "bits/px"), ("loss/base_elbo", "base")):
            if key in values:
                parts.append(f"{label} {values[key]:.4g}")
        return "  ".join(parts)
    if kind == "status":
        extra = ", ".join(f"{k}={v}" for k, v in ev.items() if k not in ("event", "run", "status"))
        return f"status: {ev.get('status')}" + (f" ({extra})" if extra else "")
    if kind == "checkpoint":
        return f"checkpoint at step {ev.get('step')}: {Path(str(ev.get('path', ''))).name}"
    if kind == "preview":
        return f"preview at step {ev.get('step')}"
    if kind == "error":
        return f"error: {ev.get('message', '')}"
    if kind == "done":
        return f"done: {ev.get('status')} at step {ev.get('step')}"
    return protocol.encode(ev)


class _Tail:
    """Reads the lines appended to a file since the last call."""

    def __init__(self, path: Path, from_end: bool = False) -> None:
        self.path = path
        self._pos = path.stat().st_size if (from_end and path.exists()) else 0
        self._partial = b""

    def read(self) -> list[str]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._pos)
                data = f.read()
        except OSError:
            return []
        if not data:
            return []
        self._pos += len(data)
        data = self._partial + data
        *lines, self._partial = data.split(b"\n")
        return [line.decode("utf-8", errors="replace").rstrip("\r") for line in lines]


class RunProcess(QObject):
    """Common part of a training worker we launched and one we re-attached to."""

    event = Signal(dict)  # type: ignore[assignment]  # a worker event (shadows QObject.event, as Qt allows)
    log_line = Signal(str)
    finished = Signal(int, bool)  # exit code (-1: unknown), crashed
    stop_phase = Signal(str)  # requested | terminate | kill

    def __init__(self, store: Store, run_id: int, job_id: int | None = None, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.store = store
        self.run_id = int(run_id)
        self.job_id = job_id
        self.device = "cpu"
        self.stop_requested = False
        self.session: int | None = None
        """The worker session this process runs (announced by the worker when it claims the run)."""
        self.stop_phase_now: str | None = None
        self.last_progress: dict[str, Any] | None = None
        self.done = False
        self._stderr: deque[str] = deque(maxlen=STDERR_TAIL_LINES)
        self._out: _Tail | None = None
        self._err: _Tail | None = None
        self._tail_timer = QTimer(self)
        self._tail_timer.setInterval(200)
        self._tail_timer.timeout.connect(self.poll_output)

    # ---- output --------------------------------------------------------------------------------------

    def poll_output(self) -> None:
        if self._out is not None:
            for line in self._out.read():
                ev = protocol.decode(line)
                if ev is None:
                    if line.strip():
                        self.log_line.emit(line)
                    continue
                if ev.get("event") == "progress":
                    self.last_progress = {**ev, "received_at": time.time()}
                if ev.get("event") == "status" and isinstance(ev.get("session"), int):
                    self.session = ev["session"]
                self.event.emit(ev)
                text = describe_event(ev)
                if text:
                    self.log_line.emit(text)
        if self._err is not None:
            for line in self._err.read():
                self._stderr.append(line)
                if line.strip():
                    self.log_line.emit(line)

    def stderr_tail(self, lines: int = STDERR_TAIL_LINES) -> str:
        return "\n".join(list(self._stderr)[-lines:])

    # ---- stop ladder ---------------------------------------------------------------------------------

    def stop(self, ladder: StopLadder | None = None) -> None:
        """Ask the worker to stop now, then climb the ladder (SIGTERM after its grace, kill after that).

        The request names the worker's session, so it can never stop a later one. A worker that has not
        claimed its run yet has nothing to save: it is terminated at once."""
        if self.done:
            return
        ladder = ladder or StopLadder()
        first = not self.stop_requested
        self.stop_requested = True
        self._learn_session()
        if self.session is None:
            if first:
                self._set_phase("requested")
                self._terminate()
                self._schedule(ladder, "terminate")
            return
        try:
            request_stop(self.store, self.run_id, self.session)
        except Exception as exc:  # the database is busy or gone: the signals below still stop it
            self.log_line.emit(f"could not record the stop request: {exc}")
        if first:
            self._set_phase("requested")
            self._schedule(ladder, "requested")

    def _learn_session(self) -> None:
        """The session of our worker: announced in its events, or on the run row under our worker's pid."""
        self.poll_output()
        if self.session is not None:
            return
        with contextlib.suppress(Exception):  # the database is busy: treated as not claimed yet
            run = self.store.get_run(self.run_id)
            if run.status in ACTIVE_RUN_STATUSES and run.pid is not None and run.pid == self.pid():
                self.session = run.session

    def _schedule(self, ladder: StopLadder, rung: StopRung) -> None:
        """Climb to the rung after `rung` once the ladder's wait for it has passed."""
        following = ladder.next_rung(rung)
        if following is not None:
            QTimer.singleShot(int(ladder.wait_after(rung) * 1000), lambda: self._climb(ladder, following))

    def _climb(self, ladder: StopLadder, rung: StopRung) -> None:
        if self.done or not self.is_running():
            return
        self._set_phase(rung)
        if rung == "kill":
            self._kill()
            return
        self._terminate()
        self._schedule(ladder, rung)

    def _set_phase(self, phase: str) -> None:
        self.stop_phase_now = phase
        self.stop_phase.emit(phase)
        if phase != "requested":
            self.log_line.emit(f"stop: the worker did not stop in time; sending {phase}")

    def _finish(self, code: int, crashed: bool) -> None:
        if self.done:
            return
        self.poll_output()
        self.done = True
        self._tail_timer.stop()
        self.finished.emit(int(code), bool(crashed))

    # ---- subclass API --------------------------------------------------------------------------------

    # Each launcher (QProcess child, re-attached pid) says how to check, signal and end its process.

    def is_running(self) -> bool:
        raise TypeError(f"{type(self).__name__} must say whether its process runs (is_running)")

    def pid(self) -> int | None:
        raise TypeError(f"{type(self).__name__} must report its process id (pid)")

    def _terminate(self) -> None:
        raise TypeError(f"{type(self).__name__} must define how to terminate its process")

    def _kill(self) -> None:
        raise TypeError(f"{type(self).__name__} must define how to kill its process")

    def detach(self) -> None:
        """Leave the worker running after the app quits."""


class TrainingProcess(RunProcess):
    """A training worker launched by this app (QProcess)."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        job_id: int | None = None,
        *,
        command: tuple[str, list[str]] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(store, run_id, job_id, parent)
        self.command = command
        self.proc = QProcess(self)
        self.proc.finished.connect(self._on_finished)
        self.proc.errorOccurred.connect(self._on_error)
        self.events_path: Path | None = None
        self.stderr_path: Path | None = None

    def start(
        self,
        *,
        steps: int | None = None,
        minutes: float | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        home = Path(self.store.home)
        folder = procs.log_dir(home, self.run_id)
        stamp = time.strftime("%Y%m%d-%H%M%S") + (f"-job{self.job_id}" if self.job_id is not None else "")
        self.events_path = folder / f"worker-{stamp}.events.jsonl"
        self.stderr_path = folder / f"worker-{stamp}.stderr.log"
        self.events_path.touch()
        self.stderr_path.touch()
        program, args = self.command or procs.train_command(home, self.run_id, steps=steps, minutes=minutes)
        self.proc.setProcessEnvironment(procs.worker_environment({"UL_HOME": str(home), **(env or {})}))
        self.proc.setWorkingDirectory(str(home))
        self.proc.setStandardOutputFile(str(self.events_path))
        self.proc.setStandardErrorFile(str(self.stderr_path))
        self.proc.setProgram(program)
        self.proc.setArguments(args)
        self._out = _Tail(self.events_path)
        self._err = _Tail(self.stderr_path)
        self.log_line.emit(f"starting worker: {' '.join([Path(program).name, *args])}")
        self.proc.start()
        self._tail_timer.start()

    def is_running(self) -> bool:
        return self.proc.state() != QProcess.ProcessState.NotRunning

    def pid(self) -> int | None:
        pid = int(self.proc.processId())
        return pid or None

    def _terminate(self) -> None:
        self.proc.terminate()

    def _kill(self) -> None:
        pid = self.pid()
        if pid:
            procs.signal_pid(pid, kill=True)
        self.proc.kill()

    def _on_finished(self, code: int, status: QProcess.ExitStatus) -> None:
        crashed = status == QProcess.ExitStatus.CrashExit
        if crashed and code == 0:
            code = -9 if self.stop_phase_now == "kill" else -15 if self.stop_phase_now == "terminate" else 1
        self._finish(code, crashed)

    def _on_error(self, error: QProcess.ProcessError) -> None:
        if error == QProcess.ProcessError.FailedToStart:
            self._stderr.append(f"the worker could not be started: {self.proc.errorString()}")
            self.log_line.emit(self._stderr[-1])
            self._finish(-2, True)

    def detach(self) -> None:
        if self.is_running():
            self._tail_timer.stop()
            # keep the QProcess alive and out of the object tree: its destructor would kill the worker
            self.proc.setParent(None)
            _DETACHED.append(self.proc)


class AttachedProcess(RunProcess):
    """A worker that outlived an earlier session of the app, followed through its pid and log files."""

    def __init__(
        self,
        store: Store,
        run_id: int,
        pid: int,
        job_id: int | None = None,
        parent: QObject | None = None,
        *,
        session: int | None = None,
        pid_started_at: float | None = None,
    ):
        super().__init__(store, run_id, job_id, parent)
        self._pid = int(pid)
        self._pid_started_at = pid_started_at
        self.session = session
        events, stderr = procs.newest_logs(Path(store.home), self.run_id)
        if events is not None:
            self._out = _Tail(events, from_end=True)
        if stderr is not None:
            self._stderr.extend(procs.tail_lines(stderr, STDERR_TAIL_LINES))
            self._err = _Tail(stderr, from_end=True)
        self._alive_timer = QTimer(self)
        self._alive_timer.setInterval(1000)
        self._alive_timer.timeout.connect(self._check_alive)

    def start(self) -> None:
        self._tail_timer.start()
        self._alive_timer.start()

    def is_running(self) -> bool:
        return procs.pid_alive(self._pid, self._pid_started_at)

    def pid(self) -> int | None:
        return self._pid

    def _check_alive(self) -> None:
        if not self.is_running():
            self._alive_timer.stop()
            self._finish(-1, False)

    def _terminate(self) -> None:
        procs.signal_pid(self._pid)

    def _kill(self) -> None:
        procs.signal_pid(self._pid, kill=True)

    def detach(self) -> None:
        self._tail_timer.stop()
        self._alive_timer.stop()
