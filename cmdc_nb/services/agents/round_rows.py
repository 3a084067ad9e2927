"""What a stored agent round writes: the loop's drafts of its rows, the rows themselves and their events.

`rounds` writes them with statements, `round_functions` hands them to PostgreSQL's functions; both
build them here, so the two paths store and publish the same things.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing.workspace import Statement, Tx
from cmdc_nb.events import topics
from cmdc_nb.services import costs
from cmdc_nb.services.cost_rows import CostRows, cost_rows
from cmdc_nb.services.pricing import Price
from cmdc_nb.store.enums import (
    ActivityAction,
    AgentCallStatus,
    CostService,
    CostSourceType,
    MessageRole,
    ToolUseStatus,
)
from cmdc_nb.store.models import ActivityLog, AgentCall, Message, ToolUse
from cmdc_nb.store.prepared import Prepared
from cmdc_nb.store.values import storable_text, utcnow

__all__ = [
    "INSERT_AUDIT",
    "INSERT_CALL",
    "INSERT_MESSAGE",
    "INSERT_TOOL_USES",
    "CallDraft",
    "NewMessage",
    "NewToolUse",
    "audit_row",
    "audited",
    "call_audit",
    "call_payload",
    "call_row",
    "completed_call_row",
    "completed_with_cost",
    "cost_fields",
    "ended_tool",
    "message_row",
    "publish_call",
    "publish_message",
    "publish_tool_end",
    "session_counters",
    "tool_payload",
    "tool_use_row",
]


@dataclass
class CallDraft:
    """An agent call the loop has sent but not stored yet: what `create_agent_call` would store."""

    session_id: uuid.UUID
    user_id: uuid.UUID
    model: str
    provider: str
    prompt_messages: list[Any]
    system_prompt: str | None
    temperature: float | None
    max_tokens: int | None
    tools_provided: list[str]
    meta: dict[str, Any]
    workflow_run_id: uuid.UUID | None = None
    workflow_step_id: uuid.UUID | None = None
    # {"base": call id, "keep": n}: prompt_messages follow the first n of that call's (see prompts.py)
    prompt_ref: dict[str, Any] | None = None
    prompt_whole: list[Any] = field(default_factory=list, repr=False)  # the whole prompt, not stored
    system_whole: str | None = field(default=None, repr=False)  # the system prompt, stored or not
    id: uuid.UUID = field(default_factory=uuid.uuid4)
    started_at: dt.datetime = field(default_factory=utcnow)
    first_token_at: dt.datetime | None = None

    def __post_init__(self) -> None:
        # What a provider or a caller hands over is stored as both backends can hold it (NUL and lone
        # surrogates as U+FFFD), on both paths alike: PostgreSQL's statements refuse them, its
        # functions' JSON would clean them, SQLite would keep them.
        self.model, self.provider = _clean(self.model), _clean(self.provider)
        self.system_prompt = _clean_or_none(self.system_prompt)

    def as_base(self) -> tuple[str, list[Any], str | None]:
        """What the next call's prompt is stored relative to (`kernel.stored.prompt_delta`)."""
        return str(self.id), self.prompt_whole, self.system_whole


@dataclass
class NewMessage:
    role: str
    content: str | None
    content_blocks: list[Any] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)
    agent_call_id: uuid.UUID | None = None
    tool_use_id: uuid.UUID | None = None
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        self.content = _clean_or_none(self.content)  # as `CallDraft` says


@dataclass
class NewToolUse:
    """A tool use that needs no approval, stored `executing`: it runs right after the commit."""

    tool_name: str
    tool_use_id: str | None
    input: dict[str, Any]
    meta: dict[str, Any]
    sequence: int
    id: uuid.UUID = field(default_factory=uuid.uuid4)

    def __post_init__(self) -> None:
        self.tool_name, self.tool_use_id = _clean(self.tool_name), _clean_or_none(self.tool_use_id)


def _clean(text: str) -> str:
    return storable_text(text) if type(text) is str else text


def _clean_or_none(text: str | None) -> str | None:
    return None if text is None else _clean(text)


def call_payload(d: CallDraft, status: str, done: Mapping[str, Any] | None = None) -> dict[str, Any]:
    done = done or {}
    cost = done.get("cost_usd")
    return {
        "agent_call_id": str(d.id),
        "session_id": str(d.session_id),
        "provider": d.provider,
        "model": d.model,
        "status": status,
        "tokens_in": done.get("tokens_in"),
        "tokens_out": done.get("tokens_out"),
        "cost_usd": str(cost) if cost is not None else None,
        "duration_ms": done.get("duration_ms"),
    }


def tool_payload(t: NewToolUse, call_id: uuid.UUID, session_id: uuid.UUID, status: str) -> dict[str, Any]:
    return {
        "tool_use_id": str(t.id),
        "agent_call_id": str(call_id),
        "session_id": str(session_id),
        "tool_name": t.tool_name,
        "sequence": t.sequence,
        "status": status,
        "requires_approval": False,
        "approval_id": None,
    }


def audit_row(
    action: ActivityAction, kind: str, rid: uuid.UUID, uid: uuid.UUID, sid: uuid.UUID, details: dict[str, Any]
) -> dict[str, Any]:
    return {
        "action": action,
        "resource_type": kind,
        "resource_id": rid,
        "user_id": uid,
        "details": details,
        "session_id": sid,
    }


def audited(m: NewMessage) -> bool:
    """Whether a message gets an audit entry of its own: not one an agent call or a tool use wrote
    (their entries stand for it, as `sessions.create_message` decides too)."""
    return m.agent_call_id is None and m.tool_use_id is None


def message_row(m: NewMessage, sid: uuid.UUID, sequence: int) -> dict[str, Any]:
    return {
        "id": m.id,
        "session_id": sid,
        "role": MessageRole(m.role),
        "content": m.content,
        "content_blocks": m.content_blocks,
        "sequence": sequence,
        "agent_call_id": m.agent_call_id,
        "tool_use_id": m.tool_use_id,
        "attachments": [],
        "visible_in_branches": [],
        "metadata": m.meta,
    }


def publish_message(to: Tx | Statement, m: NewMessage, sid: uuid.UUID, sequence: int) -> None:
    to.publish(
        topics.session_messages(sid),
        "message_created",
        {
            "message_id": str(m.id),
            "session_id": str(sid),
            "sequence": sequence,
            "role": m.role,
            "content": m.content,
        },
    )


def call_row(d: CallDraft, status: AgentCallStatus, now: dt.datetime) -> dict[str, Any]:
    return {
        "id": d.id,
        "session_id": d.session_id,
        "user_id": d.user_id,
        "provider": d.provider,
        "model": d.model,
        "status": status,
        "prompt_messages": d.prompt_messages,
        "prompt_ref": d.prompt_ref,
        "system_prompt": d.system_prompt,
        "response_blocks": [],
        "cache_tokens_read": 0,
        "cache_tokens_write": 0,
        "started_at": d.started_at,
        "first_token_at": d.first_token_at,
        "temperature": d.temperature,
        "max_tokens": d.max_tokens,
        "tools_provided": d.tools_provided,
        "retry_count": 0,
        "workflow_run_id": d.workflow_run_id,
        "workflow_step_id": d.workflow_step_id,
        "metadata": d.meta,
        "inserted_at": d.started_at,
        "updated_at": now,
    }


# The rows of a round's writes, as statements insert them (`store.prepared` compiles each once per
# database) and as `store.json_rows` binds them for PostgreSQL's functions.
INSERT_CALL = Prepared(sa.insert(AgentCall))
INSERT_MESSAGE = Prepared(sa.insert(Message))
INSERT_TOOL_USES = Prepared(sa.insert(ToolUse))
INSERT_AUDIT = Prepared(sa.insert(ActivityLog))


def completed_call_row(d: CallDraft, done: Mapping[str, Any], now: dt.datetime) -> dict[str, Any]:
    """The call's row, complete: `done` holds the response's columns and its duration."""
    return {
        **call_row(d, AgentCallStatus.COMPLETED, now),
        **{k: done[k] for k in ("response_blocks", "tokens_in", "tokens_out", "cache_tokens_read",
                                "cache_tokens_write", "cost_usd")},
        "response_content": _clean_or_none(done["response_content"]),
        "stop_reason": _clean_or_none(done["stop_reason"]),
        "first_token_at": d.first_token_at or now,
        "completed_at": now,
        "duration_ms": done["duration_ms"],
    }  # fmt: skip


def cost_fields(d: CallDraft, done: Mapping[str, Any]) -> dict[str, Any]:
    """The call's cost record's fields (`costs.cost_rows`), less its price and time."""
    return {
        "user_id": d.user_id,
        "source_type": CostSourceType.AGENT_CALL,
        "source_id": d.id,
        "provider": d.provider,
        "model": d.model,
        "service": CostService.CHAT,
        "tokens_in": done["tokens_in"] or 0,
        "tokens_out": done["tokens_out"] or 0,
        "cache_tokens_read": done["cache_tokens_read"],
        "cache_tokens_write": done["cache_tokens_write"],
        "session_id": d.session_id,
        "workflow_run_id": d.workflow_run_id,
    }


def session_counters(done: Mapping[str, Any], message: NewMessage | None) -> dict[str, Any]:
    """What the call adds to its session's totals."""
    return {
        "total_tokens_in": done["tokens_in"] or 0,
        "total_tokens_out": done["tokens_out"] or 0,
        "total_cost_usd": done["cost_usd"] or Decimal(0),
        "total_duration_ms": done["duration_ms"],
        "message_count": 1 if message is not None else 0,
    }


def tool_use_row(t: NewToolUse, d: CallDraft, now: dt.datetime) -> dict[str, Any]:
    """A tool use that runs at once: stored `executing`."""
    return {
        "id": t.id, "agent_call_id": d.id, "session_id": d.session_id, "tool_name": t.tool_name,
        "tool_use_id": t.tool_use_id, "input": t.input, "status": ToolUseStatus.EXECUTING,
        "requires_approval": False, "output_truncated": False, "file_changes": [], "started_at": now,
        "sequence": t.sequence, "metadata": t.meta,
    }  # fmt: skip


def call_audit(
    d: CallDraft, done: Mapping[str, Any], tool_uses: Sequence[NewToolUse]
) -> list[dict[str, Any]]:
    """The call's audit entries, less an audited message's (which needs its sequence): one for the
    call — its start was never committed on its own (the row has started_at, and the entry names
    provider and model), so an entry for it would only repeat this one — and one per tool use."""
    sid, uid, cost = d.session_id, d.user_id, done["cost_usd"]
    entries = [
        audit_row(ActivityAction.AGENT_CALL_COMPLETE, "agent_call", d.id, uid, sid,
                  {"provider": d.provider, "model": d.model, "tokens_in": done["tokens_in"],
                   "tokens_out": done["tokens_out"], "cost_usd": str(cost) if cost is not None else None}),
    ]  # fmt: skip
    entries += [
        audit_row(
            ActivityAction.TOOL_EXECUTE,
            "tool_use",
            t.id,
            uid,
            sid,
            {"tool_name": t.tool_name, "input": t.input},
        )
        for t in tool_uses
    ]
    return entries


def completed_with_cost(
    d: CallDraft, done: Mapping[str, Any], price: Price | None, cell: str | None, now: dt.datetime
) -> tuple[dict[str, Any], CostRows]:
    """The call's columns with its duration, and its cost's rows."""
    done = {**done, "duration_ms": max(0, int((now - d.started_at).total_seconds() * 1000))}
    return done, cost_rows(price, at=now, cell=cell, cost_usd=done["cost_usd"], **cost_fields(d, done))


def publish_call(
    to: Tx | Statement,
    d: CallDraft,
    done: Mapping[str, Any],
    cost: CostRows,
    message: NewMessage | None,
    tool_uses: Sequence[NewToolUse],
    seq: int,
) -> None:
    """A completed call's events, in the order the services publish them."""
    calls = topics.session_agent_calls(d.session_id)
    to.publish(calls, "agent_call_created", call_payload(d, "pending"))
    to.publish(calls, "agent_call_streaming", call_payload(d, "streaming"))
    costs.announce_cost_in(to, cost)
    to.publish(calls, "agent_call_completed", call_payload(d, "completed", done))
    if message is not None:
        publish_message(to, message, d.session_id, seq)
    for t in tool_uses:
        to.publish(calls, "tool_use_created", tool_payload(t, d.id, d.session_id, "pending"))
        to.publish(calls, "tool_use_started", tool_payload(t, d.id, d.session_id, "executing"))


def ended_tool(
    output: str | None, error: tuple[str, str, bool] | None, started_at: dt.datetime, now: dt.datetime
) -> tuple[str | None, tuple[str, str, bool] | None, ToolUseStatus, int]:
    """A tool use's end as stored: its output or error as both backends can hold them (on both paths
    alike, see `CallDraft`), its status and its duration."""
    output = None if output is None else storable_text(output)
    target = ToolUseStatus.COMPLETED
    if error is not None:
        error = (storable_text(error[0]), storable_text(error[1]), error[2])
        target = ToolUseStatus.TIMEOUT if error[2] else ToolUseStatus.FAILED
    return output, error, target, max(0, int((now - started_at).total_seconds() * 1000))


def publish_tool_end(
    to: Tx | Statement,
    tool: NewToolUse,
    call_id: uuid.UUID,
    session_id: uuid.UUID,
    error: tuple[str, str, bool] | None,
    message: NewMessage | None,
    seq: int | None,
    target: ToolUseStatus,
) -> None:
    """A tool use's end's events, in the order the services publish them."""
    calls = topics.session_agent_calls(session_id)
    event = "tool_use_completed" if error is None else "tool_use_failed"
    to.publish(calls, event, tool_payload(tool, call_id, session_id, target.value))
    if message is not None and seq is not None:
        publish_message(to, message, session_id, seq)
