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


class MinMaxPyramid:
    """Min and max of aligned blocks of 2^L samples (L = 1, 2, …) of a series that only grows, for plots.

    Level L block k holds samples [k·2^L, (k+1)·2^L) (the last one may be partial); NaN samples are ignored
    (a block of NaN only is NaN). `extend` takes in new samples at O(new + log n) cost, so a live series of
    millions of points keeps its levels current without a pass over the old ones; `column_extremes` answers
    the exact min and max of any index ranges from O(log n) blocks each.
    """

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.n = 0
        self.generation = getattr(self, "generation", -1) + 1  # changes whenever the samples start over
        self._mins: list[np.ndarray] = []  # level L (L >= 1) at index L - 1, with spare capacity
        self._maxs: list[np.ndarray] = []

    @classmethod
    def built(cls, values: np.ndarray) -> MinMaxPyramid:
        """The levels of a whole series at once."""
        pyramid = cls()
        pyramid.extend(values)
        return pyramid

    def level_len(self, level: int) -> int:
        return -(-self.n // (1 << level))

    def extend(self, values: np.ndarray) -> None:
        """Take in `values[self.n:]`; `values[:self.n]` must be the samples seen before (else `reset` first)."""
        values = np.asarray(values, np.float64)
        total = len(values)
        if total < self.n:
            raise ValueError("a pyramid only grows: reset it before a shorter series")
        if total == self.n:
            return
        start, lo_min, lo_max, lo_len = self.n, values, values, total  # level 0 is the series itself
        level = 1
        while lo_len > 1:
            first = start >> 1  # the first block of this level that the new samples touch
            a_min, a_max = lo_min[2 * first : lo_len], lo_max[2 * first : lo_len]
            if len(a_min) % 2:
                a_min, a_max = np.append(a_min, np.nan), np.append(a_max, np.nan)
            new_min, new_max = np.fmin(a_min[0::2], a_min[1::2]), np.fmax(a_max[0::2], a_max[1::2])
            lo_len = -(-lo_len // 2)
            lo_min = self._store(self._mins, level, first, new_min, lo_len)
            lo_max = self._store(self._maxs, level, first, new_max, lo_len)
            start = first
            level += 1
        self.n = total

    @staticmethod
    def _store(levels: list[np.ndarray], level: int, first: int, data: np.ndarray, length: int) -> np.ndarray:
        if len(levels) < level:
            levels.append(np.empty(length + length // 4 + 64))  # room for the samples that follow
        buf = levels[level - 1]
        if length > len(buf):
            grown = np.empty(max(length + length // 4, 2 * len(buf)))
            grown[:first] = buf[:first]
            levels[level - 1] = buf = grown
        buf[first:length] = data
        return buf[:length]

    def column_extremes(
        self, values: np.ndarray, starts: np.ndarray, ends: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """(min, max) of `values[s:e]` for every (s, e) pair, NaN-ignoring; `values` is the series extended."""
        values = np.asarray(values, np.float64)
        lo = np.asarray(starts, np.int64).copy()
        hi = np.asarray(ends, np.int64).copy()
        mins = np.full(len(lo), np.nan)
        maxs = np.full(len(lo), np.nan)
        level = 0
        while True:
            active = lo < hi
            if not active.any():
                return mins, maxs
            lv_min = values if level == 0 else self._mins[level - 1]
            lv_max = values if level == 0 else self._maxs[level - 1]
            last = self.level_len(level) - 1
            for side in (0, 1):  # a block sticking out of the aligned pair above, on the left, then the right
                if side == 0:
                    take = (lo & 1).astype(bool) & active
                    at = np.minimum(lo, last)
                    lo += take
                else:
                    take = (hi & 1).astype(bool) & (lo < hi)
                    hi -= take
                    at = np.minimum(hi, last)
                mins = np.where(take, np.fmin(mins, lv_min[at]), mins)
                maxs = np.where(take, np.fmax(maxs, lv_max[at]), maxs)
            lo >>= 1
            hi >>= 1
            level += 1


class ColumnCache:
    """The per-column extremes of one series on one column grid, kept between draws: when samples were only
    appended (same pyramid generation, same grid), the columns whose samples did not change are reused and
    only the others (the last ones) are asked again. A new grid (a zoom) or a rewrite computes them all."""

    def __init__(self) -> None:
        self.grid: tuple | None = None
        self.starts = self.ends = np.zeros(0, np.int64)
        self.mins = self.maxs = np.zeros(0)
        self.reused = 0  # columns taken over from the last call (tests)

    def extremes(
        self, y: np.ndarray, pyramid: MinMaxPyramid, grid: tuple, starts: np.ndarray, ends: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        same = grid == self.grid and len(starts) == len(self.starts)
        keep = (starts == self.starts) & (ends == self.ends) if same else np.zeros(len(starts), bool)
        mins = np.full(len(starts), np.nan)
        maxs = np.full(len(starts), np.nan)
        if keep.any():
            mins[keep], maxs[keep] = self.mins[keep], self.maxs[keep]
        ask = ~keep & (ends > starts)
        if ask.any():
            mins[ask], maxs[ask] = pyramid.column_extremes(y, starts[ask], ends[ask])
        self.grid, self.starts, self.ends, self.mins, self.maxs = grid, starts, ends, mins, maxs
        self.reused = int(keep.sum())
        return mins, maxs


def view_points(
    x: np.ndarray,
    y: np.ndarray,
    pyramid: MinMaxPyramid,
    x_lo: float,
    x_hi: float,
    columns: int,
    *,
    log_x: bool = False,
    cache: ColumnCache | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The points to draw of a series with ascending x over [x_lo, x_hi] on `columns` pixel columns.

    Where there are more than two samples per column, each column that has samples gives two points at the x
    of its first sample: the exact min and max of its samples (no spike is hidden), and the last visible sample
    ends the line. Otherwise the samples themselves. One sample beyond each edge is kept so lines run to the
    border. `pyramid` must cover `y`; a `cache` kept for the series reuses the columns that did not change.
    """
    n = len(x)
    if n == 0:
        return x[:0], y[:0]
    i0 = int(np.searchsorted(x, x_lo, "left"))
    i1 = int(np.searchsorted(x, x_hi, "right"))
    a, b = max(0, i0 - 1), min(n, i1 + 1)
    if i1 - i0 <= 2 * columns:
        return x[a:b], y[a:b]
    if log_x and x_lo > 0:
        inner = np.logspace(np.log10(x_lo), np.log10(x_hi), columns + 1)[1:-1]
    else:
        inner = np.linspace(x_lo, x_hi, columns + 1)[1:-1]
    bounds = np.empty(columns + 1, np.int64)
    bounds[0], bounds[-1] = i0, i1
    bounds[1:-1] = np.searchsorted(x[i0:i1], inner, "left") + i0
    starts, ends = bounds[:-1], bounds[1:]
    grid = (pyramid.generation, id(pyramid), x_lo, x_hi, columns, log_x)
    mins, maxs = (cache or ColumnCache()).extremes(y, pyramid, grid, starts, ends)
    used = ends > starts
    starts, mins, maxs = starts[used], mins[used], maxs[used]
    xs = np.repeat(x[starts], 2)
    ys = np.empty(2 * len(starts))
    ys[0::2], ys[1::2] = mins, maxs
    # the newest visible sample ends the line where the data ends; the neighbours run it to the borders
    xs = np.concatenate([x[a:i0], xs, x[i1 - 1 : b]])
    ys = np.concatenate([y[a:i0], ys, y[i1 - 1 : b]])
    return xs, ys


def following_range(first: float, last: float, *, log_x: bool = False, ratio: float = 1.25) -> tuple[float, float]:
    """The x range to decimate a series over while the view follows its data: from its first sample to a
    bound that grows in steps of `ratio`, so the column grid stays put while points arrive (and the columns
    already filled are reused) until the data outgrows it."""
    if log_x and first > 0 and last > first:
        span = math.log(last / first)
        return first, first * math.exp(ratio ** math.ceil(math.log(span, ratio)))
    span = last - first
    if span <= 0:
        return first, last
    return first, first + ratio ** math.ceil(math.log(span, ratio))
