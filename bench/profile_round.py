"""What a stored agent round costs the database: transactions and statements per round, and a profile.

Runs bench/peers/cmdc_loop.py's loop (scripted zero-latency model, one trivial tool call per round,
stored to a session) once to warm up, then again with SQLAlchemy listeners counting transactions (by
commit; read-only ones apart) and statements (by their first SQL word: SELECT, INSERT, UPDATE, …), and
prints them per round. `--profile` adds a cProfile of the timed run over every thread (the database
work runs in worker threads): the share of CPU time by package (sqlalchemy, litellm, the drivers,
cmdc_nb, asyncio, …) and the top functions by own time.

Run: `.venv/bin/python bench/profile_round.py [--pg URL] [--rounds 100] [--profile]`
(`--pg` profiles a fresh database on that PostgreSQL server instead of a fresh SQLite file; the
default server is $CMDC_BENCH_PG_URL when `--pg` is given without a value).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import concurrent.futures
import io
import os
import pstats
import sys
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent / "peers"))
import cmdc_loop
from _profiling import ThreadProfiles

from cmdc_nb import accounts
from cmdc_nb.services.agents import round_statements

# On PostgreSQL a round's writes are calls of the schema's functions (migrations 0015–0017): SELECTs that write.
WRITING_FUNCTIONS = ("cmdc_end_tool_use(", "cmdc_record_call(", "_logged(")


class Counter:
    """Transactions (committed; those that wrote nothing counted apart; a write that is one statement
    on an autocommit connection, PostgreSQL's `round_statements`, counted as one) and statements by
    kind. A one-statement write sent from the loop's async connection never passes SQLAlchemy's
    listeners: it is counted where it is run."""

    def __init__(self, engine: sa.Engine) -> None:
        self.writes = 0
        self.reads = 0
        self.single = 0  # of the writes: one statement each, no BEGIN/COMMIT
        self.statements: collections.Counter[str] = collections.Counter()
        self._wrote: dict[int, bool] = {}
        sa.event.listen(engine, "begin", self._begin)
        sa.event.listen(engine, "commit", self._commit)
        sa.event.listen(engine, "rollback", self._commit)
        sa.event.listen(engine, "before_cursor_execute", self._execute)
        run, run_async = round_statements.run, round_statements.run_async

        def counted(w: Any, plan: Any) -> Any:
            found = run(w, plan)  # its statement is seen by the listener
            if found is not round_statements.NOT_HERE:
                self.writes += 1
                self.single += 1
            return found

        async def counted_async(w: Any, plan: Any) -> Any:
            found = await run_async(w, plan)
            if found is not round_statements.NOT_HERE:
                self.writes += 1
                self.single += 1
                self.statements["SELECT"] += 1
            return found

        round_statements.run, round_statements.run_async = counted, counted_async  # type: ignore[assignment]

    def _begin(self, conn: Any) -> None:
        self._wrote[id(conn)] = False

    def _commit(self, conn: Any) -> None:
        if self._wrote.pop(id(conn), False):
            self.writes += 1
        else:
            self.reads += 1

    def _execute(self, conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        kind = statement.lstrip().split(None, 1)[0].upper()
        if kind in ("BEGIN", "COMMIT", "ROLLBACK"):
            return  # the transaction itself, counted above
        self.statements[kind] += 1
        if kind in ("INSERT", "UPDATE", "DELETE") or any(f in statement for f in WRITING_FUNCTIONS):
            self._wrote[id(conn)] = True

    def reset(self) -> None:
        self.writes = self.reads = self.single = 0
        self.statements.clear()


PACKAGES = (
    ("sqlalchemy", "/sqlalchemy/"),
    ("litellm", "/litellm/"),
    ("psycopg", "/psycopg"),
    ("cmdc_nb", "/cmdc_nb/"),
    ("asyncio", "/asyncio/"),
    ("threading / queue", "/threading.py"),
    ("json", "/json/"),
    ("pydantic", "/pydantic"),
)


IDLE = ("'poll' of", "'get' of '_queue", "'acquire' of", "sleep", "'select' of")


def shares(stats: pstats.Stats) -> list[tuple[str, float]]:
    """Own time by package, as fractions of the whole, leaving out threads' waits (IDLE). C functions
    count as `built-in (C)`, but sqlite3's execute and commit apart."""
    total: collections.Counter[str] = collections.Counter()
    for (path, _line, name), row in stats.stats.items():  # type: ignore[attr-defined]
        tottime = row[2]
        label = "other Python"
        if path == "~" and any(w in name for w in IDLE):
            continue  # a thread waiting (for the worker, the event loop's selector): not CPU
        if path == "~":
            label = "sqlite3 (C)" if "sqlite3" in name else "built-in (C)"
        else:
            for pkg, marker in PACKAGES:
                if marker in path:
                    label = pkg
                    break
        total[label] += tottime
    whole = sum(total.values()) or 1.0
    return [(k, v / whole) for k, v in total.most_common()]


async def measure(args: argparse.Namespace) -> None:
    mode = "postgres" if args.pg else "sqlite"
    if args.pg:
        os.environ[cmdc_loop.PG_ENV] = args.pg
    with cmdc_loop.workspace(mode) as ws:
        user = accounts.create_user("profile@example.com", ws=ws)
        await cmdc_loop.run(10, True, ws, user)  # warm: imports, caches, prepared statements
        counter = Counter(ws.engine)
        prof = ThreadProfiles() if args.profile else None
        # A fresh default executor: its threads start inside the timed run, so the profile sees them
        # (the warm-up's threads, started before, would be left out).
        asyncio.get_running_loop().set_default_executor(concurrent.futures.ThreadPoolExecutor())
        before = cmdc_loop.stored_bytes(ws)
        counter.reset()
        t = time.perf_counter()
        if prof is not None:
            prof.enable()
        await cmdc_loop.run(args.rounds, True, ws, user)
        if prof is not None:
            prof.disable()
        elapsed = time.perf_counter() - t
        grown = cmdc_loop.stored_bytes(ws) - before
    n = args.rounds
    total = sum(counter.statements.values())
    print(f"{mode}: {n} rounds, {elapsed * 1000 / n:.2f} ms a round (profiler {'on' if prof else 'off'})")
    print(
        f"  transactions a round: {counter.writes / n:.2f} writing ({counter.single / n:.2f} of them one"
        f" statement, no BEGIN/COMMIT), {counter.reads / n:.2f} read-only"
    )
    print(f"  statements a round: {total / n:.2f}")
    for kind, k in counter.statements.most_common():
        print(f"    {kind:<10} {k / n:6.2f}")
    print(f"  bytes stored: {grown / 1e6:.3f} MB for the run ({grown / n:.0f} B a round)")
    if prof is not None:
        out = io.StringIO()
        stats = prof.stats(out)
        print("  CPU time by package (own time):")
        for label, share in shares(stats):
            print(f"    {label:<18} {share * 100:5.1f} %")
        stats.sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", nargs="?", const=os.environ.get(cmdc_loop.PG_ENV), default=None)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--top", type=int, default=30)
    asyncio.run(measure(ap.parse_args()))


if __name__ == "__main__":
    main()
