"""Metric series for the plots: raw values read from the store off the GUI thread, incrementally.

Each poll is one `run_in_background` task on a pool of one thread, so reads never overlap. The fetcher
compares each run's metric summary (count, first and last step) with what it already delivered and reads
only the new steps (`read_metric(..., step_range=...)`, raw: smoothing must see every value); a series that
was rewritten (a resumed run re-logging old steps) is read again in full. The GUI side keeps the arrays in
doubling buffers, so appending is O(new points) and plots get float64 views.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PySide6.QtCore import QObject, QThreadPool, QTimer, Signal

from app.smoothing import EmaCache
from app.workers.background import BackgroundTask, run_in_background
from ul_engine.store import Store
from ul_engine.store.decimate import MinMaxPyramid


class SeriesBuffer:
    """One metric of one run: float64 steps / values / wall times in buffers that double when full."""

    def __init__(self, key: str) -> None:
        self.key = key
        self._steps = np.zeros(0, np.float64)
        self._values = np.zeros(0, np.float64)
        self._walls = np.zeros(0, np.float64)
        self.n = 0
        self.version = 0
        self.nonfinite = 0
        self.walls_sorted = True  # wall times can step back (a clock change): then no min/max levels by time
        self.smooth = EmaCache()
        self._levels = MinMaxPyramid()
        self._minutes = np.zeros(0, np.float64)  # (wall - t0) / 60 for the time axis, extended with the series
        self._minutes_n = 0
        self._minutes_t0 = float("nan")

    def __len__(self) -> int:
        return self.n

    @property
    def steps(self) -> np.ndarray:
        return self._steps[: self.n]

    @property
    def values(self) -> np.ndarray:
        return self._values[: self.n]

    @property
    def walls(self) -> np.ndarray:
        return self._walls[: self.n]

    def replace(self, steps: np.ndarray, values: np.ndarray, walls: np.ndarray) -> None:
        self.n = n = len(steps)
        cap = n + max(1024, n // 4)  # room for the points that follow, so the next appends copy nothing
        for name, data in (("_steps", steps), ("_values", values), ("_walls", walls)):
            buf = np.empty(cap, np.float64)
            buf[:n] = data
            setattr(self, name, buf)
        self.nonfinite = int(n - np.count_nonzero(np.isfinite(self.values)))
        self.walls_sorted = bool(np.all(np.diff(self.walls) >= 0))
        self.smooth.reset()
        self._levels.reset()
        self._minutes_t0 = float("nan")
        self.version += 1

    def append(self, steps: np.ndarray, values: np.ndarray, walls: np.ndarray) -> None:
        m = len(steps)
        if m == 0:
            return
        need = self.n + m
        if need > len(self._steps):
            cap = max(need, 2 * len(self._steps), 1024)
            for name in ("_steps", "_values", "_walls"):
                old = getattr(self, name)
                new = np.empty(cap, np.float64)
                new[: self.n] = old[: self.n]
                setattr(self, name, new)
        self._steps[self.n : need] = steps
        self._values[self.n : need] = values
        self._walls[self.n : need] = walls
        self.nonfinite += int(m - np.count_nonzero(np.isfinite(values)))
        start = max(0, self.n - 1)
        self.walls_sorted = self.walls_sorted and bool(np.all(np.diff(self._walls[start:need]) >= 0))
        self.n = need
        self.version += 1

    def smoothed(self, weight: float) -> tuple[np.ndarray, np.ndarray]:
        """(x steps, EMA-with-debias values) over the finite samples, updated incrementally."""
        return self.smooth.update(self.steps, self.values, weight, has_nonfinite=self.nonfinite > 0)

    def levels(self) -> MinMaxPyramid:
        """Min/max levels of the raw values (extended by the points appended since the last call)."""
        self._levels.extend(self.values)
        return self._levels

    def minutes_since(self, t0: float) -> np.ndarray:
        """Wall times as minutes since `t0` (the time axis), computed only for points new since the last call."""
        if t0 != self._minutes_t0:  # a fresh array: views handed out before keep their values
            self._minutes_t0, self._minutes_n, self._minutes = t0, 0, np.zeros(0, np.float64)
        if len(self._minutes) < self.n:
            grown = np.empty(max(self.n + self.n // 4, 2 * len(self._minutes), 1024))
            grown[: self._minutes_n] = self._minutes[: self._minutes_n]
            self._minutes = grown
        self._minutes[self._minutes_n : self.n] = (self._walls[self._minutes_n : self.n] - t0) / 60.0
        self._minutes_n = self.n
        return self._minutes[: self.n]


@dataclass(frozen=True)
class SeriesUpdate:
    """New points of one series: "append" them, or "replace" the series with them."""

    run_id: int
    key: str
    mode: str
    steps: np.ndarray
    values: np.ndarray
    walls: np.ndarray


@dataclass(frozen=True)
class KeysUpdate:
    """The metric keys a run has logged."""

    run_id: int
    keys: list[str]


Update = SeriesUpdate | KeysUpdate


class MetricsFetcher:
    """Reads what changed in the watched runs' series since its last read, with its own Store. One read runs at a
    time (the model's pool has one thread), so its memory of what it delivered needs no lock."""

    def __init__(self, home: Path) -> None:
        self.home = Path(home)
        self._store: Store | None = None
        self._known: dict[tuple[int, str], tuple[int, int, int, float]] = {}  # count, first, last, wall at last

    def _open(self) -> Store:
        if self._store is None:
            self._store = Store.open(self.home)
            with contextlib.suppress(ImportError):  # warm the smoothing filter here, not at the first redraw
                import scipy.signal  # noqa: F401
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def forget(self, run_id: int) -> None:
        for key in [k for k in self._known if k[0] == run_id]:
            del self._known[key]

    def fetch(self, run_ids: list[int], report: Callable[[Update], None]) -> None:
        store = self._open()
        for run_id in run_ids:
            self._fetch_run(store, int(run_id), report)

    def _fetch_run(self, store: Store, run_id: int, report: Callable[[Update], None]) -> None:
        summary = store.summary(run_id)
        report(KeysUpdate(run_id, sorted(summary)))
        for key, info in summary.items():
            count, first, last = int(info["count"]), int(info["first_step"]), int(info["last_step"])
            known = self._known.get((run_id, key))
            if known is not None and known[:3] == (count, first, last):
                continue
            if known is not None and first == known[1] and last > known[2] and count > known[0]:
                # re-read the last step we have: a different wall time means the run went back and re-logged
                new = store.read_metric(run_id, key, step_range=(known[2], last))
                unchanged = len(new) and new.steps[0] == known[2] and new.wall_times[0] == known[3]
                if unchanged and len(new) - 1 == count - known[0]:
                    self._known[(run_id, key)] = (count, first, last, float(new.wall_times[-1]))
                    report(SeriesUpdate(run_id, key, "append", new.steps[1:], new.values[1:], new.wall_times[1:]))
                    continue
            full = store.read_metric(run_id, key, step_range=(first, last))  # not the rows written since
            if len(full) == count and len(full):
                self._known[(run_id, key)] = (count, first, last, float(full.wall_times[-1]))
            else:  # written to meanwhile: read it again next time
                self._known[(run_id, key)] = (len(full), -1, -1, float("nan"))
            report(SeriesUpdate(run_id, key, "replace", full.steps, full.values, full.wall_times))


class MetricsModel(QObject):
    """The series of the runs being watched, kept fresh by polling the fetcher thread."""

    series_changed = Signal(int, str)  # run id, key
    keys_changed = Signal(int)
    fetched = Signal()  # one polling cycle finished
    error = Signal(str)
    _request = Signal(list)
    _forget = Signal(int)

    def __init__(self, home: Path, interval_ms: int = 1000, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.series: dict[tuple[int, str], SeriesBuffer] = {}
        self.run_keys: dict[int, list[str]] = {}
        self.watched: list[int] = []
        self.fetcher = MetricsFetcher(home)
        self._pool = QThreadPool(self)
        self._pool.setMaxThreadCount(1)
        self._task: BackgroundTask[None] | None = None
        self._forgotten: set[int] = set()  # runs the fetcher forgets before its next read
        self._again = False
        self._timer = QTimer(self)
        self._timer.setInterval(interval_ms)
        self._timer.timeout.connect(self.poll)

    def shutdown(self) -> None:
        self._timer.stop()
        if self._task is not None:
            self._task.cancel()
            self._task = None
        self._pool.waitForDone(5000)
        self.fetcher.close()

    def set_live(self, live: bool) -> None:
        """Poll once a second while something watched is training."""
        if live and not self._timer.isActive():
            self._timer.start()
        elif not live and self._timer.isActive():
            self._timer.stop()

    def watch(self, run_ids: list[int]) -> None:
        new = [int(r) for r in dict.fromkeys(run_ids)]
        for gone in set(self.watched) - set(new):
            self.drop(gone)
        self.watched = new
        self.poll()

    def drop(self, run_id: int) -> None:
        for key in [k for k in self.series if k[0] == run_id]:
            del self.series[key]
        self.run_keys.pop(run_id, None)
        self._forgotten.add(run_id)

    def poll(self) -> None:
        if not self.watched:
            return
        if self._task is not None:
            self._again = True
            return
        run_ids, forgotten = list(self.watched), self._forgotten
        self._forgotten = set()

        def read(task: BackgroundTask[None]) -> None:
            for run_id in forgotten:
                self.fetcher.forget(run_id)
            self.fetcher.fetch(run_ids, task.report)

        self._task = run_in_background(read, done=self._on_cycle_done, failed=self._on_failed,
                                       report=self._on_update, pool=self._pool)  # fmt: skip

    def get(self, run_id: int, key: str) -> SeriesBuffer | None:
        return self.series.get((int(run_id), key))

    def keys(self, run_id: int) -> list[str]:
        return self.run_keys.get(int(run_id), [])

    def put(self, run_id: int, key: str, steps: Any, values: Any, walls: Any | None = None) -> None:
        """Set a series directly (benchmarks and tests)."""
        steps = np.asarray(steps, np.float64)
        buf = self.series.setdefault((run_id, key), SeriesBuffer(key))
        buf.replace(steps, np.asarray(values, np.float64), np.asarray(walls if walls is not None else steps))
        if key not in self.run_keys.setdefault(run_id, []):
            self.run_keys[run_id] = sorted([*self.run_keys[run_id], key])
            self.keys_changed.emit(run_id)
        self.series_changed.emit(run_id, key)

    # ---- from the fetcher (delivered on the GUI thread) ---------------------------------------------

    def _on_update(self, update: Update) -> None:
        if update.run_id not in self.watched:
            return
        if isinstance(update, KeysUpdate):
            if update.keys != self.run_keys.get(update.run_id):
                self.run_keys[update.run_id] = list(update.keys)
                self.keys_changed.emit(update.run_id)
            return
        buf = self.series.setdefault((update.run_id, update.key), SeriesBuffer(update.key))
        if update.mode == "append":
            buf.append(update.steps, update.values, update.walls)
        else:
            buf.replace(update.steps, update.values, update.walls)
        self.series_changed.emit(update.run_id, update.key)

    def _on_failed(self, message: str) -> None:
        """The read failed (a locked or vanished database): keep what we have, try again at the next poll."""
        self.error.emit(message)
        self._on_cycle_done(None)

    def _on_cycle_done(self, _result: None) -> None:
        self._task = None
        self.fetched.emit()
        if self._again:
            self._again = False
            self.poll()
