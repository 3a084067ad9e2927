"""Sessions themselves: create, read, list, configure, move between statuses, count, share."""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import UNSET, Unset, check_transition, fetch, free_slug, increment, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import AccessDeniedError, ConflictError, InvalidInputError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.store.arrays import overlaps
from cmdc_nb.store.enums import ActivityAction, SessionStatus
from cmdc_nb.store.models import Session, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import to_money

__all__ = [
    "EXPORT_FORMAT",
    "SESSION_TRANSITIONS",
    "archive_session",
    "create_session",
    "get_session",
    "get_session_by_slug",
    "increment_session_stats",
    "list_active_sessions",
    "list_sessions",
    "share_session",
    "slugify",
    "update_session_config",
    "update_session_status",
]


_S = SessionStatus
SESSION_TRANSITIONS: dict[SessionStatus, frozenset[SessionStatus]] = {
    _S.ACTIVE: frozenset({_S.PAUSED, _S.COMPLETED, _S.ARCHIVED}),
    _S.PAUSED: frozenset({_S.ACTIVE, _S.COMPLETED, _S.ARCHIVED}),
    _S.COMPLETED: frozenset({_S.ACTIVE, _S.ARCHIVED}),  # reopen, or put away
    _S.ARCHIVED: frozenset({_S.ACTIVE}),  # restore
}
# Sessions that take new messages. Completed and archived sessions are read-only until reopened.
_WRITABLE = frozenset({_S.ACTIVE, _S.PAUSED})
EXPORT_FORMAT = "cmdc_nb.session/1"

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


@checked
def slugify(name: str, *, max_len: int = 50) -> str:
    """The seed's rule: lower-case, drop all but letters, digits, spaces and dashes, spaces to dashes,
    first 50 characters. Accents are folded first ("Café" → "cafe"), underscores count as spaces
    ("cmdc_nb" → "cmdc-nb") and dashes collapse."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    cleaned = re.sub(r"[^a-z0-9\s-]", "", folded.replace("_", " "))
    slug = re.sub(r"[\s-]+", "-", cleaned).strip("-")[:max_len].strip("-")
    return slug or "session"


def _session_payload(s: Session) -> dict[str, Any]:
    return {
        "session_id": str(s.id),
        "user_id": str(s.user_id),
        "name": s.name,
        "slug": s.slug,
        "status": s.status.value,
        "parent_session_id": str(s.parent_session_id) if s.parent_session_id else None,
    }


def _publish_session(tx: Tx, s: Session, type: str, **extra: Any) -> None:
    payload = {**_session_payload(s), **extra}
    tx.publish(topics.session(s.id), type, payload)
    tx.publish(topics.user_sessions(s.user_id), type, payload)


def _check_temperature(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 2:
        raise InvalidInputError(f"must be a number from 0 to 2, got {value!r}", field="temperature")
    return float(value)


def _check_max_tokens(value: Any) -> int | None:
    return None if value is None else v.count(value, "max_tokens", minimum=1)


def _check_tags(tags: Iterable[str] | None) -> list[str]:
    if isinstance(tags, str):
        raise InvalidInputError("give a list of tags, not one string", field="tags")
    return list(dict.fromkeys(v.text(t, "tags", max_len=64) for t in (tags or [])))


def _check_ids(ids: Iterable[Any] | None, field: str) -> list[uuid.UUID]:
    return [v.id_of(i, field) for i in (ids or [])]


@checked
def create_session(
    user: User | uuid.UUID | str,
    *,
    name: str,
    purpose: str | None = None,
    slug: str | None = None,
    tags: Sequence[str] | None = None,
    system_prompt: str | None = None,
    default_model: str | None = None,
    default_agent: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    linked_index_ids: Sequence[Any] | None = None,
    linked_workflow_ids: Sequence[Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> Session:
    """Create a session. Without `slug`, one is made from the name (and numbered if already taken)."""
    uid = v.id_of(user, "user")
    name = v.text(name, "name", max_len=200)
    slug = checked_slug(slug)
    fields = {
        "purpose": purpose,
        "system_prompt": system_prompt,
        "default_model": default_model,
        "default_agent": default_agent,
        "temperature": _check_temperature(temperature),
        "max_tokens": _check_max_tokens(max_tokens),
        "tags": _check_tags(tags),
        "linked_index_ids": _check_ids(linked_index_ids, "linked_index_ids"),
        "linked_workflow_ids": _check_ids(linked_workflow_ids, "linked_workflow_ids"),
        "meta": dict(metadata or {}),
    }
    with get_workspace(ws).transaction() as tx:
        session = _insert_session(tx, uid, name=name, slug=slug, **fields)
        log_activity(
            tx,
            ActivityAction.SESSION_CREATE,
            resource_type="session",
            resource_id=session.id,
            user_id=uid,
            session_id=session.id,
            details={"name": name, "slug": session.slug},
        )
        _publish_session(tx, session, "session_created")
    return session


def checked_slug(slug: Any) -> str | None:
    """A slug given for a new session (or a fork): lower-case letters, digits and single dashes."""
    if slug is None:
        return None
    slug = v.text(slug, "slug", max_len=100)
    if not _SLUG.match(slug):
        raise InvalidInputError("use lower-case letters, digits and single dashes", field="slug")
    return str(slug)


def _insert_session(tx: Tx, uid: uuid.UUID, *, name: str, slug: str | None, **fields: Any) -> Session:
    if tx.db.get(User, uid) is None:
        raise NotFoundError("user", uid)
    if slug is None:
        slug = free_slug(tx.db, Session, uid, slugify(name))
    elif tx.db.scalar(sa.select(Session.id).where(Session.user_id == uid, Session.slug == slug)):
        raise ConflictError(f"you already have a session with slug {slug!r}", field="slug")
    session = Session(id=uuid.uuid4(), user_id=uid, name=name, slug=slug, **fields)
    tx.db.add(session)
    tx.db.flush()
    return session


@checked
def get_session(session_id: Session | uuid.UUID | str, *, ws: Workspace | None = None) -> Session:
    with get_workspace(ws).read() as db:
        return fetch(db, Session, session_id, "session")


@checked
def get_session_by_slug(user: User | uuid.UUID | str, slug: str, *, ws: Workspace | None = None) -> Session:
    user = access.scope_user(get_workspace(ws), user)
    uid = v.id_of(user, "user")
    with get_workspace(ws).read() as db:
        session = db.scalar(sa.select(Session).where(Session.user_id == uid, Session.slug == slug))
    if session is None:
        raise NotFoundError("session", slug)
    return session


@checked
def list_sessions(
    user: User | uuid.UUID | str,
    *,
    status: SessionStatus | str | Sequence[SessionStatus | str] | None = None,
    tags: Sequence[str] | None = None,
    search: str | None = None,
    parent: Session | uuid.UUID | str | None = None,
    shared: bool = False,
    limit: int = 50,
    after: str | None = None,
    before: str | None = None,
    ws: Workspace | None = None,
) -> Page[Session]:
    """The user's sessions, most recently updated first.

    `status` is one status or several; `tags` keeps sessions sharing at least one tag; `search` keeps
    those whose name, purpose or slug contains the text (any case); `parent` keeps forks of a session;
    `shared` adds the sessions other users shared with this user.
    """
    uid = v.id_of(user, "user")
    stmt = sa.select(Session)
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        stmt = stmt.where(Session.status.in_([v.choice(SessionStatus, x, "status") for x in wanted]))
    if parent is not None:
        stmt = stmt.where(Session.parent_session_id == v.id_of(parent, "parent"))
    if search is not None:
        needle = v.text(search, "search", max_len=200).lower()
        like = "%" + needle.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        stmt = stmt.where(
            sa.or_(
                *(
                    sa.func.lower(col).like(like, escape="\\")
                    for col in (Session.name, Session.purpose, Session.slug)
                )
            )
        )
    with get_workspace(ws).read() as db:
        access.require_self(db, uid)
        owned = Session.user_id == uid
        stmt = stmt.where(
            sa.or_(owned, Session.id.in_(access.shared_session_ids(db, Session, uid))) if shared else owned
        )
        if tags:
            stmt = stmt.where(overlaps(db, Session.tags, _check_tags(tags)))
        return paginate(
            db,
            stmt,
            order_by=Session.updated_at,
            id_column=Session.id,
            limit=limit,
            after=after,
            before=before,
        )


@checked
def list_active_sessions(
    user: User | uuid.UUID | str, *, limit: int = 50, after: str | None = None, ws: Workspace | None = None
) -> Page[Session]:
    return list_sessions(user, status=SessionStatus.ACTIVE, limit=limit, after=after, ws=ws)


@checked
def update_session_status(
    session: Session | uuid.UUID | str, status: SessionStatus | str, *, ws: Workspace | None = None
) -> Session:
    """Move a session to `status` along SESSION_TRANSITIONS (InvalidStateError otherwise)."""
    target = v.choice(SessionStatus, status, "status")
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, Session, session, "session", lock=True)
        previous = row.status
        check_transition("session", SESSION_TRANSITIONS, previous, target)
        row.status = target
        tx.db.flush()
        action = ActivityAction.SESSION_ARCHIVE if target is _S.ARCHIVED else ActivityAction.SESSION_UPDATE
        log_activity(
            tx,
            action,
            resource_type="session",
            resource_id=row.id,
            user_id=row.user_id,
            session_id=row.id,
            details={"status": {"from": previous.value, "to": target.value}},
        )
        _publish_session(tx, row, "session_status_changed", previous_status=previous.value)
    return row


@checked
def archive_session(session: Session | uuid.UUID | str, *, ws: Workspace | None = None) -> Session:
    return update_session_status(session, SessionStatus.ARCHIVED, ws=ws)


@checked
def update_session_config(
    session: Session | uuid.UUID | str,
    *,
    name: str | Unset = UNSET,
    purpose: str | Unset | None = UNSET,
    tags: Sequence[str] | Unset = UNSET,
    default_agent: str | Unset | None = UNSET,
    default_model: str | Unset | None = UNSET,
    system_prompt: str | Unset | None = UNSET,
    temperature: float | Unset | None = UNSET,
    max_tokens: int | Unset | None = UNSET,
    linked_index_ids: Sequence[Any] | Unset = UNSET,
    linked_workflow_ids: Sequence[Any] | Unset = UNSET,
    ws: Workspace | None = None,
) -> Session:
    """Change the given settings (pass `None` to clear one); the rest stay as they are.

    The activity log records which fields changed, from what, to what.
    """
    changes: dict[str, Any] = {}
    if not isinstance(name, Unset):
        changes["name"] = v.text(name, "name", max_len=200)
    for key, value in (
        ("purpose", purpose),
        ("default_agent", default_agent),
        ("default_model", default_model),
        ("system_prompt", system_prompt),
    ):
        if not isinstance(value, Unset):
            changes[key] = None if value is None else v.text(value, key, max_len=100_000, min_len=0)
    if not isinstance(tags, Unset):
        changes["tags"] = _check_tags(tags)
    if not isinstance(temperature, Unset):
        changes["temperature"] = _check_temperature(temperature)
    if not isinstance(max_tokens, Unset):
        changes["max_tokens"] = _check_max_tokens(max_tokens)
    if not isinstance(linked_index_ids, Unset):
        changes["linked_index_ids"] = _check_ids(linked_index_ids, "linked_index_ids")
    if not isinstance(linked_workflow_ids, Unset):
        changes["linked_workflow_ids"] = _check_ids(linked_workflow_ids, "linked_workflow_ids")
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, Session, session, "session", lock=True)
        diff = {k: {"from": jsonable(getattr(row, k)), "to": jsonable(val)} for k, val in changes.items()}
        diff = {k: d for k, d in diff.items() if d["from"] != d["to"]}
        if not diff:
            return row
        for key, value in changes.items():
            setattr(row, key, value)
        tx.db.flush()
        log_activity(
            tx,
            ActivityAction.SESSION_UPDATE,
            resource_type="session",
            resource_id=row.id,
            user_id=row.user_id,
            session_id=row.id,
            details={"changed": diff},
        )
        _publish_session(tx, row, "session_updated", changed=sorted(diff))
    return row


@checked
def increment_session_stats(
    session: Session | uuid.UUID | str,
    *,
    message_count: int = 0,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost_usd: Decimal | float | str | int = 0,
    duration_ms: int = 0,
    ws: Workspace | None = None,
) -> Session:
    """Add to the session's counters in one atomic `UPDATE` (safe with any number of writers)."""
    for field, value in (
        ("message_count", message_count),
        ("tokens_in", tokens_in),
        ("tokens_out", tokens_out),
        ("duration_ms", duration_ms),
    ):
        v.count(value, field)
    cost = to_money(cost_usd)
    if cost < 0:
        raise InvalidInputError("must not be negative", field="cost_usd")
    sid = v.id_of(session, "session")
    with get_workspace(ws).transaction() as tx:
        _add_stats(
            tx,
            sid,
            message_count=message_count,
            tokens_in=tokens_in,
            tokens_out=tokens_out,
            cost_usd=cost,
            duration_ms=duration_ms,
        )
        return fetch(tx.db, Session, sid, "session")


def _add_stats(
    tx: Tx,
    sid: uuid.UUID,
    *,
    message_count: int = 0,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost_usd: Decimal = Decimal(0),
    duration_ms: int = 0,
) -> None:
    deltas = {
        "message_count": message_count,
        "total_tokens_in": tokens_in,
        "total_tokens_out": tokens_out,
        "total_cost_usd": cost_usd,
        "total_duration_ms": duration_ms,
    }
    if not any(deltas.values()):
        return
    if tx.db.execute(increment(Session, sid, **deltas)).rowcount != 1:  # type: ignore[attr-defined]
        raise NotFoundError("session", sid)


# --- sharing ----------------------------------------------------------------------------------------


@checked
def share_session(
    session: Session | uuid.UUID | str,
    *,
    with_users: Sequence[User | uuid.UUID | str] = (),
    visibility: str | None = None,
    ws: Workspace | None = None,
) -> Session:
    """Share a session (its owner only): `with_users` are added to who may read it, add messages and
    decide its approvals (visibility becomes "shared" unless given); `visibility="public"` lets every
    user read it, `"private"` takes every share back."""
    ids = [v.id_of(u, "user") for u in with_users]
    if visibility is None:
        visibility = "shared" if ids else None
    if visibility not in ("private", "shared", "public"):
        raise InvalidInputError("one of: private, shared, public (or give with_users)", field="visibility")
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, Session, session, "session", lock=True)
        acting = access.acting_user_id(tx.db)
        if acting is not None and acting != row.user_id:
            raise AccessDeniedError("session", row.id, "share")
        for uid in ids:
            fetch(tx.db, User, uid, "user")
        row.visibility = visibility
        row.shared_with_user_ids = (
            [] if visibility == "private" else list(dict.fromkeys([*row.shared_with_user_ids, *ids]))
        )
        tx.db.flush()
        log_activity(
            tx,
            ActivityAction.SESSION_UPDATE,
            resource_type="session",
            resource_id=row.id,
            user_id=row.user_id,
            details={"visibility": visibility, "shared_with": [str(i) for i in row.shared_with_user_ids]},
        )
        _publish_session(tx, row, "session_shared", shared_with=[str(i) for i in row.shared_with_user_ids])
    return row
