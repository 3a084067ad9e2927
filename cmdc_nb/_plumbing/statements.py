"""PostgreSQL: single statements that are transactions of their own (`Workspace.statement`,
`Workspace.async_statement`).

A stored agent round's writes are one function call each (migrations 0015–0017), and such a call can
be sent on an autocommit connection: no BEGIN and no COMMIT to wait for, one round trip. `Statement`
is what that work sees. `KeptAutocommit` keeps the connection it runs on between statements, for a
thread; `KeptAsync` keeps an async driver connection per event loop, so an agent's loop sends its
writes itself, waiting on the socket as on any other I/O — no worker thread to hand the write to and
back (on a two-CPU machine that hand-over, and the GIL passed back and forth with it, cost a stored
round more than the statement's own Python).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import sys
import threading
import time
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cmdc_nb.store import _engine
from cmdc_nb.store._engine import WouldWait

if TYPE_CHECKING:
    from cmdc_nb._plumbing.workspace import Workspace
    from cmdc_nb.store.prepared import Prepared

__all__ = ["KeptAsync", "KeptAutocommit", "Statement"]


class Statement:
    """One statement that is a transaction of its own: its connection (`conn`, a SQLAlchemy one in a
    thread; or `aconn`, an async driver connection on an event loop: then `execute`), the events it
    announces (published once it has run, as a transaction's after its commit), and `origin`, the
    name its events are logged under when the workspace shares them (else None: the statement logs
    nothing). Only PostgreSQL's functions that log a write's events themselves use this
    (`cmdc_record_call_logged`: migration 0017)."""

    __slots__ = ("aconn", "conn", "events", "origin", "ws")

    def __init__(
        self, ws: Workspace, conn: sa.Connection | None, origin: str | None, aconn: Any = None
    ) -> None:
        self.ws, self.conn, self.origin, self.aconn = ws, conn, origin, aconn
        self.events: list[tuple[str, str, Mapping[str, Any]]] = []

    def __repr__(self) -> str:
        return f"<Statement {self.ws!r}: {len(self.events)} events queued>"

    def publish(self, topic: str, type: str, payload: Mapping[str, Any] | None = None) -> None:
        """Queue an event, as `Tx.publish`: it reaches subscribers once the statement has run."""
        self.events.append((topic, type, dict(payload or {})))

    async def execute(self, prepared: Prepared, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run `prepared` (bound as SQLAlchemy binds it) on the async connection; its first row. A
        driver error comes out as SQLAlchemy's class for it, as on the thread's path."""
        import psycopg

        sql, bound = prepared.driver_call(self.ws.engine.dialect, params)
        try:
            cursor = await self.aconn.execute(sql, bound, prepare=True)
            row = await cursor.fetchone()
        except psycopg.Error as exc:
            raise sa.exc.DBAPIError.instance(sql, None, exc, psycopg.Error) from None
        return None if row is None else tuple(row)


class KeptAutocommit:
    """The autocommit connection of single statements, kept between them: a checkout from the pool and
    back, with the isolation level set and reset, costs as much as the statement's own Python. A
    thread that finds it in use checks out another. Like a pooled one (`store._engine`), a kept
    connection that sat idle is pinged before use (a server restarted over lunch); after any error it
    goes back to the pool, and the next statement gets another."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()
        self._conn: sa.Connection | None = None
        self._used = 0.0

    @functools.cached_property
    def _autocommit(self) -> Engine:
        return self._engine.execution_options(isolation_level="AUTOCOMMIT")

    @contextlib.contextmanager
    def connection(self) -> Iterator[sa.Connection]:
        if not self._lock.acquire(blocking=False):
            with self._autocommit.connect() as other:
                yield other
            return
        try:
            conn = self._conn
            if conn is not None and (
                conn.closed
                or conn.invalidated
                or (time.monotonic() - self._used > _engine.PING_IDLE_S and not _alive(conn))
            ):
                self._conn = None
                with contextlib.suppress(Exception):
                    conn.invalidate()
                conn = None
            if conn is None:
                conn = self._conn = self._autocommit.connect()
            try:
                yield conn
            except BaseException:
                self._conn = None
                conn.close()
                raise
            finally:
                self._used = time.monotonic()
            if self._conn is not conn:  # closed meanwhile: not kept any more
                conn.close()
        finally:
            self._lock.release()

    def close(self) -> None:
        """Close the kept connection (now, unless a statement is using it: then as it ends)."""
        conn, self._conn = self._conn, None
        if conn is not None and self._lock.acquire(blocking=False):
            try:
                conn.close()
            finally:
                self._lock.release()

    def forget(self) -> None:
        """In a forked child: the parent's connection is the parent's (see `workspace`)."""
        self._conn = None


class KeptAsync:
    """One async driver connection (psycopg's, autocommit) per workspace, kept between statements and
    lent to one event loop at a time: a notebook's kernel has one loop, and a script's loops
    (`asyncio.run`, `Agent.run`) come one after another — a loop that is not running hands it over to
    the next. A loop that finds it in use (another task's statement, or another thread's loop still
    running), that cannot use it (Windows' proactor loop: psycopg's async connections need a selector
    loop), or that cannot connect (the server at its connection limit) gets `WouldWait` before anything
    is done, and takes a thread's way — so a workspace never holds more connections than before, one
    more at most. As `KeptAutocommit`: pinged when it sat idle; dropped when an error or an
    interruption leaves it other than idle (a refusal raised by the server leaves it fine). Made from
    the engine's own connection arguments, adapters included (its JSON dumper:
    `store._engine.jsonb_dumps`)."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._lock = threading.Lock()  # guards the fields below: loops of several threads may ask
        self._conn: Any = None
        self._owner: weakref.ref[asyncio.AbstractEventLoop] | None = None
        self._busy = False
        self._used = 0.0
        self._pid = os.getpid()
        self._closed = False

    @contextlib.asynccontextmanager
    async def connection(self) -> AsyncIterator[Any]:
        loop = asyncio.get_running_loop()
        if sys.platform == "win32" and isinstance(loop, getattr(asyncio, "ProactorEventLoop", ())):
            raise WouldWait
        stale = None
        with self._lock:
            owner = self._owner() if self._owner is not None else None
            if self._busy or self._closed or (owner is not None and owner is not loop and owner.is_running()):
                raise WouldWait
            if owner is not loop:  # handed over: the last loop is not running (or gone)
                stale, self._conn, self._owner = self._conn, None, weakref.ref(loop)
            self._busy = True
            conn, used = self._conn, self._used
        try:
            if stale is not None:
                _finish(stale)
            if conn is not None and not await _usable(conn, used):
                _finish(conn)
                conn = None
            if conn is None:
                conn = await self._connect()
            self._conn = conn
            try:
                yield conn
            except BaseException:
                if not _idle(conn):  # cut short mid-protocol, or lost: never used again
                    self._conn = None
                    _finish(conn)
                raise
        finally:
            self._release()

    def _release(self) -> None:
        """After a statement: lent out no more; closed now if the workspace closed meanwhile."""
        with self._lock:
            self._busy = False
            self._used = time.monotonic()
            if self._closed and self._conn is not None:
                conn, self._conn = self._conn, None
                _finish(conn)

    async def _connect(self) -> Any:
        """A new connection, or `WouldWait` (the caller takes a thread's way, which reports a server
        that is really gone as the transaction's error)."""
        import psycopg

        # the engine's own arguments, never a URL string (libpq may quote a URL, password and all)
        _args, params = self._engine.dialect.create_connect_args(self._engine.url)
        try:
            conn = await psycopg.AsyncConnection.connect(**params, autocommit=True)
        except (psycopg.Error, OSError):
            raise WouldWait from None
        self._pid = os.getpid()
        return conn

    def close(self) -> None:
        """Close the kept connection (one in use is closed as its statement ends)."""
        with self._lock:
            self._closed = True
            conn = None if self._busy else self._conn
            if conn is not None:
                self._conn = None
        if conn is not None and self._pid == os.getpid():
            _finish(conn)

    def forget(self) -> None:
        """In a forked child: the parent's connection is the parent's — dropped, never closed here
        (closing would end the parent's session on the shared socket)."""
        self._conn, self._owner, self._busy = None, None, False
        self._lock = threading.Lock()


async def _usable(conn: Any, used: float) -> bool:
    if not _idle(conn):
        return False
    if time.monotonic() - used <= _engine.PING_IDLE_S:
        return True
    try:
        await conn.execute("SELECT 1")
    except Exception:
        return False
    return True


def _idle(conn: Any) -> bool:
    from psycopg.pq import TransactionStatus

    try:
        return not conn.closed and not conn.broken and conn.info.transaction_status == TransactionStatus.IDLE
    except Exception:
        return False


def _finish(conn: Any) -> None:
    """Close an async connection without awaiting (its loop may be gone): the socket, at once."""
    with contextlib.suppress(Exception):
        conn.pgconn.finish()


def _alive(conn: sa.Connection) -> bool:
    """Whether a kept connection still answers (a round trip: only after it sat idle)."""
    try:
        dbapi = conn.connection.dbapi_connection
        return dbapi is not None and bool(conn.dialect.do_ping(dbapi))
    except Exception:
        return False
