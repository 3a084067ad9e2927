"""The event bus: topics, replay with since/types, async streams, publication after commit only."""

from __future__ import annotations

import asyncio
import threading
from typing import Any

import pytest

from cmdc_nb import accounts
from cmdc_nb.errors import ConflictError
from cmdc_nb.events import Event, EventBus, topics
from cmdc_nb.store.models import User
from cmdc_nb.workspace import Workspace


def test_subscribers_get_their_topic_only_in_order() -> None:
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("session:1", got.append)
    bus.publish("session:1", "a")
    bus.publish("session:2", "b")
    bus.publish("session:1", "c", {"n": 1})
    assert [(e.topic, e.type) for e in got] == [("session:1", "a"), ("session:1", "c")]
    assert got[1].payload == {"n": 1}
    assert got[0].index < got[1].index


def test_glob_patterns_match_topics() -> None:
    bus = EventBus()
    got: list[str] = []
    bus.subscribe("session:*", lambda e: got.append(e.topic))
    for t in ("session:1", "session:1:messages", "user:1", "session:2"):
        bus.publish(t, "x")
    assert got == ["session:1", "session:1:messages", "session:2"]


def test_replay_since_then_live_and_types_filter_only_the_replay() -> None:
    bus = EventBus(buffer_size=10)
    for i in range(5):
        bus.publish("s", "delta" if i % 2 else "start", {"i": i})
    seen: list[tuple[str, int]] = []
    sub = bus.subscribe("s", lambda e: seen.append((e.type, e.payload["i"])), since=1, types=["delta"])
    bus.publish("s", "start", {"i": 5})  # live events are not filtered
    assert seen == [("delta", 1), ("delta", 3), ("start", 5)]
    sub.close()
    bus.publish("s", "delta", {"i": 6})
    assert len(seen) == 3


def test_the_replay_buffer_is_bounded_per_topic() -> None:
    bus = EventBus(buffer_size=3)
    for i in range(10):
        bus.publish("s", "x", {"i": i})
    bus.publish("other", "y")
    assert [e.payload["i"] for e in bus.replay("s", since=0)] == [7, 8, 9]
    assert bus.last_index("s") == 10
    assert bus.last_index("missing") is None


def test_payloads_are_read_only() -> None:
    bus = EventBus()
    event = bus.publish("s", "x", {"a": 1})
    with pytest.raises(TypeError):
        event.payload["a"] = 2  # type: ignore[index]


def test_a_failing_callback_is_isolated(caplog: pytest.LogCaptureFixture) -> None:
    bus = EventBus()
    got: list[Event] = []

    def broken(event: Event) -> None:
        raise RuntimeError("boom")

    bus.subscribe("s", broken)
    bus.subscribe("s", got.append)
    bus.publish("s", "x")  # does not raise
    assert len(got) == 1
    assert "subscriber" in caplog.text


async def test_async_stream_replays_then_follows_live_from_threads() -> None:
    bus = EventBus()
    bus.publish("s", "old")
    stream = bus.stream("s", since=0)
    threads = [threading.Thread(target=bus.publish, args=("s", "live", {"t": i})) for i in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    received = [await stream.get(timeout=2) for _ in range(6)]
    stream.close()
    assert received[0].type == "old"
    assert sorted(e.payload["t"] for e in received[1:]) == [0, 1, 2, 3, 4]
    assert [e.index for e in received] == sorted(e.index for e in received)
    with pytest.raises(StopAsyncIteration):
        await stream.__anext__()


async def test_stream_get_times_out() -> None:
    bus = EventBus()
    async with bus.stream("quiet") as stream:
        with pytest.raises(asyncio.TimeoutError):
            await stream.get(timeout=0.05)


def test_events_are_published_after_commit_and_never_on_rollback(ws: Workspace) -> None:
    got: list[Event] = []
    ws.bus.subscribe("user:*", got.append)
    user = accounts.create_user("a@example.com", ws=ws)
    assert [(e.topic, e.type) for e in got] == [(topics.user(user.id), "user_created")]
    got.clear()
    with pytest.raises(ConflictError):
        accounts.create_user("A@EXAMPLE.com", ws=ws)
    with pytest.raises(RuntimeError), ws.transaction() as tx:
        tx.db.add(User(email="b@example.com"))
        tx.publish(topics.user("b"), "user_created")
        raise RuntimeError("abandon")
    assert got == []


def test_an_event_is_not_visible_before_its_data_is(ws: Workspace) -> None:
    # A subscriber that reads the row named by the event must find it: publication follows the commit.
    found: list[bool] = []

    def on_created(event: Event) -> None:
        found.append(accounts.get_user(event.payload["user_id"], ws=ws).email == "c@example.com")

    ws.bus.subscribe("user:*", on_created)
    accounts.create_user("c@example.com", ws=ws)
    assert found == [True]


def test_a_lazy_payload_is_made_once_when_first_read_and_is_read_only() -> None:
    from cmdc_nb.events._bus import LazyPayload

    made: list[int] = []

    def make() -> dict[str, Any]:
        made.append(1)
        return {"n": 1, "items": [1, 2]}

    lazy = LazyPayload(make)
    assert made == []  # nothing is made until something reads it
    bus = EventBus()
    got: list[Event] = []
    bus.subscribe("agent:x", got.append)
    bus.publish("agent:x", "tick", lazy)
    [event] = got
    assert event.payload is lazy  # kept as it is: the bus's defensive copy would read it at once
    assert dict(event.payload) == {"n": 1, "items": [1, 2]} and event.payload["n"] == 1
    # made once, however many read it (in CI a scanner reads every payload as it is published)
    assert len(event.payload) == 2 and made == [1]
    [replayed] = bus.replay("agent:x")
    assert replayed.payload == {"n": 1, "items": [1, 2]} and made == [1]  # made once
    with pytest.raises(TypeError):
        event.payload["n"] = 2  # type: ignore[index]
