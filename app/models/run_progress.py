"""How far a run is and how fast it goes, without Qt: the smoothed speed of the current training session, the
speed read off the logged loss, and the words and button states the Monitor's status row shows for a run.

The Monitor feeds these with the worker's progress reports and the store's rows; they decide, the row draws.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from app import format as fmt
from ul_engine.store import ACTIVE_RUN_STATUSES

SESSION_GAP_S = 30.0  # reports further apart than this belong to different sessions (a pause, a restart)
MIN_INTERVAL_S = 1.0  # the shortest interval between two reports that a speed is measured over
RATE_WINDOW_S = 60.0
RATE_HALF_LIFE_S = 20.0
FRESH_PROGRESS_S = 20.0  # a progress report older than this no longer speaks for the speed
RESUMABLE = ("paused", "stopped", "interrupted", "failed")


class SessionRate:
    """Steps per second of the current training session, smoothed over time (half-life 20 s).

    It starts over when the step goes back (a resume from an earlier checkpoint) or after a gap in the reports
    (a pause, a restart), so the ETA after a resume is the new session's speed, not a mix with the old one.
    """

    def __init__(self) -> None:
        self.last: tuple[float, int] | None = None
        self.rate: float | None = None

    def reset(self) -> None:
        self.last = None
        self.rate = None

    def add(self, wall: float, step: int) -> float | None:
        if self.last is not None:
            t, s = self.last
            if step < s or wall - t > SESSION_GAP_S:
                self.reset()
            elif step == s or wall - t < MIN_INTERVAL_S:
                # Reports read from the worker's output in one burst arrive within microseconds of each other:
                # an interval that short says nothing about the speed, so it grows until it does.
                return self.rate
            else:
                r = (step - s) / (wall - t)
                alpha = 1.0 - 0.5 ** ((wall - t) / RATE_HALF_LIFE_S)
                self.rate = r if self.rate is None else self.rate + alpha * (r - self.rate)
        self.last = (wall, step)
        return self.rate


def session_rate(walls: np.ndarray, steps: np.ndarray, session_start: float | None) -> float | None:
    """Steps per second over the last minute of logged steps, counting only the current session: steps logged
    before it started (`session_start`, the worker's start) or before a gap in the log are left out."""
    n = len(walls)
    if n < 2:
        return None
    first = int(np.searchsorted(walls, walls[-1] - RATE_WINDOW_S))
    if session_start is not None:
        first = max(first, int(np.searchsorted(walls, session_start)))
    first = min(first, n - 2)  # at least one interval, unless that crosses a session boundary below
    if session_start is not None and walls[first] < session_start:
        return None
    gaps = np.nonzero(np.diff(walls[first:]) > SESSION_GAP_S)[0]
    if len(gaps):
        first += int(gaps[-1]) + 1
    if first >= n - 1:
        return None
    dt = walls[-1] - walls[first]
    return float((steps[-1] - steps[first]) / dt) if dt > 0 else None


class RateBook:
    """The live speed of every run whose worker reports progress, from its events (one `SessionRate` each)."""

    def __init__(self) -> None:
        self.rates: dict[int, SessionRate] = {}

    def on_event(self, run_id: int, ev: dict[str, Any], now: float | None = None) -> None:
        kind = ev.get("event")
        if kind == "progress" and not ev.get("phase") and isinstance(ev.get("step"), int):
            self.rates.setdefault(run_id, SessionRate()).add(time.time() if now is None else now, int(ev["step"]))
        elif kind == "status" and ev.get("status") != "running":
            self.rates.pop(run_id, None)  # paused, stopping, resumed…: the next reports start a new session

    def live_rate(self, run_id: int, last_progress: dict[str, Any] | None, now: float | None = None) -> float | None:
        """The reported speed while the worker's last training report is fresh, else None."""
        if not is_fresh(last_progress, now):
            return None
        rate = self.rates.get(run_id)
        return rate.rate if rate is not None else None


def is_fresh(progress: dict[str, Any] | None, now: float | None = None) -> bool:
    """Whether a worker's last progress report is a recent training step (not a setup phase)."""
    if not progress or progress.get("phase"):
        return False
    return (time.time() if now is None else now) - float(progress.get("received_at", 0)) < FRESH_PROGRESS_S


def series_rate(walls: np.ndarray, steps: np.ndarray, walls_sorted: bool, started_at: Any) -> float | None:
    """The current session's speed from a logged series (runs re-attached, or between progress reports)."""
    if len(walls) < 2 or not walls_sorted:
        return None
    start = started_at.timestamp() if started_at is not None else None
    return session_rate(walls, steps, start)


@dataclass(frozen=True)
class StatusView:
    """What the status row shows for one run: the progress bar, the speed line and which buttons act."""

    status: str
    progress: int  # of 1000
    progress_text: str
    eta: str
    eta_tip: str | None
    pause_text: str
    can_pause: bool
    can_stop: bool
    can_sample: bool
    can_save: bool


def status_view(row: Any, rate: float | None, fresh: bool) -> StatusView:
    """The status row of `row` (a `RunRow`), given its current speed (None: not measured) and whether the
    worker's last progress report is fresh."""
    info = row.info
    if info.total_steps:
        progress = int(1000 * min(1.0, info.step / info.total_steps))
        progress_text = f"step {info.step:,} / {info.total_steps:,}"
    else:
        progress, progress_text = 0, f"step {info.step:,}"
    eta, tip = eta_text(row, rate, fresh)
    status = info.status
    return StatusView(
        status=status, progress=progress, progress_text=progress_text, eta=eta, eta_tip=tip,
        pause_text="Resume" if status in RESUMABLE else "Pause",
        can_pause=status in ("running", *RESUMABLE), can_stop=status in ("running", "paused", "queued"),
        can_sample=status == "running", can_save=status == "running",
    )  # fmt: skip


def eta_text(row: Any, rate: float | None, fresh: bool) -> tuple[str, str | None]:
    """The speed and time left (or what the run is doing instead), and a tooltip with a failure's full text."""
    info = row.info
    if info.status == "completed":
        return f"completed in {fmt.duration(row.duration_s())}", None
    if info.status == "queued":
        return "waiting in the queue", None
    if info.status == "paused":
        return f"paused at step {info.step:,}", None
    if info.status in ("failed", "interrupted") and info.error:
        first = info.error.strip().splitlines()[0]
        return (first if len(first) <= 60 else first[:57] + "…"), info.error
    if info.status not in ACTIVE_RUN_STATUSES:
        return "", None
    if rate and info.total_steps:
        return f"{rate:.2f} steps/s · ETA {fmt.duration(max(0, info.total_steps - info.step) / rate)}", None
    if rate:
        return f"{rate:.2f} steps/s", None
    if fresh or info.status == "running":
        return "measuring speed…", None
    return info.status, None
