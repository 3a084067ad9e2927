"""Likes and dislikes on replies, on both backends: one rating per person, a note, taken back with None,
published as an event, listed by `frames.feedback_frame` with the model that wrote the reply — and
refused, with a typed error and nothing changed, for what is not a reply or not a rating."""

from __future__ import annotations

import datetime as dt

import pytest

from cmdc_nb import accounts, frames, sessions
from cmdc_nb.errors import AccessDeniedError, InvalidInputError
from cmdc_nb.events import topics
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script
from cmdc_nb.store.models import Session, User
from cmdc_nb.workspace import Workspace


async def _replies(ws: Workspace, session: Session, *texts: str) -> list[object]:
    script = Script(list(texts))
    agent = Agent(model=script.model, session=session, ws=ws)
    for i in range(len(texts)):
        await agent.prompt(f"question {i}")
    return [m for m in sessions.list_messages(session, ws=ws).entries if m.role == "assistant"]


async def test_a_reply_is_liked_disliked_with_a_note_and_taken_back(
    ws: Workspace, user: User, session: Session
) -> None:
    first, second = await _replies(ws, session, "Paris is the capital of France.", "It is 42 km away.")
    seen: list[dict[str, object]] = []
    sub = ws.bus.subscribe(
        topics.session_messages(session.id),
        lambda e: seen.append(e.payload) if e.type == "message_rated" else None,
    )
    sessions.rate_message(first, "like", ws=ws)
    sessions.rate_message(second, "like", ws=ws)
    rated = sessions.rate_message(second, "dislike", note="it is 42 miles, not km", ws=ws)  # replaces
    sub.close()
    assert rated.meta["feedback"][str(user.id)]["rating"] == "dislike"
    assert [p["rating"] for p in seen] == ["like", "like", "dislike"] and seen[-1][
        "note"
    ] == "it is 42 miles, not km"

    df = frames.feedback_frame(session=session, ws=ws)
    assert list(df.columns) == list(frames.FEEDBACK_COLUMNS) and len(df) == 2  # one rating per person
    assert str(df["rated_at"].dtype) == "datetime64[us, UTC]" and str(df["rating"].dtype) == "category"
    row = df[df["rating"] == "dislike"].iloc[0]
    assert row["reply"] == "It is 42 km away." and row["note"] == "it is 42 miles, not km"
    assert row["model"].startswith("scripted/") and row["rated_by"] == str(user.id)
    assert row["message_id"] == str(second.id) and row["agent_call_id"] == str(second.agent_call_id)
    assert list(frames.feedback_frame(session=session, rating="like", ws=ws)["reply"]) == [
        "Paris is the capital of France."
    ]
    later = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    assert frames.feedback_frame(session=session, since=later, ws=ws).empty

    sessions.rate_message(second, None, ws=ws)  # taken back
    assert str(user.id) not in sessions.get_message(second.id, ws=ws).meta["feedback"]
    assert list(frames.feedback_frame(session=session, ws=ws)["rating"]) == ["like"]


async def test_what_is_not_a_reply_or_not_a_rating_is_refused_and_changes_nothing(
    ws: Workspace, session: Session
) -> None:
    [reply] = await _replies(ws, session, "ok")
    question = next(m for m in sessions.list_messages(session, ws=ws).entries if m.role == "user")
    cases = [
        (question, "like", {}, "only a reply"),
        (reply, "Like", {}, "must be 'like', 'dislike' or None"),
        (reply, ["like"], {}, "rating: expected text or None, got list"),  # a list is never a string
        (reply, 1, {}, "rating: expected text or None, got int"),
        (reply, "dislike", {"note": "x" * 2001}, "note"),
        (reply, "dislike", {"note": "bad\x00byte"}, "NUL"),
        (reply, "dislike", {"note": ["not", "text"]}, "expected text"),
        ("not-an-id", "like", {}, "not a valid id"),
    ]
    for target, rating, extra, words in cases:
        with pytest.raises(InvalidInputError, match=words):
            sessions.rate_message(target, rating, ws=ws, **extra)  # type: ignore[arg-type]
    assert "feedback" not in sessions.get_message(reply.id, ws=ws).meta
    assert frames.feedback_frame(session=session, ws=ws).empty
    with pytest.raises(InvalidInputError, match="rating"):
        frames.feedback_frame(rating="meh", ws=ws)


async def test_two_people_on_a_shared_session_rate_apart_and_no_one_rates_for_another(
    ws: Workspace, user: User, session: Session
) -> None:
    [reply] = await _replies(ws, session, "Use a dict.")
    bob = accounts.create_user("bob@example.com", name="Bob", ws=ws)
    eve = accounts.create_user("eve@example.com", name="Eve", ws=ws)
    sessions.share_session(session, with_users=[bob], ws=ws)
    sessions.rate_message(reply, "like", ws=ws)  # the owner (no one acted for)
    ws.act_as(bob)
    sessions.rate_message(reply, "dislike", note="a set is enough", ws=ws)
    with pytest.raises(AccessDeniedError):
        sessions.rate_message(reply, "like", user, ws=ws)  # Bob cannot rate as Ada
    ws.act_as(eve)
    with pytest.raises(AccessDeniedError):
        sessions.rate_message(reply, "dislike", ws=ws)  # not shared with Eve
    ws.act_as(None)
    df = frames.feedback_frame(session=session, ws=ws)
    assert dict(zip(df["rated_by"], df["rating"], strict=True)) == {
        str(user.id): "like",
        str(bob.id): "dislike",
    }


async def test_ratings_cannot_be_forged_copied_or_made_to_break_the_frame(
    ws: Workspace, user: User, session: Session
) -> None:
    """Found by a hostile review: `meta["feedback"]` written by hand, ratings copied into forks, a rater
    who does not exist."""
    import uuid

    import sqlalchemy as sa

    from cmdc_nb.errors import NotFoundError
    from cmdc_nb.store.models import Message

    [reply] = await _replies(ws, session, "ok")
    with pytest.raises(InvalidInputError, match=r"metadata\.feedback"):
        sessions.create_message(
            session,
            role="assistant",
            content="fake",
            metadata={"feedback": {str(user.id): {"rating": "like"}}},
            ws=ws,
        )
    with pytest.raises(NotFoundError):
        sessions.rate_message(reply, "like", uuid.uuid4(), ws=ws)
    sessions.rate_message(reply, "dislike", note="wrong", ws=ws)
    # malformed entries beside it (an older version, a hand-made row) are left out, never trusted
    with ws.transaction() as tx:
        row = tx.db.get(Message, reply.id)
        assert row is not None
        junk = {
            "not-a-uuid": {"rating": "like", "at": "2026-01-01T00:00:00+00:00"},
            str(uuid.uuid4()): "boom",
        }
        row.meta = {**row.meta, "feedback": {**row.meta["feedback"], **junk}}
    other = sessions.create_message(session, role="assistant", content="x", ws=ws)
    with ws.transaction() as tx:
        tx.db.execute(sa.update(Message).where(Message.id == other.id).values(meta={"feedback": "boom"}))
    df = frames.feedback_frame(session=session, ws=ws)
    assert list(df["rating"]) == ["dislike"] and list(df["note"]) == ["wrong"]
    sessions.rate_message(other.id, "like", ws=ws)  # a malformed value is replaced, not a crash
    fork = sessions.fork_session(session, reply, ws=ws)
    assert frames.feedback_frame(session=fork, ws=ws).empty  # the rating stays with the rated reply
    assert len(frames.feedback_frame(ws=ws)) == 2
