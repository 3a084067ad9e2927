"""Reading and writing the shared event log (`event_log`), below the workspace's event bridge.

Writers append a committed transaction's events inside that transaction, as one row: the events'
JSON list, zlib-compressed when that is smaller (`encode`; a round's seven events repeat the same ids
and keys, and shrink to a fifth). On PostgreSQL they first take a transaction-scoped advisory lock,
held until commit, so ids are handed out in commit order: a reader that asks for `id > last` can never
miss a row that commits later with a smaller id. Then a NOTIFY on `CHANNEL` (delivered at commit)
wakes the listeners; it carries only the writer's origin (so a listener can ignore its own process's
commits) — rows are read from the table.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import zlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import sqlalchemy as sa

from cmdc_nb.store.models.events import EventLogEntry
from cmdc_nb.store.prepared import Prepared
from cmdc_nb.store.values import utcnow

__all__ = ["CHANNEL", "LoggedBatch", "append", "decode", "encode", "last_id", "prune", "read_after"]

log = logging.getLogger("cmdc_nb.events.log")

CHANNEL = "cmdc_events"
_LOCK_KEY = 0x636D6465  # "cmde": serialises the tails of event-writing transactions
_LEVEL = 1  # zlib's fastest: within 5 % of its best on these batches, at a third of the time
_SMALL, _SMALL_WBITS, _SMALL_MEMLEVEL = 4096, 12, 4  # a batch this small: a 2**12-byte window
# The most a batch's JSON may take. A reader inflates no more than this (a row of half a megabyte could
# otherwise inflate to gigabytes in every listening process), and a writer whose events are larger logs
# their topics and types with the payloads left out, so readers never meet a batch they must refuse.
MAX_BATCH_BYTES = 64 * 1024 * 1024

Event = tuple[str, str, dict[str, Any]]


class LoggedBatch(NamedTuple):
    """One committed transaction's events as the log holds them, oldest first."""

    id: int
    origin: str
    events: list[Event]


def encode(events: Sequence[tuple[str, str, Mapping[str, Any]]]) -> bytes:
    """The events as stored: their JSON list of `[topic, type, payload]` (anything not JSON in a
    payload, a UUID or a Decimal, written as its text rather than failing the transaction whose change
    it announces), zlib-compressed unless that would not be smaller."""
    text = json.dumps(
        [[topic, type_, dict(payload)] for topic, type_, payload in events],
        separators=(",", ":"),
        default=str,
    ).encode()
    if len(text) > MAX_BATCH_BYTES:
        log.warning("events of %d bytes logged without their payloads (over %d)", len(text), MAX_BATCH_BYTES)
        omitted = {"omitted": f"payload over {MAX_BATCH_BYTES} bytes"}
        text = json.dumps([[t, ty, omitted] for t, ty, _ in events], separators=(",", ":")).encode()
    packed = _compress(text)
    return packed if len(packed) < len(text) else text


def _compress(text: bytes) -> bytes:
    """zlib's stream of `text`, with a window and memory no larger than a batch needs. `zlib.compress`
    sets up ≈260 kB of state for its 32 kB window on every call — above malloc's mmap threshold, so
    often fresh pages from the kernel: in an agent's process 45 µs a round's batch, more than the
    compressing (≈10 µs). A batch of up to 4 kB compresses the same into a 4 kB window with ≈10 kB of
    state. Any zlib reader reads both (the stream's header says its window)."""
    if len(text) > _SMALL:
        return zlib.compress(text, _LEVEL)
    packer = zlib.compressobj(_LEVEL, zlib.DEFLATED, _SMALL_WBITS, _SMALL_MEMLEVEL)
    return packer.compress(text) + packer.flush()


def decode(blob: bytes) -> list[Event]:
    """`encode`'s events back. Plain JSON starts with `[`, which no zlib stream does. Raises
    ValueError for anything else: a stream that inflates past `MAX_BATCH_BYTES`, JSON nested too
    deep to read, the wrong shape."""
    data = bytes(blob)
    try:
        if data[:1] == b"[":
            text = data
        else:
            inflater = zlib.decompressobj()
            text = inflater.decompress(data, MAX_BATCH_BYTES)
            if inflater.unconsumed_tail or not inflater.eof:
                raise ValueError(f"inflates past {MAX_BATCH_BYTES} bytes, or is cut short")
        if len(text) > MAX_BATCH_BYTES:
            raise ValueError(f"over {MAX_BATCH_BYTES} bytes")
        listed = json.loads(text)
    except (zlib.error, ValueError, RecursionError, MemoryError) as exc:
        raise ValueError(f"not an event batch ({type(exc).__name__}: {str(exc)[:80]})") from None
    if not isinstance(listed, list):
        raise ValueError("not an event batch (not a list)")
    out: list[Event] = []
    for item in listed:
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[2], dict)):
            raise ValueError("not an event batch (an entry is not [topic, type, payload])")
        out.append((str(item[0]), str(item[1]), item[2]))
    return out


# PostgreSQL: the lock, the row and the NOTIFY in one statement (one round trip, not three). The
# INSERT reads the lock's CTE, so the lock is held before the id is drawn; a data-modifying CTE runs
# whole, once, whatever reads it.
_APPEND_PG = Prepared(
    sa.text(
        """
    WITH locked AS (SELECT pg_advisory_xact_lock(:k)),
    added AS (
        INSERT INTO event_log (origin, inserted_at, events)
        SELECT :origin, :at, :events FROM locked
        RETURNING id
    )
    SELECT pg_notify(:channel, :origin) FROM added
    """
    ).bindparams(
        sa.bindparam("at", type_=sa.DateTime(timezone=True)),
        sa.bindparam("events", type_=sa.LargeBinary()),
    )
)
_APPEND = Prepared(sa.insert(EventLogEntry))


def append(conn: sa.Connection, origin: str, events: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
    """Log a transaction's events (in it, just before it commits), as one row."""
    listed = list(events)
    if not listed:
        return
    blob = encode(listed)
    now = utcnow()
    if conn.dialect.name == "postgresql":
        params = {"k": _LOCK_KEY, "origin": origin, "at": now, "events": blob, "channel": CHANNEL}
        _APPEND_PG.run(conn, params)
        return
    _APPEND.run(conn, {"origin": origin, "inserted_at": now, "events": blob})


def last_id(conn: sa.Connection) -> int:
    return int(conn.execute(sa.select(sa.func.coalesce(sa.func.max(EventLogEntry.id), 0))).scalar_one())


def read_after(
    conn: sa.Connection, after: int, *, skip_origin: str | None = None, limit: int = 1000
) -> list[LoggedBatch]:
    """Transactions' events with `id > after` (not written by `skip_origin`), oldest first, at most
    `limit` transactions. A row that does not decode is logged and comes back with no events, so a
    reader still moves past it."""
    e = EventLogEntry
    stmt = sa.select(e.id, e.origin, e.events).where(e.id > after)
    if skip_origin is not None:
        stmt = stmt.where(e.origin != skip_origin)
    out: list[LoggedBatch] = []
    for row in conn.execute(stmt.order_by(e.id).limit(limit)):
        try:
            events = decode(row.events)
        except Exception as exc:  # whatever a row holds, the readers move past it (never stuck on it)
            log.warning("event log row %d skipped: %s", row.id, exc)
            events = []
        out.append(LoggedBatch(row.id, row.origin, events))
    return out


def prune(conn: sa.Connection, *, keep: dt.timedelta) -> int:
    """Delete events older than `keep`; returns how many transactions' worth."""
    result = conn.execute(sa.delete(EventLogEntry).where(EventLogEntry.inserted_at < utcnow() - keep))
    return int(result.rowcount or 0)
