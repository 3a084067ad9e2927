"""Step functions and child-process entry points for the workflow crash and worker tests.

Imported by the tests (which registers the step functions in the test process) and run as a script
in child processes: `python tests/support/workflow_children.py execute <db-url> <home> <run-id> <log>`.
"""

from __future__ import annotations

import asyncio
import os
import random
import sys
import time
from typing import Any

import sqlalchemy as sa
from waiting import CEILING_S

import cmdc_nb
from cmdc_nb import scheduling
from cmdc_nb import workflows as wf

EFFECTS_DDL = "CREATE TABLE IF NOT EXISTS crash_effects (run_id VARCHAR(64) NOT NULL, step_id VARCHAR(64) NOT NULL, pid INTEGER NOT NULL)"


@wf.register_step_function("crash.effect")
def effect(name: str, log: str, ctx: wf.StepContext) -> str:
    """A side effect committed with the step's outcome (a transactional step), plus an invocation log
    written outside the transaction, so the test can tell "ran again" from "applied twice"."""
    sys.stdout.write(f"START {ctx.step_id}\n")  # one write: threads printing at once never split a line
    sys.stdout.flush()
    with open(log, "a", encoding="utf-8") as f:
        f.write(f"{ctx.run_id} {ctx.step_id} {os.getpid()}\n")
    time.sleep(random.uniform(0.002, 0.02))
    assert ctx.tx is not None
    ctx.tx.db.execute(
        sa.text("INSERT INTO crash_effects (run_id, step_id, pid) VALUES (:r, :s, :p)"),
        {"r": str(ctx.run_id), "s": ctx.step_id, "p": os.getpid()},
    )
    time.sleep(random.uniform(0, 0.01))  # a kill may land after the write, before the commit
    return name


@wf.register_step_function("fanout.work")
def work(n: int, meet_dir: str, ctx: wf.StepContext) -> dict[str, Any]:
    """Checks in, then waits until two different processes have checked in (at most 30 s): the run can
    only finish quickly if two workers really share it."""
    from pathlib import Path

    here = Path(meet_dir)
    (here / str(os.getpid())).touch()
    deadline = time.monotonic() + CEILING_S
    while len(list(here.iterdir())) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    return {"n": n, "pid": os.getpid(), "met": len(list(here.iterdir()))}


@scheduling.register_job_handler("team.tick")
def team_tick(ctx: scheduling.JobContext) -> dict[str, Any]:
    """A scheduled job for the worker test: says which process ran it."""
    return {"pid": os.getpid()}


def crash_spec(n_steps: int = 20, seed: int = 7) -> dict[str, Any]:
    """A 20-step DAG: each step depends on one or two earlier ones (fixed seed), so runs mix chains,
    fan-outs and joins."""
    rnd = random.Random(seed)
    steps = []
    for i in range(n_steps):
        deps = sorted({f"s{rnd.randrange(i):02d}" for _ in range(rnd.choice((1, 2)))}) if i else []
        steps.append(
            wf.step(
                f"s{i:02d}",
                fn="crash.effect",
                depends_on=deps,
                transactional=True,
                args={"name": f"s{i:02d}", "log": "{{ input.log }}"},
            )
        )
    return {"name": "crash test", "steps": steps}


def main(argv: list[str]) -> int:
    command, url, home, run_id = argv[:4]
    ws = cmdc_nb.connect(url, home=home, migrate=False)
    if command == "execute":
        run = asyncio.run(wf.execute_workflow_run(run_id, max_concurrency=3, ws=ws))
        print(f"DONE {run.status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
