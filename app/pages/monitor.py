"""The Monitor page: live curves of every logged term, progress with ETA, the worker's previews with a
slider through earlier ones, the log tail, and the Pause / Stop / Sample now / Save now buttons.

Series come from `MetricsModel` (read off the GUI thread, incrementally); the page only marks curves dirty
when data arrives and hands arrays to pyqtgraph on a 5 Hz timer.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QAction, QImage, QPixmap, QTextOption
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QMenu,
    QPlainTextEdit,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSlider,
    QSplitter,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from app import format as fmt
from app import theme
from app.plots import PANELS, CurveData, PanelSpec, PlotPanel, curve_label, known_keys, panel_for_key
from app.widgets.image_views import HeatmapView, SideBySide, ZoomView, array_from_qimage, qimage_from_array
from app.workers import procs
from app.workers.training import describe_event
from ul_engine.core import protocol
from ul_engine.core.errors import ULError
from ul_engine.core.reconstruction import abs_difference
from ul_engine.store import ACTIVE_RUN_STATUSES

REDRAW_MS = 200
COLUMNS = 2
SESSION_GAP_S = 30.0  # reports further apart than this belong to different sessions (a pause, a restart)
MIN_INTERVAL_S = 1.0  # the shortest interval between two reports that a speed is measured over
RATE_WINDOW_S = 60.0
RATE_HALF_LIFE_S = 20.0


class SessionRate:
    """Steps per second of the current training session, smoothed over time (half-life 20 s).

    It starts over when the step goes back (a resume from an earlier checkpoint) or after a gap in the reports
    (a pause, a restart), so the ETA after a resume is the new session's speed, not a mix with the old one.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.last: tuple[float, int] | None = None
        self.rate: float | None = None

    def add(self, wall: float, step: int) -> float | None:
        if self.last is not None:
            t, s = self.last
            if step < s or wall - t > SESSION_GAP_S:
                self.reset()
            elif step == s or wall - t < MIN_INTERVAL_S:
                # Reports read from the worker's output in one burst arrive within microseconds of each other:
                # an interval that short says nothing about the speed, so it grows until it does.
                return self.rate
            else:
                r = (step - s) / (wall - t)
                alpha = 1.0 - 0.5 ** ((wall - t) / RATE_HALF_LIFE_S)
                self.rate = r if self.rate is None else self.rate + alpha * (r - self.rate)
        self.last = (wall, step)
        return self.rate


def session_rate(walls: np.ndarray, steps: np.ndarray, session_start: float | None) -> float | None:
    """Steps per second over the last minute of logged steps, counting only the current session: steps logged
    before it started (`session_start`, the worker's start) or before a gap in the log are left out."""
    n = len(walls)
    if n < 2:
        return None
    first = int(np.searchsorted(walls, walls[-1] - RATE_WINDOW_S))
    if session_start is not None:
        first = max(first, int(np.searchsorted(walls, session_start)))
    first = min(first, n - 2)  # at least one interval, unless that crosses a session boundary below
    if session_start is not None and walls[first] < session_start:
        return None
    gaps = np.nonzero(np.diff(walls[first:]) > SESSION_GAP_S)[0]
    if len(gaps):
        first += int(gaps[-1]) + 1
    if first >= n - 1:
        return None
    dt = walls[-1] - walls[first]
    return float((steps[-1] - steps[first]) / dt) if dt > 0 else None


THUMB_MIN_PX = 96  # a preview image is shown at least this tall (whole-pixel enlargement of small ones)
THUMB_MAX_W = 320


@dataclass
class PreviewImage:
    """One image of a preview grid: its reconstruction or sample, and the input it reconstructs (stage 1)."""

    image: np.ndarray  # (H, W, 3) uint8
    input: np.ndarray | None = None


def split_preview(grid: np.ndarray, params: dict[str, Any] | None) -> list[PreviewImage]:
    """The images of a worker's preview grid, from the layout the worker recorded with it (rows of tiles
    `pad` apart, the whole grid enlarged `scale` times); a preview without a known layout stays whole."""
    layout = (params or {}).get("layout") or {}
    kind, count = layout.get("kind"), int((params or {}).get("count") or 0)
    if kind not in ("input_recon", "samples") or count < 1:
        return [PreviewImage(grid)]
    (h, w), pad, scale = layout["tile"], int(layout.get("pad", 2)), int(layout.get("scale", 1))
    native = grid[::scale, ::scale]

    def tile(row: int, col: int) -> np.ndarray:
        y, x = row * (h + pad), col * (w + pad)
        return np.ascontiguousarray(native[y : y + h, x : x + w])

    if kind == "samples":
        return [PreviewImage(tile(0, c)) for c in range(count)]
    return [PreviewImage(tile(1, c), input=tile(0, c)) for c in range(count)]


def thumb_scale(height: int) -> float:
    """Whole-pixel enlargement up to THUMB_MIN_PX for small images; larger ones shown as they are."""
    return float(max(1, math.ceil(THUMB_MIN_PX / max(1, height))))


class PreviewThumb(QLabel):
    """One preview image (stage 1: its input above its reconstruction), enlarged in whole pixels; a click
    opens it at full size."""

    clicked = Signal(int)

    def __init__(self, index: int, item: PreviewImage, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.index = index
        image = item.image if item.input is None else np.concatenate([item.input, _gap(item.image), item.image])
        k = thumb_scale(item.image.shape[0])
        if image.shape[1] * k > THUMB_MAX_W:  # a whole grid of unknown layout: as wide as the panel allows
            k = max(1, THUMB_MAX_W // image.shape[1]) if image.shape[1] <= THUMB_MAX_W else THUMB_MAX_W / image.shape[1]
        qimage = qimage_from_array(image)
        size = QSize(round(image.shape[1] * k), round(image.shape[0] * k))
        mode = Qt.TransformationMode.FastTransformation if k >= 1 else Qt.TransformationMode.SmoothTransformation
        self.setPixmap(QPixmap.fromImage(qimage.scaled(size, Qt.AspectRatioMode.KeepAspectRatio, mode)))
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setToolTip("Click to open at full size" + (" with its input and the difference" if item.input is not None
                                                         else ""))  # fmt: skip
        self.setFrameShape(QFrame.Shape.StyledPanel)

    def mouseReleaseEvent(self, event: Any) -> None:
        if event.button() == Qt.MouseButton.LeftButton:
            self.clicked.emit(self.index)
        super().mouseReleaseEvent(event)


def _gap(image: np.ndarray) -> np.ndarray:
    return np.full((2, image.shape[1], 3), 255, np.uint8)


class PreviewDialog(QDialog):
    """A preview image at full size: input and reconstruction side by side in linked zoom views and their
    per-pixel difference as a heatmap (the Reconstruct page's views); a sample on its own."""

    def __init__(self, item: PreviewImage, title: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle(title)
        self.resize(900, 560 if item.input is not None else 520)
        layout = QVBoxLayout(self)
        self.side: SideBySide | None = None
        self.heatmap: HeatmapView | None = None
        self.view: ZoomView | None = None
        if item.input is not None:
            row = QHBoxLayout()
            self.side = SideBySide()
            self.side.set_images(qimage_from_array(item.input), "Input", qimage_from_array(item.image),
                                 "Reconstruction")  # fmt: skip
            row.addWidget(self.side, 2)
            self.heatmap = HeatmapView()
            diff = abs_difference(item.input, item.image)
            self.heatmap.set_data(diff, f"|input − reconstruction| per pixel, mean {diff.mean():.2f} levels", "levels")
            row.addWidget(self.heatmap, 1)
            layout.addLayout(row, 1)
        else:
            self.view = ZoomView()
            self.view.set_image(qimage_from_array(item.image))
            layout.addWidget(self.view, 1)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)


class PreviewStrip(QScrollArea):
    """The images of one preview as thumbnails (≥ 96 px each), wrapped into rows that fit the width."""

    opened = Signal(int)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setFrameShape(QFrame.Shape.NoFrame)
        self.setMinimumSize(160, 120)
        self.host = QWidget()
        self.grid = QGridLayout(self.host)
        self.grid.setContentsMargins(0, 0, 0, 0)
        self.grid.setSpacing(4)
        self.setWidget(self.host)
        self.placeholder = QLabel("No preview yet: the worker writes one at each checkpoint, or press Sample now.")
        self.placeholder.setWordWrap(True)
        self.placeholder.setObjectName("hint")
        self.thumbs: list[PreviewThumb] = []
        self.items: list[PreviewImage] = []
        self._columns = 0
        self.set_items([])

    def set_items(self, items: list[PreviewImage]) -> None:
        self.items = items
        for thumb in self.thumbs:
            thumb.deleteLater()
        self.thumbs = []
        for i, item in enumerate(items):
            thumb = PreviewThumb(i, item)
            thumb.clicked.connect(self.opened)
            self.thumbs.append(thumb)
        self._columns = 0
        self._arrange()
        QTimer.singleShot(0, self._rearrange)  # once laid out, the width is known

    def _rearrange(self) -> None:
        if self.thumbs and self._columns_for_width() != self._columns:
            self._arrange()

    def _columns_for_width(self) -> int:
        width = max(t.pixmap().width() for t in self.thumbs) + self.grid.spacing() + 4
        return max(1, (self.viewport().width() - 4) // width)

    def _arrange(self) -> None:
        while self.grid.count():
            self.grid.takeAt(0)
        if not self.thumbs:
            self.grid.addWidget(self.placeholder, 0, 0)
            self.placeholder.show()
            return
        self.placeholder.hide()
        self._columns = self._columns_for_width()
        for i, thumb in enumerate(self.thumbs):
            self.grid.addWidget(thumb, i // self._columns, i % self._columns, Qt.AlignmentFlag.AlignLeft)
        self.grid.setRowStretch(len(self.thumbs) // self._columns + 1, 1)

    def resizeEvent(self, event: Any) -> None:
        super().resizeEvent(event)
        self._rearrange()

    def sizeHint(self) -> QSize:
        return QSize(320, 240)


class MonitorPage(QWidget):
    def __init__(self, ctx: Any, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.settings = ctx.settings
        self.metrics = ctx.metrics
        self.run_id: int | None = None
        self.overlays: list[int] = []
        self.panels: dict[str, PlotPanel] = {}
        self._panel_order: list[str] = []
        self._dirty: set[tuple[int, str]] = set()
        self._previews: list[Any] = []
        self._run_list: list[tuple[int, str]] = []
        self._rates: dict[int, SessionRate] = {}
        self._follow_newest = True  # until a run is chosen: show the running run, else the newest one
        self.redraws = 0
        self.last_redraw_ms = 0.0

        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 8, 10, 8)
        outer.addLayout(self._build_header())
        outer.addLayout(self._build_options())
        outer.addLayout(self._build_status())

        splitter = QSplitter()
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        grid_host = QWidget()
        self.grid = QGridLayout(grid_host)
        self.grid.setContentsMargins(0, 0, 4, 0)
        self.grid.setSpacing(8)
        self.empty = QLabel("No run selected. Pick one above, double-click a run on the Runs page, or create one "
                            "(Ctrl+N).")  # fmt: skip
        self.empty.setObjectName("hint")
        self.empty.setAlignment(Qt.AlignmentFlag.AlignCenter)
        self.empty.setWordWrap(True)
        self.grid.addWidget(self.empty, 0, 0, 1, COLUMNS)
        self.scroll.setWidget(grid_host)
        splitter.addWidget(self.scroll)
        splitter.addWidget(self._build_side())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([860, 330])
        outer.addWidget(splitter, 1)

        self._redraw = QTimer(self)
        self._redraw.setInterval(REDRAW_MS)
        self._redraw.timeout.connect(self.flush)
        self._redraw.start()
        self.metrics.series_changed.connect(self._on_series)
        self.metrics.keys_changed.connect(self._on_keys)
        ctx.repo.changed.connect(self._refresh_run_list)
        ctx.repo.run_changed.connect(self._on_run_changed)
        ctx.runner.event.connect(self._on_event)
        ctx.runner.log_line.connect(self._on_log)
        self._refresh_run_list()
        self._update_status()

    # ---- layout --------------------------------------------------------------------------------------

    def _build_header(self) -> QHBoxLayout:
        row = QHBoxLayout()
        title = QLabel("Monitor")
        title.setObjectName("pageTitle")
        row.addWidget(title)
        row.addSpacing(12)
        self.run_combo = QComboBox()
        self.run_combo.setObjectName("monitorRun")
        self.run_combo.setMinimumWidth(260)
        self.run_combo.setToolTip("The run whose curves, previews and log are shown.")
        self.run_combo.activated.connect(self._on_combo)
        row.addWidget(self.run_combo)
        self.overlay_button = QToolButton()
        self.overlay_button.setText("Compare with…")
        self.overlay_button.setToolTip("Overlay other runs' curves on the same plots, each in its own colour.")
        self.overlay_button.setPopupMode(QToolButton.ToolButtonPopupMode.InstantPopup)
        self.overlay_menu = QMenu(self)
        self.overlay_button.setMenu(self.overlay_menu)
        row.addWidget(self.overlay_button)
        self.overlay_label = QLabel("")
        self.overlay_label.setObjectName("hint")
        row.addWidget(self.overlay_label, 1)
        self.export_button = QPushButton("Export metrics…")
        self.export_button.setToolTip("Write this run's curves to CSV, JSON lines or a TensorBoard event folder.")
        self.export_button.clicked.connect(self.export_metrics)
        row.addWidget(self.export_button)
        return row

    def export_metrics(self) -> Any:
        from app.widgets.export_metrics import open_export_dialog

        self.export_dialog = open_export_dialog(self, self.ctx, self.run_id)
        return self.export_dialog

    def _build_options(self) -> QHBoxLayout:
        row = QHBoxLayout()
        label = QLabel("Smoothing")
        label.setToolTip("Exponential moving average with debias, computed on every raw value; 0 is off.")
        row.addWidget(label)
        self.smoothing = QSlider(Qt.Orientation.Horizontal)
        self.smoothing.setObjectName("smoothing")
        self.smoothing.setRange(0, 99)
        self.smoothing.setFixedWidth(160)
        self.smoothing.setToolTip(label.toolTip())
        self.smoothing.setValue(round(self.settings.smoothing() * 100))
        self.smoothing_value = QLabel()
        self.smoothing_value.setMinimumWidth(32)
        row.addWidget(self.smoothing)
        row.addWidget(self.smoothing_value)
        row.addSpacing(16)
        self.log_x = QCheckBox("log x")
        self.log_x.setToolTip("Logarithmic step (or time) axis: early training gets as much room as late.")
        self.log_x.setChecked(self.settings.plot_flag("log_x"))
        self.log_y = QCheckBox("log y")
        self.log_y.setToolTip("Logarithmic value axis, for losses that fall over orders of magnitude.")
        self.log_y.setChecked(self.settings.plot_flag("log_y"))
        row.addWidget(self.log_x)
        row.addWidget(self.log_y)
        self.legends = QCheckBox("Legends")
        self.legends.setObjectName("legends")
        self.legends.setToolTip("A line under each plot naming its curves (it never covers the data).")
        self.legends.setChecked(self.settings.plot_flag("legends", True))
        row.addWidget(self.legends)
        row.addSpacing(16)
        row.addWidget(QLabel("x axis"))
        self.x_axis = QComboBox()
        self.x_axis.setToolTip("Plot against optimizer steps or wall-clock time since the run started.")
        self.x_axis.addItem("Step", "step")
        self.x_axis.addItem("Wall time", "time")
        self.x_axis.setCurrentIndex(max(0, self.x_axis.findData(self.settings.x_axis())))
        row.addWidget(self.x_axis)
        row.addStretch(1)
        self.smoothing.valueChanged.connect(self._on_options)
        self.log_x.toggled.connect(self._on_options)
        self.log_y.toggled.connect(self._on_options)
        self.legends.toggled.connect(self._on_options)
        self.x_axis.currentIndexChanged.connect(self._on_options)
        self._apply_option_labels()
        return row

    def _build_status(self) -> QHBoxLayout:
        row = QHBoxLayout()
        self.status = QLabel("–")
        self.status.setObjectName("monitorStatus")
        self.status.setMinimumWidth(90)
        row.addWidget(self.status)
        self.progress = QProgressBar()
        self.progress.setRange(0, 1000)
        self.progress.setTextVisible(True)
        self.progress.setToolTip("Steps done out of the run's budget.")
        row.addWidget(self.progress, 1)
        self.eta = QLabel("")
        self.eta.setMinimumWidth(230)
        self.eta.setToolTip("Speed and estimated time left, from the worker's progress reports.")
        row.addWidget(self.eta)
        self.pause_button = QPushButton("Pause")
        self.pause_button.setToolTip("Pause after the current step; the model stays loaded (Resume continues).")
        self.stop_button = QPushButton("Stop")
        self.stop_button.setToolTip("Save a checkpoint and end training; Resume later continues from it.")
        self.sample_button = QPushButton("Sample now")
        self.sample_button.setToolTip("Write a preview of the fixed validation batch after the current step.")
        self.save_button = QPushButton("Save now")
        self.save_button.setToolTip("Save a resumable checkpoint after the current step.")
        for b in (self.pause_button, self.stop_button, self.sample_button, self.save_button):
            row.addWidget(b)
        self.pause_button.clicked.connect(self._toggle_pause)
        self.stop_button.clicked.connect(lambda: self._act(self.ctx.controller.stop))
        self.sample_button.clicked.connect(lambda: self._act(self.ctx.controller.sample_now))
        self.save_button.clicked.connect(lambda: self._act(self.ctx.controller.save_now))
        return row

    def _build_side(self) -> QWidget:
        side = QSplitter(Qt.Orientation.Vertical)
        previews = QGroupBox("Previews")
        previews.setToolTip("The worker's images of a fixed validation batch, comparable from step to step.")
        pv = QVBoxLayout(previews)
        self.preview = PreviewStrip()
        self.preview.setObjectName("previewImages")
        self.preview.opened.connect(self.open_preview)
        self.preview_dialog: PreviewDialog | None = None
        pv.addWidget(self.preview, 1)
        self.preview_slider = QSlider(Qt.Orientation.Horizontal)
        self.preview_slider.setObjectName("previewSlider")
        self.preview_slider.setToolTip("Go back through earlier previews.")
        self.preview_slider.setRange(0, 0)
        self.preview_slider.valueChanged.connect(self._show_preview)
        pv.addWidget(self.preview_slider)
        self.preview_caption = QLabel("")
        self.preview_caption.setObjectName("hint")
        self.preview_caption.setWordWrap(True)
        pv.addWidget(self.preview_caption)
        side.addWidget(previews)
        logs = QGroupBox("Log")
        lv = QVBoxLayout(logs)
        self.log = QPlainTextEdit()
        self.log.setObjectName("logTail")
        self.log.setReadOnly(True)
        self.log.setMaximumBlockCount(1000)
        self.log.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)  # long lines wrap, none is cut
        self.log.setWordWrapMode(QTextOption.WrapMode.WrapAtWordBoundaryOrAnywhere)
        self.log.setToolTip(
            "The worker's status events and its stderr (errors, warnings). It follows the newest line unless you "
            "scroll up; scroll back to the bottom to follow again."
        )
        self._log_follows = True
        self._log_user = False
        bar = self.log.verticalScrollBar()
        bar.actionTriggered.connect(self._on_log_user_scroll)  # wheel, keys, drags, clicks: not our own moves
        bar.valueChanged.connect(self._on_log_scrolled)
        bar.rangeChanged.connect(self._keep_log_at_bottom)
        lv.addWidget(self.log)
        side.addWidget(logs)
        side.setSizes([420, 240])
        return side

    # ---- which runs ----------------------------------------------------------------------------------

    def show_runs(self, primary: int | None, overlays: list[int] | None = None) -> None:
        """Show `primary` (its previews, log and controls) with `overlays`' curves on the same plots."""
        overlays = [int(r) for r in (overlays or []) if int(r) != primary]
        if primary == self.run_id and overlays == self.overlays:
            return
        if any(self.ctx.repo.run(r) is None for r in ([primary] if primary is not None else []) + overlays):
            self.ctx.repo.refresh()  # a run created since the last poll
        primary_changed = primary != self.run_id
        self.run_id, self.overlays = primary, overlays
        for panel in self.panels.values():
            panel.remove_curves(set())
        self.metrics.watch(self.watched())
        self._dirty.update((r, k) for r in self.watched() for k in self.metrics.keys(r))
        self._relayout_panels()
        self._refresh_run_list()
        if primary_changed:
            self._previews = []
            self.preview_slider.setRange(0, 0)
            self._load_log_history()
            self._refresh_previews()
        self._update_status()
        self._update_overlay_label()
        self.flush()

    def show_default_run(self) -> None:
        """The run a user most likely wants: the one training (or queued) now, else the newest."""
        rows = self.ctx.repo.ordered()
        active = self.ctx.repo.active_ids()
        if active or rows:
            self.show_runs(active[0] if active else rows[-1].id)

    def watched(self) -> list[int]:
        return ([self.run_id] if self.run_id is not None else []) + self.overlays

    def _refresh_run_list(self) -> None:
        rows = self.ctx.repo.ordered()
        if self.run_id is None and self._follow_newest and rows:
            self.show_default_run()
            return
        items = [(r.id, f"{r.info.name}  ·  {r.info.status}") for r in reversed(rows)]
        if items != self._run_list:
            self._run_list = items
            self.run_combo.blockSignals(True)
            self.run_combo.clear()
            for run_id, text in items:
                self.run_combo.addItem(text, run_id)
            if self.run_id is not None:
                self.run_combo.setCurrentIndex(max(0, self.run_combo.findData(self.run_id)))
            else:
                self.run_combo.setCurrentIndex(-1)
                self.run_combo.setPlaceholderText("choose a run")
            self.run_combo.blockSignals(False)
            self._rebuild_overlay_menu(rows)
        wanted = self.run_combo.findData(self.run_id) if self.run_id is not None else -1
        if self.run_combo.currentIndex() != wanted:
            self.run_combo.blockSignals(True)
            self.run_combo.setCurrentIndex(wanted)
            self.run_combo.blockSignals(False)
            self._rebuild_overlay_menu(rows)
        gone = [r for r in self.watched() if self.ctx.repo.run(r) is None and not self._exists(r)]
        if gone:
            primary = None if self.run_id in gone else self.run_id
            self.show_runs(primary, [r for r in self.overlays if r not in gone])

    def _exists(self, run_id: int) -> bool:
        try:
            self.ctx.store.get_run(run_id)
        except ULError:
            return False
        return True

    def _rebuild_overlay_menu(self, rows: list[Any]) -> None:
        self.overlay_menu.clear()
        for row in reversed(rows):
            if row.id == self.run_id:
                continue
            act = QAction(f"{row.info.name} (stage {row.info.stage}, {row.info.status})", self.overlay_menu)
            act.setCheckable(True)
            act.setChecked(row.id in self.overlays)
            act.toggled.connect(lambda on, r=row.id: self._toggle_overlay(r, on))
            self.overlay_menu.addAction(act)
        if self.overlays:
            self.overlay_menu.addSeparator()
            clear = QAction("Clear comparison", self.overlay_menu)
            clear.triggered.connect(lambda: self.show_runs(self.run_id, []))
            self.overlay_menu.addAction(clear)

    def _toggle_overlay(self, run_id: int, on: bool) -> None:
        overlays = [r for r in self.overlays if r != run_id] + ([run_id] if on else [])
        self.show_runs(self.run_id, overlays)

    def _update_overlay_label(self) -> None:
        if not self.overlays:
            self.overlay_label.setText("")
            return
        colors = theme.run_colors()
        names = []
        for i, run_id in enumerate(self.watched()):
            row = self.ctx.repo.run(run_id)
            if row is not None:
                names.append(f"<span style='color:{colors[i % len(colors)]}'>■</span> {row.info.name}")
        self.overlay_label.setText("  ".join(names))

    def _on_combo(self, index: int) -> None:
        run_id = self.run_combo.itemData(index)
        self._follow_newest = False
        if run_id is not None:
            self.show_runs(int(run_id), [r for r in self.overlays if r != run_id])

    # ---- panels and curves ---------------------------------------------------------------------------

    def _keys(self, run_id: int) -> list[str]:
        """The run's metric keys: as fetched, else from the runs list's summary (known before any fetch), so
        a selected run's panels stand at once and the data fills them when it arrives."""
        keys = self.metrics.keys(run_id)
        if keys:
            return keys
        row = self.ctx.repo.run(run_id)
        return sorted(row.summary) if row is not None else []

    def _specs(self) -> list[PanelSpec]:
        keys: set[str] = set()
        for run_id in self.watched():
            keys.update(self._keys(run_id))
        specs = [s for s in PANELS if keys.intersection(s.keys)]
        extra = sorted(keys - known_keys())
        return specs + [panel_for_key(k) for k in extra]

    def _relayout_panels(self) -> None:
        specs = self._specs()
        order = [s.id for s in specs]
        if order == self._panel_order:
            return
        self._panel_order = order
        for panel in self.panels.values():
            self.grid.removeWidget(panel)
            panel.hide()
        self.empty.setVisible(not specs)
        if not specs:
            if self.run_id is None:
                text = "No run selected. Pick a run above, or create one on the Runs page (Ctrl+N)."
            else:
                text = "No metrics yet: the curves appear with the first logged steps."
            self.empty.setText(text)
        for i, spec in enumerate(specs):
            panel = self.panels.get(spec.id)
            if panel is None:
                panel = PlotPanel(spec)
                panel.setObjectName(f"panel:{spec.id}")
                self._configure(panel)
                self.panels[spec.id] = panel
            self.grid.addWidget(panel, 1 + i // COLUMNS, i % COLUMNS)
            panel.show()
        for run_id in self.watched():
            self._dirty.update((run_id, k) for k in self.metrics.keys(run_id))

    def _configure(self, panel: PlotPanel) -> None:
        panel.set_smoothing(self.smoothing_weight())
        panel.set_log(self.log_x.isChecked(), self.log_y.isChecked())
        panel.set_x_mode(self.x_mode())
        panel.set_legend_visible(self.legends.isChecked())

    def _on_keys(self, run_id: int) -> None:
        if run_id in self.watched():
            self._relayout_panels()

    def _on_series(self, run_id: int, key: str) -> None:
        if run_id in self.watched():
            self._dirty.add((run_id, key))

    def smoothing_weight(self) -> float:
        return self.smoothing.value() / 100.0

    def x_mode(self) -> str:
        return str(self.x_axis.currentData())

    def _on_options(self, *_args: Any) -> None:
        self._apply_option_labels()
        self.settings.set_smoothing(self.smoothing_weight())
        self.settings.set_plot_flag("log_x", self.log_x.isChecked())
        self.settings.set_plot_flag("log_y", self.log_y.isChecked())
        self.settings.set_plot_flag("legends", self.legends.isChecked())
        self.settings.set_x_axis(self.x_mode())
        for panel in self.panels.values():
            self._configure(panel)
        for run_id in self.watched():
            self._dirty.update((run_id, k) for k in self.metrics.keys(run_id))
        self.flush()

    def _apply_option_labels(self) -> None:
        w = self.smoothing_weight()
        self.smoothing_value.setText("off" if w == 0 else f"{w:.2f}")

    def _run_t0(self, run_id: int) -> float:
        firsts = [buf.walls[0] for (r, _k), buf in self.metrics.series.items() if r == run_id and len(buf)]
        return min(firsts) if firsts else 0.0

    def flush(self) -> int:
        """Hand changed series to their curves; returns how many curves were updated."""
        if not self._dirty:
            return 0
        start = time.perf_counter()
        dirty, self._dirty = self._dirty, set()
        watched = self.watched()
        colors = theme.run_colors()
        multi = len(watched) > 1
        time_axis = self.x_mode() == "time"
        t0 = {r: self._run_t0(r) for r in watched} if time_axis else {}
        updated = 0
        for spec_id in self._panel_order:
            panel = self.panels[spec_id]
            spec = panel.spec
            for run_id, key in dirty:
                if key not in spec.keys or run_id not in watched:
                    continue
                buf = self.metrics.get(run_id, key)
                if buf is None or not len(buf):
                    continue
                run_index = watched.index(run_id)
                row = self.ctx.repo.run(run_id)
                name = row.info.name if row else f"run {run_id}"
                short = curve_label(key)
                label = (f"{name} · {short}" if len(spec.keys) > 1 else name) if multi else short
                curve_id = f"{run_id}|{key}"
                panel.ensure_curve(
                    curve_id, label, colors[run_index % len(colors)],
                    dashed=spec.paired and spec.keys.index(key) > 0, primary=run_index == 0,
                    order=(run_index, spec.keys.index(key)),
                )  # fmt: skip
                x = buf.minutes_since(t0[run_id]) if time_axis else buf.steps
                smooth_x = smooth_y = smooth_levels = None
                if panel.smoothing > 0:
                    sx, smooth_y = buf.smoothed(panel.smoothing)
                    if time_axis:
                        sx = x if buf.nonfinite == 0 else x[np.isfinite(buf.values)]
                    smooth_x, smooth_levels = sx, buf.smooth.levels
                panel.set_curve_data(
                    curve_id,
                    CurveData(
                        x, buf.values, smooth_x, smooth_y, has_nonfinite=buf.nonfinite > 0,
                        raw_levels=buf.levels(), smooth_levels=smooth_levels,
                        x_sorted=buf.walls_sorted if time_axis else True,
                    ),
                )  # fmt: skip
                updated += 1
        self.redraws += 1
        self.last_redraw_ms = 1000 * (time.perf_counter() - start)
        return updated

    # ---- status, progress, controls ------------------------------------------------------------------

    def _on_run_changed(self, run_id: int) -> None:
        if run_id == self.run_id:
            self._update_status()
            self._refresh_previews()
        if run_id in self.watched():
            self.metrics.set_live(any(self._is_active(r) for r in self.watched()))
            self.metrics.poll()

    def _is_active(self, run_id: int) -> bool:
        row = self.ctx.repo.run(run_id)
        return bool(row and (row.info.status in ACTIVE_RUN_STATUSES or row.info.status == "queued"))

    def _update_status(self) -> None:
        row = self.ctx.repo.run(self.run_id) if self.run_id is not None else None
        buttons = (self.pause_button, self.stop_button, self.sample_button, self.save_button)
        if row is None:
            self.status.setText("–")
            self.progress.setValue(0)
            self.progress.setFormat("")
            self.eta.setText("")
            for b in buttons:
                b.setEnabled(False)
            return
        info = row.info
        color = theme.STATUS_COLORS.get(info.status, "#7a7a7a")
        self.status.setText(f"<b style='color:{color}'>{info.status}</b>")
        if info.total_steps:
            self.progress.setValue(int(1000 * min(1.0, info.step / info.total_steps)))
            self.progress.setFormat(f"step {info.step:,} / {info.total_steps:,}")
        else:
            self.progress.setValue(0)
            self.progress.setFormat(f"step {info.step:,}")
        self.eta.setText(self._eta_text(row))
        status = info.status
        self.pause_button.setText("Resume" if status in ("paused", "stopped", "interrupted", "failed") else "Pause")
        self.pause_button.setEnabled(status in ("running", "paused", "stopped", "interrupted", "failed"))
        self.stop_button.setEnabled(status in ("running", "paused", "queued"))
        self.sample_button.setEnabled(status == "running")
        self.save_button.setEnabled(status == "running")

    def _eta_text(self, row: Any) -> str:
        info = row.info
        if info.status == "completed":
            return f"completed in {fmt.duration(row.duration_s())}"
        if info.status == "queued":
            return "waiting in the queue"
        if info.status == "paused":
            return f"paused at step {info.step:,}"
        if info.status in ("failed", "interrupted") and info.error:
            first = info.error.strip().splitlines()[0]
            self.eta.setToolTip(info.error)
            return first if len(first) <= 60 else first[:57] + "…"
        if info.status not in ACTIVE_RUN_STATUSES:
            return ""
        proc = self.ctx.runner.process_for(info.id)
        progress = proc.last_progress if proc is not None else None
        fresh = progress and time.time() - progress.get("received_at", 0) < 20 and not progress.get("phase")
        rate = self._rates[info.id].rate if fresh and info.id in self._rates else None
        if rate is None:
            rate = self._rate_from_series(info)
        if rate and info.total_steps:
            return f"{rate:.2f} steps/s · ETA {fmt.duration(max(0, info.total_steps - info.step) / rate)}"
        if rate:
            return f"{rate:.2f} steps/s"
        if fresh or info.status == "running":
            return "measuring speed…"
        return info.status

    def _rate_from_series(self, info: Any) -> float | None:
        """The current session's speed from the logged loss (runs re-attached, or between progress reports)."""
        buf = self.metrics.get(info.id, "loss/total")
        if buf is None or len(buf) < 2 or not buf.walls_sorted:
            return None
        start = info.started_at.timestamp() if info.started_at is not None else None
        return session_rate(buf.walls, buf.steps, start)

    def _toggle_pause(self) -> None:
        if self.run_id is None:
            return
        row = self.ctx.repo.run(self.run_id)
        if row is not None and row.info.status == "running":
            self._act(self.ctx.controller.pause)
        else:
            self._act(self.ctx.controller.resume)

    def _act(self, fn: Any) -> None:
        if self.run_id is None:
            return
        try:
            fn(self.run_id)
        except ULError as exc:
            self.ctx.message.emit(str(exc))
        self.ctx.repo.refresh()
        self._update_status()

    def _on_event(self, run_id: int, ev: dict) -> None:
        kind = ev.get("event")
        if kind == "progress" and not ev.get("phase") and isinstance(ev.get("step"), int):
            self._rates.setdefault(run_id, SessionRate()).add(time.time(), int(ev["step"]))
        elif kind == "status" and ev.get("status") != "running":
            self._rates.pop(run_id, None)  # paused, stopping, resumed…: the next reports start a new session
        if run_id != self.run_id:
            return
        if kind == "progress":
            self._update_status()
        elif kind == "preview":
            self._refresh_previews()
        elif kind == "metrics":
            self.metrics.poll()

    # ---- previews ------------------------------------------------------------------------------------

    def _refresh_previews(self) -> None:
        if self.run_id is None:
            self._previews = []
            self.preview.set_items([])
            self.preview_caption.setText("")
            return
        try:
            previews = self.ctx.store.list_artifacts(self.run_id, kind="preview")
        except Exception:
            return
        if [p.id for p in previews] == [p.id for p in self._previews]:
            return
        at_end = self.preview_slider.value() >= len(self._previews) - 1
        self._previews = previews
        self.preview_slider.blockSignals(True)
        self.preview_slider.setRange(0, max(0, len(previews) - 1))
        if at_end or self.preview_slider.value() >= len(previews):
            self.preview_slider.setValue(max(0, len(previews) - 1))
        self.preview_slider.blockSignals(False)
        self.preview_slider.setEnabled(len(previews) > 1)
        self._show_preview(self.preview_slider.value())

    def _show_preview(self, index: int) -> None:
        if not self._previews:
            self.preview.set_items([])
            self.preview_caption.setText("")
            return
        index = max(0, min(index, len(self._previews) - 1))
        art = self._previews[index]
        image = QImage(str(art.path))
        self.preview.set_items([] if image.isNull() else split_preview(array_from_qimage(image), art.params))
        row = self.ctx.repo.run(art.run_id)
        stage = row.info.stage if row else 1
        what = (
            "top: validation inputs · bottom: their reconstructions"
            if stage == 1
            else "samples of the base model decoded by the stage-1 decoder (fixed seeds)"
        )
        step = f"step {art.step:,}" if art.step is not None else "step ?"
        if len(self.preview.items) > 1:
            what = ("each: a validation input above its reconstruction" if stage == 1 else
                    "samples of the base model decoded by the stage-1 decoder (fixed seeds)") + " · click to enlarge"
        self.preview_caption.setText(f"{step} · {index + 1} of {len(self._previews)} · {what}")

    def open_preview(self, index: int) -> PreviewDialog | None:
        """One image of the shown preview at full size (with its input and the difference for stage 1)."""
        if not 0 <= index < len(self.preview.items):
            return None
        art = self._previews[max(0, min(self.preview_slider.value(), len(self._previews) - 1))]
        step = f"step {art.step:,}" if art.step is not None else "preview"
        title = f"{step} · image {index + 1} of {len(self.preview.items)}"
        if self.preview_dialog is not None:
            self.preview_dialog.close()
        dialog = PreviewDialog(self.preview.items[index], title, self)
        dialog.finished.connect(lambda _code, d=dialog: self._forget_dialog(d))
        self.preview_dialog = dialog
        dialog.show()
        return dialog

    def _forget_dialog(self, dialog: PreviewDialog) -> None:
        if self.preview_dialog is dialog:
            self.preview_dialog = None
        dialog.deleteLater()

    # ---- log -----------------------------------------------------------------------------------------

    def _load_log_history(self) -> None:
        proc = self.ctx.runner.process_for(self.run_id) if self.run_id is not None else None
        if proc is not None:
            proc.poll_output()  # lines already in the files are emitted now, so the history does not repeat them
        self.log.clear()
        if self.run_id is None:
            return
        events, stderr = procs.newest_logs(Path(self.ctx.home), self.run_id)
        lines: list[str] = []
        if events is not None:
            for line in procs.tail_lines(events, 400):
                ev = protocol.decode(line)
                text = describe_event(ev) if ev is not None else line
                if text:
                    lines.append(text)
        if stderr is not None:
            err = procs.tail_lines(stderr, 100)
            if err:
                lines.append("— stderr —")
                lines.extend(err)
        row = self.ctx.repo.run(self.run_id)
        if not lines and row is not None and row.info.stderr_tail:
            lines.extend(row.info.stderr_tail.splitlines())
        if not lines and row is not None and row.info.status != "created":
            self.log.setPlaceholderText(
                "No worker log for this run:\nit was trained outside the app\n(e.g. with `ul train`)."
            )
        else:
            self.log.setPlaceholderText("The worker's events and errors appear here while it trains.")
        self._log_follows = True
        self.log.setPlainText("\n".join(lines[-600:]))
        self._keep_log_at_bottom()

    def _on_log(self, run_id: int, line: str) -> None:
        if run_id == self.run_id:
            self.log.appendPlainText(line)
            self._keep_log_at_bottom()

    def _on_log_user_scroll(self, _action: int) -> None:
        """The reader scrolled: follow the newest line again only once they are back at the bottom."""
        self._log_user = True
        QTimer.singleShot(0, self._after_log_user_scroll)  # the bar moves after it announces the action

    def _after_log_user_scroll(self) -> None:
        self._log_user = False
        bar = self.log.verticalScrollBar()
        self._log_follows = bar.value() >= bar.maximum()

    def _on_log_scrolled(self, value: int) -> None:
        """A move the reader did not make (a re-layout, old lines dropped) never leaves the bottom."""
        if self._log_follows and not self._log_user and value < self.log.verticalScrollBar().maximum():
            self._keep_log_at_bottom()

    def _keep_log_at_bottom(self, *_args: Any) -> None:
        """New text, a wrap or a resize changed the scroll range: stay at the bottom when following."""
        if self._log_follows and not self._log_user:
            bar = self.log.verticalScrollBar()
            bar.setValue(bar.maximum())

    def apply_theme(self) -> None:
        for panel in self.panels.values():
            panel.apply_theme()
        for run_id in self.watched():
            self._dirty.update((run_id, k) for k in self.metrics.keys(run_id))
