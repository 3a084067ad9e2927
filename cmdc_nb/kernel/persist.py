"""Storing an agent's turns through the domain services: messages, one agent call per LLM request,
tool uses with their approvals, and (through `complete_agent_call`) cost records.

Writes run in a worker thread, so a notebook's event loop keeps running while SQLite or PostgreSQL
works (a round's two fast writes on SQLite run on the loop's thread when they need not wait: see
`MessageRecorder._write`); writes of one agent are awaited in order, as they happened. On PostgreSQL a round's fast writes go
as one statement each, sent from the loop itself on its own async connection when they can
(`MessageRecorder._statement`), else on a thread.
An agent without a session records nothing (every method returns None).

Long because the recorder is the kernel's one door to the services (an import contract keeps it so):
the whole storage protocol of a run — calls, their fast path, tool uses and decisions — lives on this
class, with its message half in `persist_messages`.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from cmdc_nb._plumbing import lookups
from cmdc_nb._plumbing.proc import process_origin
from cmdc_nb.kernel.persist_messages import MessageRecorder
from cmdc_nb.kernel.stored import StoredToolUse, blocks, history_from_rows, prompt_delta, storable, stored
from cmdc_nb.providers import Completion, TokenUsage, ToolCall
from cmdc_nb.store.values import storable_json, utcnow

__all__ = ["Recorder", "StoredToolUse", "history_from_rows"]  # the last two from kernel.stored

T = TypeVar("T")


@dataclass
class _Held:
    """A completed call the fast path has not written yet (see Recorder.flush)."""

    draft: Any
    done: dict[str, Any]
    price: Any
    cell: str | None
    message: Any


def _says_something(policy: Mapping[str, Any]) -> bool:
    """Whether a tool's policy differs from none at all (no approval class, effects or capabilities)."""
    return policy.get("approval_class") not in (None, "none") or bool(
        policy.get("side_effects") or policy.get("capabilities")
    )


class Recorder(MessageRecorder):
    def __init__(
        self,
        session: Any,
        ws: Any = None,
        *,
        record_messages: bool = True,
        workflow_step: tuple[Any, Any] | None = None,
        agent_name: str | None = None,
    ) -> None:
        self.record_messages = record_messages
        self.agent_name = agent_name
        self.workflow_run_id: Any = workflow_step[0] if workflow_step else None
        self.workflow_step_id: Any = workflow_step[1] if workflow_step else None
        self.session_id: uuid.UUID | None = None
        self.user_id: uuid.UUID | None = None
        self.ws = ws
        # The fast path (services.agents.rounds): calls sent but not stored yet, a completed call held
        # until its first tool use is stored with it, tool uses stored by it, and the write in flight.
        self._drafts: dict[str, Any] = {}
        self._held: _Held | None = None
        self._fast_tools: dict[str, tuple[Any, Any]] = {}
        self._inflight: asyncio.Future[Any] | None = None
        # A tool's end being stored while the loop goes on (`_tool_end_fast`), and the prompts that
        # refer to its result message meanwhile: (draft, its reference and copy without that message).
        self._ending: asyncio.Future[Any] | None = None
        self._unconfirmed: list[tuple[Any, dict[str, Any] | None, list[Any]]] = []
        # The newest stored call's id and whole prompt: the next prompt is stored as a reference to it
        # plus what follows (kernel.stored.prompt_delta).
        self._prompt_base: tuple[str, list[Any], str | None] | None = None
        # The messages this recorder stored since the base's prompt, as (sequence, message as sent):
        # when the next prompt adds exactly these, it refers to them instead of copying them (None: a
        # message it cannot refer to was stored, or the base was not stored by the fast path).
        self._after_base: list[tuple[int, dict[str, Any]]] | None = None
        self.stored_files: set[str] = set()  # SHA-256s of the files stored with this session's messages
        if session is not None:
            from cmdc_nb.services import sessions

            row = sessions.get_session(session, ws=ws)
            self.session_id, self.user_id = row.id, row.user_id

    @property
    def enabled(self) -> bool:
        return self.session_id is not None

    @property
    def backend(self) -> str:
        """The workspace's database ("sqlite" or "postgresql")."""
        from cmdc_nb._plumbing.workspace import get_workspace

        return get_workspace(self.ws).backend

    @property
    def shares_events(self) -> bool:
        """Whether other processes' committed events reach this workspace's bus (team mode)."""
        from cmdc_nb._plumbing.workspace import get_workspace

        return self.enabled and get_workspace(self.ws).shares_events

    # -- pricing --------------------------------------------------------------------------------------
    def pricer(self, cassette: Any) -> Callable[[str, TokenUsage], Decimal | None] | None:
        """Who prices a call as it completes. A stored call is priced by `complete_agent_call`, inside
        its own transaction (no extra read on the loop's thread); the provider layer prices only what
        nothing stores, or what a cassette records (the cost goes into the recording)."""
        return self.price if not self.enabled or cassette is not None else None

    def price(self, model: str, usage: TokenUsage) -> Decimal | None:
        """The exact cost of a call: the workspace's price table when the agent stores, else the
        offline/litellm prices (an agent with no session does not open a database just to price)."""
        from cmdc_nb.providers.catalog import Price

        price: Price | None
        if self.enabled:
            from cmdc_nb.services import pricing

            price = pricing.get_price(model, ws=self.ws)
        else:  # the model catalogue only: a session-less agent's first call loads no ORM
            from cmdc_nb.providers import catalog

            provider = model.split("/", 1)[0]
            price = (
                catalog.Price(model, Decimal(0), Decimal(0), source="free")
                if provider in catalog.FREE_PROVIDERS
                else catalog.litellm_price(model)
            )
        if price is None:
            return None
        return price.cost(
            tokens_in=usage.input,
            tokens_out=usage.output,
            cache_read=usage.cache_read,
            cache_write=usage.cache_write,
        )

    # -- agent calls ----------------------------------------------------------------------------------
    async def start_call(
        self,
        *,
        model: str,
        messages: Sequence[Mapping[str, Any]],
        system_prompt: str | None,
        temperature: float | None,
        max_tokens: int | None,
        tools: Sequence[str],
        turn: int,
        purpose: str | None = None,
    ) -> str | None:
        if not self.enabled:
            return None
        fast = await self._fast(model, temperature)
        if not fast or self._held is not None or self._inflight is not self._ending:
            await self.flush()  # a tool's end still being stored need not be: see `_tool_end_fast`
        from cmdc_nb.services import agents

        meta = storable_json(
            {
                "turn": turn,
                **({"purpose": purpose} if purpose else {}),
                # who asked, and from where: the approval queue says it of each item it shows
                **({"agent": self.agent_name} if self.agent_name else {}),
                "origin": process_origin(),
            }
        )
        if fast:
            # Nothing is written before the request: the call is stored complete with its response
            # (a crash meanwhile loses only the request, which resuming sends again).
            from cmdc_nb._plumbing import validate as v
            from cmdc_nb.services.agents import rounds

            whole, tail, ref, system = prompt_delta(
                self._prompt_base, messages, storable(system_prompt), self.stored_files
            )
            copy = (ref, tail)
            ref, tail = self._refer_to_messages(ref, tail)
            draft = rounds.CallDraft(
                session_id=self.session_id,  # type: ignore[arg-type]
                user_id=self.user_id,  # type: ignore[arg-type]
                model=model,
                provider=model.split("/", 1)[0],
                prompt_messages=tail,
                prompt_ref=ref,
                prompt_whole=whole,
                system_prompt=system,
                system_whole=storable(system_prompt),
                temperature=temperature,
                max_tokens=max_tokens,
                tools_provided=list(tools),
                meta=meta,
                workflow_run_id=v.id_or_none(self.workflow_run_id, "workflow_run"),
                workflow_step_id=v.id_or_none(self.workflow_step_id, "workflow_step"),
            )
            self._drafts[str(draft.id)] = draft
            if self._ending is not None and ref is not copy[0]:  # refers to a result not yet stored
                self._unconfirmed.append((draft, *copy))
            return str(draft.id)
        whole = prompt_delta(None, messages, files=self.stored_files)[0]  # the services' path: all of it
        call = await self._run(
            agents.create_agent_call,
            self.session_id,
            model=model,
            prompt_messages=whole,
            system_prompt=storable(system_prompt),
            temperature=temperature,
            max_tokens=max_tokens,
            tools_provided=list(tools),
            workflow_run=self.workflow_run_id,
            workflow_step=self.workflow_step_id,
            metadata=meta,
        )
        self._prompt_base = (str(call.id), whole, storable(system_prompt))
        self._after_base = None  # its reply is stored by the services: not referred to
        return str(call.id)

    async def _fast(self, model: str, temperature: float | None) -> bool:
        """Whether a call can take the fast path: no budget applies (remembered), no one is acted for
        (access checks), and nothing the service would refuse."""
        from cmdc_nb._plumbing.workspace import get_workspace

        ws = get_workspace(self.ws)
        if ws.acting_user_id is not None or "/" not in model or len(model) > 200:
            return False
        if temperature is not None and not 0 <= temperature <= 2:
            return False
        applies = lookups.cached(ws, ("budgets", self.user_id, self.session_id))
        if applies is lookups.MISS:
            from cmdc_nb.services.agents import rounds

            applies = await self._run(rounds.budgets_apply, self.user_id, self.session_id)
        return not applies

    async def _materialize(self, call_id: str | None) -> None:
        """Store a fast call still in flight, so the services can fail, retry or cancel it."""
        draft = self._drafts.get(call_id) if call_id is not None else None
        if draft is not None:
            from cmdc_nb.services.agents import rounds

            await self.flush()  # its prompt may refer to a tool's result still being stored
            self._drafts.pop(str(draft.id), None)
            await self._run(rounds.store_pending, draft)
            self._prompt_base = draft.as_base()
            self._after_base = None

    async def flush(self) -> None:
        """Write what the fast path holds (a completed call waiting for its first tool use), and wait
        for a write in flight: every other write and read comes after it. The agent flushes as each run
        ends."""
        while True:
            inflight = self._inflight
            if inflight is None:  # the write in flight first: it began before the held call
                held, self._held = self._held, None
                if held is None:
                    return
                inflight = self._inflight = asyncio.ensure_future(self._write_held(held, None))
            try:
                await asyncio.shield(inflight)
            finally:  # a failed write is reported once; one still running (we were cancelled) stays
                if self._inflight is inflight and inflight.done():
                    self._inflight = None

    def _then(self, write: Callable[[], Awaitable[None]]) -> None:
        """Make `write` the write in flight, started once the one before it has ended: writes are
        stored in the order they were made. It is made even when the one before failed (a call the
        provider answered is still stored); that failure is then the one reported."""
        before = self._inflight
        if before is None or (before.done() and not before.cancelled() and before.exception() is None):
            self._inflight = asyncio.ensure_future(write())  # nothing to wait for: one task fewer
            return

        async def after() -> None:
            failed: BaseException | None = None
            if before is not None:
                try:
                    await asyncio.shield(before)
                except Exception as exc:
                    failed = exc
            await write()
            if failed is not None:
                raise failed

        self._inflight = asyncio.ensure_future(after())

    async def _write_held(self, held: _Held, tool: Any) -> None:
        """A completed call's write (with its first tool use): on PostgreSQL one statement sent from
        the loop itself when it can be (`_statement`), else `_write_call`."""
        from cmdc_nb.services.agents import round_statements as rs

        tools = [tool] if tool is not None else []
        if self.backend == "postgresql":  # asked again when forgotten since the call began (a slow model)
            from cmdc_nb._plumbing.workspace import get_workspace

            if (
                lookups.cached(get_workspace(self.ws), ("budgets", self.user_id, self.session_id))
                is lookups.MISS
            ):
                from cmdc_nb.services.agents import rounds

                await self._run(rounds.budgets_apply, self.user_id, self.session_id)
        found = await self._statement(
            lambda w: rs.plan_call(w, held.draft, held.done, held.price, held.cell, held.message, tools,
                                   self._next_sequence(), may_read=False),
            lambda seq: self._call_written(held, seq),
        )  # fmt: skip
        if found is rs.NOT_HERE:
            await self._write(self._write_call, held, tool)

    def _write_call(self, held: _Held, tool: Any, ws: Any = None, wait: bool = True) -> None:
        from cmdc_nb.services.agents import rounds

        seq = rounds.write_call(
            held.draft, held.done, held.price, cell=held.cell, message=held.message,
            tool_uses=[tool] if tool is not None else [], expect_seq=self._next_sequence(), ws=ws, wait=wait,
        )  # fmt: skip
        self._call_written(held, seq)

    def _call_written(self, held: _Held, seq: int | None) -> None:
        self._prompt_base = held.draft.as_base()  # committed: a base now
        self._after_base = []
        m = held.message
        if m is not None and seq is not None:
            self.stored_message(seq, m.role, m.content, m.content_blocks, m.meta)

    async def streaming(self, call_id: str | None) -> None:
        draft = self._drafts.get(call_id) if call_id is not None else None
        if draft is not None:  # remembered, stored with the completion
            draft.first_token_at = draft.first_token_at or utcnow()
            return
        if call_id is not None:
            from cmdc_nb.services import agents

            await self._run(agents.start_streaming, call_id)

    async def complete_response(
        self, call_id: str | None, done: Completion, *, message: bool = True
    ) -> Decimal | None:
        """The call completed and the assistant message, in one transaction: a crash can never leave
        a completed call whose tool calls are missing from the conversation. Returns the exact cost."""
        if call_id is None:
            return done.cost_usd
        if call_id in self._drafts:
            # still a draft until the price is known: an abort meanwhile finds it there to store
            return await self._complete_fast(self._drafts[call_id], done, message)
        from cmdc_nb._plumbing.workspace import get_workspace
        from cmdc_nb.services import agents, sessions

        def work(ws: Any = None) -> Decimal | None:
            with get_workspace(ws).transaction():
                row = agents.complete_agent_call(
                    call_id,
                    response_content=storable(done.text) or None,
                    response_blocks=storable_json([c.to_message() for c in done.tool_calls]),
                    stop_reason=done.finish_reason,
                    tokens_in=done.usage.input,
                    tokens_out=done.usage.output,
                    cache_tokens_read=done.usage.cache_read,
                    cache_tokens_write=done.usage.cache_write,
                    cost_usd=done.cost_usd,
                    ws=ws,
                )
                if not self.record_messages or not message:
                    cost: Decimal | None = row.cost_usd
                    return cost
                sessions.create_message(
                    self.session_id,  # type: ignore[arg-type]
                    role="assistant",
                    content=storable(done.text) if done.text or not done.tool_calls else "",
                    content_blocks=storable_json(blocks(done.tool_calls)),
                    agent_call=call_id,
                    ws=ws,
                )
                return row.cost_usd

        return await self._run(work)

    async def _complete_fast(self, draft: Any, done: Completion, message: bool) -> Decimal | None:
        """The fast path's completion: priced here (remembered price), written at once — or, when the
        response asks for tools, held until the first tool use is stored with it."""
        from cmdc_nb._plumbing.service import jsonable
        from cmdc_nb._plumbing.workspace import get_workspace
        from cmdc_nb.services import costs
        from cmdc_nb.services.agents import rounds
        from cmdc_nb.store.values import to_money

        u = done.usage
        price = None
        cost = to_money(done.cost_usd, field="cost_usd") if done.cost_usd is not None else None
        if cost is None:
            ws = get_workspace(self.ws)
            price = lookups.cached(ws, ("price", draft.model, draft.provider))
            if price is lookups.MISS:
                price = await self._run(rounds.price_of, draft.model, draft.provider)
            if price is not None:
                cost = price.cost(
                    tokens_in=u.input, tokens_out=u.output, cache_read=u.cache_read, cache_write=u.cache_write
                )
        self._drafts.pop(str(draft.id), None)  # no await from here until it is held or written
        cols = {
            "response_content": storable(done.text) or None,
            "response_blocks": jsonable(storable_json([c.to_message() for c in done.tool_calls])),
            "stop_reason": done.finish_reason,
            "tokens_in": u.input,
            "tokens_out": u.output,
            "cache_tokens_read": u.cache_read,
            "cache_tokens_write": u.cache_write,
            "cost_usd": cost,
        }
        msg = None
        if self.record_messages and message:
            msg = rounds.NewMessage(
                role="assistant",
                content=storable(done.text) if done.text or not done.tool_calls else "",
                content_blocks=storable_json(blocks(done.tool_calls)),
                agent_call_id=draft.id,
            )
        held = _Held(draft, cols, price, costs.current_notebook_cell(), msg)
        if msg is not None and done.tool_calls:
            self._held = held  # stored with the first tool use, before that tool runs
        else:
            self._then(lambda: self._write_held(held, None))
            await self.flush()
        return cost

    async def fail_call(self, call_id: str | None, kind: str, message: str, *, timeout: bool = False) -> None:
        if call_id is None:
            return
        await self._materialize(call_id)
        from cmdc_nb.services import agents

        if timeout:
            await self._run(agents.timeout_agent_call, call_id, error_message=message)
        else:
            await self._run(agents.fail_agent_call, call_id, error_type=kind, error_message=message)

    async def retry_call(self, call_id: str | None) -> None:
        await self._materialize(call_id)
        if call_id is not None:
            from cmdc_nb.services import agents

            await self._run(agents.retry_agent_call, call_id)

    async def cancel_call(self, call_id: str | None, reason: str) -> None:
        await self.flush()
        await self._materialize(call_id)
        if call_id is not None:
            from cmdc_nb.services import agents

            await self._run(agents.cancel_agent_call, call_id, reason=reason)

    # -- tool uses -----------------------------------------------------------------------------------
    async def tool_use(
        self,
        agent_call_id: str | None,
        call: ToolCall,
        args: Mapping[str, Any],
        policy: Mapping[str, Any],
        requires: bool,
        schema: Any,
    ) -> StoredToolUse | None:
        if agent_call_id is None:
            return None
        held = self._held
        if held is not None and str(held.draft.id) == agent_call_id and not requires:
            return await self._tool_use_fast(held, call, args, policy, schema)
        await self.flush()
        from cmdc_nb._plumbing.workspace import get_workspace
        from cmdc_nb.services import agents

        def work(ws: Any = None) -> Any:
            # A call that needs no approval starts executing in the same transaction it is recorded in:
            # one write fewer, and `executing` is still stored before the tool runs (never re-run on resume).
            with get_workspace(ws).transaction():
                row = agents.create_tool_use(
                    agent_call_id,
                    tool_name=call.name,
                    input=storable_json(dict(args)),
                    tool_use_id=call.id,
                    tool_schema=schema if requires else None,  # only a decision's form reads it
                    policy=policy if _says_something(agents.normalize_policy(policy)) else None,
                    requires_approval=requires,
                    ws=ws,
                )
                if not requires:
                    row = agents.start_tool_execution(row, ws=ws)
                return row

        return stored(await self._run(work))

    async def _tool_use_fast(
        self, held: _Held, call: ToolCall, args: Mapping[str, Any], policy: Mapping[str, Any], schema: Any
    ) -> StoredToolUse:
        """The held call, its message and this tool use (`executing`), in one transaction."""
        from cmdc_nb._plumbing.service import jsonable
        from cmdc_nb.services import agents
        from cmdc_nb.services.agents import rounds

        tool = rounds.NewToolUse(
            tool_name=call.name,
            tool_use_id=call.id,
            input=jsonable(storable_json(dict(args))),
            # runs at once: no form needs its schema, and a policy that says nothing is not stored
            meta={"policy": pol} if _says_something(pol := agents.normalize_policy(policy)) else {},
            sequence=1,
        )
        self._held = None
        self._then(lambda: self._write_held(held, tool))
        await self.flush()
        self._fast_tools[str(tool.id)] = (tool, held.draft)
        return StoredToolUse(id=str(tool.id), status="executing", input=tool.input, approval_id=None)

    async def _tool_end_fast(
        self, tool_use_id: str, output: str | None, error: tuple[str, str, bool] | None, result: Any
    ) -> bool:
        """A fast tool use's end, with its result message when the loop hands it over (`result`: the
        content and the message's meta). Returns whether the message was stored."""
        from cmdc_nb.services.agents import round_statements, rounds

        tool, draft = self._fast_tools.pop(tool_use_id)
        msg = None
        if result is not None and self.record_messages:
            content, meta = result
            msg = rounds.NewMessage(
                role="tool_result",
                content=storable(content),
                meta=storable_json(dict(meta)),
                tool_use_id=tool.id,
            )

        def written(seq: int | None) -> None:
            if msg is not None and seq is not None:
                self.stored_message(seq, msg.role, msg.content, msg.content_blocks, msg.meta)

        def work(expect: int | None, ws: Any = None, wait: bool = True) -> int | None:
            return rounds.write_tool_end(
                tool, draft.id, draft.session_id, draft.user_id, draft.started_at,
                output=output, error=error, message=msg, expect_seq=expect, ws=ws, wait=wait,
            )  # fmt: skip

        await self.flush()
        expect = self._next_sequence()
        sent = self._send(  # one statement sent from the loop itself, when it can be
            lambda w: round_statements.plan_tool_end(
                w, tool, draft.id, draft.session_id, draft.started_at, output, error, msg, expect
            )
        )
        if sent is round_statements.NOT_HERE:
            written(await self._write(functools.partial(work, expect)))
            return msg is not None
        # Not awaited here: the server stores the end while the loop goes on — builds and sends the
        # next request, whose reply takes far longer than the write with a real model — and the next
        # write waits for it (`_then`), as does every read and the run's end (`flush`). A crash
        # meanwhile finds what it found before: the tool done, or still executing (never re-run).
        # The result message is noted now with the sequence predicted for it (the server checks
        # it), so the next prompt can refer to it; `_tool_end_ended` puts right what another
        # outcome makes wrong.
        if msg is not None and expect is not None:
            self.stored_message(expect, msg.role, msg.content, msg.content_blocks, msg.meta)
        self._inflight = self._ending = asyncio.ensure_future(
            self._tool_end_ended(sent, work, expect, msg, draft.session_id)
        )
        await asyncio.sleep(0)  # the loop runs the statement's task now, which sends it
        return msg is not None

    async def _tool_end_ended(
        self,
        sent: asyncio.Future[Any],
        work: Callable[..., int | None],
        expect: int | None,
        msg: Any,
        session_id: Any,
    ) -> None:
        """A tool's end sent and not awaited (`_tool_end_fast`): its outcome. When the server stored
        the message at another sequence (another writer's message came first), or nothing at all,
        the prompts that referred to it keep their copy, and what was noted is forgotten. A tool use
        cancelled elsewhere between its tool's return and this write keeps its cancel; the result the
        loop has already handed on is stored as a message of its own (as a batch's results are), so the
        stored conversation is the one the model was sent."""
        from cmdc_nb.errors import InvalidStateError
        from cmdc_nb.services import sessions
        from cmdc_nb.services.agents import round_statements

        seq: Any = None
        try:
            try:
                seq = await asyncio.shield(sent)
                if seq is round_statements.NOT_HERE:
                    seq = await self._write(functools.partial(work, expect))
            except InvalidStateError as exc:
                if exc.kind != "tool_use":
                    raise
                if msg is not None:  # (without one, the loop stores the result itself)
                    row = await self._run(
                        sessions.create_message, session_id, role=msg.role, content=msg.content,
                        content_blocks=msg.content_blocks, tool_use=msg.tool_use_id, metadata=msg.meta,
                    )  # fmt: skip
                    seq = row.sequence
        finally:
            if msg is not None and seq != expect:
                for draft, ref, tail in self._unconfirmed:
                    draft.prompt_ref, draft.prompt_messages = ref, tail
                self._after_base = None
                self._last_seq = seq if isinstance(seq, int) else None
            self._unconfirmed.clear()
            if self._ending is asyncio.current_task():
                self._ending = None

    async def tool_uses_of(self, agent_call_id: str) -> dict[str, StoredToolUse]:
        """The stored tool uses of one agent call, by the model's call id (one read, through the service)."""
        from cmdc_nb.services import agents

        await self.flush()
        page = await self._run(agents.list_tool_uses, agent_call_id, limit=1000)
        return {t.tool_use_id: stored(t) for t in page.entries if t.tool_use_id}

    async def get_tool_use(self, tool_use_id: str) -> StoredToolUse:
        from cmdc_nb.services import agents

        await self.flush()
        return stored(await self._run(agents.get_tool_use, tool_use_id))

    async def tool_started(self, tool_use_id: str | None) -> None:
        if tool_use_id is not None:
            from cmdc_nb.services import agents

            await self.flush()
            await self._run(agents.start_tool_execution, tool_use_id)

    async def tool_done(self, tool_use_id: str | None, content: str, *, result: Any = None) -> bool:
        """The tool ran. With `result` (content, meta), its result message is stored in the same
        transaction when the fast path stored the tool use; returns whether it was."""
        if tool_use_id in self._fast_tools:
            return await self._tool_end_fast(tool_use_id, storable(content), None, result)
        if tool_use_id is not None:
            from cmdc_nb.services import agents

            await self.flush()
            await self._run(agents.complete_tool_use, tool_use_id, output=storable(content))
        return False

    async def tool_failed(
        self, tool_use_id: str | None, kind: str, message: str, *, timed_out: bool = False, result: Any = None
    ) -> bool:
        # A tool's exception says what it likes (NUL, lone surrogates): stored as both backends can
        # hold it, or recording the failure would fail the turn.
        message = storable(message) or ""
        if tool_use_id in self._fast_tools:
            return await self._tool_end_fast(tool_use_id, None, (kind, message, timed_out), result)
        if tool_use_id is not None:
            from cmdc_nb.services import agents

            await self.flush()
            await self._run(
                agents.fail_tool_use, tool_use_id, error_type=kind, error_message=message, timed_out=timed_out
            )
        return False

    async def tool_cancelled(self, tool_use_id: str | None, reason: str) -> None:
        self._fast_tools.pop(tool_use_id or "", None)  # stored: the service cancels it from here on
        await self.flush()
        if tool_use_id is not None:
            from cmdc_nb.services import agents

            await self._run(agents.cancel_tool_use, tool_use_id, reason=reason)

    def decide(
        self,
        tool_use_id: str,
        approve: bool,
        *,
        note: str | None,
        args: Mapping[str, Any] | None,
        by: Any,
        remember: bool,
    ) -> StoredToolUse:
        """Decide a stored tool use. Sync, and never on the loop: the agent runs it in a worker thread."""
        from cmdc_nb.services import agents

        if approve:
            row = agents.approve_tool_use(
                tool_use_id, by=by, note=note, input=storable_json(args), remember=remember, ws=self.ws
            )
        else:
            row = agents.deny_tool_use(tool_use_id, by=by, reason=note, ws=self.ws)
        return stored(row)

    async def decider(self, tool_use_id: str) -> tuple[str, str | None, str | None]:
        """How a decided tool use was decided, by whom and with what note, as the audit
        (`frames.approvals_frame`) says it: ("person", their e-mail), ("rule" or "remembered", the
        rule's name) or ("timeout", None)."""
        from cmdc_nb.errors import NotFoundError
        from cmdc_nb.services import accounts, agents, approvals

        def work(ws: Any = None) -> tuple[str, str | None, str | None]:
            tool = agents.get_tool_use(tool_use_id, ws=ws)
            item = approvals.get_approval_item(tool.approval_id, ws=ws) if tool.approval_id else None
            note = (item.decision_note if item is not None else None) or tool.denial_reason
            person = item.decided_by_id if item is not None else tool.approved_by_id
            if item is not None and item.auto_approval_rule_id is not None:
                try:
                    rule = approvals.get_approval_rule(item.auto_approval_rule_id, ws=ws)
                except NotFoundError:  # deleted since: its reason still names it
                    return "rule", item.auto_approval_reason, note
                return ("remembered" if rule.is_sticky else "rule"), rule.name, note
            if item is not None and (
                item.status.value == "expired" or (item.meta or {}).get("reason") == "timeout"
            ):
                return "timeout", None, note
            return "person", (accounts.get_user(person, ws=ws).email if person else None), note

        return await self._run(work)
