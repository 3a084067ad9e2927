"""On PostgreSQL a stored round's writes go as one statement each when they can (migration 0017):
`rounds.write_call` and `rounds.write_tool_end` send the function on an autocommit connection, and the
function appends the write's events to the shared log itself, encoded with the message sequence the
writer predicted. What they store, publish on the bus and log for other processes is what the
transaction's path stores, publishes and logs — compared here on the same cases — and when the
prediction is wrong (someone else added a message, a summary row was rebuilt) nothing is kept and the
transaction's path stores it instead."""

from __future__ import annotations

import asyncio
import threading
import time
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb.errors import InvalidStateError, StorageError
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.providers._offline import provider_messages
from cmdc_nb.services.agents import round_statements, rounds
from cmdc_nb.store import _engine as engine_module
from cmdc_nb.store import event_log
from cmdc_nb.store._engine import WouldWait
from cmdc_nb.store.models import CostDailySummary, Session, ToolUse, User
from cmdc_nb.workspace import Workspace
from tests.test_pg_round_functions import DONE, _rows_as_stored


@tool
def noop(i: int) -> int:
    """Return i."""
    return i


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _draft(session: Session, user: User, **kw: Any) -> rounds.CallDraft:
    fields: dict[str, Any] = dict(
        session_id=session.id, user_id=user.id, model="scripted/x", provider="scripted",
        prompt_messages=[{"role": "user", "content": "hi"}], system_prompt="Be brief.", temperature=0.5,
        max_tokens=64, tools_provided=["t"], meta={"cell": "c1", "ü": [1, None]},
    )  # fmt: skip
    return rounds.CallDraft(**{**fields, **kw})


def _tool(i: int = 0) -> rounds.NewToolUse:
    return rounds.NewToolUse(
        tool_name="t", tool_use_id=f"call_{i}", input={"n": i, "s": 'q"\\'}, meta={}, sequence=i + 1
    )


def _reply(draft: rounds.CallDraft, text: str) -> rounds.NewMessage:
    return rounds.NewMessage(role="assistant", content=text, agent_call_id=draft.id,
                             content_blocks=[{"type": "text", "text": text[:5]}], meta={"k": "v"})  # fmt: skip


class Watch:
    """What a workspace runs, publishes on its bus and appends to the shared log."""

    def __init__(self, ws: Workspace) -> None:
        self.ws = ws
        self.statements: list[str] = []
        self.events: list[tuple[str, str, dict[str, Any]]] = []
        sa.event.listen(ws.engine, "before_cursor_execute", lambda *a: self.statements.append(a[2]))
        ws.bus.subscribe("*", lambda e: self.events.append((e.topic, e.type, dict(e.payload))))
        self.log_from = self._last_log_id()

    def _last_log_id(self) -> int:
        with self.ws.engine.connect() as conn:
            return event_log.last_id(conn)

    def reset(self) -> None:
        self.log_from = self._last_log_id()
        self.statements.clear()
        self.events.clear()

    def logged(self) -> list[list[tuple[str, str, dict[str, Any]]]]:
        """The log's batches since the last reset, oldest first."""
        with self.ws.engine.connect() as conn:
            return [b.events for b in event_log.read_after(conn, self.log_from)]

    @property
    def one_statement(self) -> bool:
        return any("_logged(" in s for s in self.statements)


def _same(
    events: list[tuple[str, str, dict[str, Any]]], names: dict[str, str]
) -> list[tuple[str, str, dict[str, Any]]]:
    """Events with the ids that differ between two runs named, and the volatile fields left out."""

    def named(text: str) -> str:
        for real, name in names.items():
            text = text.replace(real, name)
        return text

    out = []
    for topic, type_, payload in events:
        kept = {k: named(str(v)) for k, v in payload.items() if not k.endswith("_id") and k != "duration_ms"}
        out.append((named(topic), type_, kept))
    return out


@pytest.mark.parametrize(
    "case",
    [
        pytest.param({"text": "ok", "tools": 1, "cost": None}, id="unpriced-reply-and-a-tool"),
        pytest.param({"text": None, "tools": 2, "cost": None}, id="no-message-two-tools"),
        pytest.param({"text": 'quotes " \\ ü 🙂 \u2028', "tools": 0, "cost": None}, id="escapes"),
        pytest.param({"text": "x" * 40_000, "tools": 1, "cost": None}, id="long"),
    ],
)
def test_one_statement_stores_publishes_and_logs_what_a_transaction_does(
    ws: Workspace, case: dict[str, Any]
) -> None:
    watch = Watch(ws)
    results = {}
    for path in ("transaction", "statement", "async"):
        user = cmdc_nb.accounts.create_user(f"{path}@example.com", name="U", ws=ws)
        session = cmdc_nb.sessions.create_session(user, name="one", ws=ws)
        cmdc_nb.sessions.create_message(session, role="user", content="hi", ws=ws)  # sequence 1
        assert not rounds.budgets_apply(user.id, session.id, ws=ws)  # asked once, remembered
        watch.reset()
        draft = _draft(session, user)
        message = _reply(draft, case["text"]) if case["text"] is not None else None
        tools = [_tool(i) for i in range(case["tools"])]
        done = dict(DONE, response_content=case["text"], cost_usd=case["cost"])
        if path == "transaction":
            with ws.transaction(light=True) as tx:
                seq = rounds.record_call_in(tx, draft, done, None, cell="c", message=message, tool_uses=tools)
        elif path == "statement":
            seq = rounds.write_call(
                draft, done, None, cell="c", message=message, tool_uses=tools, expect_seq=2, ws=ws
            )
        else:  # sent from an event loop on its own async connection: no SQLAlchemy statement at all
            plan = round_statements.plan_call(ws, draft, done, None, "c", message, tools, 2, may_read=False)
            assert plan is not None
            seq = asyncio.run(round_statements.run_async(ws, plan))
            assert watch.statements == []
        assert watch.one_statement == (path == "statement")
        if path == "statement":
            assert len(watch.statements) == 1  # no BEGIN, no append, no COMMIT: the one round trip
        names = {str(session.id): "S", str(user.id): "U", str(draft.id): "C"}
        logged = watch.logged()
        assert len(logged) == 1  # the write's events, one batch in the shared log
        results[path] = (
            seq,
            _rows_as_stored(ws, user.id, [session.id]),
            _same(watch.events, names),
            _same(logged[0], names),
        )
    assert results["statement"] == results["transaction"] == results["async"]
    seq, stored, events, logged = results["statement"]
    assert seq == (2 if case["text"] is not None else None)
    assert events == logged  # the log holds what the bus published
    if case["text"] is not None:
        assert next(e for e in events if e[1] == "message_created")[2]["sequence"] == "2"
        assert stored["messages"][-1][0]["content"] == case["text"]
    assert len(stored["tool_uses"]) == case["tools"]


def _executing(ws: Workspace, user: User, name: str) -> tuple[Session, rounds.CallDraft, rounds.NewToolUse]:
    session = cmdc_nb.sessions.create_session(user, name=name, ws=ws)
    draft = _draft(session, user)
    tool = _tool()
    seq = rounds.write_call(draft, dict(DONE, cost_usd=None), None, cell=None, message=_reply(draft, "ok"),
                            tool_uses=[tool], expect_seq=1, ws=ws)  # fmt: skip
    assert seq == 1
    return session, draft, tool


END_CASES = [
    pytest.param({"output": "done", "error": None, "content": "done ü"}, id="completed"),
    pytest.param({"output": "done", "error": None, "content": None}, id="completed-no-message"),
    pytest.param(
        {"output": None, "error": ("ValueError", "bad 'n'", False), "content": "failed"}, id="failed"
    ),
    pytest.param(
        {"output": None, "error": ("TimeoutError", "late", True), "content": "late"}, id="timed-out"
    ),
]


@pytest.mark.parametrize("case", END_CASES)
def test_a_tool_end_in_one_statement_is_the_transactions_end(ws: Workspace, case: dict[str, Any]) -> None:
    watch = Watch(ws)
    results = {}
    for path in ("transaction", "statement", "async"):
        user = cmdc_nb.accounts.create_user(f"{path}@example.com", name="U", ws=ws)
        session, draft, tool = _executing(ws, user, "one")
        watch.reset()  # (`_executing` asked whether a budget applies)
        message = None
        if case["content"] is not None:
            message = rounds.NewMessage(
                role="tool_result", content=case["content"], meta={"n": [1]}, tool_use_id=tool.id
            )
        args = (tool, draft.id, session.id, user.id, draft.started_at)
        kw = {"output": case["output"], "error": case["error"], "message": message}
        if path == "transaction":
            with ws.transaction(light=True) as tx:
                seq = rounds.record_tool_end_in(tx, *args, **kw)
        elif path == "statement":
            seq = rounds.write_tool_end(*args, **kw, expect_seq=2, ws=ws)
            assert watch.one_statement and len(watch.statements) == 1
        else:
            plan = round_statements.plan_tool_end(
                ws, tool, draft.id, session.id, draft.started_at, case["output"], case["error"], message, 2
            )
            assert plan is not None
            seq = asyncio.run(round_statements.run_async(ws, plan))
            assert watch.statements == []
        names = {str(session.id): "S", str(user.id): "U", str(draft.id): "C", str(tool.id): "T"}
        logged = watch.logged()
        assert len(logged) == 1
        results[path] = (
            seq,
            _rows_as_stored(ws, user.id, [session.id]),
            _same(watch.events, names),
            _same(logged[0], names),
        )
    for other in ("statement", "async"):
        for a, b in zip(results[other], results["transaction"], strict=True):
            if a != b and isinstance(a, dict):
                for t in a:
                    assert a[t] == b[t], (other, t)
            assert a == b, other
    seq, stored, events, logged = results["statement"]
    assert events == logged
    assert seq == (2 if case["content"] is not None else None)
    assert stored["tool_uses"][0][0]["status"] in ("completed", "failed", "timeout")


def test_a_wrong_prediction_keeps_nothing_and_the_transaction_stores_it(ws: Workspace, user: User) -> None:
    """Someone else's message between two writes: the statement finds sequence 3, not the 2 its events
    say; it keeps nothing (no row, no log batch) and the transaction's path stores the call, its events
    with the sequence it really took."""
    session = cmdc_nb.sessions.create_session(user, name="busy", ws=ws)
    cmdc_nb.sessions.create_message(session, role="user", content="mine", ws=ws)
    cmdc_nb.sessions.create_message(session, role="user", content="someone else's", ws=ws)
    watch = Watch(ws)
    draft, tool = _draft(session, user), _tool()
    seq = rounds.write_call(draft, dict(DONE, cost_usd=None), None, cell=None, message=_reply(draft, "ok"),
                            tool_uses=[tool], expect_seq=2, ws=ws)  # fmt: skip
    assert seq == 3
    assert watch.one_statement  # tried first, then the transaction's function
    assert any("cmdc_record_call(" in s for s in watch.statements)
    stored = _rows_as_stored(ws, user.id, [session.id])
    assert [m[0]["sequence"] for m in stored["messages"]] == [1, 2, 3]
    assert (
        len(stored["agent_calls"]) == 1 and len(stored["tool_uses"]) == 1 and len(stored["cost_records"]) == 1
    )
    published = [p["sequence"] for _t, ty, p in watch.events if ty == "message_created"]
    logged = watch.logged()
    assert published == [3]
    assert len(logged) == 1 and [p["sequence"] for _t, ty, p in logged[0] if ty == "message_created"] == [3]
    assert stored["sessions"][0][0]["message_count"] == 3

    # the tool's end likewise
    cmdc_nb.sessions.create_message(session, role="user", content="and again", ws=ws)  # sequence 4
    watch.reset()
    result = rounds.NewMessage(role="tool_result", content="1", tool_use_id=tool.id)
    seq = rounds.write_tool_end(
        tool, draft.id, session.id, user.id, draft.started_at, output="1", error=None, message=result,
        expect_seq=4, ws=ws,
    )  # fmt: skip
    assert seq == 5
    assert [p["sequence"] for _t, ty, p in watch.events if ty == "message_created"] == [5]
    assert [[p["sequence"] for _t, ty, p in b if ty == "message_created"] for b in watch.logged()] == [[5]]


def test_a_free_call_goes_in_one_statement_once_its_summary_holds_its_keys(ws: Workspace, user: User) -> None:
    """A $0 call leaves the summary's maps alone only once the row holds its keys: the first calls of a
    session take the transaction (which adds them); a row made anew meanwhile (a new id) is caught by
    the server and takes the transaction again, whose maps are then right."""
    session = cmdc_nb.sessions.create_session(user, name="free", ws=ws)
    watch = Watch(ws)
    paths = []
    for _ in range(4):
        watch.reset()
        draft = _draft(session, user)
        rounds.write_call(draft, dict(DONE, cost_usd=Decimal(0)), None, cell=None, ws=ws)
        paths.append(watch.one_statement and len(watch.statements) == 1)
    assert paths[0] is False and paths[-1] is True
    with ws.transaction() as tx:  # the row deleted (by hand, say): the next call's makes a new one
        tx.connection().execute(sa.delete(CostDailySummary).where(CostDailySummary.user_id == user.id))
    watch.reset()
    draft = _draft(session, user)
    rounds.write_call(draft, dict(DONE, cost_usd=Decimal(0)), None, cell=None, ws=ws)
    assert watch.one_statement and any("cmdc_record_call(" in s for s in watch.statements)  # caught: redone
    summary = _rows_as_stored(ws, user.id, [session.id])["cost_daily_summaries"]
    assert len(summary) == 1 and summary[0][0]["total_requests"] == 1
    assert summary[0][0]["cost_by_session"] == {"S0": "0"}  # the maps the transaction's path keeps
    assert len(watch.logged()) == 1


def test_refusals_keep_nothing_and_publish_nothing(ws: Workspace, user: User) -> None:
    session, draft, tool = _executing(ws, user, "archived")
    before = _rows_as_stored(ws, user.id, [session.id])
    cmdc_nb.sessions.update_session_status(session, "archived", ws=ws)
    watch = Watch(ws)
    d2 = _draft(session, user)
    with pytest.raises(InvalidStateError, match="archived"):
        rounds.write_call(
            d2, dict(DONE, cost_usd=None), None, cell=None, message=_reply(d2, "no"), expect_seq=2, ws=ws
        )
    with pytest.raises(InvalidStateError, match="archived"):
        rounds.write_tool_end(
            tool, draft.id, session.id, user.id, draft.started_at, output="x", error=None,
            message=rounds.NewMessage(role="tool_result", content="x", tool_use_id=tool.id), expect_seq=2, ws=ws,
        )  # fmt: skip
    after = _rows_as_stored(ws, user.id, [session.id])
    assert {t: r for t, r in after.items() if t not in ("sessions", "activity_logs")} == {
        t: r for t, r in before.items() if t not in ("sessions", "activity_logs")
    }
    assert watch.events == [] and watch.logged() == []

    session, draft, tool = _executing(ws, user, "cancelled")
    with ws.transaction() as tx:
        tx.connection().execute(sa.update(ToolUse).where(ToolUse.id == tool.id).values(status="cancelled"))
    watch.reset()
    with pytest.raises(InvalidStateError, match="not executing"):
        rounds.write_tool_end(tool, draft.id, session.id, user.id, draft.started_at, output="x", error=None,
                              message=None, ws=ws)  # fmt: skip
    assert watch.events == [] and watch.logged() == []
    # and the kept connection still serves the next write
    d3 = _draft(session, user)
    assert (
        rounds.write_call(
            d3, dict(DONE, cost_usd=None), None, cell=None, message=_reply(d3, "ok"), expect_seq=2, ws=ws
        )
        == 2
    )


def test_inside_a_transaction_it_is_part_of_it(ws: Workspace, user: User) -> None:
    session = cmdc_nb.sessions.create_session(user, name="joined", ws=ws)
    draft = _draft(session, user)
    with pytest.raises(RuntimeError, match="changed my mind"), ws.transaction():
        rounds.write_call(
            draft, dict(DONE, cost_usd=None), None, cell=None, message=_reply(draft, "x"), expect_seq=1, ws=ws
        )
        raise RuntimeError("changed my mind")
    assert _rows_as_stored(ws, user.id, [session.id])["agent_calls"] == []  # rolled back with it
    with pytest.raises(TypeError), ws.transaction(), ws.statement():
        pass


def test_the_kept_connection_survives_a_lost_backend(
    ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server drops the kept connection (a restart, an idle timeout): a write after it sat idle
    pings it first and reconnects; one sent at once fails cleanly, and the next gets a new one."""
    session = cmdc_nb.sessions.create_session(user, name="lost", ws=ws)
    seq = 0

    def write() -> int | None:
        nonlocal seq
        draft = _draft(session, user)
        found = rounds.write_call(draft, dict(DONE, cost_usd=None), None, cell=None, message=_reply(draft, "x"),
                                  expect_seq=seq + 1 if seq else None, ws=ws)  # fmt: skip
        seq = found or seq
        return found

    def kill_kept() -> None:
        kept = ws._statements._conn
        assert kept is not None
        pid = kept.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
        with ws.engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        time.sleep(0.2)

    assert write() == 1 and write() == 2
    kill_kept()
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)  # it sat idle: pinged, replaced
    assert write() == 3
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 3600.0)
    kill_kept()
    with pytest.raises(StorageError):  # sent at once on the dead connection
        write()
    assert write() == 4  # nothing was kept by the failed one; the next has a new connection
    assert [m[0]["sequence"] for m in _rows_as_stored(ws, user.id, [session.id])["messages"]] == [1, 2, 3, 4]


def test_another_process_gets_the_events_with_the_sequence(
    ws: Workspace, user: User, db_url: str, home_dir: Any
) -> None:
    other = cmdc_nb.connect(db_url, home=home_dir, make_default=False, share_events=True)
    try:
        assert other._bridge is not None and other._bridge.wait_connected(10)
        got: list[tuple[str, dict[str, Any]]] = []
        arrived = threading.Event()

        def seen(e: Any) -> None:
            got.append((e.type, dict(e.payload)))
            if e.type == "tool_use_completed":
                arrived.set()

        other.bus.subscribe("*", seen)
        session, draft, tool = _executing(ws, user, "shared")
        result = rounds.NewMessage(role="tool_result", content="42", tool_use_id=tool.id)
        rounds.write_tool_end(tool, draft.id, session.id, user.id, draft.started_at, output="42", error=None,
                              message=result, expect_seq=2, ws=ws)  # fmt: skip
        assert arrived.wait(15)
        time.sleep(0.3)
        created = [(p["sequence"], p["content"]) for t, p in got if t == "message_created"]
        assert created == [(1, "ok"), (2, "42")]
        assert [t for t, _ in got].count("agent_call_completed") == 1
    finally:
        other.close()


def test_the_functions_log_under_the_logs_own_lock_and_channel() -> None:
    from importlib import import_module

    m = import_module("cmdc_nb.store.migrations.versions.0017_pg_logged_round_functions")
    assert f"pg_advisory_xact_lock({event_log._LOCK_KEY})" in m.LOG
    assert f"pg_notify('{event_log.CHANNEL}', origin)" in m.LOG


def test_not_on_sqlite(tmp_path: Any) -> None:
    lite = cmdc_nb.connect(f"sqlite:///{tmp_path}/x.db", home=tmp_path, make_default=False)

    async def from_a_loop() -> None:
        async with lite.async_statement():
            pytest.fail("PostgreSQL's")

    try:
        with pytest.raises(TypeError), lite.statement():
            pass
        with pytest.raises(TypeError):
            asyncio.run(from_a_loop())
    finally:
        lite.close()


# -- from an event loop: `Workspace.async_statement` ------------------------------------------------


def _plan(ws: Workspace, session: Session, user: User, seq: int | None, text: str = "x") -> Any:
    assert rounds.budgets_apply(user.id, session.id, ws=ws) is False  # remembered: a loop never reads it
    draft = _draft(session, user)
    plan = round_statements.plan_call(
        ws, draft, dict(DONE, cost_usd=None), None, None, _reply(draft, text), [], seq, may_read=False
    )
    assert plan is not None
    return plan


def test_from_a_loop_refusals_and_wrong_guesses_keep_nothing(ws: Workspace, user: User) -> None:
    session = cmdc_nb.sessions.create_session(user, name="loop", ws=ws)
    watch = Watch(ws)

    async def scenario() -> None:
        assert await round_statements.run_async(ws, _plan(ws, session, user, 1)) == 1
        # a wrong guess: nothing kept, the caller takes the transaction
        assert await round_statements.run_async(ws, _plan(ws, session, user, 5)) is round_statements.NOT_HERE
        assert await round_statements.run_async(ws, _plan(ws, session, user, 2)) == 2
        cmdc_nb.sessions.update_session_status(session, "archived", ws=ws)
        with pytest.raises(InvalidStateError, match="archived"):
            await round_statements.run_async(ws, _plan(ws, session, user, 3))
        cmdc_nb.sessions.update_session_status(session, "active", ws=ws)
        assert await round_statements.run_async(ws, _plan(ws, session, user, 3)) == 3  # the connection kept

    asyncio.run(scenario())
    stored = _rows_as_stored(ws, user.id, [session.id])
    assert [m[0]["sequence"] for m in stored["messages"]] == [1, 2, 3]
    assert len(stored["agent_calls"]) == 3
    created = [p["sequence"] for _t, ty, p in watch.events if ty == "message_created"]
    assert created == [1, 2, 3]  # nothing published for what was not kept
    logged = [[p["sequence"] for _t, ty, p in b if ty == "message_created"] for b in watch.logged()]
    assert [seqs for seqs in logged if seqs] == [[1], [2], [3]]  # (the status changes logged theirs)


def test_a_loops_connection_in_use_sends_the_next_write_a_threads_way(ws: Workspace, user: User) -> None:
    session = cmdc_nb.sessions.create_session(user, name="busy", ws=ws)

    async def scenario() -> Any:
        async with ws.async_statement():
            with pytest.raises(WouldWait):
                async with ws.async_statement():
                    pytest.fail("one statement at a time on a loop's connection")
            return await round_statements.run_async(ws, _plan(ws, session, user, 1))

    assert asyncio.run(scenario()) is round_statements.NOT_HERE  # nothing done: the thread's way stores it
    assert _rows_as_stored(ws, user.id, [session.id])["agent_calls"] == []


def test_one_connection_is_lent_to_one_running_loop_at_a_time(ws: Workspace, user: User) -> None:
    """Loops that run one after another (`asyncio.run`, `Agent.run`) share the workspace's one async
    connection, handed over; a loop running in another thread meanwhile takes a thread's way (nothing
    done, `NOT_HERE`) — a workspace never holds a connection per loop."""
    session = cmdc_nb.sessions.create_session(user, name="loops", ws=ws)
    kept = ws._async_statements

    async def write(seq: int) -> Any:
        return await round_statements.run_async(ws, _plan(ws, session, user, seq))

    assert asyncio.run(write(1)) == 1
    first = kept._conn
    assert asyncio.run(write(2)) == 2
    assert kept._conn is not first and first.closed  # handed over: the ended loop's closed
    inside, done = threading.Event(), threading.Event()

    def other_loop() -> None:
        async def hold() -> None:  # a loop that keeps running, its last write done
            assert await write(3) == 3
            inside.set()
            while not done.is_set():
                await asyncio.sleep(0.01)

        asyncio.run(hold())

    runner = threading.Thread(target=other_loop)
    runner.start()
    try:
        assert inside.wait(30)
        assert asyncio.run(write(4)) is round_statements.NOT_HERE  # that loop still runs: not lent
    finally:
        done.set()
        runner.join(30)
    assert asyncio.run(write(4)) == 4  # it ended: handed over
    stored = _rows_as_stored(ws, user.id, [session.id])
    assert [m[0]["sequence"] for m in stored["messages"]] == [1, 2, 3, 4]
    conn = kept._conn
    ws.close()
    assert conn.closed


def test_a_refusal_keeps_the_connection_and_a_cut_off_statement_drops_it(ws: Workspace, user: User) -> None:
    session = cmdc_nb.sessions.create_session(user, name="kept", ws=ws)
    kept = ws._async_statements

    async def scenario() -> None:
        assert await round_statements.run_async(ws, _plan(ws, session, user, 1)) == 1
        conn = kept._conn
        assert await round_statements.run_async(ws, _plan(ws, session, user, 9)) is round_statements.NOT_HERE
        assert kept._conn is conn  # the server refused (a wrong guess): the connection is fine
        async with ws.async_statement() as st:  # a statement cut off mid-way: the connection goes
            task = asyncio.ensure_future(st.aconn.execute("SELECT pg_sleep(5)"))
            await asyncio.sleep(0.2)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
        assert await round_statements.run_async(ws, _plan(ws, session, user, 2)) == 2

    asyncio.run(scenario())


def test_a_connection_that_cannot_be_made_sends_the_write_a_threads_way(
    ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The server at its connection limit, or a loop psycopg cannot use (Windows' proactor loop): the
    round is stored all the same, through a thread's transaction."""
    import psycopg

    async def refused(*_a: Any, **_k: Any) -> Any:
        raise psycopg.OperationalError("too many clients already")

    monkeypatch.setattr(psycopg.AsyncConnection, "connect", refused)
    session = cmdc_nb.sessions.create_session(user, name="full", ws=ws)
    assert (
        asyncio.run(round_statements.run_async(ws, _plan(ws, session, user, 1))) is round_statements.NOT_HERE
    )
    script = Script([Turn(tool_calls=[call("noop", i=1)]), Turn("done")])
    agent = Agent(model=script.model, tools=[noop], session=session, ws=ws)
    assert agent.run("go") == "done"
    stored = _rows_as_stored(ws, user.id, [session.id])
    assert [t[0]["status"] for t in stored["tool_uses"]] == ["completed"]
    assert [m[0]["role"] for m in stored["messages"]] == ["user", "assistant", "tool_result", "assistant"]


def test_a_forked_child_leaves_the_parents_connection_alone(ws: Workspace, user: User) -> None:
    import os

    session = cmdc_nb.sessions.create_session(user, name="fork", ws=ws)

    async def write(seq: int) -> Any:
        return await round_statements.run_async(ws, _plan(ws, session, user, seq))

    loop = asyncio.new_event_loop()
    try:
        assert loop.run_until_complete(write(1)) == 1
        conn = ws._async_statements._conn
        pid = os.fork()
        if pid == 0:  # the child ends as an interpreter does (its exit handlers run), then goes
            import atexit
            import gc

            gc.collect()
            atexit._run_exitfuncs()
            os._exit(0)
        os.waitpid(pid, 0)
        assert loop.run_until_complete(write(2)) == 2
        assert ws._async_statements._conn is conn and not conn.closed
    finally:
        loop.close()


def test_from_a_loop_the_connection_survives_a_lost_backend(
    ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    session = cmdc_nb.sessions.create_session(user, name="lost", ws=ws)

    async def kill() -> None:
        pid = ws._async_statements._conn.info.backend_pid
        with ws.engine.connect() as other:
            other.exec_driver_sql(f"SELECT pg_terminate_backend({int(pid)})")
        await asyncio.sleep(0.2)

    async def scenario() -> None:
        assert await round_statements.run_async(ws, _plan(ws, session, user, 1)) == 1
        await kill()
        monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)  # idle: pinged, replaced
        assert await round_statements.run_async(ws, _plan(ws, session, user, 2)) == 2
        monkeypatch.setattr(engine_module, "PING_IDLE_S", 3600.0)
        await kill()
        with pytest.raises(StorageError):
            await round_statements.run_async(ws, _plan(ws, session, user, 3))
        assert await round_statements.run_async(ws, _plan(ws, session, user, 3)) == 3

    asyncio.run(scenario())
    assert [m[0]["sequence"] for m in _rows_as_stored(ws, user.id, [session.id])["messages"]] == [1, 2, 3]


def test_a_write_sent_from_a_loop_ends_even_when_its_run_is_cancelled(ws: Workspace, user: User) -> None:
    """An abort, or a steer killing a tool, cancels the run awaiting a write already sent: the write
    goes on to its end — stored, noted, its events published — as a thread's write would (a query
    cancelled on the server would leave the tool use executing for good)."""
    from cmdc_nb.kernel.persist import Recorder

    session = cmdc_nb.sessions.create_session(user, name="cancelled", ws=ws)
    recorder = Recorder(session, ws)
    watch = Watch(ws)
    noted: list[Any] = []

    async def scenario() -> None:
        with ws.engine.connect() as locker:  # another writer holds the session's row
            locker.execute(sa.select(Session.id).where(Session.id == session.id).with_for_update())
            waiting = asyncio.ensure_future(
                recorder._statement(lambda w: _plan(w, session, user, 1), noted.append)
            )
            await asyncio.sleep(0.3)
            waiting.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiting
            assert noted == []
            locker.commit()
        for _ in range(500):
            if noted:
                break
            await asyncio.sleep(0.01)

    asyncio.run(scenario())
    assert noted == [1]
    assert [m[0]["sequence"] for m in _rows_as_stored(ws, user.id, [session.id])["messages"]] == [1]
    assert [p["sequence"] for _t, ty, p in watch.events if ty == "message_created"] == [1]


def test_what_is_known_of_a_summary_row_is_known_of_one_database_only() -> None:
    """A copy of a database (`CREATE DATABASE … TEMPLATE`, a restored backup) has the same row ids: what
    this process learnt of one's summary rows says nothing of the other's."""
    import datetime as dt
    import uuid

    from cmdc_nb.services import cost_rows

    a, b = sa.make_url("postgresql+psycopg://h/a"), sa.make_url("postgresql+psycopg://h/b")
    user, session, summary = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    now = dt.datetime.now(dt.UTC)
    rows = cost_rows.cost_rows(
        None, at=now, cell=None, cost_usd=Decimal(0), user_id=user, session_id=session, provider="p",
        model="p/m", tokens_in=1, tokens_out=1, cache_tokens_read=0, cache_tokens_write=0,
    )  # fmt: skip
    cost_rows.summary_seen(a, user, now.date(), summary)
    cost_rows.remember_holds(a, (summary, "p", "p/m", session))
    assert cost_rows.maps_need_nothing(a, rows) == (True, summary)
    assert cost_rows.maps_need_nothing(b, rows) == (False, None)


def _tool_use(ws: Workspace, session: Session) -> tuple[Any, str]:
    """The session's one tool use: its id and status, as stored."""
    with ws.engine.connect() as conn:
        (row,) = conn.execute(sa.select(ToolUse.id, ToolUse.status).where(ToolUse.session_id == session.id))
    return row.id, getattr(row.status, "value", row.status)


def _round_with_its_tool_use_row_held(
    ws: Workspace, session: Session, while_held: Any, *, seen: Any = None
) -> tuple[Script, str]:
    """One round whose tool, as it runs, has another connection lock its tool use's row, then call
    `while_held(locker, tool_use_id)` and commit: the tool's end, sent meanwhile, waits for the row.
    The script (what the model was sent) and the run's reply."""

    def hold(tool_use_id: Any) -> None:
        with ws.engine.connect() as locker:
            locker.execute(sa.select(ToolUse.id).where(ToolUse.id == tool_use_id).with_for_update())
            while_held(locker, tool_use_id)
            locker.commit()

    @tool
    def held(i: int) -> int:
        """Return i."""
        threading.Thread(target=hold, args=(_tool_use(ws, session)[0],)).start()
        time.sleep(0.2)  # the holder has the row
        return i

    script = Script([Turn(tool_calls=[call("held", i=1)]), Turn("done")])
    agent = Agent(model=script.model, tools=[held], session=session, ws=ws)
    if seen is not None:
        agent.events.subscribe(seen)
    return script, agent.run("go")


def _second_call_rebuilds(ws: Workspace, session: Session, script: Script) -> Any:
    """The session's second call, checked to rebuild exactly the request the model was sent."""
    second = max(cmdc_nb.agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)
    assert provider_messages(cmdc_nb.agents.call_request(second, ws=ws)["messages"]) == script.requests[1]
    return second


def test_a_tools_end_is_stored_while_the_loop_goes_on_and_before_the_next_write(
    ws: Workspace, user: User
) -> None:
    """The tool's end is sent from the loop and not awaited there: the loop goes on — the next
    request is sent and answered — while the server stores it (here, while another writer holds the
    tool use's row), and the next write waits for it. The next call's prompt refers to the result
    message by its sequence, and rebuilds exactly what the model was sent."""
    session = cmdc_nb.sessions.create_session(user, name="overlap", ws=ws)
    loop_went_on = threading.Event()
    released: list[bool] = []

    def seen(env: Any) -> None:
        if env.type == "message_start" and env.event.turn == 2:  # the next reply is streaming in
            loop_went_on.set()

    script, reply = _round_with_its_tool_use_row_held(
        ws, session, lambda *_: released.append(loop_went_on.wait(30)), seen=seen
    )
    assert reply == "done"
    assert released == [True], "the loop waited for the tool's end instead of going on"
    stored = _rows_as_stored(ws, user.id, [session.id])
    assert [(m[0]["role"], m[0]["sequence"]) for m in stored["messages"]] == [
        ("user", 1), ("assistant", 2), ("tool_result", 3), ("assistant", 4)
    ]  # fmt: skip
    assert [t[0]["status"] for t in stored["tool_uses"]] == ["completed"]
    second = _second_call_rebuilds(ws, session, script)
    assert second.prompt_ref["messages"] == [2, 3]  # the reply and the result, referred to


def test_another_writers_message_first_and_the_prompt_keeps_its_copy(ws: Workspace, user: User) -> None:
    """While the tool's end is in flight another writer adds a message to the session: the result
    takes the next sequence (the predicted one was taken: the write goes the transaction's way), and
    the next call's prompt, which referred to the predicted one, keeps its copy instead — it still
    rebuilds exactly what the model was sent."""
    session = cmdc_nb.sessions.create_session(user, name="interleaved", ws=ws)

    def another_writer_first(*_: Any) -> None:
        time.sleep(0.5)  # the tool's end, sent meanwhile, waits for the row
        cmdc_nb.sessions.create_message(session, role="user", content="a note from elsewhere", ws=ws)

    script, reply = _round_with_its_tool_use_row_held(ws, session, another_writer_first)
    assert reply == "done"
    stored = _rows_as_stored(ws, user.id, [session.id])
    assert [(m[0]["role"], m[0]["sequence"]) for m in stored["messages"]] == [
        ("user", 1), ("assistant", 2), ("user", 3), ("tool_result", 4), ("assistant", 5)
    ]  # fmt: skip
    second = _second_call_rebuilds(ws, session, script)
    assert "messages" not in (second.prompt_ref or {}) and second.prompt_messages


@pytest.mark.parametrize("then", ["another turn", "the run's end"])
def test_a_tools_end_refused_in_flight_fails_the_run(ws: Workspace, user: User, then: str) -> None:
    """A write still in flight is awaited by the next write, and at the run's end: its error is the
    run's error, as it was when the loop awaited it at once — the session archived while the tool ran
    takes no result, and the tool use stays executing (nothing of the refused write is kept)."""
    session = cmdc_nb.sessions.create_session(user, name=then, ws=ws)

    @tool
    def archives(i: int) -> int:
        """Return i."""
        cmdc_nb.sessions.archive_session(session, ws=ws)
        return i

    turns = [Turn(tool_calls=[call("archives", i=1)]), Turn("done")]
    agent = Agent(
        model=Script(turns).model, tools=[archives], session=session, ws=ws,
        max_turns=2 if then == "another turn" else 1,
    )  # fmt: skip
    with pytest.raises(InvalidStateError):
        agent.run("go")
    assert _tool_use(ws, session)[1] == "executing"
    roles = [m.role for m in cmdc_nb.sessions.list_messages(session, ws=ws).entries]
    assert roles == ["user", "assistant"]


def test_a_cancel_between_the_tools_return_and_its_end_keeps_the_cancel_and_the_conversation(
    ws: Workspace, user: User
) -> None:
    """Another writer cancels the tool use after its tool returned, while the end waits for the row:
    the end is refused (the cancel stands), the run goes on, and the result the loop already handed on
    is stored as a message of its own — the next prompt still rebuilds exactly what the model was sent."""
    session = cmdc_nb.sessions.create_session(user, name="late cancel", ws=ws)

    def cancel_once_the_tool_returned(locker: sa.Connection, tool_use_id: Any) -> None:
        time.sleep(0.5)  # the tool returns, and its end waits for the row
        locker.execute(sa.update(ToolUse).where(ToolUse.id == tool_use_id).values(status="cancelled"))

    script, reply = _round_with_its_tool_use_row_held(ws, session, cancel_once_the_tool_returned)
    assert reply == "done"
    assert _tool_use(ws, session)[1] == "cancelled"
    stored = _rows_as_stored(ws, user.id, [session.id])
    assert [(m[0]["role"], m[0]["content"]) for m in stored["messages"]] == [
        ("user", "go"), ("assistant", ""), ("tool_result", "1"), ("assistant", "done")
    ]  # fmt: skip
    assert [m[0]["sequence"] for m in stored["messages"]] == [1, 2, 3, 4]
    _second_call_rebuilds(ws, session, script)
