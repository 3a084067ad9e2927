"""Likes and dislikes on a reply, each with an optional note: stored with the message (one rating per
person, in `meta["feedback"]`, keyed by who rated), published as `message_rated`, and listed by
`frames.feedback_frame` — a signal an evaluation can use: which replies people found wrong, and why."""

from __future__ import annotations

import uuid
from typing import Any

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.events import topics
from cmdc_nb.store.enums import MessageRole
from cmdc_nb.store.feedback import RATINGS, valid_feedback
from cmdc_nb.store.models import Message, Session, User
from cmdc_nb.store.values import utcnow

__all__ = ["RATINGS", "rate_message", "valid_feedback"]

NOTE_MAX = 2000


@checked
def rate_message(
    message: Message | uuid.UUID | str,
    rating: str | None,
    user: Any = None,
    *,
    note: str | None = None,
    ws: Workspace | None = None,
) -> Message:
    """Record `user`'s rating of a reply: "like" or "dislike" (None takes the rating back), with an
    optional `note` (what was wrong, what was good; up to 2,000 characters). One rating per person:
    rating again replaces it. `user` defaults to the workspace's acting user, else the session's owner;
    when the workspace acts for someone, only they may rate, and only what they may read. Returns the
    message.

    >>> rate_message(reply, "dislike", note="it invented a function")   # doctest: +SKIP
    """
    w = get_workspace(ws)
    mid = v.id_of(message, "message")
    if rating is not None and (not isinstance(rating, str) or rating not in RATINGS):
        raise InvalidInputError("must be 'like', 'dislike' or None (to take a rating back)", field="rating")
    text = v.text(note, "note", max_len=NOTE_MAX, min_len=0) if note is not None else None
    named = access.resolve_user(access.current(w.acting_user_id), user)
    with w.transaction() as tx:
        row = fetch(tx.db, Message, mid, "message", lock=True)  # checks the acting user may read it
        if row.role is not MessageRole.ASSISTANT:
            raise InvalidInputError(
                f"only a reply (an assistant message) is rated, not a {row.role.value} message",
                field="message",
            )
        if named is not None:
            by = fetch(tx.db, User, v.id_of(named, "user"), "user").id  # a rater who exists
        else:
            owner = tx.db.get(Session, row.session_id)
            assert owner is not None  # a message's session exists (foreign key)
            by = owner.user_id
        feedback = valid_feedback((row.meta or {}).get("feedback"))
        if rating is None:
            feedback.pop(str(by), None)
        else:
            feedback[str(by)] = {"rating": rating, "note": text or None, "at": utcnow().isoformat()}
        row.meta = {**(row.meta or {}), "feedback": feedback}
        tx.db.flush()
        tx.publish(
            topics.session_messages(row.session_id),
            "message_rated",
            {
                "message_id": str(row.id),
                "session_id": str(row.session_id),
                "sequence": row.sequence,
                "by": str(by),
                "rating": rating,
                "note": text or None,
            },
        )
        return row
