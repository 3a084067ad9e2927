"""Upgrading from every earlier schema version, with data, on both backends.

A database at head is filled through the public services (users and a vault credential, sessions with
messages and a fork, agent calls and tool uses, approvals and rules, costs over two days, prices and a
budget, a finished workflow run, a RAG index, artifact versions, a scheduled job, presence, the audit
log). For each earlier revision, a blank database is migrated to that revision, receives every row its
tables can hold, and is then opened with `connect()`, which migrates it to head. Afterwards every copied
row is still there unchanged, what later revisions derive from old rows (the cost rollups, the chunks'
full-text index) equals what head keeps for new ones, and the services go on working on the old data.

A second test SIGKILLs `connect()` in the middle of a migration (inside a revision's DDL) and checks
that the database is left exactly at its old revision with its data, and that the next run completes."""

from __future__ import annotations

import datetime as dt
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import warnings
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from reliability import record, sized

import cmdc_nb
from cmdc_nb import (
    accounts,
    agents,
    approvals,
    artifacts,
    budgets,
    costs,
    frames,
    presence,
    pricing,
    rag,
    scheduling,
    sessions,
)
from cmdc_nb import workflows as wf
from cmdc_nb.store import event_log
from cmdc_nb.store.migrate import current_revision, upgrade
from cmdc_nb.store.migrations import HEAD
from cmdc_nb.workspace import Workspace
from tests.conftest import drop_pg_database, fresh_pg_database

# Tables whose rows are not copied: the ledger, and SQLite's FTS5 tables (kept by triggers and by the
# ingestion; what a migration must derive for them is checked through search).
SKIP = ("alembic_version", "messages_fts", "chunks_fts")
DAY2 = dt.datetime(2026, 11, 2, 12, tzinfo=dt.UTC)


def revisions() -> list[str]:
    from alembic.script import ScriptDirectory

    from cmdc_nb.store.migrate import _config

    return sorted(r.revision for r in ScriptDirectory.from_config(_config()).walk_revisions())


EARLIER = [r for r in revisions() if r != HEAD]


@pytest.fixture
def blank(backend: str, tmp_path: Path) -> Iterator[Callable[[], str]]:
    """Makes blank databases on `backend`; drops them afterwards."""
    made: list[tuple[str, sa.Engine]] = []

    def make() -> str:
        if backend == "sqlite":
            return f"sqlite:///{tmp_path / f'blank{len(made)}_{random.randrange(10**9)}.db'}"
        url, admin = fresh_pg_database(None)
        made.append((url, admin))
        return url

    yield make
    for url, admin in made:
        drop_pg_database(url, admin)


def populate(ws: Workspace) -> dict[str, Any]:
    """Some of everything, through the services. Returns what the checks need to find again."""
    ada = accounts.create_user("ada@example.com", name="Ada", ws=ws)
    cred = accounts.create_api_credential(
        ada, name="main", provider="openai", api_key="sk-migrate-0123456789", ws=ws
    )
    s = sessions.create_session(ada, name="research", ws=ws)
    msgs = [
        sessions.create_message(s, role=role, content=text, ws=ws)
        for role, text in [
            ("user", "tell me about the zebrafish genome"),
            ("assistant", "The zebrafish genome has 25 chromosomes."),
            ("user", "and its size?"),
        ]
    ]
    sessions.fork_session(s, msgs[1], name="side quest", ws=ws)
    call = agents.create_agent_call(s, model="gpt-4o-mini", provider="openai", ws=ws)
    tu = agents.create_tool_use(call, tool_name="search", input={"q": "zebrafish"}, tool_use_id="t1", ws=ws)
    agents.start_tool_execution(tu, ws=ws)
    agents.complete_tool_use(tu, output="25 chromosomes", ws=ws)
    agents.complete_agent_call(call, tokens_in=120, tokens_out=30, ws=ws)
    approvals.create_approval_rule(ada, name="reads", action="approve", tool_names=["search"], ws=ws)
    approvals.create_approval_item(
        ada, approval_type="custom", title="publish the summary", payload={"to": "blog"}, session=s, ws=ws
    )
    pricing.set_model_price("gpt-4o-mini", input_per_million_usd="0.15", output_per_million_usd="0.60", ws=ws)
    budgets.create_budget(name="monthly", limit_usd=25, user=ada, ws=ws)
    for k, at in enumerate([DAY2, DAY2 + dt.timedelta(days=1), DAY2 + dt.timedelta(days=1, hours=2)]):
        costs.record_cost(
            ada,
            source_type="agent_call",
            source_id=call.id,
            provider="openai",
            model="gpt-4o-mini" if k else "gpt-4o",
            tokens_in=1000 * (k + 1),
            tokens_out=100,
            cost_usd=None if k == 2 else Decimal("0.0123") * (k + 1),
            session=s,
            incurred_at=at,
            notebook_cell=None,
            ws=ws,
        )
    w = wf.create_workflow(
        ada,
        {"name": "double", "steps": [wf.step("a", "transform", value="{{ input.n * 2 }}")]},
        ws=ws,
    )
    wf.run_workflow(w, ada, input={"n": 21}, ws=ws)
    idx = rag.create_index(ada, "notes", ws=ws)
    rag.ingest(
        idx,
        texts=[
            {"uri": "fish.md", "text": "Zebrafish are small freshwater fish."},
            {"uri": "cats.md", "text": "Cats purr."},
        ],
        progress=False,
        ws=ws,
    )
    a = artifacts.create_artifact(ada, name="notes.md", content="one\n", session=s, ws=ws)
    artifacts.create_artifact_version(a, content="one\ntwo\n", ws=ws)
    scheduling.create_scheduled_job(ada, interval_seconds=3600, job_config={"handler": "noop"}, ws=ws)
    presence.join_resource(ada, "session", s.id, client_id="lab-1", ws=ws)
    return {"user": ada.id, "session": s.id, "credential": cred.id, "index": idx.id, "workflow": w.id}


def _raw_engine(url: str) -> sa.Engine:
    # Plain SQLAlchemy (not cmdc_nb's engine): SQLite without foreign-key enforcement, so rows can be
    # copied table by table; PostgreSQL has it switched off per session below.
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


def copy_rows(src_url: str, dst_url: str) -> dict[str, int]:
    """Every row of `src` that `dst`'s (older) tables can hold, column for column."""
    counts: dict[str, int] = {}
    src, dst = _raw_engine(src_url), _raw_engine(dst_url)
    try:
        with src.connect() as sc, dst.begin() as dc:
            if dc.dialect.name == "postgresql":
                dc.exec_driver_sql("SET session_replication_role = replica")  # no FK triggers while copying
            smeta, dmeta = sa.MetaData(), sa.MetaData()
            smeta.reflect(sc)
            dmeta.reflect(dc)
            with warnings.catch_warnings():  # FK cycles (sessions ↔ messages ↔ calls): checks are off
                warnings.simplefilter("ignore", sa.exc.SAWarning)
                tables = dmeta.sorted_tables
            for t in tables:
                if t.name.startswith(SKIP):
                    continue
                s = smeta.tables[t.name]
                cols = [c.name for c in t.columns if c.computed is None]
                if t.name == "event_log" and "events" in s.c and "events" not in t.c:
                    rows = _events_as_rows(sc, s)  # before 0013: a row an event
                else:
                    rows = [dict(r) for r in sc.execute(sa.select(*(s.c[c] for c in cols))).mappings()]
                if rows:
                    dc.execute(sa.insert(t), rows)
                counts[t.name] = len(rows)
                if (
                    dc.dialect.name == "postgresql"
                    and rows
                    and "id" in t.c
                    and isinstance(t.c.id.type, sa.Integer)
                ):
                    # as a restore would: move an identity column's sequence past the copied ids
                    dc.execute(
                        sa.text(
                            "SELECT setval(pg_get_serial_sequence(:t, 'id'), (SELECT max(id) FROM "
                            f'"{t.name}"' + ")) WHERE pg_get_serial_sequence(:t, 'id') IS NOT NULL"
                        ),
                        {"t": t.name},
                    )
            if "chunks_fts" in dmeta.tables:
                # The ingestion writes chunks_fts itself (no trigger), so a database at a revision that
                # has the table holds the rows of its chunks: copy them as they are.
                fts = sc.exec_driver_sql("SELECT rowid, content, chunk_id, index_id FROM chunks_fts").all()
                for row in fts:
                    dc.exec_driver_sql(
                        "INSERT INTO chunks_fts (rowid, content, chunk_id, index_id) VALUES (?, ?, ?, ?)",
                        tuple(row),
                    )
    finally:
        src.dispose()
        dst.dispose()
    return counts


def _events_as_rows(conn: sa.Connection, table: sa.Table) -> list[dict[str, Any]]:
    """Head's event-log batches as the rows of the layout before 0013 (one an event, ids in order)."""
    rows: list[dict[str, Any]] = []
    for r in conn.execute(sa.select(table).order_by(table.c.id)):
        for topic, type_, payload in event_log.decode(r.events):
            rows.append(
                {"id": len(rows) + 1, "topic": topic, "type": type_, "payload": payload,
                 "origin": r.origin, "inserted_at": r.inserted_at}
            )  # fmt: skip
    return rows


def logged(url: str) -> list[tuple[int, str, str, Any]]:
    """The event log as (id, topic, type, payload), in either layout."""
    eng = _raw_engine(url)
    try:
        with eng.connect() as c:
            t = sa.Table("event_log", sa.MetaData(), autoload_with=c)
            out = []
            for r in c.execute(sa.select(t).order_by(t.c.id)):
                if "events" in t.c:
                    out += [(r.id, tp, ty, p) for tp, ty, p in event_log.decode(r.events)]
                else:
                    out.append((r.id, r.topic, r.type, _plain(r.payload)))
            return out
    finally:
        eng.dispose()


def snapshot(
    url: str, tables: list[str], columns: dict[str, list[str]] | None = None
) -> dict[str, list[str]]:
    """Each table's rows as sorted canonical JSON (columns of the table at that revision, or `columns`:
    a later revision may add a column, which old rows do not fill)."""
    eng = _raw_engine(url)
    out: dict[str, list[str]] = {}
    try:
        with eng.connect() as c:
            meta = sa.MetaData()
            meta.reflect(c, only=tables)
            for name in tables:
                t = meta.tables[name]
                cols = sorted(col.name for col in t.columns if col.computed is None)
                if columns is not None and columns.get(name):
                    cols = [k for k in cols if k in columns[name]]
                out[name] = sorted(
                    json.dumps({k: _plain(r[k]) for k in cols}, sort_keys=True, default=str)
                    for r in c.execute(sa.select(*(t.c[k] for k in cols))).mappings()
                )
    finally:
        eng.dispose()
    return out


def _columns_of(rows: list[str]) -> list[str]:
    return sorted(json.loads(rows[0])) if rows else []


def _plain(value: Any) -> Any:
    if isinstance(value, str) and value[:1] in "[{":
        try:
            return json.loads(value)  # SQLite hands JSON back as text
        except ValueError:
            return value
    return value


def check_upgraded(url: str, home: Path, expect: dict[str, Any], source: Workspace) -> None:
    """Services work on the migrated data exactly as on the source."""
    ws = cmdc_nb.connect(url, home=home)
    try:
        with ws.engine.connect() as c:
            assert current_revision(c) == HEAD
        uid, sid = expect["user"], expect["session"]
        assert accounts.get_decrypted_key(expect["credential"], ws=ws) == "sk-migrate-0123456789"
        hist = sessions.get_conversation_history(sid, limit=None, roles=None, ws=ws)
        assert [m.sequence for m in hist] == [1, 2, 3]
        assert sessions.create_message(sid, role="user", content="go on", ws=ws).sequence == 4
        assert [h.uri for h in rag.search(expect["index"], "zebrafish", mode="text", ws=ws)] == ["fish.md"]
        assert rag.search(expect["index"], "zebrafish", mode="hybrid", ws=ws)[0].uri == "fish.md"
        assert sessions.search_messages("zebrafish", user=uid, ws=ws)  # the messages' full-text index
        daily = frames.daily_costs(user=uid, by="model", ws=ws)
        want = frames.daily_costs(user=uid, by="model", ws=source)
        assert daily.to_dict("records") == want.to_dict("records")
        for day in (DAY2.date(), DAY2.date() + dt.timedelta(days=1)):
            s = costs.get_daily_summary(uid, day, ws=ws)
            t = costs.get_daily_summary(uid, day, ws=source)
            assert s is not None and t is not None
            assert (s.total_cost_usd, s.total_requests) == (t.total_cost_usd, t.total_requests)
        run = wf.run_workflow(expect["workflow"], uid, input={"n": 4}, ws=ws)
        assert run.status == "completed"
        assert wf.get_workflow_step(run, "a", ws=ws).output == 8
        assert approvals.count_pending_approvals(uid, ws=ws) == 1
    finally:
        ws.close()


@pytest.mark.parametrize("rev", EARLIER)
def test_upgrading_from_an_earlier_revision_keeps_every_row_and_derives_the_rest(
    rev: str, ws: Workspace, db_url: str, blank: Callable[[], str], home_dir: Path
) -> None:
    expect = populate(ws)
    old = blank()
    eng = cmdc_nb.store._engine.create_engine(old)
    upgrade(eng, rev)
    eng.dispose()
    copied = copy_rows(db_url, old)
    assert copied["messages"] >= 3 and copied["cost_records"] >= 3
    tables = sorted(set(copied) - {"event_log"})  # its layout changes (0013): compared as events below
    before = snapshot(old, tables)
    events = logged(old) if copied.get("event_log") else []  # events are shared (logged) on PostgreSQL
    assert len(events) >= 5 or ws.backend == "sqlite" or "event_log" not in copied

    cmdc_nb.connect(old, home=home_dir).close()  # migrates to head

    after = snapshot(old, tables, columns={t: _columns_of(rows) for t, rows in before.items()})
    if events:  # every event kept, with its id: a batch of one each
        assert logged(old)[: len(events)] == events
    for table in before:
        assert after[table] == before[table], f"{table} changed by the upgrade from {rev}"
    check_upgraded(old, home_dir, expect, ws)
    # What later revisions derive from old rows equals what head keeps for rows written at head.
    derived = [t for t in ("cost_rollups",) if t not in copied]
    if derived:
        assert snapshot(old, derived) == snapshot(db_url, derived)
    record(
        "migrations",
        f"upgrade_{ws.backend}_from_{rev}",
        {"rows": sum(copied.values()), "tables": len(copied)},
    )


KILLER = textwrap.dedent(
    """
    import sys, time
    from alembic.operations import Operations
    import cmdc_nb

    real = Operations.create_table

    def slow_create_table(self, *a, **kw):
        print("ddl", a[0], flush=True)  # inside the migration's transaction
        time.sleep(0.3)
        return real(self, *a, **kw)

    Operations.create_table = slow_create_table
    cmdc_nb.connect(sys.argv[1], home=sys.argv[2])
    print("done", flush=True)
    """
)


def test_a_migration_killed_midway_leaves_the_old_revision_and_the_rerun_completes(
    ws: Workspace, db_url: str, blank: Callable[[], str], home_dir: Path
) -> None:
    expect = populate(ws)
    trials = sized(2, 6)
    rng = random.Random(11)
    killed_in: list[str] = []
    for _ in range(trials):
        old = blank()
        eng = cmdc_nb.store._engine.create_engine(old)
        upgrade(eng, "0002")
        eng.dispose()
        copied = copy_rows(db_url, old)
        before = snapshot(old, sorted(copied))
        child = subprocess.Popen(
            [sys.executable, "-c", KILLER, old, str(home_dir)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        assert child.stdout is not None
        stop_at = rng.randint(1, 5)  # 0003 makes two tables, 0004, 0006 and 0007 one each
        for _ in range(stop_at):
            line = child.stdout.readline()
            assert line.startswith("ddl"), (line, child.stderr.read() if child.stderr else "")
        child.send_signal(signal.SIGKILL)
        child.wait()
        killed_in.append(line.split()[1])
        with _raw_engine(old).connect() as c:
            assert current_revision(c) == "0002"  # all or nothing
            assert not sa.inspect(c).has_table("budgets")
        assert snapshot(old, sorted(copied)) == before
        check_upgraded(old, home_dir, expect, ws)  # the re-run completes
    record("migrations", f"kill_{ws.backend}", {"trials": trials, "killed_while_creating": killed_in})
