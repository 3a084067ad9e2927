"""One streamed model call through litellm, with the only retry layer and the fallback models.

litellm's own retries (and the OpenAI client's) are switched off, so a rate limit is retried exactly
once per attempt here: backoff doubles from `RetryPolicy.backoff_s`, a provider's Retry-After wins when
it says, and each retry is reported through `on_retry` so the kernel can publish it. When a model's
attempts are spent on a retryable error, or it fails in a way another model might not (unavailable,
not found, context overflow), the next fallback model takes over.

The offline models (a script, a cassette's replay) are served in-process by `_offline` unless
`CMDC_NB_OFFLINE_VIA_LITELLM` is set: same chunks through the same `_consume`, no litellm import.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import time
from collections.abc import Awaitable, Callable, Sequence
from decimal import Decimal
from typing import Any

from cmdc_nb.errors import ProviderError
from cmdc_nb.providers import _offline, scripted
from cmdc_nb.providers import cassette as _cassette
from cmdc_nb.providers._litellm import alitellm, classify
from cmdc_nb.providers._types import (
    Completion,
    ProviderRequest,
    RetryPolicy,
    StreamPart,
    TokenUsage,
    ToolCall,
)
from cmdc_nb.providers.cassette import Cassette, CassetteEntry, fingerprint

__all__ = ["stream_completion"]

PartSink = Callable[[StreamPart], None]
RetrySink = Callable[[int, float, ProviderError], Awaitable[None] | None]
FallbackSink = Callable[[str, str, ProviderError], Awaitable[None] | None]
Pricer = Callable[[str, TokenUsage], Decimal | None]

# Errors after which another model may well succeed where this one will not.
_FALL_THROUGH = frozenset(
    {"unavailable", "not_found", "context_overflow", "rate_limit", "server_error", "timeout", "connection"}
)


async def stream_completion(
    request: ProviderRequest,
    *,
    on_part: PartSink,
    retry: RetryPolicy | None = None,
    fallbacks: Sequence[str] = (),
    cassette: Cassette | None = None,
    pricer: Pricer | None = None,
    on_retry: RetrySink | None = None,
    on_fallback: FallbackSink | None = None,
    on_attempt: Callable[[str], None] | None = None,
) -> Completion:
    """Stream one response, retrying and falling back as needed; raises ProviderError at the end."""
    retry = retry or RetryPolicy()
    models = [request.model, *[m for m in fallbacks if m != request.model]]
    total_attempts = 0
    last: ProviderError | None = None
    for i, model in enumerate(models):
        if i and last is not None and on_fallback is not None:
            await _maybe(on_fallback(models[i - 1], model, last))
        for attempt in range(1, retry.retries + 2):
            total_attempts += 1
            if on_attempt is not None:
                on_attempt(model)
            try:
                done = await _attempt(model, request, on_part, cassette, pricer)
            except ProviderError as err:
                last = err
            except Exception as exc:  # litellm, openai, httpx: all become typed errors
                last = classify(exc, model)
            else:
                done.attempts = total_attempts
                return done
            if not last.retryable or attempt > retry.retries:
                break
            delay = retry.delay(attempt, last.retry_after)
            if on_retry is not None:
                await _maybe(on_retry(attempt, delay, last))
            await asyncio.sleep(delay)
        assert last is not None
        if last.kind not in _FALL_THROUGH:
            raise last
    assert last is not None
    raise last


async def _not_logged(*args: Any, **kwargs: Any) -> None:
    """Stands in for litellm's end-of-stream success dispatch when nobody listens (see `_attempt`)."""


def _litellm_callbacks(lm: Any) -> bool:
    names = (
        "callbacks",
        "success_callback",
        "_async_success_callback",
        "failure_callback",
        "_async_failure_callback",
    )
    return any(getattr(lm, name, None) for name in names)


async def _maybe(value: Awaitable[None] | None) -> None:
    if inspect.isawaitable(value):
        await value


async def _attempt(
    model: str,
    request: ProviderRequest,
    on_part: PartSink,
    cassette: Cassette | None,
    pricer: Pricer | None,
) -> Completion:
    route, entry = model, None
    replaying = cassette is not None and cassette.replays(model)
    if cassette is not None and replaying:
        n, entry = cassette.take(request.messages, request.tools)
        route = f"replay/{cassette.key}#{n}"
    direct = _offline.served_directly(route)
    lm = None if direct else await alitellm()
    if lm is not None:
        # litellm hands every streamed chunk to a logging thread (≈1 ms a chunk) for its callbacks;
        # with none registered that is work for nobody. Registering a litellm callback turns it back on.
        lm.disable_streaming_logging = not _litellm_callbacks(lm)
    kwargs: dict[str, Any] = {
        **request.extra,
        "model": route,
        # served in-process, the offline route takes its own copy (`_offline.provider_messages`)
        "messages": [dict(m) for m in request.messages] if lm is not None else [],
        "stream": True,
        "stream_options": {"include_usage": True},
        "num_retries": 0,  # the retry layer is ours (above); never two layers
        "max_retries": 0,
    }
    if request.tools:
        kwargs["tools"] = [dict(t) for t in request.tools]
    if request.max_tokens is not None:
        kwargs["max_tokens"] = request.max_tokens
    if request.temperature is not None:
        kwargs["temperature"] = request.temperature
    if request.timeout_s is not None:
        kwargs["timeout"] = request.timeout_s
    started = time.perf_counter()
    chunks: list[tuple[str, str]] = []

    def sink(part: StreamPart) -> None:
        if part.kind != "tool_call":
            chunks.append((part.kind, part.text))
        on_part(part)

    try:
        async with _deadline(request.timeout_s):
            if lm is None:
                source = _offline.stream(
                    _cassette.serve(entry, model)
                    if entry is not None
                    else scripted.serve(route, _offline.provider_messages(request.messages))
                )
            else:
                source = _unlogged(await lm.acompletion(**kwargs), lm)
            done = await _consume(source, model, sink, started)
    except Exception as exc:
        err = classify(exc, model)
        if cassette is not None and not replaying:
            fp = fingerprint(request.messages, request.tools)
            cassette.record(
                CassetteEntry(
                    model, fp, error={"kind": err.kind, "message": str(err), "retry_after": err.retry_after}
                )
            )
        raise err from None
    if entry is not None:
        done.cost_usd = entry.cost_usd  # the recorded cost, exactly
    elif pricer is not None:
        done.cost_usd = pricer(model, done.usage)
    if cassette is not None and not replaying:
        cassette.record(CassetteEntry.of(model, fingerprint(request.messages, request.tools), done, chunks))
    return done


def _unlogged(stream: Any, lm: Any) -> Any:
    """`stream` without litellm's end-of-stream success dispatch when no litellm callback is registered:
    it builds a logging payload and computes a cost (≈11 % of an offline round through litellm) that
    only callbacks read — cmdc_nb prices the call itself. A registered callback keeps it."""
    logging_obj = getattr(stream, "logging_obj", None)
    if logging_obj is not None and not _litellm_callbacks(lm):
        logging_obj.dispatch_success_handlers = _not_logged
    return stream


@contextlib.asynccontextmanager
async def _deadline(seconds: float | None) -> Any:
    if seconds is None:
        yield
        return
    async with asyncio.timeout(seconds):
        yield


def _usage(raw: Any) -> TokenUsage:
    if raw is None:
        return TokenUsage()
    prompt = int(getattr(raw, "prompt_tokens", 0) or 0)
    output = int(getattr(raw, "completion_tokens", 0) or 0)
    details = getattr(raw, "prompt_tokens_details", None)
    cached = int(getattr(details, "cached_tokens", 0) or 0) if details is not None else 0
    written = int(getattr(raw, "cache_creation_input_tokens", 0) or 0)
    return TokenUsage(max(0, prompt - cached - written), output, cached, written)


async def _consume(stream: Any, model: str, on_part: PartSink, started: float) -> Completion:
    done = Completion(model=model)
    text: list[str] = []
    thinking: list[str] = []
    calls: dict[int, dict[str, Any]] = {}
    async for chunk in stream:
        usage = getattr(chunk, "usage", None)
        if usage is not None:
            done.usage = _usage(usage)
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        delta = choice.delta
        if done.first_token_s is None:
            done.first_token_s = time.perf_counter() - started
        reasoning = getattr(delta, "reasoning_content", None) or (
            (getattr(delta, "provider_specific_fields", None) or {}).get("reasoning_content")
        )
        if reasoning:
            thinking.append(reasoning)
            on_part(StreamPart("thinking", reasoning))
        if delta.content:
            text.append(delta.content)
            on_part(StreamPart("text", delta.content))
        for tc in delta.tool_calls or ():
            index = tc.index or 0
            slot = calls.setdefault(index, {"id": None, "name": "", "arguments": ""})
            slot["id"] = slot["id"] or tc.id
            fn = tc.function
            if fn is not None:
                slot["name"] += fn.name or ""
                slot["arguments"] += fn.arguments or ""
            on_part(
                StreamPart(
                    "tool_call", fn.arguments or "" if fn else "", index, tc.id, fn.name if fn else None
                )
            )
        if choice.finish_reason:
            done.finish_reason = choice.finish_reason
    done.text = "".join(text)
    done.thinking = "".join(thinking)
    done.tool_calls = [
        ToolCall.parse(slot["id"] or f"call_{i}", slot["name"], slot["arguments"])
        for i, slot in sorted(calls.items())
    ]
    if done.tool_calls and done.finish_reason == "stop":
        done.finish_reason = "tool_calls"
    return done
