"""What the Monitor's plots show, without Qt: the panels (which metric keys each one draws, its title, unit and
tooltip), the words a legend uses for a key, the tick labels of log axes, and one curve's arrays (`CurveData`).

The widgets in `app.plots` draw these; keeping them here lets the page's layout decisions and the labels be
checked without a display.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from app import glossary
from ul_engine.store.decimate import MinMaxPyramid


@dataclass(frozen=True)
class PanelSpec:
    """A plot panel: its title, the metric keys drawn in it (first present wins the colour slot), a tooltip."""

    id: str
    title: str
    keys: tuple[str, ...]
    tip: str
    y_label: str = ""  # the unit, shown on the value axis and after the title
    optional: bool = False  # only shown when one of its keys has data
    paired: bool = False  # the keys are two views of one term: the second is drawn dashed
    smooth: bool = True  # False for series that are not noisy (a schedule, a counter, sparse evaluations)

    @property
    def heading(self) -> str:
        return f"{self.title} ({self.y_label})" if self.y_label else self.title


PANELS: tuple[PanelSpec, ...] = (
    PanelSpec(
        "rate", "Latent bits (rate)", ("rate/bits_per_pixel", "rate/base_bits_per_pixel"),
        "Bits per pixel the latent costs under the learned prior (stage 2: under the base model); "
        "lower means a smaller latent.", "bits / pixel",
    ),
    PanelSpec(
        "preview_psnr", "Preview reconstruction PSNR", ("preview/psnr",),
        "PSNR of the preview reconstructions against their inputs, measured at each preview (higher is "
        "better; about 30 dB looks close to the input).", "dB", optional=True, smooth=False,
    ),
    PanelSpec(
        "decoder", "Decoder loss", ("loss/decoder", "loss/decoder_elbo"),
        "The decoder's weighted diffusion loss (solid) and its unweighted ELBO term (dashed).", "nats",
        paired=True,
    ),
    PanelSpec(
        "total", "Total loss", ("loss/total",), "The loss the optimizer minimises (prior + decoder terms).", "nats"
    ),
    PanelSpec(
        "prior", "Prior diffusion loss", ("loss/prior_diffusion",),
        "The latent prior's diffusion (rate) term of the loss.", "nats",
    ),
    PanelSpec(
        "kl1", "KL at t = 1", ("loss/prior_kl1",),
        glossary.tip("kl1"), "nats",
    ),
    PanelSpec(
        "base", "Base model loss", ("loss/base_weighted", "loss/base_elbo"),
        "Stage 2: the base model's weighted loss (solid) and ELBO (dashed).", "nats", optional=True, paired=True,
    ),
    PanelSpec(
        "lr", "Learning rate", ("optim/lr",), "The optimizer's learning rate (warm-up, then constant).",
        "per step", smooth=False,
    ),
    PanelSpec(
        "grad", "Gradient norm", ("optim/grad_norm",),
        "Global gradient norm before clipping; spikes hint at instability.", "L2 norm",
    ),
    PanelSpec(
        "speed", "Throughput", ("perf/examples_per_s",), "Training examples per second.", "examples / s"
    ),
    PanelSpec(
        "psnr", "Evaluation: PSNR", ("eval/psnr",), "Reconstruction PSNR on the fixed validation set.",
        "dB", optional=True, smooth=False,
    ),
    PanelSpec(
        "eval_bpp", "Evaluation: bits/pixel", ("eval/bits_per_pixel",),
        "Bits per pixel on the fixed validation set.", "bits / pixel", optional=True, smooth=False,
    ),
    PanelSpec(
        "eval_ssim", "Evaluation: SSIM", ("eval/ssim",),
        "Structural similarity of the reconstructions on the fixed validation set (1 = identical).", "0–1",
        optional=True, smooth=False,
    ),
    PanelSpec(
        "eval_bpd", "Evaluation: bits per latent dimension", ("eval/bits_per_dim",),
        "The latent's rate per latent dimension on the fixed validation set.", "bits / dim", optional=True,
        smooth=False,
    ),
    PanelSpec(
        "nats", "Latent rate per image", ("rate/nats",), "The latent's rate: the information it carries per image.",
        "nats / image",
    ),
    PanelSpec(
        "bits_dim", "Latent rate per dimension", ("rate/bits_per_latent_dim", "rate/base_bits_per_latent_dim"),
        "The latent's rate per latent dimension (stage 2: under the base model).", "bits / latent dim",
    ),
    PanelSpec(
        "bits_sub", "Latent rate per colour value", ("rate/bits_per_subpixel",),
        "The latent's rate per colour channel value of the image.", "bits / subpixel",
    ),
    PanelSpec(
        "normal_kl", "Rate under a standard normal prior", ("rate/normal_kl_bits_per_pixel",),
        "What the latent would cost under a plain standard normal instead of the learned prior.", "bits / pixel",
        optional=True,
    ),
    PanelSpec(
        "prior_kl_normal", "Prior KL to a standard normal", ("loss/prior_kl_normal",),
        "The KL term of the latent to a standard normal (when that loss term is on).", "nats", optional=True,
    ),
    PanelSpec(
        "entropy", "Encoder entropy", ("loss/encoder_entropy",),
        "The entropy term of the encoder's noise (when that loss term is on).", "nats", optional=True,
    ),
    PanelSpec(
        "z_std", "Latent spread", ("latent/z_clean_std",),
        "Standard deviation of the encoder's clean latent: near 0 means the latent carries little.",
        "std, latent units",
    ),
    PanelSpec(
        "bad_steps", "Skipped steps", ("train/bad_steps",),
        "Consecutive steps skipped for a non-finite loss or gradient; training stops when too many follow.",
        "steps", smooth=False,
    ),
)  # fmt: skip


def _words(key: str) -> str:
    group, _, name = key.rpartition("/")
    text = name.replace("_", " ").strip() or key
    text = text[:1].upper() + text[1:]
    return f"{text} ({group.replace('/', ' · ')})" if group else text


def panel_for_key(key: str) -> PanelSpec:
    """A panel of its own for a logged key no predefined panel shows (so every term is plotted), titled in
    words; its unit is unknown, so the tooltip names the raw key."""
    return PanelSpec(key, _words(key), (key,), f"The logged metric {key}.")


CURVE_LABELS = {
    "loss/decoder": "weighted", "loss/decoder_elbo": "ELBO", "loss/base_weighted": "weighted",
    "loss/base_elbo": "ELBO", "rate/bits_per_pixel": "stage 1", "rate/base_bits_per_pixel": "base model",
    "rate/bits_per_latent_dim": "stage 1", "rate/base_bits_per_latent_dim": "base model",
}  # fmt: skip


def curve_label(key: str) -> str:
    """How a legend names one term of a panel: a word, not the metric's key."""
    return CURVE_LABELS.get(key) or key.rpartition("/")[2].replace("_", " ")


def known_keys() -> set[str]:
    return {k for spec in PANELS for k in spec.keys}


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def decade_label(exponent: int) -> str:
    """10 to a whole power, the way a reader expects it: 0.01 … 1000 near 1, else 10⁻⁴ / 10⁵."""
    if -2 <= exponent <= 3:
        return f"{10.0**exponent:g}"
    return "10" + str(exponent).translate(SUPERSCRIPT)


def plain_label(value: float) -> str:
    """Three significant digits; very small or large values as m·10ⁿ (the decades' style)."""
    if value == 0 or 1e-3 <= abs(value) < 1e4:
        return f"{value:.3g}"
    exponent = math.floor(math.log10(abs(value)))
    mantissa = f"{value / 10.0**exponent:.3g}"
    return ("" if mantissa == "1" else f"{mantissa}·") + decade_label(exponent)


def curve_signature(d: CurveData) -> tuple:
    """What identifies a series' points: lengths, ends and the levels' generation (a rewrite starts a new one)."""

    def ends(a: np.ndarray | None) -> tuple:
        return (len(a), float(a[0]), float(a[-1])) if a is not None and len(a) else (0,)

    def levels(p: MinMaxPyramid | None) -> tuple:
        return (id(p), p.generation, p.n) if p is not None else (None,)

    return ends(d.raw_x), ends(d.smooth_x), levels(d.raw_levels), levels(d.smooth_levels), d.has_nonfinite


def nice_step(raw: float) -> float:
    if raw <= 0 or not math.isfinite(raw):
        return 1.0
    power = 10.0 ** math.floor(math.log10(raw))
    for m in (1, 2, 2.5, 5, 10):
        if m * power >= raw:
            return m * power
    return 10 * power


@dataclass
class CurveData:
    """What one curve shows: x (float64, ascending) and y, raw and smoothed, with the min/max levels of the
    y values when the series keeps them (else the panel builds its own)."""

    raw_x: np.ndarray
    raw_y: np.ndarray
    smooth_x: np.ndarray | None = None
    smooth_y: np.ndarray | None = None
    has_nonfinite: bool = False
    raw_levels: MinMaxPyramid | None = None
    smooth_levels: MinMaxPyramid | None = None
    x_sorted: bool = True


def panel_specs(keys: set[str]) -> list[PanelSpec]:
    """The panels for a set of logged keys: the predefined ones that show any of them, in their order, then a
    panel of its own for every key none of them shows."""
    specs = [s for s in PANELS if keys.intersection(s.keys)]
    return specs + [panel_for_key(k) for k in sorted(keys - known_keys())]


@dataclass(frozen=True)
class CurveStyle:
    """How one (run, key) curve looks in its panel: its legend label, dash, weight and legend order."""

    label: str
    dashed: bool
    primary: bool
    order: tuple[int, int]


def curve_style(spec: PanelSpec, key: str, run_index: int, runs: int, run_name: str) -> CurveStyle:
    """The shown run (index 0) is drawn heavier; with compared runs the label names the run; the second key of
    a paired panel is dashed."""
    short = curve_label(key)
    label = (f"{run_name} · {short}" if len(spec.keys) > 1 else run_name) if runs > 1 else short
    position = spec.keys.index(key)
    return CurveStyle(label, spec.paired and position > 0, run_index == 0, (run_index, position))


def curve_data(buf: Any, smoothing: float, t0: float | None) -> CurveData:
    """One series (a `SeriesBuffer`) as a curve's arrays: x in steps, or in minutes since `t0` on the time axis,
    with the smoothed values (finite ones only) when `smoothing` > 0."""
    time_axis = t0 is not None
    x = buf.minutes_since(t0) if time_axis else buf.steps
    smooth_x = smooth_y = smooth_levels = None
    if smoothing > 0:
        sx, smooth_y = buf.smoothed(smoothing)
        if time_axis:
            sx = x if buf.nonfinite == 0 else x[np.isfinite(buf.values)]
        smooth_x, smooth_levels = sx, buf.smooth.levels
    return CurveData(
        x, buf.values, smooth_x, smooth_y, has_nonfinite=buf.nonfinite > 0, raw_levels=buf.levels(),
        smooth_levels=smooth_levels, x_sorted=buf.walls_sorted if time_axis else True,
    )  # fmt: skip
