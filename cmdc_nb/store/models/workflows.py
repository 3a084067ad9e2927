"""workflows, workflow_runs and workflow_steps."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import StepType, TriggerType, WorkflowRunStatus, WorkflowStatus, WorkflowStepStatus
from cmdc_nb.store.models._base import Base, TimestampMixin, counter, enum_column, fk, json_map, money
from cmdc_nb.store.types import JSONDoc, TextList

__all__ = ["Workflow", "WorkflowRun", "WorkflowStep"]


class Workflow(TimestampMixin, Base):
    __tablename__ = "workflows"
    _repr_fields = ("slug", "version", "status")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    slug: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1, server_default="1")
    status: Mapped[WorkflowStatus] = mapped_column(
        enum_column(WorkflowStatus, "status"),
        nullable=False,
        default=WorkflowStatus.DRAFT,
        server_default="draft",
    )
    is_template: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    forked_from_id: Mapped[uuid.UUID | None] = mapped_column(fk("workflows.id", "SET NULL"))
    steps: Mapped[list[Any]] = mapped_column(JSONDoc, nullable=False, default=list)
    input_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    output_schema: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    default_config: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    triggers: Mapped[list[Any]] = mapped_column(JSONDoc, nullable=False, default=list)
    failure_policy: Mapped[str] = mapped_column(
        sa.String(16), nullable=False, default="fail_fast", server_default="fail_fast"
    )
    run_count: Mapped[int] = counter()
    success_count: Mapped[int] = counter()
    failure_count: Mapped[int] = counter()
    avg_duration_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    avg_cost_usd: Mapped[Decimal | None] = money(nullable=True)
    tags: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    category: Mapped[str | None] = mapped_column(sa.String(32))
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.UniqueConstraint("user_id", "slug"),
        sa.CheckConstraint("failure_policy IN ('fail_fast', 'continue')", name="failure_policy"),
        sa.Index("ix_workflows_tags", "tags", postgresql_using="gin"),
        sa.Index("ix_workflows_status", "status"),
    )


class WorkflowRun(TimestampMixin, Base):
    __tablename__ = "workflow_runs"
    _repr_fields = ("workflow_id", "status")

    # The seed declared this NOT NULL with ON DELETE SET NULL, which cannot both hold; a run is part of
    # its workflow's history, so deleting a workflow deletes its runs.
    workflow_id: Mapped[uuid.UUID] = mapped_column(fk("workflows.id", "CASCADE"), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    session_id: Mapped[uuid.UUID | None] = mapped_column(fk("sessions.id", "SET NULL"))
    workflow_snapshot: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False)
    status: Mapped[WorkflowRunStatus] = mapped_column(
        enum_column(WorkflowRunStatus, "status"),
        nullable=False,
        default=WorkflowRunStatus.PENDING,
        server_default="pending",
    )
    input: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    output: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    current_step_id: Mapped[str | None] = mapped_column(sa.String(100))
    completed_step_ids: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    failed_step_id: Mapped[str | None] = mapped_column(sa.String(100))
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    total_tokens_in: Mapped[int] = counter(big=True)
    total_tokens_out: Mapped[int] = counter(big=True)
    total_cost_usd: Mapped[Decimal] = money()
    trigger_type: Mapped[TriggerType | None] = mapped_column(enum_column(TriggerType, "trigger_type"))
    trigger_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    error_type: Mapped[str | None] = mapped_column(sa.String(100))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    error_step_id: Mapped[str | None] = mapped_column(sa.String(100))
    git_context: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    retry_of_run_id: Mapped[uuid.UUID | None] = mapped_column(fk("workflow_runs.id", "SET NULL"))
    retry_count: Mapped[int] = counter()
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.Index("ix_workflow_runs_workflow_id_inserted_at", "workflow_id", "inserted_at"),
        sa.Index("ix_workflow_runs_user_id_status", "user_id", "status"),
        sa.Index("ix_workflow_runs_status", "status"),
    )


class WorkflowStep(TimestampMixin, Base):
    __tablename__ = "workflow_steps"
    _repr_fields = ("step_id", "status")

    workflow_run_id: Mapped[uuid.UUID] = mapped_column(fk("workflow_runs.id", "CASCADE"), nullable=False)
    step_id: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    step_name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    step_type: Mapped[StepType] = mapped_column(enum_column(StepType, "step_type"), nullable=False)
    step_config: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    status: Mapped[WorkflowStepStatus] = mapped_column(
        enum_column(WorkflowStepStatus, "status"),
        nullable=False,
        default=WorkflowStepStatus.PENDING,
        server_default="pending",
    )
    input: Mapped[Any | None] = mapped_column(JSONDoc)
    output: Mapped[Any | None] = mapped_column(JSONDoc)
    agent_call_id: Mapped[uuid.UUID | None] = mapped_column(fk("agent_calls.id", "SET NULL"))
    approval_id: Mapped[uuid.UUID | None] = mapped_column(fk("approval_items.id", "SET NULL"))
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    tokens_in: Mapped[int | None] = mapped_column(sa.Integer)
    tokens_out: Mapped[int | None] = mapped_column(sa.Integer)
    cost_usd: Mapped[Decimal | None] = money(nullable=True)
    error_type: Mapped[str | None] = mapped_column(sa.String(100))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    attempt_number: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1, server_default="1")
    max_attempts: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1, server_default="1")
    # The step's idempotency key: the same through a resume and a policy retry, so an effect keyed by it
    # applies once, although the step itself may run again after a crash (at-least-once).
    idempotency_key: Mapped[str | None] = mapped_column(sa.String(200))
    sequence: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    depends_on: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.UniqueConstraint("workflow_run_id", "step_id"),
        sa.CheckConstraint("sequence >= 0", name="sequence"),
        sa.Index("ix_workflow_steps_workflow_run_id_sequence", "workflow_run_id", "sequence"),
        sa.Index("ix_workflow_steps_status", "status"),
    )
