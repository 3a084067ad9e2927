"""One DataFrame per kind of record (costs, calls, tool uses, messages, activity, sessions), scoped to what
the acting user may read."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.models import ActivityLog, AgentCall, CostRecord, Message, Session, ToolUse

if TYPE_CHECKING:
    import pandas as pd

from cmdc_nb.services.frames import adbc
from cmdc_nb.services.frames.arrow import _arrow_select, _from_arrow
from cmdc_nb.services.frames.columns import (
    _acting_user,
    _build,
    _id_select,
    _money_select,
    _scope,
    _sessions_tagged,
    _ts_select,
    _window,
)

__all__ = [
    "COST_COLUMNS",
    "activity_frame",
    "calls_frame",
    "costs_frame",
    "messages_frame",
    "sessions_frame",
    "tool_uses_frame",
]


Spec = dict[str, tuple[str, Any]]  # column name → (kind, model attribute)


def _expr(kind: str, col: Any, pg: bool) -> Any:
    """The SELECT expression that hands `col` over in the cheapest form for its kind."""
    if kind == "id":
        return _id_select(col, pg)
    if kind == "ts":
        return _ts_select(col, pg)
    if kind == "money":
        return _money_select(col, pg)
    if kind in ("cat", "day"):
        return sa.type_coerce(col, sa.String)  # enums and dates as their text, no per-row objects
    return col


def _frame(
    db: Any,
    spec: Spec,
    *,
    where: Any = None,
    window: tuple[Any, dt.datetime | None, dt.datetime | None],
    engine: sa.Engine,
) -> pd.DataFrame:
    pg = db.get_bind().dialect.name == "postgresql"
    kinds = {name: kind for name, (kind, _) in spec.items()}
    stmt = _window(sa.select(*(_arrow_select(kind, col, pg) for kind, col in spec.values())), *window)
    if where is not None:
        stmt = where(stmt)
    # No ORDER BY: walking an index to sort a million rows costs more than sorting them here.
    df = None
    found = adbc.reader(db, engine)
    if found is not None:
        table = adbc.read_arrow(found, stmt, db.get_bind().dialect)
        df = _from_arrow(table, kinds) if table is not None else None
    if df is None:  # row by row: the same filters, each column in its cheapest form for Python
        df = _build(db, stmt.with_only_columns(*(_expr(kind, col, pg) for kind, col in spec.values())), kinds)
    time_col = window[0].key
    return df.sort_values(time_col, kind="stable", ignore_index=True) if time_col in df.columns else df


def _scoped_frame(
    spec: Spec,
    model: Any,
    time_col: Any,
    *,
    user: Any,
    session: Any,
    since: dt.datetime | None,
    until: dt.datetime | None,
    tags: Sequence[str] | None,
    ws: Workspace | None,
) -> pd.DataFrame:
    """A frame of `model` rows filtered by user, session, session tags and a time window."""
    w = get_workspace(ws)
    with w.read() as db:
        return _frame(
            db,
            spec,
            where=lambda stmt: _scope(db, stmt, model, user=user, session=session, tags=tags),
            window=(time_col, since, until),
            engine=w.engine,
        )


COST_COLUMNS = (
    "incurred_at",
    "day",
    "user_id",
    "session_id",
    "provider",
    "model",
    "service",
    "source_type",
    "notebook_cell",
    "tokens_in",
    "tokens_out",
    "cache_tokens_read",
    "cache_tokens_write",
    "cost_usd",
    "priced",
)


@checked
def costs_frame(
    *,
    user: Any = None,
    session: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tags: Sequence[str] | None = None,
    columns: Sequence[str] | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per cost record, oldest first.

    Columns (`COST_COLUMNS`; ask for fewer with `columns=` to load faster): incurred_at
    (datetime64[us, UTC]), day (datetime64[s]), user_id, session_id, provider, model, service,
    source_type, notebook_cell (category), tokens_in, tokens_out, cache_tokens_read, cache_tokens_write
    (Int64), cost_usd (decimal128(38, 12); <NA> = unpriced), priced (boolean). `tags` keeps costs of
    sessions with any of those tags.
    """
    wanted = list(COST_COLUMNS if columns is None else columns)
    unknown = [col for col in wanted if col not in COST_COLUMNS]
    if unknown:
        raise InvalidInputError(
            f"unknown columns {unknown}; choose from: {', '.join(COST_COLUMNS)}", field="columns"
        )
    c = CostRecord
    spec: Spec = {
        "incurred_at": ("ts", c.incurred_at),
        "day": ("day", c.day),
        "user_id": ("id", c.user_id),
        "session_id": ("id", c.session_id),
        "provider": ("cat", c.provider),
        "model": ("cat", c.model),
        "service": ("cat", c.service),
        "source_type": ("cat", c.source_type),
        "notebook_cell": ("cat", c.notebook_cell),
        "tokens_in": ("int", c.tokens_in),
        "tokens_out": ("int", c.tokens_out),
        "cache_tokens_read": ("int", c.cache_tokens_read),
        "cache_tokens_write": ("int", c.cache_tokens_write),
        "cost_usd": ("money", c.cost_usd),
    }
    need = set(wanted) | ({"cost_usd"} if "priced" in wanted else set())
    df = _scoped_frame(
        {name: kc for name, kc in spec.items() if name in need},
        c,
        c.incurred_at,
        user=user,
        session=session,
        since=since,
        until=until,
        tags=tags,
        ws=ws,
    )
    if "priced" in wanted:
        df["priced"] = df["cost_usd"].notna().astype("boolean")
    return df[wanted]


@checked
def calls_frame(
    *,
    user: Any = None,
    session: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tags: Sequence[str] | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per agent call, oldest first: id, session_id, user_id, provider, model, status
    (category), inserted_at, started_at, first_token_at, completed_at (datetime64[us, UTC]),
    duration_ms, tokens_in, tokens_out, cache_tokens_read, cache_tokens_write, retry_count (Int64),
    cost_usd (decimal128), stop_reason, error_type (string)."""
    a = AgentCall
    spec: Spec = {
        "id": ("id", a.id),
        "session_id": ("id", a.session_id),
        "user_id": ("id", a.user_id),
        "provider": ("cat", a.provider),
        "model": ("cat", a.model),
        "status": ("cat", a.status),
        "inserted_at": ("ts", a.inserted_at),
        "started_at": ("ts", a.started_at),
        "first_token_at": ("ts", a.first_token_at),
        "completed_at": ("ts", a.completed_at),
        "duration_ms": ("int", a.duration_ms),
        "tokens_in": ("int", a.tokens_in),
        "tokens_out": ("int", a.tokens_out),
        "cache_tokens_read": ("int", a.cache_tokens_read),
        "cache_tokens_write": ("int", a.cache_tokens_write),
        "retry_count": ("int", a.retry_count),
        "cost_usd": ("money", a.cost_usd),
        "stop_reason": ("str", a.stop_reason),
        "error_type": ("str", a.error_type),
    }
    return _scoped_frame(
        spec,
        a,
        a.inserted_at,
        user=user,
        session=session,
        since=since,
        until=until,
        tags=tags,
        ws=ws,
    )


@checked
def tool_uses_frame(
    *,
    user: Any = None,
    session: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tags: Sequence[str] | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per tool use, oldest first: id, agent_call_id, session_id, tool_name, status
    (category), sequence, duration_ms, exit_code (Int64), requires_approval, output_truncated
    (boolean), inserted_at, started_at, completed_at (datetime64[us, UTC]), error_type (string)."""
    t = ToolUse
    spec: Spec = {
        "id": ("id", t.id),
        "agent_call_id": ("id", t.agent_call_id),
        "session_id": ("id", t.session_id),
        "tool_name": ("cat", t.tool_name),
        "status": ("cat", t.status),
        "sequence": ("int", t.sequence),
        "duration_ms": ("int", t.duration_ms),
        "exit_code": ("int", t.exit_code),
        "requires_approval": ("bool", t.requires_approval),
        "output_truncated": ("bool", t.output_truncated),
        "inserted_at": ("ts", t.inserted_at),
        "started_at": ("ts", t.started_at),
        "completed_at": ("ts", t.completed_at),
        "error_type": ("str", t.error_type),
    }
    return _scoped_frame(
        spec,
        t,
        t.inserted_at,
        user=user,
        session=session,
        since=since,
        until=until,
        tags=tags,
        ws=ws,
    )


@checked
def messages_frame(
    *,
    user: Any = None,
    session: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tags: Sequence[str] | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per message, oldest first: id, session_id (category), sequence, token_count (Int64),
    role (category), inserted_at (datetime64[us, UTC]), content (string)."""
    m = Message
    spec: Spec = {
        "id": ("id", m.id),
        "session_id": ("id", m.session_id),
        "sequence": ("int", m.sequence),
        "token_count": ("int", m.token_count),
        "role": ("cat", m.role),
        "inserted_at": ("ts", m.inserted_at),
        "content": ("str", m.content),
    }
    return _scoped_frame(
        spec,
        m,
        m.inserted_at,
        user=user,
        session=session,
        since=since,
        until=until,
        tags=tags,
        ws=ws,
    )


@checked
def activity_frame(
    *,
    user: Any = None,
    session: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per audit entry, oldest first: occurred_at (datetime64[us, UTC]), user_id, action,
    resource_type (category), resource_id, session_id (category)."""
    a = ActivityLog
    spec: Spec = {
        "occurred_at": ("ts", a.occurred_at),
        "user_id": ("id", a.user_id),
        "action": ("cat", a.action),
        "resource_type": ("cat", a.resource_type),
        "resource_id": ("id", a.resource_id),
        "session_id": ("id", a.session_id),
    }

    def where(stmt: sa.Select[Any]) -> sa.Select[Any]:
        who = _acting_user(db, user, session)
        if who is not None:
            stmt = stmt.where(a.user_id == v.id_of(who, "user"))
        if session is not None:
            stmt = stmt.where(a.session_id == v.id_of(session, "session"))
        return stmt

    w = get_workspace(ws)
    with w.read() as db:
        return _frame(db, spec, where=where, window=(a.occurred_at, since, until), engine=w.engine)


@checked
def sessions_frame(
    *,
    user: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tags: Sequence[str] | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per session, oldest first: id, user_id, parent_session_id, status (category), name,
    slug (string), message_count, total_tokens_in, total_tokens_out, total_duration_ms (Int64),
    total_cost_usd (decimal128), inserted_at, updated_at (datetime64[us, UTC])."""
    s = Session
    spec: Spec = {
        "id": ("id", s.id),
        "user_id": ("id", s.user_id),
        "parent_session_id": ("id", s.parent_session_id),
        "status": ("cat", s.status),
        "name": ("str", s.name),
        "slug": ("str", s.slug),
        "message_count": ("int", s.message_count),
        "total_tokens_in": ("int", s.total_tokens_in),
        "total_tokens_out": ("int", s.total_tokens_out),
        "total_duration_ms": ("int", s.total_duration_ms),
        "total_cost_usd": ("money", s.total_cost_usd),
        "inserted_at": ("ts", s.inserted_at),
        "updated_at": ("ts", s.updated_at),
    }
    w = get_workspace(ws)
    with w.read() as db:

        def where(stmt: sa.Select[Any]) -> sa.Select[Any]:
            who = _acting_user(db, user, None)
            if who is not None:
                stmt = stmt.where(s.user_id == v.id_of(who, "user"))
            if tags:
                stmt = stmt.where(s.id.in_(_sessions_tagged(db, tags)))
            return stmt

        return _frame(db, spec, where=where, window=(s.inserted_at, since, until), engine=w.engine)
