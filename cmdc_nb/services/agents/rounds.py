"""A stored agent round in as few durable writes as resuming allows: the kernel's hot path.

The services of this package stay the public API and the slow path (approvals, budgets that apply,
errors, retries, a workspace acting for someone). When none of that is in play, `kernel.persist`
writes a round through this module instead, with SQLAlchemy Core, ids made in advance and nothing read
back that the loop already knows:

1. `record_call_in` — once the model's response is complete, and before any of its tools runs: the
   agent call (inserted complete: it had no row while in flight), its cost record with the daily
   summary and roll-up, the session's counters, the assistant message, each tool use that starts
   executing at once, and their audit entries (one for the call, `agent.call.complete`, naming its
   provider and model: a call stored complete in one go has no separate start to audit) — one
   transaction. The agent's system prompt is stored on the first call that sends it; later calls
   refer to it (`prompt_ref`, see `prompts`), and a tool use that runs at once keeps its policy but
   not its tool's schema (only a decision's form reads that) — what a round stores stays small;
2. `record_tool_end_in` — once a tool has run: the tool use completed (or failed) and, when the loop
   hands it over, its result message with its audit entry — one transaction; on PostgreSQL one call
   of the schema's `cmdc_end_tool_use` (migration 0015), which runs the same statements on the server.

Every event the services publish for these changes is published here too, with the same topics and
payloads, in the same order (`agent_call_created`, `agent_call_streaming`, `cost_recorded`,
`agent_call_completed`, `message_created`, `tool_use_created`, `tool_use_started`; then
`tool_use_completed` / `tool_use_failed`, `message_created`).
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidStateError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.services import budgets, costs
from cmdc_nb.services.pricing import Price, cached_price_in
from cmdc_nb.services.sessions.records import _WRITABLE
from cmdc_nb.store.enums import (
    ActivityAction,
    AgentCallStatus,
    CostService,
    CostSourceType,
    MessageRole,
    ToolUseStatus,
)
from cmdc_nb.store.models import ActivityLog, AgentCall, Message, Session, ToolUse
from cmdc_nb.store.prepared import Pending, Prepared, pipeline
from cmdc_nb.store.values import utcnow

__all__ = [
    "CallDraft",
    "NewMessage",
    "NewToolUse",
    "insert_pending_in",
    "record_call_in",
    "record_tool_end_in",
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


@dataclass
class NewToolUse:
    """A tool use that needs no approval, stored `executing`: it runs right after the commit."""

    tool_name: str
    tool_use_id: str | None
    input: dict[str, Any]
    meta: dict[str, Any]
    sequence: int
    id: uuid.UUID = field(default_factory=uuid.uuid4)


def _call_payload(d: CallDraft, status: str, done: Mapping[str, Any] | None = None) -> dict[str, Any]:
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


def _tool_payload(t: NewToolUse, call_id: uuid.UUID, session_id: uuid.UUID, status: str) -> dict[str, Any]:
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


def _audit(
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


def _audited(m: NewMessage) -> bool:
    """Whether a message gets an audit entry of its own: not one an agent call or a tool use wrote
    (their entries stand for it, as `sessions.create_message` decides too)."""
    return m.agent_call_id is None and m.tool_use_id is None


# The round's statements, compiled once per database (see `store.prepared`).
_INSERT_CALL = Prepared(sa.insert(AgentCall))
_INSERT_MESSAGE = Prepared(sa.insert(Message))
_INSERT_TOOL_USES = Prepared(sa.insert(ToolUse))
_INSERT_AUDIT = Prepared(sa.insert(ActivityLog))


@functools.cache
def _add_to_session(names: tuple[str, ...], with_last: bool) -> Prepared:
    """`UPDATE sessions SET name = name + :add_name … RETURNING status` for these counters, built once
    (a round adds to the same few); with none, it still takes the row's lock. `with_last` returns the
    newest message's sequence with the row: right on SQLite only (see `_add_to_session_in`)."""
    values = {
        n: getattr(Session, n) + sa.bindparam(f"add_{n}", type_=getattr(Session, n).type) for n in names
    }
    stmt = sa.update(Session).where(Session.id == sa.bindparam("sid"))
    stmt = stmt.values(**(values or {"message_count": Session.message_count}))
    return Prepared(
        stmt.returning(Session.status, _LAST_SEQUENCE_OF) if with_last else stmt.returning(Session.status)
    )


_LAST_SEQUENCE_OF = (
    sa.select(sa.func.max(Message.sequence))
    .where(Message.session_id == sa.bindparam("sid"))
    .scalar_subquery()
)
_LAST_SEQUENCE = Prepared(sa.select(_LAST_SEQUENCE_OF))


# A tool use's end: the columns set come with each call's values (completed or failed).
_TOOL_USES: sa.Table = ToolUse.__table__  # type: ignore[assignment]
_END_TOOL = Prepared(
    sa.update(_TOOL_USES)
    .where(_TOOL_USES.c.id == sa.bindparam("tid"), _TOOL_USES.c.status == ToolUseStatus.EXECUTING)
    .returning(_TOOL_USES.c.id)
)


def _add_to_session_in(tx: Tx, sid: uuid.UUID, **deltas: Any) -> tuple[Pending, Pending | None]:
    """Add to the session's counters, which locks its row (writers to one session take turns), and
    read its newest message sequence under that lock (`_next_sequence`).

    On SQLite both come back from the one UPDATE: its transaction began with the database's one write
    lock. On PostgreSQL a subquery in the UPDATE would read the snapshot the statement started with:
    one that waited for another writer's lock would miss the message that writer just committed (a
    duplicate sequence, refused). The newest sequence is its own SELECT there, run after the lock is
    held, with a snapshot of its own — sent in the same pipeline, so no round trip more."""
    added = {name: d for name, d in deltas.items() if d}
    params = {"sid": sid, **{f"add_{n}": d for n, d in added.items()}}
    conn = tx.connection()
    if conn.dialect.name == "sqlite":
        return _add_to_session(tuple(added), True).pending(conn, params), None
    locked = _add_to_session(tuple(added), False).pending(conn, params)
    return locked, _LAST_SEQUENCE.pending(conn, {"sid": sid})


def _next_sequence(added: tuple[Pending, Pending | None], sid: uuid.UUID) -> int:
    """The next message sequence number; refuse a session that is gone or takes no messages."""
    locked, last_of = added
    row = locked.fetchone()
    if row is None:
        raise NotFoundError("session", sid)
    status = row[0]
    if status not in _WRITABLE:
        raise InvalidStateError(
            "session", status.value, "new message", allowed=sorted(s.value for s in _WRITABLE)
        )
    last = row[1] if last_of is None else (last_of.fetchone() or (None,))[0]
    return int(last or 0) + 1


def _message_row(m: NewMessage, sid: uuid.UUID, sequence: int) -> dict[str, Any]:
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


def _publish_message(tx: Tx, m: NewMessage, sid: uuid.UUID, sequence: int) -> None:
    tx.publish(
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


def _call_row(d: CallDraft, status: AgentCallStatus, now: dt.datetime) -> dict[str, Any]:
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


def insert_pending_in(tx: Tx, d: CallDraft) -> None:
    """Store a call still in flight as `create_agent_call` (and `start_streaming`, once its first token
    came) would have: before a failure, a retry or a cancellation moves it through the services."""
    status = AgentCallStatus.STREAMING if d.first_token_at is not None else AgentCallStatus.PENDING
    tx.connection().execute(sa.insert(AgentCall), _call_row(d, status, utcnow()))
    tx.connection().execute(
        sa.insert(ActivityLog),
        _audit(ActivityAction.AGENT_CALL_START, "agent_call", d.id, d.user_id, d.session_id,
               {"provider": d.provider, "model": d.model}),
    )  # fmt: skip
    calls = topics.session_agent_calls(d.session_id)
    tx.publish(calls, "agent_call_created", _call_payload(d, "pending"))
    if status is AgentCallStatus.STREAMING:
        tx.publish(calls, "agent_call_streaming", _call_payload(d, "streaming"))


def record_call_in(
    tx: Tx,
    d: CallDraft,
    done: Mapping[str, Any],
    price: Price | None,
    *,
    cell: str | None,
    message: NewMessage | None = None,
    tool_uses: Sequence[NewToolUse] = (),
) -> int | None:
    """Store a completed call and what came with it (see the module docstring); `done` holds the
    response's columns (response_content, response_blocks, stop_reason, tokens_in, tokens_out,
    cache_tokens_read, cache_tokens_write, cost_usd). Returns the message's sequence number."""
    now = utcnow()
    done = {**done, "duration_ms": max(0, int((now - d.started_at).total_seconds() * 1000))}
    with pipeline(tx.connection()):  # PostgreSQL: two round trips for all of it (store.prepared)
        seq, rest = _record_call_rows(tx, d, done, price, cell, message, tool_uses, now)
    rest()  # a priced call's daily-summary maps and budget warnings: not in the pipeline
    return seq if message is not None else None


def _record_call_rows(
    tx: Tx,
    d: CallDraft,
    done: Mapping[str, Any],
    price: Price | None,
    cell: str | None,
    message: NewMessage | None,
    tool_uses: Sequence[NewToolUse],
    now: dt.datetime,
) -> tuple[int, Callable[[], None]]:
    """`record_call_in`'s rows, `Prepared` statements only. Long because it is the round's one
    transaction, written out in the order the events go."""
    sid, uid = d.session_id, d.user_id
    duration = done["duration_ms"]
    cost: Decimal | None = done["cost_usd"]
    tin, tout = done["tokens_in"], done["tokens_out"]
    conn = tx.connection()
    _INSERT_CALL.run(
        conn,
        {
            **_call_row(d, AgentCallStatus.COMPLETED, now),
            **{k: done[k] for k in ("response_content", "response_blocks", "stop_reason", "tokens_in",
                                    "tokens_out", "cache_tokens_read", "cache_tokens_write", "cost_usd")},
            "first_token_at": d.first_token_at or now,
            "completed_at": now,
            "duration_ms": duration,
        },
    )  # fmt: skip
    calls = topics.session_agent_calls(sid)
    tx.publish(calls, "agent_call_created", _call_payload(d, "pending"))
    tx.publish(calls, "agent_call_streaming", _call_payload(d, "streaming"))
    rest = costs.insert_cost_row_in(
        tx,
        price,
        at=now,
        cell=cell,
        cost_usd=cost,
        user_id=uid,
        source_type=CostSourceType.AGENT_CALL,
        source_id=d.id,
        provider=d.provider,
        model=d.model,
        service=CostService.CHAT,
        tokens_in=tin or 0,
        tokens_out=tout or 0,
        cache_tokens_read=done["cache_tokens_read"],
        cache_tokens_write=done["cache_tokens_write"],
        session_id=sid,
        workflow_run_id=d.workflow_run_id,
    )
    # The session's row after the summary's, as `complete_agent_call` takes them: never a lock cycle.
    # Its sequence is read at once (in a pipeline, the first wait for the server).
    added = _add_to_session_in(
        tx,
        sid,
        total_tokens_in=tin or 0,
        total_tokens_out=tout or 0,
        total_cost_usd=cost or Decimal(0),
        total_duration_ms=duration,
        message_count=1 if message is not None else 0,
    )
    seq = _next_sequence(added, sid)
    # One audit entry for the call: its start was never committed on its own (the row has started_at,
    # and the entry names provider and model), so an entry for it would only repeat this one.
    audit = [
        _audit(ActivityAction.AGENT_CALL_COMPLETE, "agent_call", d.id, uid, sid,
               {"provider": d.provider, "model": d.model, "tokens_in": tin, "tokens_out": tout,
                "cost_usd": str(cost) if cost is not None else None}),
    ]  # fmt: skip
    tx.publish(calls, "agent_call_completed", _call_payload(d, "completed", done))
    if message is not None:
        _INSERT_MESSAGE.run(conn, _message_row(message, sid, seq))
        if _audited(message):
            audit.append(_audit(ActivityAction.MESSAGE_CREATE, "message", message.id, uid, sid,
                                {"role": message.role, "sequence": seq}))  # fmt: skip
        _publish_message(tx, message, sid, seq)
    if tool_uses:
        _INSERT_TOOL_USES.run(
            conn,
            [
                {"id": t.id, "agent_call_id": d.id, "session_id": sid, "tool_name": t.tool_name,
                 "tool_use_id": t.tool_use_id, "input": t.input, "status": ToolUseStatus.EXECUTING,
                 "requires_approval": False, "output_truncated": False, "file_changes": [],
                 "started_at": now, "sequence": t.sequence, "metadata": t.meta}
                for t in tool_uses
            ],
        )  # fmt: skip
        for t in tool_uses:
            audit.append(_audit(ActivityAction.TOOL_EXECUTE, "tool_use", t.id, uid, sid,
                                {"tool_name": t.tool_name, "input": t.input}))  # fmt: skip
            tx.publish(calls, "tool_use_created", _tool_payload(t, d.id, sid, "pending"))
            tx.publish(calls, "tool_use_started", _tool_payload(t, d.id, sid, "executing"))
    _INSERT_AUDIT.run(conn, audit)
    return seq, rest


def record_tool_end_in(
    tx: Tx,
    tool: NewToolUse,
    call_id: uuid.UUID,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    started_at: dt.datetime,
    *,
    output: str | None,
    error: tuple[str, str, bool] | None,
    message: NewMessage | None,
) -> int | None:
    """A fast tool use's end: completed with `output`, or failed with `error` (type, message, timed
    out); with its result message when given. Returns the message's sequence number."""
    now = utcnow()
    target = ToolUseStatus.COMPLETED
    values: dict[str, Any] = {"output": output, "output_truncated": False, "file_changes": []}
    if error is not None:
        target = ToolUseStatus.TIMEOUT if error[2] else ToolUseStatus.FAILED
        values = {"error_type": error[0], "error_message": error[1]}
    conn = tx.connection()
    duration = max(0, int((now - started_at).total_seconds() * 1000))
    if conn.dialect.name == "postgresql" and _ends_in_one_call(output, message):
        seq = _end_tool_in_function(conn, tool, session_id, now, duration, target, output, error, message)
        _finish_tool_end(tx, tool, call_id, session_id, user_id, error, message, seq, target, stored=True)
        return seq
    values.update(status=target, completed_at=now, duration_ms=duration)
    with pipeline(conn):  # PostgreSQL: two round trips (store.prepared)
        # the tool use's row, then the session's, as the services take them
        ended = _END_TOOL.pending(conn, {"tid": tool.id, **values})
        added = _add_to_session_in(tx, session_id, message_count=1) if message is not None else None
        if ended.fetchone() is None:  # cancelled meanwhile (or gone): the service says which, as it would
            raise InvalidStateError("tool_use", "not executing", target.value, allowed=["executing"])
        seq = _next_sequence(added, session_id) if added is not None else None
        _finish_tool_end(tx, tool, call_id, session_id, user_id, error, message, seq, target)
    return seq


# PostgreSQL: the tool use's end as one call of `cmdc_end_tool_use` (migration 0015), which runs the
# statements below on the server: one round trip instead of four statements' worth of them and of
# their Python. Not for a message that is audited (never a tool's result) or an output too large to
# go as JSON comfortably: those take the statements.
_END_TOOL_FUNCTION = Prepared(sa.select(sa.func.cmdc_end_tool_use(sa.bindparam("p", type_=JSONB))))
_FUNCTION_OUTPUT_MAX = 1_000_000  # characters
_REFUSED = {"CM001", "CM002", "CM003"}
_WRITABLE_VALUES = sorted(s.value for s in _WRITABLE)


def _ends_in_one_call(output: str | None, message: NewMessage | None) -> bool:
    if message is not None and _audited(message):
        return False
    sizes = (len(output or ""), len(message.content or "") if message is not None else 0)
    return max(sizes) <= _FUNCTION_OUTPUT_MAX


def _end_tool_in_function(
    conn: sa.Connection,
    tool: NewToolUse,
    session_id: uuid.UUID,
    now: dt.datetime,
    duration: int,
    target: ToolUseStatus,
    output: str | None,
    error: tuple[str, str, bool] | None,
    message: NewMessage | None,
) -> int | None:
    payload: dict[str, Any] = {
        "tool_use_id": str(tool.id),
        "session_id": str(session_id),
        "at": now.isoformat(),
        "duration_ms": duration,
        "status": target.value,
        "writable": _WRITABLE_VALUES,
        "message": None,
    }
    if error is None:
        payload["output"] = output
    else:
        payload["error_type"], payload["error_message"] = error[0], error[1]
    if message is not None:
        payload["message"] = {
            "id": str(message.id),
            "role": MessageRole(message.role).value,
            "content": message.content,
            "content_blocks": message.content_blocks,
            "agent_call_id": str(message.agent_call_id) if message.agent_call_id else None,
            "tool_use_id": str(message.tool_use_id) if message.tool_use_id else None,
            "metadata": message.meta,
        }
    try:
        row = _END_TOOL_FUNCTION.one_or_none(conn, {"p": payload})
    except sa.exc.DBAPIError as exc:
        code = getattr(exc.orig, "sqlstate", None)
        if code not in _REFUSED:
            raise
        if code == "CM001":  # cancelled meanwhile (or gone): as the statements' path says it
            raise InvalidStateError(
                "tool_use", "not executing", target.value, allowed=["executing"]
            ) from None
        if code == "CM002":
            raise NotFoundError("session", session_id) from None
        raise InvalidStateError(
            "session", str(getattr(exc.orig.diag, "message_primary", "")), "new message",  # type: ignore[union-attr]
            allowed=_WRITABLE_VALUES,
        ) from None  # fmt: skip
    assert row is not None  # a SELECT of a function always returns its row
    return None if row[0] is None else int(row[0])


def _finish_tool_end(
    tx: Tx,
    tool: NewToolUse,
    call_id: uuid.UUID,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    error: tuple[str, str, bool] | None,
    message: NewMessage | None,
    seq: int | None,
    target: ToolUseStatus,
    *,
    stored: bool = False,
) -> None:
    """The tool use's end's events, and its message's row and audit entry unless `stored` (the
    function wrote the row; its message is never audited)."""
    conn = tx.connection()
    calls = topics.session_agent_calls(session_id)
    event = "tool_use_completed" if error is None else "tool_use_failed"
    tx.publish(calls, event, _tool_payload(tool, call_id, session_id, target.value))
    if message is None or seq is None:
        return
    if stored:
        _publish_message(tx, message, session_id, seq)
        return
    _INSERT_MESSAGE.run(conn, _message_row(message, session_id, seq))
    if _audited(message):
        _INSERT_AUDIT.run(
            conn,
            _audit(ActivityAction.MESSAGE_CREATE, "message", message.id, user_id, session_id,
                   {"role": message.role, "sequence": seq}),
        )  # fmt: skip
    _publish_message(tx, message, session_id, seq)


def budgets_apply(user_id: uuid.UUID, session_id: uuid.UUID, *, ws: Workspace | None = None) -> bool:
    """Whether a budget applies to the session (remembered; see `budgets.applies_in`)."""
    w = get_workspace(ws)
    with w.read() as db:
        return budgets.applies_in(w, db, user_id, session_id)


def price_of(model: str, provider: str, *, ws: Workspace | None = None) -> Price | None:
    """The model's price (remembered; see `pricing.cached_price_in`)."""
    w = get_workspace(ws)
    with w.read() as db:
        return cached_price_in(w, db, model, provider)


def store_pending(d: CallDraft, *, ws: Workspace | None = None) -> None:
    """`insert_pending_in` in a transaction of its own."""
    with get_workspace(ws).transaction() as tx:
        insert_pending_in(tx, d)
