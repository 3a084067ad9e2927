"""Who is looking at what, right now: presence on sessions, workflow runs and approval items.

A client (one notebook tab, one widget) joins a resource under its own `client_id`; joining again with
the same id moves or refreshes that record rather than failing. Clients heartbeat; anyone not seen for
`ACTIVE_WINDOW` is no longer listed, and `cleanup_stale_presence` marks those gone for `STALE_AFTER`
as left.

>>> p = join_resource(user, "session", s.id, client_id="tab-1")   # doctest: +SKIP
>>> [r.user_id for r in list_resource_presence("session", s.id)]  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import UNSET, Unset, fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import ConflictError, InvalidInputError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.store.enums import PresenceResource, PresenceStatus
from cmdc_nb.store.models import PresenceRecord, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import utcnow

__all__ = [
    "ACTIVE_WINDOW",
    "STALE_AFTER",
    "cleanup_stale_presence",
    "get_presence_by_client",
    "heartbeat",
    "join_resource",
    "leave_resource",
    "list_resource_presence",
    "update_presence",
]

ACTIVE_WINDOW = dt.timedelta(seconds=60)
STALE_AFTER = dt.timedelta(seconds=300)
_DEVICE_TYPES = ("desktop", "mobile", "tablet", "notebook", "cli")

PresenceRef = PresenceRecord | uuid.UUID | str


def _payload(p: PresenceRecord) -> dict[str, Any]:
    return {
        "presence_id": str(p.id),
        "user_id": str(p.user_id),
        "client_id": p.client_id,
        "resource_type": p.resource_type.value,
        "resource_id": str(p.resource_id),
        "status": p.status.value,
        "left": p.left_at is not None,
    }


def _publish(tx: Tx, p: PresenceRecord, type: str) -> None:
    tx.publish(topics.presence(p.resource_type.value, p.resource_id), type, _payload(p))


@checked
def join_resource(
    user: User | uuid.UUID | str,
    resource_type: PresenceResource | str,
    resource_id: uuid.UUID | str,
    *,
    client_id: str,
    status: PresenceStatus | str = PresenceStatus.VIEWING,
    device_type: str | None = None,
    user_agent: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> PresenceRecord:
    """Say that `user`'s client is on a resource. A client id seen before is updated in place (an
    upsert, so two racing joins of one client both succeed); a client id that belongs to another
    user is a ConflictError."""
    uid = v.id_of(user, "user")
    rtype = v.choice(PresenceResource, resource_type, "resource_type")
    rid = v.uuid_of(resource_id, "resource_id")
    client = v.text(client_id, "client_id", max_len=200)
    st = v.choice(PresenceStatus, status, "status")
    if device_type is not None and device_type not in _DEVICE_TYPES:
        raise InvalidInputError(
            f"{device_type!r} is not one of: {', '.join(_DEVICE_TYPES)}", field="device_type"
        )
    now = utcnow()
    values = {
        "user_id": uid,
        "resource_type": rtype,
        "resource_id": rid,
        "status": st,
        "device_type": device_type,
        "user_agent": user_agent,
        "joined_at": now,
        "last_seen_at": now,
        "left_at": None,
        "meta": jsonable(dict(metadata or {})),
        "updated_at": now,
    }
    with get_workspace(ws).transaction() as tx:
        if tx.db.get(User, uid) is None:
            raise NotFoundError("user", uid)
        dialect = postgresql if tx.db.get_bind().dialect.name == "postgresql" else sqlite
        table = PresenceRecord.__table__
        # column names, not attribute names (`meta` is stored as "metadata")
        row = {PresenceRecord.__mapper__.attrs[k].columns[0].name: val for k, val in values.items()}
        stmt = dialect.insert(table).values(id=uuid.uuid4(), client_id=client, inserted_at=now, **row)
        stmt = stmt.on_conflict_do_update(
            index_elements=[table.c.client_id],
            set_=row,
            where=table.c.user_id == uid,
        ).returning(table.c.id)
        pid = tx.db.execute(stmt).scalar_one_or_none()
        if pid is None:
            raise ConflictError("that client id is in use by another user", field="client_id")
        record = fetch(tx.db, PresenceRecord, pid, "presence")
        _publish(tx, record, "presence_joined")
    return record


@checked
def update_presence(
    presence: PresenceRef,
    *,
    status: PresenceStatus | str | None = None,
    cursor_state: Mapping[str, Any] | Unset | None = UNSET,
    ws: Workspace | None = None,
) -> PresenceRecord:
    """Change status and/or cursor; either way, the client counts as seen now."""
    st = v.choice(PresenceStatus, status, "status") if status is not None else None
    with get_workspace(ws).transaction() as tx:
        p = fetch(tx.db, PresenceRecord, presence, "presence", lock=True)
        if st is not None:
            p.status = st
        if not isinstance(cursor_state, Unset):
            p.cursor_state = jsonable(dict(cursor_state)) if cursor_state is not None else None
        p.last_seen_at = utcnow()
        p.left_at = None
        tx.db.flush()
        _publish(tx, p, "presence_updated")
    return p


@checked
def heartbeat(presence: PresenceRef, *, ws: Workspace | None = None) -> PresenceRecord:
    """The client is still there. (No event: heartbeats are frequent and change nothing visible.)"""
    with get_workspace(ws).transaction() as tx:
        p = fetch(tx.db, PresenceRecord, presence, "presence", lock=True)
        p.last_seen_at = utcnow()
        p.left_at = None
        tx.db.flush()
    return p


@checked
def leave_resource(presence: PresenceRef, *, ws: Workspace | None = None) -> PresenceRecord:
    with get_workspace(ws).transaction() as tx:
        p = fetch(tx.db, PresenceRecord, presence, "presence", lock=True)
        if p.left_at is None:
            p.left_at = utcnow()
            tx.db.flush()
            _publish(tx, p, "presence_left")
    return p


@checked
def get_presence_by_client(client_id: str, *, ws: Workspace | None = None) -> PresenceRecord:
    with get_workspace(ws).read() as db:
        p = db.scalar(sa.select(PresenceRecord).where(PresenceRecord.client_id == client_id))
    if p is None:
        raise NotFoundError("presence", client_id)
    return p


@checked
def list_resource_presence(
    resource_type: PresenceResource | str,
    resource_id: uuid.UUID | str,
    *,
    now: dt.datetime | None = None,
    limit: int = 100,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[PresenceRecord]:
    """Clients on the resource that have not left and were seen in the last ACTIVE_WINDOW, most
    recently seen first."""
    at = v.aware(now, "now") if now is not None else utcnow()
    stmt = sa.select(PresenceRecord).where(
        PresenceRecord.resource_type == v.choice(PresenceResource, resource_type, "resource_type"),
        PresenceRecord.resource_id == v.uuid_of(resource_id, "resource_id"),
        PresenceRecord.left_at.is_(None),
        PresenceRecord.last_seen_at > at - ACTIVE_WINDOW,
    )
    with get_workspace(ws).read() as db:
        return paginate(
            db,
            stmt,
            order_by=PresenceRecord.last_seen_at,
            id_column=PresenceRecord.id,
            limit=limit,
            after=after,
        )


@checked
def cleanup_stale_presence(*, now: dt.datetime | None = None, ws: Workspace | None = None) -> int:
    """Mark every client not seen for STALE_AFTER as left; returns how many."""
    at = v.aware(now, "now") if now is not None else utcnow()
    with get_workspace(ws).transaction() as tx:
        stale = list(
            tx.db.scalars(
                sa.select(PresenceRecord).where(
                    PresenceRecord.left_at.is_(None), PresenceRecord.last_seen_at < at - STALE_AFTER
                )
            )
        )
        for p in stale:
            p.left_at = at
        tx.db.flush()
        for p in stale:
            _publish(tx, p, "presence_left")
    return len(stale)
