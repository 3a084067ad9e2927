"""People's ratings of replies as a frame: one row per rating (a reply rated by two people is two rows),
with the reply, the model that wrote it and the note left — what an evaluation reads to find the
answers people found wrong (`sessions.rate_message` records them)."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.services.frames.columns import _id_category, _scope
from cmdc_nb.store.enums import MessageRole
from cmdc_nb.store.feedback import valid_feedback
from cmdc_nb.store.models import AgentCall, Message

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["FEEDBACK_COLUMNS", "feedback_frame"]

FEEDBACK_COLUMNS = (
    "rated_at",
    "rating",
    "note",
    "rated_by",
    "model",
    "reply",
    "session_id",
    "message_id",
    "sequence",
    "agent_call_id",
)


def _has_feedback(pg: bool) -> Any:
    if pg:
        return sa.type_coerce(Message.meta, postgresql.JSONB).has_key("feedback")
    return sa.func.json_type(Message.meta, "$.feedback").is_not(None)


@checked
def feedback_frame(
    *,
    user: Any = None,
    session: Any = None,
    rating: str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per rating, oldest first: rated_at (datetime64[us, UTC]), rating ("like" / "dislike",
    category), note (string, <NA> when none), rated_by (category), model (category: the call that wrote
    the reply), reply (string), session_id, message_id, agent_call_id (category), sequence (int64).
    `user` limits to that user's sessions, `session` to one; `rating`, `since` and `until` filter."""
    import pandas as pd

    if rating is not None and rating not in ("like", "dislike"):
        raise InvalidInputError("must be 'like', 'dislike' or None", field="rating")
    lo = v.aware(since, "since") if since is not None else None
    hi = v.aware(until, "until") if until is not None else None
    w = get_workspace(ws)
    with w.read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        stmt = (
            sa.select(
                Message.id, Message.session_id, Message.sequence, Message.agent_call_id, Message.content,
                Message.meta, AgentCall.model,
            )
            .outerjoin(AgentCall, AgentCall.id == Message.agent_call_id)
            .where(Message.role == MessageRole.ASSISTANT, _has_feedback(pg))
        )  # fmt: skip
        rows = db.execute(_scope(db, stmt, Message, user=user, session=session, tags=None)).all()
    out: list[tuple[Any, ...]] = []
    for r in rows:
        for by, f in valid_feedback((r.meta or {}).get("feedback")).items():
            at = dt.datetime.fromisoformat(f["at"])
            if (rating and f["rating"] != rating) or (lo and at < lo) or (hi and at >= hi):
                continue
            out.append((at, f["rating"], f.get("note"), by, r.model, r.content, r.session_id, r.id,
                        r.sequence, r.agent_call_id))  # fmt: skip
    out.sort(key=lambda x: x[0])
    cols = list(zip(*out, strict=True)) if out else [() for _ in FEEDBACK_COLUMNS]
    data = dict(zip(FEEDBACK_COLUMNS, cols, strict=True))
    frame = pd.DataFrame(
        {
            "rated_at": pd.to_datetime(list(data["rated_at"]), utc=True).astype("datetime64[us, UTC]"),
            "rating": pd.Categorical(list(data["rating"]), categories=["like", "dislike"]),
            "note": pd.array(list(data["note"]), dtype="string"),
            "rated_by": _id_category([str(x) for x in data["rated_by"]]),
            "model": pd.Categorical(list(data["model"])),
            "reply": pd.array(list(data["reply"]), dtype="string"),
            "session_id": _id_category([str(x) for x in data["session_id"]]),
            "message_id": _id_category([str(x) for x in data["message_id"]]),
            "sequence": pd.array(list(data["sequence"]), dtype="int64"),
            "agent_call_id": _id_category([str(x) if x else None for x in data["agent_call_id"]]),
        },
        columns=list(FEEDBACK_COLUMNS),
    )
    return frame
