"""On PostgreSQL a tool use's end is one call of `cmdc_end_tool_use` (migration 0015) instead of four
statements: what it stores, what it publishes and what it refuses are the statements' own, compared
here row by row on the same cases, text that JSON must carry exactly included."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb.errors import InvalidStateError, NotFoundError
from cmdc_nb.services.agents import rounds
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
                m.setattr(rounds, "_ends_in_one_call", lambda *_a: False)
            session, draft, tool = _executing(ws, user, path)
            seen.clear()
            called.clear()
            seq = _end(ws, draft, tool, **case)
            assert any("cmdc_end_tool_use" in s for s in called) == (path == "function")
        events = [(t.replace(str(session.id), "S"), ty, {k: v for k, v in p.items() if not k.endswith("_id")})
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
        monkeypatch.setattr(rounds, "_ends_in_one_call", lambda *_a: False)

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
    assert rounds._ends_in_one_call("x" * 10, None)
    assert not rounds._ends_in_one_call("x" * (rounds._FUNCTION_OUTPUT_MAX + 1), None)
    audited = rounds.NewMessage(role="user", content="hi")
    assert not rounds._ends_in_one_call("x", audited)
    assert utcnow()  # (the statements' path is the one every other test of a round runs on SQLite)


def test_the_function_goes_with_a_downgrade_and_comes_back_with_the_upgrade(ws: Workspace) -> None:
    from alembic import command

    from cmdc_nb.store import migrate

    def exists(conn: sa.Connection) -> bool:
        found = conn.exec_driver_sql("SELECT count(*) FROM pg_proc WHERE proname = 'cmdc_end_tool_use'")
        return bool(found.scalar())

    cfg = migrate._config()
    with ws.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        assert exists(conn)
        command.downgrade(cfg, "0014")
        assert not exists(conn)
        command.upgrade(cfg, "0015")
        assert exists(conn)
