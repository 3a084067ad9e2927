"""Forks: a new session that copies its parent's messages up to a point, and the lineage between them."""

from __future__ import annotations

import uuid

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch, increment
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.services.sessions.records import _insert_session, _publish_session
from cmdc_nb.store.enums import ActivityAction
from cmdc_nb.store.models import Message, Session
from cmdc_nb.store.pagination import Page, paginate

__all__ = ["fork_session", "forks", "lineage"]


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
