"""The Latents page's state and rules, without Qt: which image is in which slot and whether its latent is current,
what each scrubber asks the session worker to decode, the texts the page shows, and what the page says about a
picture that is not the run's size (the encoder sees one model-sized square of it).

The page (`app/pages/latents.py`) owns the widgets and the session requests; everything here is plain data, so
it is tested without a window.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PIL import Image

from ul_engine.core.demo import SHIPPED
from ul_engine.core.errors import ULError
from ul_engine.core.media import probe_image
from ul_engine.core.reconstruction import MAX_RECONSTRUCT_SIDE
from ul_engine.core.sample_settings import read_sample_settings

SLOTS = ("a", "b")
SCRUBS = ("interpolate", "noise", "channel", "trajectory")
EXPORT_CHUNK = 4  # frames per decode request of an export: the progress advances at this granularity
OFFSET_RANGE = 3.0  # the channel-offset slider spans ±this
PREVIEW_DENOISER_STEPS = 8  # the noise scrub's prior/base steps over the whole λ range while dragging
INTERP_POSITIONS = 100
NOISE_POSITIONS = 150
CHANNEL_POSITIONS = 120
DEFAULT_LAMBDA_RANGE = (-10.0, 5.0)
TRAJECTORY_PARAMS = ("sampler", "guidance", "class")  # a sample's settings the trajectory samples with
EXIF_ORIENTATION = 0x0112
SWAPPING_ORIENTATIONS = (5, 6, 7, 8)  # EXIF orientations that turn the picture by a quarter (width ↔ height)

Result = dict[str, Any]


# ---- what the page says about the picture's size ----------------------------------------------------


def source_size(path: str | Path) -> tuple[int, int] | None:
    """(width, height) as the reader will produce it (EXIF rotation applied), from the header only; None when
    the header is unreadable (the analysis then says why)."""
    try:
        w, h = probe_image(path)  # the one path check and size limit (a FIFO or a bomb is refused, not opened)
        with Image.open(path) as im:
            orientation = int(im.getexif().get(EXIF_ORIENTATION, 1))
    except (ULError, OSError, ValueError, SyntaxError):
        return None
    return (h, w) if orientation in SWAPPING_ORIENTATIONS else (w, h)


def fit_note(size: tuple[int, int] | None, resolution: int, *, tiled: bool) -> str:
    """One plain line on what the encoder gets from a picture of `size` when the run works on `resolution`²
    squares; empty when the picture is already that square. `tiled`: the run is a shipped model that Reconstruct
    applies in tiles of its crop (any other run Reconstruct encodes at the photo's own size)."""
    if size is None or resolution < 1:
        return ""
    w, h = size
    if (w, h) == (resolution, resolution):
        return ""
    how = "Downscaled" if min(w, h) > resolution else "Enlarged" if min(w, h) < resolution else "Cropped"
    crop = ", its centre square" if w != h and how != "Cropped" else ""
    whole = f"in {resolution}×{resolution} tiles" if tiled else "at its own size"
    if max(w, h) > MAX_RECONSTRUCT_SIDE:
        whole = f"downscaled to {MAX_RECONSTRUCT_SIDE} pixels on its longer side" + (", in tiles" if tiled else "")
    return (
        f"{how} from {w}×{h} to {resolution}×{resolution}{crop}: the model's crop, so the latent and its decode "
        f"show only that. Reconstruct encodes the whole photo, {whole}."
    )


def is_tiled(info: Any) -> bool:
    """Whether the run is applied in tiles of its crop by Reconstruct: the shipped (bundle) models are."""
    return info is not None and getattr(info, "status", None) == SHIPPED


# ---- slots and their latents ----------------------------------------------------------------------


@dataclass
class SlotsState:
    """Images A and B: the file, the worker's analysis, and a token per slot so a late answer for a replaced
    image is dropped; a slot being encoded has a stale latent that no scrubber may decode."""

    images: dict[str, str | None] = field(default_factory=lambda: {s: None for s in SLOTS})
    results: dict[str, Result | None] = field(default_factory=lambda: {s: None for s in SLOTS})
    tokens: dict[str, int] = field(default_factory=lambda: {s: 0 for s in SLOTS})
    encoding: set[str] = field(default_factory=set)
    inspect: str = "a"

    def begin(self, slot: str) -> int:
        """A new analysis of `slot` starts: returns its token."""
        self.tokens[slot] += 1
        self.encoding.add(slot)
        return self.tokens[slot]

    def current(self, slot: str, token: int) -> bool:
        return token == self.tokens[slot]

    def finish(self, slot: str, result: Result | None) -> None:
        self.encoding.discard(slot)
        self.results[slot] = result

    def latent(self, slot: str | None = None) -> str | None:
        result = self.results.get(slot or self.inspect)
        return result["latent"] if result else None

    def pair(self) -> tuple[str, str] | None:
        """Both latents, when both are current (none is being re-encoded)."""
        a, b = self.latent("a"), self.latent("b")
        return (a, b) if a and b and not self.encoding else None

    def drop_targets(self, n_files: int) -> list[str]:
        """Slots that dropped files go to: two files fill A and B; one fills B when only A is taken, else A."""
        if n_files > 1:
            return list(SLOTS)
        return ["b"] if self.images["a"] and not self.images["b"] else ["a"]


# ---- run settings ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class RunSettings:
    """What a run's config sets on the page."""

    decoder_steps: int = 64
    base_steps: int = 64
    lambda_range: tuple[float, float] = DEFAULT_LAMBDA_RANGE
    stage: int = 1
    resolution: int = 0
    tiled: bool = False


def run_settings(info: Any) -> RunSettings:
    if info is None:
        return RunSettings()
    cfg = dict(info.config or {})
    sampling, loss, data = cfg.get("sampling") or {}, cfg.get("loss") or {}, cfg.get("data") or {}
    return RunSettings(
        decoder_steps=int(sampling.get("decoder_steps", 64)),
        base_steps=int(sampling.get("base_steps", 64)),
        lambda_range=(float(loss.get("latent_logsnr_min", -10.0)), float(loss.get("latent_logsnr_max", 5.0))),
        stage=int(info.stage),
        resolution=int(data.get("resolution") or 0),
        tiled=is_tiled(info),
    )


# ---- the scrubbers' values and requests -------------------------------------------------------------


def lambda_of(position: int, lambda_range: tuple[float, float]) -> float:
    lo, hi = lambda_range
    return lo + (hi - lo) * position / NOISE_POSITIONS


def noise_label(lam: float) -> str:
    return f"λ = {lam:+.2f} · α² = {1 / (1 + math.exp(-lam)):.3f}"


def channel_offset(position: int) -> float:
    half = CHANNEL_POSITIONS // 2
    return (position - half) * OFFSET_RANGE / half


def interpolate_params(a: str, b: str, mode: str) -> dict[str, Any]:
    return {"kind": "interpolate", "latent": a, "latent_b": b, "mode": mode}


def noise_params(latent: str | None, denoiser: str, base_steps: int, *, preview: bool) -> dict[str, Any]:
    """The denoiser runs the run's base steps over the whole λ range; fewer while dragging."""
    steps = min(base_steps, PREVIEW_DENOISER_STEPS) if preview else base_steps
    return {"kind": "noise", "latent": latent, "denoiser": denoiser, "prior_steps": steps}


def channel_params(latent: str | None, channel: int, scale: float) -> dict[str, Any]:
    return {"kind": "channel", "latent": latent, "edit": "offset", "channel": channel, "scale": scale}


def spread(value_of: Callable[[int], float], top: int, n: int) -> list[float]:
    """`n` evenly spread values of a slider with positions 0…`top` (its whole range)."""
    return [value_of(round(top * i / (n - 1))) for i in range(n)]


def strip_values(n: int) -> list[float]:
    return [i / (n - 1) for i in range(n)]


def chunk(values: Sequence[float], start: int) -> list[float]:
    """The next export request's values."""
    return list(values[start : start + EXPORT_CHUNK])


# ---- texts ----------------------------------------------------------------------------------------


def caption(path: str, result: Result) -> str:
    source = " · generated latent" if result.get("source") == "generated" else ""
    return f"{Path(path).name}: {result['rate']['bits']:.1f} bits{source}"


def rate_text(result: Result | None) -> str:
    if not result:
        return "Rate: –"
    rate = result["rate"]
    c, h, w = result["shape"]
    return (
        f"<b>Rate: {rate['bits']:.1f} bits</b> · {rate['bits_per_pixel']:.4f} bits/pixel · "
        f"{rate['bits_per_dim']:.3f} bits/dim · latent {c}×{h}×{w}"
    )


def rate_max_bits(result: Result) -> float:
    """The rate map's brightest position in bits (the worker reports nats)."""
    return float(result.get("rate_max", 0.0)) / math.log(2)


def trajectory_label(frames: list[Result], value: float) -> str:
    i = int(value)
    if not 0 <= i < len(frames):
        return "no trajectory yet"
    f = frames[i]
    what = "base model" if f["phase"] == "base" else "decoder"
    return f"{what} step {f['index'] + 1}/{f['total']} · λ {f['logsnr']:+.2f}"


# ---- a generated sample's settings ------------------------------------------------------------------


@dataclass(frozen=True)
class TrajectorySettings:
    """What a sample PNG tells the trajectory tab (its seed, steps and sampling parameters)."""

    seed: int | None = None
    base_steps: int | None = None
    decoder_steps: int | None = None
    params: dict[str, Any] = field(default_factory=lambda: dict.fromkeys(TRAJECTORY_PARAMS))
    problem: str = ""


def trajectory_settings(path: str | Path) -> TrajectorySettings:
    """The settings a sample carries; unusable settings are named in `problem` (the image itself still opens)."""
    try:
        found = read_sample_settings(path)
    except ULError as exc:
        return TrajectorySettings(problem=str(exc))
    if found is None:
        return TrajectorySettings()
    params = found.params.model_dump(by_alias=True)
    return TrajectorySettings(
        seed=found.seed,
        base_steps=int(params["base_steps"]) if params.get("base_steps") else None,
        decoder_steps=int(params["decoder_steps"]) if params.get("decoder_steps") else None,
        params={k: params.get(k) for k in TRAJECTORY_PARAMS},
    )
