"""The Monitor page: live curves of every logged term, progress with ETA, the worker's previews with a
slider through earlier ones, the log tail, and the Pause / Stop / Sample now / Save now buttons.

Series come from `MetricsModel` (read off the GUI thread, incrementally); the page only marks curves dirty
when data arrives and hands arrays to pyqtgraph on a 5 Hz timer. Its parts are widgets of their own (run
choice, plot options, status row, previews, log); speeds, ETA and captions are decided in `app.models`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Qt, QTimer
from PySide6.QtWidgets import (
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSplitter,
    QVBoxLayout,
    QWidget,
)

from app import theme
from app.context import AppContext
from app.models.panels import curve_data, curve_style, panel_specs
from app.models.run_progress import RateBook, is_fresh, series_rate, status_view
from app.plots import PlotPanel
from app.widgets.export_metrics import open_export_dialog
from app.widgets.log_tail import LogTail, run_history
from app.widgets.plot_options import PlotOptions
from app.widgets.previews import PreviewPanel
from app.widgets.run_controls import RunControls
from app.widgets.run_picker import RunPicker
from ul_engine.core.errors import ULError
from ul_engine.store import ACTIVE_RUN_STATUSES

REDRAW_MS = 200
COLUMNS = 2


class MonitorPage(QWidget):
    def __init__(self, ctx: AppContext, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ctx = ctx
        self.settings = ctx.settings
        self.metrics = ctx.metrics
        self.run_id: int | None = None
        self.overlays: list[int] = []
        self.panels: dict[str, PlotPanel] = {}
        self._panel_order: list[str] = []
        self._dirty: set[tuple[int, str]] = set()
        self.rates = RateBook()
        self._follow_newest = True  # until a run is chosen: show the running run, else the newest one
        self.export_dialog: Any = None
        self.redraws = 0
        self.last_redraw_ms = 0.0

        outer = QVBoxLayout(self)
        outer.setContentsMargins(10, 8, 10, 8)
        outer.addLayout(self._build_header())
        self.options = PlotOptions(self.settings)
        self.options.changed.connect(self._on_options)
        outer.addWidget(self.options)
        self.controls = RunControls()
        self.controls.pause_button.clicked.connect(self._toggle_pause)
        self.controls.stop_button.clicked.connect(lambda: self._act(ctx.controller.stop))
        self.controls.sample_button.clicked.connect(lambda: self._act(ctx.controller.sample_now))
        self.controls.save_button.clicked.connect(lambda: self._act(ctx.controller.save_now))
        outer.addWidget(self.controls)

        splitter = QSplitter()
        splitter.addWidget(self._build_plots())
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
        self.picker = RunPicker()
        self.picker.chosen.connect(self._on_chosen)
        self.picker.overlay_toggled.connect(self._toggle_overlay)
        self.picker.overlays_cleared.connect(lambda: self.show_runs(self.run_id, []))
        row.addWidget(self.picker, 1)
        self.export_button = QPushButton("Export metrics…")
        self.export_button.setToolTip("Write this run's curves to CSV, JSON lines or a TensorBoard event folder.")
        self.export_button.clicked.connect(self.export_metrics)
        row.addWidget(self.export_button)
        return row

    def _build_plots(self) -> QScrollArea:
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
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
        scroll.setWidget(grid_host)
        return scroll

    def _build_side(self) -> QSplitter:
        side = QSplitter(Qt.Orientation.Vertical)
        self.previews, self.log, logs = PreviewPanel(), LogTail(), QGroupBox("Log")
        QVBoxLayout(logs).addWidget(self.log)
        side.addWidget(self.previews)
        side.addWidget(logs)
        side.setSizes([420, 240])
        return side

    def export_metrics(self) -> Any:
        self.export_dialog = open_export_dialog(self, self.ctx, self.run_id)
        return self.export_dialog

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
        self._mark_all_dirty()
        self._relayout_panels()
        self._refresh_run_list()
        if primary_changed:
            self.previews.reset()
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
        self.picker.set_rows(rows, self.run_id, self.overlays)
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

    def _toggle_overlay(self, run_id: int, on: bool) -> None:
        overlays = [r for r in self.overlays if r != run_id] + ([run_id] if on else [])
        self.show_runs(self.run_id, overlays)

    def _update_overlay_label(self) -> None:
        names: list[tuple[str, str]] = []
        if self.overlays:
            colors = theme.run_colors()
            for i, run_id in enumerate(self.watched()):
                row = self.ctx.repo.run(run_id)
                if row is not None:
                    names.append((colors[i % len(colors)], row.info.name))
        self.picker.show_compared(names)

    def _on_chosen(self, run_id: int) -> None:
        self._follow_newest = False
        self.show_runs(run_id, [r for r in self.overlays if r != run_id])

    # ---- panels and curves ---------------------------------------------------------------------------

    def _keys(self, run_id: int) -> list[str]:
        """The run's metric keys: as fetched, else from the runs list's summary (known before any fetch), so
        a selected run's panels stand at once and the data fills them when it arrives."""
        keys = self.metrics.keys(run_id)
        if keys:
            return keys
        row = self.ctx.repo.run(run_id)
        return sorted(row.summary) if row is not None else []

    def _mark_all_dirty(self) -> None:
        for run_id in self.watched():
            self._dirty.update((run_id, k) for k in self.metrics.keys(run_id))

    def _relayout_panels(self) -> None:
        specs = panel_specs({k for run_id in self.watched() for k in self._keys(run_id)})
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
            if spec.id not in self.panels:
                self.panels[spec.id] = PlotPanel(spec)
                self.panels[spec.id].setObjectName(f"panel:{spec.id}")
                self.options.configure(self.panels[spec.id])
            panel = self.panels[spec.id]
            self.grid.addWidget(panel, 1 + i // COLUMNS, i % COLUMNS)
            panel.show()
        self._mark_all_dirty()

    def _on_keys(self, run_id: int) -> None:
        if run_id in self.watched():
            self._relayout_panels()

    def _on_series(self, run_id: int, key: str) -> None:
        if run_id in self.watched():
            self._dirty.add((run_id, key))

    def _on_options(self) -> None:
        for panel in self.panels.values():
            self.options.configure(panel)
        self._mark_all_dirty()
        self.flush()

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
        time_axis = self.options.x_mode() == "time"
        t0 = {r: self._run_t0(r) for r in watched} if time_axis else {}
        updated = 0
        for spec_id in self._panel_order:
            panel = self.panels[spec_id]
            for run_id, key in dirty:
                if key in panel.spec.keys and run_id in watched and self._draw_curve(panel, run_id, key, t0):
                    updated += 1
        self.redraws += 1
        self.last_redraw_ms = 1000 * (time.perf_counter() - start)
        return updated

    def _draw_curve(self, panel: PlotPanel, run_id: int, key: str, t0: dict[int, float]) -> bool:
        """Hand one series to its curve in `panel` (x in minutes since `t0[run]` on the time axis)."""
        buf = self.metrics.get(run_id, key)
        if buf is None or not len(buf):
            return False
        watched, colors = self.watched(), theme.run_colors()
        run_index = watched.index(run_id)
        row = self.ctx.repo.run(run_id)
        style = curve_style(panel.spec, key, run_index, len(watched), row.info.name if row else f"run {run_id}")
        curve_id = f"{run_id}|{key}"
        panel.ensure_curve(curve_id, style.label, colors[run_index % len(colors)], dashed=style.dashed,
                           primary=style.primary, order=style.order)  # fmt: skip
        panel.set_curve_data(curve_id, curve_data(buf, panel.smoothing, t0.get(run_id)))
        return True

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
        if row is None:
            self.controls.show_none()
            return
        info = row.info
        proc = self.ctx.runner.process_for(info.id) if info.status in ACTIVE_RUN_STATUSES else None
        progress = proc.last_progress if proc is not None else None
        rate = self.rates.live_rate(info.id, progress)
        if rate is None and info.status in ACTIVE_RUN_STATUSES:
            buf = self.metrics.get(info.id, "loss/total")
            rate = series_rate(buf.walls, buf.steps, buf.walls_sorted, info.started_at) if buf is not None else None
        self.controls.show_view(status_view(row, rate, is_fresh(progress)))

    def _toggle_pause(self) -> None:
        if self.run_id is None:
            return
        row = self.ctx.repo.run(self.run_id)
        if row is not None and row.info.status == "running":
            self._act(self.ctx.controller.pause)
        else:
            self._act(self.ctx.controller.resume)

    def _act(self, fn: Callable[[int], None]) -> None:
        if self.run_id is None:
            return
        try:
            fn(self.run_id)
        except ULError as exc:
            self.ctx.message.emit(str(exc))
        self.ctx.repo.refresh()
        self._update_status()

    def _on_event(self, run_id: int, ev: dict) -> None:
        self.rates.on_event(run_id, ev)
        if run_id != self.run_id:
            return
        kind = ev.get("event")
        if kind == "progress":
            self._update_status()
        elif kind == "preview":
            self._refresh_previews()
        elif kind == "metrics":
            self.metrics.poll()

    # ---- previews and log ----------------------------------------------------------------------------

    def _refresh_previews(self) -> None:
        if self.run_id is None:
            self.previews.clear()
            return
        try:
            artifacts = self.ctx.store.list_artifacts(self.run_id, kind="preview")
        except Exception:
            return
        row = self.ctx.repo.run(self.run_id)
        self.previews.set_artifacts(artifacts, row.info.stage if row else 1)

    def _load_log_history(self) -> None:
        proc = self.ctx.runner.process_for(self.run_id) if self.run_id is not None else None
        if proc is not None:
            proc.poll_output()  # lines already in the files are emitted now, so the history does not repeat them
        self.log.clear()
        if self.run_id is None:
            return
        self.log.show_history(*run_history(Path(self.ctx.home), self.run_id, self.ctx.repo.run(self.run_id)))

    def _on_log(self, run_id: int, line: str) -> None:
        if run_id == self.run_id:
            self.log.append_line(line)

    def apply_theme(self) -> None:
        for panel in self.panels.values():
            panel.apply_theme()
        self._mark_all_dirty()
