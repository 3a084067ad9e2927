"""Presence (who is here) and the activity log (who did what)."""

from __future__ import annotations

import datetime as dt

import pytest

from cmdc_nb import accounts, activity, presence, sessions
from cmdc_nb.errors import ConflictError, InvalidInputError, NotFoundError
from cmdc_nb.events import Event, topics
from cmdc_nb.store.models import User
from cmdc_nb.workspace import Workspace


def later(seconds: float) -> dt.datetime:
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_join_twice_with_one_client_updates_not_fails(ws: Workspace, user: User) -> None:
    s1 = sessions.create_session(user, name="a", ws=ws)
    s2 = sessions.create_session(user, name="b", ws=ws)
    got: list[Event] = []
    ws.bus.subscribe("presence:*", got.append)
    p1 = presence.join_resource(user, "session", s1.id, client_id="tab-1", device_type="notebook", ws=ws)
    p2 = presence.join_resource(user, "session", s2.id, client_id="tab-1", status="editing", ws=ws)
    assert p1.id == p2.id and (p2.resource_id, p2.status) == (s2.id, "editing")
    assert presence.get_presence_by_client("tab-1", ws=ws).resource_id == s2.id
    assert [e.topic for e in got] == [topics.presence("session", s1.id), topics.presence("session", s2.id)]
    other = accounts.create_user("bob@example.com", ws=ws)
    with pytest.raises(ConflictError):
        presence.join_resource(other, "session", s1.id, client_id="tab-1", ws=ws)
    with pytest.raises(InvalidInputError):
        presence.join_resource(user, "spaceship", s1.id, client_id="tab-2", ws=ws)
    with pytest.raises(NotFoundError):
        presence.get_presence_by_client("nobody", ws=ws)


def test_who_is_here_uses_the_60s_window_and_leaving(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="a", ws=ws)
    bob = accounts.create_user("bob@example.com", ws=ws)
    mine = presence.join_resource(user, "session", s.id, client_id="a", ws=ws)
    presence.join_resource(bob, "session", s.id, client_id="b", ws=ws)
    assert {p.user_id for p in presence.list_resource_presence("session", s.id, ws=ws)} == {user.id, bob.id}
    assert len(presence.list_resource_presence("session", s.id, now=later(61), ws=ws)) == 0
    presence.leave_resource(mine, ws=ws)
    assert [p.user_id for p in presence.list_resource_presence("session", s.id, ws=ws)] == [bob.id]
    back = presence.update_presence(mine, status="idle", cursor_state={"cell": 3}, ws=ws)
    assert (back.left_at, back.status, back.cursor_state) == (None, "idle", {"cell": 3})
    seen = back.last_seen_at
    assert presence.heartbeat(mine, ws=ws).last_seen_at >= seen


def test_stale_clients_are_cleaned_after_300s(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="a", ws=ws)
    presence.join_resource(user, "session", s.id, client_id="a", ws=ws)
    assert presence.cleanup_stale_presence(now=later(299), ws=ws) == 0
    assert presence.cleanup_stale_presence(now=later(301), ws=ws) == 1
    assert presence.get_presence_by_client("a", ws=ws).left_at is not None
    assert presence.cleanup_stale_presence(now=later(301), ws=ws) == 0


def test_activity_queries_filter_and_honour_limits(ws: Workspace, user: User) -> None:
    bob = accounts.create_user("bob@example.com", ws=ws)
    s = sessions.create_session(user, name="a", ws=ws)
    for i in range(7):
        sessions.create_message(s, role="user", content=str(i), ws=ws)
    sessions.create_session(bob, name="b", ws=ws)
    mine = activity.list_user_activity(user, limit=5, ws=ws)
    assert len(mine) == 5 and mine.has_next
    rest = activity.list_user_activity(user, limit=5, after=mine.next_cursor, ws=ws)
    everything = [*mine, *rest]
    assert len(everything) == 8 and all(e.user_id == user.id for e in everything)  # 1 create + 7 messages
    assert [e.occurred_at for e in everything] == sorted((e.occurred_at for e in everything), reverse=True)
    msgs = activity.search_activity(action="message.create", session=s, limit=1000, ws=ws)
    assert len(msgs) == 7
    assert len(activity.search_activity(action=["session.create"], ws=ws)) == 2
    assert len(activity.search_activity(since=later(10), ws=ws)) == 0
    assert len(activity.search_activity(until=later(10), user=bob, ws=ws)) == 1
    with pytest.raises(InvalidInputError):
        activity.search_activity(since=dt.datetime(2026, 1, 1), ws=ws)  # naive datetimes are refused
    with pytest.raises(InvalidInputError):
        activity.search_activity(limit=0, ws=ws)


def test_log_activity_by_hand_takes_the_whitelist_only(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="a", ws=ws)
    entry = activity.log_user_activity(user, "user.login", "user", user.id, {"via": "notebook"}, ws=ws)
    assert entry.action == "user.login" and entry.details == {"via": "notebook"}
    with pytest.raises(InvalidInputError, match="one of"):
        activity.log_activity("user.hack", resource_type="user", resource_id=user.id, ws=ws)
    assert [e.action for e in activity.list_resource_activity("user", user.id, ws=ws)] == ["user.login"]
    assert activity.list_resource_activity("session", s.id, ws=ws)[0].action == "session.create"
