"""A session's messages: sequence numbers under the session's row lock, history, full-text search."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch, increment
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import ConflictError, InvalidInputError, InvalidStateError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.services.sessions.records import _WRITABLE
from cmdc_nb.store import fulltext
from cmdc_nb.store.enums import ActivityAction, MessageRole
from cmdc_nb.store.models import AgentCall, Message, Session, ToolUse, User
from cmdc_nb.store.pagination import Page, paginate

__all__ = [
    "count_messages",
    "create_message",
    "get_conversation_history",
    "get_message",
    "list_messages",
    "search_messages",
]


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


@checked
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
    if "feedback" in metadata:  # people's ratings are written by `rate_message` alone
        raise InvalidInputError("is kept by rate_message: leave it out", field="metadata.feedback")
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
        if call_id is None and tool_id is None:
            # A message an agent call or a tool use wrote is audited by their entries
            # (agent.call.complete, tool.execute), which name it through the message's own links.
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


@checked
def get_message(message_id: Message | uuid.UUID | str, *, ws: Workspace | None = None) -> Message:
    with get_workspace(ws).read() as db:
        return fetch(db, Message, message_id, "message")


@checked
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


@checked
def count_messages(session: Session | uuid.UUID | str, *, ws: Workspace | None = None) -> int:
    sid = v.id_of(session, "session")
    with get_workspace(ws).read() as db:
        access.check_session_id(db, sid, "read")
        return int(db.scalar(sa.select(sa.func.count()).where(Message.session_id == sid)) or 0)


DEFAULT_HISTORY_ROLES = ("user", "assistant", "system")


@checked
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


@checked
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
