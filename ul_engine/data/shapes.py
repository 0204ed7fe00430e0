"""Procedural `shapes` images: seeded, infinite, labelled, and cheap enough to render every step.

Why: the app needs a data set that exists on every machine, trains in minutes on a CPU, and whose
structure a user can judge by eye (is that still a triangle after reconstruction?). Each image is a
smooth colour gradient with 1–3 anti-aliased shapes; the label is the kind of the largest shape,
which is drawn last (fully visible) and is at least 1/0.6 ≈ 1.7× larger in area than any other,
so the label is always readable from the pixels.

Anti-aliasing is exact coverage by 4×4 supersampling inside each shape's bounding box, in numpy:
no PIL round trip, and the cost does not grow with the empty parts of the canvas.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any

import numpy as np

from ul_engine.core.errors import DataError

SHAPE_KINDS = ("circle", "square", "triangle", "diamond")

_SUPERSAMPLE = 4
# Area of each kind per squared circumradius (centre-to-vertex distance, the "size" in info).
_AREA_PER_R2 = {"circle": math.pi, "square": 2.0, "triangle": 3 * math.sqrt(3) / 4, "diamond": 2.0}
# Vertex angles (degrees, image coordinates: y points down) before the small random rotation.
_VERTEX_ANGLES = {"square": (45, 135, 225, 315), "diamond": (0, 90, 180, 270), "triangle": (-90, 30, 150)}
_MAX_TILT = 12.0  # degrees; small enough that a tilted square never reads as a diamond
_LARGEST_RADIUS = (0.2, 0.38)  # of the side, for the largest shape
_OTHER_AREA = (0.12, 0.6)  # of the largest shape's area
_MIN_CONTRAST = 140.0  # Euclidean RGB distance between a shape and the background under it


def render_shapes(rng: np.random.Generator, resolution: int) -> tuple[np.ndarray, int, dict[str, Any]]:
    """One image: (uint8 (H, W, 3), label = index in SHAPE_KINDS of the largest shape, info).

    info holds per-shape lists in drawing order (the largest last): kinds, centers (x, y in pixels,
    origin at the top-left corner of the image), sizes (circumradius in pixels), areas (pixels²),
    rotations (degrees), colors (RGB 0–255); plus `largest` (its index in those lists) and
    `background` (the four corner colours, top-left, top-right, bottom-left, bottom-right).
    """
    side = int(resolution)
    if side < 4:
        raise ValueError(f"resolution must be at least 4, got {resolution}")
    image, corners = _background(rng, side)

    count = int(rng.integers(1, 4))
    kinds = [SHAPE_KINDS[int(k)] for k in rng.integers(0, len(SHAPE_KINDS), count)]
    radius0 = float(rng.uniform(*_LARGEST_RADIUS)) * side
    area0 = _AREA_PER_R2[kinds[0]] * radius0**2
    min_radius = max(1.0, 0.05 * side)
    shapes = [(kinds[0], radius0)]
    for kind in kinds[1:]:
        radius = math.sqrt(area0 * float(rng.uniform(*_OTHER_AREA)) / _AREA_PER_R2[kind])
        if radius >= min_radius:  # too small to see: leave it out rather than draw a speck
            shapes.append((kind, radius))
    shapes = shapes[1:] + shapes[:1]  # smaller ones first, so the largest is drawn on top

    info: dict[str, Any] = {k: [] for k in ("kinds", "centers", "sizes", "areas", "rotations", "colors")}
    for kind, radius in shapes:
        cx, cy = (float(v) for v in rng.uniform(radius, side - radius, 2))
        tilt = 0.0 if kind == "circle" else float(rng.uniform(-_MAX_TILT, _MAX_TILT))
        color = _contrasting_color(rng, _bilinear_at(corners, cx / side, cy / side))
        paint_shape(image, kind, cx, cy, radius, tilt, color)
        info["kinds"].append(kind)
        info["centers"].append((cx, cy))
        info["sizes"].append(radius)
        info["areas"].append(_AREA_PER_R2[kind] * radius**2)
        info["rotations"].append(tilt)
        info["colors"].append(tuple(int(c) for c in np.rint(color)))
    info["largest"] = len(shapes) - 1
    info["background"] = [tuple(int(c) for c in np.rint(corner)) for corner in corners]
    label = SHAPE_KINDS.index(shapes[-1][0])
    return np.clip(np.rint(image), 0, 255).astype(np.uint8), label, info


class ProceduralSource(ABC):
    """Infinite, indexable procedural data: item `index` is a pure function of (seed, index).

    `num_classes` is len(SHAPE_KINDS) (labels are the largest shape's kind) or 0 (unconditional: every
    label 0). Subclasses draw one item from a generator; `shapes` images and `bouncing` clips share the rest.
    """

    kind = "procedural"

    def __init__(self, resolution: int, seed: int, num_classes: int) -> None:
        if num_classes not in (0, len(SHAPE_KINDS)):
            raise DataError(
                f"{self.kind} data has {len(SHAPE_KINDS)} classes ({', '.join(SHAPE_KINDS)}); "
                f"set data.num_classes to {len(SHAPE_KINDS)} or to 0 (unconditional), not {num_classes}"
            )
        self.resolution = int(resolution)
        self.seed = int(seed)
        self._num_classes = int(num_classes)

    @property
    def num_classes(self) -> int:
        return self._num_classes

    def __getitem__(self, index: int) -> tuple[np.ndarray, int]:
        index = int(index)
        if index < 0:
            raise IndexError(f"{self.kind} index must be >= 0, got {index}")
        return self.render(np.random.default_rng([self.seed, index]))

    def render(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        """One item from an explicit generator (validation draws from its own seed stream)."""
        item, label = self._draw(rng)
        return item, (label if self._num_classes else 0)

    @abstractmethod
    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int]: ...


class ShapesSource(ProceduralSource):
    """Images (H, W, 3) of 1–3 shapes on a smooth background."""

    kind = "shapes"

    def __init__(self, resolution: int, seed: int, num_classes: int = len(SHAPE_KINDS)) -> None:
        super().__init__(resolution, seed, num_classes)
        if resolution < 4:
            raise DataError(f"shapes data needs a resolution of at least 4 pixels, got {resolution}")

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        image, label, _ = render_shapes(rng, self.resolution)
        return image, label


def paint_shape(
    image: np.ndarray, kind: str, cx: float, cy: float, radius: float, tilt: float, color: np.ndarray
) -> None:
    """Blend one anti-aliased shape into a float (H, W, 3) canvas in place (shared with `bouncing` clips)."""
    coverage, (y0, x0) = _coverage(kind, cx, cy, radius, tilt, image.shape[0])
    if coverage.size:
        patch = image[y0 : y0 + coverage.shape[0], x0 : x0 + coverage.shape[1]]
        alpha = coverage[..., None]
        patch *= 1.0 - alpha
        patch += alpha * color


# ----------------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, side: int) -> tuple[np.ndarray, np.ndarray]:
    """Bilinear gradient between the four corners, coloured from a palette of 2–4 random colours."""
    k = int(rng.integers(2, 5))
    palette = rng.uniform(0, 255, (k, 3))
    idx = np.concatenate([np.arange(k), rng.integers(0, k, 4 - k)])
    rng.shuffle(idx)
    corners = palette[idx]  # (4, 3): top-left, top-right, bottom-left, bottom-right
    t = (np.arange(side) + 0.5) / side
    top = np.outer(1 - t, corners[0]) + np.outer(t, corners[1])  # (W, 3)
    bottom = np.outer(1 - t, corners[2]) + np.outer(t, corners[3])
    image = (1 - t)[:, None, None] * top[None] + t[:, None, None] * bottom[None]  # (H, W, 3)
    return image, corners


def _bilinear_at(corners: np.ndarray, u: float, v: float) -> np.ndarray:
    return (1 - v) * ((1 - u) * corners[0] + u * corners[1]) + v * ((1 - u) * corners[2] + u * corners[3])


def _contrasting_color(rng: np.random.Generator, under: np.ndarray) -> np.ndarray:
    """The first of 8 random colours far enough from the background, else the farthest of them."""
    candidates = rng.uniform(0, 255, (8, 3))
    dist = np.linalg.norm(candidates - under, axis=1)
    good = np.flatnonzero(dist >= _MIN_CONTRAST)
    return candidates[good[0] if good.size else int(np.argmax(dist))]


def _coverage(
    kind: str, cx: float, cy: float, radius: float, tilt: float, side: int
) -> tuple[np.ndarray, tuple[int, int]]:
    """Fraction of each pixel inside the shape, over its bounding box: ((h, w) float, (top, left))."""
    x0, x1 = max(0, math.floor(cx - radius)), min(side, math.ceil(cx + radius))
    y0, y1 = max(0, math.floor(cy - radius)), min(side, math.ceil(cy + radius))
    ss = _SUPERSAMPLE
    xs = x0 + (np.arange((x1 - x0) * ss) + 0.5) / ss  # sample positions, pixel i spans [i, i+1)
    ys = (y0 + (np.arange((y1 - y0) * ss) + 0.5) / ss)[:, None]
    if kind == "circle":
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 <= radius**2
    else:
        angles = np.deg2rad(np.asarray(_VERTEX_ANGLES[kind], dtype=np.float64) + tilt)
        vx, vy = cx + radius * np.cos(angles), cy + radius * np.sin(angles)
        inside = np.ones((ys.shape[0], xs.shape[0]), dtype=bool)
        for i in range(len(angles)):  # convex, vertices in increasing angle: inside is left of every edge
            j = (i + 1) % len(angles)
            inside &= (vx[j] - vx[i]) * (ys - vy[i]) - (vy[j] - vy[i]) * (xs - vx[i]) >= 0
    h, w = y1 - y0, x1 - x0
    coverage = inside.reshape(h, ss, w, ss).mean(axis=(1, 3))
    return coverage, (y0, x0)
