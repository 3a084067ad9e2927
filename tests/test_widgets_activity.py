"""ActivityFeed: the audit log live, and who else is on a session."""

from __future__ import annotations

import asyncio

from cmdc_nb import accounts, presence, sessions
from cmdc_nb.store.models import User
from cmdc_nb.widgets import ActivityFeed
from cmdc_nb.workspace import Workspace


async def test_the_feed_follows_the_audit_log_and_presence(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="Pairing", ws=ws)
    bob = accounts.create_user("bob@example.com", name="Bob", ws=ws)
    feed = ActivityFeed(session=s, ws=ws)
    assert "nobody else here" in feed.badges.value
    before = len(feed.entries)
    sessions.create_message(s, role="user", content="hello", ws=ws)
    presence.join_resource(bob, "session", s.id, client_id="bob-laptop", ws=ws)
    for _ in range(200):  # the refresh is debounced (0.3 s) and runs on the loop
        if len(feed.entries) > before and "Bob" in feed.badges.value:
            break
        await asyncio.sleep(0.05)
    assert len(feed.entries) == before + 1 and feed.entries[0].action == "message.create"
    assert "Ada" in feed.table.value and "message.create" in feed.table.value
    assert "● Bob" in feed.badges.value and [str(p.user_id) for p in feed.people] == [str(bob.id)]
    assert repr(feed).startswith("<ActivityFeed entries=")
