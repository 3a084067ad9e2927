"""Durability: runs killed with SIGKILL at a random step and resumed lose no completed step and apply
no side effect twice — on both backends."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import random
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import workflow_children as children  # tests/ is on sys.path; importing registers the step functions

from cmdc_nb import workflows as wf
from cmdc_nb.errors import ConfigurationError
from cmdc_nb.store.models import User
from cmdc_nb.workspace import Workspace

CHILD = Path(children.__file__)
RUNS = 20
STEPS = 20
LIVENESS = 120.0


def _kill_at_random_step(url: str, home: Path, run_id: str, kill_at: int, extra_delay: float) -> int:
    """Execute the run in a child process and SIGKILL it once `kill_at` steps have started."""
    proc = subprocess.Popen(
        [sys.executable, str(CHILD), "execute", url, str(home), run_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    assert proc.stdout is not None
    started = 0
    for line in proc.stdout:
        if line.startswith("START"):
            started += 1
            if started == kill_at:
                if extra_delay:
                    import time

                    time.sleep(extra_delay)
                proc.send_signal(signal.SIGKILL)
                break
    proc.wait(timeout=LIVENESS)
    return proc.pid


def test_sigkill_at_a_random_step_then_resume_loses_nothing_and_repeats_nothing(
    ws: Workspace, user: User, db_url: str, home_dir: Path, tmp_path: Path
) -> None:
    with ws.transaction() as tx:
        tx.db.execute(sa.text(children.EFFECTS_DDL))
    w = wf.create_workflow(user, children.crash_spec(STEPS), ws=ws)
    log = tmp_path / "invocations.log"
    runs = [wf.start_workflow_run(w, input={"log": str(log)}, ws=ws) for _ in range(RUNS)]
    rnd = random.Random(2026)
    plans = [(str(r.id), rnd.randint(1, STEPS), rnd.choice((0, 0, 0.005, 0.02))) for r in runs]

    with ThreadPoolExecutor(4) as pool:
        pids = dict(
            zip(
                [p[0] for p in plans],
                pool.map(lambda p: _kill_at_random_step(db_url, home_dir, *p), plans),
                strict=True,
            )
        )

    completed_at_kill: dict[str, set[str]] = {}
    finished_before_kill = 0
    for run in runs:
        steps = wf.list_workflow_steps(run, ws=ws)
        completed_at_kill[str(run.id)] = {s.step_id for s in steps if s.status == "completed"}
        status = wf.get_workflow_run(run, ws=ws).status
        assert status != "failed"
        finished_before_kill += status == "completed"  # a kill aimed at the last step may land after it
    assert finished_before_kill <= 3  # the others died mid-run

    for run in runs:
        if wf.get_workflow_run(run, ws=ws).status != "completed":
            wf.resume_workflow_run(run, ws=ws)
        done = wf.get_workflow_run(run, ws=ws)
        assert done.status == "completed", (done.status, done.error_message)
        assert sorted(done.completed_step_ids) == [f"s{i:02d}" for i in range(STEPS)]

    with ws.read() as db:
        effects = Counter(db.execute(sa.text("SELECT run_id, step_id FROM crash_effects")).all())
    # Every step of every run applied its side effect exactly once: nothing lost, nothing twice.
    assert len(effects) == RUNS * STEPS
    assert set(effects.values()) == {1}
    # Steps completed before the kill never ran again (the invocation log is written outside the
    # transaction, so it also shows the steps that were cut off and ran twice — those applied once).
    invocations = Counter(
        (r, s, int(p)) for r, s, p in (line.split() for line in log.read_text().splitlines())
    )
    me = os.getpid()
    for run_id, done_steps in completed_at_kill.items():
        assert not [s for s in done_steps if (run_id, s, me) in invocations]
        assert all(invocations[(run_id, s, pids[run_id])] == 1 for s in done_steps)
    total_killed_mid_step = sum(1 for (r, s, p) in invocations if p == me and (r, s, pids[r]) in invocations)
    assert total_killed_mid_step >= 1  # the test did cut steps off in the middle
    assert sum(len(x) for x in completed_at_kill.values()) > 0
    print(  # shown with -s: what the kills hit
        f"{RUNS} runs × {STEPS} steps: {sum(len(x) for x in completed_at_kill.values())} steps completed "
        f"before the kills, {total_killed_mid_step} cut off mid-step and run again, "
        f"{len(effects)} effects applied once each"
    )


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_two_worker_processes_complete_a_fan_out_dag_with_a_gate(
    ws: Workspace, user: User, db_url: str, home_dir: Path, tmp_path: Path
) -> None:
    """Two `cmdc-nb worker` processes share a run (and the due scheduled jobs); this process drives
    the run and hears of the workers' progress as events through the database."""
    from cmdc_nb import scheduling
    from cmdc_nb.workflows import workers

    jobs = [
        scheduling.create_scheduled_job(
            user, name=f"tick {i}", run_at=dt.datetime.now(dt.UTC), job_config={"handler": "team.tick"}, ws=ws
        )
        for i in range(4)
    ]
    remote: list[Any] = []
    ws.bus.subscribe("workflow_run:*", lambda e: remote.append(e) if e.origin is not None else None)

    meet = tmp_path / "meet"
    meet.mkdir()
    fan = [f"w{i}" for i in range(6)]
    w = wf.create_workflow(
        user,
        {
            "name": "fan-out",
            "steps": [
                wf.step("go", "approval", title="Start the fan-out?"),
                *(
                    wf.step(f, fn="fanout.work", depends_on="go", args={"n": i, "meet_dir": str(meet)})
                    for i, f in enumerate(fan)
                ),
                wf.step(
                    "sum",
                    "transform",
                    depends_on=fan,
                    value="{{ [" + ", ".join(f"steps.{f}.output.n" for f in fan) + "] | sum }}",
                ),
            ],
        },
        ws=ws,
    )
    workers._ensure_schema(ws, workers.make_app(ws))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(CHILD.parent), os.environ.get("PYTHONPATH", "")])}
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "cmdc_nb",
                "--url",
                db_url,
                "--home",
                str(home_dir),
                "worker",
                "--concurrency",
                "1",
                "--load",
                "workflow_children",
            ],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for _ in range(2)
    ]
    try:
        run = await asyncio.wait_for(
            wf.arun_workflow(w, executor="workers", stop_when_blocked=True, ws=ws), LIVENESS
        )
        assert run.status == "waiting_approval"
        wf.approve_workflow_step(run, "go", note="go", ws=ws)
        run = await asyncio.wait_for(wf.execute_workflow_run(run, executor="workers", ws=ws), LIVENESS)
        for _ in range(int(LIVENESS * 10)):  # the workers' schedulers run the due jobs meanwhile
            done = [scheduling.list_job_runs(j, ws=ws).entries for j in jobs]
            if all(r and r[0].finished_at is not None for r in done):
                break
            await asyncio.sleep(0.1)
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        logs = [p.communicate(timeout=LIVENESS)[0] for p in procs]
    assert run.status == "completed", (run.error_message, logs)
    assert run.output == {"sum": sum(range(6))}
    outputs = [wf.get_workflow_step(run, f, ws=ws).output for f in fan]
    worker_pids = {p.pid for p in procs}
    assert {o["pid"] for o in outputs} == worker_pids  # both workers ran steps, and only they did
    assert all(o["met"] >= 2 for o in outputs)
    assert all(s.status == "completed" for s in wf.list_workflow_steps(run, ws=ws))
    assert all(p.returncode == 0 for p in procs), logs
    # the steps' progress reached this process as events committed by the workers
    assert {e.type for e in remote} >= {"workflow_step_started", "workflow_step_completed"}
    # each due job ran exactly once, on one of the workers
    for job in jobs:
        runs = scheduling.list_job_runs(job, ws=ws).entries
        assert [r.status for r in runs] == ["success"], logs
        assert runs[0].output["pid"] in worker_pids


@pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
def test_workers_need_postgresql(ws: Workspace, user: User) -> None:
    w = wf.create_workflow(user, {"name": "x", "steps": [wf.step("a", "transform", value=1)]}, ws=ws)
    with pytest.raises(ConfigurationError, match="worker processes need a PostgreSQL workspace"):
        wf.run_workflow(w, executor="workers", ws=ws)
