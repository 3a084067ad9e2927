"""Chat sessions and their messages: create, configure, fork, walk, search, export and import.

>>> s = create_session(user, name="Refactor the parser", tags=["parser"])   # doctest: +SKIP
>>> s.slug
'refactor-the-parser'
>>> m = create_message(s, role="user", content="Where is the tokenizer?")  # doctest: +SKIP
>>> alt = fork_session(s, m, name="Try a PEG grammar")                     # doctest: +SKIP
>>> [x.content for x in list_messages(alt)] == [m.content]                 # doctest: +SKIP
True

Sessions move between statuses along `SESSION_TRANSITIONS`; anything else is an InvalidStateError.
Message sequence numbers are allocated under the session's row lock, so they are unique and gap-free
with any number of writers, and the session's counters are updated with `SET x = x + n`, never read,
changed and written back.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import unicodedata
import uuid
from collections.abc import Collection, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.service import UNSET, Unset, check_transition, fetch, free_slug, increment, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import (
    AccessDeniedError,
    CmdcError,
    ConflictError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from cmdc_nb.events import topics
from cmdc_nb.store import fulltext
from cmdc_nb.store.arrays import overlaps
from cmdc_nb.store.enums import ActivityAction, AgentCallStatus, MessageRole, SessionStatus, ToolUseStatus
from cmdc_nb.store.models import AgentCall, Message, Session, ToolUse, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.types import Money, TextList, UUIDList
from cmdc_nb.store.values import to_money, utcnow

__all__ = [
    "EXPORT_FORMAT",
    "SESSION_TRANSITIONS",
    "archive_session",
    "count_messages",
    "create_message",
    "create_session",
    "export_session",
    "fork_session",
    "forks",
    "get_conversation_history",
    "get_message",
    "get_session",
    "get_session_by_slug",
    "import_session",
    "increment_session_stats",
    "lineage",
    "list_active_sessions",
    "list_messages",
    "list_sessions",
    "search_messages",
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
    if slug is not None:
        slug = v.text(slug, "slug", max_len=100)
        if not _SLUG.match(slug):
            raise InvalidInputError("use lower-case letters, digits and single dashes", field="slug")
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


def get_session(session_id: Session | uuid.UUID | str, *, ws: Workspace | None = None) -> Session:
    with get_workspace(ws).read() as db:
        return fetch(db, Session, session_id, "session")


def get_session_by_slug(user: User | uuid.UUID | str, slug: str, *, ws: Workspace | None = None) -> Session:
    user = access.scope_user(get_workspace(ws), user)
    uid = v.id_of(user, "user")
    with get_workspace(ws).read() as db:
        session = db.scalar(sa.select(Session).where(Session.user_id == uid, Session.slug == slug))
    if session is None:
        raise NotFoundError("session", slug)
    return session


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


def list_active_sessions(
    user: User | uuid.UUID | str, *, limit: int = 50, after: str | None = None, ws: Workspace | None = None
) -> Page[Session]:
    return list_sessions(user, status=SessionStatus.ACTIVE, limit=limit, after=after, ws=ws)


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


def archive_session(session: Session | uuid.UUID | str, *, ws: Workspace | None = None) -> Session:
    return update_session_status(session, SessionStatus.ARCHIVED, ws=ws)


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


# --- messages ---------------------------------------------------------------------------------------


def _message_payload(m: Message) -> dict[str, Any]:
    return {
        "message_id": str(m.id),
        "session_id": str(m.session_id),
        "sequence": m.sequence,
        "role": m.role.value,
        "content": m.content,
    }


_SEQUENCE_ATTEMPTS = 5


def _next_sequence(tx: Tx, sid: uuid.UUID) -> int:
    current = tx.db.scalar(sa.select(sa.func.max(Message.sequence)).where(Message.session_id == sid))
    return int(current or 0) + 1


def create_message(
    session: Session | uuid.UUID | str,
    *,
    role: MessageRole | str,
    content: str | None = None,
    content_blocks: Sequence[Any] | None = None,
    agent_call: AgentCall | uuid.UUID | str | None = None,
    tool_use: ToolUse | uuid.UUID | str | None = None,
    token_count: int | None = None,
    attachments: Sequence[Any] | None = None,
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> Message:
    """Append a message to an active or paused session; it gets the next sequence number.

    The session row is locked first (by the `message_count + 1` update), so concurrent writers to one
    session take turns and the sequence has no gaps or duplicates; the unique `(session_id, sequence)`
    constraint backs that up, and a collision is retried, never silently dropped.
    """
    role_ = v.choice(MessageRole, role, "role")
    content_blocks = v.items(content_blocks, "content_blocks")
    attachments = v.items(attachments, "attachments")
    metadata = v.mapping(metadata, "metadata")
    if content is None and not content_blocks:
        raise InvalidInputError("a message needs content or content_blocks", field="content")
    if content is not None:
        content = v.text(content, "content", max_len=10_000_000, min_len=0, strip=False)
    if token_count is not None:
        v.count(token_count, "token_count")
    sid = v.id_of(session, "session")
    call_id = v.id_of(agent_call, "agent_call") if agent_call is not None else None
    tool_id = v.id_of(tool_use, "tool_use") if tool_use is not None else None
    with get_workspace(ws).transaction() as tx:
        locked = tx.db.execute(
            increment(Session, sid, message_count=1).returning(Session.status, Session.user_id)
        ).one_or_none()
        if locked is None:
            raise NotFoundError("session", sid)
        access.check_session_id(tx.db, sid, "write")
        status, uid = locked
        if status not in _WRITABLE:
            raise InvalidStateError(
                "session", status.value, "new message", allowed=sorted(s.value for s in _WRITABLE)
            )
        message = _insert_message(
            tx,
            Message(
                session_id=sid,
                role=role_,
                content=content,
                content_blocks=content_blocks,
                agent_call_id=call_id,
                tool_use_id=tool_id,
                token_count=token_count,
                attachments=attachments,
                meta=metadata,
            ),
        )
        log_activity(
            tx,
            ActivityAction.MESSAGE_CREATE,
            resource_type="message",
            resource_id=message.id,
            user_id=uid,
            session_id=sid,
            details={"role": role_.value, "sequence": message.sequence},
        )
        tx.publish(topics.session_messages(sid), "message_created", _message_payload(message))
    return message


def _insert_message(tx: Tx, message: Message) -> Message:
    for _ in range(_SEQUENCE_ATTEMPTS):
        message.id = uuid.uuid4()
        message.sequence = _next_sequence(tx, message.session_id)
        try:
            with tx.db.begin_nested():
                tx.db.add(message)
                tx.db.flush()
            return message
        except sa.exc.IntegrityError:
            # Another writer took this number (only possible if a caller bypassed the row lock).
            if message in tx.db:
                tx.db.expunge(message)
    raise ConflictError(
        f"could not allocate a message sequence number after {_SEQUENCE_ATTEMPTS} attempts",
        field="sequence",
    )


def get_message(message_id: Message | uuid.UUID | str, *, ws: Workspace | None = None) -> Message:
    with get_workspace(ws).read() as db:
        return fetch(db, Message, message_id, "message")


def list_messages(
    session: Session | uuid.UUID | str,
    *,
    role: MessageRole | str | Sequence[MessageRole | str] | None = None,
    after_sequence: int | None = None,
    limit: int = 100,
    after: str | None = None,
    before: str | None = None,
    ws: Workspace | None = None,
) -> Page[Message]:
    """A session's messages in order (ascending sequence), one page at a time."""
    sid = v.id_of(session, "session")
    stmt = sa.select(Message).where(Message.session_id == sid)
    if role is not None:
        roles = [role] if isinstance(role, str) else list(role)
        stmt = stmt.where(Message.role.in_([v.choice(MessageRole, r, "role") for r in roles]))
    if after_sequence is not None:
        stmt = stmt.where(Message.sequence > int(after_sequence))
    with get_workspace(ws).read() as db:
        access.check_session_id(db, sid, "read")
        return paginate(
            db,
            stmt,
            order_by=Message.sequence,
            id_column=Message.id,
            limit=limit,
            after=after,
            before=before,
            descending=False,
        )


def count_messages(session: Session | uuid.UUID | str, *, ws: Workspace | None = None) -> int:
    sid = v.id_of(session, "session")
    with get_workspace(ws).read() as db:
        access.check_session_id(db, sid, "read")
        return int(db.scalar(sa.select(sa.func.count()).where(Message.session_id == sid)) or 0)


DEFAULT_HISTORY_ROLES = ("user", "assistant", "system")


def get_conversation_history(
    session: Session | uuid.UUID | str,
    *,
    limit: int | None = 50,
    roles: Sequence[MessageRole | str] | None = DEFAULT_HISTORY_ROLES,
    ws: Workspace | None = None,
) -> list[Message]:
    """The last `limit` messages (all with `None`) with one of `roles` (any with `None`), oldest first."""
    sid = v.id_of(session, "session")
    stmt = sa.select(Message).where(Message.session_id == sid)
    if roles is not None:
        stmt = stmt.where(Message.role.in_([v.choice(MessageRole, r, "roles") for r in roles]))
    if limit is not None:
        if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
            raise InvalidInputError(f"must be a positive integer or None, got {limit!r}", field="limit")
        stmt = stmt.order_by(Message.sequence.desc()).limit(limit)
    else:
        stmt = stmt.order_by(Message.sequence)
    with get_workspace(ws).read() as db:
        access.check_session_id(db, sid, "read")
        rows = list(db.scalars(stmt))
    return rows[::-1] if limit is not None else rows


def search_messages(
    query: str,
    *,
    user: User | uuid.UUID | str | None = None,
    session: Session | uuid.UUID | str | None = None,
    limit: int = 50,
    ws: Workspace | None = None,
) -> list[Message]:
    """Messages containing every word of `query` (stemmed), best match first, on either backend."""
    if not isinstance(query, str):
        raise InvalidInputError("expected text", field="query")
    sid = v.id_of(session, "session") if session is not None else None
    uid = v.id_of(user, "user") if user is not None else None
    with get_workspace(ws).read() as db:
        acting = access.acting_user_id(db)
        if sid is not None:
            access.check_session_id(db, sid, "read")
        elif acting is not None:  # across sessions: the acting user's own
            if uid is not None:
                access.require_self(db, uid)
            uid = acting
        ids = fulltext.search_message_ids(db, query, session_id=sid, user_id=uid, limit=limit)
        if not ids:
            return []
        found = {m.id: m for m in db.scalars(sa.select(Message).where(Message.id.in_(ids)))}
    return [found[i] for i in ids if i in found]


# --- sharing ----------------------------------------------------------------------------------------


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


# --- forks and lineage ------------------------------------------------------------------------------

_COPIED_MESSAGE_FIELDS = (
    "role",
    "content",
    "content_blocks",
    "sequence",
    "agent_call_id",
    "tool_use_id",
    "token_count",
    "attachments",
    "inserted_at",
)
_COPIED_CONFIG = (
    "purpose",
    "tags",
    "system_prompt",
    "default_model",
    "default_agent",
    "temperature",
    "max_tokens",
    "linked_index_ids",
    "linked_workflow_ids",
    "git_context",
)


def fork_session(
    session: Session | uuid.UUID | str,
    message: Message | uuid.UUID | str,
    *,
    name: str | None = None,
    slug: str | None = None,
    ws: Workspace | None = None,
) -> Session:
    """A new session whose history is a copy of `session`'s messages up to and including `message`.

    The fork keeps the parent's settings, records where it branched (`parent_session_id`,
    `forked_at_message_id`) and from then on is independent: later messages in either session never
    appear in the other. Copied messages keep their sequence numbers and remember their original in
    `meta["forked_from"]`.
    """
    mid = v.id_of(message, "message")
    with get_workspace(ws).transaction() as tx:
        parent = fetch(tx.db, Session, session, "session", lock=True)
        at = fetch(tx.db, Message, mid, "message")
        if at.session_id != parent.id:
            raise InvalidInputError("that message belongs to another session", field="message")
        fork_name = v.text(name, "name", max_len=200) if name is not None else f"{parent.name} (fork)"[:200]
        child = _insert_session(
            tx,
            parent.user_id,
            name=fork_name,
            slug=slug,
            parent_session_id=parent.id,
            forked_at_message_id=at.id,
            **{k: getattr(parent, k) for k in _COPIED_CONFIG},
            meta={"forked_from_session": str(parent.id)},
        )
        source = tx.db.scalars(
            sa.select(Message)
            .where(Message.session_id == parent.id, Message.sequence <= at.sequence)
            .order_by(Message.sequence)
        )
        rows = [
            {
                "id": uuid.uuid4(),
                "session_id": child.id,
                **{k: getattr(m, k) for k in _COPIED_MESSAGE_FIELDS},
                "meta": {**m.meta, "forked_from": str(m.id)},
            }
            for m in source
        ]
        if rows:
            tx.db.execute(sa.insert(Message), rows)
        tx.db.execute(increment(Session, child.id, message_count=len(rows)))
        tx.db.refresh(child)
        log_activity(
            tx,
            ActivityAction.SESSION_FORK,
            resource_type="session",
            resource_id=child.id,
            user_id=child.user_id,
            session_id=child.id,
            details={
                "parent_session_id": str(parent.id),
                "forked_at_message_id": str(at.id),
                "forked_at_sequence": at.sequence,
                "copied_messages": len(rows),
            },
        )
        _publish_session(tx, child, "session_created")
        _publish_session(tx, parent, "session_forked", fork_session_id=str(child.id))
    return child


def lineage(session: Session | uuid.UUID | str, *, ws: Workspace | None = None) -> list[Session]:
    """The chain of sessions from the root of the fork tree down to `session` (inclusive)."""
    with get_workspace(ws).read() as db:
        chain = [fetch(db, Session, session, "session")]
        seen = {chain[0].id}
        while chain[-1].parent_session_id is not None:
            parent = db.get(Session, chain[-1].parent_session_id)
            if parent is None or parent.id in seen:  # a deleted parent ends the walk
                break
            seen.add(parent.id)
            chain.append(parent)
    return chain[::-1]


def forks(
    session: Session | uuid.UUID | str,
    *,
    limit: int = 50,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[Session]:
    """The sessions forked directly from `session`, oldest first. Recurse to walk the whole tree."""
    stmt = sa.select(Session).where(Session.parent_session_id == v.id_of(session, "session"))
    with get_workspace(ws).read() as db:
        return paginate(
            db,
            stmt,
            order_by=Session.inserted_at,
            id_column=Session.id,
            limit=limit,
            after=after,
            descending=False,
        )


# --- export and import ------------------------------------------------------------------------------

_SESSION_EXPORT_SKIP = {"id", "user_id", "parent_session_id", "forked_at_message_id", "slug"}


def _row_dict(row: Any, skip: Collection[str] = ()) -> dict[str, Any]:
    mapper = sa.inspect(type(row))
    return {
        attr.key: jsonable(getattr(row, attr.key)) for attr in mapper.column_attrs if attr.key not in skip
    }


def export_session(
    session: Session | uuid.UUID | str,
    path: str | os.PathLike[str] | None = None,
    *,
    ws: Workspace | None = None,
) -> dict[str, Any]:
    """The session, its messages, agent calls and tool uses as one JSON-ready document.

    With `path`, the document is also written there (UTF-8 JSON). `import_session` reads it back.
    """
    with get_workspace(ws).read() as db:
        s = fetch(db, Session, session, "session")
        messages = db.scalars(sa.select(Message).where(Message.session_id == s.id).order_by(Message.sequence))
        calls = db.scalars(
            sa.select(AgentCall)
            .where(AgentCall.session_id == s.id)
            .order_by(AgentCall.inserted_at, AgentCall.id)
        )
        tools = db.scalars(
            sa.select(ToolUse).where(ToolUse.session_id == s.id).order_by(ToolUse.inserted_at, ToolUse.id)
        )
        doc = {
            "format": EXPORT_FORMAT,
            "exported_at": utcnow().isoformat(),
            "session": {**_row_dict(s, _SESSION_EXPORT_SKIP), "original_id": str(s.id), "slug": s.slug},
            "messages": [_row_dict(m, {"session_id"}) for m in messages],
            "agent_calls": [
                _row_dict(c, {"session_id", "user_id", "workflow_run_id", "workflow_step_id"}) for c in calls
            ],
            "tool_uses": [_row_dict(t, {"session_id", "approval_id", "approved_by_id"}) for t in tools],
        }
    if path is not None:
        Path(path).write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
    return doc


def _restore(model: Any, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for `model` from an exported row: known columns only, types restored and checked
    (a hand-edited document is an InvalidInputError naming the field, never a database error)."""
    out: dict[str, Any] = {}
    for attr in sa.inspect(model).column_attrs:
        if attr.key not in raw:
            continue
        value = raw[attr.key]
        if value is not None:
            try:
                value = _typed(attr.columns[0].type, attr.key, value)
            except (ValueError, TypeError, NotImplementedError, InvalidInputError):
                raise InvalidInputError(
                    f"bad value for {attr.key}", field=f"{model.__tablename__}.{attr.key}"
                ) from None
        out[attr.key] = value
    return out


def _typed(t: Any, key: str, value: Any) -> Any:
    """`value` as column type `t` holds it; ValueError/TypeError when it cannot be."""
    if isinstance(t, UUIDList):
        return [uuid.UUID(str(x)) for x in v.items(value, key)]
    if isinstance(t, sa.Uuid):  # not by name: a tool use's `tool_use_id` is the provider's own id
        return uuid.UUID(str(value))
    if isinstance(t, TextList):
        if not all(isinstance(x, str) for x in v.items(value, key)):
            raise TypeError(key)
        return list(value)
    if getattr(t, "enums", None):
        if value not in t.enums:
            raise ValueError(key)
        return value
    if isinstance(t, Money) or key.endswith("_usd"):
        return to_money(value)
    try:
        py = t.python_type
    except NotImplementedError:
        py = None
    if py is dt.datetime or key.endswith("_at"):
        return dt.datetime.fromisoformat(value)
    if py is bool and not isinstance(value, bool):
        raise TypeError(key)
    if py is int:
        return v.count(value, key, minimum=-v.MAX_INT)
    if py is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise TypeError(key)
    if py is str and not isinstance(value, str):
        raise TypeError(key)
    return value


def import_session(
    user: User | uuid.UUID | str,
    source: Mapping[str, Any] | str | os.PathLike[str],
    *,
    name: str | None = None,
    ws: Workspace | None = None,
) -> Session:
    """Recreate an exported session (a document from `export_session`, or the path of its JSON file)
    for `user`, with new ids and all references between its rows remapped. One transaction: a bad
    document imports nothing."""
    if isinstance(source, Mapping):
        doc = source
    else:
        try:
            doc = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read a session export: {exc}", field="source") from None
    if not isinstance(doc, Mapping) or doc.get("format") != EXPORT_FORMAT:
        raise InvalidInputError(f"not a {EXPORT_FORMAT} document", field="source")
    uid = v.id_of(user, "user")
    try:
        return _import(tx_ws=get_workspace(ws), uid=uid, doc=doc, name=name)
    except CmdcError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # A hand-edited or truncated document: say which part, import nothing.
        raise InvalidInputError(
            f"malformed session export ({type(exc).__name__}: {str(exc)[:100]})", field="source"
        ) from None


def _import(*, tx_ws: Workspace, uid: uuid.UUID, doc: Mapping[str, Any], name: str | None) -> Session:
    with tx_ws.transaction() as tx:
        fields = _restore(Session, doc["session"])
        for k in ("id", "user_id", "parent_session_id", "forked_at_message_id", "slug"):
            fields.pop(k, None)
        fields["meta"] = {**fields.get("meta", {}), "imported_from": doc["session"].get("original_id")}
        fields["name"] = v.text(name, "name", max_len=200) if name is not None else fields["name"]
        fields["status"] = SessionStatus(fields.get("status", "active"))
        new = _insert_session(tx, uid, **fields, slug=None)
        ids: dict[uuid.UUID, uuid.UUID] = {}

        def remap(raw: Mapping[str, Any], model: Any) -> dict[str, Any]:
            row = _restore(model, raw)
            old = row.pop("id")
            row["id"] = ids.setdefault(old, uuid.uuid4())
            return row

        calls = [remap(c, AgentCall) for c in doc.get("agent_calls", [])]
        tools = [remap(t, ToolUse) for t in doc.get("tool_uses", [])]
        messages = [remap(m, Message) for m in doc.get("messages", [])]
        for c in calls:
            c.update(session_id=new.id, user_id=uid, status=AgentCallStatus(c["status"]))
        for t in tools:
            t.update(session_id=new.id, status=ToolUseStatus(t["status"]))
            t["agent_call_id"] = ids.get(t["agent_call_id"])
            if t["agent_call_id"] is None:
                raise InvalidInputError(
                    "a tool use refers to an agent call not in the export", field="tool_uses"
                )
        for m in messages:
            m.update(session_id=new.id, role=MessageRole(m["role"]))
            for ref in ("agent_call_id", "tool_use_id"):
                if m.get(ref) is not None:
                    m[ref] = ids.get(m[ref])
        for model, rows in ((AgentCall, calls), (ToolUse, tools), (Message, messages)):
            if rows:
                tx.db.execute(sa.insert(model), rows)
        tx.db.refresh(new)
        log_activity(
            tx,
            ActivityAction.SESSION_CREATE,
            resource_type="session",
            resource_id=new.id,
            user_id=uid,
            session_id=new.id,
            details={"imported_from": doc["session"].get("original_id"), "messages": len(messages)},
        )
        _publish_session(tx, new, "session_created")
    return new
