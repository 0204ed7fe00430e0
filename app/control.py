"""The run actions the pages offer (start, pause, resume, stop, sample/save now, delete, export, open
folder), in one place so the Runs page, the Monitor and the shortcuts behave the same."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from PySide6.QtCore import QObject, QProcess, QUrl, Signal
from PySide6.QtGui import QDesktopServices

from app.models.repository import RunsRepository
from app.workers.queue_runner import QueueRunner
from ul_engine.core.demo import dismiss
from ul_engine.core.errors import ULError
from ul_engine.core.supervisor import cli_argv
from ul_engine.store import ACTIVE_RUN_STATUSES, Store

if TYPE_CHECKING:  # the series model pulls in numpy and its fetch thread only when the Monitor opens
    from app.models.metrics_model import MetricsModel

STARTABLE = ("created", "stopped", "interrupted", "failed")


class RunHost(Protocol):
    """What the actions need of the window's shared state (the AppContext): named here, so this module does
    not import the context that builds it."""

    home: Path
    store: Store
    repo: RunsRepository
    runner: QueueRunner

    @property
    def has_metrics(self) -> bool: ...

    @property
    def metrics(self) -> MetricsModel: ...

    def default_device(self, config: dict[str, Any] | None) -> str: ...


class RunController(QObject):
    message = Signal(str)
    export_finished = Signal(int, bool, str)  # run id, ok, message

    def __init__(self, ctx: RunHost, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self._exports: list[QProcess] = []

    @property
    def store(self) -> Store:
        return self.ctx.store

    # ---- what is possible ----------------------------------------------------------------------------

    def status(self, run_id: int) -> str:
        row = self.ctx.repo.run(run_id)
        return row.info.status if row else self.store.get_run(run_id).status

    def can(self, action: str, run_id: int) -> bool:
        status = self.status(run_id)
        return {
            "start": status == "created",
            "resume": status in ("paused", "stopped", "interrupted", "failed"),
            "pause": status == "running",
            "stop": status in ("running", "paused", "queued"),
            "sample_now": status == "running",
            "save_now": status == "running",
            "delete": status not in ACTIVE_RUN_STATUSES,
        }.get(action, True)

    # ---- actions -------------------------------------------------------------------------------------

    def start(self, run_id: int, device: str | None = None) -> None:
        """Queue a run (it starts when its device is free); continues from its last checkpoint."""
        info = self.store.get_run(run_id)
        if info.status not in STARTABLE:
            raise ULError(f"run '{info.name}' is {info.status}; it cannot be started now")
        self.ctx.runner.enqueue(run_id, device or self.ctx.default_device(info.config))
        self.message.emit(f"{info.name} queued")

    def pause(self, run_id: int) -> None:
        self.store.request(run_id, "pause")
        self.ctx.repo.refresh()
        self.message.emit("pause requested; the worker pauses after its current step")

    def resume(self, run_id: int) -> None:
        info = self.store.get_run(run_id)
        if info.status == "paused":
            self.store.request(run_id, "resume")
            self.message.emit(f"{info.name} resumes")
        else:
            self.start(run_id)
        self.ctx.repo.refresh()

    def stop(self, run_id: int) -> None:
        self.ctx.runner.stop_run(run_id)
        self.ctx.repo.refresh()
        self.message.emit("stopping: the worker saves a checkpoint, then exits")

    def sample_now(self, run_id: int) -> None:
        self.store.request(run_id, "sample_now")
        self.message.emit("a preview will be written after the current step")

    def save_now(self, run_id: int) -> None:
        self.store.request(run_id, "save_now")
        self.message.emit("a checkpoint will be saved after the current step")

    def delete(self, run_id: int) -> None:
        info = self.store.get_run(run_id)
        for job in self.store.list_jobs("queued", run_id=run_id):
            self.store.cancel_job(job.id)
        self.store.delete_run(run_id, remove_files=True)
        if info.status == "shipped":  # the demo: its bundle stays where it is; do not register it again
            dismiss(self.store.home)
        if self.ctx.has_metrics:
            self.ctx.metrics.drop(run_id)
        self.ctx.repo.refresh()
        self.message.emit(f"{info.name} deleted")

    def run_folder(self, run_id: int) -> Path:
        return self.store.run_dir(run_id)

    def open_folder(self, run_id: int) -> bool:
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.run_folder(run_id))))

    def export(self, run_id: int, out: Path) -> QProcess:
        """Write the run's inference bundle to `out` with `ul export` in a worker process."""
        proc = QProcess(self)
        argv = cli_argv("--home", str(self.ctx.home), "export", str(run_id), "--out", str(out), "--json")
        proc.setProgram(argv[0])
        proc.setArguments(argv[1:])

        def done(code: int, _status: QProcess.ExitStatus) -> None:
            err = bytes(proc.readAllStandardError().data()).decode("utf-8", errors="replace").strip()
            ok = code == 0
            text = f"exported to {out}" if ok else (err.splitlines()[-1] if err else f"export failed ({code})")
            self.message.emit(text)
            self.export_finished.emit(run_id, ok, text)
            if proc in self._exports:
                self._exports.remove(proc)
            proc.deleteLater()

        proc.finished.connect(done)
        self._exports.append(proc)
        proc.start()
        self.message.emit(f"exporting run {run_id}…")
        return proc
