"""A workspace: one database, its event bus and its vault. `connect()` opens one.

Every domain service runs its work inside `Workspace.transaction()`: one database transaction whose
events are published on the bus only after it commits (and dropped if it rolls back). Transactions
nest by joining: a service called from inside another's transaction becomes part of it.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import contextvars
import dataclasses
import functools
import os
import threading
import uuid
import weakref
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine

from cmdc_nb._gc import freeze_long_lived, thaw
from cmdc_nb._plumbing import access
from cmdc_nb._plumbing.access import acting_as
from cmdc_nb._plumbing.db_errors import translate_db_errors as _translate_db_errors
from cmdc_nb._plumbing.statements import KeptAsync, KeptAutocommit, Statement
from cmdc_nb.errors import (
    ConfigurationError,
    NotFoundError,
    VaultKeyError,
)
from cmdc_nb.events import EventBus

if TYPE_CHECKING:
    from sqlalchemy import orm

    from cmdc_nb._plumbing.event_bridge import EventBridge
from cmdc_nb.store._engine import NOWAIT, WouldWait, create_engine, normalise_url, wal_file
from cmdc_nb.store._vault import KEY_ENV, KeyRing, Vault
from cmdc_nb.store.checkpoints import Checkpoints
from cmdc_nb.store.migrate import upgrade

__all__ = [
    "DATABASE_URL_ENV",
    "HOME_ENV",
    "Statement",
    "Tx",
    "Workspace",
    "WouldWait",
    "acting_as",
    "connect",
    "default_home",
    "get_workspace",
]

HOME_ENV = "CMDC_NB_HOME"
DATABASE_URL_ENV = "CMDC_NB_DATABASE_URL"


def default_home() -> Path:
    """`$CMDC_NB_HOME`, else `$XDG_DATA_HOME/cmdc_nb`, else `~/.local/share/cmdc_nb`."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV]).expanduser()
    xdg = os.environ.get("XDG_DATA_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share"
    return base / "cmdc_nb"


class Tx:
    """One unit of work: a SQLAlchemy session (`db`) plus the events to publish when it commits.

    A light transaction (`Workspace.transaction(light=True)`) starts on a Core connection and makes
    its session only when something asks for `db`: the hot path's writes are Core statements, and
    an ORM session's set-up and commit cost them ≈70 µs a transaction."""

    __slots__ = ("_acting", "_conn", "_db", "events", "ws")

    def __init__(
        self,
        ws: Workspace,
        db: orm.Session | None = None,
        *,
        conn: sa.Connection | None = None,
        acting: uuid.UUID | None = None,
    ) -> None:
        self.ws = ws
        self.events: list[tuple[str, str, Mapping[str, Any]]] = []
        self._db, self._conn, self._acting = db, conn, acting

    def __repr__(self) -> str:
        return f"<Tx {self.ws!r}: {len(self.events)} events queued>"

    @property
    def db(self) -> orm.Session:
        if self._db is None:
            from sqlalchemy import orm  # the ORM, imported by its first use (see `Workspace._makers`)

            # joins the connection's transaction: it never commits it, and a rollback rolls it back
            self._db = orm.Session(
                bind=self._conn, expire_on_commit=False, autoflush=True, join_transaction_mode="rollback_only"
            )
            self._db.info[access.INFO_KEY] = self._acting
        return self._db

    def connection(self) -> sa.Connection:
        """The transaction's connection (`db.connection()`, looked up once: the ORM's lookup costs
        ≈20 µs, and a stored round's writes asked for it nine times)."""
        if self._conn is None:
            self._conn = self.db.connection()
        return self._conn

    def publish(self, topic: str, type: str, payload: Mapping[str, Any] | None = None) -> None:
        """Queue an event; it reaches subscribers after the commit, never if the work rolls back."""
        self.events.append((topic, type, dict(payload or {})))


WRITE_QUEUE_TIMEOUT_S = 30.0
_current_tx: contextvars.ContextVar[Tx | None] = contextvars.ContextVar("cmdc_nb_tx", default=None)


@dataclasses.dataclass(frozen=True)
class _Makers:
    """The ORM's session makers (`orm.sessionmaker`: typed loosely, the ORM is imported lazily)."""

    writes: Any
    now_or_never: Any
    reads: Any


class Workspace:
    """An open workspace. Create one with `cmdc_nb.connect()`."""

    def __init__(
        self,
        engine: Engine,
        *,
        vault: Vault,
        home: Path,
        bus: EventBus | None = None,
        share_events: bool = False,
    ) -> None:
        self.engine = engine
        self.vault = vault
        self.home = home
        self.bus = bus or EventBus()
        self._nowait_engine = engine.execution_options(**{NOWAIT: True})
        self._closed = False
        self._froze_gc = False  # the first connect's freeze was taken with this workspace open
        # SQLite has one writer at a time. Threads of this process queue on this lock, handed over at
        # once on commit; without it they queue in SQLite's busy handler, which polls with sleeps that
        # grow to 100 ms, so a burst of small transactions would mostly sleep. Other processes still
        # queue in the busy handler.
        self._write_lock = threading.Lock() if engine.dialect.name == "sqlite" else None
        wal = wal_file(engine.url)  # the same test that turned the engine's own checkpoints off
        self._checkpoints = (  # see store.checkpoints: off the committing thread
            Checkpoints(wal, self._write_lock) if wal is not None and self._write_lock is not None else None
        )
        # The connection of transactions that must not wait, kept between them (see `_kept_connection`):
        # only for a database file, whose pool hands each checkout its own connection. A forked child
        # forgets it (`_forget_connections_in_child`).
        self._keeps = wal is not None
        self._kept: sa.Connection | None = None
        # PostgreSQL: the autocommit connections of single statements, kept between them (a thread's,
        # and each event loop's)
        self._statements = KeptAutocommit(engine)
        self._async_statements = KeptAsync(engine)
        _open.add(self)
        self._writer = (  # its thread starts with the first write handed to it
            concurrent.futures.ThreadPoolExecutor(
                1, thread_name_prefix="cmdc-nb-writer", initializer=_mark_writer_thread
            )
            if self._write_lock is not None
            else None
        )
        self.acting_user_id: uuid.UUID | None = None  # see act_as(); checked by _access
        self._bridge: EventBridge | None = None
        if share_events:
            from cmdc_nb._plumbing.event_bridge import EventBridge

            self._bridge = EventBridge(engine, self.bus)

    def act_as(self, user: Any) -> Workspace:
        """From now on, act for `user`: reads and changes are limited to what is theirs or shared
        with them (team mode). `None` stops acting for anyone. Returns the workspace."""
        if user is None:
            self.acting_user_id = None
            return self
        from cmdc_nb._plumbing import validate as v
        from cmdc_nb.store.models import User

        with self.read() as db:
            if isinstance(user, str) and "@" in user:  # an e-mail address, compared case-insensitively
                found = db.scalar(sa.select(User.id).where(sa.func.lower(User.email) == user.strip().lower()))
            else:
                uid = v.id_of(user, "user")
                found = uid if db.get(User, uid) is not None else None
        if found is None:
            raise NotFoundError("user", user)
        self.acting_user_id = found
        return self

    @property
    def shares_events(self) -> bool:
        """Whether committed events cross to (and arrive from) other processes on this database."""
        return self._bridge is not None

    def __repr__(self) -> str:
        return f"<Workspace {self.url_display} backend={self.backend}>"

    @property
    def url(self) -> URL:
        return self.engine.url

    @property
    def url_display(self) -> str:
        """The database URL with any password hidden."""
        return self.engine.url.render_as_string(hide_password=True)

    @property
    def backend(self) -> str:
        """`"sqlite"` or `"postgresql"`."""
        return self.engine.dialect.name

    @contextlib.contextmanager
    def transaction(self, *, wait: bool = True, light: bool = False) -> Iterator[Tx]:
        """One database transaction; its queued events are published after it commits.

        Inside another transaction of this workspace (in the same task or thread), joins it instead.
        Database errors come out as `cmdc_nb.errors` types, with no row values in the message.

        `wait=False`: only a transaction that will not wait for anyone. On SQLite that is one that
        finds this process's writers and the database's write lock free this instant (work run on an
        event loop's own thread takes this, and goes to a thread when it gets `WouldWait`); on
        PostgreSQL, where any statement may wait for a row lock or the network, there is none.
        `WouldWait` comes before anything is done.

        `light=True`: begun on a Core connection, its ORM session made only if `Tx.db` is asked for.
        """
        outer = _current_tx.get()
        if outer is not None and outer.ws is self:
            yield outer
            return
        self._check_open()
        if wait:
            # Bounded like the busy timeout: past it, go on unqueued and let SQLite decide (as before).
            locked = self._write_lock is not None and self._write_lock.acquire(timeout=WRITE_QUEUE_TIMEOUT_S)
        elif self._write_lock is None or not self._write_lock.acquire(blocking=False):
            raise WouldWait
        else:
            locked = True
        try:
            with self._light(wait) if light else self._orm(wait) as tx:
                yield tx
        finally:
            if locked:
                assert self._write_lock is not None
                self._write_lock.release()
        if self._checkpoints is not None:
            self._checkpoints.committed()
        if tx.events:
            self.bus.publish_many(tx.events)

    def in_transaction(self) -> bool:
        """Whether this task or thread is inside one of this workspace's transactions (which any
        other work of it joins)."""
        tx = _current_tx.get()
        return tx is not None and tx.ws is self

    @contextlib.contextmanager
    def statement(self) -> Iterator[Statement]:
        """PostgreSQL: one statement as a transaction of its own, on an autocommit connection — no
        BEGIN and no COMMIT to wait for: a write that is one function call costs one round trip, not
        four. The statement must do all of its work itself, its events' logging included (see
        `Statement`); the events queued on it are published once it has run. Database errors come
        out as `cmdc_nb.errors` types, as a transaction's do. Not inside a transaction (it would not
        be part of it: `in_transaction`), and not on SQLite."""
        origin = self._statement_origin()
        with _translate_db_errors(), self._statements.connection() as conn:
            st = Statement(self, conn, origin)
            yield st
        if st.events:
            self.bus.publish_many(st.events)

    @contextlib.asynccontextmanager
    async def async_statement(self) -> AsyncIterator[Statement]:
        """`statement` for work on an event loop: the statement is sent on the workspace's async
        connection, lent to the running loop (`Statement.execute`), so the loop waits for it as for
        any other I/O, never blocked. `WouldWait` before anything is done when that connection is in
        use (another task's statement, another running loop) or cannot be made: take a thread's way
        then (see `_plumbing.statements.KeptAsync`)."""
        origin = self._statement_origin()
        with _translate_db_errors():
            async with self._async_statements.connection() as aconn:
                st = Statement(self, None, origin, aconn)
                yield st
        if st.events:
            self.bus.publish_many(st.events)

    def _statement_origin(self) -> str | None:
        """Whether a single statement may run here (else TypeError), and the name its events are
        logged under (None: this workspace does not share its events)."""
        if self.engine.dialect.name != "postgresql":
            raise TypeError("a single statement's transaction is PostgreSQL's")
        if self.in_transaction():
            raise TypeError("inside a transaction, a statement is part of it: use the transaction")
        self._check_open()
        return self._bridge.origin if self._bridge is not None else None

    @functools.cached_property
    def _makers(self) -> _Makers:
        """The ORM's session makers, made (and SQLAlchemy's ORM imported, ≈70 ms of a fresh process)
        by the first transaction or read that needs one: a process that only runs light transactions
        (an agent that stores nothing, a worker's Core writes) never imports it."""
        from sqlalchemy import orm

        makers = _Makers(
            writes=orm.sessionmaker(self.engine, expire_on_commit=False, autoflush=True),
            now_or_never=orm.sessionmaker(self._nowait_engine, expire_on_commit=False, autoflush=True),
            reads=orm.sessionmaker(
                self.engine.execution_options(cmdc_read_only=True), expire_on_commit=False, autoflush=False
            ),
        )
        # The ORM and the mapped schema (loaded by the service asking: ≈50,000 objects) live as long
        # as the process: out of the full collections' walk, as `connect()`'s were (`_gc`) — only
        # while the workspace holding that first freeze is open, whose close thaws both. (Else it
        # would freeze whatever the notebook holds now, with nothing left to thaw it.)
        if any(w._froze_gc for w in list(_open)):
            freeze_long_lived("orm")
        return makers

    @contextlib.contextmanager
    def _orm(self, wait: bool) -> Iterator[Tx]:
        makers = self._makers
        with (makers.writes if wait else makers.now_or_never)() as db:
            db.info[access.INFO_KEY] = access.current(self.acting_user_id)
            tx = Tx(self, db)
            token = _current_tx.set(tx)
            try:
                with _translate_db_errors(), db.begin():
                    if not wait:
                        tx.connection()  # BEGIN IMMEDIATE now, or WouldWait with nothing done
                    yield tx
                    self._record_events(tx)
            finally:
                _current_tx.reset(token)

    @contextlib.contextmanager
    def _kept_connection(self) -> Iterator[sa.Connection]:
        """The connection of light transactions that must not wait. On SQLite they hold `_write_lock`,
        so one runs at a time, and the connection stays open between them: checking one out of the
        pool and back costs ≈ a third of a light transaction, and a stored agent round is two. After
        any error it goes back to the pool, and the next one checks out a fresh one."""
        conn = self._kept
        if conn is None or conn.closed or conn.invalidated:
            conn = self._kept = self._nowait_engine.connect()
        try:
            yield conn
        except BaseException:
            self._kept = None
            conn.close()
            raise
        if self._kept is not conn:  # the workspace was closed meanwhile: not kept any more
            conn.close()

    def _light_connection(self, wait: bool) -> contextlib.AbstractContextManager[sa.Connection]:
        if wait:
            return self.engine.connect()
        return self._kept_connection() if self._keeps else self._nowait_engine.connect()

    @contextlib.contextmanager
    def _light(self, wait: bool) -> Iterator[Tx]:
        with _translate_db_errors(), self._light_connection(wait) as conn:
            tx = Tx(self, conn=conn, acting=access.current(self.acting_user_id))
            token = _current_tx.set(tx)
            try:
                with conn.begin():  # BEGIN IMMEDIATE now (or WouldWait, with nothing done)
                    yield tx
                    self._record_events(tx)
            finally:
                _current_tx.reset(token)
                if tx._db is not None:
                    tx._db.close()

    def _record_events(self, tx: Tx) -> None:
        if tx._db is not None:
            tx._db.flush()  # every row write first, then the events (see below)
        if tx.events and self._bridge is not None:
            # On PostgreSQL recording them takes the event log's lock until the commit, and a write
            # flushed after it (the commit's own autoflush) could wait on a row another transaction
            # holds while that one waits for the lock — a deadlock.
            self._bridge.record(tx.connection(), tx.events)  # in the transaction: both or neither

    @property
    def writer(self) -> concurrent.futures.ThreadPoolExecutor | None:
        """Where a burst of concurrent writes from an event loop goes (`loop.run_in_executor`): on
        SQLite one thread, since its transactions take turns anyway, and several threads each waiting
        for the write lock hand it and the GIL back and forth (a workflow's lanes recording steps: 8 %
        of a step); None on PostgreSQL (the loop's default executor: its writers overlap). None also
        on that thread itself: what runs there and waits for another write (a transactional step's
        own code starting a run) would otherwise wait for itself."""
        if getattr(_writer_thread, "marked", False):
            return None
        return self._writer

    @contextlib.contextmanager
    def read(self) -> Iterator[orm.Session]:
        """A read-only session. On SQLite it takes no write lock, so readers never wait on writers."""
        outer = _current_tx.get()
        if outer is not None and outer.ws is self:
            yield outer.db
            return
        self._check_open()
        with self._makers.reads() as db, _translate_db_errors(), db.begin():
            db.info[access.INFO_KEY] = access.current(self.acting_user_id)
            yield db

    def close(self) -> None:
        """Release the database connections. The workspace cannot be used afterwards."""
        global _default
        self._closed = True
        if self._bridge is not None:
            self._bridge.close()
        if self._writer is not None:
            self._writer.shutdown(wait=False)
        if self._froze_gc:
            self._froze_gc = False
            thaw()
        self._statements.close()
        self._async_statements.close()
        kept, self._kept = self._kept, None
        # Closed now unless a transaction is using it (it holds the write lock): then that transaction
        # closes it as it ends (`_kept_connection`).
        lock = self._write_lock
        if kept is not None and lock is not None and lock.acquire(blocking=False):
            try:
                kept.close()
            finally:
                lock.release()
        self.engine.dispose()
        with _default_lock:
            if _default is self:
                _default = None

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise ConfigurationError("this workspace is closed; open a new one with cmdc_nb.connect()")


_default: Workspace | None = None
_default_lock = threading.Lock()
_writer_thread = threading.local()
_open: weakref.WeakSet[Workspace] = weakref.WeakSet()


def _forget_connections_in_child() -> None:
    """In a forked child: the parent's pooled connections (and kept one) are its own — a child that
    used one would share the parent's socket or SQLite file locks. Dropped unclosed, as SQLAlchemy
    advises (`dispose(close=False)`); the child opens its own."""
    for ws in list(_open):
        ws._kept = None
        ws._statements.forget()
        ws._async_statements.forget()
        ws.engine.dispose(close=False)


os.register_at_fork(after_in_child=_forget_connections_in_child)


def _mark_writer_thread() -> None:
    _writer_thread.marked = True


def connect(
    url: str | URL | None = None,
    *,
    home: str | Path | None = None,
    vault_key: str | None = None,
    migrate: bool = True,
    make_default: bool = True,
    event_buffer_size: int = 500,
    share_events: bool | None = None,
    as_user: Any = None,
) -> Workspace:
    """Open a workspace, creating and migrating its database if needed.

    With no URL: `$CMDC_NB_DATABASE_URL`, else an SQLite file `cmdc_nb.db` in the data directory
    (`$CMDC_NB_HOME`, else `~/.local/share/cmdc_nb`). A `postgresql+psycopg://` URL uses PostgreSQL.
    The vault key comes from `vault_key`, `$CMDC_NB_VAULT_KEY`, or a key file `vault.key` in the data
    directory, created on first use with owner-only permissions.

    `as_user` makes the workspace act for that user (a User, id or email): it reads and changes only
    what is theirs or shared with them (see `Workspace.act_as`, and `acting_as` for one block).
    `share_events` (default: on for PostgreSQL) shares committed events with every other process on
    the same database — kernels, workers — and brings theirs onto this workspace's bus (team mode).

    >>> ws = cmdc_nb.connect()                                   # doctest: +SKIP
    >>> ws = cmdc_nb.connect("postgresql+psycopg://me@db/team")  # doctest: +SKIP
    """
    global _default
    home_path = Path(home).expanduser() if home is not None else default_home()
    if url is None:
        url = os.environ.get(DATABASE_URL_ENV) or f"sqlite:///{home_path / 'cmdc_nb.db'}"
    parsed = normalise_url(url)
    engine = create_engine(parsed, own_checkpoints=True)
    try:
        if migrate:
            upgrade(engine)
        vault = Vault(_key_ring(vault_key, home_path, engine))
    except BaseException:
        engine.dispose()
        raise
    if share_events is None:
        share_events = engine.dialect.name == "postgresql"
    try:
        ws = Workspace(
            engine, vault=vault, home=home_path, bus=EventBus(event_buffer_size), share_events=share_events
        )
    except BaseException:
        engine.dispose()
        raise
    if as_user is not None:
        try:
            ws.act_as(as_user)
        except BaseException:
            ws.close()
            raise
    if make_default:
        with _default_lock:
            _default = ws
    # the schema, mappers and migrations just built live as long as the process (and this workspace's
    # engine as long as it is open: its close thaws them)
    ws._froze_gc = freeze_long_lived("connect")
    return ws


def _key_ring(vault_key: str | None, home: Path, engine: Engine) -> KeyRing:
    if vault_key is not None:
        return KeyRing.from_text(vault_key, source="memory")
    if os.environ.get(KEY_ENV):
        return KeyRing.from_text(os.environ[KEY_ENV], source="env")
    path = home / "vault.key"
    if not path.exists():
        held = _encrypted_values(engine)
        if held:
            # A new key could open none of them: making one would hide the loss until the first read.
            raise VaultKeyError(
                f"the vault key file {path} is missing, but this database holds {held} secret(s) encrypted "
                f"with the key it held: restore the file from a backup, or set {KEY_ENV} to that key. "
                "If the key is lost: open the workspace once with a new key "
                "(cmdc_nb.connect(vault_key=cmdc_nb.vault.generate_key())), revoke those credentials "
                "(cmdc_nb.accounts.revoke_api_credential) and store them again."
            )
    return KeyRing.load_or_create(path)


def _encrypted_values(engine: Engine) -> int:
    """How many vault ciphertexts the database holds (0 when its tables do not exist yet)."""
    from cmdc_nb.store.models import ENCRYPTED_COLUMNS

    total = 0
    try:
        with engine.connect() as conn:
            for model, column in ENCRYPTED_COLUMNS:
                col = getattr(model, column)
                total += conn.scalar(sa.select(sa.func.count()).where(col.is_not(None))) or 0
    except sa.exc.DBAPIError:  # not migrated (migrate=False on an empty database): nothing is held
        return 0
    return total


def get_workspace(ws: Workspace | None = None) -> Workspace:
    """`ws` if given, else the default workspace, connecting with the defaults on first use."""
    if ws is not None:
        return ws
    with _default_lock:
        current = _default
    if current is None:
        return connect()
    return current
