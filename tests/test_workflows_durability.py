"""Durability: runs killed with SIGKILL at a random step and resumed lose no completed step and run no
completed step again; the step running at the kill may run again (at-least-once), under the same
idempotency key, so effects recorded with the step's transaction or keyed by it apply once — on both
backends."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import workflow_children as children  # tests/ is on sys.path; importing registers the step functions
from reliability import record, sized
from worker_procs import start_worker

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


KEYED_RUNS = sized(3, 40)  # one SIGKILL each
KEYED_STEPS = 8
# Where the kill lands after a step printed START: before its effect, or after it and before its outcome.
KILL_DELAYS = (0, 0.03, 0.06)


def test_a_step_cut_off_by_sigkill_runs_again_under_the_same_key_and_its_keyed_effect_applies_once(
    ws: Workspace, user: User, db_url: str, home_dir: Path, tmp_path: Path, backend: str
) -> None:
    """At-least-once, measured: the step running at a kill runs again on resume (its unguarded effect
    repeats), with the key its killed execution had, so its keyed effect is still applied once."""
    w = wf.create_workflow(user, children.keyed_spec(KEYED_STEPS), ws=ws)
    ledger, log = tmp_path / "ledger", tmp_path / "invocations.log"
    runs = [
        wf.start_workflow_run(w, input={"ledger": str(ledger), "log": str(log)}, ws=ws)
        for _ in range(KEYED_RUNS)
    ]
    rnd = random.Random(24)
    plans = [(str(r.id), rnd.randint(1, KEYED_STEPS), rnd.choice(KILL_DELAYS)) for r in runs]
    with ThreadPoolExecutor(4) as pool:
        killed = list(pool.map(lambda p: _kill_at_random_step(db_url, home_dir, *p), plans))
    completed_at_kill = _completed(ws, runs)

    for run in runs:
        if wf.get_workflow_run(run, ws=ws).status != "completed":
            wf.resume_workflow_run(run, ws=ws)
        done = wf.get_workflow_run(run, ws=ws)
        assert done.status == "completed", (done.status, done.error_message)

    figures = _keyed_figures(
        log,
        ledger,
        killed={run_id: pid for (run_id, *_), pid in zip(plans, killed, strict=True)},
        resumer={str(r.id): os.getpid() for r in runs},
        completed_at_kill=completed_at_kill,
    )
    record("workflow_idempotency", backend, figures)
    print(figures)  # shown with -s


WORKER_KILLS = sized(1, 5)


@pytest.mark.postgres
@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
async def test_a_step_cut_off_by_killing_its_worker_runs_on_another_worker_under_the_same_key(
    ws: Workspace, user: User, db_url: str, home_dir: Path, tmp_path: Path
) -> None:
    """The same contract with `executor="workers"`: a worker is SIGKILLed mid-step, the run is resumed,
    and a second worker runs the step again with the key the first had."""
    from cmdc_nb.workflows import workers

    w = wf.create_workflow(user, children.keyed_spec(KEYED_STEPS), ws=ws)
    ledger, log = tmp_path / "ledger", tmp_path / "invocations.log"
    workers._ensure_schema(ws, workers.make_app(ws))
    rnd = random.Random(25)
    killed: dict[str, int] = {}
    resumer: dict[str, int] = {}
    completed_at_kill: set[tuple[str, str]] = set()
    for _ in range(WORKER_KILLS):
        run = wf.start_workflow_run(w, input={"ledger": str(ledger), "log": str(log)}, ws=ws)
        first = _worker(db_url, home_dir, tmp_path / "first.err")
        driver = asyncio.create_task(wf.execute_workflow_run(run, executor="workers", ws=ws))
        kill_at, delay = rnd.randint(1, KEYED_STEPS), rnd.choice(KILL_DELAYS)
        await asyncio.to_thread(_sigkill_after_starts, first, kill_at, delay)
        driver.cancel()  # it would wait for ever: nothing hands back a dead worker's step but a resume
        with contextlib.suppress(asyncio.CancelledError):
            await driver
        killed[str(run.id)] = first.pid
        completed_at_kill |= _completed(ws, [run])
        second = _worker(db_url, home_dir, tmp_path / "second.err")
        try:
            if wf.get_workflow_run(run, ws=ws).status != "completed":  # the kill may land after the end
                await asyncio.wait_for(wf.resume_workflow_run(run, executor="workers", ws=ws), LIVENESS)
            done = wf.get_workflow_run(run, ws=ws)
        finally:
            second.send_signal(signal.SIGTERM)
            second.communicate(timeout=LIVENESS)
        assert done.status == "completed", (done.status, done.error_message)
        resumer[str(run.id)] = second.pid

    figures = _keyed_figures(log, ledger, killed=killed, resumer=resumer, completed_at_kill=completed_at_kill)
    record("workflow_idempotency", "postgresql_workers", figures)
    print(figures)  # shown with -s


def _worker(url: str, home: Path, stderr: Path) -> subprocess.Popen[str]:
    return start_worker(url, home, stderr, load="workflow_children")


def _sigkill_after_starts(proc: subprocess.Popen[str], n: int, delay: float) -> None:
    """SIGKILL `proc` `delay` seconds after it printed its `n`th START line."""
    assert proc.stdout is not None
    started = 0
    for line in proc.stdout:
        started += line.startswith("START")
        if started == n:
            time.sleep(delay)
            break
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=LIVENESS)
    proc.stdout.close()


def _completed(ws: Workspace, runs: list[Any]) -> set[tuple[str, str]]:
    return {
        (str(run.id), s.step_id)
        for run in runs
        for s in wf.list_workflow_steps(run, ws=ws)
        if s.status == "completed"
    }


def _keyed_figures(
    log: Path,
    ledger: Path,
    *,
    killed: dict[str, int],
    resumer: dict[str, int],
    completed_at_kill: set[tuple[str, str]],
) -> dict[str, int]:
    """Check the contract on what the `keyed.effect` steps wrote, and count what happened: `killed`
    and `resumer` are the pids that ran each run before and after its kill."""
    executions: dict[tuple[str, str], list[tuple[int, str, int, bool]]] = {}
    for line in log.read_text().splitlines():
        run_id, step_id, pid, key, attempt, resumed = line.split()
        executions.setdefault((run_id, step_id), []).append((int(pid), key, int(attempt), resumed == "1"))
    assert len(executions) == len(killed) * KEYED_STEPS  # every step of every run ran
    rerun = {k: x for k, x in executions.items() if len(x) > 1}
    for (run_id, step_id), [cut_off, *again] in rerun.items():
        # cut off by the kill, then run once more after the resume: same key, same attempt
        assert cut_off == (killed[run_id], f"{run_id}:{step_id}", 1, False)
        assert again == [(resumer[run_id], f"{run_id}:{step_id}", 1, True)]
    assert not completed_at_kill & rerun.keys()  # a completed step never runs again
    assert rerun  # the kills did cut steps off: their unguarded effect happened twice

    applied = [tuple(line.split()) for line in ledger.read_text().splitlines()]
    effects = Counter((run_id, step_id) for _key, run_id, step_id, _pid in applied)
    assert effects.keys() == executions.keys()
    figures = {
        "kills": len(killed),
        "steps_rerun_after_kill": len(rerun),
        "reruns_with_same_key": sum(1 for x in rerun.values() if len({k for _p, k, _a, _r in x}) == 1),
        # the kill fell after the effect: the re-run found its key in the ledger and did nothing
        "reruns_finding_effect_applied": sum(
            1 for _k, r, s, pid in applied if (r, s) in rerun and int(pid) == killed[r]
        ),
        "keyed_side_effects": sum(effects.values()),
        "duplicate_keyed_effects": sum(n - 1 for n in effects.values()),
    }
    assert figures["reruns_with_same_key"] == figures["steps_rerun_after_kill"]
    assert figures["duplicate_keyed_effects"] == 0  # every keyed effect applied once, across every kill
    return figures


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
    assert [o["key"] for o in outputs] == [f"{run.id}:{f}" for f in fan]  # the same key as in-process
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


@pytest.mark.parametrize("backend", ["postgresql"], indirect=True)
def test_workers_reach_a_database_whose_password_libpq_would_not_parse_in_a_url(
    db_url: str, home_dir: Path
) -> None:
    """The workers' connection string is libpq's own quoting of the engine's arguments: a password with
    a space, '@', '/' or '#' connects (the test server trusts loopback, so any password does) and is
    never spelled out in a URL libpq refuses — and quotes, password and all, in its error."""
    import psycopg

    import cmdc_nb
    from cmdc_nb.workflows import workers

    secret = "p@ss w:rd/#1"
    ws = cmdc_nb.connect(sa.make_url(db_url).set(password=secret), home=home_dir, make_default=False)
    try:
        conninfo = workers._conninfo(ws)
        with psycopg.connect(conninfo) as conn:
            assert conn.execute("SELECT 1").fetchone() == (1,)
        assert psycopg.conninfo.conninfo_to_dict(conninfo)["password"] == secret
    finally:
        ws.close()
