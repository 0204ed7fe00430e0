"""A training run's previews, without Qt: the images of one preview grid (cut along the layout the worker
recorded with it), how much a small image is enlarged, and the words under a preview."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

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


def thumb_fit(height: int, width: int) -> float:
    """The enlargement of one thumbnail: whole pixels up to THUMB_MIN_PX tall, but a whole grid of unknown
    layout no wider than the panel (THUMB_MAX_W)."""
    k = thumb_scale(height)
    if width * k > THUMB_MAX_W:
        k = max(1, THUMB_MAX_W // width) if width <= THUMB_MAX_W else THUMB_MAX_W / width
    return float(k)


def stacked(item: PreviewImage) -> np.ndarray:
    """A stage-1 thumbnail: the input above its reconstruction, 2 white rows apart; a sample as it is."""
    if item.input is None:
        return item.image
    gap = np.full((2, item.image.shape[1], 3), 255, np.uint8)
    return np.concatenate([item.input, gap, item.image])


def preview_caption(step: int | None, index: int, total: int, stage: int, images: int) -> str:
    """The line under a preview: its step, where it is among the run's previews and what it shows."""
    if images > 1:
        what = (
            "each: a validation input above its reconstruction"
            if stage == 1
            else "samples of the base model decoded by the stage-1 decoder (fixed seeds)"
        ) + " · click to enlarge"
    elif stage == 1:
        what = "top: validation inputs · bottom: their reconstructions"
    else:
        what = "samples of the base model decoded by the stage-1 decoder (fixed seeds)"
    where = f"step {step:,}" if step is not None else "step ?"
    return f"{where} · {index + 1} of {total} · {what}"


def preview_title(step: int | None, index: int, images: int) -> str:
    """The title of one preview image opened at full size."""
    where = f"step {step:,}" if step is not None else "preview"
    return f"{where} · image {index + 1} of {images}"
