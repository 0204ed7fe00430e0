"""The evaluation cache: results of evaluating a checkpoint with given settings (a study's PSNR, FD-shapes),
so the database, not a JSON file in the run's folder, says what was computed. Deleting the checkpoint
drops its cached evaluations.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-05
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "evaluations",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("checkpoint_id", sa.Integer(), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False),
        sa.Column("key", sa.JSON(), nullable=False),
        sa.Column("result", sa.JSON(), nullable=False),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.ForeignKeyConstraint(
            ["checkpoint_id"], ["checkpoints.id"], name="fk_evaluations_checkpoint_id_checkpoints", ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name="pk_evaluations"),
        sa.UniqueConstraint("checkpoint_id", "key_hash", name="uq_evaluations_checkpoint_id_key_hash"),
    )
    op.create_index("ix_evaluations_checkpoint_id", "evaluations", ["checkpoint_id"])


def downgrade() -> None:
    op.drop_index("ix_evaluations_checkpoint_id", table_name="evaluations")
    op.drop_table("evaluations")
