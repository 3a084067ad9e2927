"""The approval queue's items: created, decided (with the tool use they stand for), listed in queue order,
expired or escalated on their timeout."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.arguments import ensure_args
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError, InvalidStateError
from cmdc_nb.events import topics
from cmdc_nb.services.tool_decisions import decide_tool_use_in
from cmdc_nb.store.enums import (
    ActivityAction,
    ApprovalSourceType,
    ApprovalStatus,
    ApprovalType,
    Priority,
    RiskLevel,
    TimeoutAction,
    ToolUseStatus,
)
from cmdc_nb.store.models import ApprovalItem, ApprovalRule, Session, ToolUse, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import utcnow

__all__ = [
    "PRIORITY_RANK",
    "ExpiryReport",
    "RuleDecision",
    "count_pending_approvals",
    "expire_old_approvals",
    "get_approval_item",
    "list_pending_approvals",
    "list_session_pending_approvals",
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


@checked
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
    if modified_payload is not None and not isinstance(modified_payload, Mapping):
        raise InvalidInputError("must be a mapping", field="modified_payload")
    if modified_payload is not None and "input" in modified_payload and item.approval_type == "tool_use":
        # Edited arguments must still fit the tool: checked here, whoever edits (a widget, the API).
        schema = (item.payload or {}).get("tool_schema")
        ensure_args(
            modified_payload["input"], schema.get("parameters") if isinstance(schema, Mapping) else None
        )
    now = utcnow()
    item.status = status
    item.decided_at = now
    item.decided_by_id = by
    item.decision_note = note
    if rule is not None:
        item.auto_approval_rule_id = rule.id
        item.auto_approval_reason = rule.action_note or f"rule {rule.name!r}"
    if reason:
        # Kept on the item, so the audit frame can tell an approval on timeout from a person's.
        item.meta = {**item.meta, "reason": reason}
    edit: dict[str, Any] | None = None
    if modified_payload is not None:
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


def _pending(user: UserRef) -> sa.Select[ApprovalItem]:
    return sa.select(ApprovalItem).where(
        ApprovalItem.user_id == v.id_of(user, "user"), ApprovalItem.status == ApprovalStatus.PENDING
    )


_QUEUE_ORDER = ((ApprovalItem.priority_rank, True), (ApprovalItem.inserted_at, False))


@checked
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


@checked
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


@checked
def count_pending_approvals(user: UserRef, *, ws: Workspace | None = None) -> int:
    user = access.scope_user(get_workspace(ws), user)
    with get_workspace(ws).read() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(_pending(user).subquery())) or 0)


@checked
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
