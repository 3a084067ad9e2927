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

from cmdc_nb import _validate as v
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.models import (
    ActivityLog,
    AgentCall,
    CostRecord,
    Message,
    Session,
    ToolUse,
)
from cmdc_nb.workspace import Workspace, get_workspace

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
    cond: Any
    if db.get_bind().dialect.name == "postgresql":
        cond = Session.tags.op("&&")(sa.cast(sa.literal(list(tags)), Session.tags.type))
    else:
        each = sa.func.json_each(Session.tags).table_valued("value")
        cond = sa.exists(sa.select(1).select_from(each).where(each.c.value.in_(list(tags))))
    return sa.select(Session.id).where(cond)


def _scope(
    db: Any, stmt: sa.Select[Any], model: Any, *, user: Any, session: Any, tags: Sequence[str] | None
) -> sa.Select[Any]:
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
    need = (
        set(wanted)
        | ({"incurred_at"} if "day" in wanted else set())
        | ({"cost_usd"} if "priced" in wanted else set())
    )
    with get_workspace(ws).read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        c = CostRecord
        available: dict[str, tuple[str, Any]] = {
            "incurred_at": ("ts", _ts_select(c.incurred_at, pg)),
            "day": ("day", sa.type_coerce(c.day, sa.String)),
            "user_id": ("id", _id_select(c.user_id, pg)),
            "session_id": ("id", _id_select(c.session_id, pg)),
            "provider": ("cat", c.provider),
            "model": ("cat", c.model),
            "service": ("cat", sa.type_coerce(c.service, sa.String)),
            "source_type": ("cat", sa.type_coerce(c.source_type, sa.String)),
            "notebook_cell": ("cat", c.notebook_cell),
            "tokens_in": ("int", c.tokens_in),
            "tokens_out": ("int", c.tokens_out),
            "cache_tokens_read": ("int", c.cache_tokens_read),
            "cache_tokens_write": ("int", c.cache_tokens_write),
            "cost_usd": ("money", _money_select(c.cost_usd, pg)),
        }
        chosen = {name: spec for name, spec in available.items() if name in need}
        # No ORDER BY: walking the time index to sort a million rows costs more than sorting them here.
        stmt = sa.select(*(expr for _, expr in chosen.values()))
        stmt = _scope(
            db, _window(stmt, c.incurred_at, since, until), c, user=user, session=session, tags=tags
        )
        df = _build(db, stmt, {name: kind for name, (kind, _) in chosen.items()})
    if "incurred_at" in df.columns:
        df = df.sort_values("incurred_at", kind="stable", ignore_index=True)
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
    """One row per agent call: id, session_id, user_id, provider, model, status (category), started_at,
    first_token_at, completed_at (datetime64[us, UTC]), duration_ms, tokens_in, tokens_out,
    cache_tokens_read, cache_tokens_write, retry_count (Int64), cost_usd (decimal128), stop_reason,
    error_type (string)."""
    with get_workspace(ws).read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        a = AgentCall
        kinds = {
            "id": "id",
            "session_id": "id",
            "user_id": "id",
            "provider": "cat",
            "model": "cat",
            "status": "cat",
            "started_at": "ts",
            "first_token_at": "ts",
            "completed_at": "ts",
            "duration_ms": "int",
            "tokens_in": "int",
            "tokens_out": "int",
            "cache_tokens_read": "int",
            "cache_tokens_write": "int",
            "retry_count": "int",
            "cost_usd": "money",
            "stop_reason": "str",
            "error_type": "str",
        }
        stmt = sa.select(
            _id_select(a.id, pg),
            _id_select(a.session_id, pg),
            _id_select(a.user_id, pg),
            a.provider,
            a.model,
            sa.type_coerce(a.status, sa.String),
            _ts_select(a.started_at, pg),
            _ts_select(a.first_token_at, pg),
            _ts_select(a.completed_at, pg),
            a.duration_ms,
            a.tokens_in,
            a.tokens_out,
            a.cache_tokens_read,
            a.cache_tokens_write,
            a.retry_count,
            _money_select(a.cost_usd, pg),
            a.stop_reason,
            a.error_type,
        ).order_by(a.inserted_at)
        stmt = _scope(
            db, _window(stmt, a.inserted_at, since, until), a, user=user, session=session, tags=tags
        )
        return _build(db, stmt, kinds)


def tool_uses_frame(
    *,
    user: Any = None,
    session: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tags: Sequence[str] | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per tool use: id, agent_call_id, session_id, tool_name, status (category), sequence,
    duration_ms, exit_code (Int64), requires_approval, output_truncated (boolean), inserted_at,
    started_at, completed_at (datetime64[us, UTC]), error_type (string)."""
    with get_workspace(ws).read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        t = ToolUse
        kinds = {
            "id": "id",
            "agent_call_id": "id",
            "session_id": "id",
            "tool_name": "cat",
            "status": "cat",
            "sequence": "int",
            "duration_ms": "int",
            "exit_code": "int",
            "requires_approval": "bool",
            "output_truncated": "bool",
            "inserted_at": "ts",
            "started_at": "ts",
            "completed_at": "ts",
            "error_type": "str",
        }
        stmt = sa.select(
            _id_select(t.id, pg),
            _id_select(t.agent_call_id, pg),
            _id_select(t.session_id, pg),
            t.tool_name,
            sa.type_coerce(t.status, sa.String),
            t.sequence,
            t.duration_ms,
            t.exit_code,
            t.requires_approval,
            t.output_truncated,
            _ts_select(t.inserted_at, pg),
            _ts_select(t.started_at, pg),
            _ts_select(t.completed_at, pg),
            t.error_type,
        ).order_by(t.inserted_at)
        stmt = _scope(
            db, _window(stmt, t.inserted_at, since, until), t, user=user, session=session, tags=tags
        )
        return _build(db, stmt, kinds)


def messages_frame(
    *,
    user: Any = None,
    session: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tags: Sequence[str] | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per message: id, session_id (category), sequence, token_count (Int64), role
    (category), inserted_at (datetime64[us, UTC]), content (string)."""
    with get_workspace(ws).read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        m = Message
        kinds = {
            "id": "id",
            "session_id": "id",
            "sequence": "int",
            "token_count": "int",
            "role": "cat",
            "inserted_at": "ts",
            "content": "str",
        }
        stmt = sa.select(
            _id_select(m.id, pg),
            _id_select(m.session_id, pg),
            m.sequence,
            m.token_count,
            sa.type_coerce(m.role, sa.String),
            _ts_select(m.inserted_at, pg),
            m.content,
        ).order_by(m.session_id, m.sequence)
        stmt = _scope(
            db, _window(stmt, m.inserted_at, since, until), m, user=user, session=session, tags=tags
        )
        return _build(db, stmt, kinds)


def activity_frame(
    *,
    user: Any = None,
    session: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per audit entry: occurred_at (datetime64[us, UTC]), user_id, action, resource_type
    (category), resource_id, session_id (category)."""
    with get_workspace(ws).read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        a = ActivityLog
        kinds = {
            "occurred_at": "ts",
            "user_id": "id",
            "action": "cat",
            "resource_type": "cat",
            "resource_id": "id",
            "session_id": "id",
        }
        stmt = sa.select(
            _ts_select(a.occurred_at, pg),
            _id_select(a.user_id, pg),
            sa.type_coerce(a.action, sa.String),
            a.resource_type,
            _id_select(a.resource_id, pg),
            _id_select(a.session_id, pg),
        ).order_by(a.occurred_at)
        stmt = _window(stmt, a.occurred_at, since, until)
        if user is not None:
            stmt = stmt.where(a.user_id == v.id_of(user, "user"))
        if session is not None:
            stmt = stmt.where(a.session_id == v.id_of(session, "session"))
        return _build(db, stmt, kinds)


def sessions_frame(
    *,
    user: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    tags: Sequence[str] | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per session: id, user_id, parent_session_id, status (category), name, slug (string),
    message_count, total_tokens_in, total_tokens_out, total_duration_ms (Int64), total_cost_usd
    (decimal128), inserted_at, updated_at (datetime64[us, UTC])."""
    with get_workspace(ws).read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        s = Session
        kinds = {
            "id": "id",
            "user_id": "id",
            "parent_session_id": "id",
            "status": "cat",
            "name": "str",
            "slug": "str",
            "message_count": "int",
            "total_tokens_in": "int",
            "total_tokens_out": "int",
            "total_duration_ms": "int",
            "total_cost_usd": "money",
            "inserted_at": "ts",
            "updated_at": "ts",
        }
        stmt = sa.select(
            _id_select(s.id, pg),
            _id_select(s.user_id, pg),
            _id_select(s.parent_session_id, pg),
            sa.type_coerce(s.status, sa.String),
            s.name,
            s.slug,
            s.message_count,
            s.total_tokens_in,
            s.total_tokens_out,
            s.total_duration_ms,
            _money_select(s.total_cost_usd, pg),
            _ts_select(s.inserted_at, pg),
            _ts_select(s.updated_at, pg),
        ).order_by(s.inserted_at)
        stmt = _window(stmt, s.inserted_at, since, until)
        if user is not None:
            stmt = stmt.where(s.user_id == v.id_of(user, "user"))
        if tags:
            stmt = stmt.where(s.id.in_(_sessions_tagged(db, tags)))
        return _build(db, stmt, kinds)


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
    tokens_in, tokens_out."""
    allowed = {"provider", "model", "session_id", "notebook_cell", None}
    if by not in allowed:
        raise InvalidInputError(
            f"{by!r} is not one of: provider, model, session_id, notebook_cell, None", field="by"
        )
    pd = _pd()
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
        if user is not None:
            stmt = stmt.where(c.user_id == v.id_of(user, "user"))
        rows = db.execute(stmt).all()
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
