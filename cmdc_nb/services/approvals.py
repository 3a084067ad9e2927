"""The approval queue and the auto-approval rules that decide items before a human has to.

An item is decided once: approved or denied by a person (with a note and, optionally, edited
arguments), auto-approved or denied by a rule, or expired according to its `timeout_action`. When an
item belongs to a tool use, the tool use is moved in the same transaction, whichever side was decided.

How rules decide a new item (`try_auto_approve`, run automatically on creation):

1. Candidates are the owner's active rules for the item's type (or `"*"`), highest priority first.
2. A rule *matches* when its tool names, conditions (`cmdc_nb.matching`) and scope (`applies_to_sessions`,
   `applies_to_workflows`) all hold.
3. Any matching `deny` rule denies: deny beats approve, whatever the priorities.
4. Otherwise the matching rules are walked by priority: `require_review` stops the walk (a human
   decides); `approve` approves if the rule is within its limits (a sliding hour window and a per-session
   cap, counted from the decisions themselves under a row lock, so concurrent items cannot overshoot);
   a rule at its limit is passed over.

>>> rule = create_approval_rule(user, name="tmp files", approval_type="file_write",      # doctest: +SKIP
...     conditions={"path_pattern": "/tmp/**"}, action="approve", max_auto_approvals_per_hour=100)
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.service import UNSET, Unset, fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError, InvalidStateError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.services.matching import compile_conditions
from cmdc_nb.services.tool_decisions import decide_tool_use_in
from cmdc_nb.store.enums import (
    ActivityAction,
    ApprovalSourceType,
    ApprovalStatus,
    ApprovalType,
    Priority,
    RiskLevel,
    RuleAction,
    RuleStatus,
    TimeoutAction,
    ToolUseStatus,
)
from cmdc_nb.store.models import ApprovalItem, ApprovalRule, Session, ToolUse, User, WorkflowRun
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import utcnow

__all__ = [
    "PRIORITY_RANK",
    "ExpiryReport",
    "RuleDecision",
    "approve_item",
    "count_pending_approvals",
    "create_approval_item",
    "create_approval_rule",
    "delete_approval_rule",
    "deny_item",
    "disable_rule",
    "enable_rule",
    "expire_old_approvals",
    "find_matching_rules",
    "get_approval_item",
    "get_approval_rule",
    "list_approval_rules",
    "list_pending_approvals",
    "list_session_pending_approvals",
    "try_auto_approve",
    "update_approval_rule",
]

PRIORITY_RANK = {Priority.LOW: 0, Priority.NORMAL: 1, Priority.HIGH: 2, Priority.CRITICAL: 3}
_BY_RANK = {rank: p for p, rank in PRIORITY_RANK.items()}
WINDOW = dt.timedelta(hours=1)
STICKY_PRIORITY = 1000

UserRef = User | uuid.UUID | str
ItemRef = ApprovalItem | uuid.UUID | str
RuleRef = ApprovalRule | uuid.UUID | str


@dataclass(frozen=True)
class RuleDecision:
    """What the rules made of an item: `auto_approved`, `denied`, `review` (a rule asked for a
    human) or `no_match`; `rule` is the deciding rule, if any."""

    outcome: Literal["auto_approved", "denied", "review", "no_match"]
    item: ApprovalItem
    rule: ApprovalRule | None = None


@dataclass(frozen=True)
class ExpiryReport:
    """What `expire_old_approvals` did, by timeout action."""

    expired: list[uuid.UUID] = field(default_factory=list)
    approved: list[uuid.UUID] = field(default_factory=list)
    escalated: list[uuid.UUID] = field(default_factory=list)

    @property
    def total(self) -> int:
        return len(self.expired) + len(self.approved) + len(self.escalated)


# --- items ------------------------------------------------------------------------------------------


def _item_payload(item: ApprovalItem) -> dict[str, Any]:
    return {
        "approval_id": str(item.id),
        "user_id": str(item.user_id),
        "session_id": str(item.session_id) if item.session_id else None,
        "approval_type": item.approval_type,
        "status": item.status.value,
        "priority": item.priority.value,
        "title": item.title,
        "source_type": item.source_type.value,
        "source_id": str(item.source_id) if item.source_id else None,
        "risk_level": item.risk_level.value if item.risk_level else None,
    }


def insert_item_in(
    tx: Tx,
    *,
    user_id: uuid.UUID,
    approval_type: ApprovalType | str,
    title: str,
    payload: Mapping[str, Any],
    source_type: ApprovalSourceType | str = ApprovalSourceType.MANUAL,
    source_id: uuid.UUID | None = None,
    session_id: uuid.UUID | None = None,
    workflow_run_id: uuid.UUID | None = None,
    description: str | None = None,
    context: Mapping[str, Any] | None = None,
    risk_level: RiskLevel | str | None = None,
    risk_factors: Sequence[str] = (),
    priority: Priority | str = Priority.NORMAL,
    expires_at: dt.datetime | None = None,
    timeout_action: TimeoutAction | str = TimeoutAction.DENY,
    metadata: Mapping[str, Any] | None = None,
) -> ApprovalItem:
    """Insert a pending item inside `tx` (no rules run yet; see `auto_decide`). For other services."""
    prio = v.choice(Priority, priority, "priority")
    if not isinstance(payload, Mapping):
        raise InvalidInputError("must be a mapping", field="payload")
    item = ApprovalItem(
        id=uuid.uuid4(),
        user_id=user_id,
        session_id=session_id,
        workflow_run_id=workflow_run_id,
        approval_type=v.choice(ApprovalType, approval_type, "approval_type").value,
        status=ApprovalStatus.PENDING,
        priority=prio,
        priority_rank=PRIORITY_RANK[prio],
        title=v.text(title, "title", max_len=300),
        description=description,
        payload=jsonable(dict(payload)),
        source_type=v.choice(ApprovalSourceType, source_type, "source_type"),
        source_id=source_id,
        context=jsonable(dict(context)) if context is not None else None,
        risk_level=v.choice(RiskLevel, risk_level, "risk_level") if risk_level is not None else None,
        risk_factors=list(dict.fromkeys(risk_factors)),
        expires_at=expires_at,
        timeout_action=v.choice(TimeoutAction, timeout_action, "timeout_action"),
        meta=dict(metadata or {}),
    )
    tx.db.add(item)
    tx.db.flush()
    log_activity(
        tx,
        ActivityAction.APPROVAL_CREATE,
        resource_type="approval_item",
        resource_id=item.id,
        user_id=user_id,
        session_id=session_id,
        details={"approval_type": item.approval_type, "priority": prio.value, "title": item.title},
    )
    tx.publish(topics.user_approvals(user_id), "approval_created", _item_payload(item))
    return item


def create_approval_item(
    user: UserRef,
    *,
    approval_type: ApprovalType | str,
    title: str,
    payload: Mapping[str, Any],
    source_type: ApprovalSourceType | str = ApprovalSourceType.MANUAL,
    source_id: uuid.UUID | str | None = None,
    session: Session | uuid.UUID | str | None = None,
    workflow_run: WorkflowRun | uuid.UUID | str | None = None,
    description: str | None = None,
    context: Mapping[str, Any] | None = None,
    risk_level: RiskLevel | str | None = None,
    risk_factors: Sequence[str] = (),
    priority: Priority | str = Priority.NORMAL,
    expires_at: dt.datetime | None = None,
    expires_in: dt.timedelta | float | None = None,
    timeout_action: TimeoutAction | str = TimeoutAction.DENY,
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> ApprovalItem:
    """Queue an item for a decision. The owner's rules are applied at once: the returned item may
    already be auto-approved or denied."""
    uid = v.id_of(user, "user")
    expiry = v.expiry(expires_at, expires_in)
    with get_workspace(ws).transaction() as tx:
        if tx.db.get(User, uid) is None:
            raise NotFoundError("user", uid)
        item = insert_item_in(
            tx,
            user_id=uid,
            approval_type=approval_type,
            title=title,
            payload=payload,
            source_type=source_type,
            source_id=v.uuid_of(source_id, "source_id") if source_id is not None else None,
            session_id=v.id_of(session, "session") if session is not None else None,
            workflow_run_id=v.id_of(workflow_run, "workflow_run") if workflow_run is not None else None,
            description=description,
            context=context,
            risk_level=risk_level,
            risk_factors=risk_factors,
            priority=priority,
            expires_at=expiry,
            timeout_action=timeout_action,
            metadata=metadata,
        )
        auto_decide_in(tx, item)
    return item


def get_approval_item(item: ItemRef, *, ws: Workspace | None = None) -> ApprovalItem:
    with get_workspace(ws).read() as db:
        return fetch(db, ApprovalItem, item, "approval_item")


_DECISION_EVENT = {
    ApprovalStatus.APPROVED: "approval_approved",
    ApprovalStatus.AUTO_APPROVED: "approval_approved",
    ApprovalStatus.DENIED: "approval_denied",
    ApprovalStatus.EXPIRED: "approval_expired",
}
_DECISION_ACTION = {
    ApprovalStatus.APPROVED: ActivityAction.APPROVAL_APPROVE,
    ApprovalStatus.AUTO_APPROVED: ActivityAction.APPROVAL_APPROVE,
    ApprovalStatus.DENIED: ActivityAction.APPROVAL_DENY,
    ApprovalStatus.EXPIRED: ActivityAction.APPROVAL_EXPIRE,
}


def decide_in(
    tx: Tx,
    item: ApprovalItem,
    status: ApprovalStatus,
    *,
    by: uuid.UUID | None = None,
    rule: ApprovalRule | None = None,
    note: str | None = None,
    modified_payload: Mapping[str, Any] | None = None,
    reason: str | None = None,
) -> None:
    """Decide a pending item inside `tx`, and move its tool use (if any) to match. For other services."""
    if item.status is not ApprovalStatus.PENDING:
        raise InvalidStateError("approval_item", item.status.value, status.value)
    now = utcnow()
    item.status = status
    item.decided_at = now
    item.decided_by_id = by
    item.decision_note = note
    if rule is not None:
        item.auto_approval_rule_id = rule.id
        item.auto_approval_reason = rule.action_note or f"rule {rule.name!r}"
    edit: dict[str, Any] | None = None
    if modified_payload is not None:
        if not isinstance(modified_payload, Mapping):
            raise InvalidInputError("must be a mapping", field="modified_payload")
        item.modified_payload = jsonable(dict(modified_payload))
        edit = {
            k: {"from": item.payload.get(k), "to": item.modified_payload[k]}
            for k in item.modified_payload
            if item.payload.get(k) != item.modified_payload[k]
        }
        item.meta = {**item.meta, "edit": edit}
    details: dict[str, Any] = {"status": status.value, "note": note}
    if rule is not None:
        details["rule_id"] = str(rule.id)
    if reason:
        details["reason"] = reason
    if edit:
        details["edited"] = edit
    tx.db.flush()
    log_activity(
        tx,
        _DECISION_ACTION[status],
        resource_type="approval_item",
        resource_id=item.id,
        user_id=by or item.user_id,
        session_id=item.session_id,
        details=details,
    )
    payload = {**_item_payload(item), "decided_by": str(by) if by else None, "note": note}
    if rule is not None:
        payload["rule_id"] = str(rule.id)
    tx.publish(topics.user_approvals(item.user_id), _DECISION_EVENT[status], payload)
    if item.source_type is ApprovalSourceType.TOOL_USE and item.source_id is not None:
        _decide_tool_use(tx, item, by=by, note=note or item.auto_approval_reason)


def _decide_tool_use(tx: Tx, item: ApprovalItem, *, by: uuid.UUID | None, note: str | None) -> None:
    tool = tx.db.get(ToolUse, item.source_id, with_for_update=True, populate_existing=True)
    if tool is None or tool.status is not ToolUseStatus.PENDING:
        return  # it went on without this decision (cancelled, or run without approval)
    approved = item.status in (ApprovalStatus.APPROVED, ApprovalStatus.AUTO_APPROVED)
    if not approved and note is None and item.status is ApprovalStatus.EXPIRED:
        note = "approval expired"
    edited = item.modified_payload
    decide_tool_use_in(
        tx,
        tool,
        approved,
        by=by,
        note=note,
        input=edited["input"] if approved and edited and isinstance(edited.get("input"), Mapping) else None,
        approval_id=item.id,
        at=item.decided_at,
        via=item.status.value,
        owner=item.user_id,
    )


def approve_item(
    item: ItemRef,
    user: UserRef,
    *,
    note: str | None = None,
    modified_payload: Mapping[str, Any] | None = None,
    remember: bool = False,
    ws: Workspace | None = None,
) -> ApprovalItem:
    """Approve a pending item as `user`, optionally with edited arguments (`modified_payload`; for a
    tool use, its `"input"` replaces the tool's input). With `remember`, also add a sticky rule that
    approves the same tool with the same arguments in this session from now on."""
    uid = v.id_of(user, "user")
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, ApprovalItem, item, "approval_item", lock=True)
        access.check_decider(tx.db, row, uid)
        decide_in(tx, row, ApprovalStatus.APPROVED, by=uid, note=note, modified_payload=modified_payload)
        if remember:
            remember_decision_in(tx, row, uid)
    return row


def deny_item(
    item: ItemRef, user: UserRef, *, note: str | None = None, ws: Workspace | None = None
) -> ApprovalItem:
    uid = v.id_of(user, "user")
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, ApprovalItem, item, "approval_item", lock=True)
        access.check_decider(tx.db, row, uid)
        decide_in(tx, row, ApprovalStatus.DENIED, by=uid, note=note)
    return row


def remember_decision_in(tx: Tx, item: ApprovalItem, uid: uuid.UUID) -> ApprovalRule:
    """A sticky rule approving this tool with these arguments in this session. For other services."""
    payload = item.modified_payload or item.payload
    tool = payload.get("tool_name")
    conditions: dict[str, Any] = {}
    if "input" in payload:
        conditions["input"] = payload["input"]
    rule = _insert_rule(
        tx,
        uid,
        name=f"Always allow {tool or item.approval_type}"[:200],
        action=RuleAction.APPROVE,
        approval_type=item.approval_type,
        tool_names=[tool] if isinstance(tool, str) else [],
        conditions=conditions,
        action_note=f"remembered from approval {item.id}",
        priority=STICKY_PRIORITY,
        applies_to_sessions=[item.session_id] if item.session_id else [],
        is_sticky=True,
    )
    return rule


def _pending(user: UserRef) -> sa.Select[ApprovalItem]:
    return sa.select(ApprovalItem).where(
        ApprovalItem.user_id == v.id_of(user, "user"), ApprovalItem.status == ApprovalStatus.PENDING
    )


_QUEUE_ORDER = ((ApprovalItem.priority_rank, True), (ApprovalItem.inserted_at, False))


def list_pending_approvals(
    user: UserRef,
    *,
    approval_type: ApprovalType | str | None = None,
    priority: Priority | str | None = None,
    session: Session | uuid.UUID | str | None = None,
    shared: bool = False,
    limit: int = 50,
    after: str | None = None,
    before: str | None = None,
    ws: Workspace | None = None,
) -> Page[ApprovalItem]:
    """The queue: critical before high before normal before low, oldest first within a priority.
    `shared` adds the pending items of sessions other users shared with this user."""
    uid = v.id_of(user, "user")
    stmt = sa.select(ApprovalItem).where(ApprovalItem.status == ApprovalStatus.PENDING)
    if approval_type is not None:
        stmt = stmt.where(
            ApprovalItem.approval_type == v.choice(ApprovalType, approval_type, "approval_type").value
        )
    if priority is not None:
        stmt = stmt.where(ApprovalItem.priority == v.choice(Priority, priority, "priority"))
    if session is not None:
        stmt = stmt.where(ApprovalItem.session_id == v.id_of(session, "session"))
    with get_workspace(ws).read() as db:
        access.require_self(db, uid)
        own = ApprovalItem.user_id == uid
        stmt = stmt.where(
            sa.or_(own, ApprovalItem.session_id.in_(access.shared_session_ids(db, Session, uid)))
            if shared
            else own
        )
        return paginate(
            db,
            stmt,
            order_by=_QUEUE_ORDER,
            id_column=ApprovalItem.id,
            limit=limit,
            after=after,
            before=before,
        )


def list_session_pending_approvals(
    session: Session | uuid.UUID | str,
    *,
    limit: int = 50,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[ApprovalItem]:
    sid = v.id_of(session, "session")
    stmt = sa.select(ApprovalItem).where(
        ApprovalItem.session_id == sid, ApprovalItem.status == ApprovalStatus.PENDING
    )
    with get_workspace(ws).read() as db:
        access.check_session_id(db, sid, "read")
        return paginate(db, stmt, order_by=_QUEUE_ORDER, id_column=ApprovalItem.id, limit=limit, after=after)


def count_pending_approvals(user: UserRef, *, ws: Workspace | None = None) -> int:
    user = access.scope_user(get_workspace(ws), user)
    with get_workspace(ws).read() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(_pending(user).subquery())) or 0)


def expire_old_approvals(*, now: dt.datetime | None = None, ws: Workspace | None = None) -> ExpiryReport:
    """Settle every pending item whose `expires_at` has passed, as its `timeout_action` says:
    `deny` → expired (its tool use denied), `approve` → approved, `escalate` → one priority level up
    and no longer expiring, so it stays in front of a human."""
    at = v.aware(now, "now") if now is not None else utcnow()
    report = ExpiryReport()
    with get_workspace(ws).transaction() as tx:
        due = tx.db.scalars(
            sa.select(ApprovalItem)
            .where(ApprovalItem.status == ApprovalStatus.PENDING, ApprovalItem.expires_at < at)
            .order_by(ApprovalItem.expires_at)
            .with_for_update(skip_locked=True)
        ).all()
        for item in due:
            match item.timeout_action:
                case TimeoutAction.APPROVE:
                    decide_in(tx, item, ApprovalStatus.APPROVED, note="approved on timeout", reason="timeout")
                    report.approved.append(item.id)
                case TimeoutAction.ESCALATE:
                    _escalate(tx, item, at)
                    report.escalated.append(item.id)
                case _:
                    decide_in(tx, item, ApprovalStatus.EXPIRED, note="approval expired", reason="timeout")
                    report.expired.append(item.id)
    return report


def _escalate(tx: Tx, item: ApprovalItem, at: dt.datetime) -> None:
    previous = item.priority
    rank = min(item.priority_rank + 1, PRIORITY_RANK[Priority.CRITICAL])
    item.priority, item.priority_rank = _BY_RANK[rank], rank
    item.meta = {
        **item.meta,
        "escalations": [*item.meta.get("escalations", []), {"at": at.isoformat(), "from": previous.value}],
    }
    item.expires_at = None
    tx.db.flush()
    log_activity(
        tx,
        ActivityAction.APPROVAL_EXPIRE,
        resource_type="approval_item",
        resource_id=item.id,
        user_id=item.user_id,
        session_id=item.session_id,
        details={
            "timeout_action": "escalate",
            "priority": {"from": previous.value, "to": item.priority.value},
        },
    )
    tx.publish(topics.user_approvals(item.user_id), "approval_escalated", _item_payload(item))


# --- rules ------------------------------------------------------------------------------------------


def _rule_payload(rule: ApprovalRule) -> dict[str, Any]:
    return {
        "rule_id": str(rule.id),
        "user_id": str(rule.user_id),
        "name": rule.name,
        "action": rule.action.value,
        "status": rule.status.value,
        "priority": rule.priority,
        "is_sticky": rule.is_sticky,
    }


def _rule_fields(**raw: Any) -> dict[str, Any]:
    """Validate rule attributes (only those given)."""
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, Unset):
            continue
        match key:
            case "name":
                out[key] = v.text(value, "name", max_len=200)
            case "action":
                out[key] = v.choice(RuleAction, value, "action")
            case "approval_type":
                out[key] = "*" if value == "*" else v.choice(ApprovalType, value, "approval_type").value
            case "tool_names":
                if isinstance(value, str):
                    raise InvalidInputError("give a list of tool names", field="tool_names")
                out[key] = [v.text(t, "tool_names", max_len=100) for t in value or []]
            case "conditions":
                compile_conditions(value)  # raises, naming the bad key
                out[key] = jsonable(dict(value or {}))
            case "priority":
                out[key] = v.count(value, "priority")
            case "max_auto_approvals_per_hour" | "max_auto_approvals_per_session":
                out[key] = v.count(value, key) if value is not None else None
            case "applies_to_sessions" | "applies_to_workflows":
                out[key] = [v.id_of(x, key) for x in value or []]
            case _:
                out[key] = value
    return out


def _insert_rule(tx: Tx, uid: uuid.UUID, **raw: Any) -> ApprovalRule:
    rule = ApprovalRule(id=uuid.uuid4(), user_id=uid, **_rule_fields(**raw))
    tx.db.add(rule)
    tx.db.flush()
    tx.publish(topics.user_approvals(uid), "approval_rule_created", _rule_payload(rule))
    return rule


def create_approval_rule(
    user: UserRef,
    *,
    name: str,
    action: RuleAction | str,
    approval_type: ApprovalType | str = "*",
    tool_names: Sequence[str] = (),
    conditions: Mapping[str, Any] | None = None,
    action_note: str | None = None,
    description: str | None = None,
    priority: int = 0,
    max_auto_approvals_per_hour: int | None = None,
    max_auto_approvals_per_session: int | None = None,
    applies_to_sessions: Sequence[Any] = (),
    applies_to_workflows: Sequence[Any] = (),
    ws: Workspace | None = None,
) -> ApprovalRule:
    """Add an auto-approval rule. Conditions are checked now (a bad regex or pattern is an
    InvalidInputError naming it), not discovered when an item arrives."""
    uid = v.id_of(user, "user")
    with get_workspace(ws).transaction() as tx:
        if tx.db.get(User, uid) is None:
            raise NotFoundError("user", uid)
        return _insert_rule(
            tx,
            uid,
            name=name,
            action=action,
            approval_type=approval_type,
            tool_names=list(tool_names),
            conditions=conditions or {},
            action_note=action_note,
            description=description,
            priority=priority,
            max_auto_approvals_per_hour=max_auto_approvals_per_hour,
            max_auto_approvals_per_session=max_auto_approvals_per_session,
            applies_to_sessions=list(applies_to_sessions),
            applies_to_workflows=list(applies_to_workflows),
        )


def get_approval_rule(rule: RuleRef, *, ws: Workspace | None = None) -> ApprovalRule:
    with get_workspace(ws).read() as db:
        return fetch(db, ApprovalRule, rule, "approval_rule")


def update_approval_rule(
    rule: RuleRef,
    *,
    name: str | Unset = UNSET,
    action: RuleAction | str | Unset = UNSET,
    approval_type: ApprovalType | str | Unset = UNSET,
    tool_names: Sequence[str] | Unset = UNSET,
    conditions: Mapping[str, Any] | Unset = UNSET,
    action_note: str | Unset | None = UNSET,
    description: str | Unset | None = UNSET,
    priority: int | Unset = UNSET,
    max_auto_approvals_per_hour: int | Unset | None = UNSET,
    max_auto_approvals_per_session: int | Unset | None = UNSET,
    applies_to_sessions: Sequence[Any] | Unset = UNSET,
    applies_to_workflows: Sequence[Any] | Unset = UNSET,
    ws: Workspace | None = None,
) -> ApprovalRule:
    """Change the given attributes of a rule; the rest stay as they are."""
    changes = _rule_fields(
        name=name,
        action=action,
        approval_type=approval_type,
        tool_names=tool_names,
        conditions=conditions,
        action_note=action_note,
        description=description,
        priority=priority,
        max_auto_approvals_per_hour=max_auto_approvals_per_hour,
        max_auto_approvals_per_session=max_auto_approvals_per_session,
        applies_to_sessions=applies_to_sessions,
        applies_to_workflows=applies_to_workflows,
    )
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, ApprovalRule, rule, "approval_rule", lock=True)
        for key, value in changes.items():
            setattr(row, key, value)
        tx.db.flush()
        tx.publish(topics.user_approvals(row.user_id), "approval_rule_updated", _rule_payload(row))
    return row


def _set_rule_status(rule: RuleRef, status: RuleStatus, ws: Workspace | None) -> ApprovalRule:
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, ApprovalRule, rule, "approval_rule", lock=True)
        if row.status is not status:
            row.status = status
            tx.db.flush()
            tx.publish(topics.user_approvals(row.user_id), "approval_rule_updated", _rule_payload(row))
    return row


def enable_rule(rule: RuleRef, *, ws: Workspace | None = None) -> ApprovalRule:
    return _set_rule_status(rule, RuleStatus.ACTIVE, ws)


def disable_rule(rule: RuleRef, *, ws: Workspace | None = None) -> ApprovalRule:
    return _set_rule_status(rule, RuleStatus.DISABLED, ws)


def delete_approval_rule(rule: RuleRef, *, ws: Workspace | None = None) -> None:
    """Delete a rule. Items it decided keep their decision (their rule id is cleared)."""
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, ApprovalRule, rule, "approval_rule", lock=True)
        payload = _rule_payload(row)
        tx.db.delete(row)
        tx.publish(topics.user_approvals(row.user_id), "approval_rule_deleted", payload)


def list_approval_rules(
    user: UserRef,
    *,
    status: RuleStatus | str | None = None,
    limit: int = 50,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[ApprovalRule]:
    """The user's rules, highest priority first."""
    user = access.scope_user(get_workspace(ws), user)
    stmt = sa.select(ApprovalRule).where(ApprovalRule.user_id == v.id_of(user, "user"))
    if status is not None:
        stmt = stmt.where(ApprovalRule.status == v.choice(RuleStatus, status, "status"))
    with get_workspace(ws).read() as db:
        return paginate(
            db,
            stmt,
            order_by=((ApprovalRule.priority, True), (ApprovalRule.inserted_at, False)),
            id_column=ApprovalRule.id,
            limit=limit,
            after=after,
        )


# --- the rule engine --------------------------------------------------------------------------------


def _candidates(db: orm.Session, item: ApprovalItem) -> list[ApprovalRule]:
    return list(
        db.scalars(
            sa.select(ApprovalRule)
            .where(
                ApprovalRule.user_id == item.user_id,
                ApprovalRule.status == RuleStatus.ACTIVE,
                ApprovalRule.approval_type.in_([item.approval_type, "*"]),
            )
            .order_by(ApprovalRule.priority.desc(), ApprovalRule.inserted_at, ApprovalRule.id)
        )
    )


def _rule_matches(db: orm.Session, rule: ApprovalRule, item: ApprovalItem) -> bool:
    payload = item.payload or {}
    if rule.tool_names and payload.get("tool_name") not in rule.tool_names:
        return False
    if rule.applies_to_sessions and item.session_id not in rule.applies_to_sessions:
        return False
    if rule.applies_to_workflows:
        if item.workflow_run_id is None:
            return False
        workflow_id = db.scalar(
            sa.select(WorkflowRun.workflow_id).where(WorkflowRun.id == item.workflow_run_id)
        )
        if workflow_id not in rule.applies_to_workflows:
            return False
    try:
        conditions = compile_conditions(rule.conditions)
    except InvalidInputError:
        return False  # a rule edited into an invalid state outside the API never matches
    risk = item.risk_level.value if item.risk_level else None
    return conditions.matches(payload, risk_level=risk)


def _matching(db: orm.Session, item: ApprovalItem) -> list[ApprovalRule]:
    return [r for r in _candidates(db, item) if _rule_matches(db, r, item)]


def find_matching_rules(user: UserRef, item: ItemRef, *, ws: Workspace | None = None) -> list[ApprovalRule]:
    """The user's active rules that match `item` (tool names, conditions, scope), highest priority
    first. Limits are not applied here; `try_auto_approve` applies them."""
    uid = v.id_of(user, "user")
    with get_workspace(ws).read() as db:
        row = fetch(db, ApprovalItem, item, "approval_item")
        if row.user_id != uid:
            return []
        return _matching(db, row)


def _within_limits(tx: Tx, rule: ApprovalRule, item: ApprovalItem, now: dt.datetime) -> bool:
    """Whether an approve rule may approve one more item, counting its own past decisions.

    The caller holds the rule's row lock, so two items racing for the last slot take turns, and the
    second one counts the first's approval. The hour is a true sliding window.
    """
    decided_by_rule = sa.select(sa.func.count()).where(
        ApprovalItem.auto_approval_rule_id == rule.id,
        ApprovalItem.status == ApprovalStatus.AUTO_APPROVED,
    )
    if rule.max_auto_approvals_per_hour is not None:
        recent = tx.db.scalar(decided_by_rule.where(ApprovalItem.decided_at > now - WINDOW)) or 0
        if recent >= rule.max_auto_approvals_per_hour:
            return False
    if rule.max_auto_approvals_per_session is not None and item.session_id is not None:
        in_session = tx.db.scalar(decided_by_rule.where(ApprovalItem.session_id == item.session_id)) or 0
        if in_session >= rule.max_auto_approvals_per_session:
            return False
    return True


def _record_trigger(tx: Tx, rule: ApprovalRule, now: dt.datetime) -> None:
    window_start = now - WINDOW
    in_window = sa.select(ApprovalItem.decided_at).where(
        ApprovalItem.auto_approval_rule_id == rule.id,
        ApprovalItem.status == ApprovalStatus.AUTO_APPROVED,
        ApprovalItem.decided_at > window_start,
    )
    times = [t for t in tx.db.scalars(in_window.order_by(ApprovalItem.decided_at)) if t is not None]
    rule.times_triggered += 1
    rule.last_triggered_at = now
    # Kept for display: how many approvals are in the window, and when its oldest one drops out.
    rule.current_hour_count = len(times)
    rule.hour_reset_at = (times[0] + WINDOW) if times else None
    tx.db.flush()


def auto_decide_in(tx: Tx, item: ApprovalItem) -> RuleDecision:
    """Apply the owner's rules to a pending item inside `tx` (the algorithm in the module docstring)."""
    if item.status is not ApprovalStatus.PENDING:
        return RuleDecision("no_match", item)
    matching = _matching(tx.db, item)
    if not matching:
        return RuleDecision("no_match", item)
    now = utcnow()
    deny = next((r for r in matching if r.action is RuleAction.DENY), None)
    if deny is not None:
        rule = fetch(tx.db, ApprovalRule, deny.id, "approval_rule", lock=True)
        decide_in(
            tx,
            item,
            ApprovalStatus.DENIED,
            rule=rule,
            note=rule.action_note or f"denied by rule {rule.name!r}",
        )
        _record_trigger(tx, rule, now)
        return RuleDecision("denied", item, rule)
    for candidate in matching:
        if candidate.action is RuleAction.REQUIRE_REVIEW:
            return RuleDecision("review", item, candidate)
        rule = fetch(tx.db, ApprovalRule, candidate.id, "approval_rule", lock=True)
        if not _within_limits(tx, rule, item, now):
            continue
        decide_in(tx, item, ApprovalStatus.AUTO_APPROVED, rule=rule, note=rule.action_note)
        _record_trigger(tx, rule, now)
        return RuleDecision("auto_approved", item, rule)
    return RuleDecision("no_match", item)


def try_auto_approve(item: ItemRef, *, ws: Workspace | None = None) -> RuleDecision:
    """Apply the rules to a pending item now (they already ran when it was created; run them again
    after adding a rule). A decided item comes back unchanged with outcome `no_match`."""
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, ApprovalItem, item, "approval_item", lock=True)
        return auto_decide_in(tx, row)
