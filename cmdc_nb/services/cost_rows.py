"""A cost's rows before they are written: its record, and what its daily summary and roll-up add.

`costs` writes them with statements; on PostgreSQL a stored agent round hands them to the schema's
`cmdc_record_call` instead (`agents.round_functions`), so both paths build them here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Hashable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cmdc_nb.services.pricing import Price
from cmdc_nb.store.values import utcnow

__all__ = ["CostRows", "cost_rows", "holds", "maps_need_nothing", "remember_holds", "summary_seen"]


@dataclass(frozen=True)
class CostRows:
    """One cost's three rows: its record, and the values upserted into its daily summary and roll-up
    (added to what they hold). A server-side function may write them itself (`cmdc_record_call`)."""

    record: dict[str, Any]
    summary: dict[str, Any]
    rollup: dict[str, Any]


def cost_rows(
    price: Price | None, *, at: dt.datetime, cell: str | None, cost_usd: Decimal | None, **fields: Any
) -> CostRows:
    """A cost's rows, the price already looked up (the cost is what `price` gives), not written."""
    r = {
        "id": uuid.uuid4(),
        "incurred_at": at,
        "day": at.date(),
        "notebook_cell": cell,
        "cost_usd": cost_usd,
        "price_per_million_in_usd": price.input_per_million_usd if price else None,
        "price_per_million_out_usd": price.output_per_million_usd if price else None,
        "metadata": {"price_source": price.source} if price is not None else {},
        **fields,
    }
    cost = cost_usd or Decimal(0)
    unpriced = 0 if cost_usd is not None else 1
    tokens_in = r["tokens_in"] + r["cache_tokens_read"] + r["cache_tokens_write"]
    now = utcnow()
    summary = {
        "id": uuid.uuid4(), "user_id": r["user_id"], "day": r["day"], "total_cost_usd": cost,
        "total_tokens_in": tokens_in, "total_tokens_out": r["tokens_out"], "total_requests": 1,
        "unpriced_requests": unpriced, "cost_by_provider": {}, "cost_by_model": {}, "cost_by_session": {},
        "inserted_at": now, "updated_at": now,
    }  # fmt: skip
    rollup = {
        "user_id": r["user_id"], "day": r["day"], "provider": r["provider"], "model": r["model"],
        "cost_usd": cost, "requests": 1, "unpriced_requests": unpriced, "tokens_in": tokens_in,
        "tokens_out": r["tokens_out"],
    }  # fmt: skip
    return CostRows(r, summary, rollup)


# What this process knows of the daily summaries' rows, so a free call (an offline model) skips the
# read-add-write of their maps (`costs._add_to_maps`), and PostgreSQL's one-statement round can tell it
# needs none (`maps_need_nothing`). A row's keys only go when the row does (regenerate_daily_summary
# rebuilds them from every priced record, the $0 ones too), and a new row has a new id. Each entry
# names its database (`db`: the engine's URL), so a copy of a database (`CREATE DATABASE … TEMPLATE`,
# a restored backup: the same row ids) is never taken for the other.
_REMEMBERED = 10_000
# (db, summary row, provider, model, session) whose amounts a summary row is known to hold
_HOLDS_KEYS: set[tuple[Any, ...]] = set()
# (db, user, day) → the id of the daily summary row last seen for them
_SUMMARY_OF: dict[tuple[Any, ...], uuid.UUID] = {}


def holds(db: Hashable, keys: tuple[Any, ...]) -> bool:
    """Whether the summary row is known to hold amounts for (row id, provider, model, session)."""
    return (db, *keys) in _HOLDS_KEYS


def remember_holds(db: Hashable, keys: tuple[Any, ...]) -> None:
    """The row was seen holding these keys, committed (not just by the transaction that saw it)."""
    if len(_HOLDS_KEYS) > _REMEMBERED:
        _HOLDS_KEYS.clear()
    _HOLDS_KEYS.add((db, *keys))


def summary_seen(db: Hashable, user_id: uuid.UUID, day: dt.date, summary_id: uuid.UUID) -> None:
    """The user's summary row of that day has this id (so far as this process saw)."""
    if len(_SUMMARY_OF) > _REMEMBERED:
        _SUMMARY_OF.clear()
    _SUMMARY_OF[(db, user_id, day)] = summary_id


def maps_need_nothing(db: Hashable, rows: CostRows) -> tuple[bool, uuid.UUID | None]:
    """Whether writing this cost leaves the daily summary's maps as they are, so a write that cannot
    read them back (PostgreSQL's one-statement round) may store it: an unpriced cost, or a $0 one
    whose summary row is known to hold its keys. With the id of the row that holds them (None: any
    row); the write must find that very row, or take the transaction's path (a row made anew has
    another id, and holds nothing yet)."""
    r = rows.record
    if r["cost_usd"] is None:
        return True, None
    if r["cost_usd"]:
        return False, None
    summary_id = _SUMMARY_OF.get((db, r["user_id"], r["day"]))
    if summary_id is None or (db, summary_id, r["provider"], r["model"], r["session_id"]) not in _HOLDS_KEYS:
        return False, None
    return True, summary_id
