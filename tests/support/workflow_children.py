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


@wf.register_step_function("keyed.effect")
def keyed_effect(name: str, ledger: str, log: str, ctx: wf.StepContext) -> str:
    """A step with two effects outside the database. Unguarded: a line in `log` on every execution
    (with the key, attempt and pid it ran with). Keyed: a line in `ledger`, appended only if no line
    carries this step's idempotency key yet — the key is written in the same line as the effect, so a
    kill lands either before both or after both."""
    with open(log, "a", encoding="utf-8") as f:
        f.write(
            f"{ctx.run_id} {ctx.step_id} {os.getpid()} {ctx.idempotency_key} {ctx.attempt} "
            f"{int(ctx.resumed)}\n"
        )
    sys.stdout.write(f"START {ctx.step_id}\n")
    sys.stdout.flush()
    time.sleep(random.uniform(0.02, 0.06))  # the work before the effect: a kill here leaves none
    apply_once(ledger, ctx.idempotency_key, f"{ctx.run_id} {ctx.step_id} {os.getpid()}")
    time.sleep(random.uniform(0.05, 0.08))  # a kill here lands after the effect, before the outcome
    return name


def apply_once(ledger: str, key: str, effect: str) -> bool:
    """Append `key effect` to the ledger unless the key is there already. One step runs in one process
    at a time (its lease), so checking first cannot race with another execution of the same key; the
    line is one write() of an O_APPEND file, so it is there whole or not at all."""
    try:
        with open(ledger, encoding="utf-8") as f:
            if any(line.split(" ", 1)[0] == key for line in f):
                return False
    except FileNotFoundError:
        pass
    fd = os.open(ledger, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, f"{key} {effect}\n".encode())
    finally:
        os.close(fd)
    return True


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
    return {"n": n, "pid": os.getpid(), "met": len(list(here.iterdir())), "key": ctx.idempotency_key}


@scheduling.register_job_handler("team.tick")
def team_tick(ctx: scheduling.JobContext) -> dict[str, Any]:
    """A scheduled job for the worker test: says which process ran it."""
    return {"pid": os.getpid()}


def _random_dag(n_steps: int, seed: int) -> list[tuple[str, list[str]]]:
    """Step ids and dependencies: each step depends on one or two earlier ones (fixed seed), so runs
    mix chains, fan-outs and joins."""
    rnd = random.Random(seed)
    return [
        (f"s{i:02d}", sorted({f"s{rnd.randrange(i):02d}" for _ in range(rnd.choice((1, 2)))}) if i else [])
        for i in range(n_steps)
    ]


def crash_spec(n_steps: int = 20, seed: int = 7) -> dict[str, Any]:
    """A DAG of transactional steps whose effect commits with their outcome (`crash.effect`)."""
    steps = [
        wf.step(
            sid,
            fn="crash.effect",
            depends_on=deps,
            transactional=True,
            args={"name": sid, "log": "{{ input.log }}"},
        )
        for sid, deps in _random_dag(n_steps, seed)
    ]
    return {"name": "crash test", "steps": steps}


def keyed_spec(n_steps: int = 8, seed: int = 7) -> dict[str, Any]:
    """A DAG of plain python steps with effects outside the database (`keyed.effect`)."""
    steps = [
        wf.step(
            sid,
            fn="keyed.effect",
            depends_on=deps,
            args={"name": sid, "ledger": "{{ input.ledger }}", "log": "{{ input.log }}"},
        )
        for sid, deps in _random_dag(n_steps, seed)
    ]
    return {"name": "keyed effects", "steps": steps}


def main(argv: list[str]) -> int:
    command, url, home, run_id = argv[:4]
    ws = cmdc_nb.connect(url, home=home, migrate=False)
    if command == "execute":
        run = asyncio.run(wf.execute_workflow_run(run_id, max_concurrency=3, ws=ws))
        print(f"DONE {run.status}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
