"""Statements compiled once and run on the driver's cursor (`cmdc_nb.store.prepared`) store exactly
what `Connection.execute` stores, on both backends: the stored round's rows go through them."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from cmdc_nb.errors import ConflictError
from cmdc_nb.store.enums import ActivityAction, AgentCallStatus, SessionStatus, ToolUseStatus
from cmdc_nb.store.models import ActivityLog, AgentCall, Session, ToolUse
from cmdc_nb.store.prepared import Prepared, pipeline
from cmdc_nb.workspace import Workspace

INSERT_CALL = Prepared(sa.insert(AgentCall))
INSERT_AUDIT = Prepared(sa.insert(ActivityLog))
TOOLS: Any = ToolUse.__table__
END_TOOL = Prepared(
    sa.update(TOOLS).where(TOOLS.c.id == sa.bindparam("tid"), TOOLS.c.status == ToolUseStatus.EXECUTING)
)
SESSION_STATUS = Prepared(
    sa.update(Session)
    .where(Session.id == sa.bindparam("sid"))
    .values(message_count=Session.message_count + sa.bindparam("add", type_=sa.Integer))
    .returning(Session.id, Session.status, Session.updated_at)
)


def call_values(session: Any, **over: Any) -> dict[str, Any]:
    """An agent call with a value of every awkward type: JSON with non-ASCII text, money with 12
    places, an enum, timestamps with microseconds, a float, a list of text and NULLs."""
    at = dt.datetime(2026, 12, 5, 1, 2, 3, 456789, tzinfo=dt.UTC)
    return {
        "id": uuid.uuid4(),
        "session_id": session.id,
        "user_id": session.user_id,
        "provider": "scripted",
        "model": "scripted/prep",
        "status": AgentCallStatus.COMPLETED,
        "prompt_messages": [{"role": "user", "content": 'héllo ✓ \u2028 "quoted"'}],
        "prompt_ref": None,
        "system_prompt": "be brief",
        "response_content": "done",
        "response_blocks": [{"type": "tool_call", "id": "c1", "arguments": {"n": 1.5}}],
        "stop_reason": "stop",
        "tokens_in": 10,
        "tokens_out": 2,
        "cache_tokens_read": 0,
        "cache_tokens_write": 0,
        "cost_usd": Decimal("0.000000123456"),
        "started_at": at,
        "first_token_at": at,
        "completed_at": at + dt.timedelta(milliseconds=5),
        "duration_ms": 5,
        "temperature": 0.25,
        "max_tokens": None,
        "tools_provided": ["noop", "ünïcode"],
        "retry_count": 0,
        "workflow_run_id": None,
        "workflow_step_id": None,
        "metadata": {"turn": 1, "nested": {"a": [1, None, True]}},
        "inserted_at": at,
        "updated_at": at,
        **over,
    }


def stored(ws: Workspace, call_id: uuid.UUID) -> dict[str, Any]:
    with ws.read() as db:
        row = db.get(AgentCall, call_id)
        assert row is not None
        return {c.key: getattr(row, c.key) for c in sa.inspect(AgentCall).column_attrs if c.key != "id"}


def test_a_row_written_prepared_reads_back_as_one_written_by_execute(ws: Workspace, session: Any) -> None:
    plain, prepared = call_values(session), call_values(session)
    with ws.transaction() as tx:
        tx.db.connection().execute(sa.insert(AgentCall), plain)
        INSERT_CALL.run(tx.db.connection(), prepared)
    assert stored(ws, prepared["id"]) == stored(ws, plain["id"])
    assert stored(ws, prepared["id"])["cost_usd"] == Decimal("0.000000123456")
    assert stored(ws, prepared["id"])["prompt_messages"][0]["content"] == 'héllo ✓ \u2028 "quoted"'


def test_python_defaults_are_filled_in_for_every_row_of_a_batch(ws: Workspace, session: Any) -> None:
    before = dt.datetime.now(dt.UTC)
    rows = [
        {"action": ActivityAction.TOOL_EXECUTE, "resource_type": "tool_use", "resource_id": uuid.uuid4(),
         "user_id": session.user_id, "details": {"i": i}, "session_id": session.id}
        for i in range(3)
    ]  # fmt: skip
    with ws.transaction() as tx:
        INSERT_AUDIT.run(tx.db.connection(), rows)
    with ws.read() as db:
        got = db.scalars(sa.select(ActivityLog).where(ActivityLog.session_id == session.id)).all()
    mine = [g for g in got if g.action == ActivityAction.TOOL_EXECUTE]
    assert sorted(g.details["i"] for g in mine) == [0, 1, 2]
    assert len({g.id for g in mine}) == 3  # each row its own id
    assert all(g.occurred_at >= before - dt.timedelta(seconds=1) for g in mine)


def test_returning_values_are_converted_as_a_result_would(ws: Workspace, session: Any) -> None:
    with ws.transaction() as tx:
        row = SESSION_STATUS.one_or_none(tx.db.connection(), {"sid": session.id, "add": 2})
        missing = SESSION_STATUS.one_or_none(tx.db.connection(), {"sid": uuid.uuid4(), "add": 1})
    assert row is not None and missing is None
    sid, status, updated = row
    assert sid == session.id and isinstance(sid, uuid.UUID)
    assert status is SessionStatus.ACTIVE
    assert updated.tzinfo is not None and updated > session.updated_at  # onupdate filled in
    with ws.read() as db:
        assert db.get(Session, session.id).message_count == session.message_count + 2  # type: ignore[union-attr]


def test_a_value_fixed_in_the_statement_is_kept(ws: Workspace, session: Any) -> None:
    """`status = 'executing'` is part of the statement: a tool use in another status is left alone."""
    call = call_values(session)
    done = uuid.uuid4()
    with ws.transaction() as tx:
        INSERT_CALL.run(tx.db.connection(), call)
        tx.db.connection().execute(
            sa.insert(ToolUse),
            [{"id": tid, "agent_call_id": call["id"], "session_id": session.id, "tool_name": "noop",
              "input": {}, "status": status, "sequence": n}
             for n, (tid, status) in enumerate([(done, ToolUseStatus.COMPLETED)])],
        )  # fmt: skip
        changed = END_TOOL.run(tx.db.connection(), {"tid": done, "status": ToolUseStatus.FAILED}).rowcount
    assert changed == 0
    with ws.read() as db:
        assert db.get(ToolUse, done).status is ToolUseStatus.COMPLETED  # type: ignore[union-attr]


def test_the_engine_listeners_see_every_statement(ws: Workspace, session: Any) -> None:
    seen: list[str] = []

    def listen(_conn: Any, _cursor: Any, statement: str, *_rest: Any) -> None:
        seen.append(statement.split()[0].upper())

    sa.event.listen(ws.engine, "before_cursor_execute", listen)
    try:
        with ws.transaction() as tx:
            INSERT_CALL.run(tx.db.connection(), call_values(session))
    finally:
        sa.event.remove(ws.engine, "before_cursor_execute", listen)
    assert "INSERT" in seen


def test_a_driver_error_is_a_typed_error_and_nothing_is_kept(ws: Workspace, session: Any) -> None:
    secret = "sk-live-should-never-show-0123456789"
    first = call_values(session, system_prompt=secret)
    with pytest.raises(ConflictError) as caught, ws.transaction() as tx:
        INSERT_CALL.run(tx.db.connection(), call_values(session))
        INSERT_CALL.run(tx.db.connection(), first)
        INSERT_CALL.run(tx.db.connection(), {**first, "system_prompt": secret})  # same id again
    assert secret not in str(caught.value)
    with ws.read() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(AgentCall)) == 0  # the whole transaction


def test_in_a_pipeline_rows_and_returned_values_are_the_same(ws: Workspace, session: Any) -> None:
    """On PostgreSQL the statements go out without waiting for each result; a returned row is read
    when asked for. (On SQLite `pipeline` does nothing: the same test, the plain path.)"""
    first, second = call_values(session), call_values(session)
    with ws.transaction() as tx:
        conn = tx.db.connection()
        with pipeline(conn):
            INSERT_CALL.run(conn, first)
            counted = SESSION_STATUS.pending(conn, {"sid": session.id, "add": 1})
            INSERT_CALL.run(conn, second)
            sid, status, _ = counted.fetchone() or (None, None, None)
            INSERT_AUDIT.run(conn, [{"action": ActivityAction.TOOL_EXECUTE, "resource_type": "tool_use",
                                     "resource_id": uuid.uuid4(), "user_id": session.user_id,
                                     "details": {"n": 1}, "session_id": session.id}])  # fmt: skip
    assert (sid, status) == (session.id, SessionStatus.ACTIVE)
    assert stored(ws, first["id"]) == stored(ws, second["id"])


def test_a_failure_in_a_pipeline_is_typed_and_keeps_nothing(ws: Workspace, session: Any) -> None:
    row = call_values(session)
    with pytest.raises(ConflictError), ws.transaction() as tx:
        conn = tx.db.connection()
        with pipeline(conn):
            INSERT_CALL.run(conn, call_values(session))
            INSERT_CALL.run(conn, row)
            INSERT_CALL.run(conn, row)  # the same id: refused when the results come back
    with pytest.raises(ValueError, match="ours"), ws.transaction() as tx:
        conn = tx.db.connection()
        with pipeline(conn):
            INSERT_CALL.run(conn, call_values(session))
            raise ValueError("ours, not the database's")
    with ws.read() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(AgentCall)) == 0


def test_a_returned_row_never_read_does_not_block_the_next_transaction(ws: Workspace, session: Any) -> None:
    """SQLite keeps a statement in progress until its rows are read: a RETURNING row left unread (a
    refusal raised before reading it) blocked the connection's next savepoint, after the rollback."""
    with pytest.raises(RuntimeError) as refused, ws.transaction() as tx:
        unread = SESSION_STATUS.pending(tx.db.connection(), {"sid": session.id, "add": 1})
        raise RuntimeError("refused before reading it")
    assert refused.traceback and unread is not None  # still alive here, its frames with it
    for _ in range(3):  # whichever pooled connection comes back: savepoints and writes work
        with ws.transaction() as tx, tx.db.begin_nested():
            INSERT_CALL.run(tx.db.connection(), call_values(session))
    with ws.read() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(AgentCall)) == 3


def test_a_batch_whose_rows_name_other_columns_is_refused(ws: Workspace, session: Any) -> None:
    row = {"action": ActivityAction.TOOL_EXECUTE, "resource_type": "tool_use", "resource_id": uuid.uuid4(),
           "user_id": session.user_id, "details": {}, "session_id": session.id}  # fmt: skip
    other = {k: v for k, v in row.items() if k != "session_id"} | {"details": {"extra": 1}}
    with pytest.raises(TypeError, match="same parameter names"), ws.transaction() as tx:
        INSERT_AUDIT.run(tx.db.connection(), [row, other])
    with ws.read() as db:  # nothing of the batch was written
        assert (
            db.scalars(sa.select(ActivityLog).where(ActivityLog.action == ActivityAction.TOOL_EXECUTE)).all()
            == []
        )


CALLS: Any = AgentCall.__table__
SELECT_CALLS = Prepared(
    sa.select(
        CALLS.c.id, CALLS.c.status, CALLS.c.cost_usd, CALLS.c.metadata.label("meta"), CALLS.c.started_at
    )
    .where(CALLS.c.session_id == sa.bindparam("sid"))
    .order_by(CALLS.c.tokens_in)
)


def test_selected_rows_are_what_execute_reads_by_position_and_by_name(ws: Workspace, session: Any) -> None:
    with ws.transaction() as tx:
        for n in (3, 1, 2):
            INSERT_CALL.run(tx.db.connection(), call_values(session, tokens_in=n))
    with ws.transaction() as tx:
        conn = tx.db.connection()
        want = conn.execute(SELECT_CALLS.stmt, {"sid": session.id}).all()
        got = SELECT_CALLS.all(conn, {"sid": session.id})
        none = SELECT_CALLS.all(conn, {"sid": uuid.uuid4()})
    assert [tuple(r) for r in got] == [tuple(r) for r in want] and len(got) == 3
    first = got[0]
    assert isinstance(first.id, uuid.UUID) and first.status is AgentCallStatus.COMPLETED
    assert first.cost_usd == Decimal("0.000000123456") and first.meta["nested"] == {"a": [1, None, True]}
    assert first.started_at.tzinfo is not None
    assert none == []


def test_the_sqlite_writer_is_one_thread_and_not_offered_to_itself(ws: Workspace) -> None:
    """On SQLite a burst of writes from an event loop queues on one thread; code already on that
    thread is given the default executor instead, or waiting for its own write would hang it."""
    import concurrent.futures

    writer = ws.writer
    if ws.backend == "postgresql":
        assert writer is None  # its writers overlap: the loop's default executor
        return
    assert isinstance(writer, concurrent.futures.ThreadPoolExecutor) and writer._max_workers == 1
    assert writer.submit(lambda: ws.writer).result(timeout=30) is None
    assert ws.writer is writer
