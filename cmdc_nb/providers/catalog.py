"""Facts about models that need no database: prices and context windows from litellm's bundled
cost map, and token counts.

litellm's map is read from the JSON file it ships (no network, and without importing litellm itself,
which takes seconds); its per-token floats are read through their shortest repr, so `1.5e-07` becomes
exactly `0.15` per million. Token counts come from tiktoken with the encodings litellm bundles, so they
work offline. Every layer may import this module: it loads neither SQLAlchemy nor litellm.
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

from cmdc_nb.store.values import to_money

__all__ = [
    "DEFAULT_MAX_OUTPUT",
    "FREE_PROVIDERS",
    "CostEstimate",
    "Price",
    "candidates",
    "context_window",
    "count_tokens",
    "encoding",
    "input_kinds",
    "litellm_price",
    "litellm_providers",
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


def candidates(model: str, provider: str | None) -> list[str]:
    out = [model]
    if "/" in model:
        out.append(model.split("/", 1)[1])
    if provider:
        out.append(f"{provider}/{model}")
    return out


def litellm_price(model: str, provider: str | None = None) -> Price | None:
    """The price in litellm's bundled cost map, or None if the model is not in it."""
    table = _litellm_map()
    for key in candidates(model, provider):
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
    for key in candidates(model, None):
        entry = table.get(key)
        if isinstance(entry, Mapping):
            window = entry.get("max_input_tokens") or entry.get("max_tokens")
            if isinstance(window, int):
                return window
    return None


def input_kinds(model: str) -> frozenset[str] | None:
    """What the model takes besides text, as litellm's bundled map says (`image` when it sees images,
    `pdf` when it reads PDFs; `text` always), or None when the map does not know the model."""
    table = _litellm_map()
    for key in candidates(model, None):
        entry = table.get(key)
        if isinstance(entry, Mapping):
            taken = {"text"}
            if entry.get("supports_vision"):
                taken.add("image")
            if entry.get("supports_pdf_input"):
                taken.add("pdf")
            return frozenset(taken)
    return None


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
