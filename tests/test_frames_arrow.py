"""Frames read as Arrow through ADBC (the `fast-frames` extra) are the frames read row by row: the same
columns, dtypes and values, compared column by column on both backends, with the edge cases that could
tell them apart — no rows, missing values, non-ASCII text, money near its limit, times at midnight,
across daylight-saving changes and before 1970, filters and cuts. And when Arrow is not the way (an
in-memory database, inside a write transaction, a driver that cannot connect), frames are read row by
row and say nothing of the password."""

from __future__ import annotations

import datetime as dt
import logging
import sqlite3
import uuid
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pandas as pd
import pytest
import sqlalchemy as sa
from psycopg.conninfo import conninfo_to_dict

import cmdc_nb
from cmdc_nb import accounts, agents, costs, frames, sessions
from cmdc_nb.services.frames import adbc
from cmdc_nb.store._engine import normalise_url
from cmdc_nb.store.models import CostRecord, User
from cmdc_nb.workspace import Workspace

UTC = dt.UTC
FAR = dt.datetime(2100, 1, 1, tzinfo=UTC)


@pytest.fixture
def arrow_reads(monkeypatch: pytest.MonkeyPatch) -> list[bool]:
    """One entry per frame that tried the Arrow path: whether Arrow answered."""
    seen: list[bool] = []
    real = adbc.read_arrow

    def spy(found: Any, stmt: Any, dialect: Any) -> Any:
        table = real(found, stmt, dialect)
        seen.append(table is not None)
        return table

    monkeypatch.setattr(adbc, "read_arrow", spy)
    return seen


def assert_same(fast: pd.DataFrame, slow: pd.DataFrame) -> None:
    assert list(fast.columns) == list(slow.columns)
    assert len(fast) == len(slow)
    for col in slow.columns:
        assert fast[col].dtype == slow[col].dtype, (col, fast[col].dtype, slow[col].dtype)
        pd.testing.assert_series_equal(fast[col], slow[col], check_exact=True, obj=col)
        assert fast[col].isna().tolist() == slow[col].isna().tolist(), col
        assert fast[col].astype(object).where(fast[col].notna(), None).tolist() == (
            slow[col].astype(object).where(slow[col].notna(), None).tolist()
        ), col


def compare(fn: Callable[..., pd.DataFrame], **kw: Any) -> pd.DataFrame:
    with adbc.forced_fallback():
        slow = fn(**kw)
    fast = fn(**kw)
    assert_same(fast, slow)
    return fast


# The times a frame must not shift: both sides of midnight UTC, a Berlin time in the hour after clocks
# went forward, both New York 1:30s of the night clocks went back, a fraction before 1970.
TIMES = [
    dt.datetime(2026, 3, 28, 23, 59, 59, 999999, tzinfo=UTC),
    dt.datetime(2026, 3, 29, 0, 0, tzinfo=UTC),
    dt.datetime(2026, 3, 29, 3, 30, 0, 1, tzinfo=ZoneInfo("Europe/Berlin")),
    dt.datetime(2026, 11, 1, 1, 30, tzinfo=ZoneInfo("America/New_York")),
    dt.datetime(2026, 11, 1, 1, 30, fold=1, tzinfo=ZoneInfo("America/New_York")),
    dt.datetime(1969, 12, 31, 23, 59, 59, 500000, tzinfo=UTC),
]


def populate(ws: Workspace, user: User) -> dict[str, Any]:
    odd = sessions.create_session(user, name="Ünïcode 模型", tags=["exp", "ünï", 'q"uote,{x}'], ws=ws)
    plain = sessions.create_session(user, name="plain", ws=ws)
    money = ["0.000000000001", "9000000.123456789012", None, "0", "12.5", "0.333333333333"]
    models = ["gpt-4o", "模型-ü", "mystery/x", "claude", "gpt-4o", "llama 3"]
    for i, at in enumerate(TIMES):
        costs.record_cost(
            user, source_type="agent_call", source_id=uuid.uuid4(), provider="openai" if i % 2 else "提供者",
            model=models[i], cost_usd=money[i], tokens_in=i * 1000, tokens_out=i, cache_tokens_read=i % 3,
            session=odd if i % 2 else (plain if i == 2 else None), incurred_at=at,
            notebook_cell="In[✓ 3]" if i == 1 else None, ws=ws,
        )  # fmt: skip
    # past the SQLite driver's default batch of 1,024 rows, a column missing in every one of them, then
    # given: the driver must not take it for integers
    with ws.transaction() as tx:
        tx.db.execute(
            sa.insert(CostRecord),
            [
                {
                    "id": uuid.uuid4(), "user_id": user.id, "source_type": "tool_execution",
                    "source_id": uuid.uuid4(), "provider": "local", "service": "chat", "model": f"m{i % 7}",
                    "tokens_in": i, "tokens_out": 0, "cost_usd": Decimal(i) / 1000,
                    "incurred_at": dt.datetime(2026, 5, 1, tzinfo=UTC) + dt.timedelta(seconds=i),
                    "day": dt.date(2026, 5, 1), "session_id": plain.id if i == 1099 else None,
                    "notebook_cell": "In[9]" if i == 1099 else None,
                }
                for i in range(1100)
            ],
        )  # fmt: skip
    bob = accounts.create_user("bob@example.com", ws=ws)
    costs.record_cost(bob, source_type="agent_call", source_id=uuid.uuid4(), provider="x", model="y", ws=ws)
    call = agents.create_agent_call(odd, model="openai/gpt-4o-mini", ws=ws)
    agents.start_streaming(call, ws=ws)
    tu = agents.create_tool_use(call, tool_name="grep ✓", requires_approval=True, ws=ws)
    agents.approve_tool_use(tu, by=user, ws=ws)
    agents.start_tool_execution(tu, ws=ws)
    agents.complete_tool_use(tu, exit_code=0, ws=ws)
    agents.complete_agent_call(call, tokens_in=10, tokens_out=5, ws=ws)
    failed = agents.create_agent_call(plain, model="openai/gpt-4o", ws=ws)
    agents.fail_agent_call(failed, error_type="RateLimitError", ws=ws)
    sessions.create_message(odd, role="user", content="héllo — 你好 🌍", token_count=3, ws=ws)
    sessions.create_message(odd, role="assistant", content="", ws=ws)
    return {"odd": odd, "plain": plain, "bob": bob}


def test_arrow_frames_equal_row_by_row_frames_column_by_column(
    ws: Workspace, user: User, arrow_reads: list[bool]
) -> None:
    made = populate(ws, user)
    odd, plain = made["odd"], made["plain"]
    midnight = dt.datetime(2026, 3, 29, tzinfo=UTC)
    everything = compare(frames.costs_frame, ws=ws)
    assert len(everything) == len(TIMES) + 1100 + 2  # and Bob's, and the agent call's
    assert everything["cost_usd"].max() == Decimal("9000000.123456789012")
    assert everything["incurred_at"].min() == pd.Timestamp("1969-12-31 23:59:59.5", tz="UTC")
    mine = compare(frames.costs_frame, user=user, ws=ws)
    assert set(mine["user_id"]) == {str(user.id)}
    # three recorded in that session, and the agent call's
    assert len(compare(frames.costs_frame, session=odd, ws=ws)) == 4
    assert len(compare(frames.costs_frame, tags=["ünï"], ws=ws)) == 4
    assert len(compare(frames.costs_frame, tags=['q"uote,{x}', "nope"], ws=ws)) == 4
    around = compare(frames.costs_frame, since=midnight - dt.timedelta(microseconds=1), until=midnight, ws=ws)
    assert around["incurred_at"].tolist() == [pd.Timestamp(TIMES[0])]
    compare(frames.costs_frame, since=midnight, until=dt.datetime(2026, 11, 2, tzinfo=UTC), ws=ws)
    slim = compare(frames.costs_frame, columns=["day", "model", "cost_usd", "priced"], user=user, ws=ws)
    assert slim["priced"].sum() == len(slim) - 1
    empty = compare(frames.costs_frame, since=FAR, ws=ws)
    assert len(empty) == 0 and list(empty.columns) == list(frames.COST_COLUMNS)
    nobody = compare(frames.costs_frame, user=str(uuid.UUID(int=0)), ws=ws)
    assert len(nobody) == 0
    for cut in (
        lambda df: frames.by_day(df, by="model"),
        frames.by_model,
        frames.by_session,
        frames.unit_costs,
    ):
        with adbc.forced_fallback():
            slow = cut(frames.costs_frame(user=user, ws=ws))
        assert_same(cut(frames.costs_frame(user=user, ws=ws)), slow)
    calls = compare(frames.calls_frame, ws=ws)
    assert calls["error_type"].dropna().tolist() == ["RateLimitError"]
    compare(frames.calls_frame, session=plain, ws=ws)
    compare(frames.calls_frame, since=FAR, ws=ws)
    tools = compare(frames.tool_uses_frame, ws=ws)
    assert tools["requires_approval"].tolist() == [True] and tools["tool_name"].tolist() == ["grep ✓"]
    compare(frames.tool_uses_frame, since=FAR, ws=ws)
    msgs = compare(frames.messages_frame, tags=["exp"], ws=ws)
    assert msgs["content"].tolist() == ["héllo — 你好 🌍", ""]
    compare(frames.messages_frame, since=FAR, ws=ws)
    compare(frames.activity_frame, user=user, ws=ws)
    compare(frames.activity_frame, session=odd, ws=ws)
    compare(frames.activity_frame, since=FAR, ws=ws)
    ses = compare(frames.sessions_frame, ws=ws)
    assert "Ünïcode 模型" in ses["name"].tolist() and ses["parent_session_id"].isna().all()
    compare(frames.sessions_frame, tags=["ünï"], ws=ws)
    compare(frames.sessions_frame, since=FAR, ws=ws)
    assert arrow_reads and all(arrow_reads), arrow_reads  # every fast read above went through Arrow


def test_inside_a_write_transaction_a_frame_sees_its_uncommitted_rows(
    ws: Workspace, user: User, arrow_reads: list[bool]
) -> None:
    costs.record_cost(user, source_type="agent_call", source_id=uuid.uuid4(), provider="p", model="m", ws=ws)
    with ws.transaction():
        costs.record_cost(
            user, source_type="agent_call", source_id=uuid.uuid4(), provider="p", model="m", ws=ws
        )
        assert len(frames.costs_frame(ws=ws)) == 2  # a second connection would see one
    assert arrow_reads == []
    assert len(frames.costs_frame(ws=ws)) == 2 and arrow_reads == [True]


def test_an_in_memory_database_is_read_row_by_row(home_dir: Path, arrow_reads: list[bool]) -> None:
    with cmdc_nb.connect("sqlite://", home=home_dir, make_default=False) as mem:
        ada = accounts.create_user("ada@example.com", ws=mem)
        costs.record_cost(
            ada, source_type="agent_call", source_id=uuid.uuid4(), provider="p", model="m", ws=mem
        )
        df = frames.costs_frame(ws=mem)
    assert len(df) == 1 and str(df["incurred_at"].dtype) == "datetime64[us, UTC]"
    assert arrow_reads == []


@pytest.mark.parametrize("backend", ["sqlite"])
def test_a_sqlite_workspace_another_connection_is_writing_is_read_as_committed(
    ws: Workspace, user: User, arrow_reads: list[bool]
) -> None:
    costs.record_cost(user, source_type="agent_call", source_id=uuid.uuid4(), provider="p", model="m", ws=ws)
    writer = sqlite3.connect(ws.url.database or "", isolation_level=None)
    try:
        writer.execute("BEGIN IMMEDIATE")  # holds the write lock, with a row not yet committed
        writer.execute(
            "INSERT INTO cost_records (id, user_id, source_type, source_id, provider, service, model, "
            "incurred_at, day, inserted_at, updated_at, metadata) SELECT ?, user_id, source_type, ?, provider, "
            "service, 'pending', incurred_at, day, inserted_at, updated_at, metadata FROM cost_records",
            (uuid.uuid4().hex, uuid.uuid4().hex),
        )
        assert frames.costs_frame(ws=ws)["model"].tolist() == ["m"]
        writer.execute("COMMIT")
        assert sorted(frames.costs_frame(ws=ws)["model"]) == ["m", "pending"]
    finally:
        writer.close()
    assert arrow_reads == [True, True]


def test_a_workspace_in_a_folder_with_uri_characters_is_read_through_arrow(
    tmp_path: Path, home_dir: Path, arrow_reads: list[bool]
) -> None:
    folder = tmp_path / "a b?c#d%20"
    folder.mkdir()
    url = sa.engine.URL.create("sqlite", database=str(folder / "ws.db"))  # a URL string cannot hold '?'
    with cmdc_nb.connect(url, home=home_dir, make_default=False) as odd:
        ada = accounts.create_user("ada@example.com", ws=odd)
        costs.record_cost(
            ada, source_type="agent_call", source_id=uuid.uuid4(), provider="p", model="m", ws=odd
        )
        assert frames.costs_frame(ws=odd)["model"].tolist() == ["m"]
    assert arrow_reads == [True]
    assert not (tmp_path / "a b").exists()  # nothing was created at a truncated path


def test_driver_targets() -> None:
    def target(url: str | sa.engine.URL) -> str | None:
        parsed = normalise_url(url)
        return adbc.driver_target(parsed, sa.create_engine(parsed, poolclass=sa.pool.NullPool).dialect)

    for memory in ("sqlite://", "sqlite:///:memory:", "sqlite:///file::memory:?uri=true",
                   "sqlite:///file:x?mode=memory&cache=shared&uri=true"):  # fmt: skip
        assert target(memory) is None, memory
    assert (
        target(sa.engine.URL.create("sqlite", database="/tmp/a b?c#/x.db")) == "file:/tmp/a%20b%3Fc%23/x.db"
    )
    assert target("sqlite:///rel.db") == "file:" + str(Path("rel.db").absolute())
    assert target("sqlite:///file:/tmp/x.db?mode=ro&uri=true") == "file:/tmp/x.db?mode=ro"
    conninfo = target("postgresql+psycopg://ada:p%40ss%20w%3Ard'%5C@db.internal:6543/team?sslmode=disable")
    assert conninfo is not None
    assert conninfo_to_dict(conninfo) == {
        "host": "db.internal", "port": "6543", "dbname": "team", "user": "ada", "password": "p@ss w:rd'\\",
        "sslmode": "disable",
    }  # fmt: skip
    assert conninfo_to_dict(target("postgres://ada@localhost/db") or "")["dbname"] == "db"


def test_a_driver_that_cannot_connect_is_logged_once_without_the_password_and_frames_still_load(
    ws: Workspace, user: User, arrow_reads: list[bool], monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture, home_dir: Path,
) -> None:  # fmt: skip
    secret = "hunter2-sekrit"
    costs.record_cost(user, source_type="agent_call", source_id=uuid.uuid4(), provider="p", model="m", ws=ws)
    if ws.backend == "postgresql":  # the test server trusts local connections: any password is let in
        url = ws.url.set(password=secret)
        real = adbc.driver_target
        # the workspace's own connection string, password and all, at a port nothing listens on
        monkeypatch.setattr(adbc, "driver_target", lambda u, d: (real(u, d) or "") + " port=1")
    else:
        url = ws.url
        monkeypatch.setattr(adbc, "driver_target", lambda u, d: f"file:/nonexistent/{secret}/ws.db?mode=ro")
    with (
        cmdc_nb.connect(url, home=home_dir, make_default=False) as other,
        caplog.at_level(logging.DEBUG, logger="cmdc_nb.frames"),
    ):
        first = frames.costs_frame(ws=other)
        second = frames.costs_frame(ws=other)
    assert first["model"].tolist() == second["model"].tolist() == ["m"]
    assert arrow_reads == [False]  # the second read did not try a driver that could not connect
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "cannot connect" in warnings[0].getMessage(), caplog.text
    assert secret not in caplog.text or ws.backend == "sqlite"  # SQLite's target has no password


def test_a_frame_read_while_the_driver_connection_is_busy_is_read_row_by_row(
    ws: Workspace, user: User, arrow_reads: list[bool]
) -> None:
    costs.record_cost(user, source_type="agent_call", source_id=uuid.uuid4(), provider="p", model="m", ws=ws)
    assert len(frames.costs_frame(ws=ws)) == 1
    busy = adbc._readers[ws.engine]
    with busy._lock:  # as while another thread's frame is being read on it
        assert frames.costs_frame(ws=ws)["model"].tolist() == ["m"]
    assert arrow_reads == [True, False]
    ws.close()
    assert ws.engine not in adbc._readers  # closing the workspace closed its driver connection
