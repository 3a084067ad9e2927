"""gateway_keys, a2a_tasks and webhook_deliveries: what the HTTP gateway (`cmdc-nb serve`) keeps."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import WebhookDeliveryStatus
from cmdc_nb.store.models._base import Base, TimestampMixin, counter, enum_column, fk
from cmdc_nb.store.types import JSONDoc

__all__ = ["A2ATask", "GatewayKey", "WebhookDelivery"]


class GatewayKey(TimestampMixin, Base):
    """A key that lets a program call the gateway as a user. Only its SHA-256 is stored (the key is 32
    random bytes, so a fast hash is as good as a slow one) and its first characters, to recognise it."""

    __tablename__ = "gateway_keys"
    _repr_fields = ("name", "key_prefix")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    key_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False, unique=True)
    key_prefix: Mapped[str] = mapped_column(sa.String(16), nullable=False)
    revoked_at: Mapped[dt.datetime | None]
    expires_at: Mapped[dt.datetime | None]
    last_used_at: Mapped[dt.datetime | None]
    use_count: Mapped[int] = counter(big=True)

    __table_args__ = (sa.Index("ix_gateway_keys_user_id", "user_id"),)


class A2ATask(TimestampMixin, Base):
    """An A2A task: the protocol's document (JSON of the A2A `Task`), its owner and the chat session
    that does the work. Kept in the database, so a task outlives the server that started it."""

    __tablename__ = "a2a_tasks"
    _repr_fields = ("task_id", "state")

    task_id: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    owner: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    context_id: Mapped[str | None] = mapped_column(sa.String(200))
    state: Mapped[str] = mapped_column(sa.String(40), nullable=False)
    session_id: Mapped[uuid.UUID | None] = mapped_column(fk("sessions.id", "SET NULL"))
    document: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)

    __table_args__ = (
        sa.UniqueConstraint("owner", "task_id"),
        sa.Index("ix_a2a_tasks_owner_updated", "owner", "updated_at"),
    )


class WebhookDelivery(TimestampMixin, Base):
    """One event sent (or to be sent) to one webhook URL. Failed deliveries stay for replay."""

    __tablename__ = "webhook_deliveries"
    _repr_fields = ("event_type", "status", "attempts")

    url: Mapped[str] = mapped_column(sa.Text, nullable=False)
    event_type: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    status: Mapped[WebhookDeliveryStatus] = mapped_column(
        enum_column(WebhookDeliveryStatus, "status"),
        nullable=False,
        default=WebhookDeliveryStatus.PENDING,
        server_default="pending",
    )
    attempts: Mapped[int] = counter()
    last_status_code: Mapped[int | None]
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    delivered_at: Mapped[dt.datetime | None]

    __table_args__ = (sa.Index("ix_webhook_deliveries_status", "status", "inserted_at"),)
