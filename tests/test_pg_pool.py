"""PostgreSQL's pooled connections: one that sat idle is pinged before use (a server restart or a
dropped connection costs nothing), one back from use a moment ago is not (an agent's back-to-back
transactions pay no extra round trip); a dead one used anyway fails with a typed error, once."""

from __future__ import annotations

from typing import Any

import pytest
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb.errors import StorageError
from cmdc_nb.store import _engine
from cmdc_nb.workspace import Workspace

pytestmark = pytest.mark.postgres


@pytest.fixture(params=["postgresql"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def quiet(db_url: str, home_dir: Any) -> Any:
    """A workspace sharing no events: its event bridge, whose listener dies with the pool and reads the
    log through the pool as soon as it reconnects, would otherwise find the dead connection first
    (and have the pool replaced) in the moment a test expects its own call to meet it."""
    ws = cmdc_nb.connect(db_url, home=home_dir, make_default=False, share_events=False)
    yield ws
    ws.close()


def kill_pool(ws: Workspace) -> int:
    """Terminate every server connection to the workspace's database but the one asking."""
    admin = sa.create_engine(ws.engine.url, poolclass=sa.pool.NullPool)
    try:
        with admin.connect() as conn:
            return int(
                conn.execute(
                    sa.text(
                        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                        "WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                ).scalar_one()
            )
    finally:
        admin.dispose()


def test_an_idle_connection_is_pinged_and_replaced_when_gone(ws: Workspace, monkeypatch: Any) -> None:
    cmdc_nb.accounts.create_user("before@example.com", ws=ws)
    assert kill_pool(ws) >= 1
    monkeypatch.setattr(_engine, "PING_IDLE_S", 0.0)  # every pooled connection counts as idle
    made = cmdc_nb.accounts.create_user("after@example.com", ws=ws)
    assert cmdc_nb.accounts.get_user(made.id, ws=ws).email == "after@example.com"


def test_a_connection_back_from_use_a_moment_ago_is_not_pinged(ws: Workspace, monkeypatch: Any) -> None:
    statements: list[str] = []
    sa.event.listen(ws.engine, "before_cursor_execute", lambda _c, _cu, sql, *_a: statements.append(sql))
    monkeypatch.setattr(_engine, "PING_IDLE_S", 3600.0)
    for n in range(3):
        cmdc_nb.accounts.create_user(f"u{n}@example.com", ws=ws)
    monkeypatch.setattr(_engine, "PING_IDLE_S", 0.0)
    before = len(statements)
    pinged: list[bool] = []
    real = ws.engine.dialect.do_ping
    monkeypatch.setattr(ws.engine.dialect, "do_ping", lambda c: pinged.append(True) or real(c))
    cmdc_nb.accounts.create_user("pinged@example.com", ws=ws)
    assert pinged  # idle (threshold 0): pinged first
    assert len(statements) > before
    pinged.clear()
    monkeypatch.setattr(_engine, "PING_IDLE_S", 3600.0)
    cmdc_nb.accounts.create_user("fresh@example.com", ws=ws)
    assert not pinged  # back from use a moment ago: no round trip spent on a ping


def test_a_dead_connection_used_at_once_fails_typed_and_the_next_call_works(
    quiet: Workspace, monkeypatch: Any
) -> None:
    ws = quiet
    cmdc_nb.accounts.create_user("before@example.com", ws=ws)
    monkeypatch.setattr(_engine, "PING_IDLE_S", 3600.0)  # nothing counts as idle: no ping saves it
    kill_pool(ws)
    with pytest.raises(StorageError) as caught:
        cmdc_nb.accounts.create_user("lost@example.com", ws=ws)
    assert "Traceback" not in str(caught.value)
    made = cmdc_nb.accounts.create_user("again@example.com", ws=ws)  # the pool dropped the dead one
    assert cmdc_nb.accounts.get_user(made.id, ws=ws).email == "again@example.com"


def test_a_round_on_a_dropped_connection_fails_typed_and_quietly(
    quiet: Workspace, monkeypatch: Any, caplog: pytest.LogCaptureFixture, capsys: pytest.CaptureFixture[str]
) -> None:
    """A stored round's pipeline on a connection the server dropped: a StorageError (not SQLAlchemy's
    PendingRollbackError), nothing of it kept, no driver warning naming the server, and the next
    round works on a new connection."""
    ws = quiet
    from cmdc_nb.services.agents import rounds

    user = cmdc_nb.accounts.create_user("r@example.com", ws=ws)
    session = cmdc_nb.sessions.create_session(user, name="dropped", ws=ws)
    done = {"response_content": "r", "response_blocks": [], "stop_reason": "stop", "tokens_in": 1,
            "tokens_out": 1, "cache_tokens_read": 0, "cache_tokens_write": 0, "cost_usd": None}  # fmt: skip

    def a_round() -> None:
        draft = rounds.CallDraft(
            session_id=session.id, user_id=user.id, model="scripted/x", provider="scripted",
            prompt_messages=[], system_prompt=None, temperature=None, max_tokens=None,
            tools_provided=[], meta={},
        )  # fmt: skip
        with ws.transaction() as tx:
            rounds.record_call_in(
                tx, draft, done, None, cell=None, message=rounds.NewMessage("assistant", "m")
            )

    a_round()
    monkeypatch.setattr(_engine, "PING_IDLE_S", 3600.0)
    kill_pool(ws)
    with pytest.raises(StorageError):
        a_round()
    assert "error ignored" not in caplog.text + capsys.readouterr().err
    # the pool's other connections died too: once idle (here: at once), each is pinged and replaced
    monkeypatch.setattr(_engine, "PING_IDLE_S", 0.0)
    a_round()
    s = cmdc_nb.sessions.get_session(session.id, ws=ws)
    assert s.message_count == len(cmdc_nb.sessions.list_messages(session.id, ws=ws).entries) == 2
