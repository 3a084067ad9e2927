"""Cuts of a frame a team lead asks for: per day, per model, per session, the top N, and daily costs read
from the rollups when a whole day is asked for."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.models import CostRecord, CostRollup

if TYPE_CHECKING:
    import pandas as pd

from cmdc_nb.services.frames.columns import (
    _acting_user,
    _id_category,
    _id_select,
    _money_array,
    _money_select,
    _pd,
    _window,
)

__all__ = ["by_day", "by_model", "by_session", "daily_costs", "top_n"]


def _check_column(frame: pd.DataFrame, column: str, field: str) -> None:
    if column not in frame.columns:
        raise InvalidInputError(f"no column {column!r}; columns are: {', '.join(frame.columns)}", field=field)


@checked
def by_day(frame: pd.DataFrame, *, by: str | None = None, value: str = "cost_usd") -> pd.DataFrame:
    """`value` summed per day (and per `by`, e.g. "model"), as a tidy frame sorted by day."""
    v.dataframe(frame, "frame")
    times = [c for c in frame.columns if c == "day" or str(frame[c].dtype).startswith("datetime64")]
    if not times:
        raise InvalidInputError("the frame has no day or datetime column to group by", field="frame")
    time_col = "day" if "day" in times else times[0]
    _check_column(frame, value, "value")
    keys = [frame[time_col].dt.floor("D").rename("day") if time_col != "day" else frame["day"]]
    if by is not None:
        _check_column(frame, by, "by")
        keys.append(frame[by])
    out = frame.groupby(keys, observed=True, sort=True)[value].sum().reset_index()
    return out


def _total_by(frame: pd.DataFrame, column: str, value: str) -> pd.DataFrame:
    v.dataframe(frame, "frame")
    _check_column(frame, column, "by")
    _check_column(frame, value, "value")
    out = (
        frame.groupby(column, observed=True)[value]
        .agg(["sum", "count"])
        .rename(columns={"sum": value, "count": "rows"})
    )
    return out.sort_values(value, ascending=False).reset_index()


@checked
def by_model(frame: pd.DataFrame, *, value: str = "cost_usd") -> pd.DataFrame:
    return _total_by(frame, "model", value)


@checked
def by_session(frame: pd.DataFrame, *, value: str = "cost_usd") -> pd.DataFrame:
    return _total_by(frame, "session_id", value)


@checked
def top_n(frame: pd.DataFrame, column: str, *, n: int = 10, value: str = "cost_usd") -> pd.DataFrame:
    """The `n` values of `column` with the largest total `value`."""
    v.dataframe(frame, "frame")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise InvalidInputError("must be a positive integer", field="n")
    return _total_by(frame, column, value).head(n)


@checked
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
