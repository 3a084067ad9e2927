"""On PostgreSQL a stored round's two writes are one call each of the schema's functions instead of
statements: `cmdc_record_call` (migration 0016) for the completed call, `cmdc_end_tool_use` (0015) for a
tool use's end. What they store, what they publish and what they refuse are the statements' own,
compared here row by row (as the server holds them) on the same cases, text that JSON must carry
exactly included."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb.errors import InvalidStateError, NotFoundError
from cmdc_nb.providers.catalog import Price
from cmdc_nb.services.agents import round_functions, rounds
from cmdc_nb.store.models import Message, Session, ToolUse, User
from cmdc_nb.store.values import utcnow
from cmdc_nb.workspace import Workspace


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


DONE = {
    "response_content": None, "response_blocks": [], "stop_reason": "tool_calls", "tokens_in": 10,
    "tokens_out": 2, "cache_tokens_read": 0, "cache_tokens_write": 0, "cost_usd": Decimal(0),
}  # fmt: skip


def _executing(ws: Workspace, user: User, name: str) -> tuple[Session, rounds.CallDraft, rounds.NewToolUse]:
    """A session with a call stored by the fast path, its one tool use executing."""
    session = cmdc_nb.sessions.create_session(user, name=name, ws=ws)
    draft = rounds.CallDraft(
        session_id=session.id, user_id=user.id, model="scripted/x", provider="scripted", prompt_messages=[],
        system_prompt=None, temperature=None, max_tokens=None, tools_provided=["t"], meta={},
    )  # fmt: skip
    tool = rounds.NewToolUse(tool_name="t", tool_use_id="call_1", input={"n": 1}, meta={}, sequence=1)
    with ws.transaction(light=True) as tx:
        reply = rounds.NewMessage(role="assistant", content=None, agent_call_id=draft.id)
        rounds.record_call_in(tx, draft, DONE, None, cell=None, message=reply, tool_uses=[tool])
    return session, draft, tool


def _end(
    ws: Workspace, draft: rounds.CallDraft, tool: rounds.NewToolUse, *, output: str | None,
    error: tuple[str, str, bool] | None, content: str | None, session_id: uuid.UUID | None = None,
) -> int | None:  # fmt: skip
    message = None
    if content is not None:
        message = rounds.NewMessage(
            role="tool_result", content=content, meta={"tool_call_id": tool.tool_use_id, "n": [1, "ü"]},
            tool_use_id=tool.id,
        )  # fmt: skip
    with ws.transaction(light=True) as tx:
        return rounds.record_tool_end_in(
            tx, tool, draft.id, session_id or draft.session_id, draft.user_id, draft.started_at,
            output=output, error=error, message=message,
        )  # fmt: skip


def _stored(ws: Workspace, session: Session, tool: rounds.NewToolUse) -> dict[str, Any]:
    """What the end stored, less ids and times."""
    with ws.read() as db:
        t = db.get(ToolUse, tool.id)
        s = db.get(Session, session.id)
        msgs = db.scalars(
            sa.select(Message).where(Message.session_id == session.id).order_by(Message.sequence)
        )
        assert t is not None and s is not None
        return {
            "tool": {
                c: getattr(t, c)
                for c in (
                    "status",
                    "output",
                    "output_truncated",
                    "file_changes",
                    "error_type",
                    "error_message",
                    "sequence",
                    "input",
                )
            }
            | {
                "ended": t.completed_at is not None,
                "timed": t.duration_ms is not None and t.duration_ms >= 0,
            },
            "session": (s.status, s.message_count),
            "messages": [
                (
                    m.sequence,
                    m.role,
                    m.content,
                    m.content_blocks,
                    m.meta,
                    m.attachments,
                    m.visible_in_branches,
                    m.tool_use_id == tool.id,
                    m.token_count,
                    m.inserted_at is not None,
                )
                for m in msgs
            ],
        }


TEXTS = [
    "plain",
    'quotes " and \\ backslashes, a newline\n, a tab\t, unicode ü ✓ 🙂, and a \u2028 separator',
    "",
    "x" * 50_000,
]

CASES = [
    pytest.param({"output": "done", "error": None, "content": t}, id=f"completed-{i}")
    for i, t in enumerate(TEXTS)
] + [
    pytest.param({"output": "done", "error": None, "content": None}, id="completed-no-message"),
    pytest.param(
        {"output": None, "error": ("ValueError", "bad 'n'", False), "content": "failed"}, id="failed"
    ),
    pytest.param(
        {"output": None, "error": ("TimeoutError", "over 5 s", True), "content": "late"}, id="timed-out"
    ),
]


@pytest.mark.parametrize("case", CASES)
def test_the_function_stores_and_publishes_what_the_statements_do(
    ws: Workspace, user: User, case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []
    ws.bus.subscribe("*", lambda e: seen.append((e.topic, e.type, dict(e.payload))))
    called: list[str] = []
    sa.event.listen(ws.engine, "before_cursor_execute", lambda *a: called.append(a[2]))
    results = {}
    for path in ("statements", "function"):
        with monkeypatch.context() as m:
            if path == "statements":
                m.setattr(round_functions, "ends_in_one_call", lambda *_a: False)
            session, draft, tool = _executing(ws, user, path)
            seen.clear()
            called.clear()
            seq = _end(ws, draft, tool, **case)
            assert any("cmdc_end_tool_use" in s for s in called) == (path == "function")
        events = [(t.replace(str(session.id), "S"), ty,
                   {k: v for k, v in p.items() if not k.endswith("_id") and k not in _VARYING})
                  for t, ty, p in seen]  # fmt: skip
        results[path] = (seq, _stored(ws, session, tool), events)
    assert results["function"] == results["statements"]
    seq, stored, _ = results["function"]
    assert (seq is None) == (case["content"] is None)
    assert stored["tool"]["status"] in ("completed", "failed", "timeout")
    if case["content"] is not None:
        assert stored["messages"][-1][2] == case["content"]  # the text exactly, through JSON


@pytest.mark.parametrize("path", ["statements", "function"])
def test_both_refuse_alike_and_keep_nothing(
    ws: Workspace, user: User, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "statements":
        monkeypatch.setattr(round_functions, "ends_in_one_call", lambda *_a: False)

    session, draft, tool = _executing(ws, user, "cancelled")
    with ws.transaction() as tx:  # cancelled meanwhile
        tx.connection().execute(sa.update(ToolUse).where(ToolUse.id == tool.id).values(status="cancelled"))
    with pytest.raises(InvalidStateError, match="not executing"):
        _end(ws, draft, tool, output="x", error=None, content="x")
    assert _stored(ws, session, tool)["session"] == ("active", 1)

    session, draft, tool = _executing(ws, user, "archived")
    cmdc_nb.sessions.update_session_status(session, "archived", ws=ws)
    with pytest.raises(InvalidStateError, match="archived") as refused:
        _end(ws, draft, tool, output="x", error=None, content="x")
    assert "new message" in str(refused.value)
    kept = _stored(ws, session, tool)
    assert kept["tool"]["status"] == "executing" and kept["session"] == ("archived", 1)  # all undone

    _, draft, tool = _executing(ws, user, "elsewhere")
    with pytest.raises(NotFoundError):
        _end(ws, draft, tool, output="x", error=None, content="x", session_id=uuid.uuid4())


def test_an_output_too_large_for_json_and_an_audited_message_take_the_statements(
    ws: Workspace, user: User
) -> None:
    assert round_functions.ends_in_one_call("x" * 10, None)
    assert not round_functions.ends_in_one_call("x" * (round_functions.FUNCTION_TEXT_MAX + 1), None)
    audited = rounds.NewMessage(role="user", content="hi")
    assert not round_functions.ends_in_one_call("x", audited)
    assert utcnow()  # (the statements' path is the one every other test of a round runs on SQLite)


def test_the_functions_go_with_a_downgrade_and_come_back_with_the_upgrade(ws: Workspace) -> None:
    from alembic import command

    from cmdc_nb.store import migrate

    def functions(conn: sa.Connection) -> set[str]:
        found = conn.exec_driver_sql("SELECT proname FROM pg_proc WHERE starts_with(proname, 'cmdc_')")
        return set(found.scalars())

    cfg = migrate._config()
    with ws.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        logged = {"cmdc_end_tool_use_logged", "cmdc_record_call_logged", "cmdc_log_events"}
        assert functions(conn) == {"cmdc_end_tool_use", "cmdc_record_call"} | logged
        command.downgrade(cfg, "0016")
        assert functions(conn) == {"cmdc_end_tool_use", "cmdc_record_call"}
        command.downgrade(cfg, "0015")
        assert functions(conn) == {"cmdc_end_tool_use"}
        command.downgrade(cfg, "0014")
        assert functions(conn) == set()
        command.upgrade(cfg, "head")
        assert functions(conn) == {"cmdc_end_tool_use", "cmdc_record_call"} | logged


# -- the completed call's write: `cmdc_record_call` --------------------------------------------------

# Columns that differ between two runs of the same case: ids, times, durations (a call's is counted
# in milliseconds from its start: 0 or 1 on a loaded machine).
_VARYING = {
    "id", "session_id", "user_id", "agent_call_id", "resource_id", "source_id", "inserted_at", "updated_at",
    "started_at", "completed_at", "first_token_at", "occurred_at", "incurred_at", "duration_ms",
    "total_duration_ms",
}  # fmt: skip
_ROUND_TABLES = {
    # table: (how its rows of one user are found, their order)
    "agent_calls": ("user_id = :u", "started_at"),
    "cost_records": ("user_id = :u", "incurred_at"),
    "cost_daily_summaries": ("user_id = :u", "day"),
    "cost_rollups": ("user_id = :u", "provider, model"),
    "sessions": ("user_id = :u", "name"),
    "messages": ("session_id IN (SELECT id FROM sessions WHERE user_id = :u)", "session_id, sequence"),
    "tool_uses": ("session_id IN (SELECT id FROM sessions WHERE user_id = :u)", "inserted_at, sequence"),
    "activity_logs": ("user_id = :u AND resource_type <> 'session'", "occurred_at, action"),
}


def _rows_as_stored(ws: Workspace, user_id: uuid.UUID, sessions: list[uuid.UUID]) -> dict[str, Any]:
    """Every row of the round's tables that is `user_id`'s, as the server holds it (JSON), less what
    varies between runs; each JSON column's SQL NULL told apart from a JSON null."""
    out: dict[str, Any] = {}
    with ws.engine.connect() as conn:
        for table, (where, order) in _ROUND_TABLES.items():
            json_cols = [
                r[0]
                for r in conn.execute(
                    sa.text("SELECT column_name FROM information_schema.columns WHERE table_name = :t AND data_type = 'jsonb'"),
                    {"t": table},
                )
            ]  # fmt: skip
            nulls = ", ".join(f"{c} IS NULL" for c in json_cols) or "true"
            rows = conn.execute(
                sa.text(
                    f"SELECT to_jsonb(t)::text, ARRAY[{nulls}] FROM {table} t WHERE {where} ORDER BY {order}"
                ),
                {"u": user_id},
            ).all()
            text_rows = []
            for j, flags in rows:
                for i, sid in enumerate(sessions):  # a session's id, as text in JSON (maps, payloads)
                    j = j.replace(str(sid), f"S{i}")
                varying = _VARYING | ({"tool_use_id"} if table == "messages" else set())  # a row's id there
                data = {k: v for k, v in json.loads(j).items() if k not in varying}
                text_rows.append((data, flags))
            out[table] = text_rows
    return out


PRICE = Price(
    model="paid/x",
    input_per_million_usd=Decimal("3"),
    output_per_million_usd=Decimal("15"),
    source="override",
)

CALL_CASES = [
    pytest.param({"message": "ok", "tools": 1, "priced": False, "system": None}, id="reply-and-a-tool"),
    pytest.param(
        {"message": "two", "tools": 2, "priced": True, "system": "Be brief."}, id="priced-two-tools"
    ),
    pytest.param({"message": None, "tools": 0, "priced": False, "system": None}, id="no-message"),
    pytest.param({"message": TEXTS[1], "tools": 0, "priced": True, "system": TEXTS[1]}, id="escapes"),
    pytest.param({"message": TEXTS[3], "tools": 1, "priced": False, "system": None}, id="long"),
]


def _record(
    ws: Workspace, user: User, session: Session, case: dict[str, Any], base: str | None
) -> int | None:
    done = dict(DONE, response_content=case["message"], tokens_in=120, tokens_out=7, cache_tokens_read=3)
    price = PRICE if case["priced"] else None
    if price is not None:
        done["cost_usd"] = price.cost(tokens_in=120, tokens_out=7, cache_read=3)
    draft = rounds.CallDraft(
        session_id=session.id, user_id=user.id, model="paid/x" if price else "scripted/x",
        provider="override" if price else "scripted", prompt_messages=[] if base else [{"role": "user", "content": "hi"}],
        system_prompt=case["system"], temperature=0.7, max_tokens=256, tools_provided=["t", "u"],
        meta={"cell": "c1", "nested": {"ü": [1, 2.5, None]}},
        prompt_ref={"base": base, "keep": 1, "messages": [1, 1]} if base else None,
    )  # fmt: skip
    draft.first_token_at = draft.started_at
    tools = [
        rounds.NewToolUse(tool_name=f"t{i}", tool_use_id=f"call_{i}", input={"n": i, "s": 'q"\\'}, meta={"p": i},
                          sequence=i + 1)
        for i in range(case["tools"])
    ]  # fmt: skip
    message = None
    if case["message"] is not None:
        message = rounds.NewMessage(role="assistant", content=case["message"], agent_call_id=draft.id,
                                    content_blocks=[{"type": "text", "text": case["message"][:10]}],
                                    meta={"tool_calls": [t.tool_use_id for t in tools]})  # fmt: skip
    with ws.transaction(light=True) as tx:
        return rounds.record_call_in(tx, draft, done, price, cell="cell-7", message=message, tool_uses=tools)


@pytest.mark.parametrize("case", CALL_CASES)
def test_the_call_function_stores_and_publishes_what_the_statements_do(
    ws: Workspace, case: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[tuple[str, str, dict[str, Any]]] = []
    ws.bus.subscribe("*", lambda e: seen.append((e.topic, e.type, dict(e.payload))))
    called: list[str] = []
    sa.event.listen(ws.engine, "before_cursor_execute", lambda *a: called.append(a[2]))
    results = {}
    for path in ("statements", "function"):
        with monkeypatch.context() as m:
            if path == "statements":
                m.setattr(round_functions, "records_in_one_call", lambda *_a: False)
            user = cmdc_nb.accounts.create_user(f"{path}@example.com", name=path, ws=ws)
            session = cmdc_nb.sessions.create_session(user, name="one", ws=ws)
            seen.clear()
            called.clear()
            seqs = [_record(ws, user, session, case, None), _record(ws, user, session, case, "base-call")]
            assert any("cmdc_record_call" in s for s in called) == (path == "function")
        events = [(t.replace(str(session.id), "S").replace(str(user.id), "U"), ty,
                   {k: v for k, v in p.items() if not k.endswith("_id") and k not in _VARYING})
                  for t, ty, p in seen]  # fmt: skip
        results[path] = (seqs, _rows_as_stored(ws, user.id, [session.id]), events)
    assert results["function"] == results["statements"]
    seqs, stored, events = results["function"]
    assert seqs == ([1, 2] if case["message"] is not None else [None, None])
    assert len(stored["agent_calls"]) == 2 and len(stored["tool_uses"]) == 2 * case["tools"]
    call = stored["agent_calls"][1][0]
    assert call["prompt_ref"]["base"] == "base-call" and call["status"] == "completed"
    assert stored["agent_calls"][0][0]["prompt_ref"] is None and True not in stored["agent_calls"][0][1]
    assert call["system_prompt"] == case["system"] and call["temperature"] == 0.7
    if case["message"] is not None:
        assert stored["messages"][-1][0]["content"] == case["message"]  # the text exactly, through JSON
    if case["priced"]:  # the daily summary's maps too (a read and a write after the function)
        summary = stored["cost_daily_summaries"][0][0]
        assert Decimal(summary["cost_by_session"]["S0"]) == Decimal(str(summary["total_cost_usd"])) > 0
    assert [e[1] for e in events[:4]] == [
        "agent_call_created", "agent_call_streaming", "cost_recorded", "agent_call_completed",
    ]  # fmt: skip


@pytest.mark.parametrize("path", ["statements", "function"])
def test_the_call_write_refuses_alike_and_keeps_nothing(
    ws: Workspace, user: User, path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if path == "statements":
        monkeypatch.setattr(round_functions, "records_in_one_call", lambda *_a: False)
    case = {"message": "x", "tools": 1, "priced": True, "system": None}
    session = cmdc_nb.sessions.create_session(user, name="archived", ws=ws)
    _record(ws, user, session, case, None)
    before = _rows_as_stored(ws, user.id, [session.id])
    cmdc_nb.sessions.update_session_status(session, "archived", ws=ws)
    with pytest.raises(InvalidStateError, match="archived") as refused:
        _record(ws, user, session, case, None)
    assert "new message" in str(refused.value)
    after = _rows_as_stored(ws, user.id, [session.id])
    assert {t: rows for t, rows in after.items() if t not in ("sessions", "activity_logs")} == {
        t: rows for t, rows in before.items() if t not in ("sessions", "activity_logs")
    }  # no call, cost, summary, roll-up, message or tool use more: all undone

    gone = cmdc_nb.sessions.create_session(user, name="gone", ws=ws)
    with ws.transaction() as tx:
        tx.connection().execute(sa.delete(Session).where(Session.id == gone.id))
    with pytest.raises(
        cmdc_nb.errors.InvalidInputError, match=r"agent_calls.*foreign key"
    ):  # its first insert
        _record(ws, user, gone, case, None)


def test_an_audited_message_or_a_huge_text_takes_the_statements() -> None:
    draft = rounds.CallDraft(
        session_id=uuid.uuid4(), user_id=uuid.uuid4(), model="m", provider="p", prompt_messages=[],
        system_prompt=None, temperature=None, max_tokens=None, tools_provided=[], meta={},
    )  # fmt: skip
    done = dict(DONE, response_content="fine")
    reply = rounds.NewMessage(role="assistant", content="fine", agent_call_id=draft.id)
    assert round_functions.records_in_one_call(draft, done, reply)
    assert round_functions.records_in_one_call(draft, done, None)
    assert not round_functions.records_in_one_call(draft, done, rounds.NewMessage(role="user", content="hi"))
    huge = "x" * (round_functions.FUNCTION_TEXT_MAX + 1)
    assert not round_functions.records_in_one_call(draft, dict(done, response_content=huge), None)
    draft.system_prompt = huge
    assert not round_functions.records_in_one_call(draft, done, None)


BAD = "nul\x00 here, a lone \ud800 there"
CLEAN = "nul\ufffd here, a lone \ufffd there"


def test_text_a_database_cannot_hold_is_stored_cleaned_alike_on_both_paths(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NUL and lone surrogates from a provider or a caller — in a reply, a finish reason, a tool call's
    name and id, a model name, a system prompt, a tool's output and error — are stored as U+FFFD by
    both paths (the statements refused them, the function's JSON cleaned them), the events saying what
    was stored. A cost finer than a picodollar is rounded as the statements round it."""
    seen: list[tuple[str, dict[str, Any]]] = []
    ws.bus.subscribe("*", lambda e: seen.append((e.type, dict(e.payload))))
    results = {}
    for path in ("statements", "function"):
        with monkeypatch.context() as m:
            if path == "statements":
                m.setattr(round_functions, "records_in_one_call", lambda *_a: False)
                m.setattr(round_functions, "ends_in_one_call", lambda *_a: False)
            user = cmdc_nb.accounts.create_user(f"bad-{path}@example.com", name=path, ws=ws)
            session = cmdc_nb.sessions.create_session(user, name="bad", ws=ws)
            seen.clear()
            draft = rounds.CallDraft(
                session_id=session.id, user_id=user.id, model=f"scripted/{BAD}", provider="scripted",
                prompt_messages=[], system_prompt=BAD, temperature=None, max_tokens=None, tools_provided=[],
                meta={},
            )  # fmt: skip
            tool = rounds.NewToolUse(tool_name=f"t{BAD}", tool_use_id=BAD, input={}, meta={}, sequence=1)
            reply = rounds.NewMessage(role="assistant", content=BAD, agent_call_id=draft.id)
            done = dict(DONE, response_content=BAD, stop_reason=BAD, cost_usd=Decimal("0.0000000000015"))
            with ws.transaction(light=True) as tx:
                rounds.record_call_in(tx, draft, done, None, cell=None, message=reply, tool_uses=[tool])
            result = rounds.NewMessage(role="tool_result", content=BAD, tool_use_id=tool.id)
            with ws.transaction(light=True) as tx:
                rounds.record_tool_end_in(
                    tx, tool, draft.id, session.id, user.id, draft.started_at,
                    output=None, error=("ValueError", BAD, False), message=result,
                )  # fmt: skip
            events = [(t, p["content"]) for t, p in seen if t == "message_created"]
            results[path] = (_rows_as_stored(ws, user.id, [session.id]), events)
    assert results["function"] == results["statements"]
    stored, events = results["function"]
    call = stored["agent_calls"][0][0]
    assert (call["model"], call["system_prompt"], call["response_content"], call["stop_reason"]) == (
        f"scripted/{CLEAN}", CLEAN, CLEAN, CLEAN,
    )  # fmt: skip
    tool_row = stored["tool_uses"][0][0]
    assert (tool_row["tool_name"], tool_row["tool_use_id"], tool_row["error_message"]) == (
        f"t{CLEAN}",
        CLEAN,
        CLEAN,
    )
    assert [m[0]["content"] for m in stored["messages"]] == [CLEAN, CLEAN] == [c for _, c in events]
    assert stored["sessions"][0][0]["total_cost_usd"] == 2e-12  # 1.5 pico: half to even, as `Money` binds


def test_a_json_column_left_none_takes_the_statements(ws: Workspace, user: User) -> None:
    """The statements store a None JSON column as JSON `null`; `jsonb_populate_record` would make it
    SQL NULL, so such a row (never one from the kernel) is written by the statements."""
    draft = rounds.CallDraft(
        session_id=uuid.uuid4(), user_id=user.id, model="m/x", provider="p", prompt_messages=[],
        system_prompt=None, temperature=None, max_tokens=None, tools_provided=[], meta={},
    )  # fmt: skip
    tool = rounds.NewToolUse(tool_name="t", tool_use_id="c", input={}, meta={}, sequence=1)
    assert round_functions.records_in_one_call(draft, DONE, None, [tool])
    assert not round_functions.records_in_one_call(draft, dict(DONE, response_blocks=None), None, [tool])
    tool.input = None  # type: ignore[assignment]
    assert not round_functions.records_in_one_call(draft, DONE, None, [tool])
    session = cmdc_nb.sessions.create_session(user, name="nulls", ws=ws)
    draft.session_id = session.id
    with ws.transaction(light=True) as tx:
        rounds.record_call_in(tx, draft, dict(DONE, response_blocks=None), None, cell=None)
    stored = _rows_as_stored(ws, user.id, [session.id])["agent_calls"]
    assert [row["response_blocks"] for row, _nulls in stored] == [None]
