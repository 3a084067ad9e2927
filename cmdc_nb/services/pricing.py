"""What a model costs: your own price table first, then litellm's cost map, else "unpriced".

Prices are exact `Decimal`s in USD per million tokens. This module is the `model_prices` table and the
lookup order; the facts that need no database (litellm's bundled prices and context windows, token
counts) live in `cmdc_nb.providers.catalog` and are re-exported here.

>>> set_model_price("my-finetune", input_per_million_usd="0.30", output_per_million_usd="1.20")  # doctest: +SKIP
>>> get_price("openai/gpt-4o-mini").cost(tokens_in=1000, tokens_out=100)                         # doctest: +SKIP
Decimal('0.00021')
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import lookups
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.providers import catalog as _catalog
from cmdc_nb.providers.catalog import (
    DEFAULT_MAX_OUTPUT,
    FREE_PROVIDERS,
    CostEstimate,
    Price,
    candidates,
    litellm_providers,
)
from cmdc_nb.store.models import ModelPrice
from cmdc_nb.store.values import to_money

# The catalogue's look-ups, held to their hints here like every other public function of this module.
context_window = checked(_catalog.context_window)
count_tokens = checked(_catalog.count_tokens)
encoding = checked(_catalog.encoding)
litellm_price = checked(_catalog.litellm_price)

__all__ = [
    "FREE_PROVIDERS",
    "CostEstimate",
    "Price",
    "context_window",
    "count_tokens",
    "delete_model_price",
    "encoding",
    "estimate_cost",
    "get_price",
    "list_model_prices",
    "litellm_price",
    "litellm_providers",
    "set_model_price",
]


def _provider_of(model: str, provider: str | None) -> str | None:
    return provider or (model.split("/", 1)[0] if "/" in model else None)


def price_in(db: Any, model: str, provider: str | None = None) -> Price | None:
    """`get_price` inside an open session or transaction. For other services."""
    for key in candidates(model, provider):
        row = db.scalar(sa.select(ModelPrice).where(ModelPrice.model == key))
        if row is not None:
            return Price(
                model=row.model,
                input_per_million_usd=row.input_per_million_usd,
                output_per_million_usd=row.output_per_million_usd,
                cache_read_per_million_usd=row.cache_read_per_million_usd,
                cache_write_per_million_usd=row.cache_write_per_million_usd,
                source="override",
            )
    if _provider_of(model, provider) in FREE_PROVIDERS:
        return Price(
            model=model, input_per_million_usd=Decimal(0), output_per_million_usd=Decimal(0), source="free"
        )
    return litellm_price(model, provider)


def cached_price_in(ws: Workspace, db: Any, model: str, provider: str | None = None) -> Price | None:
    """`price_in`, remembered per workspace until a price changes (see `_plumbing.lookups`). For
    other services: a stored agent call prices itself with this, without a SELECT once it is known."""
    return lookups.lookup(ws, ("price", model, provider), lambda: price_in(db, model, provider))


@checked
def get_price(model: str, *, provider: str | None = None, ws: Workspace | None = None) -> Price | None:
    """The price of `model`: your override, else free for offline models, else litellm's, else None."""
    model = v.text(model, "model", max_len=200)
    w = get_workspace(ws)
    hit = lookups.cached(w, ("price", model, provider))
    if hit is not lookups.MISS:
        return hit  # type: ignore[no-any-return]
    with w.read() as db:
        return cached_price_in(w, db, model, provider)


def _price_field(value: Any, field: str, *, required: bool) -> Decimal | None:
    if value is None:
        if required:
            raise InvalidInputError("a price is required", field=field)
        return None
    amount = to_money(value, field=field)
    if amount < 0:
        raise InvalidInputError("must not be negative", field=field)
    return amount


@checked
def set_model_price(
    model: str,
    *,
    input_per_million_usd: Decimal | str | float | int,
    output_per_million_usd: Decimal | str | float | int,
    cache_read_per_million_usd: Decimal | str | float | int | None = None,
    cache_write_per_million_usd: Decimal | str | float | int | None = None,
    provider: str | None = None,
    note: str | None = None,
    ws: Workspace | None = None,
) -> ModelPrice:
    """Set (or replace) your price for `model`. It is used for every cost recorded from now on."""
    model = v.text(model, "model", max_len=200)
    values = {
        "input_per_million_usd": _price_field(input_per_million_usd, "input_per_million_usd", required=True),
        "output_per_million_usd": _price_field(
            output_per_million_usd, "output_per_million_usd", required=True
        ),
        "cache_read_per_million_usd": _price_field(
            cache_read_per_million_usd, "cache_read_per_million_usd", required=False
        ),
        "cache_write_per_million_usd": _price_field(
            cache_write_per_million_usd, "cache_write_per_million_usd", required=False
        ),
        "provider": provider,
        "note": note,
    }
    with lookups.changing(), get_workspace(ws).transaction() as tx:
        row = tx.db.scalar(sa.select(ModelPrice).where(ModelPrice.model == model).with_for_update())
        if row is None:
            row = ModelPrice(model=model, **values)
            tx.db.add(row)
        else:
            for key, value in values.items():
                setattr(row, key, value)
        tx.db.flush()
        tx.publish(
            topics.workspace(),
            "model_price_set",
            {
                "model": model,
                "input_per_million_usd": str(values["input_per_million_usd"]),
                "output_per_million_usd": str(values["output_per_million_usd"]),
            },
        )
    return row


@checked
def delete_model_price(model: str, *, ws: Workspace | None = None) -> None:
    """Forget your price for `model` (litellm's applies again)."""
    with lookups.changing(), get_workspace(ws).transaction() as tx:
        row = tx.db.scalar(sa.select(ModelPrice).where(ModelPrice.model == model))
        if row is None:
            raise NotFoundError("model_price", model)
        tx.db.delete(row)
        tx.publish(topics.workspace(), "model_price_deleted", {"model": model})


@checked
def list_model_prices(*, ws: Workspace | None = None) -> list[ModelPrice]:
    with get_workspace(ws).read() as db:
        return list(db.scalars(sa.select(ModelPrice).order_by(ModelPrice.model)))


@checked
def estimate_cost(
    model: str,
    messages: str | Sequence[Mapping[str, Any]],
    *,
    max_tokens: int | None = None,
    provider: str | None = None,
    system_prompt: str | None = None,
    ws: Workspace | None = None,
) -> CostEstimate:
    """The most a call can cost: its prompt (counted) plus `max_tokens` of output (or the model's
    maximum output, or 4096)."""
    with get_workspace(ws).read() as db:
        return estimate_in(
            db, model, messages, max_tokens=max_tokens, provider=provider, system_prompt=system_prompt
        )


def estimate_in(
    db: Any,
    model: str,
    messages: str | Sequence[Mapping[str, Any]],
    *,
    max_tokens: int | None = None,
    provider: str | None = None,
    system_prompt: str | None = None,
) -> CostEstimate:
    """`estimate_cost` inside an open session. For other services."""
    price = price_in(db, model, provider)
    prompt = count_tokens(messages, model=model) + (count_tokens(system_prompt) if system_prompt else 0)
    out = max_tokens or (price.max_output_tokens if price else None) or DEFAULT_MAX_OUTPUT
    cost = price.cost(tokens_in=prompt, tokens_out=out) if price is not None else None
    return CostEstimate(model=model, prompt_tokens=prompt, max_output_tokens=out, cost_usd=cost)
