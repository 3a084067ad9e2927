"""Auto-approval rules: saved after their conditions compile, matched against items (deny beats approve,
then priority; `require_review` stops the walk), limited per sliding hour under the rule's row lock."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import UNSET, Unset, fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.services.approvals.items import STICKY_PRIORITY, WINDOW, ItemRef, RuleRef, UserRef
from cmdc_nb.services.matching import compile_conditions
from cmdc_nb.store.enums import ApprovalStatus, ApprovalType, RuleAction, RuleStatus
from cmdc_nb.store.models import ApprovalItem, ApprovalRule, User, WorkflowRun
from cmdc_nb.store.pagination import Page, paginate

__all__ = [
    "create_approval_rule",
    "delete_approval_rule",
    "disable_rule",
    "enable_rule",
    "find_matching_rules",
    "get_approval_rule",
    "list_approval_rules",
    "update_approval_rule",
]


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


@checked
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


@checked
def get_approval_rule(rule: RuleRef, *, ws: Workspace | None = None) -> ApprovalRule:
    with get_workspace(ws).read() as db:
        return fetch(db, ApprovalRule, rule, "approval_rule")


@checked
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


@checked
def enable_rule(rule: RuleRef, *, ws: Workspace | None = None) -> ApprovalRule:
    return _set_rule_status(rule, RuleStatus.ACTIVE, ws)


@checked
def disable_rule(rule: RuleRef, *, ws: Workspace | None = None) -> ApprovalRule:
    return _set_rule_status(rule, RuleStatus.DISABLED, ws)


@checked
def delete_approval_rule(rule: RuleRef, *, ws: Workspace | None = None) -> None:
    """Delete a rule. Items it decided keep their decision (their rule id is cleared)."""
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, ApprovalRule, rule, "approval_rule", lock=True)
        payload = _rule_payload(row)
        tx.db.delete(row)
        tx.publish(topics.user_approvals(row.user_id), "approval_rule_deleted", payload)


@checked
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


@checked
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
