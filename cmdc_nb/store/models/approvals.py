"""approval_items (the queue) and approval_rules (auto-approval)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import (
    ApprovalSourceType,
    ApprovalStatus,
    Priority,
    RiskLevel,
    RuleAction,
    RuleStatus,
    TimeoutAction,
)
from cmdc_nb.store.models._base import Base, TimestampMixin, counter, enum_column, fk, json_map
from cmdc_nb.store.types import JSONDoc, TextList, UUIDList

__all__ = ["ApprovalItem", "ApprovalRule"]

# The approval type is kept as validated text rather than a CHECK-ed enum: rules also take "*".
_APPROVAL_TYPES = "('tool_use', 'file_write', 'shell_command', 'workflow_step', 'plan', 'custom')"


class ApprovalItem(TimestampMixin, Base):
    __tablename__ = "approval_items"
    _repr_fields = ("approval_type", "priority", "status")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    session_id: Mapped[uuid.UUID | None] = mapped_column(fk("sessions.id", "CASCADE"))
    workflow_run_id: Mapped[uuid.UUID | None] = mapped_column(fk("workflow_runs.id", "CASCADE"))
    approval_type: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    status: Mapped[ApprovalStatus] = mapped_column(
        enum_column(ApprovalStatus, "status"),
        nullable=False,
        default=ApprovalStatus.PENDING,
        server_default="pending",
    )
    priority: Mapped[Priority] = mapped_column(
        enum_column(Priority, "priority"), nullable=False, default=Priority.NORMAL, server_default="normal"
    )
    # 0 low … 3 critical, so the queue sorts by real priority, not alphabetically as the seed did.
    priority_rank: Mapped[int] = mapped_column(sa.SmallInteger, nullable=False, default=1, server_default="1")
    title: Mapped[str] = mapped_column(sa.String(300), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    source_type: Mapped[ApprovalSourceType] = mapped_column(
        enum_column(ApprovalSourceType, "source_type"), nullable=False
    )
    source_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    context: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    risk_level: Mapped[RiskLevel | None] = mapped_column(enum_column(RiskLevel, "risk_level"))
    risk_factors: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    decided_by_id: Mapped[uuid.UUID | None] = mapped_column(fk("users.id", "SET NULL"))
    decided_at: Mapped[dt.datetime | None]
    decision_note: Mapped[str | None] = mapped_column(sa.Text)
    modified_payload: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    expires_at: Mapped[dt.datetime | None]
    timeout_action: Mapped[TimeoutAction] = mapped_column(
        enum_column(TimeoutAction, "timeout_action"),
        nullable=False,
        default=TimeoutAction.DENY,
        server_default="deny",
    )
    auto_approval_rule_id: Mapped[uuid.UUID | None] = mapped_column(fk("approval_rules.id", "SET NULL"))
    auto_approval_reason: Mapped[str | None] = mapped_column(sa.Text)
    notified_at: Mapped[dt.datetime | None]
    notification_channels: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.CheckConstraint(f"approval_type IN {_APPROVAL_TYPES}", name="approval_type"),
        sa.CheckConstraint("priority_rank BETWEEN 0 AND 3", name="priority_rank"),
        sa.Index("ix_approval_items_queue", "user_id", "status", "priority_rank", "inserted_at"),
        sa.Index("ix_approval_items_source", "source_type", "source_id"),
        # the rule engine's sliding-window count (migration 0002)
        sa.Index("ix_approval_items_rule_window", "auto_approval_rule_id", "status", "decided_at"),
        sa.Index("ix_approval_items_session_id_status", "session_id", "status"),
        sa.Index(
            "ix_approval_items_expires_at_pending",
            "expires_at",
            postgresql_where=sa.text("status = 'pending'"),
            sqlite_where=sa.text("status = 'pending'"),
        ),
    )


class ApprovalRule(TimestampMixin, Base):
    __tablename__ = "approval_rules"
    _repr_fields = ("name", "action", "priority", "status")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[RuleStatus] = mapped_column(
        enum_column(RuleStatus, "status"), nullable=False, default=RuleStatus.ACTIVE, server_default="active"
    )
    approval_type: Mapped[str] = mapped_column(sa.String(32), nullable=False, default="*", server_default="*")
    tool_names: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    conditions: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    action: Mapped[RuleAction] = mapped_column(enum_column(RuleAction, "action"), nullable=False)
    action_note: Mapped[str | None] = mapped_column(sa.Text)
    max_auto_approvals_per_hour: Mapped[int | None] = mapped_column(sa.Integer)
    max_auto_approvals_per_session: Mapped[int | None] = mapped_column(sa.Integer)
    current_hour_count: Mapped[int] = counter()
    hour_reset_at: Mapped[dt.datetime | None]
    priority: Mapped[int] = counter()
    times_triggered: Mapped[int] = counter()
    last_triggered_at: Mapped[dt.datetime | None]
    applies_to_sessions: Mapped[list[uuid.UUID]] = mapped_column(UUIDList(), nullable=False, default=list)
    applies_to_workflows: Mapped[list[uuid.UUID]] = mapped_column(UUIDList(), nullable=False, default=list)
    # A sticky decision ("always allow this tool with these arguments in this session") is a rule.
    is_sticky: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.CheckConstraint(
            f"approval_type = '*' OR approval_type IN {_APPROVAL_TYPES}", name="approval_type"
        ),
        sa.CheckConstraint("priority >= 0", name="priority"),
        sa.CheckConstraint(
            "max_auto_approvals_per_hour IS NULL OR max_auto_approvals_per_hour >= 0", name="max_per_hour"
        ),
        sa.Index("ix_approval_rules_user_id_status_priority", "user_id", "status", "priority"),
    )
