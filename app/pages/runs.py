"""The Runs page: every run in a sortable, filterable table, the training queue (drag to reorder), and the
run actions (New, Duplicate, Start, Pause, Resume, Stop, Train stage 2, Delete, Open folder, Export,
Compare in Monitor)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QModelIndex, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QComboBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QMenu,
    QMessageBox,
    QPlainTextEdit,
    QSplitter,
    QTableView,
    QToolBar,
    QVBoxLayout,
    QWidget,
)

from app.context import AppContext
from app.models.run_details import details_text, parent_text
from app.models.runs_model import PROGRESS_ROLE, RUN_ID_ROLE, STATUS_FILTERS, RunsFilterProxy, RunsTableModel
from app.pages.welcome import WelcomePanel, demo_run, own_runs
from app.widgets import file_dialogs
from app.widgets.export_box import export_box
from app.widgets.progress_delegate import ProgressDelegate
from app.widgets.queue_panel import QueuePanel
from ul_engine.core.errors import ULError

if TYPE_CHECKING:
    from app.pages.new_run import NewRunDialog


class RunsPage(QWidget):
    open_in_monitor = Signal(int)
    run_started = Signal(int)  # a run made with the New run form's "Create and start"
    compare = Signal(list)
    open_reconstruct = Signal(int)  # a run id: show it on the Reconstruct page (the welcome's demo button)

    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.controller = ctx.controller
        self.last_dialog: NewRunDialog | None = None
        self.last_export_box: QMessageBox | None = None
        self._exports: dict[int, Path] = {}  # run id → the folder its running export writes
        self.controller.export_finished.connect(self._on_exported)
        self.target_provider: Callable[[], list[int]] = self.selected_ids
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)

        header = QHBoxLayout()
        title = QLabel("Runs")
        title.setObjectName("pageTitle")
        header.addWidget(title)
        header.addSpacing(12)
        self.toolbar = QToolBar()
        self.toolbar.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextOnly)
        header.addWidget(self.toolbar, 1)
        layout.addLayout(header)

        self.welcome = WelcomePanel()
        self.welcome.reconstruct_demo.connect(self.open_reconstruct)
        self.welcome.train_shapes.connect(self.train_shapes)
        self.welcome.train_folder.connect(self.train_folder)
        layout.addWidget(self.welcome)

        filters = QHBoxLayout()
        self.search = QLineEdit()
        self.search.setPlaceholderText("Filter runs by name, preset, status… (Ctrl+F)")
        self.search.setClearButtonEnabled(True)
        self.search.setToolTip("Show only runs whose name, preset, status or id contain all the typed words.")
        self.status_filter = QComboBox()
        self.status_filter.addItems(list(STATUS_FILTERS))
        self.status_filter.setToolTip("Show only runs in a group of statuses.")
        filters.addWidget(self.search, 1)
        filters.addWidget(self.status_filter)
        layout.addLayout(filters)

        self.model = RunsTableModel(ctx.repo, self)
        self.proxy = RunsFilterProxy(self)
        self.proxy.setSourceModel(self.model)
        self.table = QTableView()
        self.table.setObjectName("runsTable")
        self.table.setModel(self.proxy)
        self.table.setSortingEnabled(True)
        self.table.sortByColumn(7, Qt.SortOrder.DescendingOrder)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.table.setAlternatingRowColors(True)
        self.table.verticalHeader().hide()
        self.table.setItemDelegateForColumn(3, ProgressDelegate(PROGRESS_ROLE, self.table))
        head = self.table.horizontalHeader()
        head.setSectionResizeMode(QHeaderView.ResizeMode.Interactive)
        head.setStretchLastSection(False)
        self.table.setWordWrap(False)
        for col, width in enumerate((190, 48, 90, 130, 80, 72, 72, 110, 82)):
            self.table.setColumnWidth(col, width)
        head.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.table.setContextMenuPolicy(Qt.ContextMenuPolicy.CustomContextMenu)
        self.table.customContextMenuRequested.connect(self._context_menu)
        self.table.doubleClicked.connect(self._on_double_click)

        self.details = QPlainTextEdit()
        self.details.setObjectName("logTail")
        self.details.setReadOnly(True)
        self.details.setMaximumHeight(110)
        self.details.setPlaceholderText("Select a run to see its details; a failed run shows its error here.")

        left = QWidget()
        left_layout = QVBoxLayout(left)
        left_layout.setContentsMargins(0, 0, 0, 0)
        left_layout.addWidget(self.table, 1)
        left_layout.addWidget(self.details)

        self.queue_panel = QueuePanel(ctx.store, ctx.repo)

        splitter = QSplitter()
        splitter.addWidget(left)
        splitter.addWidget(self.queue_panel)
        splitter.setStretchFactor(0, 4)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([900, 260])
        layout.addWidget(splitter, 1)

        self._make_actions()
        self.search.textChanged.connect(self.proxy.set_text)
        self.status_filter.currentTextChanged.connect(self.proxy.set_status_group)
        self.table.selectionModel().selectionChanged.connect(self.update_actions)
        self._kept_selection: list[int] = []
        self.model.modelAboutToBeReset.connect(lambda: setattr(self, "_kept_selection", self.selected_ids()))
        self.model.modelReset.connect(self._restore_selection)
        ctx.repo.changed.connect(self.update_actions)
        self.update_actions()

    # ---- actions -------------------------------------------------------------------------------------

    def _action(self, text: str, tip: str, slot: Callable, shortcut: str | QKeySequence | None = None) -> QAction:
        action = QAction(text, self)
        action.setToolTip(tip + (f" ({QKeySequence(shortcut).toString()})" if shortcut else ""))
        action.setStatusTip(tip)
        if shortcut:
            action.setShortcut(QKeySequence(shortcut))
        action.triggered.connect(slot)
        return action

    def _make_actions(self) -> None:
        a = self._action
        self.act_new = a("New run", "Create a run from a preset", self.new_run, "Ctrl+N")
        self.act_duplicate = a("Duplicate", "Create a run with a copy of the selected run's config", self.duplicate,
                               "Ctrl+D")  # fmt: skip
        self.act_start = a("Start", "Queue the selected runs for training", self.start, "Ctrl+R")
        self.act_pause = a("Pause", "Pause training after the current step (the model stays loaded)", self.pause,
                           "Ctrl+P")  # fmt: skip
        self.act_resume = a("Resume", "Continue a paused run, or a stopped one from its last checkpoint",
                            self.resume, "Ctrl+Shift+R")  # fmt: skip
        self.act_stop = a("Stop", "Stop after a checkpoint (or take the run out of the queue)", self.stop,
                          "Ctrl+.")  # fmt: skip
        self.act_stage2 = a("Train stage 2", "Train a base model on the latents of the selected stage-1 run",
                            self.stage2, "Ctrl+T")  # fmt: skip
        self.act_delete = a("Delete", "Delete the selected runs with their checkpoints and files", self.delete,
                            "Delete")  # fmt: skip
        self.act_delete.setShortcutContext(Qt.ShortcutContext.WidgetWithChildrenShortcut)
        self.table.addAction(self.act_delete)
        self.act_folder = a("Open folder", "Open the run's folder (checkpoints, previews, logs)", self.open_folder,
                            "Ctrl+O")  # fmt: skip
        self.act_export = a("Export", "Write the run's inference bundle (safetensors + JSON) to a folder",
                            self.export, "Ctrl+E")  # fmt: skip
        self.act_compare = a("Compare in Monitor", "Overlay the selected runs' curves in the Monitor",
                             self.compare_selected, "Ctrl+M")  # fmt: skip
        self.act_find = a("Find", "Filter the runs", self.focus_search, "Ctrl+F")
        for act in (self.act_new, self.act_duplicate, self.act_start, self.act_pause, self.act_resume, self.act_stop,
                    self.act_stage2, self.act_delete, self.act_folder, self.act_export, self.act_compare):  # fmt: skip
            self.toolbar.addAction(act)
        self.window_actions = [act for act in self.toolbar.actions() if act is not self.act_delete] + [self.act_find]

    def selected_ids(self) -> list[int]:
        rows = self.table.selectionModel().selectedRows() if self.table.selectionModel() else []
        ids = [self.proxy.data(r, RUN_ID_ROLE) for r in rows]
        return [int(i) for i in ids if i is not None]

    def targets(self) -> list[int]:
        return [i for i in self.target_provider() if self.ctx.repo.run(i) is not None]

    def select_run(self, run_id: int) -> None:
        row = self.model.row_for(run_id)
        if row is None:
            return
        index = self.proxy.mapFromSource(self.model.index(row, 0))
        if index.isValid():
            self.table.selectRow(index.row())
            self.table.scrollTo(index)

    def _restore_selection(self) -> None:
        """A run was added or removed (the model was reset): select the same runs as before."""
        selection = QItemSelection()
        for run_id in self._kept_selection:
            row = self.model.row_for(run_id)
            if row is None:
                continue
            index = self.proxy.mapFromSource(self.model.index(row, 0))
            if index.isValid():
                selection.select(index, index)
        flags = QItemSelectionModel.SelectionFlag.ClearAndSelect | QItemSelectionModel.SelectionFlag.Rows
        self.table.selectionModel().select(selection, flags)

    def update_actions(self) -> None:
        ids = self.targets()
        one = len(ids) == 1
        can = self.controller.can
        row = self.ctx.repo.run(ids[0]) if one else None
        self.act_duplicate.setEnabled(one)
        self.act_start.setEnabled(bool(ids) and all(can("start", i) for i in ids))
        self.act_pause.setEnabled(bool(ids) and all(can("pause", i) for i in ids))
        self.act_resume.setEnabled(bool(ids) and all(can("resume", i) for i in ids))
        self.act_stop.setEnabled(bool(ids) and all(can("stop", i) for i in ids))
        self.act_stage2.setEnabled(bool(row and row.info.stage == 1 and row.has_checkpoint))
        self.act_delete.setEnabled(bool(ids) and all(can("delete", i) for i in ids))
        self.act_folder.setEnabled(one)
        self.act_export.setEnabled(bool(row and row.info.step > 0))
        self.act_compare.setEnabled(len(ids) >= 2)
        self._show_details(row)
        rows = self.ctx.repo.ordered()
        self.welcome.setVisible(not own_runs(rows))
        demo = demo_run(rows)
        self.welcome.set_demo(demo.id if demo is not None else None)
        self.queue_panel.update_state()

    def _show_details(self, row: Any) -> None:
        if row is None:
            self.details.clear()
            return
        parent = None
        if row.info.parent_run_id:
            parent_row = self.ctx.repo.run(row.info.parent_run_id)
            name = parent_row.info.name if parent_row is not None else None
            parent = parent_text(row.info, name, self._checkpoint_step)
        text = details_text(row, parent)
        if self.details.toPlainText() != text:
            self.details.setPlainText(text)

    def _checkpoint_step(self, checkpoint_id: int) -> int | None:
        try:
            return self.ctx.store.get_checkpoint(checkpoint_id).step
        except ULError:
            return None

    def _run_all(self, fn: Callable[[int], None], ids: list[int] | None = None) -> None:
        for run_id in ids if ids is not None else self.targets():
            try:
                fn(run_id)
            except ULError as exc:
                self.ctx.message.emit(str(exc))
        self.update_actions()

    def focus_search(self) -> None:
        self.search.setFocus()
        self.search.selectAll()

    def new_run(self) -> None:
        self._open_dialog()

    def train_shapes(self) -> Any:
        """The welcome's shapes start: the New run form with the shapes-32 preset."""
        return self._open_dialog(preset="shapes-32")

    def train_folder(self) -> Any:
        """The welcome's folder start: choose a folder, then the New run form with folder-64 on it."""
        folder = self.ask_training_folder(self)
        if not folder:
            return None
        dialog = self._open_dialog(preset="folder-64")
        dialog.set_data_folder(folder)
        return dialog

    @staticmethod
    def ask_training_folder(parent: QWidget) -> str:
        """A folder of the user's images (tests patch this)."""
        return file_dialogs.existing_folder(parent, "Folder of training images", "training")

    def duplicate(self) -> None:
        ids = self.targets()
        if len(ids) == 1:
            self._open_dialog(base_run=self.ctx.store.get_run(ids[0]))

    def stage2(self) -> None:
        ids = self.targets()
        if len(ids) == 1:
            parent = self.ctx.store.get_run(ids[0])
            self._open_dialog(parent_run=parent, preset=parent.preset)

    def _open_dialog(self, **kwargs: Any) -> NewRunDialog:
        from app.pages.new_run import NewRunDialog  # why: the form (schema editors, dataset scan) loads on first use

        dialog = NewRunDialog(self.ctx, parent=self.window(), **kwargs)
        dialog.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        dialog.run_created.connect(self._after_create)
        dialog.run_started.connect(self.run_started)
        self.last_dialog = dialog
        dialog.open()
        return dialog

    def _after_create(self, run_id: int) -> None:
        self.ctx.repo.refresh()
        self.select_run(run_id)

    def start(self) -> None:
        self._run_all(self.controller.start)

    def pause(self) -> None:
        self._run_all(self.controller.pause)

    def resume(self) -> None:
        self._run_all(self.controller.resume)

    def stop(self) -> None:
        self._run_all(self.controller.stop)

    def delete(self) -> None:
        ids = self.targets()
        if not ids or not all(self.controller.can("delete", i) for i in ids):
            return
        names = ", ".join(row.info.name for i in ids if (row := self.ctx.repo.run(i)) is not None)
        if not self.confirm_delete(self, names, len(ids)):
            return
        self._run_all(self.controller.delete, ids)

    @staticmethod
    def confirm_delete(parent: QWidget, names: str, count: int) -> bool:
        """Ask before deleting (tests patch this)."""
        answer = QMessageBox.question(
            parent,
            "Delete runs" if count > 1 else "Delete run",
            f"Delete {names}?\n\nIts metrics, checkpoints, previews and folder are removed; this cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.Cancel,
            QMessageBox.StandardButton.Cancel,
        )
        return answer == QMessageBox.StandardButton.Yes

    def open_folder(self) -> None:
        ids = self.targets()
        if len(ids) == 1:
            self.controller.open_folder(ids[0])

    def export(self) -> None:
        ids = self.targets()
        if len(ids) != 1:
            return
        info = self.ctx.store.get_run(ids[0])
        out = self.ask_export_dir(self, info.name)
        if out:
            self._exports[info.id] = Path(out)
            self.controller.export(info.id, Path(out))

    def _on_exported(self, run_id: int, ok: bool, message: str) -> None:
        """Say where an export went (or why it failed), with a button that opens the folder."""
        out = self._exports.pop(run_id, None)
        if out is None:
            return
        row = self.ctx.repo.run(run_id)
        name = row.info.name if row is not None else f"run {run_id}"
        box = export_box(self, name, out, ok, message)
        self.last_export_box = box
        box.open()

    @staticmethod
    def ask_export_dir(parent: QWidget, name: str) -> str:
        """Where to export (tests patch this)."""
        base = file_dialogs.existing_folder(parent, f"Export {name} to…", "models")
        return str(Path(base) / name) if base else ""

    def compare_selected(self) -> None:
        ids = self.targets()
        if len(ids) >= 2:
            self.compare.emit(ids)

    def _on_double_click(self, index: QModelIndex) -> None:
        run_id = self.proxy.data(index, RUN_ID_ROLE)
        if run_id is not None:
            self.open_in_monitor.emit(int(run_id))

    def _context_menu(self, pos: Any) -> None:
        menu = QMenu(self)
        for act in (self.act_start, self.act_pause, self.act_resume, self.act_stop, None, self.act_duplicate,
                    self.act_stage2, self.act_compare, None, self.act_folder, self.act_export, None,
                    self.act_delete):  # fmt: skip
            menu.addSeparator() if act is None else menu.addAction(act)  # fmt: skip
        menu.popup(self.table.viewport().mapToGlobal(pos))
