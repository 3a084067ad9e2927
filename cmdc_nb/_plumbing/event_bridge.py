"""The event bridge: a workspace's committed events shared with every process on the same database.

Kernels, workers and schedulers that share a PostgreSQL workspace see each other's changes as events
on their own bus — an approval decided in one kernel wakes the agent waiting in another, a widget
redraws when a worker finishes a step — with no broker but the database (`LISTEN/NOTIFY`).

Writing: each transaction that has events appends them to `event_log` just before it commits (see
`store.event_log`). Reading: a daemon thread per workspace LISTENs; on a notification (and every few
seconds regardless) it reads the rows after the last id it saw and publishes those committed by other
processes on the local bus, in id (= commit) order, each once. If its connection drops it reconnects
and catches up from that id, so nothing committed meanwhile is lost. On SQLite (several kernels on one
machine) the thread polls instead. Events of the agent loop itself (streamed deltas, tool progress) do
not cross: only committed changes do.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import itertools
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from cmdc_nb.events import EventBus
from cmdc_nb.store import event_log

__all__ = ["EventBridge"]

log = logging.getLogger("cmdc_nb.events.bridge")

WAIT_S = 0.1  # how long one wait for a notification lasts: the bound on how late close() is heeded
FALLBACK_S = 2.0  # read the log at least this often, notified or not
POLL_S = 0.25  # SQLite has no notifications: read this often
# Under a stream of commits, read at most this often: each read covers every commit announced
# meanwhile. Two idle worker processes listening to a 1,000-step workflow read once a commit and took
# a third of the machine (3.5× the two-commit floor a step; 2.9× reading at most every 20 ms). A
# commit after a quiet spell is still read at once.
COALESCE_S = 0.02
PRUNE_EVERY_S = 600.0
KEEP = dt.timedelta(days=1)


class EventBridge:
    """Shares `engine`'s committed events with other processes and publishes theirs on `bus`."""

    def __init__(self, engine: Engine, bus: EventBus) -> None:
        self.engine = engine
        self.bus = bus
        self.origin = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.reconnects = 0
        with engine.connect() as conn:
            self.last_id = event_log.last_id(conn)  # from now on: history is not replayed
        self._listen = engine.dialect.name == "postgresql"
        self._stop = threading.Event()
        self._connected = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cmdc-nb-event-bridge", daemon=True)
        self._thread.start()

    def record(self, conn: sa.Connection, events: Iterable[tuple[str, str, Mapping[str, Any]]]) -> None:
        """Append a transaction's events to the log (called inside it, just before commit)."""
        event_log.append(conn, self.origin, events)

    def wait_connected(self, timeout: float = 10.0) -> bool:
        """Whether the listener is up (LISTEN issued), waiting at most `timeout` seconds."""
        return self._connected.wait(timeout)

    def close(self, timeout: float = 1.0) -> None:
        self._stop.set()
        if threading.current_thread() is not self._thread:
            self._thread.join(timeout)

    # -- the listener thread -------------------------------------------------------------------------
    def _said(self, exc: BaseException) -> str:
        """The first line of a failure, without the password in any spelling a driver may quote."""
        from urllib.parse import quote, quote_plus

        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
        secret = self.engine.url.password
        if secret:
            for spelling in {str(secret), quote(str(secret), safe=""), quote_plus(str(secret))}:
                text = text.replace(spelling, "***")
        return text

    def _catch_up(self) -> None:
        while True:
            # Our own events were published at commit: the database leaves them out. Skipping ids is
            # safe — ids are in commit order, so no other process's row can appear below the last seen.
            with self.engine.connect() as conn:
                rows = event_log.read_after(conn, self.last_id, skip_origin=self.origin)
            if not rows:
                return
            # Consecutive transactions of one origin go out as one batch.
            for origin, group in itertools.groupby(rows, key=lambda r: r.origin):
                batch = [event for r in group for event in r.events]
                if batch:
                    self.bus.publish_many(batch, origin=origin)
            self.last_id = rows[-1].id

    def _prune(self) -> None:
        with self.engine.begin() as conn:
            n = event_log.prune(conn, keep=KEEP)
        if n:
            log.debug("pruned %d events older than %s", n, KEEP)

    def _run(self) -> None:
        backoff = 0.5
        next_prune = time.monotonic() + PRUNE_EVERY_S
        while not self._stop.is_set():
            listener: Any = None
            try:
                if self._listen:
                    import psycopg

                    # the engine's own connection arguments, never a URL string: libpq quotes a URL
                    # it cannot parse (a password with a space) in its error, password and all
                    _args, params = self.engine.dialect.create_connect_args(self.engine.url)
                    listener = psycopg.connect(**params, autocommit=True)
                    listener.execute(f"LISTEN {event_log.CHANNEL}")
                self._connected.set()
                self._catch_up()  # what was committed while we were away
                backoff = 0.5
                last_read = time.monotonic()
                while not self._stop.is_set():
                    if listener is not None:
                        # Notifications of our own commits need no read: they are ours.
                        heard = list(listener.notifies(timeout=WAIT_S, stop_after=1))
                        woke = any(n.payload != self.origin for n in heard)
                        if heard and not woke:
                            # Only our own: under a stream of our commits (a workflow's steps), listen
                            # again after a pause and take what came meanwhile at once — not a wake-up
                            # per commit, each taking the GIL from the threads doing the work.
                            self._stop.wait(COALESCE_S)
                            woke = any(n.payload != self.origin for n in listener.notifies(timeout=0.0))
                        gap = COALESCE_S - (time.monotonic() - last_read)
                        if woke and gap > 0:
                            # A stream of commits: wait out the gap since the last read, and drain
                            # what was announced meanwhile; one read then covers all of it.
                            self._stop.wait(gap)
                            for _ in listener.notifies(timeout=0.0):
                                pass
                        due = time.monotonic() - last_read >= FALLBACK_S
                    else:
                        self._stop.wait(POLL_S)
                        woke, due = True, True
                    if (woke or due) and not self._stop.is_set():
                        self._catch_up()
                        last_read = time.monotonic()
                    if time.monotonic() >= next_prune:
                        next_prune = time.monotonic() + PRUNE_EVERY_S
                        self._prune()
            except Exception as exc:  # the database went away: wait, reconnect, catch up
                self._connected.clear()
                if self._stop.is_set():
                    break
                self.reconnects += 1
                log.warning("event bridge: %s; reconnecting in %.1f s", self._said(exc), backoff)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
            finally:
                if listener is not None:
                    with contextlib.suppress(Exception):  # closing a broken connection
                        listener.close()
