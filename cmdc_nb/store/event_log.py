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
from cmdc_nb.store.prepared import Prepared
from cmdc_nb.store.values import utcnow

__all__ = ["CHANNEL", "append", "last_id", "prune", "read_after"]

CHANNEL = "cmdc_events"
_LOCK_KEY = 0x636D6465  # "cmde": serialises the tails of event-writing transactions


def _plain(payload: Mapping[str, Any]) -> dict[str, Any]:
    # Payloads are meant to be JSON already; anything else (a UUID, a Decimal) is written as text
    # rather than failing the transaction whose change it announces.
    return dict(json.loads(json.dumps(dict(payload), default=str)))


# PostgreSQL: the lock, the rows and the NOTIFY in one statement (one round trip, not three). The rows'
# SELECT reads the lock's CTE, so the lock is held before the first id is drawn; ids follow `ord`; a
# data-modifying CTE runs whole, once, whatever reads it.
_APPEND_PG = Prepared(
    sa.text(
        """
    WITH locked AS (SELECT pg_advisory_xact_lock(:k)),
    added AS (
        INSERT INTO event_log (topic, type, payload, origin, inserted_at)
        SELECT e.topic, e.type, e.payload, :origin, :at
        FROM locked, jsonb_to_recordset(CAST(:rows AS jsonb)) AS e(ord int, topic text, type text, payload jsonb)
        ORDER BY e.ord
        RETURNING id
    )
    SELECT pg_notify(:channel, :origin) FROM (SELECT 1 FROM added LIMIT 1) AS one
    """
    ).bindparams(sa.bindparam("at", type_=sa.DateTime(timezone=True)))
)


def append(db: orm.Session, origin: str, events: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
    now = utcnow()
    listed = list(events)
    if not listed:
        return
    if db.get_bind().dialect.name == "postgresql":
        rows = [
            {"ord": i, "topic": topic, "type": type_, "payload": dict(payload)}
            for i, (topic, type_, payload) in enumerate(listed)
        ]
        # one JSON pass over the whole batch (as `_plain` would, anything not JSON becomes its text)
        text = json.dumps(rows, default=str)
        params = {"k": _LOCK_KEY, "origin": origin, "at": now, "rows": text, "channel": CHANNEL}
        _APPEND_PG.run(db.connection(), params)
        return
    db.connection().execute(
        sa.insert(EventLogEntry),
        [
            {"topic": topic, "type": type_, "payload": _plain(payload), "origin": origin, "inserted_at": now}
            for topic, type_, payload in listed
        ],
    )


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
