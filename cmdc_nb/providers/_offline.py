"""The offline models served in-process, without litellm: the same stream, usage, errors and cost.

Scripted models and cassette replays need no network and no provider SDK, yet going through litellm
cost a fresh process ≈6 s (its import and warm-up: ≈2,700 modules) and every call ≈4-7 ms (its logging
object, success handler and stream re-assembly). Here they are served directly, shaped exactly as
litellm hands them to `_call._consume`: the messages a provider would receive (litellm drops
None-valued keys), one chunk per streamed piece, the finish reason as litellm maps it, a last chunk
with the usage, and the typed error litellm's exception would have been classified as.
`tests/test_offline_route.py` runs the same conversations both ways and compares what is emitted
and stored.

`CMDC_NB_OFFLINE_VIA_LITELLM=1` sends them through litellm as before (its `scripted` and `replay`
custom providers), which CI also tests.
"""

from __future__ import annotations

import os
import re
import threading
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from types import SimpleNamespace
from typing import Any

from cmdc_nb.errors import (
    ContextOverflowError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
)

__all__ = [
    "ERROR_STATUS",
    "VIA_LITELLM",
    "error",
    "finish_reason",
    "provider_messages",
    "served_directly",
    "stream",
    "typed_error",
    "via_litellm",
]

VIA_LITELLM = "CMDC_NB_OFFLINE_VIA_LITELLM"
_OFFLINE_ROUTES = ("scripted/", "replay/")
_TRUE = {"1", "true", "yes", "on"}


def via_litellm() -> bool:
    """Whether offline models go through litellm (`$CMDC_NB_OFFLINE_VIA_LITELLM` true), read at each
    call so a test or a notebook can switch it."""
    return os.environ.get(VIA_LITELLM, "").strip().lower() in _TRUE


def served_directly(route: str) -> bool:
    """Whether a call routed to `route` (`scripted/<name>`, `replay/<key>#<n>`) is served here."""
    return route.startswith(_OFFLINE_ROUTES) and not via_litellm()


def provider_messages(messages: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The messages as litellm hands them to a provider: a missing role is the assistant's, keys whose
    value is None are dropped (`litellm.utils.validate_and_fix_openai_messages`). A scripted model
    counts its prompt tokens from these, so they must be the same both ways.

    Each is a copy (a scripted model keeps every request for assertions: read them, do not change
    them). A conversation is sent whole on every call and grows by a message or two, so a message
    already converted is not converted again: it is remembered by the identity of the message it came
    from, with a copy of that message (to the depth the conversion copies) that must still equal it —
    one edited in place since (a plugin may) is converted afresh."""
    out: list[dict[str, Any]] = []
    with _remembered_lock:
        if len(_remembered) > _REMEMBERED_MAX:
            _remembered.clear()
        for m in messages:
            if type(m) is not dict:  # a Mapping of another kind compares slowly: converted each time
                out.append(_convert(m)[1])
                continue
            seen = _remembered.get(id(m))
            if seen is not None and seen[0] is m and seen[1] == m:
                out.append(seen[2])
                continue
            source, msg = _convert(m)
            if source is not None:  # `m` held: its id is not reused while remembered
                _remembered[id(m)] = (m, source, msg)
            out.append(msg)
    return out


def _convert(m: Mapping[str, Any]) -> tuple[dict[str, Any] | None, dict[str, Any]]:
    """A message's converted form, with a copy of it as it was to compare with later (to the depth
    the conversion copies: its tool calls too), or None when it is not to be remembered."""
    source = dict(m)
    msg = source
    # Most messages hold no None and no tool calls: one copy in C, and the Python-level
    # filtering only for those that need it.
    if None in msg.values():
        msg = {k: v for k, v in msg.items() if v is not None}
    if not msg.get("role"):
        msg = dict(msg) if msg is source else msg
        msg["role"] = "assistant"
    calls = msg.get("tool_calls")
    if not calls:
        return source, msg
    # `type(c) is dict` first: an ABC's isinstance is slow
    copied = [dict(c) if type(c) is dict or isinstance(c, Mapping) else c for c in calls]
    msg = dict(msg) if msg is source else msg
    msg["tool_calls"] = copied
    if type(calls) is not list:  # compared with a list copy it would never match: not remembered
        return None, msg
    source["tool_calls"] = copied  # shared: a change to what was handed out also fails the match
    return source, msg


# Converted messages by the id of the message they came from: (that message, its copy, converted).
# Bounded: past this many, forgotten all at once (a long conversation just converts again).
_REMEMBERED_MAX = 4096
_remembered: dict[int, tuple[Mapping[str, Any], dict[str, Any], dict[str, Any]]] = {}
_remembered_lock = threading.Lock()


# litellm's finish-reason map (litellm_core_utils.core_helpers._FINISH_REASON_MAP); anything else is "stop".
_FINISH = {
    **dict.fromkeys(("stop", "stop_sequence", "end_turn", "COMPLETE", "ERROR", "eos_token", "eos"), "stop"),
    **dict.fromkeys(("STOP", "FINISH_REASON_UNSPECIFIED", "MALFORMED_FUNCTION_CALL"), "stop"),
    **dict.fromkeys(("TOO_MANY_TOOL_CALLS", "MALFORMED_RESPONSE", "UNEXPECTED_TOOL_CALL"), "stop"),
    **dict.fromkeys(("MISSING_THOUGHT_SIGNATURE", "network_error", "error"), "stop"),
    **dict.fromkeys(("length", "max_tokens", "compaction", "MAX_TOKENS"), "length"),
    **dict.fromkeys(("tool_calls", "tool_use"), "tool_calls"),
    "function_call": "function_call",
    **dict.fromkeys(
        (
            "content_filter",
            "refusal",
            "ERROR_TOXIC",
            "SAFETY",
            "RECITATION",
            "LANGUAGE",
            "OTHER",
            "BLOCKLIST",
            "PROHIBITED_CONTENT",
            "SPII",
            "IMAGE_SAFETY",
            "IMAGE_PROHIBITED_CONTENT",
            "NO_IMAGE",
            "IMAGE_RECITATION",
            "IMAGE_OTHER",
            "ESCALATION",
            "sensitive",
            "guardrail_intervened",
            "content_filtered",
        ),
        "content_filter",
    ),
}


def finish_reason(raw: str) -> str:
    """A finish reason as litellm reports it (`end_turn` → `stop`, `tool_use` → `tool_calls`, …)."""
    return _FINISH.get(raw, "stop")


# -- errors: what `classify` makes of the litellm exception `scripted.raise_error` would raise -------------

ERROR_STATUS = {
    "rate_limit": 429,
    "unavailable": 503,
    "timeout": 408,
    "authentication": 401,
    "bad_request": 400,
    "context_overflow": 400,
}
_RAISED = frozenset({*ERROR_STATUS, "server_error"})  # a kind with no litellm exception of its own is a 500


def typed_error(
    message: str, *, kind: str, model: str, status_code: int | None, retry_after: float | None
) -> ProviderError:
    """The ProviderError subclass for `kind`, its message cut to its first line as `classify` does."""
    text = re.sub(r"^(litellm\.\w+:\s*)+", "", ((message or kind).splitlines() or [""])[0][:500])
    cls: type[ProviderError] = {
        "rate_limit": RateLimitedError,
        "timeout": ProviderTimeoutError,
        "context_overflow": ContextOverflowError,
    }.get(kind, ProviderError)
    return cls(text, kind=kind, model=model, status_code=status_code, retry_after=retry_after)


def error(kind: str, model: str, retry_after: float | None, message: str | None = None) -> ProviderError:
    """The error a scripted or recorded failure of `kind` surfaces as through litellm: its status, its
    message, and the Retry-After header (which litellm's Timeout does not carry)."""
    known = kind if kind in _RAISED else "server_error"
    after = float(str(retry_after)) if retry_after is not None and known != "timeout" else None
    text = message or f"scripted {kind.replace('_', ' ')}"
    return typed_error(
        text, kind=known, model=model, status_code=ERROR_STATUS.get(known, 500), retry_after=after
    )


def missing_script(model: str, exc: LookupError) -> ProviderError:
    """A request to a script nobody registered, as litellm reports a custom provider's 404."""
    return typed_error(
        f"ScriptedException - {exc.args[0] if exc.args else exc}",
        kind="not_found",
        model=model,
        status_code=404,
        retry_after=None,
    )


# -- the stream ---------------------------------------------------------------------------------------------


def _chunk(delta: SimpleNamespace, finish: str | None = None, usage: Any = None) -> SimpleNamespace:
    return SimpleNamespace(choices=[SimpleNamespace(delta=delta, finish_reason=finish)], usage=usage)


def _delta(
    content: str | None = None, fields: Mapping[str, Any] | None = None, calls: Sequence[Any] | None = None
) -> SimpleNamespace:
    return SimpleNamespace(
        content=content, reasoning_content=None, provider_specific_fields=fields, tool_calls=calls
    )


def _usage(raw: Mapping[str, Any]) -> SimpleNamespace:
    details = raw.get("prompt_tokens_details")
    return SimpleNamespace(
        prompt_tokens=raw.get("prompt_tokens", 0),
        completion_tokens=raw.get("completion_tokens", 0),
        prompt_tokens_details=SimpleNamespace(**details) if isinstance(details, Mapping) else None,
        cache_creation_input_tokens=raw.get("cache_creation_input_tokens", 0),
    )


async def stream(pieces: AsyncIterator[dict[str, Any]]) -> AsyncIterator[SimpleNamespace]:
    """litellm's stream chunks for a handler's GenericStreamingChunk dicts (`scripted.chunks_of`,
    `cassette.replay_chunks`): the pieces, then the finish reason, then the usage on its own."""
    usage: Any = None
    async for piece in pieces:
        if piece["is_finished"]:
            yield _chunk(_delta(), finish_reason(piece["finish_reason"] or "stop"))
            usage = piece["usage"]
            continue
        tool = piece["tool_use"]
        if tool is not None:
            fn = tool["function"]
            call = SimpleNamespace(
                index=tool["index"],
                id=tool["id"],
                function=SimpleNamespace(name=fn["name"], arguments=fn["arguments"]),
            )
            yield _chunk(_delta("", calls=[call]))
        elif piece.get("provider_specific_fields"):
            yield _chunk(_delta("", fields=piece["provider_specific_fields"]))
        else:
            yield _chunk(_delta(piece["text"]))
    if usage is not None:
        yield _chunk(_delta(), usage=_usage(usage))
