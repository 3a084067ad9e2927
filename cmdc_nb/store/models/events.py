"""event_log: the events of committed changes, shared between the processes of one workspace."""

from __future__ import annotations

import datetime as dt
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.models._base import Base
from cmdc_nb.store.types import JSONDoc
from cmdc_nb.store.values import utcnow

__all__ = ["EventLogEntry"]


class EventLogEntry(Base):
    """One event, written in the transaction whose change it announces. Ids increase in commit order
    (writers take a lock just before commit on PostgreSQL), so a reader that remembers the last id it
    saw misses nothing and sees nothing twice. Kept for a day, then pruned."""

    __tablename__ = "event_log"
    _repr_fields = ("id", "topic", "type")

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    topic: Mapped[str] = mapped_column(sa.String(300), nullable=False)
    type: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    origin: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    inserted_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)

    __table_args__ = (sa.Index("ix_event_log_inserted_at", "inserted_at"),)
