"""One request to the model: the prompt as sent, the stream as it arrives, the stored call, the bill.

`Requester._request` is a turn's call to the model. It runs the `before_request` hook (and compacts
first when the conversation is near the context window), builds the system prompt and the messages,
opens a stored agent call, streams the response through the provider layer (the only retry layer,
with fallback models), and accounts for it: the call completed with its exact cost, the usage and cost
added to the run and the agent, and `response_complete` / `turn_complete` emitted. `_Stream` holds what
one streamed request needs between its callbacks.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cmdc_nb.errors import ProviderError
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.compaction import Compaction
from cmdc_nb.kernel.plugins import Hook
from cmdc_nb.kernel.prompts import build_system_prompt
from cmdc_nb.kernel.run_state import AgentState, Run, add_cost
from cmdc_nb.kernel.stream_tags import MAX_TITLE_CHARS, TagExtractor, strip_tags
from cmdc_nb.providers import Completion, ProviderRequest, StreamPart, stream_completion

__all__ = ["Requester"]


class _Stream:
    """The callbacks of one streamed request and what they share: whether the first chunk came, the
    write that marks the call streaming, and text held back for the output filters."""

    def __init__(self, agent: Requester, run: Run, system: str | None) -> None:
        self.agent = agent
        self.run = run
        self.system = system
        self.first = asyncio.Event()
        self.writes: list[asyncio.Task[None]] = []
        self.held: list[str] = []  # the last partial word, while output filters are on
        self.tags = TagExtractor() if agent.options.stream_tags else None

    async def start_call(self, model: str) -> str | None:
        a = self.agent
        return await a.recorder.start_call(
            model=model,
            messages=a.messages,
            system_prompt=self.system,
            temperature=a.options.temperature,
            max_tokens=a.options.max_tokens,
            tools=list(a.tools),
            turn=self.run.turns,
        )

    def on_part(self, part: StreamPart) -> None:
        a, run = self.agent, self.run
        if run.abort is not None:
            return  # nothing after agent_abort
        if not self.first.is_set():
            self.first.set()
            a.state = AgentState.STREAMING
            a.emit(ev.MessageStart(run.turns, a.model))
            self.writes.append(asyncio.ensure_future(a.recorder.streaming(run.call_id)))
        if part.kind == "text":
            text = part.text
            if self.tags is not None:
                text, found = self.tags.feed(text)
                self._tagged(found)
            if text:
                self._text(text)
        elif part.kind == "thinking":
            a.emit(ev.ThinkingDelta(part.text))

    def _text(self, text: str) -> None:
        a = self.agent
        if a.output_filters:
            # Hold back the last partial word so a secret split across chunks is still caught.
            self.held.append(text)
            text = "".join(self.held)
            cut = max(text.rfind(" "), text.rfind("\n")) + 1
            if cut > 0:
                self.held[:] = [text[cut:]]
                a.emit(ev.MessageDelta(a._filtered(text[:cut])))
            return
        a.emit(ev.MessageDelta(text))

    def _tagged(self, found: list[tuple[str, str]]) -> None:
        a = self.agent
        for tag, content in found:
            if tag == "status":
                a.emit(ev.StatusUpdate(content))
            elif content:
                a.title = content[:MAX_TITLE_CHARS]
                a.emit(ev.TitleGenerated(a.title))

    async def _fail_attempt(self, err: ProviderError) -> None:
        if self.tags is not None:  # the next attempt streams its reply from the start
            self.tags = TagExtractor()
        if self.writes:
            await self.writes.pop()
        self.first.clear()
        await self.agent.recorder.fail_call(
            self.run.call_id, err.kind, str(err), timeout=err.kind == "timeout"
        )

    async def on_retry(self, attempt: int, delay: float, err: ProviderError) -> None:
        self.agent.emit(ev.Retry(attempt, delay, err.kind, str(err)))
        await self._fail_attempt(err)
        await self.agent.recorder.retry_call(self.run.call_id)

    async def on_fallback(self, old: str, new: str, err: ProviderError) -> None:
        # The failed model's call is recorded as failed; the fallback model gets a call of its own.
        self.agent.emit(ev.ModelFallback(old, new, str(err)))
        await self._fail_attempt(err)
        self.run.call_id = await self.start_call(new)

    async def failed(self, err: ProviderError) -> None:
        for write in self.writes:
            await write
        self.agent.emit(ev.StreamError(err.kind, str(err)))
        await self.agent.recorder.fail_call(
            self.run.call_id, err.kind, str(err), timeout=err.kind == "timeout"
        )
        self.run.call_id = None

    async def finished(self, done: Completion) -> None:
        a = self.agent
        for write in self.writes:
            await write
        if self.tags is not None:
            rest, found = self.tags.feed("", final=True)
            self._tagged(found)
            if rest:
                self._text(rest)
            done.text = strip_tags(done.text)[0]
        if self.held and "".join(self.held):
            a.emit(ev.MessageDelta(a._filtered("".join(self.held))))
        if a.output_filters:
            done.text = a._filtered(done.text)
        if not self.first.is_set():  # a response with no chunks still moves the call through streaming
            a.emit(ev.MessageStart(self.run.turns, done.model))
            await a.recorder.streaming(self.run.call_id)


class Requester(Compaction):
    """The agent's part that talks to the model (see the module docstring)."""

    _last_request: ProviderRequest | None

    @property
    def last_request(self) -> ProviderRequest | None:
        """The newest request of a turn, as it went to the provider layer: the model, the messages
        (the system prompt first), the tools' JSON schemas, max_tokens, temperature. It is set just
        before `request_start` is emitted, so a subscriber sees every request of a run:

        >>> sent = []
        >>> def keep(env):
        ...     if env.type == "request_start":
        ...         sent.append(agent.last_request)
        >>> agent.events.subscribe(keep)

        A retry or a fallback model sends the same messages again; compaction's summary calls are
        not turns and do not show here. None before the first request."""
        return self._last_request

    async def _request(self, run: Run) -> tuple[Completion, str | None]:
        await self._before_request(run)
        system = build_system_prompt(self)
        messages = ([{"role": "system", "content": system}] if system else []) + self.messages
        self.state = AgentState.RUNNING
        stream = _Stream(self, run, system)
        run.call_id = await stream.start_call(self.model)
        request = self._last_request = self._provider_request(messages)
        self.emit(ev.RequestStart(self.model, len(messages), run.turns, run.call_id))
        try:
            done = await stream_completion(
                request,
                on_part=stream.on_part,
                retry=self.options.retry,
                fallbacks=self.options.fallback_models,
                cassette=self.options.cassette,
                pricer=self.recorder.pricer(self.options.cassette),
                on_retry=stream.on_retry,
                on_fallback=stream.on_fallback,
            )
        except ProviderError as err:
            await stream.failed(err)
            raise
        await stream.finished(done)
        call_id = run.call_id
        await self._account(run, done)
        return done, call_id

    async def _before_request(self, run: Run) -> None:
        if self._compaction_due():
            await self.compact(keep_last=self.options.compact_keep_last, during_run=True)
        out = await self._hook(Hook.BEFORE_REQUEST, {"messages": list(self.messages), "model": self.model})
        self._plugin_control(run, out, Hook.BEFORE_REQUEST)
        if out.intervention:
            await self._intervene(out.intervention, Hook.BEFORE_REQUEST)
        run.turns += 1
        self.turns += 1

    def _provider_request(self, messages: list[dict[str, Any]]) -> ProviderRequest:
        return ProviderRequest(
            model=self.model,
            messages=messages,
            tools=[t.schema() for t in self.tools.values()],
            max_tokens=self.options.max_tokens,
            temperature=self.options.temperature,
            extra=self.provider_opts,
            timeout_s=self.options.request_timeout_s,
        )

    async def _account(self, run: Run, done: Completion) -> None:
        """The call completed and billed, the reply in the conversation, the totals, the events."""
        call_id = run.call_id
        cost = await self.recorder.complete_response(run.call_id, done)
        self.messages.append(done.message())
        done.cost_usd = cost
        run.call_id = None
        self.usage += done.usage
        run.usage += done.usage
        self.cost_usd = add_cost(self.cost_usd, cost)
        run.cost = add_cost(run.cost, cost)
        if done.text:
            run.texts.append(done.text)
            self.last_reply = done.text
        self.emit(
            ev.ResponseComplete(
                done.text,
                tuple(c.to_message() for c in done.tool_calls),
                done.finish_reason,
                done.model,
                done.usage,
                cost,
                done.attempts,
                call_id,
            )
        )
        self.emit(ev.TurnComplete(run.turns, done.usage, cost))
