"""Running workflows: in the notebook's event loop, or on worker processes (PostgreSQL + procrastinate).

A run is driven by a loop that advances the run and claims what is ready in one transaction
(`state.claim_ready`), starts those steps (bounded by `max_concurrency`), and waits for a chain of
steps to end, an approval to be decided, or a short poll interval — decisions and cancellations made
in other processes are seen at the next poll. Each started step runs on into the dependants its
completion claimed (`runner`), so the driver looks again only when a chain ends or leaves it
something to decide.

In a notebook (a running event loop), `run_workflow`, `resume_workflow_run` and `retry_workflow_run`
return a `RunHandle` at once — `await handle` gives the finished run, and the cell is free meanwhile.
In a script they block and return the finished `WorkflowRun`. The `a…` variants are always coroutines.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError, InvalidStateError
from cmdc_nb.events import topics
from cmdc_nb.services import approvals
from cmdc_nb.store.enums import TriggerType, WorkflowRunStatus, WorkflowStepStatus
from cmdc_nb.store.models import ApprovalItem, WorkflowRun
from cmdc_nb.workflows import state
from cmdc_nb.workflows.records import (
    RUN_TERMINAL,
    RunRef,
    WorkflowRef,
    get_workflow_run,
    get_workflow_step,
    start_workflow_run,
)
from cmdc_nb.workflows.runner import POLL_SECONDS, Pool, _running, run_step

__all__ = [
    "RunHandle",
    "approve_workflow_step",
    "arun_workflow",
    "cancel_workflow_run",
    "deny_workflow_step",
    "driven_here",
    "execute_workflow_run",
    "pause_workflow_run",
    "resume_workflow_run",
    "retry_workflow_run",
    "run_step",
    "run_workflow",
]

log = logging.getLogger("cmdc_nb.workflows")
S = WorkflowStepStatus
R = WorkflowRunStatus
Executor = Literal["local", "workers"]

# Drivers alive in this process, per run: a view that decides a gate starts one only if none is.
_drivers: dict[uuid.UUID, int] = {}


def driven_here(run: RunRef) -> bool:
    """Whether a driver in this process is driving `run` now (one started with `stop_when_blocked`
    stops at a gate; one in another process is not seen). No database access."""
    return _drivers.get(v.id_of(run, "workflow_run"), 0) > 0


class RunHandle:
    """A run executing in the background of a notebook's event loop. `await handle` → WorkflowRun."""

    def __init__(self, run_id: uuid.UUID, task: asyncio.Task[WorkflowRun], ws: Workspace) -> None:
        self.run_id = run_id
        self.task = task
        self._ws = ws

    def __await__(self) -> Any:
        return self.task.__await__()

    def done(self) -> bool:
        return self.task.done()

    def result(self) -> WorkflowRun:
        return self.task.result()

    @property
    def run(self) -> WorkflowRun:
        """The run as stored now."""
        return get_workflow_run(self.run_id, ws=self._ws)

    def cancel(self, reason: str | None = None) -> WorkflowRun:
        return cancel_workflow_run(self.run_id, reason=reason, ws=self._ws)

    def __repr__(self) -> str:
        return f"<RunHandle {self.run_id} {'done' if self.done() else 'running'}>"


def _launch(ws: Workspace, run_id: uuid.UUID, coro: Coroutine[Any, Any, WorkflowRun]) -> Any:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    return RunHandle(run_id, loop.create_task(coro, name=f"workflow-run-{run_id}"), ws)


# -- driving a run ------------------------------------------------------------------------------------
async def _drive(
    ws: Workspace,
    run_id: uuid.UUID,
    *,
    max_concurrency: int,
    stop_when_blocked: bool,
    dispatch: Callable[[list[str]], Awaitable[None]] | None = None,
) -> WorkflowRun:
    _drivers[run_id] = _drivers.get(run_id, 0) + 1
    try:
        return await _drive_loop(
            ws,
            run_id,
            max_concurrency=max_concurrency,
            stop_when_blocked=stop_when_blocked,
            dispatch=dispatch,
        )
    finally:
        _drivers[run_id] -= 1
        if not _drivers[run_id]:
            del _drivers[run_id]


async def _drive_loop(
    ws: Workspace,
    run_id: uuid.UUID,
    *,
    max_concurrency: int,
    stop_when_blocked: bool,
    dispatch: Callable[[list[str]], Awaitable[None]] | None,
) -> WorkflowRun:
    """Long because it is the driver: look, start or dispatch, wait, notice crashes — and on the way
    out, stop or wait for the steps it started, whichever way it ends."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    run = await asyncio.to_thread(get_workflow_run, run_id, ws=ws)

    def poke(_event: Any) -> None:
        loop.call_soon_threadsafe(wake.set)

    subs = [
        ws.bus.subscribe(topics.user_approvals(run.user_id), poke),
        ws.bus.subscribe(topics.workflow_run(run_id), poke),
    ]
    pool = Pool(ws, max_concurrency, wake.set)
    try:
        while True:
            wake.clear()
            if dispatch is not None:
                progress = await asyncio.to_thread(state.advance, ws, run_id)
                if progress.ready and not progress.terminal:
                    await dispatch(list(progress.ready))
            else:
                # Look and claim in one transaction; the steps started run on into their dependants.
                room = pool.reserve()  # held while claiming: finishing steps claim into the rest
                try:
                    progress = await asyncio.to_thread(state.claim_ready, ws, run_id, room)
                finally:
                    pool.reserved -= room
                for c in progress.claims:
                    pool.start(c)
            if progress.terminal:
                break
            if progress.again:
                continue
            if not pool.tasks:
                if progress.status is R.PAUSED:
                    break
                if stop_when_blocked and progress.status in (R.WAITING_APPROVAL, R.WAITING_INPUT):
                    break
            waiter = asyncio.create_task(wake.wait())
            await asyncio.wait(
                {*pool.tasks, waiter},
                timeout=POLL_SECONDS * (1 if dispatch or not pool.tasks else 4),
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            crashed = False
            for t in [t for t in pool.tasks if t.done()]:
                pool.tasks.discard(t)
                if not t.cancelled() and t.exception() is not None:
                    log.error("step %s of run %s crashed", t.get_name(), run_id, exc_info=t.exception())
                    crashed = True
            if crashed:  # its outcome was never written (a database error?): hand the step back
                await asyncio.to_thread(state.recover, ws, run_id)
        # Steps still running see the run is over through their watcher and record `cancelled`.
        while pool.tasks:
            done = list(pool.tasks)
            await asyncio.gather(*done, return_exceptions=True)
            pool.tasks.difference_update(done)
    except asyncio.CancelledError:
        # The steps are stopped (left `running`, for resume to hand back) before the driver's
        # cancellation completes: a resume called right after it finds none of them still in this
        # process, where it would take them for live ones and leave them be.
        while pool.tasks:
            stopping = list(pool.tasks)
            for t in stopping:
                t.cancel()
            await asyncio.gather(*stopping, return_exceptions=True)
            pool.tasks.difference_update(stopping)
        raise
    finally:
        for sub in subs:
            sub.close()
    return await asyncio.to_thread(get_workflow_run, run_id, ws=ws)


def _check_concurrency(n: int) -> int:
    return v.count(n, "max_concurrency", minimum=1)


@checked
async def execute_workflow_run(
    run: RunRef,
    *,
    max_concurrency: int = 4,
    stop_when_blocked: bool = False,
    executor: Executor = "local",
    ws: Workspace | None = None,
) -> WorkflowRun:
    """Drive a started run until it is over — or paused, or (with `stop_when_blocked`) only waiting
    for approvals or for people's `external` steps. `executor="workers"` sends each step to a worker process (PostgreSQL only)."""
    w = get_workspace(ws)
    rid = v.id_of(run, "workflow_run")
    _check_concurrency(max_concurrency)
    if executor == "workers":
        from cmdc_nb.workflows import workers

        return await workers.drive_on_workers(w, rid, stop_when_blocked=stop_when_blocked)
    if executor != "local":
        raise InvalidInputError(f"{executor!r} is not one of: local, workers", field="executor")
    return await _drive(w, rid, max_concurrency=max_concurrency, stop_when_blocked=stop_when_blocked)


@checked
async def arun_workflow(
    workflow: WorkflowRef,
    user: Any = None,
    *,
    input: Mapping[str, Any] | None = None,
    trigger_type: TriggerType | str = TriggerType.MANUAL,
    trigger_metadata: Mapping[str, Any] | None = None,
    session: Any = None,
    max_concurrency: int = 4,
    stop_when_blocked: bool = False,
    executor: Executor = "local",
    ws: Workspace | None = None,
) -> WorkflowRun:
    """Start a run of `workflow` and drive it (see `execute_workflow_run`)."""
    _check_concurrency(max_concurrency)
    w = get_workspace(ws)
    run = await asyncio.to_thread(
        start_workflow_run,
        workflow,
        user,
        input=input,
        trigger_type=trigger_type,
        trigger_metadata=trigger_metadata,
        session=session,
        ws=w,
    )
    return await execute_workflow_run(
        run, max_concurrency=max_concurrency, stop_when_blocked=stop_when_blocked, executor=executor, ws=w
    )


@checked
def run_workflow(
    workflow: WorkflowRef,
    user: Any = None,
    *,
    input: Mapping[str, Any] | None = None,
    trigger_type: TriggerType | str = TriggerType.MANUAL,
    trigger_metadata: Mapping[str, Any] | None = None,
    session: Any = None,
    max_concurrency: int = 4,
    stop_when_blocked: bool = False,
    executor: Executor = "local",
    ws: Workspace | None = None,
) -> Any:
    """Start a run and drive it: a `RunHandle` in a notebook (await it), the finished run in a script.

    The run is created (and its input validated) before this returns, either way."""
    w = get_workspace(ws)
    _check_concurrency(max_concurrency)
    run = start_workflow_run(
        workflow,
        user,
        input=input,
        trigger_type=trigger_type,
        trigger_metadata=trigger_metadata,
        session=session,
        ws=w,
    )
    return _launch(
        w,
        run.id,
        execute_workflow_run(
            run.id,
            max_concurrency=max_concurrency,
            stop_when_blocked=stop_when_blocked,
            executor=executor,
            ws=w,
        ),
    )


@checked
def resume_workflow_run(
    run: RunRef,
    *,
    force: bool = False,
    max_concurrency: int = 4,
    stop_when_blocked: bool = False,
    executor: Executor = "local",
    ws: Workspace | None = None,
) -> Any:
    """Finish a run that was interrupted (its process killed, its cell stopped) or paused.

    Completed steps are never run again. Steps that were running when their process died are handed
    back and run again with the same idempotency key (`ctx.resumed` is true) — what they did before
    the crash may have happened, so their effects are exactly-once only if keyed — or failed if their
    config says `on_interrupt: fail`. A step whose owner may still be alive on another machine is
    left until its lease expires, unless `force=True`."""
    _check_concurrency(max_concurrency)
    w = get_workspace(ws)
    rid = v.id_of(run, "workflow_run")
    row = get_workflow_run(rid, ws=w)
    if row.status in RUN_TERMINAL:
        raise InvalidStateError("workflow_run", row.status.value, "running", allowed=[])
    state.recover(w, rid, force=force)
    return _launch(
        w,
        rid,
        execute_workflow_run(
            rid, max_concurrency=max_concurrency, stop_when_blocked=stop_when_blocked, executor=executor, ws=w
        ),
    )


@checked
def retry_workflow_run(
    run: RunRef,
    *,
    max_concurrency: int = 4,
    stop_when_blocked: bool = False,
    executor: Executor = "local",
    ws: Workspace | None = None,
) -> Any:
    """A new run (`retry_of_run_id` set) of the same spec and input that starts from the failure:
    steps that completed are carried over with their outputs (and not charged again); the rest run.

    The steps that run again are new executions: their idempotency key names the new run, so an
    external system that deduplicates by key performs them again (the steps carried over keep their
    keys). A policy retry or a resume, by contrast, keeps the key."""
    _check_concurrency(max_concurrency)
    w = get_workspace(ws)
    new_id = state.create_retry(w, v.id_of(run, "workflow_run"))
    return _launch(
        w,
        new_id,
        execute_workflow_run(
            new_id,
            max_concurrency=max_concurrency,
            stop_when_blocked=stop_when_blocked,
            executor=executor,
            ws=w,
        ),
    )


# -- control from any cell or process -----------------------------------------------------------------
@checked
def cancel_workflow_run(
    run: RunRef, *, reason: str | None = None, ws: Workspace | None = None
) -> WorkflowRun:
    """Cancel a run: waiting and pending steps are cancelled at once, running ones stop within a poll
    interval wherever they run (at once in this process)."""
    w = get_workspace(ws)
    rid = v.id_of(run, "workflow_run")
    row = state.set_cancelled(w, rid, reason)
    for task, c in list(_running.get(rid, {}).values()):
        c.cancel_reason = f"the run was cancelled: {reason or 'cancelled'}"
        task.get_loop().call_soon_threadsafe(task.cancel)
    return row


@checked
def pause_workflow_run(run: RunRef, *, ws: Workspace | None = None) -> WorkflowRun:
    """Start no new step; running ones finish. `resume_workflow_run` goes on."""
    return state.set_paused(get_workspace(ws), v.id_of(run, "workflow_run"))


def _gate_item(run: RunRef, step_id: str, ws: Workspace) -> ApprovalItem:
    step = get_workflow_step(run, step_id, ws=ws)
    if step.status is not S.WAITING_APPROVAL or step.approval_id is None:
        raise InvalidStateError("workflow_step", step.status.value, "approved", allowed=[])
    return approvals.get_approval_item(step.approval_id, ws=ws)


@checked
def approve_workflow_step(
    run: RunRef,
    step_id: str,
    user: Any = None,
    *,
    note: str | None = None,
    payload: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> ApprovalItem:
    """Approve a step waiting at a gate (`payload` replaces what it will run with, for approval_required
    steps). The driver — here or in another process — goes on at its next look."""
    w = get_workspace(ws)
    item = _gate_item(run, step_id, w)
    return approvals.approve_item(item, user or item.user_id, note=note, modified_payload=payload, ws=w)


@checked
def deny_workflow_step(
    run: RunRef, step_id: str, user: Any = None, *, note: str | None = None, ws: Workspace | None = None
) -> ApprovalItem:
    w = get_workspace(ws)
    item = _gate_item(run, step_id, w)
    return approvals.deny_item(item, user or item.user_id, note=note, ws=w)
