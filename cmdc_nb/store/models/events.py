"""event_log: the events of committed changes, shared between the processes of one workspace."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.models._base import Base
from cmdc_nb.store.values import utcnow

__all__ = ["EventLogEntry"]


class EventLogEntry(Base):
    """The events of one committed transaction, written inside it: `events` is their JSON list of
    `[topic, type, payload]`, zlib-compressed when that is smaller (`store.event_log` encodes and
    decodes it). One row a transaction, not one an event: a stored agent round's seven events share
    their ids and timestamps, and compressed together they take a fifth of the room.

    Ids increase in commit order (writers take a lock just before commit on PostgreSQL) and are never
    reused (SQLite's AUTOINCREMENT: pruning every row must not restart them under a reader's last id),
    so a reader that remembers the last id it saw misses nothing and sees nothing twice. Kept for a
    day, then pruned."""

    __tablename__ = "event_log"
    _repr_fields = ("origin", "inserted_at")

    id: Mapped[int] = mapped_column(
        sa.BigInteger().with_variant(sa.Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    origin: Mapped[str] = mapped_column(sa.String(120), nullable=False)
    inserted_at: Mapped[dt.datetime] = mapped_column(nullable=False, default=utcnow)
    events: Mapped[bytes] = mapped_column(sa.LargeBinary, nullable=False)

    __table_args__ = (sa.Index("ix_event_log_inserted_at", "inserted_at"), {"sqlite_autoincrement": True})
