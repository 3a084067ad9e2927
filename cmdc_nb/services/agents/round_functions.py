"""PostgreSQL: a stored round's two writes as one call each of the schema's functions.

On PostgreSQL most of a stored round was the client's own Python per statement (psycopg's pipeline,
its dumpers, SQLAlchemy's binding), not the server's work: the call's write was nine statements and a
tool's end four. Each is now one call of a PL/pgSQL function that runs the same statements on the
server, in the same order and with the same locks — `cmdc_record_call` (migration 0016) and
`cmdc_end_tool_use` (0015) — and refuses with its own SQLSTATEs what the statements refuse, raised
again here as the same typed errors. Their rows are bound exactly as the statements bind them
(`store.json_rows`); `tests/test_pg_round_functions.py` compares both paths row by row and event by
event.

Not for an audited message (its entry needs its sequence: never an agent's reply or a tool's result)
or a text column longer than `FUNCTION_TEXT_MAX` (a JSON string holds at most 256 MB; a text column
1 GB): those take the statements (`rounds`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB

from cmdc_nb.errors import InvalidStateError, NotFoundError
from cmdc_nb.services.agents.round_rows import (
    INSERT_AUDIT,
    INSERT_CALL,
    INSERT_MESSAGE,
    INSERT_TOOL_USES,
    CallDraft,
    NewMessage,
    NewToolUse,
    audited,
    call_audit,
    completed_call_row,
    message_row,
    session_counters,
    tool_use_row,
)
from cmdc_nb.services.cost_rows import CostRows
from cmdc_nb.services.sessions.records import _WRITABLE
from cmdc_nb.store.enums import MessageRole, ToolUseStatus
from cmdc_nb.store.json_rows import json_row
from cmdc_nb.store.models import (
    ActivityLog,
    AgentCall,
    CostDailySummary,
    CostRecord,
    CostRollup,
    Message,
    ToolUse,
)
from cmdc_nb.store.prepared import Prepared
from cmdc_nb.store.values import to_money, utcnow

if TYPE_CHECKING:
    from cmdc_nb._plumbing.workspace import Statement

__all__ = [
    "FUNCTION_TEXT_MAX",
    "Mispredicted",
    "call_payload",
    "end_tool",
    "end_tool_logged",
    "end_tool_logged_async",
    "ends_in_one_call",
    "record_call",
    "record_call_logged",
    "record_call_logged_async",
    "records_in_one_call",
    "tool_end_payload",
]

FUNCTION_TEXT_MAX = 1_000_000  # characters

_RECORD_CALL = Prepared(
    sa.text("SELECT seq, summary_id FROM cmdc_record_call(:p)")
    .bindparams(sa.bindparam("p", type_=JSONB))
    .columns(seq=sa.Integer(), summary_id=sa.Uuid())
)
_END_TOOL = Prepared(sa.select(sa.func.cmdc_end_tool_use(sa.bindparam("p", type_=JSONB))))
_LOGGED = (
    sa.bindparam("p", type_=JSONB),
    sa.bindparam("expect", type_=sa.Integer()),
    sa.bindparam("origin", type_=sa.Text()),
    sa.bindparam("at", type_=sa.DateTime(timezone=True)),
    sa.bindparam("events", type_=sa.LargeBinary()),
)
_RECORD_CALL_LOGGED = Prepared(
    sa.text(
        "SELECT seq, summary_id FROM cmdc_record_call_logged(:p, :expect, :summary, :origin, :at, :events)"
    )
    .bindparams(*_LOGGED, sa.bindparam("summary", type_=sa.Uuid()))
    .columns(seq=sa.Integer(), summary_id=sa.Uuid())
)
_END_TOOL_LOGGED = Prepared(
    sa.text("SELECT cmdc_end_tool_use_logged(:p, :expect, :origin, :at, :events) AS seq")
    .bindparams(*_LOGGED)
    .columns(seq=sa.Integer())
)
_INSERT_COST = Prepared(sa.insert(CostRecord))
_INSERT_SUMMARY = Prepared(sa.insert(CostDailySummary))
_INSERT_ROLLUP = Prepared(sa.insert(CostRollup))
_TABLES: dict[str, sa.Table] = {
    m.__tablename__: m.__table__  # type: ignore[misc]
    for m in (AgentCall, Message, ToolUse, ActivityLog, CostRecord, CostDailySummary, CostRollup)
}
_WRITABLE_VALUES = sorted(s.value for s in _WRITABLE)


def _short(*texts: str | None) -> bool:
    return all(len(t or "") <= FUNCTION_TEXT_MAX for t in texts)


def records_in_one_call(
    d: CallDraft, done: Mapping[str, Any], message: NewMessage | None, tool_uses: Sequence[NewToolUse] = ()
) -> bool:
    """Whether a completed call's write may be one call of `cmdc_record_call`: not for an audited
    message, a text too long, or a JSON column left None (stored as JSON `null` by the statements,
    which `jsonb_populate_record` would make SQL NULL: never so from the kernel)."""
    if message is not None and audited(message):
        return False
    documents = [done["response_blocks"], d.prompt_messages, d.tools_provided, d.meta]
    if message is not None:
        documents += [message.content_blocks, message.meta]
    documents += [x for t in tool_uses for x in (t.input, t.meta)]
    if any(x is None for x in documents):
        return False
    return _short(done["response_content"], d.system_prompt, message.content if message is not None else None)


def ends_in_one_call(output: str | None, message: NewMessage | None) -> bool:
    """Whether a tool use's end may be one call of `cmdc_end_tool_use`."""
    if message is not None and audited(message):
        return False
    return _short(output, message.content if message is not None else None)


def call_payload(
    dialect: sa.Dialect,
    d: CallDraft,
    done: Mapping[str, Any],
    now: dt.datetime,
    cost: CostRows,
    message: NewMessage | None,
    tool_uses: Sequence[NewToolUse],
) -> dict[str, Any]:
    """`cmdc_record_call`'s argument: `rounds.record_call_in`'s rows, bound as the statements bind them."""

    def row(insert: Prepared, table: str, values: Mapping[str, Any], **kw: Any) -> dict[str, Any]:
        return json_row(insert, _TABLES[table], dialect, values, **kw)

    counters = session_counters(done, message)
    return {
        "session_id": str(d.session_id),
        "at": now.isoformat(),
        "writable": _WRITABLE_VALUES,
        # the amount as the statements bind it (`Money`: quantized to the picodollar, half to even)
        "counters": {**counters, "total_cost_usd": str(to_money(counters["total_cost_usd"]))},
        "call": row(INSERT_CALL, "agent_calls", completed_call_row(d, done, now), json_null=("prompt_ref",)),
        "cost": row(_INSERT_COST, "cost_records", cost.record),
        "summary": row(_INSERT_SUMMARY, "cost_daily_summaries", cost.summary),
        "rollup": row(_INSERT_ROLLUP, "cost_rollups", cost.rollup),
        # its sequence is the function's to read, under the session's lock
        "message": None
        if message is None
        else row(INSERT_MESSAGE, "messages", message_row(message, d.session_id, 0)),
        "tool_uses": [row(INSERT_TOOL_USES, "tool_uses", tool_use_row(t, d, now)) for t in tool_uses],
        "audit": [row(INSERT_AUDIT, "activity_logs", a) for a in call_audit(d, done, tool_uses)],
    }


def record_call(conn: sa.Connection, payload: dict[str, Any], sid: uuid.UUID) -> tuple[int, uuid.UUID]:
    """`rounds.record_call_in`'s rows in one call (`call_payload`): the message's sequence and the
    daily summary's id."""
    found = _call(_RECORD_CALL, conn, {"p": payload}, sid, "new message")
    return int(found[0]), found[1]


def record_call_logged(
    st: Statement,
    payload: dict[str, Any],
    sid: uuid.UUID,
    *,
    expect_seq: int | None,
    expect_summary: uuid.UUID | None,
    events: bytes | None,
) -> tuple[int, uuid.UUID]:
    """`record_call` as a statement of its own that logs its events too (`cmdc_record_call_logged`,
    migration 0017): `events` encoded with the message's sequence `expect_seq` (and, when the
    summary's maps are left alone, for the row `expect_summary`). Raises `Mispredicted` when the
    server finds otherwise, with nothing kept."""
    assert st.conn is not None
    params = _call_logged_params(st, payload, expect_seq, expect_summary, events)
    found = _call(_RECORD_CALL_LOGGED, st.conn, params, sid, "new message")
    return int(found[0]), found[1]


async def record_call_logged_async(
    st: Statement,
    payload: dict[str, Any],
    sid: uuid.UUID,
    *,
    expect_seq: int | None,
    expect_summary: uuid.UUID | None,
    events: bytes | None,
) -> tuple[int, uuid.UUID]:
    """`record_call_logged` on an event loop's async connection (`Workspace.async_statement`)."""
    params = _call_logged_params(st, payload, expect_seq, expect_summary, events)
    found = await _acall(_RECORD_CALL_LOGGED, st, params, sid, "new message")
    return int(found[0]), found[1]


def _call_logged_params(
    st: Statement,
    payload: dict[str, Any],
    expect_seq: int | None,
    expect_summary: uuid.UUID | None,
    events: bytes | None,
) -> dict[str, Any]:
    return {
        "p": payload,
        "expect": expect_seq,
        "summary": expect_summary,
        "origin": st.origin,
        "at": utcnow(),
        "events": events,
    }


def tool_end_payload(
    tool: NewToolUse,
    session_id: uuid.UUID,
    now: dt.datetime,
    duration: int,
    target: ToolUseStatus,
    output: str | None,
    error: tuple[str, str, bool] | None,
    message: NewMessage | None,
) -> dict[str, Any]:
    """`cmdc_end_tool_use`'s argument: `rounds.record_tool_end_in`'s values."""
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
    return payload


def end_tool(conn: sa.Connection, payload: dict[str, Any], sid: uuid.UUID, action: str) -> int | None:
    """`rounds.record_tool_end_in`'s statements in one call (`tool_end_payload`): the message's
    sequence (None without)."""
    found = _call(_END_TOOL, conn, {"p": payload}, sid, action)
    return None if found[0] is None else int(found[0])


def end_tool_logged(
    st: Statement,
    payload: dict[str, Any],
    sid: uuid.UUID,
    action: str,
    *,
    expect_seq: int | None,
    events: bytes | None,
) -> int | None:
    """`end_tool` as a statement of its own that logs its events too (`cmdc_end_tool_use_logged`);
    `Mispredicted` as `record_call_logged`."""
    assert st.conn is not None
    params = {"p": payload, "expect": expect_seq, "origin": st.origin, "at": utcnow(), "events": events}
    found = _call(_END_TOOL_LOGGED, st.conn, params, sid, action)
    return None if found[0] is None else int(found[0])


async def end_tool_logged_async(
    st: Statement,
    payload: dict[str, Any],
    sid: uuid.UUID,
    action: str,
    *,
    expect_seq: int | None,
    events: bytes | None,
) -> int | None:
    """`end_tool_logged` on an event loop's async connection (`Workspace.async_statement`)."""
    params = {"p": payload, "expect": expect_seq, "origin": st.origin, "at": utcnow(), "events": events}
    found = await _acall(_END_TOOL_LOGGED, st, params, sid, action)
    return None if found[0] is None else int(found[0])


class Mispredicted(Exception):
    """A one-statement write found another sequence (or summary row) than its events were encoded
    with: nothing was kept, and the write goes the transaction's way."""


def _call(fn: Prepared, conn: sa.Connection, params: dict[str, Any], sid: uuid.UUID, action: str) -> Any:
    """Run a function's SELECT; its refusals raised as the statements' path raises them."""
    try:
        found = fn.one_or_none(conn, params)
    except sa.exc.DBAPIError as exc:
        raise _refusal(exc, sid, action) from None
    assert found is not None  # a SELECT of a function always returns its row
    return found


async def _acall(fn: Prepared, st: Statement, params: dict[str, Any], sid: uuid.UUID, action: str) -> Any:
    """`_call` on an event loop's async connection (`Workspace.async_statement`)."""
    try:
        found = await st.execute(fn, params)
    except sa.exc.DBAPIError as exc:
        raise _refusal(exc, sid, action) from None
    assert found is not None
    return found


def _refusal(exc: sa.exc.DBAPIError, sid: uuid.UUID, action: str) -> Exception:
    """A function's refusal (its own SQLSTATE) as the statements' path raises it; anything else as it
    came (`Workspace`'s transaction or statement translates it)."""
    code = getattr(exc.orig, "sqlstate", None)
    said = str(getattr(getattr(exc.orig, "diag", None), "message_primary", "") or "")
    if code == "CM004":
        return Mispredicted(said)
    if code == "CM001":  # the tool use was cancelled meanwhile (or is gone)
        return InvalidStateError("tool_use", "not executing", action, allowed=["executing"])
    if code == "CM002":
        return NotFoundError("session", sid)
    if code == "CM003":
        return InvalidStateError("session", said, "new message", allowed=_WRITABLE_VALUES)
    return exc
