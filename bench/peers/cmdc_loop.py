"""cmdc_nb's agent loop: a scripted (zero-latency) model, one trivial tool per round, stored to a session
(calls, tool uses, messages, costs, audit, events) on SQLite or PostgreSQL — or kept in memory.

Run with the project's venv. Prints one JSON line: {"ms_per_round": …, "bytes": …}.
Arguments: rounds, then `sqlite` (a fresh file), `postgres` (a fresh database on the server in
CMDC_BENCH_PG_URL, dropped at the end) or `memory`. One warm-up run of 10 rounds first (not timed).
litellm is not preloaded (see below). `bytes` is what the timed run added to the database: the SQLite file's growth (after a WAL checkpoint),
or the growth of the sum of pg_total_relation_size over the tables on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
# The loop's steady state, as the peers are measured: importing the kernel otherwise starts loading
# litellm in a background thread (for a first real call), which holds the GIL through the timed rounds
# (7.9 against 28–36 ms a stored round here). Its one-off cost is the start-up scenario's to measure.
os.environ.setdefault("CMDC_NB_PRELOAD", "0")

import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import accounts, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call

PG_ENV = "CMDC_BENCH_PG_URL"


@tool
def noop(i: int) -> int:
    """Return i."""
    return i


@contextlib.contextmanager
def workspace(mode: str) -> Iterator[Any]:
    """A fresh workspace for `mode` (a new SQLite file, or a new database on the PostgreSQL server)."""
    if mode != "postgres":
        ws = cmdc_nb.connect(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
        try:
            yield ws
        finally:
            ws.close()
        return
    server = sa.make_url(os.environ[PG_ENV])
    name = f"cmdc_bench_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    try:
        ws = cmdc_nb.connect(server.set(database=name))
        try:
            yield ws
        finally:
            ws.close()
    finally:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.dispose()


def stored_bytes(ws: Any) -> int:
    """The database's size as the note counts it (see the module docstring)."""
    if ws.backend == "sqlite":
        raw = ws.engine.raw_connection()  # the driver's own, outside SQLAlchemy's BEGIN IMMEDIATE
        try:
            for _ in range(1000):  # busy while the workspace's own checkpoint runs: ask again
                if not raw.cursor().execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
                    break
                time.sleep(0.005)
        finally:
            raw.close()
        return Path(ws.engine.url.database).stat().st_size
    with ws.engine.connect() as conn:
        return int(
            conn.exec_driver_sql(
                "SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c "
                "JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE c.relkind = 'r' AND n.nspname = 'public'"
            ).scalar_one()
        )


async def run(rounds: int, store: bool, ws: Any, user: Any) -> float:
    script = Script(
        [
            *(Turn(tool_calls=[call("noop", i=k)], usage=(10, 2)) for k in range(rounds)),
            Turn("done", usage=(10, 1)),
        ]
    )
    session = sessions.create_session(user, name="bench", ws=ws) if store else None
    agent = Agent(
        model=script.model,
        tools=[noop],
        session=session,
        ws=ws,
        max_turns=rounds + 5,
        max_identical_tool_calls=rounds + 5,
    )
    t = time.perf_counter()
    reply = await agent.prompt("go")
    elapsed = time.perf_counter() - t
    assert reply == "done"
    return elapsed / rounds * 1000


async def main(rounds: int, mode: str) -> None:
    with workspace(mode) as ws:
        user = accounts.create_user("bench@example.com", ws=ws)
        store = mode != "memory"
        await run(10, store, ws, user)
        before = stored_bytes(ws) if store else 0
        ms = await run(rounds, store, ws, user)
        grown = stored_bytes(ws) - before if store else 0
    print(json.dumps({"ms_per_round": ms, "bytes": grown}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2]))
