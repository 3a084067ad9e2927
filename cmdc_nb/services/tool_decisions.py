"""The one writer of a tool use's decision: `pending → approved | denied`, its audit entry and its event.

Every path that decides a tool use ends here, inside the caller's transaction: an approval item decided
by a person or a rule (`approvals.decide_in`), a tool use approved or denied without an item
(`agents.approve_tool_use` / `deny_tool_use`), an expiry. So the tool use's row, its activity-log entry
and the `tool_use_approved` / `tool_use_denied` event (whose payload is `tool_payload`) are written once,
the same way, whoever decided.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.service import check_transition, jsonable
from cmdc_nb._plumbing.workspace import Tx
from cmdc_nb.events import topics
from cmdc_nb.store.enums import ActivityAction, ToolUseStatus
from cmdc_nb.store.models import ToolUse
from cmdc_nb.store.values import utcnow

__all__ = ["DECISION_EVENTS", "TOOL_USE_TRANSITIONS", "tool_payload"]

_T = ToolUseStatus
TOOL_USE_TRANSITIONS: dict[ToolUseStatus, frozenset[ToolUseStatus]] = {
    _T.PENDING: frozenset({_T.APPROVED, _T.DENIED, _T.EXECUTING, _T.CANCELLED}),
    _T.APPROVED: frozenset({_T.EXECUTING, _T.CANCELLED}),
    _T.DENIED: frozenset(),
    _T.EXECUTING: frozenset({_T.COMPLETED, _T.FAILED, _T.TIMEOUT, _T.CANCELLED}),
    _T.COMPLETED: frozenset(),
    _T.FAILED: frozenset(),
    _T.TIMEOUT: frozenset(),
    _T.CANCELLED: frozenset(),
}
# the events a waiting agent listens for, on its session's agent-calls topic
DECISION_EVENTS = {True: "tool_use_approved", False: "tool_use_denied"}


def tool_payload(t: ToolUse) -> dict[str, Any]:
    """What every tool-use event carries."""
    return {
        "tool_use_id": str(t.id),
        "agent_call_id": str(t.agent_call_id),
        "session_id": str(t.session_id),
        "tool_name": t.tool_name,
        "sequence": t.sequence,
        "status": t.status.value,
        "requires_approval": t.requires_approval,
        "approval_id": str(t.approval_id) if t.approval_id else None,
    }


def decide_tool_use_in(
    tx: Tx,
    tool: ToolUse,
    approved: bool,
    *,
    by: uuid.UUID | None,
    note: str | None,
    input: Mapping[str, Any] | None = None,
    approval_id: uuid.UUID | None = None,
    at: dt.datetime | None = None,
    via: str | None = None,
    owner: uuid.UUID | None = None,
) -> None:
    """Move a pending tool use (locked by the caller) to approved or denied. `input` replaces its
    arguments when approved (the original kept in `meta["original_input"]`); `via` says what decided
    it (an approval item's status, e.g. "auto_approved" or "expired") and `owner` on whose behalf a
    rule or an expiry decided, for the activity log."""
    target = _T.APPROVED if approved else _T.DENIED
    check_transition("tool_use", TOOL_USE_TRANSITIONS, tool.status, target)
    tool.status = target
    tool.approved_by_id = by
    tool.approved_at = at or utcnow()
    if approval_id is not None:
        tool.approval_id = approval_id
    if not approved:
        tool.denial_reason = note
    if approved and input is not None:
        tool.meta = {**tool.meta, "original_input": tool.input, "input_edited_by": str(by) if by else None}
        tool.input = jsonable(dict(input))
    tx.db.flush()
    details: dict[str, Any] = {"note": note}
    if approval_id is not None:
        details["approval_id"] = str(approval_id)
    if via is not None:
        details["via"] = via
    log_activity(
        tx,
        ActivityAction.TOOL_APPROVE if approved else ActivityAction.TOOL_DENY,
        resource_type="tool_use",
        resource_id=tool.id,
        user_id=by or owner,
        session_id=tool.session_id,
        details=details,
    )
    tx.publish(topics.session_agent_calls(tool.session_id), DECISION_EVENTS[approved], tool_payload(tool))
