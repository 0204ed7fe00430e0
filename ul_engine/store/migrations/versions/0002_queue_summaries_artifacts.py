"""Queue, metric summaries and rollups, artifacts, reconstruction cache; worker bookkeeping on runs.

- runs: stage-2 lineage pinned to a checkpoint (id + sha256), heartbeat, exit code, stderr tail,
  control requests (pause/resume/stop/sample_now/save_now) and the worker's pid.
- checkpoints: `is_ema` becomes `kind` (full | ema | weights) so more kinds fit; file size; one row per
  (run, step, kind).
- metric_summary and metric_rollups are backfilled from the metrics already stored, so old runs plot fast.

Revision ID: 0002
Revises: 0001
Create Date: 2026-03-02
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Frozen copy of ul_engine.store.decimate.LEVELS at this revision (a migration must not follow later code).
LEVELS = (4, 6, 8, 10, 12, 14, 16, 18, 20)
FINITE = "value IS NOT NULL AND value NOT IN (9e999, -9e999)"  # 9e999 parses as +inf in SQLite


def upgrade() -> None:
    op.add_column("checkpoints", sa.Column("kind", sa.String(20), nullable=False, server_default="full"))
    op.add_column("checkpoints", sa.Column("size_bytes", sa.Integer(), nullable=True))
    op.execute("UPDATE checkpoints SET kind = 'ema' WHERE is_ema")
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("is_ema")
    op.create_index("ux_checkpoints_run_id_step_kind", "checkpoints", ["run_id", "step", "kind"], unique=True)

    # A rebuild rather than ADD COLUMN ... REFERENCES, so the new foreign key gets its name like the others.
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("parent_checkpoint_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("parent_checkpoint_sha256", sa.String(64), nullable=True))
        batch.add_column(sa.Column("heartbeat_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("exit_code", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("stderr_tail", sa.Text(), nullable=True))
        batch.add_column(sa.Column("control_request", sa.String(20), nullable=True))
        batch.add_column(sa.Column("control_requested_at", sa.Float(), nullable=True))
        batch.add_column(sa.Column("pid", sa.Integer(), nullable=True))
        batch.create_foreign_key(
            "fk_runs_parent_checkpoint_id_checkpoints",
            "checkpoints",
            ["parent_checkpoint_id"],
            ["id"],
            ondelete="SET NULL",
        )

    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("status", sa.String(20), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("device", sa.String(50), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.Column("started_at", sa.Float(), nullable=True),
        sa.Column("finished_at", sa.Float(), nullable=True),
        sa.Column("exit_code", sa.Integer(), nullable=True),
        sa.Column("stderr_tail", sa.Text(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_jobs_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_jobs"),
    )
    op.create_index("ix_jobs_run_id", "jobs", ["run_id"])
    op.create_index("ix_jobs_status_device_position", "jobs", ["status", "device", "position"])

    op.create_table(
        "metric_summary",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("first_step", sa.Integer(), nullable=False),
        sa.Column("last_step", sa.Integer(), nullable=False),
        sa.Column("last", sa.Float(), nullable=True),
        sa.Column("min", sa.Float(), nullable=True),
        sa.Column("max", sa.Float(), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metric_summary_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["key_id"], ["metric_keys.id"], name="fk_metric_summary_key_id_metric_keys"),
        sa.PrimaryKeyConstraint("run_id", "key_id", name="pk_metric_summary"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "metric_rollups",
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("key_id", sa.Integer(), nullable=False),
        sa.Column("level", sa.Integer(), nullable=False),
        sa.Column("bucket", sa.Integer(), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("min_step", sa.Integer(), nullable=False),
        sa.Column("min_value", sa.Float(), nullable=False),
        sa.Column("min_wall", sa.Float(), nullable=False),
        sa.Column("max_step", sa.Integer(), nullable=False),
        sa.Column("max_value", sa.Float(), nullable=False),
        sa.Column("max_wall", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_metric_rollups_run_id_runs", ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["key_id"], ["metric_keys.id"], name="fk_metric_rollups_key_id_metric_keys"),
        sa.PrimaryKeyConstraint("run_id", "key_id", "level", "bucket", name="pk_metric_rollups"),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "artifacts",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("run_id", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(20), nullable=False),
        sa.Column("step", sa.Integer(), nullable=True),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("params", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(["run_id"], ["runs.id"], name="fk_artifacts_run_id_runs", ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name="pk_artifacts"),
    )
    op.create_index("ix_artifacts_run_id_kind", "artifacts", ["run_id", "kind"])
    op.create_table(
        "reconstructions",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("input_sha256", sa.String(64), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("params_hash", sa.String(64), nullable=False),
        sa.Column("path", sa.Text(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"],
            ["checkpoints.id"],
            name="fk_reconstructions_checkpoint_id_checkpoints",
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name="pk_reconstructions"),
        sa.UniqueConstraint(
            "input_sha256",
            "checkpoint_id",
            "params_hash",
            name="uq_reconstructions_input_sha256_checkpoint_id_params_hash",
        ),
    )
    op.create_index("ix_reconstructions_checkpoint_id", "reconstructions", ["checkpoint_id"])

    _backfill_metric_summary()
    for level in LEVELS:
        _backfill_rollups(level)


def _backfill_metric_summary() -> None:
    op.execute(
        f"""
        INSERT INTO metric_summary (run_id, key_id, first_step, last_step, last, min, max, count)
        SELECT m.run_id, m.key_id, min(m.step), max(m.step),
               (SELECT l.value FROM metrics l WHERE l.run_id = m.run_id AND l.key_id = m.key_id
                ORDER BY l.step DESC LIMIT 1),
               min(CASE WHEN {FINITE} THEN value END), max(CASE WHEN {FINITE} THEN value END), count(*)
        FROM metrics m GROUP BY m.run_id, m.key_id
        """
    )


def _backfill_rollups(level: int) -> None:
    """Min and max sample per (run, key, step >> level) bucket; ties go to the earliest step."""
    op.execute(
        f"""
        INSERT INTO metric_rollups (run_id, key_id, level, bucket, count, min_step, min_value, min_wall,
                                    max_step, max_value, max_wall)
        SELECT run_id, key_id, {level}, bucket, count(*),
               max(CASE WHEN rmin = 1 THEN step END), min(value), max(CASE WHEN rmin = 1 THEN wall_time END),
               max(CASE WHEN rmax = 1 THEN step END), max(value), max(CASE WHEN rmax = 1 THEN wall_time END)
        FROM (
            SELECT run_id, key_id, step, value, wall_time, step >> {level} AS bucket,
                   row_number() OVER (PARTITION BY run_id, key_id, step >> {level} ORDER BY value, step) AS rmin,
                   row_number() OVER (PARTITION BY run_id, key_id, step >> {level} ORDER BY value DESC, step) AS rmax
            FROM metrics WHERE {FINITE}
        )
        GROUP BY run_id, key_id, bucket
        """
    )


def downgrade() -> None:
    op.drop_table("reconstructions")
    op.drop_table("artifacts")
    op.drop_table("metric_rollups")
    op.drop_table("metric_summary")
    op.drop_table("jobs")
    with op.batch_alter_table("runs") as batch:
        for name in (
            "pid",
            "control_requested_at",
            "control_request",
            "stderr_tail",
            "exit_code",
            "heartbeat_at",
            "parent_checkpoint_sha256",
            "parent_checkpoint_id",
        ):
            batch.drop_column(name)
    op.drop_index("ux_checkpoints_run_id_step_kind", table_name="checkpoints")
    op.add_column("checkpoints", sa.Column("is_ema", sa.Boolean(), nullable=False, server_default=sa.false()))
    op.execute("UPDATE checkpoints SET is_ema = (kind = 'ema')")
    with op.batch_alter_table("checkpoints") as batch:
        batch.drop_column("size_bytes")
        batch.drop_column("kind")
