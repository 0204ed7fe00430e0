"""Procedural `bouncing` clips: 1–3 shapes moving at constant velocity and bouncing off the walls.

Why: video needs a data set that exists on every machine, trains on a CPU, and whose motion a user can
judge by eye (does the ball still travel in a straight line and reflect at the wall?). The drawing is the
`shapes` data's (background gradient, contrasting colours, anti-aliased shapes via `paint_shape`); only
the motion is new. Positions are closed-form (a triangle wave between the walls), so frame t of clip i
is a pure function of (seed, i, t) and any frame count works. The label is the kind of the largest shape,
drawn last (on top) so it stays readable in every frame.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ul_engine.core.errors import DataError
from ul_engine.data.shapes import (
    _AREA_PER_R2,
    SHAPE_KINDS,
    ProceduralSource,
    _background,
    _bilinear_at,
    _contrasting_color,
    paint_shape,
)

_LARGEST_RADIUS = (0.12, 0.22)  # of the side: small enough to have room to move
_OTHER_AREA = (0.25, 0.6)  # of the largest shape's area
_SPEED = (0.03, 0.09)  # of the side per frame
_MAX_TILT = 12.0


def bounce(start: float, velocity: float, lo: float, hi: float, t: np.ndarray) -> np.ndarray:
    """Position at times t of a point moving from `start` at `velocity`, reflected at lo and hi."""
    span = hi - lo
    if span <= 0:
        return np.full_like(t, lo, dtype=np.float64)
    u = np.mod(start - lo + velocity * t, 2 * span)
    return lo + np.where(u <= span, u, 2 * span - u)


def render_bouncing(rng: np.random.Generator, resolution: int, frames: int) -> tuple[np.ndarray, int, dict[str, Any]]:
    """One clip: (uint8 (T, H, W, 3), label = index in SHAPE_KINDS of the largest shape, info).

    info: kinds, radii, colors, velocities (pixels per frame, x and y), centers (per shape a (T, 2) list of
    x, y in pixels), largest (index in those lists, drawn last).
    """
    side, frames = int(resolution), int(frames)
    if side < 8:
        raise ValueError(f"resolution must be at least 8, got {resolution}")
    if frames < 1:
        raise ValueError(f"frames must be at least 1, got {frames}")
    background, corners = _background(rng, side)
    count = int(rng.integers(1, 4))
    kinds = [SHAPE_KINDS[int(k)] for k in rng.integers(0, len(SHAPE_KINDS), count)]
    radius0 = float(rng.uniform(*_LARGEST_RADIUS)) * side
    area0 = _AREA_PER_R2[kinds[0]] * radius0**2
    shapes = [(kinds[0], radius0)]
    for kind in kinds[1:]:
        radius = math.sqrt(area0 * float(rng.uniform(*_OTHER_AREA)) / _AREA_PER_R2[kind])
        if radius >= max(1.0, 0.05 * side):
            shapes.append((kind, radius))
    shapes = shapes[1:] + shapes[:1]  # the largest last, on top

    t = np.arange(frames, dtype=np.float64)
    info: dict[str, Any] = {k: [] for k in ("kinds", "radii", "colors", "velocities", "centers", "tilts")}
    tracks = []
    for kind, radius in shapes:
        cx, cy = (float(v) for v in rng.uniform(radius, side - radius, 2))
        angle = float(rng.uniform(0, 2 * math.pi))
        speed = float(rng.uniform(*_SPEED)) * side
        vx, vy = speed * math.cos(angle), speed * math.sin(angle)
        tilt = 0.0 if kind == "circle" else float(rng.uniform(-_MAX_TILT, _MAX_TILT))
        color = _contrasting_color(rng, _bilinear_at(corners, cx / side, cy / side))
        xs = bounce(cx, vx, radius, side - radius, t)
        ys = bounce(cy, vy, radius, side - radius, t)
        tracks.append((kind, radius, tilt, color, xs, ys))
        info["kinds"].append(kind)
        info["radii"].append(radius)
        info["colors"].append(tuple(int(c) for c in np.rint(color)))
        info["velocities"].append((vx, vy))
        info["centers"].append(np.stack([xs, ys], axis=1).tolist())
        info["tilts"].append(tilt)
    clip = np.empty((frames, side, side, 3), dtype=np.uint8)
    for f in range(frames):
        canvas = background.copy()
        for kind, radius, tilt, color, xs, ys in tracks:
            paint_shape(canvas, kind, float(xs[f]), float(ys[f]), radius, tilt, color)
        clip[f] = np.clip(np.rint(canvas), 0, 255).astype(np.uint8)
    info["largest"] = len(shapes) - 1
    return clip, SHAPE_KINDS.index(shapes[-1][0]), info


class BouncingSource(ProceduralSource):
    """Infinite, indexable clips: clip `index` is a pure function of (seed, index). Items are (T, H, W, 3)."""

    kind = "bouncing"

    def __init__(self, resolution: int, frames: int, seed: int, num_classes: int = len(SHAPE_KINDS)) -> None:
        super().__init__(resolution, seed, num_classes)
        if resolution < 8 or frames < 1:
            raise DataError(f"bouncing clips need a resolution ≥ 8 and ≥ 1 frame, got {resolution} and {frames}")
        self.frames = int(frames)

    def _draw(self, rng: np.random.Generator) -> tuple[np.ndarray, int]:
        clip, label, _ = render_bouncing(rng, self.resolution, self.frames)
        return clip, label
