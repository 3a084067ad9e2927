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
   not its tool's schema (only a decision's form reads that) — what a round stores stays small; on
   PostgreSQL one call of the schema's `cmdc_record_call` (migration 0016);
2. `record_tool_end_in` — once a tool has run: the tool use completed (or failed) and, when the loop
   hands it over, its result message with its audit entry — one transaction; on PostgreSQL one call
   of the schema's `cmdc_end_tool_use` (migration 0015).

PostgreSQL's functions run the same statements on the server (`round_functions`); what a round's rows
are is `round_rows`'s, shared by both paths.

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
from typing import Any, cast

import sqlalchemy as sa

from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidStateError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.services import budgets, costs
from cmdc_nb.services.agents import round_functions, round_statements
from cmdc_nb.services.agents.round_rows import (
    INSERT_AUDIT,
    INSERT_CALL,
    INSERT_MESSAGE,
    INSERT_TOOL_USES,
    CallDraft,
    NewMessage,
    NewToolUse,
    audit_row,
    audited,
    call_audit,
    call_payload,
    call_row,
    completed_call_row,
    completed_with_cost,
    ended_tool,
    message_row,
    publish_call,
    publish_tool_end,
    session_counters,
    tool_use_row,
)
from cmdc_nb.services.cost_rows import CostRows
from cmdc_nb.services.pricing import Price, cached_price_in
from cmdc_nb.services.sessions.records import _WRITABLE
from cmdc_nb.store.enums import ActivityAction, AgentCallStatus, ToolUseStatus
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
    "write_call",
    "write_tool_end",
]


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


def insert_pending_in(tx: Tx, d: CallDraft) -> None:
    """Store a call still in flight as `create_agent_call` (and `start_streaming`, once its first token
    came) would have: before a failure, a retry or a cancellation moves it through the services."""
    status = AgentCallStatus.STREAMING if d.first_token_at is not None else AgentCallStatus.PENDING
    tx.connection().execute(sa.insert(AgentCall), call_row(d, status, utcnow()))
    tx.connection().execute(
        sa.insert(ActivityLog),
        audit_row(ActivityAction.AGENT_CALL_START, "agent_call", d.id, d.user_id, d.session_id,
               {"provider": d.provider, "model": d.model}),
    )  # fmt: skip
    calls = topics.session_agent_calls(d.session_id)
    tx.publish(calls, "agent_call_created", call_payload(d, "pending"))
    if status is AgentCallStatus.STREAMING:
        tx.publish(calls, "agent_call_streaming", call_payload(d, "streaming"))


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
    done, cost = completed_with_cost(d, done, price, cell, now)
    conn = tx.connection()
    summary_id: Callable[[], uuid.UUID]
    if conn.dialect.name == "postgresql" and round_functions.records_in_one_call(d, done, message, tool_uses):
        payload = round_functions.call_payload(conn.dialect, d, done, now, cost, message, tool_uses)
        seq, summary = round_functions.record_call(conn, payload, d.session_id)
        summary_id = lambda: summary  # noqa: E731
    else:
        with pipeline(conn):  # PostgreSQL: two round trips for all of it (store.prepared)
            seq, summary_id = _record_call_rows(tx, d, done, cost, message, tool_uses, now)
    publish_call(tx, d, done, cost, message, tool_uses, seq)
    # a priced call's daily-summary maps and budget warnings: not in the pipeline
    costs.cost_rest_in(tx, cost, summary_id)
    return seq if message is not None else None


def _record_call_rows(
    tx: Tx,
    d: CallDraft,
    done: Mapping[str, Any],
    cost: CostRows,
    message: NewMessage | None,
    tool_uses: Sequence[NewToolUse],
    now: dt.datetime,
) -> tuple[int, Callable[[], uuid.UUID]]:
    """`record_call_in`'s rows as `Prepared` statements, in the order `complete_agent_call` takes
    their locks: the message's sequence, and what reads the daily summary's id."""
    sid = d.session_id
    conn = tx.connection()
    INSERT_CALL.run(conn, completed_call_row(d, done, now))
    summary_id = costs.write_cost_rows_in(tx, cost)
    # The session's row after the summary's, as `complete_agent_call` takes them: never a lock cycle.
    # Its sequence is read at once (in a pipeline, the first wait for the server).
    seq = _next_sequence(_add_to_session_in(tx, sid, **session_counters(done, message)), sid)
    audit = call_audit(d, done, tool_uses)
    if message is not None:
        INSERT_MESSAGE.run(conn, message_row(message, sid, seq))
        if audited(message):
            audit.insert(1, audit_row(ActivityAction.MESSAGE_CREATE, "message", message.id, d.user_id, sid,
                                      {"role": message.role, "sequence": seq}))  # after the call's  # fmt: skip
    if tool_uses:
        INSERT_TOOL_USES.run(conn, [tool_use_row(t, d, now) for t in tool_uses])
    INSERT_AUDIT.run(conn, audit)
    return seq, summary_id


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
    output, error, target, duration = ended_tool(output, error, started_at, now)
    conn = tx.connection()
    if conn.dialect.name == "postgresql" and round_functions.ends_in_one_call(output, message):
        payload = round_functions.tool_end_payload(
            tool, session_id, now, duration, target, output, error, message
        )
        seq = round_functions.end_tool(conn, payload, session_id, target.value)
        _finish_tool_end(tx, tool, call_id, session_id, user_id, error, message, seq, target, stored=True)
        return seq
    values: dict[str, Any] = {"output": output, "output_truncated": False, "file_changes": []}
    if error is not None:
        values = {"error_type": error[0], "error_message": error[1]}
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


def write_call(
    d: CallDraft,
    done: Mapping[str, Any],
    price: Price | None,
    *,
    cell: str | None,
    message: NewMessage | None = None,
    tool_uses: Sequence[NewToolUse] = (),
    expect_seq: int | None = None,
    ws: Workspace | None = None,
    wait: bool = True,
) -> int | None:
    """`record_call_in` in a transaction of its own. On PostgreSQL, when the message's sequence is
    known in advance (`expect_seq`: the writer's last plus one) and nothing else needs the
    transaction, one statement that logs its events too (`round_statements`): one round trip, not
    four. Returns the message's sequence number."""
    w = get_workspace(ws)
    plan = round_statements.plan_call(w, d, done, price, cell, message, tool_uses, expect_seq, may_read=True)
    if plan is not None:
        found = round_statements.run(w, plan)
        if found is not round_statements.NOT_HERE:
            return cast("int | None", found)
    with w.transaction(wait=wait, light=True) as tx:
        return record_call_in(tx, d, done, price, cell=cell, message=message, tool_uses=tool_uses)


def write_tool_end(
    tool: NewToolUse,
    call_id: uuid.UUID,
    session_id: uuid.UUID,
    user_id: uuid.UUID,
    started_at: dt.datetime,
    *,
    output: str | None,
    error: tuple[str, str, bool] | None,
    message: NewMessage | None,
    expect_seq: int | None = None,
    ws: Workspace | None = None,
    wait: bool = True,
) -> int | None:
    """`record_tool_end_in` in a transaction of its own; on PostgreSQL one statement when it can be,
    as `write_call`. Returns the message's sequence number."""
    w = get_workspace(ws)
    plan = round_statements.plan_tool_end(
        w, tool, call_id, session_id, started_at, output, error, message, expect_seq
    )
    if plan is not None:
        found = round_statements.run(w, plan)
        if found is not round_statements.NOT_HERE:
            return cast("int | None", found)
    with w.transaction(wait=wait, light=True) as tx:
        return record_tool_end_in(
            tx, tool, call_id, session_id, user_id, started_at, output=output, error=error, message=message
        )


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
    if message is not None and seq is not None and not stored:
        conn = tx.connection()
        INSERT_MESSAGE.run(conn, message_row(message, session_id, seq))
        if audited(message):
            INSERT_AUDIT.run(
                conn,
                audit_row(ActivityAction.MESSAGE_CREATE, "message", message.id, user_id, session_id,
                       {"role": message.role, "sequence": seq}),
            )  # fmt: skip
    publish_tool_end(tx, tool, call_id, session_id, error, message, seq, target)


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
