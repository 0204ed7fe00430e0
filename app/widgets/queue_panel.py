"""The Runs page's queue: the runs waiting to train, in order (drag to reorder, or Up / Down), and Remove to
take one out of the queue without deleting it. The order lives in the store; the list only shows it."""

from __future__ import annotations

from typing import Any

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QAbstractItemView, QHBoxLayout, QLabel, QListView, QPushButton, QVBoxLayout, QWidget

from app.models.queue_model import JOB_ID_ROLE, MIME, QueueModel
from app.models.repository import RunsRepository
from ul_engine.store import Store


class QueueView(QListView):
    """The queue list: a drop of queued jobs moves them in the store (the model reloads; no row removal)."""

    def _accepts(self, event: Any) -> bool:
        return bool(event.mimeData().hasFormat(MIME))

    def dragEnterEvent(self, event: Any) -> None:
        if self._accepts(event):
            event.setDropAction(Qt.DropAction.MoveAction)
            event.accept()
        else:
            event.ignore()

    def dragMoveEvent(self, event: Any) -> None:
        if self._accepts(event):
            super().dragMoveEvent(event)
            event.setDropAction(Qt.DropAction.MoveAction)
            event.accept()
        else:
            event.ignore()

    def dropEvent(self, event: Any) -> None:
        model = self.model()
        if not self._accepts(event) or not isinstance(model, QueueModel):
            event.ignore()
            return
        pos = event.position().toPoint()
        index = self.indexAt(pos)
        if index.isValid():
            rect = self.visualRect(index)
            row = index.row() + (1 if pos.y() > rect.center().y() else 0)
        else:
            row = model.rowCount()
        ids = [int(x) for x in bytes(event.mimeData().data(MIME).data()).decode().split(",") if x.strip()]
        model.move_jobs(ids, row)
        event.setDropAction(Qt.DropAction.CopyAction)  # the drag source must not remove the rows itself
        event.accept()


class QueuePanel(QWidget):
    def __init__(self, store: Store, repo: RunsRepository, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.store, self.repo = store, repo
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(QLabel("<b>Queue</b>"))
        hint = QLabel("One run trains per device at a time; the next starts when it finishes. Drag to reorder.")
        hint.setObjectName("hint")
        hint.setWordWrap(True)
        layout.addWidget(hint)
        self.model = QueueModel(repo, self)
        self.view = QueueView()
        self.view.setObjectName("queueList")
        self.view.setModel(self.model)
        self.view.setDragEnabled(True)
        self.view.setAcceptDrops(True)
        self.view.setDropIndicatorShown(True)
        self.view.setDragDropMode(QAbstractItemView.DragDropMode.InternalMove)
        self.view.setDefaultDropAction(Qt.DropAction.MoveAction)
        self.view.setToolTip("Runs waiting to train, in order; drag one to change when it starts.")
        self.view.setSpacing(2)
        layout.addWidget(self.view, 1)
        self.empty = QLabel("Nothing queued. Start a run (Ctrl+R) to queue it.")
        self.empty.setObjectName("hint")
        self.empty.setWordWrap(True)
        layout.addWidget(self.empty)
        buttons = QHBoxLayout()
        self.up = QPushButton("Up")
        self.up.setToolTip("Start the selected queued run earlier.")
        self.down = QPushButton("Down")
        self.down.setToolTip("Start the selected queued run later.")
        self.remove = QPushButton("Remove")
        self.remove.setToolTip("Take the selected run out of the queue (it is not deleted).")
        for b in (self.up, self.down, self.remove):
            buttons.addWidget(b)
        layout.addLayout(buttons)
        self.up.clicked.connect(lambda: self.move_selected(-1))
        self.down.clicked.connect(lambda: self.move_selected(+1))
        self.remove.clicked.connect(self.remove_selected)

    def update_state(self) -> None:
        """The empty hint and the buttons, after the queue or the selection changed."""
        self.empty.setVisible(self.model.rowCount() == 0)
        selection = self.view.selectionModel()
        job_selected = bool(selection and selection.selectedRows())
        for b in (self.up, self.down, self.remove):
            b.setEnabled(job_selected or bool(self.model.queued()))

    def selected_job(self) -> int | None:
        rows = self.view.selectionModel().selectedRows()
        return rows[0].data(JOB_ID_ROLE) if rows else None

    def move_selected(self, delta: int) -> None:
        job_id = self.selected_job()
        if job_id is not None:
            self.model.move_by(int(job_id), delta)
            for row in range(self.model.rowCount()):
                if self.model.job_at(row).id == job_id:
                    self.view.setCurrentIndex(self.model.index(row))

    def remove_selected(self) -> None:
        job_id = self.selected_job()
        if job_id is None:
            return
        job = next((j for j in self.model.queued() if j.id == job_id), None)
        if job is not None:
            self.store.cancel_job(job.id)
            self.repo.refresh()
