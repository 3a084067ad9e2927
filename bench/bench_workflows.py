"""Workflow scheduling overhead: a 1,000-step DAG of no-op steps.

The DAG: 10 lanes × 100 steps, each step depending on the one before it in its lane (990 edges, up to
10 steps ready at once). Every step is a `transform` with a constant value, so what is timed is the
engine alone: claiming a step under its lease, recording its outcome, advancing the run and finding
what became ready — committed before any dependant starts, as the durability guarantees require (one
transaction a step along a chain; `bench/profile_step.py` counts them).

Measured, median of 3 runs each, per step:
- in-process on SQLite and on PostgreSQL (`executor="local"`, default concurrency 4);
- on PostgreSQL with two `cmdc-nb worker` processes (`executor="workers"`, procrastinate jobs);
- the floor: the bare commits the engine cannot do without (two single-row UPDATE transactions per
  step — claim and complete — through SQLAlchemy on the same database).

Run: `.venv/bin/python bench/bench_workflows.py [--pg URL] [--steps 1000]`; writes the `workflows`
section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ratio_goal, write_goals, write_section

import cmdc_nb
from cmdc_nb import accounts
from cmdc_nb import workflows as wf

RUNS = 3
LANES = 10


def spec(steps: int) -> dict[str, Any]:
    depth = steps // LANES
    return {
        "name": f"bench {steps} steps",
        "steps": [
            wf.step(f"l{lane}s{d}", "transform", value=d, depends_on=[f"l{lane}s{d - 1}"] if d else [])
            for lane in range(LANES)
            for d in range(depth)
        ],
    }


def floor_ms(ws: cmdc_nb.Workspace, steps: int) -> float:
    """Two committed single-row UPDATEs per step: the least a durable engine must write."""
    table = sa.Table(
        "bench_floor",
        sa.MetaData(),
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("n", sa.Integer),
    )
    with ws.engine.begin() as c:
        table.drop(c, checkfirst=True)
        table.create(c)
        c.execute(sa.insert(table), [{"id": i, "n": 0} for i in range(steps)])
    t = time.perf_counter()
    for i in range(steps):
        for _ in range(2):
            with ws.engine.begin() as c:
                c.execute(sa.update(table).where(table.c.id == i).values(n=table.c.n + 1))
    elapsed = time.perf_counter() - t
    with ws.engine.begin() as c:
        table.drop(c)
    return elapsed * 1000 / steps


def in_process(ws: cmdc_nb.Workspace, w: Any) -> float:
    t = time.perf_counter()
    run = asyncio.run(wf.arun_workflow(w, ws=ws))
    elapsed = time.perf_counter() - t
    assert run.status == "completed", run.error_message
    return elapsed


def start_workers(url: str, home: Path, n: int = 2) -> list[subprocess.Popen[str]]:
    return [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cmdc_nb",
                "--url",
                url,
                "--home",
                str(home),
                "worker",
                "--concurrency",
                "4",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        for _ in range(n)
    ]


def on_workers(ws: cmdc_nb.Workspace, w: Any) -> float:
    t = time.perf_counter()
    run = asyncio.run(wf.arun_workflow(w, executor="workers", ws=ws))
    elapsed = time.perf_counter() - t
    assert run.status == "completed", run.error_message
    return elapsed


def goals(steps: int, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Issue 26: a step in-process ≤ 3× the two-commit floor on each backend (PostgreSQL as it runs by
    default, events shared; the row without them is context), and worker mode ≤ 2× in-process."""
    by = {r["label"]: r for r in rows}
    no_pg = "not measured (no PostgreSQL URL)"
    out = []
    for backend in ("SQLite", "PostgreSQL"):
        r = by.get(backend)
        row = ratio_goal(
            f"{backend}: a step of a {steps:,}-step DAG in-process, × the two-commit floor",
            3,
            r and r["local"],
            r and r["floor"],
            "ms",
            why=no_pg,
        )
        quiet = by.get("PostgreSQL, events not shared")
        if backend == "PostgreSQL" and r and quiet:  # SQLite's own row shares no events
            row["measured"] += f"; events not shared {quiet['local'] / quiet['floor']:.2f}×"
        out.append(row)
    r = by.get("PostgreSQL")
    out.append(
        ratio_goal(
            f"PostgreSQL: a step on two worker processes, × in-process ({steps:,} steps)",
            2,
            r and r["remote"],
            r and r["local"],
            "ms",
            why=no_pg,
        )
    )
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default=os.environ.get("CMDC_TEST_PG_URL"))
    ap.add_argument("--steps", type=int, default=1000)
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp())
    targets = [("SQLite", f"sqlite:///{home / 'wf.db'}", False)]
    if args.pg:  # team mode's event log is on by default on PostgreSQL: measured with it and without
        targets += [("PostgreSQL", args.pg, True), ("PostgreSQL, events not shared", args.pg, False)]
    rows = []
    for label, url, share in targets:
        ws = cmdc_nb.connect(url, home=home, make_default=False, share_events=share)
        me = accounts.create_user(f"bench-{time.time_ns()}@example.com", ws=ws)
        t = time.perf_counter()
        w = wf.create_workflow(me, spec(args.steps), ws=ws)
        save_s = time.perf_counter() - t
        procs = start_workers(url, home) if share else []
        try:
            if procs:
                from cmdc_nb.workflows import workers

                workers._ensure_schema(ws, workers.make_app(ws))
            local, remote, floor = [], [], []
            for _ in range(RUNS):  # alternate, so machine noise hits each alike
                local.append(in_process(ws, w) * 1000 / args.steps)
                if procs:
                    remote.append(on_workers(ws, w) * 1000 / args.steps)
                floor.append(floor_ms(ws, args.steps))
        finally:
            for p in procs:
                p.send_signal(signal.SIGTERM)
            for p in procs:
                p.wait(timeout=60)
        ws.close()
        row = {
            "label": label,
            "save_s": save_s,
            "local": statistics.median(local),
            "remote": statistics.median(remote) if remote else None,
            "floor": statistics.median(floor),
        }
        print(row)
        rows.append(row)

    lines = [
        f"## Workflows: scheduling a {args.steps:,}-step DAG of no-op steps (`bench/bench_workflows.py`)",
        "",
        f"{LANES} lanes × {args.steps // LANES} steps, each depending on the previous step of its lane; every step a "
        f"constant `transform`. Milliseconds per step, median of {RUNS} runs (the modes alternate). The floor is two "
        "committed single-row UPDATEs per step (claim and complete) on the same database: the least a durable "
        "engine writes.",
        "",
        "| backend | in-process | × floor | two worker processes | × floor | floor | validating + saving the spec |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in rows:
        remote = f"{r['remote']:.2f} | {r['remote'] / r['floor']:.1f}" if r["remote"] else "— | —"
        lines.append(
            f"| {r['label']} | {r['local']:.2f} | {r['local'] / r['floor']:.1f} | {remote} | {r['floor']:.2f} | "
            f"{r['save_s']:.2f} s |"
        )
    write_section("workflows", "\n".join(lines))
    write_goals("workflows", goals(args.steps, rows), quick=args.steps < 1000)


if __name__ == "__main__":
    main()
