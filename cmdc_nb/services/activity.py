"""The audit log: who did what to which resource, and when.

The services write it themselves, inside the transaction of the change they record, so an entry exists
exactly when the change does. `log_activity` is for your own code's actions (it takes the same
whitelist of actions). Every query pages with cursors and honours its limit.

>>> [e.action for e in list_resource_activity("session", s.id)]     # doctest: +SKIP
['session.archive', 'session.update', 'session.create']
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access, audit
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.store.enums import ActivityAction
from cmdc_nb.store.models import ActivityLog, User
from cmdc_nb.store.pagination import Page, paginate

__all__ = [
    "list_resource_activity",
    "list_user_activity",
    "log_activity",
    "log_user_activity",
    "search_activity",
]


@checked
def log_activity(
    action: ActivityAction | str,
    *,
    resource_type: str,
    resource_id: uuid.UUID | str,
    user: User | uuid.UUID | str | None = None,
    details: Mapping[str, Any] | None = None,
    session: Any = None,
    ws: Workspace | None = None,
) -> ActivityLog:
    """Record an action by hand. `action` must be one of ActivityAction's values."""
    act = v.choice(ActivityAction, action, "action")
    rtype = v.text(resource_type, "resource_type", max_len=32)
    rid = v.uuid_of(resource_id, "resource_id")
    uid = v.id_of(user, "user") if user is not None else None
    sid = v.id_of(session, "session") if session is not None else None
    with get_workspace(ws).transaction() as tx:
        entry = audit.log_activity(
            tx, act, resource_type=rtype, resource_id=rid, user_id=uid, details=details, session_id=sid
        )
        tx.db.flush()
    return entry


@checked
def log_user_activity(
    user: User | uuid.UUID | str,
    action: ActivityAction | str,
    resource_type: str,
    resource_id: uuid.UUID | str,
    details: Mapping[str, Any] | None = None,
    *,
    ws: Workspace | None = None,
) -> ActivityLog:
    """The seed's positional form of `log_activity`."""
    return log_activity(
        action, resource_type=resource_type, resource_id=resource_id, user=user, details=details, ws=ws
    )


@checked
def search_activity(
    *,
    user: User | uuid.UUID | str | None = None,
    action: ActivityAction | str | Sequence[ActivityAction | str] | None = None,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    session: Any = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
    after: str | None = None,
    before: str | None = None,
    ws: Workspace | None = None,
) -> Page[ActivityLog]:
    """Entries matching every given filter, newest first. `since` is inclusive, `until` exclusive."""
    user = access.scope_user(get_workspace(ws), user)
    stmt = sa.select(ActivityLog)
    if user is not None:
        stmt = stmt.where(ActivityLog.user_id == v.id_of(user, "user"))
    if action is not None:
        actions = [action] if isinstance(action, str) else list(action)
        stmt = stmt.where(ActivityLog.action.in_([v.choice(ActivityAction, a, "action") for a in actions]))
    if resource_type is not None:
        stmt = stmt.where(ActivityLog.resource_type == resource_type)
    if resource_id is not None:
        stmt = stmt.where(ActivityLog.resource_id == v.uuid_of(resource_id, "resource_id"))
    if session is not None:
        stmt = stmt.where(ActivityLog.session_id == v.id_of(session, "session"))
    if since is not None:
        stmt = stmt.where(ActivityLog.occurred_at >= v.aware(since, "since"))
    if until is not None:
        stmt = stmt.where(ActivityLog.occurred_at < v.aware(until, "until"))
    with get_workspace(ws).read() as db:
        return paginate(
            db,
            stmt,
            order_by=ActivityLog.occurred_at,
            id_column=ActivityLog.id,
            limit=limit,
            after=after,
            before=before,
        )


@checked
def list_user_activity(
    user: User | uuid.UUID | str, *, limit: int = 100, after: str | None = None, ws: Workspace | None = None
) -> Page[ActivityLog]:
    return search_activity(user=user, limit=limit, after=after, ws=ws)


@checked
def list_resource_activity(
    resource_type: str,
    resource_id: uuid.UUID | str,
    *,
    limit: int = 100,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[ActivityLog]:
    return search_activity(
        resource_type=resource_type, resource_id=resource_id, limit=limit, after=after, ws=ws
    )
