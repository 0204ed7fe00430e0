"""The persistent training queue, worked off by the app: one training job per device at a time.

Jobs live in the store (`enqueue`, `move_job`, `next_job`), so the order survives restarts and a run that
was queued while the app was closed starts when it opens. A job that fails keeps its exit code and the last
200 lines of the worker's stderr (on the job and on the run), and the queue goes on with the next one.

On start the runner re-attaches to runs whose worker outlived an earlier session of the app (status
running/paused/stopping and a live worker process on this machine), and marks runs whose worker died
meanwhile as interrupted; every tick it marks runs whose worker died since (`Store.mark_stale_runs`), so a
run killed outside the app is resumable at once. Status changes go through `Store.transition`, scoped to the
worker session they concern.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from sqlalchemy.exc import SQLAlchemyError

from app.workers.training import AttachedProcess, RunProcess, TrainingProcess
from ul_engine.core.errors import ULError
from ul_engine.core.supervisor import StopLadder, WorkerExit, claim_jobs, record_exit, request_stop
from ul_engine.store import ACTIVE_RUN_STATUSES, JobInfo, Store
from ul_engine.store.liveness import hostname

CommandFactory = Callable[[Any, int], tuple[str, list[str]]]
"""(job, run_id) -> (program, args): tests swap in a fake worker."""

STALE_HEARTBEAT_S = 120.0
"""A run whose worker pid is unknown is taken as dead once its heartbeat is this old."""


def _now() -> datetime:
    return datetime.now(UTC)


def device_env(device: str) -> dict[str, str]:
    """Pin a worker to its queue device: one GPU for "cuda:N", none for "cpu"."""
    if device.startswith("cuda"):
        _, _, index = device.partition(":")
        return {"CUDA_VISIBLE_DEVICES": index or "0"}
    return {"CUDA_VISIBLE_DEVICES": ""}


class QueueRunner(QObject):
    run_started = Signal(int, int)  # run id, job id
    run_finished = Signal(int, int, int)  # run id, job id (-1: none), exit code (-1: unknown)
    event = Signal(int, dict)  # type: ignore[assignment]  # run id, worker event (shadows QObject.event, as Qt allows)
    log_line = Signal(int, str)  # run id, line
    changed = Signal()  # the runs or jobs in the store changed
    idle = Signal()  # no worker runs any more

    def __init__(
        self,
        store: Store,
        *,
        devices: Iterable[str] = ("cpu",),
        command_factory: CommandFactory | None = None,
        poll_ms: int = 1000,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.store = store
        self.devices: list[str] = list(devices)
        self.command_factory = command_factory
        self.processes: dict[int, RunProcess] = {}
        self.enabled = True
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self.tick)

    # ---- lifecycle -----------------------------------------------------------------------------------

    def start(self) -> None:
        self.reattach()
        self._timer.start()
        QTimer.singleShot(0, self.tick)

    def shutdown(self) -> None:
        self._timer.stop()

    def set_devices(self, devices: Iterable[str]) -> None:
        self.devices = list(dict.fromkeys(devices))

    def reattach(self) -> list[int]:
        """Follow runs trained by workers from an earlier session; mark dead ones interrupted."""
        attached: list[int] = []
        now = _now()
        self.store.mark_stale_runs(timeout_s=STALE_HEARTBEAT_S)
        for run in self.store.list_runs(ACTIVE_RUN_STATUSES):
            if run.id in self.processes or not run.pid or run.host not in (None, hostname()):
                continue  # a worker on another machine: its status shows, its process cannot be followed
            jobs = self.store.list_jobs("running", run_id=run.id)
            job = jobs[0] if jobs else None
            proc = AttachedProcess(
                self.store, run.id, run.pid, job.id if job else None, parent=self, session=run.session,
                pid_started_at=run.pid_started_at,
            )  # fmt: skip
            proc.device = job.device if job else ("cpu" if (run.device or "cpu") == "cpu" else "cuda:0")
            self._connect(proc)
            self.processes[run.id] = proc
            proc.start()
            attached.append(run.id)
        for job in self.store.list_jobs("running"):
            if job.run_id in self.processes:
                continue
            run = self.store.get_run(job.run_id)
            if run.status == "queued":  # claimed, but the app closed before the worker started
                self.store.update_job(job.id, status="queued")
            else:
                self.store.update_job(job.id, status="failed", finished_at=now, error="the worker is gone")
        if attached:
            self.changed.emit()
        return attached

    # ---- queue ---------------------------------------------------------------------------------------

    def busy_devices(self) -> set[str]:
        return {p.device for p in self.processes.values() if not p.done}

    def is_busy(self) -> bool:
        return any(not p.done for p in self.processes.values())

    def process_for(self, run_id: int) -> RunProcess | None:
        return self.processes.get(int(run_id))

    def enqueue(self, run_id: int, device: str = "cpu") -> None:
        """Queue a run for training on `device` ("cpu" or "cuda:N"); it starts when the device is free."""
        self.store.enqueue(run_id, kind="train", device=device)
        self.changed.emit()
        QTimer.singleShot(0, self.tick)

    def tick(self) -> None:
        try:  # a worker that died outside the app (kill -9, crash): interrupted now, resumable at once
            if self.store.mark_stale_runs(timeout_s=STALE_HEARTBEAT_S):
                self.changed.emit()
        except (ULError, SQLAlchemyError):
            pass  # a busy database: the next tick tries again
        if not self.enabled:
            return
        jobs = claim_jobs(self.store, self.devices, self.busy_devices())
        for job in jobs:
            self._launch(job)
        if jobs:
            self.changed.emit()

    def _launch(self, job: JobInfo) -> None:
        command = self.command_factory(job, job.run_id) if self.command_factory else None
        proc = TrainingProcess(self.store, job.run_id, job.id, command=command, parent=self)
        proc.device = job.device
        self._connect(proc)
        self.processes[job.run_id] = proc
        with contextlib.suppress(ULError):
            self.store.update_run(job.run_id, error=None, exit_code=None, stderr_tail=None)
        proc.start(env=device_env(job.device))
        self.run_started.emit(job.run_id, job.id)

    def _connect(self, proc: RunProcess) -> None:
        run_id = proc.run_id
        proc.event.connect(lambda ev, r=run_id: self._on_event(r, ev))
        proc.log_line.connect(lambda line, r=run_id: self.log_line.emit(r, line))
        proc.finished.connect(lambda code, crashed, p=proc: self._on_finished(p, code, crashed))

    def _on_event(self, run_id: int, ev: dict) -> None:
        self.event.emit(run_id, ev)
        if ev.get("event") == "status":
            self.changed.emit()

    def _on_finished(self, proc: RunProcess, code: int, crashed: bool) -> None:
        run_id, job_id = proc.run_id, proc.job_id
        done = WorkerExit(run_id, job_id, proc.session, code, crashed=crashed, stop_requested=proc.stop_requested,
                          stderr_tail=proc.stderr_tail())  # fmt: skip
        with contextlib.suppress(ULError):  # the run or job went meanwhile
            record_exit(self.store, done)
        if self.processes.get(run_id) is proc:
            del self.processes[run_id]
        proc.deleteLater()
        self.run_finished.emit(run_id, -1 if job_id is None else job_id, code)
        self.changed.emit()
        if not self.is_busy():
            self.idle.emit()
        QTimer.singleShot(0, self.tick)

    # ---- control -------------------------------------------------------------------------------------

    def stop_run(self, run_id: int, ladder: StopLadder | None = None) -> None:
        """Stop a training run (the ladder), or take a queued one out of the queue."""
        proc = self.processes.get(int(run_id))
        if proc is not None and not proc.done:
            proc.stop(ladder)
            self.changed.emit()
            return
        for job in self.store.list_jobs("queued", run_id=run_id):
            self.store.cancel_job(job.id)
        run = self.store.get_run(run_id)
        if run.status in ACTIVE_RUN_STATUSES:  # a worker we do not follow: ask through the database
            request_stop(self.store, run_id, run.session)
        self.changed.emit()

    def stop_all(self, ladder: StopLadder | None = None) -> None:
        self.enabled = False
        for run_id in list(self.processes):
            self.stop_run(run_id, ladder)

    def detach_all(self) -> None:
        """Keep the workers running after the app quits (they write to files, not to our pipes)."""
        self.enabled = False
        self._timer.stop()
        for proc in self.processes.values():
            proc.detach()
