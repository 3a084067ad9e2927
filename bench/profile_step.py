"""What a workflow step costs the database: transactions and statements per step, and a profile.

Runs the `bench_workflows` DAG (10 lanes of no-op `transform` steps) once in this process with
SQLAlchemy listeners counting commits and statements (by kind: SELECT, INSERT, UPDATE, …), then
prints them per step; `--profile` adds a cProfile of the run (top functions by cumulative time).

Run: `.venv/bin/python bench/profile_step.py [--pg URL] [--steps 200] [--profile]`
(`--pg` profiles PostgreSQL instead of a fresh SQLite file; `--no-share` turns the event log off).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _profiling import ThreadProfiles
from bench_workflows import spec

import cmdc_nb
from cmdc_nb import accounts
from cmdc_nb import workflows as wf


class Counter:
    """Commits and statements (by their first SQL word) seen on an engine."""

    def __init__(self, engine: sa.Engine) -> None:
        self.commits = 0
        self.statements: collections.Counter[str] = collections.Counter()
        sa.event.listen(engine, "commit", self._commit)
        sa.event.listen(engine, "before_cursor_execute", self._execute)

    def _commit(self, _conn: Any) -> None:
        self.commits += 1

    def _execute(self, _conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        self.statements[statement.lstrip().split(None, 1)[0].upper()] += 1

    def reset(self) -> None:
        self.commits = 0
        self.statements.clear()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default=None)
    ap.add_argument("--steps", type=int, default=200)
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--no-share", action="store_true")
    ap.add_argument("--top", type=int, default=40)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp())
    url = args.pg or f"sqlite:///{home / 'wf.db'}"
    ws = cmdc_nb.connect(url, home=home, make_default=False, share_events=not args.no_share and bool(args.pg))
    me = accounts.create_user(f"profile-{time.time_ns()}@example.com", ws=ws)
    w = wf.create_workflow(me, spec(args.steps), ws=ws)
    asyncio.run(wf.arun_workflow(w, ws=ws))  # warm: imports, caches, prepared statements

    counter = Counter(ws.engine)
    prof = ThreadProfiles() if args.profile else None
    t = time.perf_counter()
    if prof is not None:
        prof.enable()
    run = asyncio.run(wf.arun_workflow(w, ws=ws))
    if prof is not None:
        prof.disable()
    elapsed = time.perf_counter() - t
    assert run.status == "completed", run.error_message
    n = args.steps
    print(f"{ws.backend}: {n} steps, {elapsed * 1000 / n:.2f} ms a step")
    print(f"  commits a step: {counter.commits / n:.2f}")
    total = sum(counter.statements.values())
    print(f"  statements a step: {total / n:.2f}")
    for kind, k in counter.statements.most_common():
        print(f"    {kind:<10} {k / n:6.2f}")
    if prof is not None:
        out = io.StringIO()
        prof.stats(out).sort_stats("tottime").print_stats(args.top)
        print(out.getvalue())
    ws.close()


if __name__ == "__main__":
    main()
