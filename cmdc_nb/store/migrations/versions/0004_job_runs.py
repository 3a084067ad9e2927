"""job_runs: every attempt at every occurrence of a scheduled job, recorded.

Its unique `(job_id, scheduled_for, attempt)` is the last line of defence that makes two schedulers
racing for the same due job run it once.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cmdc_nb.store.types

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "job_runs",
        sa.Column("job_id", sa.Uuid(), nullable=False),
        sa.Column("scheduled_for", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("attempt", sa.Integer(), server_default="1", nullable=False),
        sa.Column("status", sa.String(length=16), server_default="running", nullable=False),
        sa.Column("runner_id", sa.String(length=200), nullable=True),
        sa.Column("started_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("finished_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column(
            "output",
            sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=True,
        ),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", cmdc_nb.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.CheckConstraint(
            "status IN ('running', 'success', 'failure', 'skipped')", name=op.f("ck_job_runs_status")
        ),
        sa.CheckConstraint("attempt >= 1", name=op.f("ck_job_runs_attempt")),
        sa.ForeignKeyConstraint(
            ["job_id"],
            ["scheduled_jobs.id"],
            name=op.f("fk_job_runs_job_id_scheduled_jobs"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_job_runs")),
        sa.UniqueConstraint(
            "job_id", "scheduled_for", "attempt", name=op.f("uq_job_runs_job_id_scheduled_for_attempt")
        ),
    )
    op.create_index("ix_job_runs_job_id_started_at", "job_runs", ["job_id", "started_at"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_job_runs_job_id_started_at", table_name="job_runs")
    op.drop_table("job_runs")
