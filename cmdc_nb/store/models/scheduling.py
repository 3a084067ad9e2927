"""scheduled_jobs and job_runs (one row per attempt at one occurrence)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import JobStatus, JobType, ScheduleType
from cmdc_nb.store.models._base import Base, TimestampMixin, counter, enum_column, fk, json_map
from cmdc_nb.store.types import JSONDoc, TextList

__all__ = ["JobRun", "ScheduledJob"]


class ScheduledJob(TimestampMixin, Base):
    __tablename__ = "scheduled_jobs"
    _repr_fields = ("name", "schedule_type", "status", "next_run_at")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    job_type: Mapped[JobType] = mapped_column(enum_column(JobType, "job_type"), nullable=False)
    job_config: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    schedule_type: Mapped[ScheduleType] = mapped_column(
        enum_column(ScheduleType, "schedule_type"), nullable=False
    )
    cron_expression: Mapped[str | None] = mapped_column(sa.String(200))
    interval_seconds: Mapped[int | None] = mapped_column(sa.Integer)
    run_at: Mapped[dt.datetime | None]
    timezone: Mapped[str] = mapped_column(sa.String(64), nullable=False, default="UTC", server_default="UTC")
    status: Mapped[JobStatus] = mapped_column(
        enum_column(JobStatus, "status"), nullable=False, default=JobStatus.ACTIVE, server_default="active"
    )
    last_run_at: Mapped[dt.datetime | None]
    last_run_status: Mapped[str | None] = mapped_column(sa.String(16))
    last_run_error: Mapped[str | None] = mapped_column(sa.Text)
    next_run_at: Mapped[dt.datetime | None]
    run_count: Mapped[int] = counter()
    success_count: Mapped[int] = counter()
    failure_count: Mapped[int] = counter()
    max_runs: Mapped[int | None] = mapped_column(sa.Integer)
    expires_at: Mapped[dt.datetime | None]
    allow_concurrent: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    currently_running: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    # Who holds the claim and until when: a crashed runner's claim lapses instead of blocking forever.
    claimed_by: Mapped[str | None] = mapped_column(sa.String(200))
    claimed_until: Mapped[dt.datetime | None]
    misfire_policy: Mapped[str] = mapped_column(
        sa.String(16), nullable=False, default="run_once", server_default="run_once"
    )
    retry_on_failure: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=True, server_default=sa.true()
    )
    max_retries: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=3, server_default="3")
    retry_delay_seconds: Mapped[int] = mapped_column(
        sa.Integer, nullable=False, default=60, server_default="60"
    )
    notify_on_failure: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=True, server_default=sa.true()
    )
    notify_on_success: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    notification_channels: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.CheckConstraint("interval_seconds IS NULL OR interval_seconds > 0", name="interval_seconds"),
        sa.CheckConstraint("misfire_policy IN ('run_once', 'skip')", name="misfire_policy"),
        sa.Index(
            "ix_scheduled_jobs_due",
            "next_run_at",
            postgresql_where=sa.text("status = 'active'"),
            sqlite_where=sa.text("status = 'active'"),
        ),
        sa.Index("ix_scheduled_jobs_user_id_status", "user_id", "status"),
    )


class JobRun(TimestampMixin, Base):
    """One attempt at one occurrence of a job. `(job_id, scheduled_for, attempt)` is unique, so two
    runners can never both run the same occurrence."""

    __tablename__ = "job_runs"
    _repr_fields = ("job_id", "scheduled_for", "attempt", "status")

    job_id: Mapped[uuid.UUID] = mapped_column(fk("scheduled_jobs.id", "CASCADE"), nullable=False)
    scheduled_for: Mapped[dt.datetime] = mapped_column(nullable=False)
    attempt: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1, server_default="1")
    status: Mapped[str] = mapped_column(
        sa.String(16), nullable=False, default="running", server_default="running"
    )
    runner_id: Mapped[str | None] = mapped_column(sa.String(200))
    started_at: Mapped[dt.datetime | None]
    finished_at: Mapped[dt.datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    error: Mapped[str | None] = mapped_column(sa.Text)
    output: Mapped[Any | None] = mapped_column(JSONDoc)

    __table_args__ = (
        sa.UniqueConstraint("job_id", "scheduled_for", "attempt"),
        sa.CheckConstraint("status IN ('running', 'success', 'failure', 'skipped')", name="status"),
        sa.CheckConstraint("attempt >= 1", name="attempt"),
        sa.Index("ix_job_runs_job_id_started_at", "job_id", "started_at"),
    )
