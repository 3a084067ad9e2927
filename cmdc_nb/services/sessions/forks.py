"""Forks: a new session that copies its parent's messages up to a point, and the lineage between them."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch, increment
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.services.sessions.records import _insert_session, _publish_session, checked_slug
from cmdc_nb.store.enums import ActivityAction
from cmdc_nb.store.models import Message, Session
from cmdc_nb.store.pagination import Page, paginate

__all__ = ["branches", "fork_session", "forks", "lineage"]


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


@checked
def fork_session(
    session: Session | uuid.UUID | str,
    message: Message | uuid.UUID | str | None,
    *,
    name: str | None = None,
    slug: str | None = None,
    ws: Workspace | None = None,
) -> Session:
    """A new session whose history is a copy of `session`'s messages up to and including `message`
    (None: before the first message — a fork with no history, the way to edit the first prompt).

    The fork belongs to whoever makes it (the acting user in team mode, else the parent's owner), keeps
    the parent's settings, records where it branched (`parent_session_id`,
    `forked_at_message_id`, and `meta["forked_at_sequence"]`: 0 before the first message) and from
    then on is independent: later messages in either session never appear in the other. Copied messages keep their sequence numbers and remember their original in
    `meta["forked_from"]`.
    """
    mid = v.id_of(message, "message") if message is not None else None
    slug = checked_slug(slug)  # as `create_session` checks it
    with get_workspace(ws).transaction() as tx:
        parent = fetch(tx.db, Session, session, "session", lock=True)
        at = fetch(tx.db, Message, mid, "message") if mid is not None else None
        if at is not None and at.session_id != parent.id:
            raise InvalidInputError("that message belongs to another session", field="message")
        upto = at.sequence if at is not None else 0
        fork_name = v.text(name, "name", max_len=200) if name is not None else f"{parent.name} (fork)"[:200]
        # the fork is its maker's: in team mode, a collaborator forking a shared session owns the fork
        owner = access.acting_user_id(tx.db) or parent.user_id
        child = _insert_session(
            tx,
            owner,
            name=fork_name,
            slug=slug,
            parent_session_id=parent.id,
            forked_at_message_id=at.id if at is not None else None,
            **{k: getattr(parent, k) for k in _COPIED_CONFIG},
            meta={"forked_from_session": str(parent.id), "forked_at_sequence": upto},
        )
        source = tx.db.scalars(
            sa.select(Message)
            .where(Message.session_id == parent.id, Message.sequence <= upto)
            .order_by(Message.sequence)
        )
        rows = [
            {
                "id": uuid.uuid4(),
                "session_id": child.id,
                **{k: getattr(m, k) for k in _COPIED_MESSAGE_FIELDS},
                # ratings stay with the reply that was rated: a fork's copy starts unrated
                "meta": {**{k: x for k, x in m.meta.items() if k != "feedback"}, "forked_from": str(m.id)},
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
                "forked_at_message_id": str(at.id) if at is not None else None,
                "forked_at_sequence": upto,
                "copied_messages": len(rows),
            },
        )
        _publish_session(tx, child, "session_created")
        _publish_session(tx, parent, "session_forked", fork_session_id=str(child.id))
    return child


@checked
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


@checked
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


def _fork_point(child: Session, db: Any) -> int | None:
    """The sequence number a fork branched after (0: before the first message); None for a root."""
    if child.parent_session_id is None:
        return None
    known = (child.meta or {}).get("forked_at_sequence")
    if isinstance(known, int):
        return known
    if child.forked_at_message_id is None:
        return 0
    at = db.get(Message, child.forked_at_message_id)  # a fork made before the point was kept
    return at.sequence if at is not None else None


@checked
def branches(
    session: Session | uuid.UUID | str, sequence: int, *, ws: Workspace | None = None
) -> list[Session]:
    """The alternatives for the message at `sequence` of `session`: the sessions that share its history
    before that message and go their own way from it — forks made at the message just before it, their
    parent and their siblings, around `session` (itself included) — oldest first, those the acting user
    may read. A chat's "‹ 2/3 ›" pages through them (a reply run again, a prompt edited and sent again).

    >>> [s.name for s in branches(chat_session, 4)]   # doctest: +SKIP
    ['Release notes', 'Release notes (fork)']
    """
    point = v.count(sequence, "sequence", minimum=1) - 1
    with get_workspace(ws).read() as db:
        start = fetch(db, Session, session, "session")
        found = {start.id: start}
        todo = [start]
        while todo:
            cur = todo.pop()
            near: list[Session] = []
            if _fork_point(cur, db) == point and cur.parent_session_id is not None:
                parent = db.get(Session, cur.parent_session_id)  # up, when `cur` branched exactly there
                near += [parent] if parent is not None else []
            children = db.scalars(sa.select(Session).where(Session.parent_session_id == cur.id))
            near += [c for c in children if _fork_point(c, db) == point]  # down, those that did
            for other in near:
                if other.id not in found:
                    found[other.id] = other
                    todo.append(other)
        uid = access.acting_user_id(db)
        readable = [s for s in found.values() if uid is None or access.session_allows(s, uid, "read")]
        return sorted(readable, key=lambda x: (x.inserted_at, str(x.id)))
