"""Min/max bucketing of metric series: the arithmetic behind the rollups and the decimated plot reads.

A bucket at level L holds the steps [b·2^L, (b+1)·2^L). For each bucket the store keeps its minimum and
its maximum sample (step, value, wall time; ties go to the earliest step) and the number of finite
samples. Levels are 2 bits apart, so each level is built from the one below (4 children per bucket) and
a read can always find a level whose buckets are between 1/4 and 1 of the wanted width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

LEVELS: tuple[int, ...] = (4, 6, 8, 10, 12, 14, 16, 18, 20)
"""log2 of the bucket widths kept in `metric_rollups` (16 … 1,048,576 steps)."""

MAX_STEP = 1 << 40
"""Steps must be below this, so (key, bucket) pairs pack into one int64 group id."""


@dataclass(frozen=True, slots=True)
class Extremes:
    """Per group: number of samples and the (step, value, wall) of its minimum and maximum sample."""

    group: np.ndarray  # (G,) int64, ascending
    count: np.ndarray  # (G,) int64
    min_step: np.ndarray  # (G,) int64
    min_value: np.ndarray  # (G,) float64
    min_wall: np.ndarray  # (G,) float64
    max_step: np.ndarray
    max_value: np.ndarray
    max_wall: np.ndarray

    def __len__(self) -> int:
        return int(self.group.shape[0])


def _first_per_group(group: np.ndarray, order: np.ndarray) -> np.ndarray:
    g = group[order]
    first = np.ones(g.shape[0], dtype=bool)
    first[1:] = g[1:] != g[:-1]
    return order[first]


def extremes(
    group: np.ndarray,
    count: np.ndarray,
    lo_step: np.ndarray,
    lo_value: np.ndarray,
    lo_wall: np.ndarray,
    hi_step: np.ndarray,
    hi_value: np.ndarray,
    hi_wall: np.ndarray,
) -> Extremes:
    """Reduce candidates to one min and one max per group.

    Raw samples come with lo == hi and count 1; finer buckets with their own min (lo) and max (hi). So the
    same function builds level L from level L-2 and merges rollups with raw samples at a read's edges.
    """
    group = np.asarray(group, dtype=np.int64)
    if group.shape[0] == 0:
        e_i, e_f = np.zeros(0, np.int64), np.zeros(0, np.float64)
        return Extremes(e_i, e_i, e_i, e_f, e_f, e_i, e_f, e_f)
    lo_step, hi_step = np.asarray(lo_step, np.int64), np.asarray(hi_step, np.int64)
    lo_value, hi_value = np.asarray(lo_value, np.float64), np.asarray(hi_value, np.float64)
    lo_idx = _first_per_group(group, np.lexsort((lo_step, lo_value, group)))  # smallest value, then earliest
    hi_idx = _first_per_group(group, np.lexsort((hi_step, -hi_value, group)))  # largest value, then earliest
    groups = group[lo_idx]
    counts = np.bincount(np.searchsorted(groups, group), weights=count, minlength=groups.shape[0])
    return Extremes(
        group=groups,
        count=counts.astype(np.int64),
        min_step=lo_step[lo_idx],
        min_value=lo_value[lo_idx],
        min_wall=np.asarray(lo_wall, np.float64)[lo_idx],
        max_step=hi_step[hi_idx],
        max_value=hi_value[hi_idx],
        max_wall=np.asarray(hi_wall, np.float64)[hi_idx],
    )


def sample_extremes(group: np.ndarray, steps: np.ndarray, values: np.ndarray, walls: np.ndarray) -> Extremes:
    """`extremes` of raw samples (each is both its own min and max)."""
    return extremes(group, np.ones(len(steps), np.int64), steps, values, walls, steps, values, walls)


def choose_width(span: int, max_points: int) -> tuple[int, int]:
    """(level, width) for plotting `span` steps with at most `max_points` points' worth of buckets.

    The width W is a multiple of 2^level, so each rollup bucket lies inside one output bucket; W is at
    least span/(max_points - 1), so a range touches at most max_points output buckets (2 points each).
    Level 0 means "no rollup fine enough": bucket raw samples (then span < 16·max_points, a cheap read).
    """
    if max_points < 2:
        raise ValueError("max_points must be at least 2")
    target = max(1, math.ceil(span / (max_points - 1)))
    level = max((lv for lv in LEVELS if (1 << lv) <= target), default=0)
    width = math.ceil(target / (1 << level)) << level
    return level, width


def to_points(ex: Extremes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The min and max sample of every group as one step-sorted series (one point where they coincide)."""
    steps = np.concatenate([ex.min_step, ex.max_step])
    values = np.concatenate([ex.min_value, ex.max_value])
    walls = np.concatenate([ex.min_wall, ex.max_wall])
    order = np.argsort(steps, kind="stable")
    steps, values, walls = steps[order], values[order], walls[order]
    keep = np.ones(steps.shape[0], dtype=bool)
    keep[1:] = steps[1:] != steps[:-1]
    return steps[keep].astype(np.float64), values[keep], walls[keep]
