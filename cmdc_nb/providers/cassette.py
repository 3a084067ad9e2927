"""Record and replay: every model call of a run written to a cassette file, played back offline.

With a real key, `Cassette("chat.json", mode="auto")` records each call (request fingerprint, streamed
text, thinking, tool calls, errors, usage and exact cost); without one it replays them — in-process
(`serve`), or through litellm as the `replay` provider with `CMDC_NB_OFFLINE_VIA_LITELLM=1` — so the
kernel sees the same stream, the same retries, the same usage and the same cost as the recorded run,
with no network.

>>> from cmdc_nb.providers.cassette import Cassette
>>> tape = Cassette("notebooks/data/review.json")   # doctest: +SKIP
>>> agent = Agent(model="openai/gpt-4o-mini", cassette=tape)   # doctest: +SKIP

Replay checks that each request matches the recorded one (a fingerprint of its messages and tools);
with `strict=False` it serves the recorded answers whatever was asked.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
import uuid
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

from cmdc_nb.errors import InvalidInputError, ProviderError
from cmdc_nb.providers import _offline
from cmdc_nb.providers._types import Completion, TokenUsage

__all__ = ["FORMAT", "Cassette", "CassetteEntry", "fingerprint", "handler", "serve"]

FORMAT = "cmdc_nb.cassette/1"
Mode = Literal["auto", "record", "replay"]
_OFFLINE = ("scripted/", "replay/")


def fingerprint(messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]) -> str:
    """SHA-256 of a request's messages and tool names, canonical JSON."""
    body = json.dumps(
        {"messages": list(messages), "tools": sorted(_tool_name(t) for t in tools)},
        sort_keys=True,
        default=str,
        ensure_ascii=False,
    )
    return hashlib.sha256(body.encode()).hexdigest()


def _tool_name(tool: Mapping[str, Any]) -> str:
    fn = tool.get("function")
    return str(fn.get("name") if isinstance(fn, Mapping) else tool.get("name"))


@dataclass(frozen=True)
class CassetteEntry:
    model: str
    fingerprint: str
    text: str = ""
    thinking: str = ""
    tool_calls: tuple[dict[str, Any], ...] = ()
    finish_reason: str = "stop"
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost_usd: Decimal | None = None
    error: dict[str, Any] | None = None  # {"kind", "message", "retry_after"}
    # The stream as it arrived, so a replay emits the same deltas: ("text" | "thinking", piece).
    chunks: tuple[tuple[str, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "fingerprint": self.fingerprint,
            "text": self.text,
            "thinking": self.thinking,
            "tool_calls": list(self.tool_calls),
            "finish_reason": self.finish_reason,
            "usage": self.usage.as_dict(),
            "cost_usd": str(self.cost_usd) if self.cost_usd is not None else None,
            "error": self.error,
            "chunks": [list(c) for c in self.chunks],
        }

    @classmethod
    def from_json(cls, raw: Mapping[str, Any]) -> CassetteEntry:
        try:
            cost = raw.get("cost_usd")
            return cls(
                model=str(raw["model"]),
                fingerprint=str(raw["fingerprint"]),
                text=str(raw.get("text") or ""),
                thinking=str(raw.get("thinking") or ""),
                tool_calls=tuple(dict(c) for c in raw.get("tool_calls") or ()),
                finish_reason=str(raw.get("finish_reason") or "stop"),
                usage=TokenUsage.from_dict(raw.get("usage") or {}),
                cost_usd=Decimal(str(cost)) if cost is not None else None,
                error=dict(raw["error"]) if raw.get("error") else None,
                chunks=tuple((str(k), str(t)) for k, t in raw.get("chunks") or ()),
            )
        except (KeyError, TypeError, ValueError, ArithmeticError) as exc:
            raise InvalidInputError(f"malformed cassette entry: {exc}", field="cassette") from None

    @classmethod
    def of(cls, model: str, fp: str, c: Completion, chunks: Sequence[tuple[str, str]] = ()) -> CassetteEntry:
        return cls(
            model=model,
            fingerprint=fp,
            text=c.text,
            thinking=c.thinking,
            tool_calls=tuple(
                {"id": t.id, "name": t.name, "arguments": dict(t.arguments)} for t in c.tool_calls
            ),
            finish_reason=c.finish_reason,
            usage=c.usage,
            cost_usd=c.cost_usd,
            chunks=tuple(chunks),
        )


class Cassette:
    """A file of recorded model calls. `mode`: "record", "replay", or "auto" (record when the model's
    API key is set, replay otherwise; offline models record when the file does not exist yet)."""

    def __init__(self, path: str | os.PathLike[str], *, mode: Mode = "auto", strict: bool = True) -> None:
        if mode not in ("auto", "record", "replay"):
            raise InvalidInputError(f"{mode!r} is not one of: auto, record, replay", field="mode")
        self.path = Path(path)
        self.mode: Mode = mode
        self.strict = strict
        self.key = uuid.uuid4().hex[:12]
        self._lock = threading.Lock()
        self._recorded: list[CassetteEntry] = []
        self._loaded: list[CassetteEntry] | None = None
        self._cursor = 0
        self._started_recording = False
        _registry[self.key] = self

    def __repr__(self) -> str:
        return f"<Cassette {str(self.path)!r} mode={self.mode} recorded={len(self._recorded)} replayed={self._cursor}>"

    # -- deciding ---------------------------------------------------------------------------------------
    def replays(self, model: str) -> bool:
        """Whether calls to `model` are served from the file (else they are made and recorded)."""
        if self.mode != "auto":
            return self.mode == "replay"
        if model.startswith(_OFFLINE):
            return self.path.exists()
        return not _has_key(model)

    # -- replaying ----------------------------------------------------------------------------------------
    def entries(self) -> list[CassetteEntry]:
        if self._loaded is None:
            try:
                doc = json.loads(self.path.read_text(encoding="utf-8"))
            except FileNotFoundError:
                raise ProviderError(f"no cassette at {self.path}; record one first", kind="script") from None
            except ValueError as exc:
                raise InvalidInputError(f"not a cassette file: {exc}", field="cassette") from None
            if not isinstance(doc, dict) or doc.get("format") != FORMAT:
                raise InvalidInputError(f"not a {FORMAT} file", field="cassette")
            self._loaded = [CassetteEntry.from_json(e) for e in doc.get("entries") or []]
        return self._loaded

    def take(
        self, messages: Sequence[Mapping[str, Any]], tools: Sequence[Mapping[str, Any]]
    ) -> tuple[int, CassetteEntry]:
        """The next recorded entry (checked against the request when strict)."""
        with self._lock:
            entries = self.entries()
            if self._cursor >= len(entries):
                raise ProviderError(
                    f"cassette {self.path.name} has no more recorded calls ({len(entries)} played)",
                    kind="script",
                )
            n, entry = self._cursor, entries[self._cursor]
            fp = fingerprint(messages, tools)
            if self.strict and fp != entry.fingerprint:
                raise ProviderError(
                    f"request {n + 1} differs from the one recorded in {self.path.name} "
                    "(re-record it, or replay with strict=False)",
                    kind="script",
                )
            self._cursor += 1
            return n, entry

    # -- recording ----------------------------------------------------------------------------------------
    def record(self, entry: CassetteEntry) -> None:
        """Append one call and rewrite the file atomically (a crash never leaves half a cassette)."""
        with self._lock:
            self._recorded.append(entry)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex[:6]}.tmp")
            doc = {"format": FORMAT, "entries": [e.to_json() for e in self._recorded]}
            tmp.write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
            os.replace(tmp, self.path)


def _has_key(model: str) -> bool:
    """litellm's `validate_environment(model)["keys_in_environment"]`: for the usual providers read
    from their key variables (set, even empty, counts, as for litellm), so deciding to replay does not
    load litellm; any other provider is asked of litellm."""
    from cmdc_nb.providers.choice import KEY_VARIABLES

    variables = KEY_VARIABLES.get(model.split("/", 1)[0]) if "/" in model else None
    if variables is not None:
        return any(v in os.environ for v in variables)
    from cmdc_nb.providers._litellm import litellm

    try:
        return bool(litellm().validate_environment(model=model).get("keys_in_environment"))
    except Exception:
        return False


_registry: dict[str, Cassette] = {}


def entry_of(model: str) -> CassetteEntry:
    """The entry a `replay/<key>#<n>` model string names."""
    key, _, n = model.removeprefix("replay/").partition("#")
    cassette = _registry.get(key)
    if cassette is None or not n.isdigit():
        raise LookupError(f"unknown replay model {model!r}")
    return cassette.entries()[int(n)]


def replay_chunks(entry: CassetteEntry) -> list[dict[str, Any]]:
    base = {
        "text": "",
        "tool_use": None,
        "is_finished": False,
        "finish_reason": "",
        "usage": None,
        "index": 0,
    }
    out: list[dict[str, Any]] = []
    if entry.chunks:
        for kind, piece in entry.chunks:
            if kind == "thinking":
                out.append({**base, "provider_specific_fields": {"reasoning_content": piece}})
            else:
                out.append({**base, "text": piece})
    else:
        if entry.thinking:
            out.append({**base, "provider_specific_fields": {"reasoning_content": entry.thinking}})
        if entry.text:
            out.append({**base, "text": entry.text})
    for i, c in enumerate(entry.tool_calls):
        fn = {"name": c["name"], "arguments": json.dumps(c["arguments"])}
        out.append({**base, "tool_use": {"id": c["id"], "type": "function", "function": fn, "index": i}})
    u = entry.usage
    prompt = u.input + u.cache_read + u.cache_write
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": u.output,
        "total_tokens": prompt + u.output,
    }
    if u.cache_read or u.cache_write:
        usage["prompt_tokens_details"] = {"cached_tokens": u.cache_read}
        usage["cache_creation_input_tokens"] = u.cache_write
    out.append({**base, "is_finished": True, "finish_reason": entry.finish_reason, "usage": usage})
    return out


async def serve(entry: CassetteEntry, model: str) -> AsyncIterator[dict[str, Any]]:
    """A recorded entry streamed in-process, as the `replay` provider streams it through litellm (a
    recorded failure is raised as the ProviderError litellm's exception would have become)."""
    if entry.error:
        raise _offline.error(
            entry.error["kind"], model, entry.error.get("retry_after"), entry.error.get("message")
        )
    for piece in replay_chunks(entry):
        yield piece


def handler() -> Any:
    """The litellm CustomLLM that plays recorded entries back."""
    import importlib

    from cmdc_nb.providers.scripted import raise_error

    custom_llm: Any = importlib.import_module("litellm.llms.custom_llm")

    class ReplayLLM(custom_llm.CustomLLM):  # type: ignore[misc]
        async def astreaming(
            self, model: str, messages: list[Any], *args: Any, **kwargs: Any
        ) -> AsyncIterator[Any]:
            entry = entry_of(model)
            if entry.error:
                raise_error(
                    entry.error["kind"], model, entry.error.get("retry_after"), entry.error.get("message")
                )
            for piece in replay_chunks(entry):
                yield piece

    return ReplayLLM()
