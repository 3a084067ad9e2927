"""Scripted models: a play of turns (text, tool calls, thinking, errors, delays, usage) served as the
`scripted/<name>` model, for tests, teaching and offline demos — in-process by default (`serve`), or
through litellm as a custom provider (`handler`) with `CMDC_NB_OFFLINE_VIA_LITELLM=1`; both give the
same stream, usage and errors.

>>> from cmdc_nb.providers.scripted import Script, Turn, call
>>> script = Script([
...     Turn("Let me look.", tool_calls=[call("read_file", path="README.md")]),
...     Turn("It is a README."),
... ], name="readme-demo")
>>> script.model
'scripted/readme-demo'

Each request takes the next turn of its script; a `respond` function may compute turns from the
messages instead (like pydantic-ai's FunctionModel). Usage is what a turn says, else one token per four
characters of the prompt and of the reply, so runs are deterministic and costs computable.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.providers import _offline
from cmdc_nb.providers.attachments import without_data

__all__ = [
    "ERROR_KINDS",
    "Script",
    "ScriptedCall",
    "Turn",
    "call",
    "embed",
    "get_script",
    "handler",
    "register",
    "serve",
]

ERROR_KINDS = (
    "rate_limit",
    "server_error",
    "unavailable",
    "timeout",
    "authentication",
    "bad_request",
    "context_overflow",
)


@dataclass(frozen=True)
class ScriptedCall:
    name: str
    arguments: Mapping[str, Any] = field(default_factory=dict)
    id: str | None = None
    raw_arguments: str | None = None  # sent verbatim instead of `arguments` (to script malformed JSON)


def call(name: str, /, *, id: str | None = None, **arguments: Any) -> ScriptedCall:
    """A tool call for a scripted turn: `call("add", a=1, b=2)`."""
    return ScriptedCall(name, arguments, id)


@dataclass(frozen=True)
class Turn:
    """One scripted response.

    `error` (one of ERROR_KINDS) makes the request fail — after `error_after` streamed chunks when set,
    so a failure can happen mid-stream; `retry_after` is sent as the Retry-After header. `delay` waits
    before the first chunk, `chunk_delay` between chunks; `usage` is `(prompt_tokens, completion_tokens)`.
    """

    text: str = ""
    tool_calls: Sequence[ScriptedCall] = ()
    thinking: str = ""
    error: str | None = None
    error_after: int | None = None
    retry_after: float | None = None
    delay: float = 0.0
    chunk_delay: float = 0.0
    usage: tuple[int, int] | None = None
    finish_reason: str | None = None

    def __post_init__(self) -> None:
        if self.error is not None and self.error not in ERROR_KINDS:
            raise InvalidInputError(f"{self.error!r} is not one of: {', '.join(ERROR_KINDS)}", field="error")
        for name in ("delay", "chunk_delay"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                raise InvalidInputError("must be a number of seconds >= 0", field=name)


TurnLike = Turn | str
Responder = Callable[[list[dict[str, Any]]], TurnLike]


class Script:
    """A named sequence of turns (or a `respond(messages)` function) served as `scripted/<name>`.

    `accepts=["image", "pdf"]` makes it a model that takes images and PDFs attached to a prompt (the
    default takes text only, and the chat says so when a file is attached). `repeat_last=True` serves the last turn again once the others are used up; otherwise a request past
    the end is answered, as an ordinary reply at no tokens, with one sentence saying the script has no
    more turns and what to do (see `ended`).
    """

    _names = itertools.count(1)

    def __init__(
        self,
        turns: Sequence[TurnLike] | Responder,
        *,
        name: str | None = None,
        repeat_last: bool = False,
        accepts: Sequence[str] = (),
    ) -> None:
        self.name = name or f"script-{next(self._names)}"
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,99}", self.name):
            raise InvalidInputError("letters, digits and . _ : - only (at most 100)", field="name")
        self._respond: Responder | None = turns if callable(turns) else None
        self.turns: list[Turn] = [] if callable(turns) else [_as_turn(t) for t in turns]
        self.repeat_last = repeat_last
        if not isinstance(accepts, list | tuple | set | frozenset) or not set(accepts) <= {"image", "pdf"}:
            raise InvalidInputError("a list of 'image' and 'pdf', such as accepts=['image']", field="accepts")
        self.accepts = frozenset(accepts)  # the files it takes besides text (a model that sees images)
        self.requests: list[list[dict[str, Any]]] = []  # every request's messages, for assertions
        self._cursor = 0
        self._lock = threading.Lock()
        register(self)

    def __repr__(self) -> str:
        return f"<Script {self.name!r} turns={len(self.turns)} served={self.served}>"

    @property
    def model(self) -> str:
        return f"scripted/{self.name}"

    @property
    def served(self) -> int:
        """How many requests the script has answered (or failed)."""
        return len(self.requests)

    def reset(self) -> None:
        with self._lock:
            self._cursor = 0
            self.requests.clear()

    def next_turn(self, messages: list[dict[str, Any]]) -> Turn:
        with self._lock:
            self.requests.append(messages)
            if self._respond is not None:
                self._cursor += 1
                return _as_turn(self._respond(messages))
            if self._cursor >= len(self.turns):
                return self.turns[-1] if self.repeat_last and self.turns else self.ended()
            turn = self.turns[self._cursor]
            self._cursor += 1
            return turn

    def ended(self) -> Turn:
        """The reply past the script's last turn. An offline model is a product, not a test hack: a
        person chatting with one that has said all it knows gets a sentence they can act on, not a
        provider failure. No model produced it, so it costs no tokens.

        >>> Script(["hi"], name="ended-example").ended().text
        "(the offline script 'ended-example' has no more turns: give it more turns, or pick another model)"
        """
        return Turn(
            f"(the offline script '{self.name}' has no more turns: give it more turns, or pick another model)",
            usage=(0, 0),
        )


def _as_turn(t: TurnLike) -> Turn:
    if isinstance(t, Turn):
        return t
    if isinstance(t, str):
        return Turn(t)
    raise InvalidInputError(f"a script turn must be a Turn or a str, got {type(t).__name__}", field="turns")


_registry: dict[str, Script] = {}
_registry_lock = threading.Lock()


def register(script: Script) -> Script:
    """Make `script` reachable as `scripted/<name>` (a newer script of the same name replaces it)."""
    with _registry_lock:
        _registry[script.name] = script
    return script


def get_script(name: str) -> Script:
    name = name.removeprefix("scripted/")
    with _registry_lock:
        script = _registry.get(name)
    if script is None:
        raise LookupError(f"no script named {name!r}; create one with cmdc_nb.providers.scripted.Script")
    return script


def approx_tokens(value: Any) -> int:
    """One token per four characters of the JSON of `value`: deterministic, and close enough."""
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return max(1, math.ceil(len(text) / 4))


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*|\s+", text)


def chunks_of(turn: Turn, messages: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """The GenericStreamingChunk dicts of a turn: thinking, words of text, one chunk per tool call
    (arguments split in two, as real providers stream them), then the finish chunk with usage."""

    def chunk(**kw: Any) -> dict[str, Any]:
        base: dict[str, Any] = {
            "text": "",
            "tool_use": None,
            "is_finished": False,
            "finish_reason": "",
            "usage": None,
            "index": 0,
        }
        base.update(kw)
        return base

    if turn.thinking:
        yield chunk(provider_specific_fields={"reasoning_content": turn.thinking})
    for word in _words(turn.text):
        yield chunk(text=word)
    for i, c in enumerate(turn.tool_calls):
        raw = c.raw_arguments if c.raw_arguments is not None else json.dumps(dict(c.arguments))
        half = len(raw) // 2
        cid = c.id or f"call_{i + 1}_{c.name}"
        fn = {"name": c.name, "arguments": raw[:half]}
        yield chunk(tool_use={"id": cid, "type": "function", "function": fn, "index": i})
        yield chunk(
            tool_use={
                "id": None,
                "type": "function",
                "function": {"name": None, "arguments": raw[half:]},
                "index": i,
            }
        )
    prompt, completion = turn.usage or (
        approx_tokens(without_data(messages)),
        approx_tokens(turn.text + turn.thinking)
        + sum(approx_tokens(dict(c.arguments)) for c in turn.tool_calls),
    )
    usage = {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}
    reason = turn.finish_reason or ("tool_calls" if turn.tool_calls else "stop")
    yield chunk(is_finished=True, finish_reason=reason, usage=usage)


def raise_error(kind: str, model: str, retry_after: float | None, message: str | None = None) -> None:
    """Raise the litellm exception a real provider would raise for `kind`."""
    import httpx

    from cmdc_nb.providers._litellm import litellm as load

    litellm: Any = load()

    status = _offline.ERROR_STATUS.get(kind, 500)  # the one table both routes answer with
    headers = {"retry-after": str(retry_after)} if retry_after is not None else {}
    response = httpx.Response(
        status, headers=headers, request=httpx.Request("POST", "http://scripted.invalid")
    )
    text = message or f"scripted {kind.replace('_', ' ')}"
    kw: dict[str, Any] = {"message": text, "llm_provider": "scripted", "model": model}
    if kind == "timeout":
        raise litellm.Timeout(**kw)
    cls = {
        "rate_limit": litellm.RateLimitError,
        "server_error": litellm.InternalServerError,
        "unavailable": litellm.ServiceUnavailableError,
        "authentication": litellm.AuthenticationError,
        "bad_request": litellm.BadRequestError,
        "context_overflow": litellm.ContextWindowExceededError,
    }.get(kind, litellm.InternalServerError)  # a recorded kind with no exception of its own
    raise cls(**kw, response=response)


def _raise_typed(kind: str, model: str, retry_after: float | None) -> None:
    raise _offline.error(kind, model, retry_after)


async def stream_turn(
    turn: Turn,
    model: str,
    messages: list[dict[str, Any]],
    fail: Callable[[str, str, float | None], None] = raise_error,
) -> AsyncIterator[dict[str, Any]]:
    """The turn's chunks, paced by its delays; its error (`fail` raises it) at its place in the stream."""
    if turn.delay:
        await asyncio.sleep(turn.delay)
    for n, piece in enumerate(chunks_of(turn, messages)):
        if turn.error is not None and n == (turn.error_after or 0):
            fail(turn.error, model, turn.retry_after)
        if n and turn.chunk_delay:
            # The loop's timers have millisecond resolution: a shorter sleep would wait ≈1 ms anyway.
            # Below 1 ms a chunk yields to the loop, unslept.
            await asyncio.sleep(turn.chunk_delay if turn.chunk_delay >= 0.001 else 0)
        yield piece


async def serve(model: str, messages: list[dict[str, Any]]) -> AsyncIterator[dict[str, Any]]:
    """The next turn of `model`'s script as litellm's handler streams it, served in-process: a failure
    is the ProviderError litellm's exception would have become."""
    try:
        turn = get_script(model).next_turn(messages)
    except LookupError as exc:
        raise _offline.missing_script(model, exc) from None
    async for piece in stream_turn(turn, model, messages, _raise_typed):
        yield piece


def _model_response(chunks: list[dict[str, Any]], model: str) -> Any:
    from cmdc_nb.providers._litellm import litellm as load

    litellm: Any = load()

    text = "".join(c["text"] for c in chunks)
    calls: dict[int, dict[str, Any]] = {}
    for c in chunks:
        if c["tool_use"]:
            tu = c["tool_use"]
            slot = calls.setdefault(
                tu["index"], {"id": tu["id"], "type": "function", "function": {"name": "", "arguments": ""}}
            )
            slot["id"] = slot["id"] or tu["id"]
            slot["function"]["name"] += tu["function"]["name"] or ""
            slot["function"]["arguments"] += tu["function"]["arguments"] or ""
    last = chunks[-1]
    message: dict[str, Any] = {"role": "assistant", "content": text or None}
    if calls:
        message["tool_calls"] = [calls[i] for i in sorted(calls)]
    return litellm.ModelResponse(
        model=model,
        choices=[{"index": 0, "message": message, "finish_reason": last["finish_reason"]}],
        usage=last["usage"],
    )


def handler() -> Any:
    """The litellm CustomLLM that serves scripts (made on first use: it subclasses a litellm class)."""
    import importlib

    custom_llm: Any = importlib.import_module("litellm.llms.custom_llm")

    def turn_for(model: str, messages: list[dict[str, Any]]) -> Turn:
        try:
            return get_script(model).next_turn(messages)
        except LookupError as exc:
            raise custom_llm.CustomLLMError(status_code=404, message=str(exc)) from None

    class ScriptedLLM(custom_llm.CustomLLM):  # type: ignore[misc]
        async def astreaming(
            self, model: str, messages: list[Any], *args: Any, **kwargs: Any
        ) -> AsyncIterator[Any]:
            turn = turn_for(model, messages)
            async for piece in stream_turn(turn, model, messages):
                yield piece

        def streaming(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Iterator[Any]:
            turn = turn_for(model, messages)
            if turn.delay:
                time.sleep(turn.delay)
            for n, piece in enumerate(chunks_of(turn, messages)):
                if turn.error is not None and n == (turn.error_after or 0):
                    raise_error(turn.error, model, turn.retry_after)
                yield piece

        async def acompletion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
            turn = turn_for(model, messages)
            if turn.delay:
                await asyncio.sleep(turn.delay)
            if turn.error is not None:
                raise_error(turn.error, model, turn.retry_after)
            return _model_response(list(chunks_of(turn, messages)), model)

        def completion(self, model: str, messages: list[Any], *args: Any, **kwargs: Any) -> Any:
            turn = turn_for(model, messages)
            if turn.error is not None:
                raise_error(turn.error, model, turn.retry_after)
            return _model_response(list(chunks_of(turn, messages)), model)

        def embedding(
            self, model: str, input: list[Any], model_response: Any, *args: Any, **kwargs: Any
        ) -> Any:
            return _embedding_response(model, input, model_response)

        async def aembedding(
            self, model: str, input: list[Any], model_response: Any, *args: Any, **kwargs: Any
        ) -> Any:
            return _embedding_response(model, input, model_response)

    return ScriptedLLM()


# Offline embedding models: `scripted/embed-<dims>` hashes text into <dims> dimensions (default 256).
# `embedding_failures[model] = [kind, ...]` makes the next calls of `model` fail with those errors, in
# order (tests of the retry layer).
embedding_failures: dict[str, list[str]] = {}


def _embedded(
    model: str, texts: Sequence[Any], fail: Callable[[str, str, float | None], None]
) -> tuple[list[list[float]], int]:
    """The vectors and the token count of an offline embedding call (its scripted failure first)."""
    from cmdc_nb.providers.hashing import hash_vectors

    name = model.removeprefix("scripted/")
    pending = embedding_failures.get(name) or embedding_failures.get(model)
    if pending:
        fail(pending.pop(0), model, 0.0)
    m = re.search(r"(\d+)$", name)
    dims = int(m.group(1)) if m else 256
    strings = [t if isinstance(t, str) else str(t) for t in texts]
    vectors = hash_vectors(strings, dims)
    tokens = sum(max(1, math.ceil(len(t) / 4)) for t in strings)
    return [vectors[i].tolist() for i in range(len(strings))], tokens


def embed(model: str, texts: Sequence[str]) -> tuple[list[list[float]], int]:
    """An offline embedding call served in-process: the vectors and the tokens litellm would report."""
    return _embedded(model, texts, _raise_typed)


def _embedding_response(model: str, texts: list[Any], response: Any) -> Any:
    vectors, tokens = _embedded(model, texts, raise_error)
    response.data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(vectors)]
    response.model = model
    import litellm

    response.usage = litellm.Usage(prompt_tokens=tokens, completion_tokens=0, total_tokens=tokens)
    return response
