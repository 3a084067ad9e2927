"""Team mode: committed events cross processes through the database (LISTEN/NOTIFY on PostgreSQL,
polling on SQLite), in commit order, each once; a listener that loses its connection catches up."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import accounts, agents, sessions
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.events import Event
from cmdc_nb.store import event_log
from cmdc_nb.store.models import EventLogEntry
from cmdc_nb.workspace import Workspace

LIVENESS = 30.0  # the longest a delivery may take before the test gives up (not a performance bound)


def wait_until(check: Callable[[], bool], timeout: float = LIVENESS) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.02)
    return check()


@pytest.fixture
def kernels(db_url: str, home_dir: Path, backend: str) -> Iterator[tuple[Workspace, Workspace]]:
    """Two workspaces on one database, as two kernels would have (each its own bus and bridge)."""
    a = cmdc_nb.connect(db_url, home=home_dir, make_default=False, share_events=True)
    b = cmdc_nb.connect(db_url, home=home_dir, make_default=False, share_events=True)
    for ws in (a, b):
        assert ws._bridge is not None and ws._bridge.wait_connected()
    yield a, b
    a.close()
    b.close()


def test_events_committed_in_one_kernel_arrive_in_the_other_in_order_and_once(
    kernels: tuple[Workspace, Workspace],
) -> None:
    a, b = kernels
    seen_a: list[Event] = []
    seen_b: list[Event] = []
    a.bus.subscribe("*", seen_a.append)
    b.bus.subscribe("*", seen_b.append)
    user = accounts.create_user("bee@example.com", ws=b)
    s = sessions.create_session(user, name="shared", ws=b)
    for i in range(20):
        sessions.create_message(s, role="user", content=f"message {i}", ws=b)
    expected = [(e.topic, e.type, dict(e.payload)) for e in seen_b]
    assert len(expected) >= 22 and all(e.origin is None for e in seen_b)  # B's own: local, at commit
    assert wait_until(lambda: len(seen_a) >= len(expected))
    time.sleep(0.3)  # anything extra (a duplicate) would have arrived by now
    assert [(e.topic, e.type, dict(e.payload)) for e in seen_a] == expected
    assert {e.origin for e in seen_a} == {b._bridge.origin}  # type: ignore[union-attr]
    # A's own events are not echoed back to A
    accounts.create_user("ay@example.com", ws=a)
    assert wait_until(lambda: any(e.type == "user_created" and e.origin is None for e in seen_a))
    time.sleep(0.3)
    assert sum(e.type == "user_created" for e in seen_a) == 2


def test_a_rolled_back_transaction_shares_nothing(kernels: tuple[Workspace, Workspace]) -> None:
    _, b = kernels
    user = accounts.create_user("roll@example.com", ws=b)
    with b.read() as db:
        before = db.scalar(sa.select(sa.func.count()).select_from(EventLogEntry))
    with pytest.raises(InvalidInputError):
        sessions.create_session(user, name="", ws=b)  # refused: nothing committed, nothing announced
    with b.read() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(EventLogEntry)) == before


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_concurrent_writers_are_delivered_in_commit_order(kernels: tuple[Workspace, Workspace]) -> None:
    """Three writers at once (two threads of B, and A): every kernel receives the other's events once
    each, in the order of the log's ids — which is commit order."""
    a, b = kernels
    seen_a: list[Event] = []
    a.bus.subscribe("session:*", seen_a.append)
    user = accounts.create_user("many@example.com", ws=b)
    s1 = sessions.create_session(user, name="one", ws=b)
    s2 = sessions.create_session(user, name="two", ws=b)

    def write(s: object) -> None:
        for i in range(25):
            sessions.create_message(s, role="user", content=f"m{i}", ws=b)

    threads = [threading.Thread(target=write, args=(s,)) for s in (s1, s2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with b.engine.connect() as conn:
        log = [
            (topic, type_, payload)
            for batch in event_log.read_after(conn, 0)
            if batch.origin == b._bridge.origin  # type: ignore[union-attr]
            for topic, type_, payload in batch.events
            if topic.startswith("session:")
        ]
    assert wait_until(lambda: len(seen_a) >= len(log))
    time.sleep(0.3)
    assert [(e.topic, e.type, dict(e.payload)) for e in seen_a] == [(t, ty, p) for t, ty, p in log]
    for s in (s1, s2):  # per session, the messages arrive in the order they were numbered
        seqs = [e.payload["sequence"] for e in seen_a if e.topic == f"session:{s.id}:messages"]
        assert seqs == sorted(seqs) and len(seqs) == 25


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_listener_that_loses_its_connection_catches_up(kernels: tuple[Workspace, Workspace]) -> None:
    a, b = kernels
    seen_a: list[Event] = []
    a.bus.subscribe("*", seen_a.append)
    with b.engine.begin() as conn:  # cut A's LISTEN connection, as a network blip or restart would
        killed = conn.execute(
            sa.text(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND query LIKE 'LISTEN%' AND pid <> pg_backend_pid()"
            )
        ).all()
    assert len(killed) == 2  # A's and B's listeners
    user = accounts.create_user("gap@example.com", ws=b)  # committed while A is away
    for i in range(5):
        sessions.create_session(user, name=f"during the gap {i}", ws=b)
    created = lambda: [e.payload["session_id"] for e in seen_a if e.type == "session_created"]  # noqa: E731
    assert wait_until(lambda: len(set(created())) == 5)
    assert a._bridge is not None and a._bridge.reconnects >= 1
    time.sleep(0.3)
    assert len(created()) == 2 * 5  # once each (on the session's topic and on the user's)


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_an_approval_decided_here_wakes_the_agent_waiting_in_another_process(
    ws: Workspace, db_url: str, home_dir: Path
) -> None:
    """The child polls nothing (CMDC_TEST_EVENTS_ONLY): only the event of this process's decision,
    arriving through the database, can resume its turn."""
    import kernel_children  # tests/ is on sys.path

    user = accounts.create_user("team@example.com", ws=ws)
    session = sessions.create_session(user, name="team", ws=ws)
    tool_use_id, out = kernel_children.approve_from_here(ws, db_url, str(home_dir), session, events_only=True)
    assert "REPLY Deployed." in out, out
    assert agents.get_tool_use(tool_use_id, ws=ws).status == "completed"


def test_sharing_is_on_by_default_on_postgresql_only(db_url: str, home_dir: Path, backend: str) -> None:
    """On SQLite one kernel is the usual case; `share_events=True` turns the (polling) bridge on, and
    the tests above run both ways."""
    ws = cmdc_nb.connect(db_url, home=home_dir, make_default=False)
    try:
        assert ws.shares_events is (backend == "postgresql")
    finally:
        ws.close()


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
async def test_presence_and_activity_from_another_kernel_show_up_live(
    kernels: tuple[Workspace, Workspace],
) -> None:
    """Grace opens Ada's session in her kernel and writes in it: Ada's ActivityFeed, in the other
    kernel, redraws by itself — nothing in Ada's kernel changed, only the events arrived."""
    import asyncio

    from cmdc_nb import presence
    from cmdc_nb.widgets import ActivityFeed

    a, b = kernels
    ada = accounts.create_user("ada@example.com", name="Ada", ws=a)
    grace = accounts.create_user("grace@example.com", name="Grace", ws=b)
    room = sessions.create_session(ada, name="Release room", ws=a)
    sessions.share_session(room, with_users=[grace], ws=a)
    b.act_as(grace)  # Grace's kernel acts for her: what she does is logged as hers
    feed = ActivityFeed(session=room, ws=a)
    assert "nobody else here" in feed.badges.value
    presence.join_resource(grace, "session", room.id, client_id="grace-laptop", ws=b)
    sessions.create_message(room, role="user", content="ready when you are", ws=b)
    for _ in range(int(LIVENESS * 20)):
        if "Grace" in feed.badges.value and any(e.action == "message.create" for e in feed.entries):
            break
        await asyncio.sleep(0.05)
    assert "● Grace" in feed.badges.value
    assert feed.entries[0].action == "message.create" and "Grace" in feed.table.value
    feed.close()


@pytest.mark.parametrize("backend", ["postgresql"])
def test_a_password_with_spaces_connects_the_listener_and_never_reaches_a_log(
    db_url: str, home_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """The listener connects with the engine's own arguments: libpq, handed a URL it cannot parse (a
    password with a space), quoted it — password included — in the error the bridge logged on every
    reconnect. (The test server trusts loopback, so any password connects.)"""
    from urllib.parse import quote

    from cmdc_nb._plumbing.event_bridge import EventBridge
    from cmdc_nb.events._bus import EventBus

    secret = "p@ss w:rd/#1"
    url = sa.make_url(db_url).set(password=secret)
    engine = sa.create_engine(url)
    with caplog.at_level("DEBUG", logger="cmdc_nb"):
        bridge = EventBridge(engine, EventBus())
        try:
            assert bridge.wait_connected() and bridge.reconnects == 0
            said = bridge._said(
                RuntimeError(f"could not connect: 'password={secret}' {quote(secret, safe='')}\nmore")
            )
        finally:
            bridge.close()
            engine.dispose()
    assert said == "could not connect: 'password=***' ***"
    assert not [
        r for r in caplog.records if secret in r.getMessage() or quote(secret, safe="") in r.getMessage()
    ]


def test_the_events_of_one_transaction_cross_in_their_order_with_ids_in_that_order(
    kernels: tuple[Workspace, Workspace],
) -> None:
    """A transaction with several events (a stored agent round writes seven) logs them in one statement
    on PostgreSQL: the other kernel gets them all, once, in the order they were published."""
    a, b = kernels
    seen_a: list[Event] = []
    a.bus.subscribe("test:*", seen_a.append)
    with b.transaction() as tx:
        for i in range(7):
            tx.publish("test:order", "numbered", {"i": i, "note": f"event {i}"})
    assert wait_until(lambda: len(seen_a) >= 7)
    time.sleep(0.3)
    assert [e.payload["i"] for e in seen_a] == list(range(7))
    with b.engine.connect() as conn:
        batches = [x for x in event_log.read_after(conn, 0) if any(t == "test:order" for t, _, _ in x.events)]
    assert len(batches) == 1  # the transaction's events are one row of the log
    assert [p["i"] for _, _, p in batches[0].events] == list(range(7))  # in publishing order


@pytest.mark.parametrize("backend", [pytest.param("postgresql", marks=pytest.mark.postgres)], indirect=True)
def test_a_stream_of_commits_is_read_in_fewer_reads_and_arrives_whole_and_in_order(
    kernels: tuple[Workspace, Workspace], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A listener reads at most every `COALESCE_S` under a stream of notifications (idle workers
    reading once a commit took a third of a 2-core machine): 100 commits at once reach the other kernel
    in far fewer reads, every event once, in commit order; an event after a quiet spell still comes at
    once (the liveness bound of the other tests)."""
    a, b = kernels
    assert a._bridge is not None
    reads: list[int] = []
    real = event_log.read_after

    def counted(conn: sa.Connection, after: int, **kw: Any) -> list[event_log.LoggedBatch]:
        got = real(conn, after, **kw)
        if got and kw.get("skip_origin") == a._bridge.origin:  # type: ignore[union-attr]
            reads.append(len(got))
        return got

    monkeypatch.setattr(event_log, "read_after", counted)
    seen: list[Event] = []
    a.bus.subscribe("test:*", seen.append)
    for i in range(100):
        with b.transaction() as tx:
            tx.publish("test:stream", "numbered", {"i": i})
    assert wait_until(lambda: len(seen) >= 100)
    time.sleep(0.3)
    assert [e.payload["i"] for e in seen] == list(range(100))
    assert sum(reads) >= 100 and len(reads) < 50, reads  # batches of commits per read, not one each


@pytest.mark.parametrize("backend", ["postgresql"])  # SQLite has no notifications: its listener polls
def test_a_stream_of_our_own_commits_wakes_our_listener_in_batches_and_others_still_arrive(
    kernels: tuple[Workspace, Workspace], monkeypatch: pytest.MonkeyPatch, backend: str
) -> None:
    """Our own commits' notifications need no read, but each woke the listener thread, which took the
    GIL from the threads doing the work (a workflow's steps). Under a stream of them it now listens
    again after a pause (`COALESCE_S`) and takes what came meanwhile at once; another kernel's event
    in the middle of the stream still arrives, once."""
    import psycopg

    from cmdc_nb._plumbing import event_bridge

    # A pause far longer than the stream takes, on any machine: one wake-up a commit would be ≈100
    # waits, batches are a handful — whatever a commit costs under load.
    monkeypatch.setattr(event_bridge, "COALESCE_S", 1.0)
    a, b = kernels
    assert a._bridge is not None
    waits: list[int] = []
    real = psycopg.Connection.notifies

    def counted(self: Any, *args: Any, **kw: Any) -> Any:
        if threading.current_thread() is a._bridge._thread:  # type: ignore[union-attr]
            waits.append(1)
        return real(self, *args, **kw)

    monkeypatch.setattr(psycopg.Connection, "notifies", counted)
    seen: list[Event] = []
    a.bus.subscribe("test:*", seen.append)
    for i in range(100):
        with a.transaction() as tx:
            tx.publish("test:own", "numbered", {"i": i})
        if i == 50:
            with b.transaction() as tx:
                tx.publish("test:theirs", "hello", {})
    assert wait_until(lambda: any(e.topic == "test:theirs" for e in seen))
    time.sleep(0.3)
    assert [e.payload["i"] for e in seen if e.topic == "test:own"] == list(range(100))  # ours: at commit
    assert sum(e.topic == "test:theirs" for e in seen) == 1
    assert len(waits) < 25, len(waits)  # not a wake-up per commit
