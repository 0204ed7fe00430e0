"""pyqtgraph panels for training curves, made to stay fluid with millions of points per curve.

- Every curve uses peak (min/max) downsampling matched to the pixel width and clip-to-view, with float64
  x arrays (searchsorted on float32/int x is orders of magnitude slower in pyqtgraph's clipping).
- Finite-only data is passed with `skipFiniteCheck`; series that logged NaN/inf are drawn with gaps.
- Smoothing is the EMA with debias computed on the raw series (`app.smoothing`); the raw curve is drawn
  faintly behind the smoothed one.
- Widgets never redraw per event: the Monitor marks curves dirty and flushes them on a timer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, Qt
from PySide6.QtGui import QColor
from PySide6.QtWidgets import QFrame, QLabel, QVBoxLayout, QWidget

from app import glossary, theme

pg.setConfigOptions(antialias=False, useNumba=False, background=None)


@dataclass(frozen=True)
class PanelSpec:
    """A plot panel: its title, the metric keys drawn in it (first present wins the colour slot), a tooltip."""

    id: str
    title: str
    keys: tuple[str, ...]
    tip: str
    y_label: str = ""
    optional: bool = False  # only shown when one of its keys has data
    paired: bool = False  # the keys are two views of one term: the second is drawn dashed


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "rate", "Latent bits (rate)", ("rate/bits_per_pixel", "rate/base_bits_per_pixel"),
        "Bits per pixel the latent costs under the learned prior (stage 2: under the base model); "
        "lower means a smaller latent.", "bits / pixel",
    ),
    PanelSpec(
        "decoder", "Decoder loss", ("loss/decoder", "loss/decoder_elbo"),
        "The decoder's weighted diffusion loss (solid) and its unweighted ELBO term (dashed).", paired=True,
    ),
    PanelSpec("total", "Total loss", ("loss/total",), "The loss the optimizer minimises (prior + decoder terms)."),
    PanelSpec(
        "prior", "Prior diffusion loss", ("loss/prior_diffusion",),
        "The latent prior's diffusion (rate) term of the loss in nats.",
    ),
    PanelSpec(
        "kl1", "KL at t = 1", ("loss/prior_kl1",),
        glossary.tip("kl1"),
    ),
    PanelSpec(
        "base", "Base model loss", ("loss/base_weighted", "loss/base_elbo"),
        "Stage 2: the base model's weighted loss (solid) and ELBO (dashed).", optional=True, paired=True,
    ),
    PanelSpec("lr", "Learning rate", ("optim/lr",), "The optimizer's learning rate (warm-up, then constant)."),
    PanelSpec(
        "grad", "Gradient norm", ("optim/grad_norm",),
        "Global gradient norm before clipping; spikes hint at instability.",
    ),
    PanelSpec(
        "speed", "Throughput", ("perf/examples_per_s",), "Training examples per second.", "examples / s"
    ),
    PanelSpec(
        "psnr", "Evaluation: PSNR", ("eval/psnr",), "Reconstruction PSNR on the fixed validation set (dB).",
        "dB", optional=True,
    ),
    PanelSpec(
        "eval_bpp", "Evaluation: bits/pixel", ("eval/bits_per_pixel",),
        "Bits per pixel on the fixed validation set.", "bits / pixel", optional=True,
    ),
)  # fmt: skip

KEY_TIPS = {
    "rate/nats": "The latent's rate in nats per image.",
    "rate/bits_per_latent_dim": "The latent's rate in bits per latent dimension.",
    "rate/bits_per_subpixel": "The latent's rate in bits per colour channel value.",
    "rate/base_bits_per_latent_dim": "Stage 2: the base model's bits per latent dimension.",
    "latent/z_clean_std": "Standard deviation of the encoder's clean latent.",
    "train/bad_steps": "Consecutive steps skipped for a non-finite loss or gradient.",
}


def panel_for_key(key: str) -> PanelSpec:
    """A panel of its own for a logged key no predefined panel shows (so every term is plotted)."""
    return PanelSpec(key, key, (key,), KEY_TIPS.get(key, f"The logged metric {key}."))


def known_keys() -> set[str]:
    return {k for spec in PANELS for k in spec.keys}


@dataclass
class CurveData:
    """What one curve shows: x (float64, sorted) and y, raw and smoothed."""

    raw_x: np.ndarray
    raw_y: np.ndarray
    smooth_x: np.ndarray | None = None
    smooth_y: np.ndarray | None = None
    has_nonfinite: bool = False


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


class PlotPanel(QFrame):
    """One titled plot with raw + smoothed curves per (run, key), log axes, step/time x and a hover read-out."""

    def __init__(self, spec: PanelSpec, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.setObjectName("card")
        self.setToolTip(spec.tip)
        self.curves: dict[str, _Curve] = {}
        self.smoothing = 0.0
        self.x_mode = "step"
        self.log_x = self.log_y = False
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 4, 6, 4)
        layout.setSpacing(2)
        self.title = QLabel(f"<b>{spec.title}</b>")
        self.title.setToolTip(spec.tip)
        layout.addWidget(self.title)
        self.plot = pg.PlotWidget()
        self.plot.setMinimumHeight(170)
        self.plot.setToolTip("")
        self.item: pg.PlotItem = self.plot.getPlotItem()
        self.item.setDownsampling(auto=True, mode="peak")
        self.item.setClipToView(True)
        self.item.showGrid(x=True, y=True, alpha=0.15)
        self.item.hideButtons()
        self.item.setMenuEnabled(True)
        if spec.y_label:
            self.item.setLabel("left", spec.y_label)
        layout.addWidget(self.plot, 1)
        self.readout = QLabel(" ")
        self.readout.setObjectName("muted")
        self.readout.setTextFormat(Qt.TextFormat.RichText)
        layout.addWidget(self.readout)
        self.cursor = pg.InfiniteLine(angle=90, movable=False)
        self.cursor.setZValue(50)
        self.cursor.hide()
        self.item.addItem(self.cursor, ignoreBounds=True)
        self.legend: pg.LegendItem | None = None
        self.plot.scene().sigMouseMoved.connect(self._on_mouse)
        self.apply_theme()

    # ---- appearance ----------------------------------------------------------------------------------

    def apply_theme(self) -> None:
        colors = theme.plot_colors()
        self.plot.setBackground(colors["background"])
        for axis in ("left", "bottom"):
            ax = self.item.getAxis(axis)
            ax.setPen(colors["muted"])
            ax.setTextPen(colors["foreground"])
        self.cursor.setPen(pg.mkPen(colors["muted"], width=1, style=Qt.PenStyle.DashLine))
        for curve in self.curves.values():
            self._style(curve)

    def _style(self, curve: _Curve) -> None:
        width = 2.0 if curve.primary else 1.4
        style = Qt.PenStyle.DashLine if curve.dashed else Qt.PenStyle.SolidLine
        faint = QColor(curve.color)
        faint.setAlpha(70 if self.smoothing > 0 else 255)
        curve.raw.setPen(pg.mkPen(faint, width=1 if self.smoothing > 0 else width, style=style))
        curve.smooth.setPen(pg.mkPen(curve.color, width=width, style=style))
        curve.smooth.setVisible(self.smoothing > 0)

    def set_log(self, log_x: bool, log_y: bool) -> None:
        self.log_x, self.log_y = log_x, log_y
        self.item.setLogMode(x=log_x, y=log_y)

    def set_x_mode(self, mode: str) -> None:
        self.x_mode = mode
        self.item.setLabel("bottom", "step" if mode == "step" else "time since start (min)")

    def set_smoothing(self, weight: float) -> None:
        self.smoothing = float(weight)
        for curve in self.curves.values():
            self._style(curve)

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
        smooth = pg.PlotDataItem(name=label)
        # raw data: min/max per pixel column, so no spike is hidden; the smoothed line has no spikes left,
        # so striding through it (no pass over every point) draws the same picture faster
        for item, method in ((raw, "peak"), (smooth, "subsample")):
            item.setDownsampling(auto=True, method=method)
            item.setClipToView(True)
            self.item.addItem(item)
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
        if self.legend is not None:
            self.legend.scene() and self.legend.scene().removeItem(self.legend)
            self.legend = None
        keys = {curve_id.split("|", 1)[-1] for curve_id in self.curves}
        if len(keys) < 2:  # runs are told apart by the colour key above the plots; a legend would only cover data
            return
        colors = theme.plot_colors()
        background = QColor(colors["background"])
        background.setAlpha(200)
        self.legend = pg.LegendItem(
            offset=(-8, 8),
            labelTextColor=colors["foreground"],
            labelTextSize="8pt",
            brush=background,
            pen=pg.mkPen(colors["muted"], width=0.5),
            verSpacing=-6,
        )
        self.legend.setParentItem(self.item.vb)
        for curve in sorted(self.curves.values(), key=lambda c: c.order):
            self.legend.addItem(curve.smooth if self.smoothing > 0 else curve.raw, curve.label)

    def set_curve_data(self, curve_id: str, data: CurveData) -> None:
        """Hand new arrays to one curve (call from the redraw timer, not per event)."""
        curve = self.curves[curve_id]
        curve.data = data
        # log axes turn x <= 0 or y <= 0 into -inf: let pyqtgraph drop those points then
        finite_only = not data.has_nonfinite and not (self.log_x or self.log_y)
        kwargs: dict = {"skipFiniteCheck": finite_only}
        if not finite_only:
            kwargs["connect"] = "finite"
        curve.raw.setData(data.raw_x, data.raw_y, **kwargs)
        if self.smoothing > 0 and data.smooth_x is not None:
            curve.smooth.setData(data.smooth_x, data.smooth_y, skipFiniteCheck=not (self.log_x or self.log_y))
        else:
            curve.smooth.setData([], [])

    def has_data(self) -> bool:
        return any(c.data is not None and len(c.data.raw_x) for c in self.curves.values())

    # ---- hover read-out ------------------------------------------------------------------------------

    def _on_mouse(self, pos: QPointF) -> None:
        if not self.plot.sceneBoundingRect().contains(pos) or not self.curves:
            self.cursor.hide()
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
            if self.smoothing > 0 and d.smooth_x is not None and len(d.smooth_x):
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
        self.cursor.setPos(cursor_x)
        self.cursor.show()
        return html
