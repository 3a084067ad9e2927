"""Who may read, change and decide what, when a workspace acts for a user (team mode).

A workspace opened with `connect(..., as_user=...)` — or a block under `acting_as(user)` — acts for
that user: every row a service loads is checked (in `_service.fetch`), and every listing is limited
to what the user may see. Without an acting user (a personal notebook, a worker, the scheduler) nothing
is restricted: the process is trusted, as the database's owner is.

The rules, by what is shared. A session is its owner's; `visibility="shared"` with a user in
`shared_with_user_ids` lets that user read it, add messages and decide its approvals; `"public"` lets
everyone read it. Approval items follow their session (or, without one, belong to their user alone).
Messages, agent calls, tool uses and workflow runs follow their session when they have one. Every
other record with an owner is its owner's alone. Changing a session's sharing, and deleting it, are the owner's alone.
"""

from __future__ import annotations

import contextlib
import contextvars
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlalchemy import orm

from cmdc_nb.errors import AccessDeniedError

__all__ = [
    "acting_as",
    "acting_user_id",
    "check_decider",
    "check_row",
    "check_session_id",
    "current",
    "require_self",
    "resolve_user",
    "scope_user",
    "shared_session_ids",
]

_acting: contextvars.ContextVar[uuid.UUID | None] = contextvars.ContextVar(
    "cmdc_nb_acting_user", default=None
)
INFO_KEY = "cmdc_acting_user_id"  # where a transaction's session keeps its acting user


@contextlib.contextmanager
def acting_as(user: Any) -> Iterator[uuid.UUID]:
    """Act for `user` (a User, its id, or id text) inside the block, whatever the workspace's default."""
    from cmdc_nb._plumbing import validate as v

    token = _acting.set(v.id_of(user, "user"))
    try:
        yield _acting.get()  # type: ignore[misc]
    finally:
        _acting.reset(token)


def current(default: uuid.UUID | None) -> uuid.UUID | None:
    """The acting user of this context: an `acting_as` block's, else the workspace's default."""
    return _acting.get() or default


def acting_user_id(db: orm.Session) -> uuid.UUID | None:
    return db.info.get(INFO_KEY)


def _shared_with(session: Any, uid: uuid.UUID) -> bool:
    return session.visibility == "shared" and uid in (session.shared_with_user_ids or [])


def session_allows(session: Any, uid: uuid.UUID, action: str) -> bool:
    if session.user_id == uid:
        return True
    if action == "read":
        return session.visibility == "public" or _shared_with(session, uid)
    if action in ("write", "decide"):
        return _shared_with(session, uid)
    return False  # "own": sharing and deleting


def _session(db: orm.Session, session_id: uuid.UUID | None) -> Any:
    from cmdc_nb.store.models import Session

    return db.get(Session, session_id) if session_id is not None else None


def check_row(db: orm.Session, row: Any, kind: str, *, write: bool) -> None:
    """Raise AccessDeniedError if the acting user (if any) may not read (or, `write`, change) `row`."""
    uid = acting_user_id(db)
    if uid is None:
        return
    action = "write" if write else "read"
    if kind == "session":
        allowed = session_allows(row, uid, action)
    elif kind == "approval_item":
        action = "decide" if write else "read"
        session = _session(db, row.session_id)
        allowed = row.user_id == uid or (session is not None and session_allows(session, uid, action))
    elif getattr(row, "session_id", None) is not None:  # messages, calls, tool uses, runs in a session
        session = _session(db, row.session_id)
        allowed = getattr(row, "user_id", None) == uid or (
            session is not None and session_allows(session, uid, action)
        )
    elif kind == "user":
        allowed = not write or row.id == uid
    elif hasattr(row, "user_id"):
        allowed = row.user_id == uid
    else:
        allowed = True
    if not allowed:
        raise AccessDeniedError(kind, row.id, action)


def check_session_id(db: orm.Session, session_id: uuid.UUID, action: str) -> None:
    """Raise unless the acting user (if any) may `action` ("read", "write") the session."""
    uid = acting_user_id(db)
    if uid is None:
        return
    session = _session(db, session_id)
    if session is None:
        from cmdc_nb.errors import NotFoundError

        raise NotFoundError("session", session_id)
    if not session_allows(session, uid, action):
        raise AccessDeniedError("session", session_id, action)


def check_decider(db: orm.Session, item: Any, decider: uuid.UUID) -> None:
    """The user deciding an approval must own it or share its session — and be the acting user, when
    the workspace acts for someone (no deciding on another's behalf)."""
    acting = acting_user_id(db)
    if acting is not None and acting != decider:
        raise AccessDeniedError("approval_item", item.id, "decide")
    if item.user_id == decider:
        return
    session = _session(db, item.session_id)
    if session is None or not session_allows(session, decider, "decide"):
        raise AccessDeniedError("approval_item", item.id, "decide")


def scope_user(ws: Any, user: Any) -> Any:
    """The user a listing is of (see `resolve_user`), for the workspace's acting user."""
    return resolve_user(current(ws.acting_user_id), user)


def resolve_user(acting: uuid.UUID | None, user: Any) -> Any:
    """`user` unchanged when no one is acting; else the acting user when none is named, and a refusal
    when someone else is named."""
    from cmdc_nb._plumbing import validate as v

    if acting is None:
        return user
    if user is None:
        return acting
    if v.id_of(user, "user") != acting:
        raise AccessDeniedError("user", v.id_of(user, "user"), "read")
    return user


def require_self(db: orm.Session, user_id: uuid.UUID, kind: str = "user") -> None:
    """Listing someone's records: only their own (when acting for someone)."""
    uid = acting_user_id(db)
    if uid is not None and uid != user_id:
        raise AccessDeniedError(kind, user_id, "read")


def _contains(db: orm.Session, column: Any, uid: uuid.UUID) -> Any:
    if db.get_bind().dialect.name == "postgresql":
        return sa.literal(uid, sa.Uuid()) == sa.func.any(column)  # uuid[]: :uid = ANY(column)
    # SQLite keeps the ids as a JSON array of hex strings
    return sa.type_coerce(column, sa.Text).like(f'%"{uid.hex}"%')


def shared_session_ids(db: orm.Session, session_cls: Any, uid: uuid.UUID) -> Any:
    """A subquery of the ids of other users' sessions shared with `uid`."""
    return sa.select(session_cls.id).where(
        session_cls.user_id != uid,
        session_cls.visibility == "shared",
        _contains(db, session_cls.shared_with_user_ids, uid),
    )
