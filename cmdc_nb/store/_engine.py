"""Engines for the two backends, set up so that concurrent writers never lose a write.

SQLite: WAL journal, a busy timeout, foreign keys on, and every transaction opened with `BEGIN IMMEDIATE`.
A deferred `BEGIN` that reads and then writes fails at once with "database is locked" when another
writer holds the lock (the busy timeout does not cover the lock upgrade), which is how the seed lost
writes; taking the write lock up front makes writers queue instead.

PostgreSQL: psycopg 3 with a small pool that pings a connection idle for a second or more before handing
it out, so a notebook that sat idle reconnects cleanly.
JSONB cannot hold the NUL character or unpaired surrogates (both fine in SQLite's JSON text), so JSON
documents written to PostgreSQL have them replaced by U+FFFD: a tool's binary output quoted in an agent
call's prompt must not make the call unstorable.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url

from cmdc_nb.errors import ConfigurationError
from cmdc_nb.store.prepared import driver_error
from cmdc_nb.store.values import storable_text

__all__ = ["BUSY_TIMEOUT_MS", "NOWAIT", "WouldWait", "create_engine", "normalise_url", "wal_file"]

BUSY_TIMEOUT_MS = 30_000
# An execution option: open the SQLite transaction only if the write lock is free this instant.
NOWAIT = "cmdc_nowait"


class WouldWait(Exception):
    """A transaction asked not to wait (`NOWAIT`) found SQLite's write lock held by another connection.
    Raised before anything was done: the caller runs the work where waiting is fine instead."""


def normalise_url(url: str | URL) -> URL:
    """Accept the spellings people use and pick the driver cmdc_nb ships with."""
    try:
        parsed = make_url(url) if isinstance(url, str) else url
    except sa.exc.ArgumentError:
        raise ConfigurationError(f"not a database URL: {_redact(str(url))}") from None
    backend = parsed.get_backend_name()
    if backend in ("postgresql", "postgres"):
        if parsed.drivername in ("postgresql", "postgres", "postgresql+psycopg2"):
            parsed = parsed.set(drivername="postgresql+psycopg")
        return parsed
    if backend == "sqlite":
        return parsed
    raise ConfigurationError(
        f"unsupported database {backend!r}: use an SQLite path (sqlite:///path/to/file.db) "
        "or a PostgreSQL URL (postgresql+psycopg://user@host/db)"
    )


def _redact(url: str) -> str:
    """Hide a password in a URL before it goes into a message."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return "<unparseable URL>"


def create_engine(url: str | URL, *, own_checkpoints: bool = False, **kwargs: Any) -> Engine:
    """`own_checkpoints`: SQLite's connections never checkpoint the WAL as they commit; the caller
    does (`store.checkpoints`, as a workspace does)."""
    parsed = normalise_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(parsed, own_checkpoints, **kwargs)
    return _postgres_engine(parsed, **kwargs)


def wal_file(url: URL) -> Path | None:
    """The database file of an SQLite URL whose WAL this process can checkpoint itself (absolute: a
    relative path is no file URI, and the process may change directory); None for memory and for
    `file:` URIs, whose connections keep SQLite's own checkpoints."""
    database = url.database or ""
    if url.get_backend_name() != "sqlite" or database in ("", ":memory:") or database.startswith("file:"):
        return None
    return Path(database).expanduser().absolute()


def _sqlite_engine(url: URL, own_checkpoints: bool, **kwargs: Any) -> Engine:
    database = url.database or ""
    own_checkpoints = own_checkpoints and wal_file(url) is not None
    if wal_file(url) is not None:
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        url,
        # Autocommit at the driver level: we issue BEGIN IMMEDIATE ourselves (pysqlite's own
        # transaction handling would open a deferred transaction, and skip it before DDL).
        connect_args={"timeout": BUSY_TIMEOUT_MS / 1000, "isolation_level": None, "check_same_thread": False},
        **{"json_serializer": compact_dumps, **kwargs},
    )

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: sqlite3.Connection, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        if database not in ("", ":memory:"):
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")  # durable in WAL mode across app crashes
            if own_checkpoints:
                cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        options = conn.get_execution_options()
        # Read-only work (`Workspace.read()`) takes no write lock: WAL readers never block writers.
        if options.get("cmdc_read_only", False):
            _begin(conn, "BEGIN")
        elif options.get(NOWAIT, False):
            _begin_now_or_never(conn)
        else:
            _begin(conn, "BEGIN IMMEDIATE")

    return engine


def _begin(conn: sa.Connection, sql: str) -> None:
    """`sql` on the driver's connection, its error as SQLAlchemy's class for it (what
    `Workspace.transaction` translates). Not `exec_driver_sql`: its execution context, result and
    events cost ≈40 µs, a third of a light transaction, and a stored round begins two."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    try:
        raw.execute(sql)
    except sqlite3.Error as exc:
        raise driver_error(conn, sql, None, exc) from None


def _begin_now_or_never(conn: sa.Connection) -> None:
    """`BEGIN IMMEDIATE` with no busy wait: the write lock now, or `WouldWait`. Once a WAL transaction
    holds the write lock, nothing it does waits for another connection (readers never block a writer,
    and a commit takes no other lock), so work that began this way never stalls its thread on
    another process."""
    raw = conn.connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    try:  # the PRAGMA inside: whatever interrupts, the `finally` puts the wait back
        raw.execute("PRAGMA busy_timeout=0")
        _begin(conn, "BEGIN IMMEDIATE")
    except sa.exc.OperationalError as exc:
        if getattr(exc.orig, "sqlite_errorcode", 0) & 0xFF == sqlite3.SQLITE_BUSY:  # or an extended BUSY_*
            raise WouldWait from None
        raise
    finally:
        raw.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, dict):
        return {_clean(k): _clean(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


# One encoder each, made once: `json.dumps` with any non-default argument builds a new encoder per
# call, ≈2 µs of a 3 µs dump, and a stored round dumps a few dozen JSON columns. (`encode` keeps no
# state between calls, so threads share them.)
_COMPACT = json.JSONEncoder(separators=(",", ":")).encode
_UNESCAPED = json.JSONEncoder(ensure_ascii=False).encode


def compact_dumps(value: Any) -> str:
    """json.dumps for SQLite's JSON text: no spaces after separators (every JSON column of every row is
    stored as this text; the spaces were ≈5 % of a stored agent round). ASCII-escaped, so no text a
    column holds can fail to encode."""
    kind = type(value)
    if (kind is list or kind is dict) and not value:  # most of a round's JSON columns: `[]` and `{}`
        return "[]" if kind is list else "{}"
    return _COMPACT(value)


def jsonb_dumps(value: Any) -> str:
    """json.dumps for JSONB. Without ASCII escaping, the only `\\u` escapes left are control characters,
    so NUL shows as `\\u0000` and a lone surrogate as text UTF-8 cannot encode; only then is the
    document cleaned and dumped again (a literal backslash-u0000 in some text just costs the slow path)."""
    text = _UNESCAPED(value)
    try:
        text.encode("utf-8")
        clean = "\\u0000" not in text
    except UnicodeEncodeError:
        clean = False
    return text if clean else _UNESCAPED(_clean(value))


# A pooled connection back from use less than this long ago is handed out without a ping.
PING_IDLE_S = 1.0


def _postgres_engine(url: URL, **kwargs: Any) -> Engine:
    kwargs.setdefault("json_serializer", jsonb_dumps)
    if "poolclass" not in kwargs:
        kwargs.setdefault("pool_size", 5)
        kwargs.setdefault("max_overflow", 10)
    engine = sa.create_engine(url, **kwargs)
    if not kwargs.get("pool_pre_ping"):
        _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Pre-ping, but only a connection that sat idle: a notebook left for lunch (or a server restarted
    meanwhile) reconnects cleanly, while an agent's back-to-back transactions do not pay a round trip
    each (`pool_pre_ping` pings at every checkout: two of a stored round's ≈15 round trips)."""

    @sa.event.listens_for(engine, "checkin")
    def _checked_in(_dbapi_conn: Any, record: Any) -> None:
        record.info["cmdc_idle_since"] = time.monotonic()

    @sa.event.listens_for(engine, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("cmdc_idle_since")
        if since is None or time.monotonic() - since < PING_IDLE_S:
            return  # new, or back from use a moment ago
        try:
            ok = engine.dialect.do_ping(dbapi_conn)
        except Exception:
            ok = False
        if not ok:  # the pool drops this connection and hands out (or opens) another
            raise sa.exc.DisconnectionError("the pooled connection is gone")
