"""Deciding items: by the rules as an item is created (`auto_decide_in`), or by a person (`approve_item`,
`deny_item`, remembering the decision as a sticky rule)."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import NotFoundError
from cmdc_nb.services.approvals.items import ItemRef, RuleDecision, UserRef, decide_in, insert_item_in
from cmdc_nb.services.approvals.rules import _matching, _record_trigger, _within_limits, remember_decision_in
from cmdc_nb.store.enums import (
    ApprovalSourceType,
    ApprovalStatus,
    ApprovalType,
    Priority,
    RiskLevel,
    RuleAction,
    TimeoutAction,
)
from cmdc_nb.store.models import ApprovalItem, ApprovalRule, Session, User, WorkflowRun
from cmdc_nb.store.values import utcnow

__all__ = ["approve_item", "create_approval_item", "deny_item", "try_auto_approve"]


@checked
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


@checked
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


@checked
def deny_item(
    item: ItemRef, user: UserRef, *, note: str | None = None, ws: Workspace | None = None
) -> ApprovalItem:
    uid = v.id_of(user, "user")
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, ApprovalItem, item, "approval_item", lock=True)
        access.check_decider(tx.db, row, uid)
        decide_in(tx, row, ApprovalStatus.DENIED, by=uid, note=note)
    return row


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


@checked
def try_auto_approve(item: ItemRef, *, ws: Workspace | None = None) -> RuleDecision:
    """Apply the rules to a pending item now (they already ran when it was created; run them again
    after adding a rule). A decided item comes back unchanged with outcome `no_match`."""
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, ApprovalItem, item, "approval_item", lock=True)
        return auto_decide_in(tx, row)
