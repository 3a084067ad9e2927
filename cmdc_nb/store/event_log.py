"""Reading and writing the shared event log (`event_log`), below the workspace's event bridge.

Writers append a committed transaction's events inside that transaction. On PostgreSQL they first take
a transaction-scoped advisory lock, held until commit, so ids are handed out in commit order: a reader
that asks for `id > last` can never miss a row that commits later with a smaller id. Then a NOTIFY on
`CHANNEL` (delivered at commit) wakes the listeners; it carries only the writer's origin (so a listener
can ignore its own process's commits) — rows are read from the table.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb.store.models.events import EventLogEntry
from cmdc_nb.store.values import utcnow

__all__ = ["CHANNEL", "append", "last_id", "prune", "read_after"]

CHANNEL = "cmdc_events"
_LOCK_KEY = 0x636D6465  # "cmde": serialises the tails of event-writing transactions


def _plain(payload: Mapping[str, Any]) -> dict[str, Any]:
    # Payloads are meant to be JSON already; anything else (a UUID, a Decimal) is written as text
    # rather than failing the transaction whose change it announces.
    return dict(json.loads(json.dumps(dict(payload), default=str)))


def append(db: orm.Session, origin: str, events: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
    rows = [
        {"topic": topic, "type": type_, "payload": _plain(payload), "origin": origin, "inserted_at": utcnow()}
        for topic, type_, payload in events
    ]
    if not rows:
        return
    pg = db.get_bind().dialect.name == "postgresql"
    if pg:
        db.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    db.execute(sa.insert(EventLogEntry), rows)
    if pg:
        db.execute(sa.text("SELECT pg_notify(:channel, :origin)"), {"channel": CHANNEL, "origin": origin})


def last_id(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(EventLogEntry.id), 0))).scalar_one())


def read_after(
    conn: sa.Connection, after: int, *, skip_origin: str | None = None, limit: int = 1000
) -> Sequence[Any]:
    """Rows with `id > after` (not written by `skip_origin`), oldest first: id, topic, type, payload, origin."""
    e = EventLogEntry
    stmt = sa.select(e.id, e.topic, e.type, e.payload, e.origin).where(e.id > after)
    if skip_origin is not None:
        stmt = stmt.where(e.origin != skip_origin)
    return conn.execute(stmt.order_by(e.id).limit(limit)).all()


def prune(conn: sa.Connection, *, keep: dt.timedelta) -> int:
    """Delete events older than `keep`; returns how many."""
    result = conn.execute(sa.delete(EventLogEntry).where(EventLogEntry.inserted_at < utcnow() - keep))
    return int(result.rowcount or 0)
