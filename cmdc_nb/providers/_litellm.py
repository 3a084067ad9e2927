"""litellm, imported once and lazily, with cmdc_nb's offline providers registered on it.

`import litellm` takes seconds, so nothing imports it until the first model call. Before importing it we
tell it to use the cost map it ships (it would otherwise try to download one), silence its banner, and
register the `scripted` and `replay` providers, so offline models go through exactly the same
`litellm.acompletion` path as real ones.
"""

from __future__ import annotations

import importlib
import os
import re
import threading
from typing import Any

from cmdc_nb.errors import (
    ContextOverflowError,
    ProviderError,
    ProviderTimeoutError,
    RateLimitedError,
)

__all__ = ["alitellm", "classify", "litellm", "loaded"]

_lock = threading.Lock()
_module: Any = None
_warmed = False


def litellm() -> Any:
    """The litellm module, configured for cmdc_nb (offline cost map, offline providers registered)."""
    global _module
    if _module is not None:
        return _module
    with _lock:
        if _module is None:
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            lm: Any = importlib.import_module("litellm")

            lm.suppress_debug_info = True
            lm.drop_params = True  # a parameter a provider does not take is dropped, not an error
            from cmdc_nb.providers import cassette, scripted

            handlers = {"scripted": scripted.handler(), "replay": cassette.handler()}
            lm.custom_provider_map = [
                *(p for p in lm.custom_provider_map if p.get("provider") not in handlers),
                *({"provider": name, "custom_handler": h} for name, h in handlers.items()),
            ]
            utils: Any = importlib.import_module("litellm.utils")
            utils.custom_llm_setup()
            _module = lm
    return _module


def loaded() -> bool:
    """Whether litellm is loaded in this process: until it is, the first model call loads it first
    (seconds; 30-80 s on a busy machine), which a waiting person should be told."""
    return _module is not None


async def alitellm() -> Any:
    """`litellm()` for coroutines: the first import (seconds) runs in a worker thread, so a notebook's
    event loop — its widgets, other agents, its cells — never stalls behind it."""
    if _module is not None:
        return _module
    import asyncio

    return await asyncio.to_thread(_load_warm)


def warm() -> None:
    """Load litellm and make its first (mock) call now, so that a real first call does not pay for it:
    what a server does before it takes requests."""
    _load_warm()


def _load_warm() -> Any:
    """Import litellm, then make one streamed, tool-carrying mock call on a private loop in this
    thread: litellm imports hundreds of modules lazily on its first call (its HTTP client, the MCP
    handler, stream wrappers), which would otherwise happen on the caller's loop and stall every agent and
    widget of the kernel. A failure here only means the first real call does it instead."""
    lm = litellm()
    global _warmed
    with _lock:
        if _warmed:
            return lm
        _warmed = True
    import asyncio
    import logging

    async def mock() -> None:
        response = await lm.acompletion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "warm up"}],
            tools=[{"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}],
            stream=True,
            stream_options={"include_usage": True},
            mock_response="ok",
            api_key="not-a-key",  # mocked: nothing is sent
        )
        async for _ in response:
            pass

    try:
        asyncio.run(mock())
        from cmdc_nb.providers import catalog

        catalog.litellm_providers()  # reads litellm's cost map once, here rather than at the first price
    except Exception as exc:  # pragma: no cover - depends on litellm internals
        logging.getLogger("cmdc_nb.providers").debug("litellm warm-up skipped: %s", exc)
    return lm


_BY_STATUS = {
    400: "bad_request",
    401: "authentication",
    403: "authentication",
    404: "not_found",
    408: "timeout",
    413: "context_overflow",
    422: "bad_request",
    429: "rate_limit",
    500: "server_error",
    502: "server_error",
    503: "unavailable",
    504: "timeout",
    529: "unavailable",
}
_BY_NAME = {
    "RateLimitError": "rate_limit",
    "Timeout": "timeout",
    "APITimeoutError": "timeout",
    "ContextWindowExceededError": "context_overflow",
    "AuthenticationError": "authentication",
    "PermissionDeniedError": "authentication",
    "BadRequestError": "bad_request",
    "NotFoundError": "not_found",
    "ServiceUnavailableError": "unavailable",
    "InternalServerError": "server_error",
    "APIConnectionError": "connection",
}


def _retry_after(exc: BaseException) -> float | None:
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None) or getattr(exc, "headers", None)
    if not headers:
        return None
    raw = headers.get("retry-after-ms")
    if raw is not None:
        try:
            return float(raw) / 1000
        except ValueError:
            return None
    raw = headers.get("retry-after")
    try:
        return float(raw) if raw is not None else None
    except ValueError:
        return None  # an HTTP date: treat as unknown and back off


def classify(exc: BaseException, model: str) -> ProviderError:
    """A litellm / openai / transport exception as a typed ProviderError (already typed: returned)."""
    if isinstance(exc, ProviderError):
        return exc
    inner = getattr(exc, "original_exception", None)
    if type(exc).__name__ == "MidStreamFallbackError" and isinstance(inner, BaseException):
        exc = inner
    kind = _BY_NAME.get(type(exc).__name__)
    status = getattr(exc, "status_code", None)
    if kind is None and isinstance(status, int):
        kind = _BY_STATUS.get(status, "server_error" if status >= 500 else "bad_request")
    if kind is None and isinstance(exc, TimeoutError):
        kind = "timeout"
    if kind is None and isinstance(exc, ConnectionError | OSError):
        kind = "connection"
    kind = kind or "unknown"
    # Only the first line of the provider's text: it never echoes our request (and so no key).
    message = (str(getattr(exc, "message", None) or exc) or type(exc).__name__).splitlines()[0][:500]
    message = re.sub(r"^(litellm\.\w+:\s*)+", "", message)
    cls: type[ProviderError] = {
        "rate_limit": RateLimitedError,
        "timeout": ProviderTimeoutError,
        "context_overflow": ContextOverflowError,
    }.get(kind, ProviderError)
    return cls(
        message,
        kind=kind,
        model=model,
        status_code=status if isinstance(status, int) else None,
        retry_after=_retry_after(exc),
    )
