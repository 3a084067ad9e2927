"""event_log holds one row per committed transaction, its events compressed together.

A stored agent round logged seven rows of about 400 bytes, each repeating the session's, the call's
and the user's ids: on PostgreSQL, where events are shared by default, more than half of a round's
bytes. Now a transaction's events are one row, `events`, their JSON list of `[topic, type, payload]`
zlib-compressed when that is smaller: about a fifth of the room, and one index entry instead of seven.
Existing rows become batches of one, keeping their ids, so a reader's last id stays valid. A
downgrade writes each batch's events back as rows of their own, in order, with new ids: a process
reading across the downgrade may see up to a day of events again.

SQLite's table is made AUTOINCREMENT: once pruning had emptied it, SQLite handed out ids from 1 again,
below every reader's last id, and those events were never read.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-05
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterator, Sequence
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

import cmdc_nb.store.types

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_PAGE = 1000
_log = sa.table(
    "event_log",
    sa.column("id", sa.BigInteger()),
    sa.column("topic", sa.String()),
    sa.column("type", sa.String()),
    sa.column("payload", sa.JSON()),
    sa.column("origin", sa.String()),
    sa.column("inserted_at", cmdc_nb.store.types.UTCDateTime(timezone=True)),
    sa.column("events", sa.LargeBinary()),
)


# The format as this revision writes it (a migration keeps the code of its time; the log module reads
# the same format).
def _encode(events: list[list[Any]]) -> bytes:
    text = json.dumps(events, separators=(",", ":"), default=str).encode()
    packed = zlib.compress(text, 1)
    return packed if len(packed) < len(text) else text


def _decode(blob: bytes) -> list[list[Any]]:
    data = bytes(blob)
    listed: list[list[Any]] = json.loads(data if data[:1] == b"[" else zlib.decompress(data))
    return listed


def _pages(conn: sa.Connection, *columns: Any) -> Iterator[Sequence[Any]]:
    after = -1
    while True:
        rows = conn.execute(
            sa.select(_log.c.id, *columns).where(_log.c.id > after).order_by(_log.c.id).limit(_PAGE)
        ).all()
        if not rows:
            return
        yield rows
        after = rows[-1].id


def _payload(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


def upgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("event_log") as batch:
        batch.add_column(sa.Column("events", sa.LargeBinary(), nullable=True))
    for rows in _pages(conn, _log.c.topic, _log.c.type, _log.c.payload):
        conn.execute(
            _log.update().where(_log.c.id == sa.bindparam("row_id")).values(events=sa.bindparam("blob")),
            [{"row_id": r.id, "blob": _encode([[r.topic, r.type, _payload(r.payload)]])} for r in rows],
        )
    sqlite = conn.dialect.name == "sqlite"
    with op.batch_alter_table(
        "event_log",
        recreate="always" if sqlite else "auto",
        table_kwargs={"sqlite_autoincrement": True} if sqlite else {},
    ) as batch:
        batch.drop_column("topic")
        batch.drop_column("type")
        batch.drop_column("payload")
        batch.alter_column("events", existing_type=sa.LargeBinary(), nullable=False)


def downgrade() -> None:
    conn = op.get_bind()
    with op.batch_alter_table("event_log") as batch:
        batch.add_column(sa.Column("topic", sa.String(length=300), nullable=True))
        batch.add_column(sa.Column("type", sa.String(length=100), nullable=True))
        batch.add_column(
            sa.Column(
                "payload",
                sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
                nullable=True,
            )
        )
    # Each batch back to a row per event, in order: read them all, then write them anew.
    expanded: list[dict[str, Any]] = []
    for rows in _pages(conn, _log.c.origin, _log.c.inserted_at, _log.c.events):
        for r in rows:
            for topic, type_, payload in _decode(r.events):
                expanded.append(
                    {"topic": topic, "type": type_, "payload": payload, "origin": r.origin,
                     "inserted_at": r.inserted_at, "events": b""}
                )  # fmt: skip
    conn.execute(_log.delete())
    if expanded:
        conn.execute(sa.insert(_log), expanded)
    sqlite = conn.dialect.name == "sqlite"
    with op.batch_alter_table("event_log", recreate="always" if sqlite else "auto") as batch:
        batch.drop_column("events")
        batch.alter_column("topic", existing_type=sa.String(length=300), nullable=False)
        batch.alter_column("type", existing_type=sa.String(length=100), nullable=False)
        batch.alter_column(
            "payload",
            existing_type=sa.JSON().with_variant(postgresql.JSONB(astext_type=sa.Text()), "postgresql"),
            nullable=False,
        )
