"""SQLAlchemy models of the head schema; the migrations in `migrations/versions` build the same tables.

A test compares these models with a migrated database, so a column added here without a migration
(or the other way round) fails loudly. Times are stored as REAL unix seconds: cheap to compare in SQL
(stale heartbeats) and free of SQLite's text-date quirks; Python sees aware UTC datetimes.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Float, ForeignKey, Index, Integer, MetaData, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class EpochTime(TypeDecorator[datetime]):
    """Aware UTC datetime in Python, REAL unix seconds in SQLite."""

    impl = Float
    cache_ok = True

    def process_bind_param(self, value: datetime | float | None, dialect: Any) -> float | None:
        if value is None:
            return None
        if isinstance(value, int | float):
            return float(value)
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; pass an aware (UTC) datetime")
        return value.timestamp()

    def process_result_value(self, value: float | None, dialect: Any) -> datetime | None:
        return None if value is None else datetime.fromtimestamp(value, UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map = {dict[str, Any]: JSON, datetime: EpochTime}


class Run(Base):
    __tablename__ = "runs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)
    stage: Mapped[int] = mapped_column(Integer)
    preset: Mapped[str] = mapped_column(String(100))
    status: Mapped[str] = mapped_column(String(20), index=True)
    config: Mapped[dict[str, Any]] = mapped_column(JSON)
    config_hash: Mapped[str] = mapped_column(String(64))
    parent_run_id: Mapped[int | None] = mapped_column(ForeignKey("runs.id", ondelete="SET NULL"))
    parent_checkpoint_id: Mapped[int | None] = mapped_column(
        ForeignKey("checkpoints.id", ondelete="SET NULL", use_alter=True)  # breaks the runs<->checkpoints cycle
    )
    parent_checkpoint_sha256: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(EpochTime)
    started_at: Mapped[datetime | None] = mapped_column(EpochTime)
    finished_at: Mapped[datetime | None] = mapped_column(EpochTime)
    heartbeat_at: Mapped[datetime | None] = mapped_column(EpochTime)
    step: Mapped[int] = mapped_column(Integer, default=0)
    total_steps: Mapped[int | None] = mapped_column(Integer)
    device: Mapped[str | None] = mapped_column(String(50))
    error: Mapped[str | None] = mapped_column(Text)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    stderr_tail: Mapped[str | None] = mapped_column(Text)
    control_request: Mapped[str | None] = mapped_column(String(20))
    control_requested_at: Mapped[datetime | None] = mapped_column(EpochTime)
    pid: Mapped[int | None] = mapped_column(Integer)
    pid_started_at: Mapped[float | None] = mapped_column(Float)  # the worker's process start time (psutil)
    host: Mapped[str | None] = mapped_column(String(255))  # where the worker runs: its pid is checked there only
    session: Mapped[int] = mapped_column(Integer, default=0, server_default="0")  # +1 per worker start
    control_session: Mapped[int | None] = mapped_column(Integer)  # the session control_request targets


class MetricKey(Base):
    """Metric names, shared by all runs, so the big metrics table holds small integers."""

    __tablename__ = "metric_keys"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(200), unique=True)


class Metric(Base):
    """One logged value. Clustered on (run, key, step) (WITHOUT ROWID): a series is one contiguous range."""

    __tablename__ = "metrics"
    __table_args__ = {"sqlite_with_rowid": False}

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("metric_keys.id"), primary_key=True)
    step: Mapped[int] = mapped_column(Integer, primary_key=True)
    wall_time: Mapped[float] = mapped_column(Float)
    value: Mapped[float | None] = mapped_column(Float)  # NULL: a NaN was logged (SQLite stores NaN as NULL)


class Checkpoint(Base):
    __tablename__ = "checkpoints"
    __table_args__ = (Index("ux_checkpoints_run_id_step_kind", "run_id", "step", "kind", unique=True),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    step: Mapped[int] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    sha256: Mapped[str] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(20), server_default="full")  # full (resumable) | ema | weights
    created_at: Mapped[datetime] = mapped_column(EpochTime)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    size_bytes: Mapped[int | None] = mapped_column(Integer)


class Job(Base):
    """The persistent queue: queued jobs run in `position` order per device."""

    __tablename__ = "jobs"
    __table_args__ = (Index("ix_jobs_status_device_position", "status", "device", "position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(20))
    status: Mapped[str] = mapped_column(String(20))
    position: Mapped[int] = mapped_column(Integer)
    device: Mapped[str] = mapped_column(String(50))
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    created_at: Mapped[datetime] = mapped_column(EpochTime)
    started_at: Mapped[datetime | None] = mapped_column(EpochTime)
    finished_at: Mapped[datetime | None] = mapped_column(EpochTime)
    exit_code: Mapped[int | None] = mapped_column(Integer)
    stderr_tail: Mapped[str | None] = mapped_column(Text)
    error: Mapped[str | None] = mapped_column(Text)


class MetricSummary(Base):
    """Per (run, key): last value and finite min/max, so run tables never scan the metrics."""

    __tablename__ = "metric_summary"
    __table_args__ = {"sqlite_with_rowid": False}

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("metric_keys.id"), primary_key=True)
    first_step: Mapped[int] = mapped_column(Integer)
    last_step: Mapped[int] = mapped_column(Integer)
    last: Mapped[float | None] = mapped_column(Float)
    min: Mapped[float | None] = mapped_column(Float)
    max: Mapped[float | None] = mapped_column(Float)
    count: Mapped[int] = mapped_column(Integer)


class MetricRollup(Base):
    """Min and max sample (with its step and wall time) of the finite values in bucket `step >> level`.

    Levels are spaced by a factor of 4 (see `decimate.LEVELS`); a plot read takes the finest level that
    still gives at most a few buckets per pixel, so reading 10^6 points costs a few thousand rows.
    """

    __tablename__ = "metric_rollups"
    __table_args__ = {"sqlite_with_rowid": False}

    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True)
    key_id: Mapped[int] = mapped_column(ForeignKey("metric_keys.id"), primary_key=True)
    level: Mapped[int] = mapped_column(Integer, primary_key=True)
    bucket: Mapped[int] = mapped_column(Integer, primary_key=True)
    count: Mapped[int] = mapped_column(Integer)
    min_step: Mapped[int] = mapped_column(Integer)
    min_value: Mapped[float] = mapped_column(Float)
    min_wall: Mapped[float] = mapped_column(Float)
    max_step: Mapped[int] = mapped_column(Integer)
    max_value: Mapped[float] = mapped_column(Float)
    max_wall: Mapped[float] = mapped_column(Float)


class Artifact(Base):
    __tablename__ = "artifacts"
    __table_args__ = (Index("ix_artifacts_run_id_kind", "run_id", "kind"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("runs.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(20))  # preview | reconstruction | sample | video | export | other
    step: Mapped[int | None] = mapped_column(Integer)
    path: Mapped[str] = mapped_column(Text)
    seed: Mapped[int | None] = mapped_column(Integer)
    params: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(EpochTime)


class Reconstruction(Base):
    """Cache of reconstructions: the same input through the same checkpoint and parameters is done once."""

    __tablename__ = "reconstructions"
    __table_args__ = (UniqueConstraint("input_sha256", "checkpoint_id", "params_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    input_sha256: Mapped[str] = mapped_column(String(64))
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    params_hash: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    metrics: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(EpochTime)


class Evaluation(Base):
    """Cache of evaluations (e.g. a study's PSNR or FD-shapes): one result per checkpoint and settings."""

    __tablename__ = "evaluations"
    __table_args__ = (UniqueConstraint("checkpoint_id", "key_hash"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    checkpoint_id: Mapped[int] = mapped_column(ForeignKey("checkpoints.id", ondelete="CASCADE"), index=True)
    key_hash: Mapped[str] = mapped_column(String(64))
    key: Mapped[dict[str, Any]] = mapped_column(JSON)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime] = mapped_column(EpochTime)
