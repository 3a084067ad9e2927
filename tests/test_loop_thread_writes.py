"""A stored round's writes on SQLite run on the event loop's own thread when they can start at once,
and go to a worker thread when another connection holds the write lock: the notebook's loop never
waits for another process. On PostgreSQL they always run on a thread."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import accounts, agents, sessions
from cmdc_nb._plumbing.workspace import WouldWait
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.store._engine import BUSY_TIMEOUT_MS
from cmdc_nb.store.models import Session
from cmdc_nb.workspace import Workspace


@tool
def double(n: int) -> int:
    """Double n."""
    return 2 * n


def _threads_writing_calls(ws: Workspace) -> list[int]:
    """The thread of every statement that stores an agent call, as they run."""
    seen: list[int] = []

    @sa.event.listens_for(ws.engine, "before_cursor_execute")
    def _seen(_c: Any, _cur: Any, statement: str, *_a: Any) -> None:
        # PostgreSQL stores a completed call in one call of `cmdc_record_call` (migration 0016), or
        # of `cmdc_record_call_logged` as a statement of its own (0017)
        if (
            statement.lstrip().upper().startswith("INSERT INTO AGENT_CALLS")
            or "cmdc_record_call(" in statement
            or "cmdc_record_call_logged(" in statement
        ):
            seen.append(threading.get_ident())

    return seen


async def test_a_rounds_writes_run_on_the_loop_thread_on_sqlite_and_on_a_thread_on_postgresql(
    ws: Workspace, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On PostgreSQL a write either goes from the loop itself as one statement on its async connection
    (`Workspace.async_statement`: the loop waits on the socket, never blocked) or, through SQLAlchemy,
    on a worker thread — never a blocking statement on the loop's thread."""
    from cmdc_nb._plumbing.statements import Statement

    seen = _threads_writing_calls(ws)
    sent_async: list[int] = []
    execute = Statement.execute

    async def watched(self: Statement, prepared: Any, params: Any) -> Any:
        sent_async.append(threading.get_ident())
        return await execute(self, prepared, params)

    monkeypatch.setattr(Statement, "execute", watched)
    script = Script([Turn(tool_calls=[call("double", n=k)]) for k in range(3)] + ["done"])
    agent = Agent(model=script.model, tools=[double], session=session, ws=ws)
    assert await agent.prompt("double three numbers") == "done"

    loop_thread = threading.get_ident()
    calls = agents.list_agent_calls(session, ws=ws).entries
    assert len(calls) == 4 and {c.status.value for c in calls} == {"completed"}  # every call stored once
    if ws.backend == "sqlite":
        assert len(seen) == 4 and set(seen) == {loop_thread}
        assert sent_async == []
    else:  # a statement there may wait on a row lock or the network: never blocking the loop's thread
        assert loop_thread not in seen
        assert sent_async and set(sent_async) == {loop_thread}  # sent from the loop, awaited as I/O
        with pytest.raises(WouldWait), ws.transaction(wait=False):
            pytest.fail("PostgreSQL has no transaction that cannot wait")
    assert [m.role.value for m in sessions.list_messages(session, ws=ws).entries].count("tool_result") == 3


@pytest.fixture
def sqlite_ws(tmp_path: Path) -> Any:
    ws = cmdc_nb.connect(f"sqlite:///{tmp_path}/loop.db")
    yield ws
    ws.close()


def _hold_write_lock(ws: Workspace) -> sqlite3.Connection:
    """Another process's writer, as SQLite sees it: a connection of its own holding the write lock."""
    other = sqlite3.connect(str(ws.engine.url.database), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    return other


def test_a_transaction_that_must_not_wait_refuses_before_doing_anything(sqlite_ws: Workspace) -> None:
    user = accounts.create_user("a@example.com", ws=sqlite_ws)
    other = _hold_write_lock(sqlite_ws)
    ran = False
    with pytest.raises(WouldWait), sqlite_ws.transaction(wait=False):
        ran = True
    assert not ran  # refused before the body: nothing to undo
    other.rollback()
    other.close()

    # The connection it tried goes back to the pool still willing to wait, and the write lock is free.
    with sqlite_ws.transaction(wait=False) as tx:
        assert tx.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
        sessions.create_session(user, name="after", ws=sqlite_ws)
    with sqlite_ws.transaction() as tx:
        assert tx.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
    assert [s.name for s in sessions.list_sessions(user=user, ws=sqlite_ws).entries] == ["after"]


def test_a_transaction_that_must_not_wait_refuses_while_another_thread_of_this_process_writes(
    sqlite_ws: Workspace,
) -> None:
    inside, leave = threading.Event(), threading.Event()

    def writer() -> None:
        with sqlite_ws.transaction():
            inside.set()
            leave.wait(10)

    t = threading.Thread(target=writer)
    t.start()
    try:
        assert inside.wait(10)
        with pytest.raises(WouldWait), sqlite_ws.transaction(wait=False):
            pytest.fail("began while another thread held the write lock")
    finally:
        leave.set()
        t.join(10)


async def test_an_agent_keeps_the_loop_free_while_another_process_holds_the_database(
    sqlite_ws: Workspace,
) -> None:
    user = accounts.create_user("b@example.com", ws=sqlite_ws)
    session = sessions.create_session(user, name="held", ws=sqlite_ws)
    seen = _threads_writing_calls(sqlite_ws)
    held: list[sqlite3.Connection] = []

    def respond(messages: list[dict[str, Any]]) -> Turn | str:
        if held:
            return "done"
        held.append(_hold_write_lock(sqlite_ws))  # taken as the model answers: its write finds it taken
        return Turn(tool_calls=[call("double", n=1)])

    script = Script(respond)
    agent = Agent(model=script.model, tools=[double], session=session, ws=sqlite_ws)
    run = asyncio.ensure_future(agent.prompt("double one"))
    # The loop runs this while the agent's first write waits for the lock: were it waiting on the
    # loop's thread, nothing here would run until SQLite's busy timeout failed the write.
    waited = 0
    while not seen and not run.done():
        await asyncio.sleep(0.01)
        waited += 1 if held else 0
        if waited == 5:  # the call was answered and its write is waiting: let the other writer go
            assert seen == []
            held[0].rollback()
            held[0].close()
    assert await asyncio.wait_for(run, 30) == "done"

    loop_thread = threading.get_ident()
    assert seen[0] != loop_thread  # the write that found the lock taken went to a thread and waited
    assert seen[-1] == loop_thread  # the next, with the lock free, ran on the loop's own thread
    calls = agents.list_agent_calls(session, ws=sqlite_ws).entries
    assert [c.status.value for c in calls] == ["completed", "completed"]


def _driver_of(tx: Any) -> sqlite3.Connection:
    raw = tx.connection().connection.driver_connection
    assert isinstance(raw, sqlite3.Connection)
    return raw


def test_transactions_that_must_not_wait_keep_one_connection_until_an_error(sqlite_ws: Workspace) -> None:
    user = accounts.create_user("k@example.com", ws=sqlite_ws)
    checkouts: list[object] = []
    sa.event.listen(sqlite_ws.engine, "checkout", lambda *a: checkouts.append(a[0]))
    with sqlite_ws.transaction(wait=False, light=True) as tx:
        first = _driver_of(tx)
    assert len(checkouts) == 1
    for _ in range(3):
        with sqlite_ws.transaction(wait=False, light=True) as tx:
            assert _driver_of(tx) is first
    assert len(checkouts) == 1  # kept: no pool checkout (and checkin) per transaction

    with pytest.raises(RuntimeError), sqlite_ws.transaction(wait=False, light=True) as tx:
        assert _driver_of(tx) is first
        sessions.create_session(user, name="undone", ws=sqlite_ws)
        raise RuntimeError("boom")
    # rolled back, and the connection went back to the pool: the next takes one afresh, and waits
    # for the lock as any pooled connection would
    with sqlite_ws.transaction(wait=False, light=True) as tx:
        again = _driver_of(tx)
        assert tx.connection().exec_driver_sql("PRAGMA busy_timeout").scalar() == BUSY_TIMEOUT_MS
    assert sessions.list_sessions(user=user, ws=sqlite_ws).entries == []

    sqlite_ws.close()
    with pytest.raises(sqlite3.ProgrammingError):  # closed with the workspace, not left open
        again.execute("SELECT 1")


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_never_uses_its_parents_kept_connection(sqlite_ws: Workspace) -> None:
    user = accounts.create_user("f@example.com", ws=sqlite_ws)
    with sqlite_ws.transaction(wait=False, light=True) as tx:
        parents = id(_driver_of(tx))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one write of its own, then report which connection it used
        code = 1
        try:
            with sqlite_ws.transaction(wait=False, light=True) as tx:
                mine = id(_driver_of(tx))
                sessions.create_session(user, name="child", ws=sqlite_ws)
            os.write(write, b"same" if mine == parents else b"own")
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    said = os.read(read, 16)
    os.close(read)
    assert os.WEXITSTATUS(status) == 0
    assert said == b"own"
    with sqlite_ws.transaction(wait=False, light=True) as tx:  # the parent's is still its own, and works
        assert id(_driver_of(tx)) == parents
    assert [s.name for s in sessions.list_sessions(user=user, ws=sqlite_ws).entries] == ["child"]


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_opens_connections_of_its_own_and_the_parents_still_work(ws: Workspace) -> None:
    """On both backends: a child forked from a process with pooled connections never talks over its
    parent's (on PostgreSQL two processes on one socket would garble both sides' protocol), and the
    parent's go on working after the child wrote and exited."""
    user = accounts.create_user("pf@example.com", ws=ws)
    with ws.transaction(light=True) as tx:
        parents = id(tx.connection().connection.driver_connection)
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: one write of its own, then report which connection it used
        code = 1
        try:
            with ws.transaction(light=True) as tx:
                mine = id(tx.connection().connection.driver_connection)
                sessions.create_session(user, name="child", ws=ws)
            os.write(write, b"same" if mine == parents else b"own")
            code = 0
        finally:
            os._exit(code)
    os.close(write)
    _, status = os.waitpid(pid, 0)
    said = os.read(read, 16)
    os.close(read)
    assert os.WEXITSTATUS(status) == 0
    assert said == b"own"
    for name in ("parent", "again"):  # the parent's pooled connections: still its own, still working
        sessions.create_session(user, name=name, ws=ws)
    names = sorted(s.name for s in sessions.list_sessions(user=user, ws=ws).entries)
    assert names == ["again", "child", "parent"]


def test_closing_the_workspace_mid_transaction_lets_that_transaction_finish(sqlite_ws: Workspace) -> None:
    user = accounts.create_user("c@example.com", ws=sqlite_ws)
    with sqlite_ws.transaction(wait=False, light=True):
        sessions.create_session(user, name="finished", ws=sqlite_ws)
        sqlite_ws.close()  # e.g. from another thread: the connection in use is not pulled away
    assert sqlite_ws._kept is None  # given back as the transaction ended, not kept
    with pytest.raises(cmdc_nb.errors.ConfigurationError):
        sqlite_ws.transaction(wait=False, light=True).__enter__()
    again = cmdc_nb.connect(str(sqlite_ws.engine.url))
    try:
        assert [s.name for s in sessions.list_sessions(user=user, ws=again).entries] == ["finished"]
    finally:
        again.close()
