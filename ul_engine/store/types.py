"""Plain, frozen records the store hands out, so no ORM object (or session) leaks to a worker or the GUI."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np

RUN_STATUSES: tuple[str, ...] = (
    "created",
    "queued",
    "running",
    "paused",
    "stopping",
    "completed",
    "stopped",
    "interrupted",
    "failed",
    "shipped",  # a model that came with UL Studio (the demo): read-only, never trained here
)
ACTIVE_RUN_STATUSES: tuple[str, ...] = ("running", "paused", "stopping")
"""Statuses that mean a worker process owns the run and must heartbeat."""

FINISHED_RUN_STATUSES: tuple[str, ...] = ("completed", "stopped", "interrupted", "failed")

RUN_TRANSITIONS: dict[str, tuple[str, ...]] = {
    "created": ("queued", "running", "shipped"),
    "queued": ("running", "created", "stopped", "failed"),
    "running": ("paused", "stopping", "completed", "stopped", "failed", "interrupted"),
    "paused": ("running", "stopping", "stopped", "failed", "interrupted"),
    "stopping": ("stopped", "completed", "failed", "interrupted"),
    "completed": ("queued", "running"),
    "stopped": ("queued", "running"),
    "interrupted": ("queued", "running"),
    "failed": ("queued", "running"),
    "shipped": (),
}
"""The only status changes `Store.transition` makes: from-status -> allowed to-statuses.

A worker starts a new session by moving a run to "running" from a status that is not active; "paused" ->
"running" continues the same session. Finished runs go back to "queued" or "running" on resume."""

START_STATUSES: tuple[str, ...] = tuple(s for s, to in RUN_TRANSITIONS.items() if "running" in to and s != "paused")
"""Statuses from which a worker may start a new session (a compare-and-set on the status)."""

JOB_STATUSES: tuple[str, ...] = ("queued", "running", "done", "failed", "cancelled")

CONTROL_REQUESTS: tuple[str, ...] = ("pause", "resume", "stop", "sample_now", "save_now")

ARTIFACT_KINDS: tuple[str, ...] = ("preview", "reconstruction", "sample", "video", "export", "other")


@dataclass(frozen=True, slots=True)
class RunInfo:
    """One training run as stored; times are timezone-aware UTC datetimes."""

    id: int
    name: str
    stage: int
    preset: str
    status: str
    config: dict[str, Any]
    config_hash: str
    parent_run_id: int | None
    parent_checkpoint_id: int | None
    parent_checkpoint_sha256: str | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    heartbeat_at: datetime | None
    step: int
    total_steps: int | None
    device: str | None
    error: str | None
    exit_code: int | None
    stderr_tail: str | None
    control_request: str | None
    control_requested_at: datetime | None
    pid: int | None
    session: int = 0
    """Incremented each time a worker starts training the run; control requests name the session they target."""
    control_session: int | None = None
    pid_started_at: float | None = None
    """The worker process's start time (unix seconds), so a reused pid is not taken for the worker."""
    host: str | None = None
    """The worker's host name: its pid and start time are checked on that host only."""

    @property
    def is_active(self) -> bool:
        """True while a worker owns the run (it must heartbeat)."""
        return self.status in ACTIVE_RUN_STATUSES

    @property
    def progress(self) -> float | None:
        """Fraction of total_steps done, or None when the run has no step budget."""
        if not self.total_steps:
            return None
        return min(1.0, self.step / self.total_steps)


@dataclass(frozen=True, slots=True)
class CheckpointInfo:
    """A checkpoint file of a run; `path` is absolute, `kind` is e.g. full (resumable), ema or weights."""

    id: int
    run_id: int
    step: int
    path: Path
    sha256: str
    kind: str
    created_at: datetime
    metrics: dict[str, float] | None
    size_bytes: int | None

    @property
    def is_ema(self) -> bool:
        return self.kind == "ema"


@dataclass(frozen=True, slots=True)
class ArtifactInfo:
    """A file a run produced (preview, sample grid, video, export…); `path` is absolute."""

    id: int
    run_id: int
    kind: str
    step: int | None
    path: Path
    seed: int | None
    params: dict[str, Any] | None
    created_at: datetime


@dataclass(frozen=True, slots=True)
class JobInfo:
    """One entry of the persistent work queue."""

    id: int
    run_id: int
    kind: str
    status: str
    position: int
    device: str
    attempts: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    exit_code: int | None
    stderr_tail: str | None
    error: str | None


@dataclass(frozen=True, slots=True)
class MetricSeries:
    """One metric of one run as float64 arrays, sorted by step.

    When `decimated` is True each bucket of `bucket_width` steps (aligned at step 0) is represented by its
    minimum and maximum sample (one point when they coincide), so a plot of these points has exactly the
    envelope of the full series; non-finite samples are left out of decimated reads.
    """

    key: str
    steps: np.ndarray  # (N,) float64, pyqtgraph wants float x
    values: np.ndarray  # (N,) float64, NaN where a non-finite value was logged (raw reads only)
    wall_times: np.ndarray  # (N,) float64 unix seconds
    decimated: bool = False
    bucket_width: int | None = None

    def __len__(self) -> int:
        return int(self.steps.shape[0])
