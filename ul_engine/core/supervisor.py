"""Starting, stopping and queueing training workers. Torch-free: the CLI and the GUI both use it.

Stop ladder (`StopLadder`): a cooperative stop request on the run row (the worker checkpoints and exits at
the next step) → SIGTERM to the process group after a grace period (the worker still checkpoints) → SIGKILL.
`ul stop` walks it blocking (`stop_run`); the app climbs the same rungs from Qt timers.

Queue policy: `claim_jobs` picks the next job of every free device and `record_exit` writes a finished
worker's outcome on its run and job; `run_queue` (the CLI) and the app's queue runner both go through them.
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
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ul_engine.core import protocol
from ul_engine.core.errors import RunStateError, ULError

if TYPE_CHECKING:  # the store imports core: only the type checker follows this edge
    from ul_engine.store import JobInfo, Store  # why: the store imports core

STDERR_TAIL_LINES = 200
STOP_GRACE_S = 10.0
"""Seconds a worker gets to obey a stop request before it is sent SIGTERM."""
STOP_TERM_S = 5.0
"""Seconds after SIGTERM before the process (tree) is killed."""

StopRung = Literal["requested", "terminate", "kill"]


@dataclass(frozen=True)
class StopLadder:
    """The one stop ladder's timing: callers ask it which rung comes next and how long to wait before it."""

    grace_s: float = STOP_GRACE_S
    term_s: float = STOP_TERM_S

    def next_rung(self, rung: StopRung) -> StopRung | None:
        return {"requested": "terminate", "terminate": "kill"}.get(rung)  # type: ignore[return-value]

    def wait_after(self, rung: StopRung) -> float:
        """Seconds to give the worker on `rung` before climbing to the next one."""
        return self.grace_s if rung == "requested" else self.term_s if rung == "terminate" else 5.0

    @property
    def total_s(self) -> float:
        """The longest a stop can take, from request to kill."""
        return self.grace_s + self.term_s


def request_stop(store: Store, run_id: int, session: int | None) -> None:
    """The ladder's first rung: a stop request on the run row for `session` only (it never stops a later
    session of the run), and "stopping" shown at once."""
    store.request(run_id, "stop", session=session)
    with contextlib.suppress(RunStateError):  # already stopping, or the session ended by itself
        store.transition(run_id, "stopping", expect=("running", "paused"), session=session)


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
    """Signal a worker's whole process group (accelerate's children included) when the worker leads its own
    group, as `start_worker` makes it; a `ul train` started from a shell or a script shares its parent's group,
    so only that process is signalled (signalling the group would stop the shell or script that started it)."""
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        return False
    return True


def pid_alive(pid: int | None, started_at: float | None = None) -> bool:
    """Whether process `pid` on this machine exists, is not a zombie and (given `started_at`) is the same process."""
    from ul_engine.store.liveness import process_alive  # why: the store imports core

    return process_alive(pid, started_at)


def stop_run(
    store: Store, run_id: int, *, worker: WorkerProcess | None = None, ladder: StopLadder | None = None
) -> str:
    """Walk the stop ladder for the run's current worker session; returns how it ended: 'cooperative',
    'terminated', 'killed', 'requested' (the worker runs on another machine: it stops at its next step) or
    'not running' (no worker: a dead one leaves the run interrupted, resumable at once)."""
    from ul_engine.store import ACTIVE_RUN_STATUSES  # why: the store imports core
    from ul_engine.store.liveness import worker_alive  # why: the store imports core

    ladder = ladder or StopLadder()
    store.mark_stale_runs()
    run = store.get_run(run_id)
    if run.status not in ACTIVE_RUN_STATUSES:
        return "not running"
    request_stop(store, run_id, run.session)
    if worker is None and worker_alive(run.pid, run.pid_started_at, run.host) is None:
        return "requested"
    pid = worker.pid if worker is not None else run.pid
    assert pid is not None

    def exited(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if worker is not None:
                if worker.poll() is not None:
                    return True
            elif not pid_alive(pid, run.pid_started_at):
                return True
            time.sleep(0.05)
        return False

    outcome = {"requested": "cooperative", "terminate": "terminated", "kill": "killed"}
    rung: StopRung | None = "requested"
    while rung is not None:
        if exited(ladder.wait_after(rung)) or rung == "kill":
            break
        rung = ladder.next_rung(rung)
        if rung is not None:
            signal_tree(pid, signal.SIGTERM if rung == "terminate" else signal.SIGKILL)
    assert rung is not None
    if rung == "kill":
        with contextlib.suppress(RunStateError):
            store.transition(
                run_id, "stopped", expect=ACTIVE_RUN_STATUSES, session=run.session, pid=None,
                error="killed after it did not stop in time",
            )  # fmt: skip
    return outcome[rung]


@dataclass
class WorkerExit:
    """What a finished training worker left behind, for `record_exit`."""

    run_id: int
    job_id: int | None
    session: int | None  # the session the worker announced (None: it never claimed its run)
    code: int  # -1: unknown (a re-attached worker's exit is not ours to see)
    crashed: bool = False
    stop_requested: bool = False
    stderr_tail: str = ""
    error_event: str | None = None  # the message of the worker's last "error" event


def last_line(text: str | None) -> str | None:
    for line in reversed((text or "").splitlines()):
        if line.strip():
            return line.strip()[:500]
    return None


def record_exit(store: Store, done: WorkerExit) -> bool:
    """Write a finished worker's outcome on its run (through `Store.transition`, only if that worker's
    session still owns the run) and on its job; returns whether it succeeded."""
    from ul_engine.store import ACTIVE_RUN_STATUSES  # why: the store imports core (a cycle at module level)

    now = datetime.now(UTC)
    try:
        run = store.get_run(done.run_id)
    except ULError:  # deleted meanwhile
        run = None
    ok = done.code == 0 and not done.crashed and (run is None or run.status != "failed")
    if done.code == -1 and run is not None:  # re-attached: the exit code is unknown, the status tells
        ok = run.status in ("completed", "stopped")
    fallback = f"the worker exited with code {done.code}" if done.code != -1 else "the worker ended silently"
    error = None if ok else (done.error_event or last_line(done.stderr_tail) or fallback)
    if run is not None:
        error = None if ok else (run.error or error)
        fields: dict[str, Any] = {}
        if done.code != -1:
            fields["exit_code"] = done.code
        if not ok:
            fields["stderr_tail"] = done.stderr_tail or None
        ours = done.session is not None and run.session == done.session
        if ours or (done.session is None and run.status == "queued"):
            if run.status in (*ACTIVE_RUN_STATUSES, "queued"):
                ending: dict[str, Any] = {"finished_at": now, "pid": None}
                if not done.stop_requested and not run.error:
                    ending["error"] = error or fallback
                # a re-attached worker (exit unknown) that left its run active died: resumable, not failed
                to = "stopped" if done.stop_requested else "interrupted" if done.code == -1 else "failed"
                end_session(store, done.run_id, done.session, to, **ending)
            if fields:
                store.update_run(done.run_id, **fields)
    if done.job_id is not None:
        with contextlib.suppress(ULError):
            store.update_job(
                done.job_id, status="done" if ok else "failed", finished_at=now,
                exit_code=None if done.code == -1 else done.code, stderr_tail=None if ok else done.stderr_tail,
                error=error,
            )  # fmt: skip
    return ok


def claim_jobs(store: Store, devices: list[str], busy: set[str]) -> list[JobInfo]:
    """The next queued job of every free device, claimed ("running"); a job of an unknown kind fails at once
    and the device's next job is taken instead."""
    claimed: list[JobInfo] = []
    for device in devices:
        if device in busy:
            continue
        while (job := store.next_job(device)) is not None:
            if job.kind == "train":
                claimed.append(job)
                break
            store.update_job(job.id, status="failed", finished_at=datetime.now(UTC), error=f"unknown job {job.kind}")
    return claimed


def run_job(
    store: Store, job: JobInfo, *, launch: LaunchOptions | None = None, env: dict[str, str] | None = None
) -> int:
    """Run one claimed training job to its end and record the outcome on its run and job (`record_exit`)."""
    command = worker_command(store.home, job.run_id, launch=launch)
    worker = start_worker(command, job.run_id, env=env)  # the worker itself moves the run to "running"
    code = worker.wait()
    error_event = next((e.get("message") for e in reversed(worker.events) if e.get("event") == "error"), None)
    record_exit(
        store,
        WorkerExit(
            job.run_id, job.id, worker_session(worker.events), code, stderr_tail="\n".join(worker.stderr_tail),
            error_event=error_event,
        ),
    )  # fmt: skip
    return code


def worker_session(events: list[dict[str, Any]]) -> int | None:
    """The session a worker announced when it claimed its run (None: it never did)."""
    return next((e["session"] for e in events if e.get("event") == "status" and "session" in e), None)


def end_session(store: Store, run_id: int, session: int | None, to: str, **fields: Any) -> bool:
    """After a worker exited: move its run to `to` if that worker's session still owns it (session known), or
    if the run is still "queued" (the worker never claimed it). Another process's session is left alone."""
    from ul_engine.store import ACTIVE_RUN_STATUSES  # why: the store imports core

    expect = ACTIVE_RUN_STATUSES if session is not None else ("queued",)
    try:
        store.transition(run_id, to, expect=expect, session=session, **fields)
    except RunStateError:
        return False
    return True


def run_queue(
    store: Store, device: str = "cpu", *, launch: LaunchOptions | None = None, once: bool = False
) -> list[int]:
    """Process queued jobs for `device` one at a time (the queue policy of `claim_jobs` and `record_exit`, run
    blocking); a failed job does not stop the queue."""
    done: list[int] = []
    while jobs := claim_jobs(store, [device], set()):
        run_job(store, jobs[0], launch=launch)
        done.append(jobs[0].id)
        if once:
            break
    return done
