"""Cuts of a frame a team lead asks for: per day, per week, per model, per session, the top N, the cost
per 1,000 tokens and per call, and daily costs read from the rollups when a whole day is asked for."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import ROUND_HALF_EVEN, Decimal
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
    PICOS,
    _acting_user,
    _id_category,
    _id_select,
    _money_array,
    _money_select,
    _pd,
    _window,
)

__all__ = ["by_day", "by_model", "by_session", "by_week", "daily_costs", "top_n", "unit_costs"]


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


@checked
def by_week(frame: pd.DataFrame, *, by: str | None = None, value: str = "cost_usd") -> pd.DataFrame:
    """`value` summed per week (and per `by`), sorted by week: columns week (its Monday; weeks run
    Monday to Sunday, UTC), [by], value, and change — the fraction by which it grew over the same
    group's week before (float; NaN for a first week or after a week without any). A week the frame
    holds only part of (the current one) is summed as far as it goes: cut the frame at a Monday to
    compare whole weeks.

    >>> by_week(costs_frame(user=me, since=monday, until=this_monday))   # doctest: +SKIP
    """
    pd = _pd()
    daily = by_day(frame, by=by, value=value)
    week = daily["day"] - pd.to_timedelta(daily["day"].dt.day_of_week, unit="D")
    week = week.astype(daily["day"].dtype).rename("week")
    keys = [week] + ([daily[by]] if by is not None else [])
    out = daily.groupby(keys, observed=True, sort=True)[value].sum().reset_index()
    amounts = out[value].astype("float64")
    groups = out[by] if by is not None else pd.Series(0, index=out.index)
    before = amounts.groupby(groups, observed=True).shift()
    follows = out["week"].groupby(groups, observed=True).shift() == out["week"] - pd.Timedelta(days=7)
    out["change"] = (amounts / before - 1).where(follows)
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
def unit_costs(frame: pd.DataFrame, *, by: str = "model") -> pd.DataFrame:
    """What a unit of work costs per `by` (a column of a `costs_frame`), costliest per call first:
    columns [by], calls, tokens (in, out and cached), cost_usd, usd_per_1k_tokens, usd_per_call — the
    money exact (decimal128; <NA> where nothing was priced). A cost record is one completed call: an
    attempt that failed (a rate limit, a timeout) leaves none, so `usd_per_call` is per successful
    call. Unpriced calls count in `calls` and `tokens`, not in the money.

    >>> unit_costs(costs_frame(user=me), by="model")   # doctest: +SKIP
    """
    v.dataframe(frame, "frame")
    for column in (by, "tokens_in", "tokens_out", "cost_usd"):
        _check_column(frame, column, "by" if column == by else "frame")
    pd = _pd()
    tokens = frame["tokens_in"] + frame["tokens_out"]
    for cached in ("cache_tokens_read", "cache_tokens_write"):
        if cached in frame.columns:
            tokens = tokens + frame[cached]
    grouped = frame.assign(_tokens=tokens).groupby(by, observed=True, sort=True)
    sums = grouped.agg(calls=("cost_usd", "size"), tokens=("_tokens", "sum"), cost_usd=("cost_usd", "sum"))
    priced = grouped["cost_usd"].count()
    rows = []
    for key, calls, n_tokens, cost in sums.itertuples():
        money = Decimal(str(cost)) if priced[key] else None
        rows.append(
            {
                by: key,
                "calls": int(calls),
                "tokens": int(n_tokens),
                "cost_usd": money,
                "usd_per_1k_tokens": money * 1000 / int(n_tokens) if money is not None and n_tokens else None,
                "usd_per_call": money / int(calls) if money is not None else None,
            }
        )
    out = pd.DataFrame(rows, columns=[by, "calls", "tokens", "cost_usd", "usd_per_1k_tokens", "usd_per_call"])
    for column in ("cost_usd", "usd_per_1k_tokens", "usd_per_call"):
        out[column] = _money_array([None if x is None else _picos(x) for x in out[column]])
    for column in ("calls", "tokens"):
        out[column] = out[column].astype("int64")
    if by in frame.columns and isinstance(frame[by].dtype, pd.CategoricalDtype):
        out[by] = out[by].astype(frame[by].dtype)
    return out.sort_values("usd_per_call", ascending=False, na_position="last", ignore_index=True)


def _picos(amount: Decimal) -> int:
    """USD as integer picodollars, rounded half to even (the frames' exact money unit)."""
    return int((amount * PICOS).to_integral_value(rounding=ROUND_HALF_EVEN))


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
