"""UL Studio's run store: SQLite (WAL) + Alembic, torch-free so the GUI can import it.

store = Store.open()                       # $UL_HOME or the platform data folder; upgrades with a backup
run = store.create_run(name=None, stage=1, preset="shapes-32", config=cfg.to_dict())
store.log_metrics(run.id, [(step, time.time(), {"loss": 0.12})])
series = store.read_metric(run.id, "loss", max_points=1500)   # plot-ready min/max envelope
"""

from __future__ import annotations

from ul_engine.store.store import Store, config_hash, default_home
from ul_engine.store.types import (
    ACTIVE_RUN_STATUSES,
    ARTIFACT_KINDS,
    CONTROL_REQUESTS,
    FINISHED_RUN_STATUSES,
    JOB_STATUSES,
    RUN_STATUSES,
    ArtifactInfo,
    CheckpointInfo,
    JobInfo,
    MetricSeries,
    RunInfo,
)

__all__ = [
    "ACTIVE_RUN_STATUSES",
    "ARTIFACT_KINDS",
    "CONTROL_REQUESTS",
    "FINISHED_RUN_STATUSES",
    "JOB_STATUSES",
    "RUN_STATUSES",
    "ArtifactInfo",
    "CheckpointInfo",
    "JobInfo",
    "MetricSeries",
    "RunInfo",
    "Store",
    "config_hash",
    "default_home",
]
