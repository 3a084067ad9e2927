"""sessions and messages."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import MessageRole, SessionStatus
from cmdc_nb.store.models._base import Base, TimestampMixin, counter, enum_column, fk, json_map, money
from cmdc_nb.store.types import JSONDoc, TextList, UUIDList

__all__ = ["Message", "Session"]


class Session(TimestampMixin, Base):
    """A chat session. Forks form a tree through `parent_session_id`."""

    __tablename__ = "sessions"
    _repr_fields = ("name", "slug", "status")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    purpose: Mapped[str | None] = mapped_column(sa.Text)
    slug: Mapped[str | None] = mapped_column(sa.String(100))
    status: Mapped[SessionStatus] = mapped_column(
        enum_column(SessionStatus, "status"),
        nullable=False,
        default=SessionStatus.ACTIVE,
        server_default="active",
    )
    parent_session_id: Mapped[uuid.UUID | None] = mapped_column(fk("sessions.id", "SET NULL"))
    # Messages reference sessions too; the cycle is closed after both tables exist.
    forked_at_message_id: Mapped[uuid.UUID | None] = mapped_column(
        sa.ForeignKey("messages.id", ondelete="SET NULL", use_alter=True)
    )
    message_count: Mapped[int] = counter()
    total_tokens_in: Mapped[int] = counter(big=True)
    total_tokens_out: Mapped[int] = counter(big=True)
    total_cost_usd: Mapped[Decimal] = money()
    total_duration_ms: Mapped[int] = counter(big=True)
    # config
    default_agent: Mapped[str | None] = mapped_column(sa.String(64))
    default_model: Mapped[str | None] = mapped_column(sa.String(200))
    system_prompt: Mapped[str | None] = mapped_column(sa.Text)
    temperature: Mapped[float | None] = mapped_column(sa.Float)
    max_tokens: Mapped[int | None] = mapped_column(sa.Integer)
    linked_index_ids: Mapped[list[uuid.UUID]] = mapped_column(UUIDList(), nullable=False, default=list)
    linked_workflow_ids: Mapped[list[uuid.UUID]] = mapped_column(UUIDList(), nullable=False, default=list)
    tags: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    git_context: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    # sharing (team mode): who besides the owner may read and decide
    visibility: Mapped[str] = mapped_column(
        sa.String(16), nullable=False, default="private", server_default="private"
    )
    shared_with_user_ids: Mapped[list[uuid.UUID]] = mapped_column(UUIDList(), nullable=False, default=list)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.CheckConstraint(
            "temperature IS NULL OR (temperature >= 0 AND temperature <= 2)", name="temperature"
        ),
        sa.CheckConstraint("max_tokens IS NULL OR max_tokens > 0", name="max_tokens"),
        sa.CheckConstraint("visibility IN ('private', 'shared', 'public')", name="visibility"),
        sa.Index(
            "uq_sessions_user_id_slug",
            "user_id",
            "slug",
            unique=True,
            postgresql_where=sa.text("slug IS NOT NULL"),
            sqlite_where=sa.text("slug IS NOT NULL"),
        ),
        sa.Index("ix_sessions_user_id_updated_at", "user_id", "updated_at"),
        sa.Index("ix_sessions_status", "status"),
        sa.Index("ix_sessions_parent_session_id", "parent_session_id"),
        sa.Index("ix_sessions_tags", "tags", postgresql_using="gin"),
    )


class Message(TimestampMixin, Base):
    """One message of a session. `sequence` is unique and gap-free within its session."""

    __tablename__ = "messages"
    _repr_fields = ("session_id", "sequence", "role")

    session_id: Mapped[uuid.UUID] = mapped_column(fk("sessions.id", "CASCADE"), nullable=False)
    role: Mapped[MessageRole] = mapped_column(enum_column(MessageRole, "role"), nullable=False)
    content: Mapped[str | None] = mapped_column(sa.Text)
    content_blocks: Mapped[list[Any]] = mapped_column(JSONDoc, nullable=False, default=list)
    sequence: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    agent_call_id: Mapped[uuid.UUID | None] = mapped_column(fk("agent_calls.id", "SET NULL"))
    tool_use_id: Mapped[uuid.UUID | None] = mapped_column(fk("tool_uses.id", "SET NULL"))
    visible_in_branches: Mapped[list[uuid.UUID]] = mapped_column(UUIDList(), nullable=False, default=list)
    token_count: Mapped[int | None] = mapped_column(sa.Integer)
    attachments: Mapped[list[Any]] = mapped_column(JSONDoc, nullable=False, default=list)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        # The seed's (session_id, sequence) index was not unique, so concurrent writers could collide.
        sa.UniqueConstraint("session_id", "sequence"),
        sa.CheckConstraint("sequence >= 1", name="sequence"),
        sa.Index("ix_messages_session_id_role", "session_id", "role"),
        sa.Index("ix_messages_session_id_inserted_at", "session_id", "inserted_at"),
        sa.Index("ix_messages_agent_call_id", "agent_call_id"),
        sa.Index("ix_messages_tool_use_id", "tool_use_id"),
    )
