"""The training queue as a list: running jobs first, then queued ones in order; queued jobs can be dragged
to a new place (the store's `move_job` keeps the order across restarts)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from PySide6.QtCore import QAbstractListModel, QByteArray, QMimeData, QModelIndex, QPersistentModelIndex, Qt

from app.models.repository import RunsRepository
from ul_engine.store import JobInfo

MIME = "application/x-ul-job-ids"
JOB_ID_ROLE = Qt.ItemDataRole.UserRole + 1
RUN_ID_ROLE = Qt.ItemDataRole.UserRole + 2


class QueueModel(QAbstractListModel):
    def __init__(self, repo: RunsRepository, parent: Any = None) -> None:
        super().__init__(parent)
        self.repo = repo
        self.store = repo.store
        self._jobs: list[JobInfo] = []
        repo.jobs_changed.connect(self.reload)
        repo.changed.connect(self._names_changed)
        self.reload()

    def reload(self) -> None:
        self.beginResetModel()
        self._jobs = list(self.repo.jobs)
        self.endResetModel()

    def _names_changed(self) -> None:
        if self._jobs:
            self.dataChanged.emit(self.index(0), self.index(len(self._jobs) - 1))

    def job_at(self, row: int) -> JobInfo:
        return self._jobs[row]

    def queued(self) -> list[JobInfo]:
        return [j for j in self._jobs if j.status == "queued"]

    # ---- display -------------------------------------------------------------------------------------

    def rowCount(self, parent: QModelIndex | QPersistentModelIndex = QModelIndex()) -> int:
        return 0 if parent.isValid() else len(self._jobs)

    def data(self, index: QModelIndex | QPersistentModelIndex, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid():
            return None
        job = self._jobs[index.row()]
        row = self.repo.run(job.run_id)
        name = row.info.name if row else f"run {job.run_id}"
        if role == Qt.ItemDataRole.DisplayRole:
            if job.status == "running":
                status = row.info.status if row else "running"
                return f"▶  {name}  ·  {job.device}  ·  {status}"
            position = self.queued().index(job) + 1 if job in self._jobs else 0
            return f"{position}.  {name}  ·  {job.device}"
        if role == Qt.ItemDataRole.ToolTipRole:
            if job.status == "running":
                return f"{name} is training on {job.device}."
            return f"{name} waits for {job.device}; drag to change the order."
        if role == JOB_ID_ROLE:
            return job.id
        if role == RUN_ID_ROLE:
            return job.run_id
        return None

    # ---- drag and drop -------------------------------------------------------------------------------

    def flags(self, index: QModelIndex | QPersistentModelIndex) -> Qt.ItemFlag:
        base = Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable
        if not index.isValid():
            return base | Qt.ItemFlag.ItemIsDropEnabled
        if self._jobs[index.row()].status == "queued":
            return base | Qt.ItemFlag.ItemIsDragEnabled
        return base

    def supportedDropActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction

    def supportedDragActions(self) -> Qt.DropAction:
        return Qt.DropAction.MoveAction

    def mimeTypes(self) -> list[str]:
        return [MIME]

    def mimeData(self, indexes: Sequence[QModelIndex]) -> QMimeData:
        data = QMimeData()
        ids = [str(self._jobs[i.row()].id) for i in indexes if i.isValid()]
        data.setData(MIME, QByteArray(",".join(ids).encode()))
        return data

    def canDropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int, parent: Any) -> bool:
        return data.hasFormat(MIME)

    def dropMimeData(self, data: QMimeData, action: Qt.DropAction, row: int, column: int, parent: Any) -> bool:
        """Move the dragged jobs to the drop place. Returns False so the view does not also remove rows:
        the model reloads itself from the store instead."""
        if not data.hasFormat(MIME):
            return False
        ids = [int(x) for x in bytes(data.data(MIME).data()).decode().split(",") if x.strip()]
        if row < 0:
            row = parent.row() if parent is not None and parent.isValid() else len(self._jobs)
        self.move_jobs(ids, row)
        return False

    def move_jobs(self, job_ids: list[int], row: int) -> None:
        """Put the jobs before list row `row` (running rows are not part of the queue's order)."""
        queued = self.queued()
        running = len(self._jobs) - len(queued)
        target = max(0, min(row - running, len(queued)))
        before = sum(1 for j in queued[:target] if j.id in job_ids)  # moving ones above the target shift it
        target -= before
        for offset, job_id in enumerate(job_ids):
            self.store.move_job(job_id, target + offset)
        self.repo.refresh()

    def move_by(self, job_id: int, delta: int) -> None:
        """Move a queued job up (delta < 0) or down in the queue."""
        ids = [j.id for j in self.queued()]
        if job_id not in ids:
            return
        new = max(0, min(len(ids) - 1, ids.index(job_id) + delta))
        self.store.move_job(job_id, new)
        self.repo.refresh()
