"""Core statements compiled once and run on the driver's cursor: the stored agent round's hot path.

`Connection.execute` spends ≈0.05–0.1 ms of Python on every statement before the driver sees it (the
compiled-cache lookup, an execution context, parameter processing, a result object); a stored round
runs eleven such statements and waits for them. A `Prepared` statement is compiled once per database
dialect and set of parameter names, and each run only fills in the Python-side defaults, applies the
same bind processors SQLAlchemy would (UTC datetimes, JSON, money, enums, UUIDs) and hands the driver
its SQL: what is stored is identical (`tests/test_prepared.py` compares rows written both ways).

What it keeps from the execution path: the engine's `before_cursor_execute` / `after_cursor_execute`
listeners see every statement (statement counts, profiling), and a driver error comes out as
SQLAlchemy's exception class for it, so `Workspace.transaction` translates it as any other.
"""

from __future__ import annotations

import collections
import contextlib
import contextvars
import logging
import weakref
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

__all__ = ["Pending", "Prepared", "driver_error", "pipeline"]


class _Compiled:
    """One statement compiled for one dialect and one set of parameter names."""

    __slots__ = (
        "_converters", "defaults", "dialect", "fixed", "names", "plan", "positional", "processors", "results", "row",
        "sql",
    )  # fmt: skip

    def __init__(self, stmt: Any, dialect: sa.Dialect, keys: frozenset[str]) -> None:
        compiled: Any = stmt.compile(dialect=dialect, column_keys=sorted(keys))
        self.sql: str = compiled.string
        self.positional: bool = bool(compiled.positional)
        # the bind names the driver receives, in order for a positional paramstyle
        self.names: tuple[str, ...] = tuple(
            compiled.positiontup if self.positional else dict.fromkeys(compiled.bind_names.values())
        )
        if compiled.escaped_bind_names:  # names SQLAlchemy had to escape: never in these statements
            raise TypeError(f"bind names need escaping: {sorted(compiled.escaped_bind_names)}")
        self.processors: dict[str, Any] = dict(compiled._bind_processors)
        # each bind name with its processor (None: passed as is), in the driver's order: looked up once
        self.plan: tuple[tuple[str, Any], ...] = tuple((n, self.processors.get(n)) for n in self.names)
        # values fixed in the statement itself (e.g. `status = 'executing'` in a WHERE clause)
        self.fixed = {k: v for k, v in compiled.construct_params(_check=False).items() if k not in keys}
        # Python-side column defaults (ids, timestamps, `onupdate`) SQLAlchemy fills in before executing
        prefetch = [*compiled.insert_prefetch, *compiled.update_prefetch]
        self.defaults = [(c.key, _default_of(c, update=c in compiled.update_prefetch)) for c in prefetch]
        # what RETURNING gives back, converted as a Result would (an id to a UUID, a status to its enum)
        self.dialect = dialect
        self.results = [entry[3] for entry in compiled._result_columns]
        self._converters: dict[tuple[Any, ...], list[Any]] = {}
        # a row of what it selects or returns, its values by name as a Row's (`r.step_id`)
        self.row: Any = collections.namedtuple("Row", [entry[0] for entry in compiled._result_columns])  # type: ignore[misc]

    def converters(self, cursor: Any) -> list[Any]:
        """What converts each value of a result row, as a Result would: a type's processor can
        depend on the driver's type code for the column (PostgreSQL's numeric), so per description."""
        codes = tuple(d[1] for d in cursor.description or ())
        found = self._converters.get(codes)
        if found is None:
            found = self._converters[codes] = [
                t._cached_result_processor(self.dialect, code)
                for t, code in zip(self.results, codes, strict=True)
            ]
        return found

    def read(self, conn: sa.Connection, cursor: Any) -> list[tuple[Any, ...]]:
        """Every row the cursor holds, converted as a Result would; the cursor closed (in a pipeline,
        this waits for the results)."""
        with _translated(conn, self.sql, cursor):
            rows = cursor.fetchall()
        procs = self.converters(cursor)
        cursor.close()
        return [tuple(p(v) if p is not None else v for p, v in zip(procs, r, strict=True)) for r in rows]

    def bind(self, params: Mapping[str, Any]) -> Any:
        values = {**self.fixed, **params}
        for key, make in self.defaults:
            if key not in params:
                values[key] = make()
        if self.positional:
            return tuple([values[n] if p is None else p(values[n]) for n, p in self.plan])
        return {n: values[n] if p is None else p(values[n]) for n, p in self.plan}


def _default_of(column: sa.Column[Any], *, update: bool) -> Any:
    default: Any = column.onupdate if update else column.default
    if default is None:
        return lambda: None
    if default.is_scalar:
        value = default.arg
        return lambda: value
    if default.is_callable:
        fn = default.arg
        return lambda: fn(None)  # SQLAlchemy wraps a zero-argument default to take the context
    raise TypeError(f"column {column.key}: a SQL expression default cannot be prefetched")


class Prepared:
    """A Core statement (insert, update, delete, text) run as `conn.execute(stmt, params)` would,
    compiled once per dialect and parameter names. `run` returns the driver's cursor (rowcount,
    fetchone) for a single set of parameters; a list runs them as one `executemany`."""

    def __init__(self, stmt: Any) -> None:
        self.stmt = stmt
        self._compiled: weakref.WeakKeyDictionary[sa.Dialect, dict[frozenset[str], _Compiled]] = (
            weakref.WeakKeyDictionary()
        )

    def _for(self, dialect: sa.Dialect, keys: frozenset[str]) -> _Compiled:
        by_keys = self._compiled.get(dialect)
        if by_keys is None:
            by_keys = self._compiled[dialect] = {}
        found = by_keys.get(keys)
        if found is None:
            found = by_keys[keys] = _Compiled(self.stmt, dialect, keys)
        return found

    def run(self, conn: sa.Connection, params: Mapping[str, Any] | Sequence[Mapping[str, Any]]) -> Any:
        many = not isinstance(params, Mapping)
        rows: Sequence[Mapping[str, Any]] = params if many else [params]  # type: ignore[assignment,list-item]
        if not rows:
            return None
        keys = frozenset(rows[0])
        if many and any(len(r) != len(keys) or not keys.issuperset(r) for r in rows):
            # one statement for the batch: a row with other columns would be bound wrong
            raise TypeError("every row of a batch needs the same parameter names")
        compiled = self._for(conn.dialect, keys)
        bound = [compiled.bind(r) for r in rows] if many else compiled.bind(rows[0])
        cursor = conn.connection.cursor()
        dispatch = conn.dispatch
        if dispatch.before_cursor_execute:
            dispatch.before_cursor_execute(conn, cursor, compiled.sql, bound, None, many)
        try:  # inline, not `_translated`: a context manager per statement costs more than it reads
            if many:
                cursor.executemany(compiled.sql, bound)
            else:
                cursor.execute(compiled.sql, bound)
        except conn.dialect.loaded_dbapi.Error as exc:
            raise driver_error(conn, compiled.sql, cursor, exc) from None
        if dispatch.after_cursor_execute:
            dispatch.after_cursor_execute(conn, cursor, compiled.sql, bound, None, many)
        return cursor

    def bound(self, dialect: sa.Dialect, params: Mapping[str, Any]) -> dict[str, Any]:
        """What `run` would hand the driver for one row, by bind name: Python-side defaults filled in
        and every value through its bind processor (`store.json_rows` turns it into JSON)."""
        compiled = self._for(dialect, frozenset(params))
        if compiled.positional:
            return dict(zip(compiled.names, compiled.bind(params), strict=True))
        return dict(compiled.bind(params))

    def driver_call(self, dialect: sa.Dialect, params: Mapping[str, Any]) -> tuple[str, Any]:
        """The SQL and parameters `run` would hand the driver for one row: for a driver connection
        SQLAlchemy does not manage (PostgreSQL's async one, `_plumbing.statements`)."""
        compiled = self._for(dialect, frozenset(params))
        return compiled.sql, compiled.bind(params)

    def pending(self, conn: sa.Connection, params: Mapping[str, Any]) -> Pending:
        """Run a statement with RETURNING; its row is read later, with `.fetchone()` (in a pipeline,
        without waiting for it now)."""
        cursor = self.run(conn, params)
        return Pending(conn, cursor, self._for(conn.dialect, frozenset(params)))

    def one_or_none(self, conn: sa.Connection, params: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run with RETURNING and give its first row, its values converted as a Result would."""
        return self.pending(conn, params).fetchone()

    def all(self, conn: sa.Connection, params: Mapping[str, Any]) -> list[Any]:
        """Run a SELECT (or RETURNING) and give every row, converted as a Result would, as a named
        tuple (`row.step_id`). Not inside a pipeline: it waits for the rows."""
        compiled = self._for(conn.dialect, frozenset(params))
        return [compiled.row._make(r) for r in compiled.read(conn, self.run(conn, params))]


class Pending:
    """A sent statement's RETURNING row, read when asked for (`fetchone`, once). In a pipeline it is
    read from the server then; otherwise it was read at once, and the cursor closed: SQLite keeps a
    statement whose rows were not all read in progress, which would block the connection's next
    savepoint even after a rollback."""

    __slots__ = ("_compiled", "_conn", "_cursor", "_row")

    def __init__(self, conn: sa.Connection, cursor: Any, compiled: _Compiled) -> None:
        self._conn, self._cursor, self._compiled = conn, cursor, compiled
        self._row: tuple[Any, ...] | None = None
        if not _in_pipeline(conn):
            self._read()

    def _read(self) -> None:
        cursor, self._cursor = self._cursor, None
        rows = self._compiled.read(self._conn, cursor)
        self._row = rows[0] if rows else None

    def fetchone(self) -> tuple[Any, ...] | None:
        if self._cursor is not None:
            self._read()
        return self._row


# The driver connections this thread has in pipeline mode (not the connection's own `info`, which
# SQLAlchemy refuses to read once a dropped connection was invalidated mid-transaction).
_PIPELINES: contextvars.ContextVar[frozenset[int]] = contextvars.ContextVar(
    "cmdc_pipelines", default=frozenset()
)


def _in_pipeline(conn: sa.Connection) -> bool:
    return id(conn.connection.driver_connection) in _PIPELINES.get()


class _QuietAbortedPipelines(logging.Filter):
    """psycopg logs a warning when a pipeline block is left by an exception ("error ignored terminating
    <psycopg.Pipeline [INERROR] (host=… database=…)>: pipeline aborted"); the exception itself goes on,
    translated, so the warning would only print the server's address into a notebook."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith("error ignored terminating")


logging.getLogger("psycopg").addFilter(_QuietAbortedPipelines())


@contextlib.contextmanager
def _translated(conn: sa.Connection, sql: str | None, cursor: Any = None) -> Iterator[None]:
    try:
        yield
    except conn.dialect.loaded_dbapi.Error as exc:
        raise driver_error(conn, sql, cursor, exc) from None


def driver_error(conn: sa.Connection, sql: str | None, cursor: Any, exc: Any) -> Exception:
    """A driver error as SQLAlchemy's exception class for it (a dropped connection invalidated): what
    `Workspace.transaction` translates, for work run on the driver's own cursor."""
    if conn.dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor):
        conn.invalidate(exc)
    wrapped: Exception = sa.exc.DBAPIError.instance(
        sql, None, exc, conn.dialect.loaded_dbapi.Error, dialect=conn.dialect
    )
    return wrapped


@contextlib.contextmanager
def pipeline(conn: sa.Connection) -> Iterator[None]:
    """On PostgreSQL, the `Prepared` statements run inside go to the server without waiting for each
    one's result (psycopg's pipeline mode): a fetch waits for every result sent so far, and leaving
    the block waits for the rest, so a transaction's dozen statements cost two or three round trips
    instead of a dozen. Only `Prepared` statements may run inside: SQLAlchemy reads a result's columns
    as soon as it executes, which a pipeline does not have yet. Elsewhere it does nothing.

    An error surfaces at the next fetch or when the block is left, as SQLAlchemy's exception class."""
    if conn.dialect.name != "postgresql":
        yield
        return
    driver: Any = conn.connection.driver_connection
    with _translated(conn, None), driver.pipeline():
        token = _PIPELINES.set(_PIPELINES.get() | {id(driver)})
        try:
            yield
        finally:
            _PIPELINES.reset(token)
