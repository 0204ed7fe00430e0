"""The Rate–distortion page: every checkpoint of every stage-1 run at (bits/pixel, PSNR), coloured by run.

The points are what `ul eval` recorded on the checkpoints (`ul_engine.core.rate_distortion`); a checkpoint
without a result is listed in the table below the plot, and **Evaluate** runs `ul eval` on it in a worker
process. Hovering a point names its run, loss factor and step; clicking it opens the Reconstruct page on
that checkpoint, with the run's validation images when the Reconstruct list is empty. The texts, colours and
validation crops are computed without Qt in `app.models.rate_distortion`.
"""

from __future__ import annotations

from typing import Any

import pyqtgraph as pg
from PySide6.QtCore import QItemSelectionModel, Qt, Signal
from PySide6.QtWidgets import (
    QAbstractItemView,
    QCheckBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QSpinBox,
    QSplitter,
    QStackedWidget,
    QTableWidget,
    QTableWidgetItem,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.models import rate_distortion as model
from app.workers.evaluate import EvalJob, Evaluator
from ul_engine.core.rate_distortion import RDPoint, collect
from ul_engine.store import ACTIVE_RUN_STATUSES

POINT_ROLE = Qt.ItemDataRole.UserRole + 1


class RateDistortionPage(QWidget):
    open_checkpoint = Signal(int, int, list)  # run id, checkpoint id, validation images for an empty list

    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.points: list[RDPoint] = []
        self.evaluator = Evaluator(ctx.home, ctx.store, parent=self)
        self.evaluator.started.connect(self._on_eval_started)
        self.evaluator.finished.connect(self._on_eval_finished)
        self._signature: tuple[Any, ...] | None = None
        self._training_note = ""
        self._build()
        self.refresh()
        ctx.repo.changed.connect(self._on_repo_changed)

    # ---- layout --------------------------------------------------------------------------------------

    def _build(self) -> None:
        outer = QVBoxLayout(self)
        outer.setContentsMargins(12, 10, 12, 8)
        heading = QLabel("Rate–distortion")
        heading.setObjectName("pageTitle")
        outer.addWidget(heading)

        controls = QHBoxLayout()
        self.log_x = QCheckBox("Log x")
        self.log_x.setToolTip("Bits/pixel on a logarithmic axis (rates of different loss factors span decades).")
        self.log_x.toggled.connect(lambda _=False: self._draw())
        self.n_images = QSpinBox()
        self.n_images.setRange(2, 4096)
        self.n_images.setValue(int(self.ctx.settings.get("rd/n", 64, int)))
        self.n_images.setToolTip("Validation images per evaluation (the same fixed images for every checkpoint).")
        self.n_images.valueChanged.connect(lambda v: self.ctx.settings.set("rd/n", int(v)))
        self.decoder_steps = QSpinBox()
        self.decoder_steps.setRange(0, 4096)
        self.decoder_steps.setSpecialValueText("run's")
        self.decoder_steps.setToolTip("Decoder sampling steps of an evaluation (run's: its sampling.decoder_steps).")
        self.evaluate_button = QPushButton("Evaluate selected")
        self.evaluate_button.setToolTip(
            "Run `ul eval` on the selected checkpoints in a worker process; their points appear when it ends."
        )
        self.evaluate_button.clicked.connect(self.evaluate_selected)
        self.evaluate_missing_button = QPushButton("Evaluate missing")
        self.evaluate_missing_button.setToolTip("Run `ul eval` on every checkpoint that has no result yet.")
        self.evaluate_missing_button.clicked.connect(self.evaluate_missing)
        self.cancel_button = QPushButton("Cancel")
        self.cancel_button.setToolTip("Stop the running evaluation and drop the waiting ones.")
        self.cancel_button.setEnabled(False)
        self.cancel_button.clicked.connect(self.evaluator.cancel)
        refresh = QPushButton("Refresh")
        refresh.setToolTip("Read the checkpoints and their results from the database again.")
        refresh.clicked.connect(self.refresh)
        controls.addWidget(self.log_x)
        controls.addSpacing(16)
        for label, widget in (("Images", self.n_images), ("Decoder steps", self.decoder_steps)):
            controls.addWidget(QLabel(label))
            controls.addWidget(widget)
            controls.addSpacing(10)
        controls.addStretch(1)
        for button in (self.evaluate_button, self.evaluate_missing_button, self.cancel_button, refresh):
            controls.addWidget(button)
        outer.addLayout(controls)

        splitter = QSplitter(Qt.Orientation.Vertical)
        self.plot_stack = QStackedWidget()
        self.empty = QLabel()
        self.empty.setObjectName("emptyState")
        self.empty.setWordWrap(True)
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setMargin(24)
        self.plot = pg.PlotWidget()
        self.plot.setToolTip("")
        self.item = self.plot.getPlotItem()
        self.item.setLabel("bottom", "bits / pixel")
        self.item.setLabel("left", "PSNR", units="dB")
        self.item.showGrid(x=True, y=True, alpha=0.15)
        self.item.setMenuEnabled(False)
        self.item.getViewBox().setDefaultPadding(0.08)
        self.item.getAxis("bottom").enableAutoSIPrefix(False)  # plain bits/pixel (a log axis shows 10^k)
        self.legend = self.item.addLegend(offset=(-10, -10))  # bottom right: points rise towards the top right
        self.scatter = pg.ScatterPlotItem(hoverable=True, hoverSize=15, tip=lambda x, y, data: model.point_tip(data))
        self.scatter.sigClicked.connect(self._on_clicked)
        self.item.addItem(self.scatter)
        self.plot_stack.addWidget(self.plot)
        self.plot_stack.addWidget(self.empty)
        splitter.addWidget(self.plot_stack)

        self.table = QTableWidget(0, len(model.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(model.COLUMNS))
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.verticalHeader().setVisible(False)
        self.table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.table.horizontalHeader().setStretchLastSection(True)
        self.table.setToolTip("Every checkpoint on disk; double-click one to open its reconstructions.")
        self.table.cellDoubleClicked.connect(lambda row, _col: self._open_row(row))
        splitter.addWidget(self.table)
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([520, 200])
        outer.addWidget(splitter, 1)

        self.status = QLabel()
        self.status.setObjectName("hint")
        self.status.setWordWrap(True)
        outer.addWidget(self.status)
        self.apply_theme()

    def apply_theme(self) -> None:
        colors = theme.plot_colors()
        self.plot.setBackground(colors["background"])
        for axis in ("left", "bottom"):
            ax = self.item.getAxis(axis)
            ax.setPen(colors["muted"])
            ax.setTextPen(colors["foreground"])

    # ---- data ----------------------------------------------------------------------------------------

    def showEvent(self, event: Any) -> None:
        super().showEvent(event)
        self.refresh()

    def _on_repo_changed(self) -> None:
        if not self.isVisible():
            return
        signature = tuple((r.id, r.info.status, r.info.step) for r in self.ctx.repo.ordered() if r.info.stage == 1)
        if signature != self._signature:
            self._signature = signature
            self.refresh()

    def refresh(self) -> None:
        """Re-read every stage-1 checkpoint and its recorded evaluation; redraw."""
        self.points = collect(self.ctx.store)
        self._fill_table()
        self._draw()
        self._update_status()

    def evaluated(self) -> list[RDPoint]:
        return [p for p in self.points if p.evaluated]

    def run_colors(self) -> dict[int, str]:
        """One colour per run, in the order runs were created (stable while runs are added)."""
        return model.run_colors(self.points, theme.run_colors())

    def _draw(self) -> None:
        """One scatter for all runs (a brush per run): several hoverable scatters in one view would clear
        each other's tooltip."""
        self.scatter.clear()
        self.legend.clear()
        log_x = self.log_x.isChecked()
        self.item.setLogMode(x=log_x, y=False)
        colors = self.run_colors()
        background = theme.plot_colors()["background"]
        spots: list[dict[str, Any]] = []
        named: dict[int, str] = {}
        for x, y, p in model.plotted(self.points, log_x=log_x):
            spots.append({"pos": (x, y), "data": p, "brush": pg.mkBrush(colors[p.run_id])})
            named.setdefault(p.run_id, model.legend_name(p))
        self.scatter.setData(spots=spots, size=11, pen=pg.mkPen(background, width=1))
        self._show_empty_state(bool(spots))
        for run_id, name in named.items():
            self.legend.addItem(pg.ScatterPlotItem(size=10, brush=pg.mkBrush(colors[run_id]), pen=None), name)
        self.item.enableAutoRange()

    def _show_empty_state(self, has_points: bool) -> None:
        """A sentence instead of an empty 0–1 plot: what the plot will show and how to get there."""
        if has_points:
            self.plot_stack.setCurrentWidget(self.plot)
            return
        self.empty.setText(model.empty_text(self.points))
        self.plot_stack.setCurrentWidget(self.empty)

    def _fill_table(self) -> None:
        selected = {p.checkpoint_id for p in self.selected_points()}
        self.table.setRowCount(len(self.points))
        colors = self.run_colors()
        for row, p in enumerate(self.points):
            cells = model.table_cells(p)
            for col, text in enumerate(cells):
                item = QTableWidgetItem(text)
                item.setData(POINT_ROLE, p)
                item.setToolTip(model.point_tip(p))
                if col == 0:
                    item.setForeground(pg.mkColor(colors[p.run_id]))
                self.table.setItem(row, col, item)
        self.table.clearSelection()
        selection, flags = self.table.selectionModel(), QItemSelectionModel.SelectionFlag
        for row, p in enumerate(self.points):
            if p.checkpoint_id in selected:
                selection.select(self.table.model().index(row, 0), flags.Select | flags.Rows)

    def _update_status(self) -> None:
        busy = self.evaluator.pending()
        text = model.status_text(self.points)
        current = self.evaluator.current
        if current is not None:
            k, n = self.evaluator.position()
            text = f"Evaluating {k} of {n}: {self._run_name(current.run_id)} step {current.step:,} · " + text
        if self._training_note and busy:
            text += f" · {self._training_note}"
        self.status.setText(text)
        self.cancel_button.setEnabled(bool(busy))

    # ---- actions -------------------------------------------------------------------------------------

    def selected_points(self) -> list[RDPoint]:
        rows = sorted({i.row() for i in self.table.selectionModel().selectedRows()}) if self.table.model() else []
        out = []
        for row in rows:
            item = self.table.item(row, 0)
            if item is not None:
                out.append(item.data(POINT_ROLE))
        return out

    def evaluate(self, points: list[RDPoint]) -> int:
        """Queue `ul eval` for these checkpoints; returns how many were queued."""
        steps = self.decoder_steps.value() or None
        jobs = [EvalJob(p.run_id, p.step, p.checkpoint_id, self.n_images.value(), steps) for p in points]
        queued = self.evaluator.submit_all(jobs)
        self._update_status()
        return queued

    def evaluate_selected(self) -> int:
        points = self.selected_points()
        if not points:
            self.status.setText("Select one or more checkpoints in the table first (or press Evaluate missing).")
            return 0
        return self.evaluate(points)

    def evaluate_missing(self) -> int:
        """Evaluate every checkpoint without a result, as they are on disk now: a run that is still training
        has its checkpoints so far evaluated, and is named, since more will come."""
        self.refresh()
        training = sorted({r.info.name for r in self.ctx.repo.ordered()
                           if r.info.stage == 1 and r.info.status in (*ACTIVE_RUN_STATUSES, "queued")})  # fmt: skip
        self._training_note = model.training_note(training)
        return self.evaluate([p for p in self.points if not p.evaluated])

    def _on_eval_started(self, job: EvalJob) -> None:
        self._update_status()
        k, n = self.evaluator.position()
        self.ctx.message.emit(f"Evaluating {k} of {n}: {self._run_name(job.run_id)} step {job.step:,}…")

    def _run_name(self, run_id: int) -> str:
        return model.run_name(self.points, run_id)

    def _on_eval_finished(self, job: EvalJob, ok: bool, message: str) -> None:
        where = f"{self._run_name(job.run_id)} step {job.step:,}"
        self.ctx.message.emit(f"Evaluated {where}: {message}" if ok else f"Evaluation of {where} failed: {message}")
        if ok:
            self.ctx.repo.reread(job.run_id)  # the Runs table's PSNR column
        self.refresh()

    def _on_clicked(self, _scatter: Any, spots: Any, _event: Any) -> None:
        if len(spots):
            self.open_point(spots[0].data())

    def _open_row(self, row: int) -> None:
        item = self.table.item(row, 0)
        if item is not None:
            self.open_point(item.data(POINT_ROLE))

    def open_point(self, p: RDPoint) -> None:
        """Ask the window to show this checkpoint's reconstructions."""
        run = self.ctx.store.get_run(p.run_id)
        self.open_checkpoint.emit(p.run_id, p.checkpoint_id, model.preview_inputs(self.ctx.store, run))

    def shutdown(self) -> None:
        self.evaluator.cancel()
