"""PostgreSQL: a stored round's write as one statement that is a transaction of its own.

`rounds.write_call` and `rounds.write_tool_end` write in a transaction: four round trips (BEGIN, the
function, the event log's append, COMMIT). When nothing else needs the transaction, the write is one
call of the function's `_logged` variant (migration 0017), which appends the write's events to the
shared log itself, sent on an autocommit connection: one round trip. The events carry the message's
sequence, which the writer predicts (`expect_seq`: the sequence it stored last, plus one) and the
function checks under the session's lock: a wrong guess raises `Mispredicted` with nothing kept, and
the write takes the transaction's path (`NOT_HERE`). So does a cost that needs the daily summary's maps
(`cost_rows.maps_need_nothing`), a budget that applies (its warnings are the transaction's to publish),
an audited message, or what the function cannot take (`round_functions`).

A `Plan` is made once and run either way: in a thread (`run`, `Workspace.statement`) or on the caller's
event loop (`run_async`, `Workspace.async_statement`: the loop waits on the socket, no thread hand-over;
`WouldWait` when its connection is in use, and the caller takes a thread).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cmdc_nb._plumbing import lookups
from cmdc_nb._plumbing.workspace import Statement, Workspace, WouldWait
from cmdc_nb.services.agents import round_functions
from cmdc_nb.services.agents.round_rows import (
    CallDraft,
    NewMessage,
    NewToolUse,
    audited,
    completed_with_cost,
    ended_tool,
    publish_call,
    publish_tool_end,
)
from cmdc_nb.services.cost_rows import maps_need_nothing
from cmdc_nb.services.pricing import Price
from cmdc_nb.store import event_log
from cmdc_nb.store.values import utcnow

__all__ = ["NOT_HERE", "Plan", "plan_call", "plan_tool_end", "run", "run_async"]

NOT_HERE: Any = object()  # the one statement did not store it: the transaction's path does


@dataclass
class Plan:
    """One write as one statement: the function's argument, what the events announce, and what the
    server is to check."""

    kind: str  # "call" or "tool_end"
    payload: dict[str, Any]
    session_id: uuid.UUID
    action: str
    has_message: bool
    expect_seq: int | None
    expect_summary: uuid.UUID | None
    announce: Any  # publishes the write's events on a Statement

    def execute(self, st: Statement) -> Any:
        kw = self._prepared(st)
        if self.kind == "call":
            return round_functions.record_call_logged(st, self.payload, self.session_id, **kw)[0]
        return round_functions.end_tool_logged(st, self.payload, self.session_id, self.action, **kw)

    async def execute_async(self, st: Statement) -> Any:
        kw = self._prepared(st)
        if self.kind == "call":
            found = await round_functions.record_call_logged_async(st, self.payload, self.session_id, **kw)
            return found[0]
        return await round_functions.end_tool_logged_async(
            st, self.payload, self.session_id, self.action, **kw
        )

    def _prepared(self, st: Statement) -> dict[str, Any]:
        """The events queued and encoded for the log (none when the workspace does not share them)."""
        self.announce(st)
        kw: dict[str, Any] = {
            "expect_seq": self.expect_seq,
            "events": event_log.encode(st.events) if st.origin is not None else None,
        }
        if self.kind == "call":
            kw["expect_summary"] = self.expect_summary
        return kw

    def result(self, found: Any) -> int | None:
        return int(found) if self.has_message and found is not None else None


def _possible(w: Workspace, message: NewMessage | None, expect_seq: int | None) -> bool:
    return (
        w.backend == "postgresql"
        and (message is None or (expect_seq is not None and not audited(message)))
        and not w.in_transaction()
    )


def plan_call(
    w: Workspace,
    d: CallDraft,
    done: Mapping[str, Any],
    price: Price | None,
    cell: str | None,
    message: NewMessage | None,
    tool_uses: Sequence[NewToolUse],
    expect_seq: int | None,
    *,
    may_read: bool,
) -> Plan | None:
    """`rounds.write_call`'s one statement, or None when the transaction must write it. `may_read`:
    whether "does a budget apply" may be read now when not remembered (not on an event loop)."""
    if not _possible(w, message, expect_seq):
        return None
    now = utcnow()
    done, cost = completed_with_cost(d, done, price, cell, now)
    hold, summary = maps_need_nothing(w.engine.url, cost)
    if not hold or not round_functions.records_in_one_call(d, done, message, tool_uses):
        return None
    applies = lookups.cached(w, ("budgets", d.user_id, d.session_id))
    if applies is lookups.MISS:  # the kernel has asked already (`Recorder._fast`)
        if not may_read:
            return None
        from cmdc_nb.services.agents.rounds import budgets_apply

        applies = budgets_apply(d.user_id, d.session_id, ws=w)
    if applies:
        return None
    seq = expect_seq if message is not None else None
    return Plan(
        kind="call",
        payload=round_functions.call_payload(w.engine.dialect, d, done, now, cost, message, tool_uses),
        session_id=d.session_id,
        action="new message",
        has_message=message is not None,
        expect_seq=seq,
        expect_summary=summary,
        announce=lambda st: publish_call(st, d, done, cost, message, tool_uses, seq or 0),
    )


def plan_tool_end(
    w: Workspace,
    tool: NewToolUse,
    call_id: uuid.UUID,
    session_id: uuid.UUID,
    started_at: dt.datetime,
    output: str | None,
    error: tuple[str, str, bool] | None,
    message: NewMessage | None,
    expect_seq: int | None,
) -> Plan | None:
    """`rounds.write_tool_end`'s one statement, or None when the transaction must write it."""
    if not _possible(w, message, expect_seq):
        return None
    now = utcnow()
    out, err, target, duration = ended_tool(output, error, started_at, now)
    if not round_functions.ends_in_one_call(out, message):
        return None
    seq = expect_seq if message is not None else None
    return Plan(
        kind="tool_end",
        payload=round_functions.tool_end_payload(tool, session_id, now, duration, target, out, err, message),
        session_id=session_id,
        action=target.value,
        has_message=message is not None,
        expect_seq=seq,
        expect_summary=None,
        announce=lambda st: publish_tool_end(st, tool, call_id, session_id, err, message, seq, target),
    )


def run(w: Workspace, plan: Plan) -> Any:
    """The plan as one statement on a thread's kept autocommit connection: the message's sequence,
    or `NOT_HERE` when the server found another sequence or summary row (nothing kept)."""
    try:
        with w.statement() as st:
            return plan.result(plan.execute(st))
    except round_functions.Mispredicted:
        return NOT_HERE


async def run_async(w: Workspace, plan: Plan) -> Any:
    """`run` on the caller's event loop (its own async connection); `NOT_HERE` also when that
    connection is in use."""
    try:
        async with w.async_statement() as st:
            return plan.result(await plan.execute_async(st))
    except (round_functions.Mispredicted, WouldWait):
        return NOT_HERE
