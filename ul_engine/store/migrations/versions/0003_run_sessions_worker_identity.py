"""Run sessions and worker identity, for run control without races.

- runs.session: incremented each time a worker starts training the run (a compare-and-set on the status);
  runs.control_session: the session a pending control request targets, so a stop meant for one session
  never stops a later one.
- runs.pid_started_at and runs.host: with the pid, they identify the worker process, so a dead worker on
  this machine is seen at once (a reused pid has another start time) instead of after a heartbeat timeout.

Existing runs get session 0 and no identity (their liveness falls back to the heartbeat).

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("runs", sa.Column("pid_started_at", sa.Float(), nullable=True))
    op.add_column("runs", sa.Column("host", sa.String(255), nullable=True))
    op.add_column("runs", sa.Column("session", sa.Integer(), nullable=False, server_default="0"))
    op.add_column("runs", sa.Column("control_session", sa.Integer(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        for name in ("control_session", "session", "host", "pid_started_at"):
            batch.drop_column(name)
