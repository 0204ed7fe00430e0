"""pyqtgraph panels for training curves, made to stay fluid with millions of points per curve.

- pyqtgraph only ever gets what the plot can show: per pixel column of the visible x range, the exact min and
  max of the samples in it (`ul_engine.store.decimate.view_points`), answered from min/max levels that each
  series keeps and extends as points arrive. A zoom or a resize asks again; nothing passes over every point.
- Finite-only data is passed with `skipFiniteCheck`; series that logged NaN/inf are drawn with gaps.
- Smoothing is the EMA with debias computed on the raw series (`app.smoothing`); the raw curve is drawn
  faintly behind the smoothed one. Series that are not noisy (the learning rate, counters, evaluations) are
  never smoothed.
- Log axes label whole decades only (or, within one decade, a few plain numbers), so labels never pile up.
- The legend is a line of text under the plot: it names the curves without covering any data.
- Widgets never redraw per event: the Monitor marks curves dirty and flushes them on a timer.

What each panel shows (its keys, title, unit) and the tick labels are Qt-free, in `app.models.panels`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from app import theme
from app.models.panels import CurveData, PanelSpec, curve_signature, decade_label, nice_step, plain_label
from app.widgets.wrap_label import WrapLabel
from ul_engine.store.decimate import ColumnCache, MinMaxPyramid, following_range, view_points

pg.setConfigOptions(antialias=False, useNumba=False, background=None)


class ReadableAxis(pg.AxisItem):
    """An axis whose log mode labels few, whole ticks: decades (every k-th when they would crowd), unlabelled
    2…9 minor ticks while there is room for them, and plain nice numbers when the range is under a decade."""

    LABEL_PX = {"left": 22, "right": 22, "top": 60, "bottom": 60}  # room one label needs along the axis

    def _budget(self, size: float) -> int:
        return max(2, int(size // self.LABEL_PX.get(self.orientation, 40)))

    def logTickValues(self, minVal: float, maxVal: float, size: float, stdTicks: list) -> list:
        lo, hi = sorted((minVal, maxVal))
        if not (math.isfinite(lo) and math.isfinite(hi)) or hi - lo <= 0:
            return [(None, [])]
        budget = self._budget(size)
        first, last = math.ceil(lo - 1e-9), math.floor(hi + 1e-9)
        decades = list(range(first, last + 1))
        if len(decades) >= 2:
            every = max(1, math.ceil(len(decades) / budget))
            majors = [float(d) for d in decades if d % every == 0]
            minors: list[float] = []
            if every == 1 and (hi - lo) <= budget / 3:
                for d in range(math.floor(lo), math.ceil(hi)):
                    minors.extend(d + math.log10(m) for m in range(2, 10) if lo < d + math.log10(m) < hi)
            return [(1.0 * every, majors), (None, minors)]
        # under about a decade: nice linear values inside it, placed on the log axis
        a, b = 10.0**lo, 10.0**hi
        step = nice_step((b - a) / max(2, min(budget, 5)))
        values = np.arange(math.ceil(a / step) * step, b + step * 1e-9, step)
        values = values[values > 0]
        return [(0.0, [float(np.log10(v)) for v in values])]

    def logTickStrings(self, values: list[float], scale: float, spacing: Any) -> list[str]:
        """Decades (spacing >= 1): 10ⁿ; plain values within a decade (spacing 0): 3 digits; 2…9 minors: none."""
        if spacing is None:
            return ["" for _ in values]
        if spacing == 0.0:
            return [plain_label(10.0**v) for v in values]
        return [decade_label(round(v)) for v in values]


@dataclass
class _Curve:
    label: str
    color: str
    dashed: bool
    primary: bool
    order: tuple
    raw: pg.PlotDataItem
    smooth: pg.PlotDataItem
    data: CurveData | None = None
    extra: dict = field(default_factory=dict)
    drawn: tuple | None = None  # what the items hold now: (data id, x range, columns, log x)
    raw_cache: ColumnCache = field(default_factory=ColumnCache)
    smooth_cache: ColumnCache = field(default_factory=ColumnCache)


class PlotPanel(QFrame):
    """One titled plot with raw + smoothed curves per (run, key), log axes, step/time x, a hover read-out and
    a legend line under the plot."""

    def __init__(self, spec: PanelSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.setObjectName("card")
        self.setToolTip(spec.tip)
        self.curves: dict[str, _Curve] = {}
        self.smoothing = 0.0
        self.x_mode = "step"
        self.log_x = self.log_y = False
        self.show_legend = True
        self.drawn_points = 0  # points handed to pyqtgraph by the last draw of every curve (tests, benchmarks)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(2)
        self.title = WrapLabel(f"<b>{spec.title}</b>" + (f" ({spec.y_label})" if spec.y_label else ""))
        self.title.setToolTip(spec.tip)  # a long title takes a second line, never the plot's width
        layout.addWidget(self.title)
        axes = {"left": ReadableAxis("left"), "bottom": ReadableAxis("bottom")}
        for axis in axes.values():  # two tick levels: the third one's grid lines cost more to paint than the data
            axis.setStyle(maxTickLevel=1)
        self.plot = pg.PlotWidget(axisItems=axes)
        self.plot.setMinimumHeight(170)
        self.plot.setToolTip("")
        self.item: pg.PlotItem = self.plot.getPlotItem()
        self.item.showGrid(x=True, y=True, alpha=0.15)
        self.item.hideButtons()
        self.item.setMenuEnabled(True)
        if spec.y_label:
            self.item.setLabel("left", spec.y_label)
        layout.addWidget(self.plot, 1)
        self.legend = WrapLabel("")
        self.legend.setObjectName("plotLegend")
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setToolTip("The curves of this plot; toggle legends with the Legends box above the plots.")
        self.legend.hide()
        layout.addWidget(self.legend)
        self.readout = QLabel(" ")
        self.readout.setObjectName("muted")
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.readout)
        self.hover_line = pg.InfiniteLine(angle=90, movable=False)
        self.hover_line.setZValue(50)
        self.hover_line.hide()
        self.item.addItem(self.hover_line, ignoreBounds=True)
        self.plot.scene().sigMouseMoved.connect(self._on_mouse)
        self.item.vb.sigXRangeChanged.connect(self._on_view_changed)
        self.item.vb.sigResized.connect(self._on_view_changed)
        self.apply_theme()

    # ---- appearance ----------------------------------------------------------------------------------

    def apply_theme(self) -> None:
        colors = theme.plot_colors()
        self.plot.setBackground(colors["background"])
        for axis in ("left", "bottom"):
            ax = self.item.getAxis(axis)
            ax.setPen(colors["muted"])
            ax.setTextPen(colors["foreground"])
        self.hover_line.setPen(pg.mkPen(colors["muted"], width=1, style=Qt.PenStyle.DashLine))
        for curve in self.curves.values():
            self._style(curve)
        self._rebuild_legend()

    def _style(self, curve: _Curve) -> None:
        width = 2.0 if curve.primary else 1.4
        style = Qt.PenStyle.DashLine if curve.dashed else Qt.PenStyle.SolidLine
        faint = QColor(curve.color)
        faint.setAlpha(70 if self.smoothing > 0 else 255)
        curve.raw.setPen(pg.mkPen(faint, width=1 if self.smoothing > 0 else width, style=style))
        curve.smooth.setPen(pg.mkPen(curve.color, width=width, style=style))
        curve.smooth.setVisible(self.smoothing > 0)

    def set_log(self, log_x: bool, log_y: bool) -> None:
        if (log_x, log_y) != (self.log_x, self.log_y):
            self.log_x, self.log_y = log_x, log_y
            self.item.setLogMode(x=log_x, y=log_y)
            for name, log in (("bottom", log_x), ("left", log_y)):  # log ticks carry their own powers of ten
                axis = self.item.getAxis(name)
                axis.autoSIPrefix = not log
                if log:
                    axis.autoSIPrefixScale, axis.labelUnitPrefix = 1.0, ""
                    axis._updateLabel()
                else:
                    axis.updateAutoSIPrefix()
            self._redraw_all()

    def set_x_mode(self, mode: str) -> None:
        self.x_mode = mode
        self.item.setLabel("bottom", "step" if mode == "step" else "time since start (min)")

    def set_smoothing(self, weight: float) -> None:
        """The EMA weight this panel's curves are drawn with (0 for panels whose series are not smoothed)."""
        self.smoothing = float(weight) if self.spec.smooth else 0.0
        for curve in self.curves.values():
            self._style(curve)

    def set_legend_visible(self, visible: bool) -> None:
        self.show_legend = bool(visible)
        self._rebuild_legend()

    # ---- curves --------------------------------------------------------------------------------------

    def ensure_curve(
        self, curve_id: str, label: str, color: str, *, dashed: bool, primary: bool, order: tuple = ()
    ) -> None:
        curve = self.curves.get(curve_id)
        if curve is not None:
            if (curve.label, curve.color, curve.dashed, curve.primary) != (label, color, dashed, primary):
                curve.label, curve.color, curve.dashed, curve.primary = label, color, dashed, primary
                curve.order = order
                self._style(curve)
                self._rebuild_legend()
            return
        raw = pg.PlotDataItem(name=None)
        smooth = pg.PlotDataItem(name=None)
        for item in (raw, smooth):  # the points come decimated to the pixel columns already
            self.item.addItem(item)
            item.setDownsampling(ds=1, auto=False)
            item.setClipToView(False)
        raw.setZValue(1 if not primary else 3)
        smooth.setZValue(2 if not primary else 4)
        curve = _Curve(label, color, dashed, primary, order, raw, smooth)
        self.curves[curve_id] = curve
        self._style(curve)
        self._rebuild_legend()

    def remove_curves(self, keep: set[str]) -> None:
        for curve_id in [c for c in self.curves if c not in keep]:
            curve = self.curves.pop(curve_id)
            self.item.removeItem(curve.raw)
            self.item.removeItem(curve.smooth)
        self._rebuild_legend()

    def _rebuild_legend(self) -> None:
        """One line under the plot naming every curve in its colour and dash (it covers no data)."""
        if not self.show_legend or len(self.curves) < 2:
            self.legend.hide()
            self.legend.setText("")
            return
        parts = []
        for curve in sorted(self.curves.values(), key=lambda c: c.order):
            mark = "╌╌" if curve.dashed else "━━"
            parts.append(f"<span style='color:{curve.color}'>{mark}</span>&nbsp;{curve.label}")
        self.legend.setText("&nbsp;&nbsp; ".join(parts))
        self.legend.show()

    def set_curve_data(self, curve_id: str, data: CurveData) -> None:
        """Hand new arrays to one curve (call from the redraw timer, not per event). Nothing is redrawn when
        the series did not change since the last call (same points, same levels)."""
        curve = self.curves[curve_id]
        if data.raw_levels is None and data.x_sorted:
            data.raw_levels = MinMaxPyramid()
            data.raw_levels.extend(data.raw_y)
        if data.smooth_levels is None and data.smooth_y is not None and data.x_sorted:
            data.smooth_levels = MinMaxPyramid()
            data.smooth_levels.extend(data.smooth_y)
        curve.data = data
        curve.extra["signature"] = curve_signature(data)
        self._draw(curve)

    def _columns(self) -> int:
        return max(64, int(self.item.vb.width()) or 0)

    def _x_range(self, x: np.ndarray) -> tuple[float, float]:
        """The data x range the view shows. While the x axis follows the data: the whole series, on a column
        grid that only grows in steps, so points arriving reuse the columns already filled."""
        if self.item.vb.state["autoRange"][0] is not False or not len(x):
            if not len(x):
                return 0.0, 1.0
            return following_range(float(x[0]), float(x[-1]), log_x=self.log_x)
        lo, hi = self.item.vb.viewRange()[0]
        if self.log_x:
            lo, hi = 10.0 ** max(min(lo, 300), -300), 10.0 ** max(min(hi, 300), -300)
        return float(lo), float(hi)

    def _draw(self, curve: _Curve) -> None:
        d = curve.data
        if d is None:
            return
        x_lo, x_hi = self._x_range(d.raw_x)
        smoothed = self.smoothing > 0 and d.smooth_x is not None
        key = (curve.extra.get("signature"), x_lo, x_hi, self._columns(), self.log_x, self.log_y, smoothed)
        if key == curve.drawn:
            return
        curve.drawn = key
        # log axes turn x <= 0 or y <= 0 into -inf: let pyqtgraph drop those points then
        finite_only = not d.has_nonfinite and not (self.log_x or self.log_y)
        kwargs: dict = {"skipFiniteCheck": finite_only}
        if not finite_only:
            kwargs["connect"] = "finite"
        x, y = self._visible(d.raw_x, d.raw_y, d.raw_levels, d.x_sorted, x_lo, x_hi, curve.raw_cache)
        curve.raw.setData(x, y, **kwargs)
        points = len(x)
        if smoothed and d.smooth_x is not None and d.smooth_y is not None:
            sx, sy = self._visible(d.smooth_x, d.smooth_y, d.smooth_levels, d.x_sorted, x_lo, x_hi, curve.smooth_cache)
            curve.smooth.setData(sx, sy, skipFiniteCheck=not (self.log_x or self.log_y))
            points += len(sx)
        else:
            curve.smooth.setData([], [])
        curve.extra["points"] = points
        self.drawn_points = sum(c.extra.get("points", 0) for c in self.curves.values())

    def _visible(
        self,
        x: np.ndarray,
        y: np.ndarray,
        levels: MinMaxPyramid | None,
        x_sorted: bool,
        x_lo: float,
        x_hi: float,
        cache: ColumnCache,
    ) -> tuple[np.ndarray, np.ndarray]:
        if levels is None or not x_sorted or len(x) != levels.n:
            return x, y  # unsorted x (a clock that went back): every point, pyqtgraph copes
        return view_points(x, y, levels, x_lo, x_hi, self._columns(), log_x=self.log_x, cache=cache)

    def _on_view_changed(self, *_args: Any) -> None:
        """A zoom, pan or resize: hand every curve the points of the new view (cheap: O(columns · log n))."""
        for curve in self.curves.values():
            self._draw(curve)

    def _redraw_all(self) -> None:
        """Draw every curve again (log axes changed: what is finite changed)."""
        for curve in self.curves.values():
            curve.drawn = None
            self._draw(curve)

    def has_data(self) -> bool:
        return any(c.data is not None and len(c.data.raw_x) for c in self.curves.values())

    # ---- hover read-out ------------------------------------------------------------------------------

    def _on_mouse(self, pos: QPointF) -> None:
        if not self.plot.sceneBoundingRect().contains(pos) or not self.curves:
            self.hover_line.hide()
            return
        point = self.item.vb.mapSceneToView(pos)
        x = point.x()
        if self.log_x:
            x = 10**x
        self.show_readout(x)

    def show_readout(self, x: float) -> str:
        """Write the values of every curve at the sample nearest to `x` (in data units) under the plot."""
        parts = []
        shown_x = None
        for curve in self.curves.values():
            d = curve.data
            if d is None or not len(d.raw_x):
                continue
            i = int(np.clip(np.searchsorted(d.raw_x, x), 0, len(d.raw_x) - 1))
            if i > 0 and abs(d.raw_x[i - 1] - x) < abs(d.raw_x[i] - x):
                i -= 1
            shown_x = d.raw_x[i] if shown_x is None else shown_x
            text = f"{d.raw_y[i]:.5g}"
            if self.smoothing > 0 and d.smooth_x is not None and d.smooth_y is not None and len(d.smooth_x):
                j = int(np.clip(np.searchsorted(d.smooth_x, d.raw_x[i]), 0, len(d.smooth_x) - 1))
                text += f" (smoothed {d.smooth_y[j]:.5g})"
            parts.append(f"<span style='color:{curve.color}'>■</span> {curve.label}: {text}")
        if shown_x is None:
            return ""
        axis = "step" if self.x_mode == "step" else "min"
        head = f"{axis} {shown_x:,.0f}" if self.x_mode == "step" else f"{shown_x:.2f} {axis}"
        html = f"{head} · " + " · ".join(parts)
        self.readout.setText(html)
        cursor_x = np.log10(shown_x) if self.log_x and shown_x > 0 else shown_x
        self.hover_line.setPos(cursor_x)
        self.hover_line.show()
        return html
