"""The engine's hot path on both backends: a step's outcome recorded and its dependants claimed in one
transaction, within the driver's concurrency, with the same events and template values as the slow
path (`advance` + `claim`) gives."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import sqlalchemy as sa

from cmdc_nb import workflows as wf
from cmdc_nb.store.models import User, WorkflowStep
from cmdc_nb.workflows.records import step_payload
from cmdc_nb.workspace import Workspace

LIVENESS = 60.0  # seconds: a bound that only a hung run reaches
_lock = threading.Lock()
_inflight = {"now": 0, "most": 0}


@wf.step_function("hot.slow")
async def slow(name: str) -> str:
    with _lock:
        _inflight["now"] += 1
        _inflight["most"] = max(_inflight["most"], _inflight["now"])
    await asyncio.sleep(0.02)  # long enough for the others to start, if the limit let them
    with _lock:
        _inflight["now"] -= 1
    return name


@wf.step_function("hot.shape")
def shape() -> dict[str, Any]:
    return {"zeta": [1, 2.5, None], "a": {"bb": True, "c": "x"}, "mid": 3}


async def go(ws: Workspace, w: Any, **kw: Any) -> Any:
    return await asyncio.wait_for(wf.arun_workflow(w, ws=ws, **kw), LIVENESS)


async def test_a_fan_out_unblocked_by_one_step_stays_within_max_concurrency(
    ws: Workspace, user: User
) -> None:
    _inflight.update(now=0, most=0)
    leaves = [f"leaf{i}" for i in range(6)]
    w = wf.create_workflow(
        user,
        {
            "name": "fan",
            "steps": [
                wf.step("root", "transform", value=1),
                *(wf.step(x, fn="hot.slow", depends_on="root", args={"name": x}) for x in leaves),
                wf.step("end", "transform", depends_on=leaves, value="{{ steps.leaf5.output }}"),
            ],
        },
        ws=ws,
    )
    run = await go(ws, w, max_concurrency=2)
    assert run.status == "completed" and run.output == {"end": "leaf5"}
    assert _inflight["most"] == 2  # the root's completion claimed two; the others waited for a slot
    assert sorted(run.completed_step_ids) == sorted(["root", *leaves, "end"])


async def test_a_chain_costs_one_commit_a_step_with_the_slow_paths_events(ws: Workspace, user: User) -> None:
    n = 12
    w = wf.create_workflow(
        user,
        {
            "name": "chain",
            "steps": [
                wf.step(f"s{i}", "transform", value=i, depends_on=[f"s{i - 1}"] if i else [])
                for i in range(n)
            ],
        },
        ws=ws,
    )
    writes = {"commits": 0}

    def wrote(conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        words = statement.split(None, 3)[:3]
        if words[:2] == ["UPDATE", "workflow_steps"] or words == ["INSERT", "INTO", "workflow_steps"]:
            conn.info["wrote"] = True

    def committed(conn: Any) -> None:
        writes["commits"] += bool(conn.info.pop("wrote", False))

    events: list[tuple[str, dict[str, Any]]] = []
    sub = ws.bus.subscribe("workflow_run:*:steps", lambda e: events.append((e.type, dict(e.payload))))
    sa.event.listen(ws.engine, "before_cursor_execute", wrote)
    sa.event.listen(ws.engine, "commit", committed)
    try:
        run = await go(ws, w)
    finally:
        sa.event.remove(ws.engine, "before_cursor_execute", wrote)
        sa.event.remove(ws.engine, "commit", committed)
        sub.close()
    assert run.status == "completed" and run.completed_step_ids == [f"s{i}" for i in range(n)]
    # one transaction that writes steps per step, plus starting the run (its step rows) and the
    # driver's first look, which claims s0 (a driver's later looks may write the run, not its steps)
    assert n <= writes["commits"] <= n + 2
    with ws.read() as db:
        rows = {
            r.step_id: r
            for r in db.scalars(sa.select(WorkflowStep).where(WorkflowStep.workflow_run_id == run.id))
        }
    completed = {p["step_id"]: p for t, p in events if t == "workflow_step_completed"}
    assert completed == {sid: step_payload(r) for sid, r in rows.items()}
    started = [p["step_id"] for t, p in events if t == "workflow_step_started"]
    assert started == [f"s{i}" for i in range(n)]
    for t, p in events:
        if t == "workflow_step_started":
            assert p == {
                **step_payload(rows[p["step_id"]]),
                "status": "running",
                "duration_ms": None,
                "resumed": False,
            }


async def test_a_claim_made_by_the_hot_path_renders_what_the_database_holds(
    ws: Workspace, user: User
) -> None:
    w = wf.create_workflow(
        user,
        {
            "name": "render",
            "steps": [
                wf.step("a", fn="hot.shape"),
                wf.step("b", "transform", depends_on="a", value="a is {{ steps.a.output }}"),
                wf.step("c", "transform", depends_on="b", value="{{ steps.a.output.zeta }}"),
            ],
        },
        ws=ws,
    )
    run = await go(ws, w)
    assert run.status == "completed"
    stored = wf.get_workflow_step(run, "a", ws=ws).output
    # what a claim reading `a` back from the database would render (jsonb reorders keys on PostgreSQL)
    assert wf.get_workflow_step(run, "b", ws=ws).output == f"a is {stored}"
    assert wf.get_workflow_step(run, "c", ws=ws).output == [1, 2.5, None]


async def test_a_watcher_that_finds_its_step_recorded_does_not_stop_the_task(monkeypatch: Any) -> None:
    """The task that recorded a step runs the dependant it claimed next; the step's watcher, whose
    heartbeat then finds the step no longer running, must not cancel that task (it did: notebook 02's
    retried run lost its review step about one time in ten). Before the write it still stops it."""
    from types import SimpleNamespace

    from cmdc_nb.workflows import runner

    monkeypatch.setattr(runner, "POLL_SECONDS", 0.01)
    monkeypatch.setattr(runner.state, "heartbeat", lambda ws, c, renew: "the step was taken over")

    async def watched(recording: bool) -> bool:
        claim = SimpleNamespace(spec=SimpleNamespace(id="lint"), cancel_reason=None, recording=recording)
        work = asyncio.create_task(asyncio.sleep(5))
        await runner._watch(None, claim, work)  # type: ignore[arg-type]
        await asyncio.sleep(0)
        stopped = work.cancelled() or work.cancelling() > 0
        work.cancel()
        return stopped

    assert await watched(recording=True) is False
    assert await watched(recording=False) is True


_held = threading.Event()


@wf.step_function("hot.hold")
async def hold() -> str:
    _held.set()
    await asyncio.sleep(LIVENESS)  # until its watcher stops it
    return "never"


async def test_a_step_running_past_a_poll_is_watched_renewed_and_stopped(
    ws: Workspace, user: User, monkeypatch: Any
) -> None:
    """A step's watcher starts only when its first beat is due (most steps end before): one that runs
    on has its lease renewed, and is stopped when its run is cancelled where no task of this process
    hears of it (as from another process), its outcome recorded as cancelled."""
    from cmdc_nb.workflows import runner, state

    monkeypatch.setattr(runner, "POLL_SECONDS", 0.02)
    monkeypatch.setattr(runner, "RENEW_SECONDS", 0.05)
    _held.clear()
    w = wf.create_workflow(
        user,
        {
            "name": "held",
            "steps": [
                wf.step("hold", fn="hot.hold"),
                wf.step("after", "transform", depends_on="hold", value=1),
            ],
        },
        ws=ws,
    )
    driver = asyncio.create_task(go(ws, w))
    await asyncio.wait_for(asyncio.to_thread(_held.wait), LIVENESS)

    def lease() -> tuple[Any, str]:
        with ws.read() as db:
            row = db.scalars(
                sa.select(WorkflowStep).where(
                    WorkflowStep.step_id == "hold", WorkflowStep.status == "running"
                )
            ).one()
            return row.workflow_run_id, row.meta["lease"]["expires_at"]

    run_id, first = lease()
    async with asyncio.timeout(LIVENESS):
        while lease()[1] == first:
            await asyncio.sleep(0.02)
    state.set_cancelled(ws, run_id, "elsewhere")  # no task here is told: only the watcher can see it
    run = await asyncio.wait_for(driver, LIVENESS)
    assert run.status == "cancelled"
    assert wf.get_workflow_step(run, "hold", ws=ws).status == "cancelled"
    assert wf.get_workflow_step(run, "after", ws=ws).status == "cancelled"


async def test_a_recording_queued_behind_another_write_still_ends_when_cancelled_twice(ws: Workspace) -> None:
    """On SQLite step outcomes queue on one writer thread. A task cancelled twice while its outcome
    waits there (the run stopped, then the loop closing) must not cancel the write: the step's work
    is done, and its outcome is written, as `_record` promises."""
    import types

    from cmdc_nb.workflows import runner
    from cmdc_nb.workflows.state.hot import Next

    busy = threading.Event()
    loop = asyncio.get_running_loop()
    blocker = loop.run_in_executor(ws.writer, busy.wait, 30)  # the writer (or a thread) is busy
    wrote: list[int] = []

    def write(claim: int) -> Next:
        wrote.append(claim)
        return Next(True)

    step = types.SimpleNamespace(cancel_reason=None)
    task = asyncio.create_task(runner._record(ws, step, None, write, chain=False))  # type: ignore[arg-type]
    await asyncio.sleep(0.05)
    task.cancel()
    await asyncio.sleep(0.05)
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    busy.set()
    await blocker
    for _ in range(200):
        if wrote:
            break
        await asyncio.sleep(0.05)
    assert wrote == [0]
