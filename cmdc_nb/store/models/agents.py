"""agent_calls (one row per LLM request) and tool_uses."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import AgentCallStatus, ToolUseStatus
from cmdc_nb.store.models._base import Base, TimestampMixin, counter, enum_column, fk, json_map, money
from cmdc_nb.store.types import JSONDoc, TextList

__all__ = ["AgentCall", "ToolUse"]


class AgentCall(TimestampMixin, Base):
    __tablename__ = "agent_calls"
    _repr_fields = ("provider", "model", "status")

    session_id: Mapped[uuid.UUID] = mapped_column(fk("sessions.id", "CASCADE"), nullable=False)
    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    provider: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    model: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    status: Mapped[AgentCallStatus] = mapped_column(
        enum_column(AgentCallStatus, "status"),
        nullable=False,
        default=AgentCallStatus.PENDING,
        server_default="pending",
    )
    # With `prompt_ref` set, `prompt_messages` holds only the messages after the first `keep` of the
    # request of call `base` (same session): a stored round no longer copies the whole conversation.
    # `services.agents.call_request` rebuilds the request; rows without it hold the full copy.
    prompt_messages: Mapped[list[Any]] = mapped_column(JSONDoc, nullable=False, default=list)
    prompt_ref: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    system_prompt: Mapped[str | None] = mapped_column(sa.Text)
    response_content: Mapped[str | None] = mapped_column(sa.Text)
    response_blocks: Mapped[list[Any]] = mapped_column(JSONDoc, nullable=False, default=list)
    stop_reason: Mapped[str | None] = mapped_column(sa.String(32))
    tokens_in: Mapped[int | None] = mapped_column(sa.Integer)
    tokens_out: Mapped[int | None] = mapped_column(sa.Integer)
    cache_tokens_read: Mapped[int] = counter()
    cache_tokens_write: Mapped[int] = counter()
    cost_usd: Mapped[Decimal | None] = money(nullable=True)
    started_at: Mapped[dt.datetime | None]
    first_token_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    temperature: Mapped[float | None] = mapped_column(sa.Float)
    max_tokens: Mapped[int | None] = mapped_column(sa.Integer)
    tools_provided: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    error_type: Mapped[str | None] = mapped_column(sa.String(100))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    retry_count: Mapped[int] = counter()
    workflow_run_id: Mapped[uuid.UUID | None] = mapped_column(fk("workflow_runs.id", "SET NULL"))
    # workflow_steps.agent_call_id points back here; the cycle is closed after both tables exist.
    workflow_step_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("workflow_steps.id", ondelete="SET NULL", use_alter=True)
    )
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.CheckConstraint(
            "temperature IS NULL OR (temperature >= 0 AND temperature <= 2)", name="temperature"
        ),
        sa.CheckConstraint("max_tokens IS NULL OR max_tokens > 0", name="max_tokens"),
        sa.Index("ix_agent_calls_session_id_inserted_at", "session_id", "inserted_at"),
        sa.Index("ix_agent_calls_user_id_inserted_at", "user_id", "inserted_at"),
        sa.Index("ix_agent_calls_status", "status"),
        sa.Index("ix_agent_calls_provider_model", "provider", "model"),
        sa.Index("ix_agent_calls_workflow_run_id", "workflow_run_id"),
        sa.Index("ix_agent_calls_inserted_at", "inserted_at"),
    )


class ToolUse(TimestampMixin, Base):
    __tablename__ = "tool_uses"
    _repr_fields = ("tool_name", "sequence", "status")

    agent_call_id: Mapped[uuid.UUID] = mapped_column(fk("agent_calls.id", "CASCADE"), nullable=False)
    session_id: Mapped[uuid.UUID] = mapped_column(fk("sessions.id", "CASCADE"), nullable=False)
    tool_name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    tool_use_id: Mapped[str | None] = mapped_column(sa.String(200))
    input: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    output: Mapped[str | None] = mapped_column(sa.Text)
    output_truncated: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    status: Mapped[ToolUseStatus] = mapped_column(
        enum_column(ToolUseStatus, "status"),
        nullable=False,
        default=ToolUseStatus.PENDING,
        server_default="pending",
    )
    requires_approval: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    approval_id: Mapped[uuid.UUID | None] = mapped_column(fk("approval_items.id", "SET NULL"))
    approved_by_id: Mapped[uuid.UUID | None] = mapped_column(fk("users.id", "SET NULL"))
    approved_at: Mapped[dt.datetime | None]
    denial_reason: Mapped[str | None] = mapped_column(sa.Text)
    started_at: Mapped[dt.datetime | None]
    completed_at: Mapped[dt.datetime | None]
    duration_ms: Mapped[int | None] = mapped_column(sa.Integer)
    file_changes: Mapped[list[Any]] = mapped_column(JSONDoc, nullable=False, default=list)
    exit_code: Mapped[int | None] = mapped_column(sa.Integer)
    stdout: Mapped[str | None] = mapped_column(sa.Text)
    stderr: Mapped[str | None] = mapped_column(sa.Text)
    error_type: Mapped[str | None] = mapped_column(sa.String(100))
    error_message: Mapped[str | None] = mapped_column(sa.Text)
    sequence: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.UniqueConstraint("agent_call_id", "sequence"),
        sa.Index("ix_tool_uses_session_id", "session_id"),
        sa.Index("ix_tool_uses_tool_name", "tool_name"),
        sa.Index("ix_tool_uses_status", "status"),
        sa.Index("ix_tool_uses_requires_approval_status", "requires_approval", "status"),
        sa.Index("ix_tool_uses_approved_by_id", "approved_by_id"),
        sa.Index("ix_tool_uses_approval_id", "approval_id"),
    )
