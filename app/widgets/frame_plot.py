"""A per-frame plot (pyqtgraph): one point per video frame, a line at the frame the players show, and a click
anywhere in the plot seeks to the nearest frame — so a dip in PSNR is one click from the frame that has it."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtWidgets import QWidget

from app import theme


class FramePlot(pg.PlotWidget):
    """Values per frame, drawn at x = 1 … n (the players' frame counter counts from 1 too)."""

    frameClicked = Signal(int)  # 0-based frame index

    def __init__(self, parent: QWidget | None = None, *, y_label: str = "PSNR (dB)") -> None:
        super().__init__(parent)
        self.values = np.zeros(0)
        item = self.getPlotItem()
        item.setLabel("bottom", "frame")
        item.setLabel("left", y_label)
        item.showGrid(x=True, y=True, alpha=0.25)
        item.setMenuEnabled(False)
        item.hideButtons()
        self.setMouseEnabled(x=False, y=False)
        colour = theme.run_colors()[0]
        self.curve = pg.PlotDataItem(
            [], [], pen=pg.mkPen(colour, width=1.5), symbol="o", symbolSize=5, symbolBrush=colour, symbolPen=None
        )
        self.addItem(self.curve)
        self.cursor = pg.InfiniteLine(pos=1, angle=90, movable=False, pen=pg.mkPen("#d32f2f", width=1))
        self.addItem(self.cursor)
        dashed = pg.mkPen("#888888", width=1, style=Qt.PenStyle.DashLine)
        self.mean_line = pg.InfiniteLine(angle=0, movable=False, pen=dashed)
        self.addItem(self.mean_line)
        self.mean_line.setVisible(False)
        self.scene().sigMouseClicked.connect(self._on_click)
        colors = theme.plot_colors()
        self.setBackground(colors["background"])
        for axis in ("left", "bottom"):
            item.getAxis(axis).setPen(colors["muted"])
            item.getAxis(axis).setTextPen(colors["foreground"])
        self.setToolTip("PSNR of each reconstructed frame; click to show that frame in the players.")
        self.setMinimumHeight(130)

    def set_values(self, values: Sequence[float] | None) -> None:
        self.values = np.asarray(list(values or []), dtype=np.float64)
        n = len(self.values)
        finite = np.isfinite(self.values)
        self.curve.setData(np.arange(1, n + 1, dtype=np.float64)[finite], self.values[finite])
        self.mean_line.setVisible(bool(finite.any()))
        if finite.any():
            self.mean_line.setPos(float(self.values[finite].mean()))
            self.setXRange(0.5, n + 0.5, padding=0)
            lo, hi = float(self.values[finite].min()), float(self.values[finite].max())
            pad = max(0.5, 0.1 * (hi - lo))
            self.setYRange(lo - pad, hi + pad, padding=0)
        self.set_current(0)

    def point_count(self) -> int:
        x, _ = self.curve.getData()
        return 0 if x is None else len(x)

    def set_current(self, frame: int) -> None:
        self.cursor.setPos(frame + 1)

    def frame_at(self, scene_pos: QPointF) -> int | None:
        """The 0-based frame nearest to a point of the scene, or None outside the plot or with no data."""
        n = len(self.values)
        vb = self.getPlotItem().vb
        if n == 0 or not vb.sceneBoundingRect().contains(scene_pos):
            return None
        x = vb.mapSceneToView(scene_pos).x()
        return int(min(max(round(x) - 1, 0), n - 1))

    def _on_click(self, event: Any) -> None:
        frame = self.frame_at(event.scenePos())
        if frame is not None:
            self.set_current(frame)
            self.frameClicked.emit(frame)
