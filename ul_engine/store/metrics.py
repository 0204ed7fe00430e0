"""Metric writes and reads on a raw sqlite3 cursor (the store's hot path, so no ORM per row).

Every function runs inside a transaction the caller opened (writes: BEGIN IMMEDIATE). Writes keep two
derived tables in step with `metrics`:
- `metric_summary`: per (run, key) first/last step, last value, finite min/max, count;
- `metric_rollups`: per (run, key, level, bucket) the min and max sample (see `decimate`).
The common case, a run appending steps past its last one, merges the batch into both with upserts. A
batch that rewrites or fills in steps (a resumed run re-logging) rebuilds the touched buckets instead,
level by level from the one below, so min/max never remember a value that has been overwritten.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import sqlite3
from collections.abc import Iterable, Mapping
from typing import Any

import numpy as np

from ul_engine.store.decimate import LEVELS, MAX_STEP, Extremes, choose_width, extremes, sample_extremes, to_points

_KEY_SHIFT = 40  # group id = key_id << 40 | bucket (steps < 2^40)

_UPSERT_METRIC = (
    "INSERT INTO metrics (run_id, key_id, step, wall_time, value) VALUES (?, ?, ?, ?, ?) "
    "ON CONFLICT (run_id, key_id, step) DO UPDATE SET wall_time = excluded.wall_time, value = excluded.value"
)
_MERGE_ROLLUP = """
INSERT INTO metric_rollups (run_id, key_id, level, bucket, count, min_step, min_value, min_wall,
                            max_step, max_value, max_wall)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, key_id, level, bucket) DO UPDATE SET
    count = count + excluded.count,
    min_step = CASE WHEN excluded.min_value < min_value THEN excluded.min_step ELSE min_step END,
    min_wall = CASE WHEN excluded.min_value < min_value THEN excluded.min_wall ELSE min_wall END,
    min_value = min(min_value, excluded.min_value),
    max_step = CASE WHEN excluded.max_value > max_value THEN excluded.max_step ELSE max_step END,
    max_wall = CASE WHEN excluded.max_value > max_value THEN excluded.max_wall ELSE max_wall END,
    max_value = max(max_value, excluded.max_value)
"""
_INSERT_ROLLUP = (
    "INSERT INTO metric_rollups (run_id, key_id, level, bucket, count, min_step, min_value, min_wall, "
    "max_step, max_value, max_wall) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_MERGE_SUMMARY = """
INSERT INTO metric_summary (run_id, key_id, first_step, last_step, last, min, max, count)
VALUES (?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (run_id, key_id) DO UPDATE SET
    last_step = excluded.last_step,
    last = excluded.last,
    min = CASE WHEN min IS NULL THEN excluded.min WHEN excluded.min IS NULL THEN min
               ELSE min(min, excluded.min) END,
    max = CASE WHEN max IS NULL THEN excluded.max WHEN excluded.max IS NULL THEN max
               ELSE max(max, excluded.max) END,
    count = count + excluded.count
"""


def _none_if_nan(x: float) -> float | None:
    return None if math.isnan(x) else x


def ensure_keys(cur: sqlite3.Cursor, names: Iterable[str], cache: dict[str, int]) -> dict[str, int]:
    """Ids of metric names, creating missing ones; `cache` is the store's name → id memo."""
    missing = [n for n in names if n not in cache]
    if missing:
        cur.executemany("INSERT OR IGNORE INTO metric_keys (name) VALUES (?)", [(n,) for n in missing])
        marks = ",".join("?" * len(missing))
        for key_id, name in cur.execute(f"SELECT id, name FROM metric_keys WHERE name IN ({marks})", missing):
            cache[name] = key_id
    return {n: cache[n] for n in names}


def key_id(cur: sqlite3.Cursor, name: str, cache: dict[str, int]) -> int | None:
    if name not in cache:
        row = cur.execute("SELECT id FROM metric_keys WHERE name = ?", (name,)).fetchone()
        if row is None:
            return None
        cache[name] = row[0]
    return cache[name]


def _columns(rows: Iterable[tuple[int, float, Mapping[str, float]]]) -> dict[str, tuple[list, list, list]]:
    per_key: dict[str, tuple[list, list, list]] = {}
    for step, wall, values in rows:
        step = int(step)
        if not 0 <= step < MAX_STEP:
            raise ValueError(f"metric step {step} is outside [0, 2^40)")
        wall = float(wall)
        for name, value in values.items():
            cols = per_key.get(name)
            if cols is None:
                cols = per_key[name] = ([], [], [])
            cols[0].append(step)
            cols[1].append(wall)
            cols[2].append(float(value))
    return per_key


def _dedupe(steps: list, walls: list, values: list) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Sort by step; of repeated steps in one batch the last one wins (as the upsert would)."""
    s = np.asarray(steps, np.int64)
    n = s.shape[0]
    _, first_in_reversed = np.unique(s[::-1], return_index=True)
    take = n - 1 - first_in_reversed
    return s[take], np.asarray(walls, np.float64)[take], np.asarray(values, np.float64)[take]


def _rollup_rows(run_id: int, level: int, ex: Extremes) -> list[tuple[Any, ...]]:
    """Rows for metric_rollups from extremes grouped by key_id << 40 | bucket."""
    mask = (1 << _KEY_SHIFT) - 1
    return list(
        zip(
            [run_id] * len(ex),
            (ex.group >> _KEY_SHIFT).tolist(),
            [level] * len(ex),
            (ex.group & mask).tolist(),
            ex.count.tolist(),
            ex.min_step.tolist(),
            ex.min_value.tolist(),
            ex.min_wall.tolist(),
            ex.max_step.tolist(),
            ex.max_value.tolist(),
            ex.max_wall.tolist(),
            strict=True,
        )
    )


def log(
    cur: sqlite3.Cursor,
    run_id: int,
    rows: Iterable[tuple[int, float, Mapping[str, float]]],
    key_cache: dict[str, int],
) -> int:
    """Upsert a batch of (step, wall_time, {key: value}) rows and update summary and rollups.

    NaN is stored as NULL (SQLite has no NaN) and read back as NaN; non-finite values are kept in the
    series but left out of min/max and rollups. Returns the number of values written.
    """
    per_key = _columns(rows)
    if not per_key:
        return 0
    ids = ensure_keys(cur, per_key, key_cache)
    marks = ",".join("?" * len(ids))
    known = {
        k: (first, last, count)
        for k, first, last, count in cur.execute(
            f"SELECT key_id, first_step, last_step, count FROM metric_summary WHERE run_id = ? AND key_id IN ({marks})",
            [run_id, *ids.values()],
        )
    }
    params: list[tuple[Any, ...]] = []
    append: list[_Batch] = []
    rewrite: list[tuple[int, np.ndarray, int]] = []
    for name, cols in per_key.items():
        kid = ids[name]
        steps, walls, values = _dedupe(*cols)
        n = len(steps)
        params.extend(zip([run_id] * n, [kid] * n, steps.tolist(), walls.tolist(), values.tolist(), strict=True))
        prev = known.get(kid)
        if prev is None or steps[0] > prev[1]:
            append.append((kid, steps, walls, values))
        else:  # rewrites or fills in: count only the steps that are new
            lo, hi = int(steps[0]), int(steps[-1])
            old = np.fromiter(
                (
                    r[0]
                    for r in cur.execute(
                        "SELECT step FROM metrics WHERE run_id = ? AND key_id = ? AND step BETWEEN ? AND ?",
                        (run_id, kid, lo, hi),
                    )
                ),
                np.int64,
            )
            new = int(steps.shape[0] - np.isin(steps, old).sum())
            rewrite.append((kid, steps, prev[2] + new))
    cur.executemany(_UPSERT_METRIC, params)  # NaN binds as NULL
    if append:
        _merge_appended(cur, run_id, append)
    for kid, steps, count in rewrite:
        rebuild_rollups(cur, run_id, kid, int(steps[0]), int(steps[-1]))
        refresh_summary(cur, run_id, kid, count)
    return len(params)


_Batch = tuple[int, np.ndarray, np.ndarray, np.ndarray]  # key_id, steps, walls, values


def _merge_appended(cur: sqlite3.Cursor, run_id: int, append: list[_Batch]) -> None:
    summary = []
    for kid, steps, _walls, values in append:
        finite = values[np.isfinite(values)]
        lo = float(finite.min()) if finite.size else None
        hi = float(finite.max()) if finite.size else None
        summary.append(
            (run_id, kid, int(steps[0]), int(steps[-1]), _none_if_nan(float(values[-1])), lo, hi, int(steps.shape[0]))
        )
    cur.executemany(_MERGE_SUMMARY, summary)
    kids = np.concatenate([np.full(a[1].shape[0], a[0], np.int64) for a in append])
    steps = np.concatenate([a[1] for a in append])
    walls = np.concatenate([a[2] for a in append])
    values = np.concatenate([a[3] for a in append])
    ok = np.isfinite(values)
    if not ok.all():
        kids, steps, walls, values = kids[ok], steps[ok], walls[ok], values[ok]
    if steps.shape[0] == 0:
        return
    high = kids << _KEY_SHIFT
    for level in LEVELS:
        ex = sample_extremes(high | (steps >> level), steps, values, walls)
        cur.executemany(_MERGE_ROLLUP, _rollup_rows(run_id, level, ex))


def _raw(cur: sqlite3.Cursor, run_id: int, kid: int, lo: int, hi: int) -> np.ndarray:
    """(N, 3) float64 of step, wall_time, value (NaN for NULL) for lo <= step <= hi.

    Streams the cursor into numpy (no list of row tuples); NULL comes back as the text 'nan', which numpy
    parses, because SQLite itself turns every NaN into NULL.
    """
    rows = cur.execute(
        "SELECT step, wall_time, ifnull(value, 'nan') FROM metrics "
        "WHERE run_id = ? AND key_id = ? AND step BETWEEN ? AND ? ORDER BY step",
        (run_id, kid, lo, hi),
    )
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64).reshape(-1, 3)


def _finite_samples(raw: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    raw = raw[np.isfinite(raw[:, 2])]
    return raw[:, 0].astype(np.int64), raw[:, 2], raw[:, 1]


def _rollups(cur: sqlite3.Cursor, run_id: int, kid: int, level: int, b0: int, b1: int) -> np.ndarray:
    """(N, 8) float64 rows: bucket, count, min_step, min_value, min_wall, max_step, max_value, max_wall."""
    rows = cur.execute(
        "SELECT bucket, count, min_step, min_value, min_wall, max_step, max_value, max_wall FROM metric_rollups "
        "WHERE run_id = ? AND key_id = ? AND level = ? AND bucket BETWEEN ? AND ?",
        (run_id, kid, level, b0, b1),
    )
    return np.fromiter(itertools.chain.from_iterable(rows), dtype=np.float64).reshape(-1, 8)


def _rollup_extremes(rows: np.ndarray, shift: int) -> Extremes:
    i = rows[:, 0].astype(np.int64)
    return extremes(
        i >> shift, rows[:, 1].astype(np.int64), rows[:, 2].astype(np.int64), rows[:, 3], rows[:, 4],
        rows[:, 5].astype(np.int64), rows[:, 6], rows[:, 7],
    )  # fmt: skip


def rebuild_rollups(cur: sqlite3.Cursor, run_id: int, kid: int, lo: int, hi: int) -> None:
    """Recompute every rollup bucket that overlaps steps [lo, hi] from the level below (raw for the first)."""
    prev: int | None = None
    for level in LEVELS:
        b0, b1 = lo >> level, hi >> level
        cur.execute(
            "DELETE FROM metric_rollups WHERE run_id = ? AND key_id = ? AND level = ? AND bucket BETWEEN ? AND ?",
            (run_id, kid, level, b0, b1),
        )
        if prev is None:
            steps, values, walls = _finite_samples(_raw(cur, run_id, kid, b0 << level, ((b1 + 1) << level) - 1))
            ex = sample_extremes(steps >> level, steps, values, walls)
        else:
            shift = level - prev
            ex = _rollup_extremes(_rollups(cur, run_id, kid, prev, b0 << shift, ((b1 + 1) << shift) - 1), shift)
        if len(ex):
            ex = dataclasses.replace(ex, group=ex.group | (kid << _KEY_SHIFT))
            cur.executemany(_INSERT_ROLLUP, _rollup_rows(run_id, level, ex))
        prev = level


def refresh_summary(cur: sqlite3.Cursor, run_id: int, kid: int, count: int) -> None:
    """Recompute a summary row from the data (first/last from the primary key, min/max from the top rollups)."""
    if count <= 0:
        cur.execute("DELETE FROM metric_summary WHERE run_id = ? AND key_id = ?", (run_id, kid))
        return
    where = "WHERE run_id = ? AND key_id = ?"
    first = cur.execute(f"SELECT min(step) FROM metrics {where}", (run_id, kid)).fetchone()[0]
    last_step, last = cur.execute(
        f"SELECT step, value FROM metrics {where} ORDER BY step DESC LIMIT 1", (run_id, kid)
    ).fetchone()
    lo, hi = cur.execute(
        f"SELECT min(min_value), max(max_value) FROM metric_rollups {where} AND level = ?", (run_id, kid, LEVELS[-1])
    ).fetchone()
    cur.execute(
        "INSERT OR REPLACE INTO metric_summary (run_id, key_id, first_step, last_step, last, min, max, count) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        (run_id, kid, first, last_step, last, lo, hi, count),
    )


def truncate(cur: sqlite3.Cursor, run_id: int, after_step: int) -> int:
    """Delete every value logged after `after_step` (a run resuming from an older checkpoint)."""
    removed = 0
    stale = cur.execute(
        "SELECT key_id, last_step, count FROM metric_summary WHERE run_id = ? AND last_step > ?", (run_id, after_step)
    ).fetchall()
    for kid, last_step, count in stale:
        cur.execute("DELETE FROM metrics WHERE run_id = ? AND key_id = ? AND step > ?", (run_id, kid, after_step))
        n = cur.rowcount
        removed += n
        rebuild_rollups(cur, run_id, kid, after_step + 1, last_step)
        refresh_summary(cur, run_id, kid, count - n)
    return removed


def rebuild_all(cur: sqlite3.Cursor, run_id: int) -> None:
    """Recompute the summary and rollups of a run from its raw metrics (repair, or a test's reference)."""
    cur.execute("DELETE FROM metric_rollups WHERE run_id = ?", (run_id,))
    cur.execute("DELETE FROM metric_summary WHERE run_id = ?", (run_id,))
    for kid, lo, hi, n in cur.execute(
        "SELECT key_id, min(step), max(step), count(*) FROM metrics WHERE run_id = ? GROUP BY key_id", (run_id,)
    ).fetchall():
        rebuild_rollups(cur, run_id, kid, lo, hi)
        refresh_summary(cur, run_id, kid, n)


def summary(cur: sqlite3.Cursor, run_id: int) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    nan = float("nan")
    for name, first, last_step, last, lo, hi, count in cur.execute(
        "SELECT k.name, s.first_step, s.last_step, s.last, s.min, s.max, s.count FROM metric_summary s "
        "JOIN metric_keys k ON k.id = s.key_id WHERE s.run_id = ? ORDER BY k.name",
        (run_id,),
    ):
        out[name] = {
            "last": nan if last is None else last,
            "min": nan if lo is None else lo,
            "max": nan if hi is None else hi,
            "last_step": last_step,
            "first_step": first,
            "count": count,
        }
    return out


def read(
    cur: sqlite3.Cursor,
    run_id: int,
    kid: int,
    max_points: int | None,
    step_range: tuple[int, int] | None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, int | None]:
    """(steps, values, walls, bucket_width) of one series; bucket_width is None for a raw read."""
    row = cur.execute(
        "SELECT first_step, last_step, count FROM metric_summary WHERE run_id = ? AND key_id = ?", (run_id, kid)
    ).fetchone()
    if row is None:
        empty = np.zeros(0, np.float64)
        return empty, empty, empty, None
    first, last, count = row
    lo, hi = (first, last) if step_range is None else (max(first, int(step_range[0])), min(last, int(step_range[1])))
    if hi < lo:
        empty = np.zeros(0, np.float64)
        return empty, empty, empty, None
    span = hi - lo + 1
    if max_points is None or span <= 2 * max_points or (step_range is None and count <= 2 * max_points):
        raw = _raw(cur, run_id, kid, lo, hi)
        return raw[:, 0], raw[:, 2], raw[:, 1], None
    level, width = choose_width(span, max_points)
    if level == 0:
        steps, values, walls = _finite_samples(_raw(cur, run_id, kid, lo, hi))
        ex = sample_extremes(steps // width, steps, values, walls)
    else:
        ex = _decimated_from_rollups(cur, run_id, kid, lo, hi, level, width)
    s, v, w = to_points(ex)
    return s, v, w, width


def _decimated_from_rollups(
    cur: sqlite3.Cursor, run_id: int, kid: int, lo: int, hi: int, level: int, width: int
) -> Extremes:
    """Whole rollup buckets inside [lo, hi] plus raw samples in the partial buckets at either edge."""
    g = width >> level  # rollup buckets per output bucket
    b_lo = -((-lo) >> level)  # first bucket starting at or after lo
    b_hi = ((hi + 1) >> level) - 1  # last bucket ending at or before hi
    parts: list[Extremes] = []
    if b_lo <= b_hi:
        parts.append(_rollup_extremes(_rollups(cur, run_id, kid, level, b_lo, b_hi), 0))
        edges = [(lo, (b_lo << level) - 1), ((b_hi + 1) << level, hi)]
    else:
        edges = [(lo, hi)]
    groups = [parts[0].group // g] if parts else []
    for a, b in edges:
        if a <= b:
            steps, values, walls = _finite_samples(_raw(cur, run_id, kid, a, b))
            part = sample_extremes(steps, steps, values, walls)
            parts.append(part)
            groups.append(part.group // width)
    if not parts:
        return sample_extremes(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0))
    cat = [np.concatenate([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(Extremes)[1:]]
    return extremes(np.concatenate(groups), *cat)
