"""PostgreSQL: single statements that are transactions of their own (`Workspace.statement`).

A stored agent round's writes are one function call each (migrations 0015–0017), and such a call can
be sent on an autocommit connection: no BEGIN and no COMMIT to wait for, one round trip. `Statement`
is what that work sees; `KeptAutocommit` keeps the connection it runs on between statements.
"""

from __future__ import annotations

import contextlib
import functools
import threading
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cmdc_nb.store import _engine

if TYPE_CHECKING:
    from cmdc_nb._plumbing.workspace import Workspace

__all__ = ["KeptAutocommit", "Statement"]


class Statement:
    """One statement that is a transaction of its own: its autocommit connection, the events it
    announces (published once it returns, as a transaction's after its commit), and `origin`, the
    name its events are logged under when the workspace shares them (else None: the statement logs
    nothing). Only PostgreSQL's functions that log a write's events themselves use this
    (`cmdc_record_call_logged`: migration 0017)."""

    __slots__ = ("conn", "events", "origin", "ws")

    def __init__(self, ws: Workspace, conn: sa.Connection, origin: str | None) -> None:
        self.ws, self.conn, self.origin = ws, conn, origin
        self.events: list[tuple[str, str, Mapping[str, Any]]] = []

    def __repr__(self) -> str:
        return f"<Statement {self.ws!r}: {len(self.events)} events queued>"

    def publish(self, topic: str, type: str, payload: Mapping[str, Any] | None = None) -> None:
        """Queue an event, as `Tx.publish`: it reaches subscribers once the statement has run."""
        self.events.append((topic, type, dict(payload or {})))


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


def _alive(conn: sa.Connection) -> bool:
    """Whether a kept connection still answers (a round trip: only after it sat idle)."""
    try:
        dbapi = conn.connection.dbapi_connection
        return dbapi is not None and bool(conn.dialect.do_ping(dbapi))
    except Exception:
        return False
