"""pandas DataFrames of every kind of record, with typed columns, filters and the common cuts.

Column types are documented per function and hold on both backends:

- ids, providers, models, statuses, roles, actions, notebook cells → `category`
- timestamps → `datetime64[us, UTC]`; `day` → `datetime64[s]` (midnight UTC)
- counts → `int64` (`Int64` where the column may be empty)
- money → `decimal128(38, 12)[pyarrow]`: exact, sums exactly in `groupby`, and missing (`<NA>`) where a
  request was unpriced — never a silent 0.

Rows are read with the ORM bypassed (one query, columns built with numpy), so a million cost records
load in about a second; `daily_costs` pushes the grouping into the database instead.

pandas and pyarrow are imported when a frame is first asked for, not with `cmdc_nb`.

>>> df = costs_frame(user=user, since=datetime(2026, 11, 1, tzinfo=UTC))        # doctest: +SKIP
>>> by_day(df, by="model")                                                      # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.arrays import overlaps
from cmdc_nb.store.models import (
    ActivityLog,
    AgentCall,
    CostRecord,
    CostRollup,
    Message,
    Session,
    ToolUse,
)

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "COST_COLUMNS",
    "activity_frame",
    "by_day",
    "by_model",
    "by_session",
    "calls_frame",
    "costs_frame",
    "daily_costs",
    "messages_frame",
    "sessions_frame",
    "tool_uses_frame",
    "top_n",
]

PICOS = 10**12


def _pd() -> Any:
    import pandas  # deferred: `import cmdc_nb` must stay light

    return pandas


# --- columns ----------------------------------------------------------------------------------------


def _money_select(col: Any, pg: bool) -> Any:
    # Exact integer picodollars straight from the database (no per-row Decimal objects).
    if pg:
        return sa.cast(sa.func.round(col * PICOS), sa.BigInteger)
    return sa.type_coerce(col, sa.BigInteger)


def _ts_select(col: Any, pg: bool) -> Any:
    """Integer microseconds since the epoch, computed by the database (no per-row parsing here)."""
    if pg:
        return sa.cast(sa.func.floor(sa.extract("epoch", col) * 1_000_000), sa.BigInteger)
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): whole seconds from strftime, then the fraction.
    raw = sa.type_coerce(col, sa.String)
    seconds = sa.cast(sa.func.strftime("%s", raw), sa.BigInteger)
    fraction = sa.cast(sa.func.substr(raw, 21, 6), sa.BigInteger)
    return sa.case((raw.is_(None), None), else_=seconds * 1_000_000 + fraction)


def _id_select(col: Any, pg: bool) -> Any:
    return sa.cast(col, sa.String) if pg else sa.type_coerce(col, sa.String)


def _money_array(values: Sequence[int | None]) -> Any:
    import numpy as np
    import pyarrow as pa

    pd = _pd()
    n = len(values)
    mask = np.fromiter((x is None for x in values), dtype=bool, count=n)
    picos = np.fromiter((0 if x is None else x for x in values), dtype="<i8", count=n)
    words = np.empty(2 * n, dtype="<i8")
    words[0::2] = picos
    words[1::2] = np.where(picos < 0, -1, 0)  # two's-complement high word of the 128-bit value
    validity = pa.array(~mask, pa.bool_()).buffers()[1] if mask.any() else None
    arr = pa.Array.from_buffers(pa.decimal128(38, 12), n, [validity, pa.py_buffer(words)])
    return pd.arrays.ArrowExtensionArray(arr)


def _ts_array(values: Sequence[Any]) -> Any:
    import numpy as np

    pd = _pd()
    micros = np.fromiter((-(2**63) if x is None else x for x in values), dtype="int64", count=len(values))
    return pd.DatetimeIndex(micros.view("datetime64[us]")).tz_localize("UTC").array


def _id_category(values: Sequence[Any]) -> Any:
    pd = _pd()
    cat = pd.Categorical(values)
    # SQLite keeps UUIDs as 32 hex digits; show them as UUIDs (only the distinct values are touched).
    return cat.rename_categories([str(uuid.UUID(c)) if len(c) == 32 else c for c in cat.categories])


def _build(db: Any, stmt: sa.Select[Any], kinds: dict[str, str]) -> pd.DataFrame:
    pd = _pd()
    # Core, not the ORM: a million rows come back as plain tuples without per-row ORM work.
    rows = db.connection().execute(stmt).all()
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in kinds]
    data: dict[str, Any] = {}
    for (name, kind), values in zip(kinds.items(), cols, strict=True):
        if kind == "ts":
            data[name] = _ts_array(values)
        elif kind == "money":
            data[name] = _money_array(values)
        elif kind == "day":
            # few distinct days: parse each once, through the categories
            cat = pd.Categorical(values)
            parsed = pd.to_datetime(pd.Series(cat.categories, dtype="object")).astype("datetime64[s]")
            data[name] = pd.Series(parsed.to_numpy()[cat.codes]).where(cat.codes >= 0).astype("datetime64[s]")
        elif kind == "id":
            data[name] = _id_category(values)
        elif kind == "cat":
            data[name] = pd.Categorical(values)
        elif kind == "int":
            data[name] = pd.array(values, dtype="Int64")
        elif kind == "bool":
            data[name] = pd.array(values, dtype="boolean")
        else:
            data[name] = pd.array(list(values), dtype="string")
    return pd.DataFrame(data)


def _window(
    stmt: sa.Select[Any], col: Any, since: dt.datetime | None, until: dt.datetime | None
) -> sa.Select[Any]:
    if since is not None:
        stmt = stmt.where(col >= v.aware(since, "since"))
    if until is not None:
        stmt = stmt.where(col < v.aware(until, "until"))
    return stmt


def _sessions_tagged(db: Any, tags: Sequence[str]) -> Any:
    return sa.select(Session.id).where(overlaps(db, Session.tags, tags))


def _acting_user(db: Any, user: Any, session: Any) -> Any:
    """When the workspace acts for someone: a frame of one session needs read access to it; any other
    frame is of the acting user's own records (asking for another user's is refused)."""
    if session is not None:
        access.check_session_id(db, v.id_of(session, "session"), "read")
        return user
    return access.resolve_user(access.acting_user_id(db), user)


def _scope(
    db: Any, stmt: sa.Select[Any], model: Any, *, user: Any, session: Any, tags: Sequence[str] | None
) -> sa.Select[Any]:
    user = _acting_user(db, user, session)
    if user is not None:
        if hasattr(model, "user_id"):
            stmt = stmt.where(model.user_id == v.id_of(user, "user"))
        else:
            stmt = stmt.where(
                model.session_id.in_(sa.select(Session.id).where(Session.user_id == v.id_of(user, "user")))
            )
    if session is not None:
        stmt = stmt.where(model.session_id == v.id_of(session, "session"))
    if tags:
        stmt = stmt.where(model.session_id.in_(_sessions_tagged(db, tags)))
    return stmt


# --- frames -----------------------------------------------------------------------------------------

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
    db: Any, spec: Spec, *, where: Any = None, window: tuple[Any, dt.datetime | None, dt.datetime | None]
) -> pd.DataFrame:
    pg = db.get_bind().dialect.name == "postgresql"
    stmt = sa.select(*(_expr(kind, col, pg) for kind, col in spec.values()))
    stmt = _window(stmt, *window)
    if where is not None:
        stmt = where(stmt)
    # No ORDER BY: walking an index to sort a million rows costs more than sorting them here.
    df = _build(db, stmt, {name: kind for name, (kind, _) in spec.items()})
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
    with get_workspace(ws).read() as db:
        return _frame(
            db,
            spec,
            where=lambda stmt: _scope(db, stmt, model, user=user, session=session, tags=tags),
            window=(time_col, since, until),
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

    with get_workspace(ws).read() as db:
        return _frame(db, spec, where=where, window=(a.occurred_at, since, until))


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
    with get_workspace(ws).read() as db:

        def where(stmt: sa.Select[Any]) -> sa.Select[Any]:
            who = _acting_user(db, user, None)
            if who is not None:
                stmt = stmt.where(s.user_id == v.id_of(who, "user"))
            if tags:
                stmt = stmt.where(s.id.in_(_sessions_tagged(db, tags)))
            return stmt

        return _frame(db, spec, where=where, window=(s.inserted_at, since, until))


# --- cuts -------------------------------------------------------------------------------------------


def _check_column(frame: pd.DataFrame, column: str, field: str) -> None:
    if column not in frame.columns:
        raise InvalidInputError(f"no column {column!r}; columns are: {', '.join(frame.columns)}", field=field)


def by_day(frame: pd.DataFrame, *, by: str | None = None, value: str = "cost_usd") -> pd.DataFrame:
    """`value` summed per day (and per `by`, e.g. "model"), as a tidy frame sorted by day."""
    time_col = (
        "day"
        if "day" in frame.columns
        else next(c for c in frame.columns if str(frame[c].dtype).startswith("datetime64"))
    )
    _check_column(frame, value, "value")
    keys = [frame[time_col].dt.floor("D").rename("day") if time_col != "day" else frame["day"]]
    if by is not None:
        _check_column(frame, by, "by")
        keys.append(frame[by])
    out = frame.groupby(keys, observed=True, sort=True)[value].sum().reset_index()
    return out


def _total_by(frame: pd.DataFrame, column: str, value: str) -> pd.DataFrame:
    _check_column(frame, column, "by")
    _check_column(frame, value, "value")
    out = (
        frame.groupby(column, observed=True)[value]
        .agg(["sum", "count"])
        .rename(columns={"sum": value, "count": "rows"})
    )
    return out.sort_values(value, ascending=False).reset_index()


def by_model(frame: pd.DataFrame, *, value: str = "cost_usd") -> pd.DataFrame:
    return _total_by(frame, "model", value)


def by_session(frame: pd.DataFrame, *, value: str = "cost_usd") -> pd.DataFrame:
    return _total_by(frame, "session_id", value)


def top_n(frame: pd.DataFrame, column: str, *, n: int = 10, value: str = "cost_usd") -> pd.DataFrame:
    """The `n` values of `column` with the largest total `value`."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError("must be a positive integer", field="n")
    return _total_by(frame, column, value).head(n)


def daily_costs(
    *,
    user: Any = None,
    by: str | None = "model",
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """Cost per day (and per `by`: provider, model, session_id, notebook_cell or None), grouped by
    the database: columns day, [by], cost_usd (decimal128, priced only), requests, unpriced_requests,
    tokens_in, tokens_out.

    By provider, model or nothing, over whole UTC days (`since` / `until` at midnight, or None), it
    reads the rollups `record_cost` keeps (one row per user, day, provider and model): milliseconds
    for a million records. Otherwise it groups the cost records themselves."""
    allowed = {"provider", "model", "session_id", "notebook_cell", None}
    if by not in allowed:
        raise InvalidInputError(
            f"{by!r} is not one of: provider, model, session_id, notebook_cell, None", field="by"
        )
    if by in ("provider", "model", None) and _midnight(since, "since") and _midnight(until, "until"):
        return _daily_from_rollups(user=user, by=by, since=since, until=until, ws=ws)
    return _daily_from_records(user=user, by=by, since=since, until=until, ws=ws)


def _midnight(value: dt.datetime | None, field: str) -> bool:
    if value is None:
        return True
    t = v.aware(value, field).astimezone(dt.UTC)
    return (t.hour, t.minute, t.second, t.microsecond) == (0, 0, 0, 0)


def _daily_frame(rows: Sequence[Any], by: str | None) -> pd.DataFrame:
    pd = _pd()
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in range(7 if by else 6)]
    data: dict[str, Any] = {"day": pd.to_datetime(pd.Series(cols[0], dtype="object")).astype("datetime64[s]")}
    offset = 1
    if by is not None:
        data[by] = _id_category(cols[1]) if by == "session_id" else pd.Categorical(cols[1])
        offset = 2
    sums = [None if x is None else int(x) for x in cols[offset]]
    data["cost_usd"] = _money_array(sums)
    for i, name in enumerate(["requests", "unpriced_requests", "tokens_in", "tokens_out"], start=offset + 1):
        data[name] = pd.array([int(x or 0) for x in cols[i]], dtype="Int64")
    return pd.DataFrame(data)


def _daily_from_rollups(
    *, user: Any, by: str | None, since: dt.datetime | None, until: dt.datetime | None, ws: Workspace | None
) -> pd.DataFrame:
    r = CostRollup
    with get_workspace(ws).read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        keys: list[Any] = [r.day] + ([getattr(r, by)] if by is not None else [])
        requests, unpriced = sa.func.sum(r.requests), sa.func.sum(r.unpriced_requests)
        stmt = (
            sa.select(
                sa.type_coerce(r.day, sa.String),
                *keys[1:],
                # all-unpriced groups have no cost (NA), as when grouping the records
                sa.case((requests == unpriced, None), else_=_money_select(sa.func.sum(r.cost_usd), pg)),
                requests,
                unpriced,
                sa.func.sum(r.tokens_in),
                sa.func.sum(r.tokens_out),
            )
            .group_by(*keys)
            .order_by(*keys)
        )
        if since is not None:
            stmt = stmt.where(r.day >= v.aware(since, "since").astimezone(dt.UTC).date())
        if until is not None:
            stmt = stmt.where(r.day < v.aware(until, "until").astimezone(dt.UTC).date())
        user = _acting_user(db, user, None)
        if user is not None:
            stmt = stmt.where(r.user_id == v.id_of(user, "user"))
        rows = db.execute(stmt).all()
    return _daily_frame(rows, by)


def _daily_from_records(
    *, user: Any, by: str | None, since: dt.datetime | None, until: dt.datetime | None, ws: Workspace | None
) -> pd.DataFrame:
    c = CostRecord
    with get_workspace(ws).read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        keys: list[Any] = [c.day]
        if by is not None:
            keys.append(_id_select(c.session_id, pg) if by == "session_id" else getattr(c, by))
        stmt = (
            sa.select(
                sa.type_coerce(c.day, sa.String),
                *keys[1:],
                _money_select(sa.func.sum(c.cost_usd), pg),
                sa.func.count(),
                sa.func.count() - sa.func.count(c.cost_usd),
                sa.func.sum(c.tokens_in + c.cache_tokens_read + c.cache_tokens_write),
                sa.func.sum(c.tokens_out),
            )
            .group_by(*keys)
            .order_by(*keys)
        )
        stmt = _window(stmt, c.incurred_at, since, until)
        user = _acting_user(db, user, None)
        if user is not None:
            stmt = stmt.where(c.user_id == v.id_of(user, "user"))
        rows = db.execute(stmt).all()
    return _daily_frame(rows, by)
