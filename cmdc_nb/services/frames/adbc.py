"""Frames read as Arrow through ADBC's SQLite and PostgreSQL drivers (the `fast-frames` extra).

A frame's one SELECT runs on a connection of the driver's own, one per workspace, kept open until the
workspace closes (on PostgreSQL the driver's first connection reads the server's type catalogue, ≈0.1 s,
so it is opened once, not per frame). The result arrives as Arrow columns built in C, with no Python
object per value; `columns._from_arrow` turns them into the same dtypes as the row-by-row path.

`reader` says when this path is not taken, and the caller reads rows with SQLAlchemy as before:

- the extra is not installed;
- an in-memory SQLite database (another connection would see another, empty database);
- inside a write transaction (a second connection would not see its uncommitted rows);
- the workspace's driver connection is busy in another thread;
- the driver could not connect to this workspace's database (logged once, the password scrubbed).

A query the driver fails on is logged (once per workspace) and read row by row; the next frame tries
the driver again on a new connection.

The SELECT is compiled by SQLAlchemy with the bind processors of the workspace's own dialect, so a
filter compares exactly what the row-by-row path compares (UUIDs as hex on SQLite, UTC text times).
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import importlib
import logging
import os
import threading
import uuid
import weakref
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL

from cmdc_nb.store._engine import BUSY_TIMEOUT_MS

if TYPE_CHECKING:
    import pyarrow as pa
    from sqlalchemy import orm

__all__ = ["driver_target", "forced_fallback", "read_arrow", "reader"]

log = logging.getLogger("cmdc_nb.frames")

EXTRA_HINT = "pip install 'cmdc-nb[fast-frames]'"
_DRIVERS = {"sqlite": "adbc_driver_sqlite", "postgresql": "adbc_driver_postgresql"}
# One batch: the SQLite driver infers each column's type from the rows of its first batch, and a column
# whose first batch is all NULL would be taken for integers (then fail on its first text value).
_SQLITE_BATCH_ROWS = str(2**30)  # the driver refuses 2**31 - 1

_fallback: contextvars.ContextVar[bool] = contextvars.ContextVar("cmdc_frames_fallback", default=False)


@contextlib.contextmanager
def forced_fallback() -> Iterator[None]:
    """Read frames row by row with SQLAlchemy inside this block (to compare the two paths)."""
    token = _fallback.set(True)
    try:
        yield
    finally:
        _fallback.reset(token)


@functools.cache
def _driver_module(backend: str) -> Any:
    """The driver's DBAPI module, or None when the extra is not installed."""
    name = _DRIVERS.get(backend)
    if name is None:
        return None
    try:
        return importlib.import_module(f"{name}.dbapi")
    except ImportError:
        return None


def driver_target(url: URL, dialect: sa.Dialect) -> str | None:
    """What the driver connects to for a workspace URL: an SQLite `file:` URI, or a libpq conninfo
    string with the engine's own connection parameters (passwords included: never log it). None for
    an in-memory SQLite database, which another connection cannot reach."""
    if url.get_backend_name() == "sqlite":
        return _sqlite_target(url, dialect)
    if url.get_backend_name() == "postgresql":
        from psycopg import pq
        from psycopg.conninfo import make_conninfo

        # exactly what SQLAlchemy hands psycopg (host, port, dbname, user, password, ?query options),
        # as key=value pairs quoted by psycopg: no URL escaping to get wrong. psycopg's own arguments
        # (its adapters' `context`) are not libpq's and stay behind.
        _args, params = dialect.create_connect_args(url)
        libpq = {option.keyword.decode() for option in pq.Conninfo.get_defaults()}
        return make_conninfo("", **{k: v for k, v in params.items() if k in libpq and v is not None})
    return None


def _sqlite_target(url: URL, dialect: sa.Dialect) -> str | None:
    from urllib.parse import parse_qs, quote

    # the file name sqlite3 itself is given (relative paths made absolute, `?uri=true` URIs rebuilt)
    args, params = dialect.create_connect_args(url)
    filename = str(args[0]) if args else ""
    if params.get("uri"):
        path, _, query = filename.partition("?")
        if path.startswith("file::memory:") or "memory" in parse_qs(query).get("mode", []):
            return None
        return filename
    if filename in ("", ":memory:"):
        return None
    # a plain path, as a URI: '?', '#' or '%' in a folder's name stay part of the name
    return "file:" + quote(filename)


class _Reader:
    """One driver connection for one workspace's engine, used by one thread at a time."""

    def __init__(self, engine: sa.Engine, module: Any, target: str) -> None:
        self.backend = engine.dialect.name
        self._module = module
        self._target = target
        self._secret = engine.url.password
        self._conn: Any = None
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self.broken = False  # could not connect: this workspace reads row by row
        self.warned = False

    def scrub(self, text: str) -> str:
        """A driver's message without the password (libpq may quote the connection string)."""
        first = text.strip().splitlines()[0] if text.strip() else "driver error"
        if self._secret:
            first = first.replace(str(self._secret), "***")
        return first

    def _connect(self) -> Any:
        conn = self._module.connect(self._target, autocommit=True)
        if self.backend == "sqlite":
            with conn.cursor() as cur:  # a reader waits for a checkpoint as the engine's connections do
                cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
        return conn

    def query(self, sql: str, params: list[Any]) -> pa.Table | None:
        """The result as an Arrow table; None when the connection is busy (read row by row instead)."""
        if not self._lock.acquire(blocking=False):
            return None
        try:
            if self._conn is None:
                try:
                    self._conn = self._connect()
                except BaseException:
                    self.broken = True
                    raise
            with self._conn.cursor() as cur:
                if self.backend == "sqlite":
                    cur.adbc_statement.set_options(**{"adbc.sqlite.query.batch_rows": _SQLITE_BATCH_ROWS})
                cur.execute(sql, parameters=params or None)
                return cur.fetch_arrow_table()
        except BaseException:
            self._drop()  # a dead connection is not kept: the next frame opens a new one
            raise
        finally:
            self._lock.release()

    def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and self._pid == os.getpid():
            with contextlib.suppress(Exception):
                conn.close()

    def close(self) -> None:
        with self._lock:
            self._drop()


_readers: weakref.WeakKeyDictionary[sa.Engine, _Reader] = weakref.WeakKeyDictionary()
_readers_lock = threading.Lock()


def _forget(engine: sa.Engine) -> None:
    with _readers_lock:
        found = _readers.pop(engine, None)
    if found is not None:
        found.close()


def reader(db: orm.Session, engine: sa.Engine) -> _Reader | None:
    """The workspace's driver connection, when this read may go through Arrow (see the module's
    docstring for when it may not)."""
    if _fallback.get() or not db.connection().get_execution_options().get("cmdc_read_only", False):
        return None
    with _readers_lock:
        found = _readers.get(engine)
        if found is not None and found._pid != os.getpid():  # a forked child: the parent's connection
            found = None
        if found is None:
            module = _driver_module(engine.dialect.name)
            target = driver_target(engine.url, engine.dialect) if module is not None else None
            if module is None or target is None:
                return None
            found = _Reader(engine, module, target)
            _readers[engine] = found
            if not sa.event.contains(engine, "engine_disposed", _forget):
                sa.event.listen(engine, "engine_disposed", _forget)
            # an engine dropped without dispose(), or still open at exit, closes its reader too
            weakref.finalize(engine, found.close)
    return None if found.broken else found


def _param(value: Any, backend: str) -> Any:
    """A bound value as the driver takes it (SQLite's are already text or numbers after SQLAlchemy's
    bind processors; PostgreSQL's are typed by the casts SQLAlchemy renders, `$1::UUID`)."""
    if value is None or isinstance(value, bool | int | float | str | bytes):
        return value
    if backend == "postgresql":
        if isinstance(value, uuid.UUID):
            return str(value)
        if isinstance(value, dt.datetime) and value.tzinfo is not None:
            return value
        if isinstance(value, list | tuple) and all(isinstance(x, str) for x in value):
            return list(value)
    raise TypeError(f"no Arrow binding for a {type(value).__name__} parameter")


@functools.cache
def _pg_dialect() -> sa.Dialect:
    from sqlalchemy.dialects.postgresql import psycopg

    dialect: sa.Dialect = psycopg.dialect(paramstyle="numeric_dollar")  # type: ignore[no-untyped-call]
    return dialect  # libpq's $1, $2 … (psycopg's are %(name)s)


def _compiled(stmt: sa.Select[Any], dialect: sa.Dialect) -> tuple[str, list[Any]]:
    if dialect.name == "postgresql":
        dialect = _pg_dialect()
    compiled = stmt.compile(dialect=dialect, compile_kwargs={"render_postcompile": True})
    values = compiled.construct_params()
    processors = compiled._bind_processors  # the dialect's own conversions (hex UUIDs, UTC text)
    ordered = []
    for name in compiled.positiontup or ():
        value = values[name]
        processor: Any = processors.get(name)
        ordered.append(_param(processor(value) if processor is not None else value, dialect.name))
    return compiled.string, ordered


def read_arrow(found: _Reader, stmt: sa.Select[Any], dialect: sa.Dialect) -> pa.Table | None:
    """The rows of `stmt` as Arrow, or None to read them row by row: the connection is busy, a filter
    has no Arrow binding, or the driver failed (logged once per workspace, the password scrubbed)."""
    import adbc_driver_manager
    import pyarrow as pa

    try:
        sql, params = _compiled(stmt, dialect)
    except TypeError as exc:
        log.debug("frame read row by row: %s", exc)
        return None
    try:
        return found.query(sql, params)
    except (adbc_driver_manager.Error, pa.ArrowException, OSError) as exc:
        said = "cannot connect; this workspace's frames are read row by row" if found.broken else "failed"
        (log.debug if found.warned else log.warning)(
            "frames: the %s Arrow driver %s (%s)", found.backend, said, found.scrub(str(exc))
        )
        found.warned = True
        return None
