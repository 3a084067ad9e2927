"""What a model costs: your own price table first, then litellm's cost map, else "unpriced".

Prices are exact `Decimal`s in USD per million tokens. litellm's map is read from the JSON file it
ships (no network, and without importing litellm itself, which takes a second); its per-token floats
are read through their shortest repr, so `1.5e-07` becomes exactly `0.15` per million.

Token counts for estimates come from tiktoken with the encodings litellm bundles, so they work offline.

>>> set_model_price("my-finetune", input_per_million_usd="0.30", output_per_million_usd="1.20")  # doctest: +SKIP
>>> get_price("openai/gpt-4o-mini").cost(tokens_in=1000, tokens_out=100)                         # doctest: +SKIP
Decimal('0.00021')
"""

from __future__ import annotations

import importlib.util
import json
import math
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa

from cmdc_nb import _validate as v
from cmdc_nb.errors import InvalidInputError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.store._types import to_money
from cmdc_nb.store.models import ModelPrice
from cmdc_nb.workspace import Workspace, get_workspace

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

MILLION = Decimal(1_000_000)
# The offline models (scripted, record/replay) cost nothing, and say so: $0 is a price here, not a guess.
FREE_PROVIDERS = frozenset({"scripted", "replay", "offline"})
DEFAULT_MAX_OUTPUT = 4096


@dataclass(frozen=True)
class Price:
    """USD per million tokens. Cache reads and writes fall back to the input price when not set."""

    model: str
    input_per_million_usd: Decimal
    output_per_million_usd: Decimal
    cache_read_per_million_usd: Decimal | None = None
    cache_write_per_million_usd: Decimal | None = None
    source: Literal["override", "litellm", "free"] = "litellm"
    max_output_tokens: int | None = None

    def cost(
        self, *, tokens_in: int = 0, tokens_out: int = 0, cache_read: int = 0, cache_write: int = 0
    ) -> Decimal:
        """The exact cost of a call. `tokens_in` excludes the cached tokens, which are billed apart."""
        read = self.cache_read_per_million_usd
        write = self.cache_write_per_million_usd
        total = (
            tokens_in * self.input_per_million_usd
            + tokens_out * self.output_per_million_usd
            + cache_read * (read if read is not None else self.input_per_million_usd)
            + cache_write * (write if write is not None else self.input_per_million_usd)
        )
        return to_money(total / MILLION)


@dataclass(frozen=True)
class CostEstimate:
    """A pre-call estimate: prompt tokens counted, output assumed to use all of `max_tokens`."""

    model: str
    prompt_tokens: int
    max_output_tokens: int
    cost_usd: Decimal | None  # None: the model has no price

    @property
    def priced(self) -> bool:
        return self.cost_usd is not None


def _per_million(value: Any) -> Decimal | None:
    if value is None or isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return to_money(value) * MILLION


@lru_cache(maxsize=1)
def _litellm_map() -> dict[str, Any]:
    spec = importlib.util.find_spec("litellm")
    if spec is None or not spec.submodule_search_locations:
        return {}
    path = Path(next(iter(spec.submodule_search_locations))) / "model_prices_and_context_window_backup.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _candidates(model: str, provider: str | None) -> list[str]:
    out = [model]
    if "/" in model:
        out.append(model.split("/", 1)[1])
    if provider:
        out.append(f"{provider}/{model}")
    return out


def litellm_price(model: str, provider: str | None = None) -> Price | None:
    """The price in litellm's bundled cost map, or None if the model is not in it."""
    table = _litellm_map()
    for key in _candidates(model, provider):
        entry = table.get(key)
        if isinstance(entry, Mapping) and entry.get("input_cost_per_token") is not None:
            return Price(
                model=key,
                input_per_million_usd=_per_million(entry.get("input_cost_per_token")) or Decimal(0),
                output_per_million_usd=_per_million(entry.get("output_cost_per_token")) or Decimal(0),
                cache_read_per_million_usd=_per_million(entry.get("cache_read_input_token_cost")),
                cache_write_per_million_usd=_per_million(entry.get("cache_creation_input_token_cost")),
                source="litellm",
                max_output_tokens=entry.get("max_output_tokens") or entry.get("max_tokens"),
            )
    return None


def litellm_providers() -> frozenset[str]:
    """The providers litellm's bundled cost map names (read as JSON, no import of litellm)."""
    return frozenset(
        str(e["litellm_provider"])
        for e in _litellm_map().values()
        if isinstance(e, Mapping) and e.get("litellm_provider")
    )


def context_window(model: str) -> int | None:
    """The model's input context window in tokens, from litellm's bundled map, or None if unknown."""
    table = _litellm_map()
    for key in _candidates(model, None):
        entry = table.get(key)
        if isinstance(entry, Mapping):
            window = entry.get("max_input_tokens") or entry.get("max_tokens")
            if isinstance(window, int):
                return window
    return None


def _provider_of(model: str, provider: str | None) -> str | None:
    return provider or (model.split("/", 1)[0] if "/" in model else None)


def price_in(db: Any, model: str, provider: str | None = None) -> Price | None:
    """`get_price` inside an open session or transaction. For other services."""
    for key in _candidates(model, provider):
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


def get_price(model: str, *, provider: str | None = None, ws: Workspace | None = None) -> Price | None:
    """The price of `model`: your override, else free for offline models, else litellm's, else None."""
    model = v.text(model, "model", max_len=200)
    with get_workspace(ws).read() as db:
        return price_in(db, model, provider)


def _price_field(value: Any, field: str, *, required: bool) -> Decimal | None:
    if value is None:
        if required:
            raise InvalidInputError("a price is required", field=field)
        return None
    amount = to_money(value, field=field)
    if amount < 0:
        raise InvalidInputError("must not be negative", field=field)
    return amount


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
    with get_workspace(ws).transaction() as tx:
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


def delete_model_price(model: str, *, ws: Workspace | None = None) -> None:
    """Forget your price for `model` (litellm's applies again)."""
    with get_workspace(ws).transaction() as tx:
        row = tx.db.scalar(sa.select(ModelPrice).where(ModelPrice.model == model))
        if row is None:
            raise NotFoundError("model_price", model)
        tx.db.delete(row)
        tx.publish(topics.workspace(), "model_price_deleted", {"model": model})


def list_model_prices(*, ws: Workspace | None = None) -> list[ModelPrice]:
    with get_workspace(ws).read() as db:
        return list(db.scalars(sa.select(ModelPrice).order_by(ModelPrice.model)))


def encoding(name: str = "cl100k_base") -> Any:
    """tiktoken's encoding `name`, read offline from the files litellm ships; None if unavailable."""
    return _encoding(name)


@lru_cache(maxsize=4)
def _encoding(name: str) -> Any:
    # litellm ships tiktoken's files; pointing tiktoken there keeps counting offline.
    spec = importlib.util.find_spec("litellm")
    if "TIKTOKEN_CACHE_DIR" not in os.environ and spec and spec.submodule_search_locations:
        bundled = Path(next(iter(spec.submodule_search_locations))) / "litellm_core_utils" / "tokenizers"
        os.environ["TIKTOKEN_CACHE_DIR"] = str(bundled)
    try:
        import tiktoken

        return tiktoken.get_encoding(name)
    except Exception:  # no file, no network: fall back to a character estimate
        return None


def _text_of(content: Any) -> str:
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, Mapping):
        return " ".join(
            _text_of(x) for k, x in content.items() if k in ("text", "content", "input", "arguments")
        )
    if isinstance(content, Sequence):
        return " ".join(_text_of(x) for x in content)
    return str(content)


def count_tokens(messages: str | Sequence[Mapping[str, Any]], *, model: str | None = None) -> int:
    """Tokens in a text or a list of chat messages (+4 per message for the chat framing).

    Uses o200k_base for the gpt-4o / o-series family and cl100k_base otherwise — close enough for a
    budget check on any provider; when no tokenizer is available, one token per 4 characters.
    """
    family = (model or "").split("/")[-1]
    name = (
        "o200k_base" if family.startswith(("gpt-4o", "gpt-4.1", "gpt-5", "o1", "o3", "o4")) else "cl100k_base"
    )
    enc = _encoding(name)
    items: list[str] = [messages] if isinstance(messages, str) else [_text_of(m) for m in messages]
    framing = 0 if isinstance(messages, str) else 4 * len(items) + 2
    if enc is None:
        return framing + sum(math.ceil(len(t) / 4) for t in items)
    return framing + sum(len(enc.encode(t, disallowed_special=())) for t in items)


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
