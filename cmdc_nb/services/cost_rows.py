"""A cost's rows before they are written: its record, and what its daily summary and roll-up add.

`costs` writes them with statements; on PostgreSQL a stored agent round hands them to the schema's
`cmdc_record_call` instead (`agents.round_functions`), so both paths build them here.
"""

from __future__ import annotations

import datetime as dt
import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from cmdc_nb.services.pricing import Price
from cmdc_nb.store.values import utcnow

__all__ = ["CostRows", "cost_rows"]


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
