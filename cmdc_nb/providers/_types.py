"""Plain value types shared by the provider layer and the kernel: no litellm, no I/O."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Literal

__all__ = ["Completion", "ProviderRequest", "RetryPolicy", "StreamPart", "TokenUsage", "ToolCall"]


@dataclass(frozen=True, slots=True)
class TokenUsage:
    """Tokens of one call (or a sum of calls). `input` excludes cached tokens, which are counted apart."""

    input: int = 0
    output: int = 0
    cache_read: int = 0
    cache_write: int = 0

    @property
    def total(self) -> int:
        return self.input + self.output + self.cache_read + self.cache_write

    def __add__(self, other: TokenUsage) -> TokenUsage:
        return TokenUsage(
            self.input + other.input,
            self.output + other.output,
            self.cache_read + other.cache_read,
            self.cache_write + other.cache_write,
        )

    def as_dict(self) -> dict[str, int]:
        return {
            "input": self.input,
            "output": self.output,
            "cache_read": self.cache_read,
            "cache_write": self.cache_write,
            "total": self.total,
        }

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any]) -> TokenUsage:
        return cls(
            int(raw.get("input", 0)),
            int(raw.get("output", 0)),
            int(raw.get("cache_read", 0)),
            int(raw.get("cache_write", 0)),
        )


@dataclass(frozen=True, slots=True)
class ToolCall:
    """One tool call the model asked for. `arguments` is the parsed JSON object (or `{}` with
    `arguments_error` set when the model sent something that is not a JSON object)."""

    id: str
    name: str
    arguments: Mapping[str, Any]
    arguments_error: str | None = None

    def to_message(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": json.dumps(dict(self.arguments), sort_keys=True)},
        }

    @classmethod
    def parse(cls, id: str, name: str, raw_arguments: str | Mapping[str, Any] | None) -> ToolCall:
        if isinstance(raw_arguments, Mapping):
            return cls(id, name, dict(raw_arguments))
        text = (raw_arguments or "").strip() or "{}"
        try:
            value = json.loads(text)
        except ValueError as exc:
            return cls(id, name, {}, f"arguments are not valid JSON: {exc}")
        if not isinstance(value, dict):
            return cls(id, name, {}, "arguments must be a JSON object")
        return cls(id, name, value)


@dataclass(frozen=True, slots=True)
class StreamPart:
    """One piece of a streamed response, as the kernel turns it into events."""

    kind: Literal["text", "thinking", "tool_call"]
    text: str = ""
    tool_index: int = 0
    tool_call_id: str | None = None
    tool_name: str | None = None


@dataclass(slots=True)
class Completion:
    """A finished response: text, tool calls, why it stopped, usage and (when known) exact cost."""

    model: str
    text: str = ""
    thinking: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish_reason: str = "stop"
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_usd: Decimal | None = None  # set by replay (the recorded cost); otherwise priced by the caller
    attempts: int = 1
    first_token_s: float | None = None

    def message(self) -> dict[str, Any]:
        """The assistant message to append to the conversation (OpenAI / litellm shape)."""
        msg: dict[str, Any] = {"role": "assistant", "content": self.text or None}
        if self.tool_calls:
            msg["tool_calls"] = [c.to_message() for c in self.tool_calls]
        return msg


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """The one retry layer: `retries` more attempts after the first, exponential backoff from
    `backoff_s` capped at `max_backoff_s`, a provider's Retry-After honoured up to `max_retry_after_s`."""

    retries: int = 3
    backoff_s: float = 0.5
    max_backoff_s: float = 20.0
    max_retry_after_s: float = 60.0

    def delay(self, attempt: int, retry_after: float | None) -> float:
        if retry_after is not None and retry_after >= 0:
            return min(retry_after, self.max_retry_after_s)
        return float(min(self.backoff_s * (2 ** (attempt - 1)), self.max_backoff_s))


@dataclass(frozen=True, slots=True)
class ProviderRequest:
    """What the kernel asks of a model. `extra` goes to litellm as keyword arguments (api_base, …)."""

    model: str
    messages: Sequence[Mapping[str, Any]]
    tools: Sequence[Mapping[str, Any]] = ()
    max_tokens: int | None = None
    temperature: float | None = None
    extra: Mapping[str, Any] = field(default_factory=dict)
    timeout_s: float | None = None
