"""presence_records and activity_logs (the audit log)."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import ActivityAction, PresenceResource, PresenceStatus
from cmdc_nb.store.models._base import Base, TimestampMixin, enum_column, fk, json_map
from cmdc_nb.store.types import JSONDoc
from cmdc_nb.store.values import utcnow

__all__ = ["ActivityLog", "PresenceRecord"]


class PresenceRecord(TimestampMixin, Base):
    __tablename__ = "presence_records"
    _repr_fields = ("resource_type", "resource_id", "status")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    resource_type: Mapped[PresenceResource] = mapped_column(
        enum_column(PresenceResource, "resource_type"), nullable=False
    )
    resource_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)
    status: Mapped[PresenceStatus] = mapped_column(
        enum_column(PresenceStatus, "status"),
        nullable=False,
        default=PresenceStatus.VIEWING,
        server_default="viewing",
    )
    client_id: Mapped[str] = mapped_column(sa.String(200), nullable=False, unique=True)
    device_type: Mapped[str | None] = mapped_column(sa.String(16))
    user_agent: Mapped[str | None] = mapped_column(sa.Text)
    cursor_state: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    joined_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    last_seen_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    left_at: Mapped[dt.datetime | None]
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.Index("ix_presence_records_resource", "resource_type", "resource_id", "last_seen_at"),
        sa.Index("ix_presence_records_user_id", "user_id"),
    )


class ActivityLog(Base):
    """An append-only audit entry. Rows are never updated, so there is no `updated_at`."""

    __tablename__ = "activity_logs"
    _repr_fields = ("action", "resource_type", "resource_id")

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    user_id: Mapped[uuid.UUID | None] = mapped_column(fk("users.id", "SET NULL"))
    action: Mapped[ActivityAction] = mapped_column(enum_column(ActivityAction, "action"), nullable=False)
    resource_type: Mapped[str] = mapped_column(sa.String(32), nullable=False)
    resource_id: Mapped[uuid.UUID] = mapped_column(sa.Uuid, nullable=False)
    details: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    session_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    client_id: Mapped[str | None] = mapped_column(sa.String(200))
    ip_address: Mapped[str | None] = mapped_column(sa.String(64))
    occurred_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)

    __table_args__ = (
        sa.Index("ix_activity_logs_user_id_occurred_at", "user_id", "occurred_at"),
        sa.Index("ix_activity_logs_resource", "resource_type", "resource_id", "occurred_at"),
        sa.Index("ix_activity_logs_action", "action"),
        sa.Index("ix_activity_logs_session_id", "session_id"),
        sa.Index("ix_activity_logs_occurred_at", "occurred_at"),
    )
