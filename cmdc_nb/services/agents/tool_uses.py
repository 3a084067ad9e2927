"""Tool uses: what a call asked a tool to do, with its policy (approval class, side effects), its
approval item when it needs one, and its run (`executing → completed | failed | timeout | cancelled`).
A decision is written by `services.tool_decisions`, whichever way it is taken."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import check_transition, fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import ApprovalDeniedError, ApprovalRequiredError, InvalidInputError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.services import approvals
from cmdc_nb.services.agents.calls import CallRef, ToolRef, _elapsed_ms
from cmdc_nb.services.tool_decisions import TOOL_USE_TRANSITIONS, decide_tool_use_in, tool_payload
from cmdc_nb.store.enums import (
    ActivityAction,
    ApprovalSourceType,
    ApprovalStatus,
    Priority,
    RiskLevel,
    TimeoutAction,
    ToolUseStatus,
)
from cmdc_nb.store.models import AgentCall, ApprovalItem, Session, ToolUse, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import utcnow

__all__ = [
    "APPROVAL_CLASSES",
    "approval_required",
    "approve_tool_use",
    "cancel_tool_use",
    "complete_tool_use",
    "create_tool_use",
    "deny_tool_use",
    "fail_tool_use",
    "get_tool_use",
    "list_pending_tool_uses",
    "list_tool_uses",
    "normalize_policy",
    "start_tool_execution",
]


_T = ToolUseStatus

# --- tool policies ----------------------------------------------------------------------------------

APPROVAL_CLASSES = ("none", "low", "medium", "high", "critical")
_PRIORITY_OF_CLASS = {
    "critical": Priority.CRITICAL,
    "high": Priority.HIGH,
    "medium": Priority.NORMAL,
    "low": Priority.LOW,
    "none": Priority.LOW,
}


@checked
def normalize_policy(policy: Mapping[str, Any] | None) -> dict[str, Any]:
    """A tool policy with string keys, a lower-case `approval_class` (one of APPROVAL_CLASSES, or
    None) and `side_effects` / `capabilities` as lists of strings."""
    if policy is None:
        return {"approval_class": None, "side_effects": [], "capabilities": []}
    if not isinstance(policy, Mapping):
        raise InvalidInputError("must be a mapping", field="policy")
    out = {str(k): jsonable(val) for k, val in policy.items()}
    cls = out.get("approval_class")
    if cls is not None:
        cls = str(cls).lower()
        if cls not in APPROVAL_CLASSES:
            raise InvalidInputError(f"{cls!r} is not one of: {', '.join(APPROVAL_CLASSES)}", field="policy")
    out["approval_class"] = cls
    for key in ("side_effects", "capabilities"):
        raw = out.get(key) or []
        out[key] = [str(x) for x in ([raw] if isinstance(raw, str) else raw)]
    return out


@checked
def approval_required(policy: Mapping[str, Any] | None) -> bool:
    """Whether a policy's approval class asks for a decision (anything but none/absent)."""
    return normalize_policy(policy)["approval_class"] not in (None, "none")


def _schema_dict(schema: Any) -> dict[str, Any] | None:
    if schema is None:
        return None
    if hasattr(schema, "to_tool") and callable(schema.to_tool):
        schema = schema.to_tool()
    if not isinstance(schema, Mapping):
        raise InvalidInputError("must be a mapping or have a to_tool() method", field="tool_schema")
    out = dict(schema)
    function = out.get("function")
    if isinstance(function, Mapping):  # OpenAI's {"type": "function", "function": {...}} shape
        out = {**out, **function}
    out.pop("function", None)
    return jsonable(out)  # type: ignore[no-any-return]


@checked
def create_tool_use(
    call: CallRef,
    *,
    tool_name: str | None = None,
    input: Mapping[str, Any] | None = None,
    tool_use_id: str | None = None,
    tool_schema: Any = None,
    policy: Mapping[str, Any] | None = None,
    requires_approval: bool | None = None,
    priority: Priority | str | None = None,
    expires_in: float | None = None,
    timeout_action: TimeoutAction | str = TimeoutAction.DENY,
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> ToolUse:
    """Record a tool call the model asked for; it gets the next sequence number within its call.

    `requires_approval` defaults to what the policy says. When approval is required, the approval
    item (priority from the policy's class, risk from its side effects and capabilities) is created
    in the same transaction and the owner's rules run on it: the returned tool use may already be
    `approved` or `denied`.
    """
    schema = _schema_dict(tool_schema)
    name = tool_name if tool_name is not None else (schema or {}).get("name")
    name = v.text(name, "tool_name", max_len=100) if name is not None else None
    if name is None:
        raise InvalidInputError("give tool_name= or a tool_schema with a name", field="tool_name")
    if input is not None and not isinstance(input, Mapping):
        raise InvalidInputError("must be a mapping of argument names to values", field="input")
    if tool_use_id is not None:
        v.external_id(tool_use_id, "tool_use_id")
    pol = normalize_policy(policy)
    needs = approval_required(policy) if requires_approval is None else bool(requires_approval)
    meta = dict(metadata or {})
    if schema is not None:
        meta["tool_schema"] = schema
    if policy is not None:
        meta["policy"] = pol
    call_id = v.id_of(call, "agent_call")
    expires_at = v.expiry(None, expires_in) if needs else None
    with get_workspace(ws).transaction() as tx:
        session_id, user_id, seq = _lock_call(tx, call_id)
        tool = ToolUse(
            id=uuid.uuid4(),
            agent_call_id=call_id,
            session_id=session_id,
            tool_name=name,
            tool_use_id=tool_use_id,
            input=jsonable(dict(input or {})),
            requires_approval=needs,
            sequence=seq,
            meta=meta,
        )
        tx.db.add(tool)
        tx.db.flush()
        tx.publish(topics.session_agent_calls(session_id), "tool_use_created", tool_payload(tool))
        if needs:
            _ask_for_approval(
                tx, tool, user_id, schema=schema, policy=pol, priority=priority, expires_at=expires_at,
                timeout_action=timeout_action,
            )  # fmt: skip
    return tool


def _lock_call(tx: Tx, call_id: uuid.UUID) -> tuple[uuid.UUID, uuid.UUID, int]:
    """The call's session and user, and the next tool-use sequence number within it. Touching the call
    row locks it, so concurrent tool uses of one call number in turn."""
    locked = tx.db.execute(
        sa.update(AgentCall)
        .where(AgentCall.id == call_id)
        .values(updated_at=utcnow())
        .returning(AgentCall.session_id, AgentCall.user_id)
    ).one_or_none()
    if locked is None:
        raise NotFoundError("agent_call", call_id)
    last = tx.db.scalar(sa.select(sa.func.max(ToolUse.sequence)).where(ToolUse.agent_call_id == call_id))
    return locked[0], locked[1], (last or 0) + 1


def _ask_for_approval(
    tx: Tx,
    tool: ToolUse,
    user_id: uuid.UUID,
    *,
    schema: Mapping[str, Any] | None,
    policy: Mapping[str, Any],
    priority: Priority | str | None,
    expires_at: Any,
    timeout_action: TimeoutAction | str,
) -> None:
    """The tool use's approval item (priority from the policy's class, risk from its side effects and
    capabilities), then the owner's rules on it: the tool use may leave here approved or denied."""
    cls = policy["approval_class"]
    item = approvals.insert_item_in(
        tx,
        user_id=user_id,
        approval_type="tool_use",
        title=f"Approve tool: {tool.tool_name}",
        description=(schema or {}).get("description"),
        payload={
            "tool_name": tool.tool_name,
            "tool_use_id": str(tool.id),
            "input": tool.input,
            "tool_schema": schema,
            "policy": policy,
        },
        source_type=ApprovalSourceType.TOOL_USE,
        source_id=tool.id,
        session_id=tool.session_id,
        context={"agent_call_id": str(tool.agent_call_id), "session_id": str(tool.session_id)},
        # "none" is not a risk level (the seed's items failed validation on it).
        risk_level=cls if cls in {r.value for r in RiskLevel} else None,
        risk_factors=list(dict.fromkeys([*policy["side_effects"], *policy["capabilities"]])),
        priority=priority or _PRIORITY_OF_CLASS.get(cls or "", Priority.NORMAL),
        expires_at=expires_at,
        timeout_action=timeout_action,
    )
    tool.approval_id = item.id
    tx.db.flush()
    approvals.auto_decide_in(tx, item)
    tx.db.refresh(tool)


@checked
def get_tool_use(tool_use: ToolRef, *, ws: Workspace | None = None) -> ToolUse:
    with get_workspace(ws).read() as db:
        return fetch(db, ToolUse, tool_use, "tool_use")


def _pending_item(tx: Tx, tool: ToolUse) -> ApprovalItem | None:
    if tool.approval_id is None:
        return None
    item = fetch(tx.db, ApprovalItem, tool.approval_id, "approval_item", lock=True)
    return item if item.status is ApprovalStatus.PENDING else None


def _decide_tool(
    tool_use: ToolRef,
    approve: bool,
    *,
    by: User | uuid.UUID | str | None,
    note: str | None,
    input: Mapping[str, Any] | None,
    remember: bool,
    ws: Workspace | None,
) -> ToolUse:
    uid = v.id_of(by, "by") if by is not None else None
    if input is not None and not isinstance(input, Mapping):
        raise InvalidInputError("must be a mapping of argument names to values", field="input")
    with get_workspace(ws).transaction() as tx:
        tool = fetch(tx.db, ToolUse, tool_use, "tool_use", lock=True)
        check_transition("tool_use", TOOL_USE_TRANSITIONS, tool.status, _T.APPROVED if approve else _T.DENIED)
        item = _pending_item(tx, tool)
        if item is None:  # approval was not required: no item to decide
            decide_tool_use_in(tx, tool, approve, by=uid, note=note, input=input)
            return tool
        # Decided through its approval item, which moves this tool use in the same transaction.
        edited = {**item.payload, "input": jsonable(dict(input))} if input is not None else None
        status = ApprovalStatus.APPROVED if approve else ApprovalStatus.DENIED
        approvals.decide_in(tx, item, status, by=uid, note=note, modified_payload=edited)
        if approve and remember:
            approvals.remember_decision_in(tx, item, uid or item.user_id)
        tx.db.refresh(tool)
    return tool


@checked
def approve_tool_use(
    tool_use: ToolRef,
    *,
    by: User | uuid.UUID | str | None = None,
    note: str | None = None,
    input: Mapping[str, Any] | None = None,
    remember: bool = False,
    ws: Workspace | None = None,
) -> ToolUse:
    """Approve a pending tool use (and its approval item). `input` replaces the arguments (the
    original is kept in `meta["original_input"]`); `remember` adds a sticky rule for this tool with
    these arguments in this session."""
    return _decide_tool(tool_use, True, by=by, note=note, input=input, remember=remember, ws=ws)


@checked
def deny_tool_use(
    tool_use: ToolRef,
    *,
    by: User | uuid.UUID | str | None = None,
    reason: str | None = None,
    ws: Workspace | None = None,
) -> ToolUse:
    return _decide_tool(tool_use, False, by=by, note=reason, input=None, remember=False, ws=ws)


@checked
def start_tool_execution(tool_use: ToolRef, *, ws: Workspace | None = None) -> ToolUse:
    """`executing`, from `approved` (or `pending` when no approval is required).

    Raises ApprovalRequiredError while a required decision is outstanding and ApprovalDeniedError
    once it was denied, so an agent can tell "wait" from "no".
    """
    with get_workspace(ws).transaction() as tx:
        tool = fetch(tx.db, ToolUse, tool_use, "tool_use", lock=True)
        if tool.status is _T.PENDING and tool.requires_approval:
            raise ApprovalRequiredError(
                f"tool use {tool.tool_name!r} is waiting for approval", approval_id=tool.approval_id
            )
        if tool.status is _T.DENIED:
            raise ApprovalDeniedError(
                f"tool use {tool.tool_name!r} was denied",
                approval_id=tool.approval_id,
                note=tool.denial_reason,
            )
        check_transition("tool_use", TOOL_USE_TRANSITIONS, tool.status, _T.EXECUTING)
        tool.status = _T.EXECUTING
        tool.started_at = utcnow()
        tx.db.flush()
        log_activity(
            tx,
            ActivityAction.TOOL_EXECUTE,
            resource_type="tool_use",
            resource_id=tool.id,
            user_id=None,
            session_id=tool.session_id,
            details={"tool_name": tool.tool_name, "input": tool.input},
        )
        tx.publish(topics.session_agent_calls(tool.session_id), "tool_use_started", tool_payload(tool))
    return tool


def _finish_tool(tx: Tx, tool_use: ToolRef, target: ToolUseStatus) -> ToolUse:
    tool = fetch(tx.db, ToolUse, tool_use, "tool_use", lock=True)
    check_transition("tool_use", TOOL_USE_TRANSITIONS, tool.status, target)
    tool.status = target
    tool.completed_at = utcnow()
    tool.duration_ms = _elapsed_ms(tool.started_at)
    return tool


@checked
def complete_tool_use(
    tool_use: ToolRef,
    *,
    output: str | None = None,
    output_truncated: bool = False,
    file_changes: Sequence[Mapping[str, Any]] | None = None,
    exit_code: int | None = None,
    stdout: str | None = None,
    stderr: str | None = None,
    ws: Workspace | None = None,
) -> ToolUse:
    with get_workspace(ws).transaction() as tx:
        tool = _finish_tool(tx, tool_use, _T.COMPLETED)
        tool.output = output
        tool.output_truncated = bool(output_truncated)
        tool.file_changes = jsonable(list(file_changes or []))
        tool.exit_code, tool.stdout, tool.stderr = exit_code, stdout, stderr
        tx.db.flush()
        tx.publish(topics.session_agent_calls(tool.session_id), "tool_use_completed", tool_payload(tool))
    return tool


@checked
def fail_tool_use(
    tool_use: ToolRef,
    *,
    error_type: str,
    error_message: str | None = None,
    exit_code: int | None = None,
    stderr: str | None = None,
    timed_out: bool = False,
    ws: Workspace | None = None,
) -> ToolUse:
    """The tool ran and failed (`timed_out=True` records a timeout instead)."""
    error_type = v.text(error_type, "error_type", max_len=100)
    with get_workspace(ws).transaction() as tx:
        tool = _finish_tool(tx, tool_use, _T.TIMEOUT if timed_out else _T.FAILED)
        tool.error_type, tool.error_message = error_type, error_message
        tool.exit_code, tool.stderr = exit_code, stderr
        tx.db.flush()
        tx.publish(topics.session_agent_calls(tool.session_id), "tool_use_failed", tool_payload(tool))
    return tool


@checked
def cancel_tool_use(tool_use: ToolRef, *, reason: str | None = None, ws: Workspace | None = None) -> ToolUse:
    """Cancel a tool use that has not finished. A still-pending approval item is denied with it."""
    with get_workspace(ws).transaction() as tx:
        tool = fetch(tx.db, ToolUse, tool_use, "tool_use", lock=True)
        check_transition("tool_use", TOOL_USE_TRANSITIONS, tool.status, _T.CANCELLED)
        item = _pending_item(tx, tool)
        tool.status = _T.CANCELLED
        tool.completed_at = utcnow()
        tool.error_type, tool.error_message = "cancelled", reason
        tx.db.flush()
        if item is not None:
            approvals.decide_in(
                tx, item, ApprovalStatus.DENIED, note=reason or "tool use cancelled", reason="cancelled"
            )
        tx.publish(topics.session_agent_calls(tool.session_id), "tool_use_cancelled", tool_payload(tool))
    return tool


@checked
def list_tool_uses(
    call: CallRef, *, limit: int = 100, after: str | None = None, ws: Workspace | None = None
) -> Page[ToolUse]:
    """A call's tool uses in the order the model asked for them."""
    stmt = sa.select(ToolUse).where(ToolUse.agent_call_id == v.id_of(call, "agent_call"))
    with get_workspace(ws).read() as db:
        return paginate(
            db,
            stmt,
            order_by=ToolUse.sequence,
            id_column=ToolUse.id,
            limit=limit,
            after=after,
            descending=False,
        )


@checked
def list_pending_tool_uses(
    session: Session | uuid.UUID | str,
    *,
    limit: int = 100,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[ToolUse]:
    """Tool uses in the session still waiting for an approval decision, oldest first."""
    stmt = sa.select(ToolUse).where(
        ToolUse.session_id == v.id_of(session, "session"),
        ToolUse.requires_approval.is_(True),
        ToolUse.status == _T.PENDING,
    )
    with get_workspace(ws).read() as db:
        access.check_session_id(db, v.id_of(session, "session"), "read")
        return paginate(
            db,
            stmt,
            order_by=ToolUse.inserted_at,
            id_column=ToolUse.id,
            limit=limit,
            after=after,
            descending=False,
        )
