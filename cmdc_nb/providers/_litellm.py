"""litellm, imported once, with cmdc_nb's offline providers registered on it.

`import litellm` and its first call take seconds (≈2,700 modules), so no module imports it at import
time. Before importing it we tell it to use the cost map it ships (it would otherwise try to download
one), silence its banner, and register the `scripted` and `replay` providers (the route offline models
take with `CMDC_NB_OFFLINE_VIA_LITELLM=1`; by default they are served without litellm, see `_offline`).

Importing `cmdc_nb.kernel` calls `preload()`: litellm is imported and warmed up in a daemon thread, so
the notebook's think time hides it and the first real call waits only for what is left. A process that
sets `CMDC_NB_OFFLINE=1` (CI, nbval, the tour) or `CMDC_NB_PRELOAD=0` (the test suite) skips that;
`CMDC_NB_PRELOAD=1` preloads even offline. The first call waits for
the preload rather than importing alongside it (two threads importing litellm's circular modules could
trip the import system's deadlock detection), and a fork waits for it too (a child would inherit the
import locks it holds). The wait is short: the warm-up goes in steps and gives way to a waiting call at
the next one, so a call made at once waits for the import and then does only its own first-call work.
"""

from __future__ import annotations

import importlib
import json
import logging
import os
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from cmdc_nb._gc import freeze_long_lived
from cmdc_nb.errors import ProviderError
from cmdc_nb.providers import _offline

if TYPE_CHECKING:
    from cmdc_nb.providers.cassette import Cassette

__all__ = ["alitellm", "classify", "for_call", "litellm", "loaded", "needs_client", "preload", "warm"]

_lock = threading.Lock()  # the import
_warm_lock = threading.Lock()  # the import and the warm-up call, whoever makes them
_ready = threading.Event()  # both done, or the warm-up failed or gave way (the first call does the rest)
_wanted = threading.Event()  # a call waits for litellm: the preload stops warming at its next step
_module: Any = None
_preloader: threading.Thread | None = None
_log = logging.getLogger("cmdc_nb.providers")


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


def needs_client(model: str, cassette: Cassette | None = None) -> bool:
    """Whether a call to `model` (with `cassette`) goes through litellm: real providers do; a script
    or a replay does only with `CMDC_NB_OFFLINE_VIA_LITELLM` set."""
    replays = cassette is not None and cassette.replays(model)
    return not _offline.served_directly("replay/" if replays else model)


def loaded(model: str | None = None, cassette: Cassette | None = None) -> bool:
    """Whether a call can start without loading the model client first: litellm is loaded and warmed
    in this process, or the call (to `model`, with `cassette`) does not use it. Until then the first
    call loads it (seconds; 30-80 s on a busy machine), which a waiting person should be told — and
    an offline model, which never loads it, never says so."""
    if model is not None and not needs_client(model, cassette):
        return True
    return _ready.is_set()


async def alitellm() -> Any:
    """`litellm()` for coroutines, loaded and warmed: the first import (seconds) runs in a worker
    thread, so a notebook's event loop — its widgets, other agents, its cells — never stalls behind it;
    a preload under way is waited for, not raced."""
    if _ready.is_set():
        return _module
    import asyncio

    return await asyncio.to_thread(for_call)


def preload() -> None:
    """Start loading and warming litellm in a daemon thread, once, unless this process only uses
    offline models: `$CMDC_NB_PRELOAD` false (the test suite sets it), or unset and `$CMDC_NB_OFFLINE`
    true. The first real call of such a process loads it, as without a preload."""
    global _preloader
    if not _preload_wanted():
        return
    with _lock:
        if _preloader is not None or _ready.is_set():
            return
        _preloader = threading.Thread(target=_preload, name="cmdc_nb-model-client", daemon=True)
    if hasattr(os, "register_at_fork"):  # POSIX
        os.register_at_fork(before=_before_fork)
    _preloader.start()


def _preload_wanted() -> bool:
    truthy = {"1", "true", "yes", "on"}
    said = os.environ.get("CMDC_NB_PRELOAD", "").strip().lower()
    if said:
        return said in truthy
    return os.environ.get("CMDC_NB_OFFLINE", "").strip().lower() not in truthy


def _preload() -> None:
    try:
        _load_warm()
    except BaseException as exc:  # the first call imports it again, and says why if it fails
        _log.debug("preloading litellm failed: %r", exc)


def _before_fork() -> None:
    """A fork while the preload imports would hand the child module locks no thread of it releases."""
    thread = _preloader
    if thread is not None and thread.is_alive() and thread is not threading.current_thread():
        thread.join(timeout=120)


def warm() -> None:
    """Load litellm and make its first calls (answered in memory) now, so that a real first call does
    not pay for them: what a server does before it takes requests."""
    _load_warm(whole=True)


def _load_warm(*, whole: bool = False) -> Any:
    """Import litellm, then warm it step by step (`_warm_steps`) in this thread: litellm imports hundreds
    of modules lazily on its first call, which would otherwise happen on the caller's loop and stall
    every agent and widget of the kernel. Between steps the preload gives way to a call that is waiting
    (`_wanted`): that call then does only the work it needs itself, instead of waiting for warm-up steps
    it may not need; `whole` (a server's `warm()`) takes every step. One thread at a time: a caller
    never imports alongside the preload. A failed step only means the first real call does it."""
    with _warm_lock:
        if _ready.is_set():
            return _module
        lm = litellm()
        for name, step in _warm_steps(lm):
            if _wanted.is_set() and not whole:
                _log.debug("litellm warm-up handed over to a waiting call before %s", name)
                break
            try:
                step()
            except Exception as exc:  # pragma: no cover - depends on litellm internals
                _log.debug("litellm warm-up step %s skipped: %r", name, exc)
        freeze_long_lived("litellm")  # litellm's modules, loaded once, live as long as the process
        _ready.set()
    return lm


def for_call() -> Any:
    """litellm for a call about to be made (blocking): the preload, if under way, stops warming at its
    next step and the call does its own first-call work, rather than racing the preload's imports."""
    if _ready.is_set():
        return _module
    _wanted.set()
    return _load_warm()


def _warm_steps(lm: Any) -> list[tuple[str, Callable[[], object]]]:
    """The work a first real call does after `import litellm`, most needed first. The streamed calls
    go the whole real way (litellm's OpenAI route, the openai SDK's client and resources, the stream
    wrapper, litellm's cost and tokenizer tables) with an in-memory HTTP transport that answers them:
    nothing leaves the process. The tool-carrying call loads litellm's MCP handler, which litellm
    imports for any call that has tools."""
    import asyncio

    from cmdc_nb.providers import catalog

    return [
        ("a streamed call", lambda: asyncio.run(_answered_call(lm, tools=False))),
        ("a streamed call with a tool", lambda: asyncio.run(_answered_call(lm, tools=True))),
        ("the provider catalog", catalog.litellm_providers),  # litellm's cost map, read once here
    ]


_WARM_CHUNKS = (
    {"choices": [{"index": 0, "delta": {"role": "assistant", "content": "ok"}, "finish_reason": None}]},
    {"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]},
    {"choices": [], "usage": {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}},
)


async def _answered_call(lm: Any, *, tools: bool) -> None:
    """One streamed `acompletion` to `openai/gpt-4o-mini` through an OpenAI client whose transport
    answers in memory (server-sent events, as the API does), read to the end."""
    import httpx
    import openai

    head = {"id": "warm-up", "object": "chat.completion.chunk", "created": 0, "model": "gpt-4o-mini"}
    body = "".join(f"data: {json.dumps({**head, **c})}\n\n" for c in _WARM_CHUNKS) + "data: [DONE]\n\n"

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, headers={"content-type": "text/event-stream"}, content=body.encode())

    async with httpx.AsyncClient(transport=httpx.MockTransport(answer)) as http:
        client = openai.AsyncOpenAI(
            api_key="not-a-key", base_url="http://warm-up.invalid/v1", http_client=http, max_retries=0
        )
        tool = {"type": "function", "function": {"name": "noop", "parameters": {"type": "object"}}}
        response = await lm.acompletion(
            model="openai/gpt-4o-mini",
            messages=[{"role": "user", "content": "warm up"}],
            **({"tools": [tool]} if tools else {}),
            stream=True,
            stream_options={"include_usage": True},
            client=client,
            num_retries=0,
            max_retries=0,
        )
        async for _ in _unlogged(response, lm):
            pass


def _unlogged(stream: Any, lm: Any) -> Any:
    """The warm-up's stream without litellm's success dispatch: a callback registered by then would
    otherwise log a call nobody made."""
    logging_obj = getattr(stream, "logging_obj", None)
    if logging_obj is not None:

        async def nothing(*args: Any, **kwargs: Any) -> None:
            pass

        logging_obj.dispatch_success_handlers = nothing
    return stream


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
    # Only the first line of the provider's text: it never echoes our request (and so no key).
    return _offline.typed_error(
        str(getattr(exc, "message", None) or exc) or type(exc).__name__,
        kind=kind or "unknown",
        model=model,
        status_code=status if isinstance(status, int) else None,
        retry_after=_retry_after(exc),
    )
