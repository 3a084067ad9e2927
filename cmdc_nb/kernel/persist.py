"""Storing an agent's turns through the domain services: messages, one agent call per LLM request,
tool uses with their approvals, and (through `complete_agent_call`) cost records.

Every write runs in a worker thread, so a notebook's event loop keeps running while SQLite or
PostgreSQL works; writes of one agent are awaited in order, so the store sees them as they happened.
An agent without a session records nothing (every method returns None).
"""

from __future__ import annotations

import asyncio
import functools
import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, TypeVar

from cmdc_nb._plumbing.proc import process_origin
from cmdc_nb.providers import Completion, TokenUsage, ToolCall
from cmdc_nb.store.values import storable_json, storable_text

__all__ = ["Recorder", "StoredToolUse", "history_from_rows"]

T = TypeVar("T")


@dataclass(frozen=True)
class StoredToolUse:
    id: str
    status: str
    input: Mapping[str, Any]
    approval_id: str | None
    requires_approval: bool = False
    output: str | None = None
    error: str | None = None
    denial_reason: str | None = None


def _stored(t: Any) -> StoredToolUse:
    return StoredToolUse(
        id=str(t.id),
        status=str(t.status.value if hasattr(t.status, "value") else t.status),
        input=storable_json(dict(t.input or {})),
        approval_id=str(t.approval_id) if t.approval_id else None,
        requires_approval=bool(t.requires_approval),
        output=t.output,
        error=t.error_message or t.error_type,
        denial_reason=t.denial_reason,
    )


class Recorder:
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
        if session is not None:
            from cmdc_nb.services import sessions

            row = sessions.get_session(session, ws=ws)
            self.session_id, self.user_id = row.id, row.user_id

    @property
    def enabled(self) -> bool:
        return self.session_id is not None

    @property
    def shares_events(self) -> bool:
        """Whether other processes' committed events reach this workspace's bus (team mode)."""
        from cmdc_nb._plumbing.workspace import get_workspace

        return self.enabled and get_workspace(self.ws).shares_events

    async def _run(self, fn: Callable[..., T], /, *args: Any, **kw: Any) -> T:
        return await asyncio.to_thread(functools.partial(fn, *args, ws=self.ws, **kw))

    # -- pricing --------------------------------------------------------------------------------------
    def pricer(self, cassette: Any) -> Callable[[str, TokenUsage], Decimal | None] | None:
        """Who prices a call as it completes. A stored call is priced by `complete_agent_call`, inside
        its own transaction (no extra read on the loop's thread); the provider layer prices only what
        nothing stores, or what a cassette records (the cost goes into the recording)."""
        return self.price if not self.enabled or cassette is not None else None

    def price(self, model: str, usage: TokenUsage) -> Decimal | None:
        """The exact cost of a call: the workspace's price table when the agent stores, else the
        offline/litellm prices (an agent with no session does not open a database just to price)."""
        from cmdc_nb.services import pricing

        if self.enabled:
            price = pricing.get_price(model, ws=self.ws)
        else:
            provider = model.split("/", 1)[0]
            price = (
                pricing.Price(model, Decimal(0), Decimal(0), source="free")
                if provider in pricing.FREE_PROVIDERS
                else pricing.litellm_price(model)
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
        from cmdc_nb.services import agents

        call = await self._run(
            agents.create_agent_call,
            self.session_id,
            model=model,
            prompt_messages=storable_json(list(messages)),
            system_prompt=storable(system_prompt),
            temperature=temperature,
            max_tokens=max_tokens,
            tools_provided=list(tools),
            workflow_run=self.workflow_run_id,
            workflow_step=self.workflow_step_id,
            metadata=storable_json(
                {
                    "turn": turn,
                    **({"purpose": purpose} if purpose else {}),
                    # who asked, and from where: the approval queue says it of each item it shows
                    **({"agent": self.agent_name} if self.agent_name else {}),
                    "origin": process_origin(),
                }
            ),
        )
        return str(call.id)

    async def streaming(self, call_id: str | None) -> None:
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
                    content_blocks=storable_json(_blocks(done.tool_calls)),
                    agent_call=call_id,
                    ws=ws,
                )
                return row.cost_usd

        return await self._run(work)

    async def fail_call(self, call_id: str | None, kind: str, message: str, *, timeout: bool = False) -> None:
        if call_id is None:
            return
        from cmdc_nb.services import agents

        if timeout:
            await self._run(agents.timeout_agent_call, call_id, error_message=message)
        else:
            await self._run(agents.fail_agent_call, call_id, error_type=kind, error_message=message)

    async def retry_call(self, call_id: str | None) -> None:
        if call_id is not None:
            from cmdc_nb.services import agents

            await self._run(agents.retry_agent_call, call_id)

    async def cancel_call(self, call_id: str | None, reason: str) -> None:
        if call_id is not None:
            from cmdc_nb.services import agents

            await self._run(agents.cancel_agent_call, call_id, reason=reason)

    # -- messages ------------------------------------------------------------------------------------
    async def message(
        self,
        role: str,
        content: str | None,
        *,
        tool_calls: Sequence[ToolCall] = (),
        agent_call_id: str | None = None,
        tool_use_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> str | None:
        if not self.enabled or not self.record_messages:
            return None
        from cmdc_nb.services import sessions

        blocks = _blocks(tool_calls)
        row = await self._run(
            sessions.create_message,
            self.session_id,
            role=role,
            content=storable(content) if content is not None or not blocks else "",
            content_blocks=storable_json(blocks),
            agent_call=agent_call_id,
            tool_use=tool_use_id,
            metadata=storable_json(dict(meta or {})),
        )
        return str(row.id)

    def history(self) -> list[Any]:
        """Every stored message of the session, oldest first (sync: called once, when resuming)."""
        from cmdc_nb.services import sessions

        assert self.session_id is not None
        rows: list[Any] = []
        after = None
        while True:
            page = sessions.list_messages(self.session_id, limit=500, after=after, ws=self.ws)
            rows.extend(page.entries)
            if not page.has_next or not page.next_cursor:
                return rows
            after = page.next_cursor

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
                    tool_schema=schema,
                    policy=policy,
                    requires_approval=requires,
                    ws=ws,
                )
                if not requires:
                    row = agents.start_tool_execution(row, ws=ws)
                return row

        return _stored(await self._run(work))

    async def tool_uses_of(self, agent_call_id: str) -> dict[str, StoredToolUse]:
        """The stored tool uses of one agent call, by the model's call id (one read, through the service)."""
        from cmdc_nb.services import agents

        page = await self._run(agents.list_tool_uses, agent_call_id, limit=1000)
        return {t.tool_use_id: _stored(t) for t in page.entries if t.tool_use_id}

    async def get_tool_use(self, tool_use_id: str) -> StoredToolUse:
        from cmdc_nb.services import agents

        return _stored(await self._run(agents.get_tool_use, tool_use_id))

    async def tool_started(self, tool_use_id: str | None) -> None:
        if tool_use_id is not None:
            from cmdc_nb.services import agents

            await self._run(agents.start_tool_execution, tool_use_id)

    async def tool_done(self, tool_use_id: str | None, content: str) -> None:
        if tool_use_id is not None:
            from cmdc_nb.services import agents

            await self._run(agents.complete_tool_use, tool_use_id, output=storable(content))

    async def tool_failed(
        self, tool_use_id: str | None, kind: str, message: str, *, timed_out: bool = False
    ) -> None:
        if tool_use_id is not None:
            from cmdc_nb.services import agents

            await self._run(
                agents.fail_tool_use, tool_use_id, error_type=kind, error_message=message, timed_out=timed_out
            )

    async def tool_cancelled(self, tool_use_id: str | None, reason: str) -> None:
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
        return _stored(row)

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


def storable(text: str | None) -> str | None:
    """`text` as both backends can store it (see `storable_text`): a tool's or a model's odd bytes
    must not fail the turn."""
    return None if text is None else storable_text(text)


def _blocks(tool_calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [
        {"type": "tool_call", "id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in tool_calls
    ]


def history_from_rows(rows: Sequence[Any]) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Stored messages as litellm messages, and for each tool call id the agent call that asked for it."""
    out: list[dict[str, Any]] = []
    call_of: dict[str, str] = {}
    for r in rows:
        role = str(r.role.value if hasattr(r.role, "value") else r.role)
        if role == "tool_result":
            out.append(
                {
                    "role": "tool",
                    "tool_call_id": (r.meta or {}).get("tool_call_id", ""),
                    "content": r.content or "",
                }
            )
            continue
        msg: dict[str, Any] = {"role": role, "content": r.content}
        calls = [
            b for b in (r.content_blocks or []) if isinstance(b, Mapping) and b.get("type") == "tool_call"
        ]
        if calls:
            msg["tool_calls"] = [
                {
                    "id": b["id"],
                    "type": "function",
                    "function": {
                        "name": b["name"],
                        "arguments": json.dumps(b.get("arguments") or {}, sort_keys=True),
                    },
                }
                for b in calls
            ]
            if r.agent_call_id is not None:
                for b in calls:
                    call_of[str(b["id"])] = str(r.agent_call_id)
            msg["content"] = r.content or None
        out.append(msg)
    return out, call_of
