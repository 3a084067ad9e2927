"""Running workflows: in the notebook's event loop, or on worker processes (PostgreSQL + procrastinate).

A run is driven by a loop that asks `state.advance` what is ready, starts those steps (bounded by
`max_concurrency`), and waits for one to finish, an approval to be decided, or a short poll interval —
decisions and cancellations made in other processes are seen at the next poll. Each step runs as its
own task: claim, render, execute with its timeout and retries, record the outcome. While a step runs,
a watcher renews its lease and stops it if the run is cancelled or fails fast elsewhere.

In a notebook (a running event loop), `run_workflow`, `resume_workflow_run` and `retry_workflow_run`
return a `RunHandle` at once — `await handle` gives the finished run, and the cell is free meanwhile.
In a script they block and return the finished `WorkflowRun`. The `a…` variants are always coroutines.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from typing import Any, Literal

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError, InvalidStateError, WorkflowError
from cmdc_nb.events import topics
from cmdc_nb.services import approvals
from cmdc_nb.store.enums import TriggerType, WorkflowRunStatus, WorkflowStepStatus
from cmdc_nb.store.models import ApprovalItem, WorkflowRun
from cmdc_nb.workflows import state
from cmdc_nb.workflows.executors import EXECUTORS, StepContext, call_python, checked_output
from cmdc_nb.workflows.functions import resolve_function
from cmdc_nb.workflows.records import (
    RUN_TERMINAL,
    RunRef,
    WorkflowRef,
    get_workflow_run,
    get_workflow_step,
    start_workflow_run,
)

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

POLL_SECONDS = 0.5  # how often a waiting driver and each step's watcher look at the database
RENEW_SECONDS = 10.0  # how often a running step's lease is extended (leases last state.LEASE_SECONDS)
_NO_RETRY = frozenset({"TemplateError", "OutputNotJSON", "LeaseLost"})

# Steps running in this process, per run, so a cancel from this process stops them at once.
_running: dict[uuid.UUID, dict[str, tuple[asyncio.Task[None], state.Claim]]] = {}
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


# -- one step -----------------------------------------------------------------------------------------
async def run_step(ws: Workspace, run_id: uuid.UUID, step_id: str) -> bool:
    """Claim one ready step and execute it to an outcome. False if it was not ours to run."""
    c = await asyncio.to_thread(state.claim, ws, run_id, step_id)
    if c is None:
        return False
    key = (run_id, step_id)
    task = asyncio.current_task()
    assert task is not None
    with state.local_lock:
        state.local_steps.add(key)
    _running.setdefault(run_id, {})[step_id] = (task, c)
    try:
        await _execute(ws, c, task)
    finally:
        with state.local_lock:
            state.local_steps.discard(key)
        _running.get(run_id, {}).pop(step_id, None)
        if not _running.get(run_id):
            _running.pop(run_id, None)
    return True


async def _watch(ws: Workspace, c: state.Claim, task: asyncio.Task[None]) -> None:
    last_renew = time.monotonic()
    while True:
        await asyncio.sleep(POLL_SECONDS)
        renew = time.monotonic() - last_renew >= RENEW_SECONDS
        try:
            why = await asyncio.to_thread(state.heartbeat, ws, c, renew=renew)
        except Exception:  # a transient database error: try again at the next beat
            log.warning("heartbeat of step %s failed", c.spec.id, exc_info=True)
            continue
        if renew:
            last_renew = time.monotonic()
        if why is not None:
            c.cancel_reason = why
            task.cancel()
            return


def _step_context(ws: Workspace, c: state.Claim) -> StepContext:
    def emit(type: str, payload: Mapping[str, Any]) -> None:
        ws.bus.publish(
            topics.workflow_run_steps(c.run_id),
            f"workflow_step_{type}",
            {"step_id": c.spec.id, **dict(payload)},
        )

    return StepContext(
        ws=ws,
        run_id=c.run_id,
        step_id=c.spec.id,
        step_row_id=c.row_id,
        user_id=c.user_id,
        attempt=c.attempt,
        idempotency_key=c.idempotency_key,
        input=c.input,
        steps={k: {"output": x} for k, x in c.outputs.items()},
        workflow_name=c.workflow_name,
        session_id=c.session_id,
        resumed=c.resumed,
        emit=emit,
    )


def _transactional(ws: Workspace, c: state.Claim, ctx: StepContext) -> bool:
    """Run a transactional python step and record its outcome in one transaction (in this thread)."""
    fn = resolve_function(str(c.config["function"]))
    with ws.transaction() as tx:
        ctx.tx = tx
        value = call_python(fn, c.config, ctx)
        return state.complete(ws, c, checked_output(value, c.spec.id))


class _Unrecorded(Exception):
    """The step's work succeeded but recording it failed: not a failure of the step (no retry policy
    applies); the driver hands the step back, and it runs again under its idempotency key."""


async def _attempt(ws: Workspace, c: state.Claim) -> None:
    ctx = _step_context(ws, c)
    if c.spec.transactional:
        if asyncio.iscoroutinefunction(resolve_function(str(c.config["function"]))):
            raise WorkflowError(
                f"step {c.spec.id!r}: a transactional step needs a plain (sync) function",
                step_id=c.spec.id,
                error_type="TemplateError",
            )
        await asyncio.to_thread(_transactional, ws, c, ctx)
        return
    executor = EXECUTORS.get(c.spec.type)
    if executor is None:
        raise WorkflowError(f"no executor for {c.spec.type.value} steps", step_id=c.spec.id)
    result = await executor(c.spec, dict(c.config), ctx)
    output = checked_output(result.output, c.spec.id)
    try:
        await asyncio.to_thread(
            state.complete,
            ws,
            c,
            output,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
            agent_call_id=result.agent_call_id,
            meta=result.meta or None,
        )
    except Exception as exc:  # the step worked; its outcome could not be written
        raise _Unrecorded(exc) from exc


async def _execute(ws: Workspace, c: state.Claim, task: asyncio.Task[None]) -> None:
    watcher = asyncio.create_task(_watch(ws, c, task))
    try:
        while True:
            try:
                if c.spec.timeout is not None:
                    await asyncio.wait_for(_attempt(ws, c), c.spec.timeout)
                else:
                    await _attempt(ws, c)
                return
            except _Unrecorded:
                raise
            except asyncio.CancelledError:
                if c.cancel_reason is None:
                    raise  # the loop is shutting down: the step stays `running`; resume recovers it
                with contextlib.suppress(asyncio.CancelledError):
                    # uncancel so the outcome can still be written from this task
                    task.uncancel()
                await asyncio.to_thread(
                    state.fail, ws, c, S.CANCELLED, "Cancelled", f"stopped: {c.cancel_reason}"
                )
                return
            except TimeoutError:
                status, etype, msg = S.TIMEOUT, "Timeout", f"no result within {c.spec.timeout:g} s"
            except WorkflowError as exc:
                status, etype, msg = S.FAILED, exc.error_type or "WorkflowError", str(exc)
            except Exception as exc:
                status, etype, msg = S.FAILED, type(exc).__name__, str(exc) or type(exc).__name__
            if etype not in _NO_RETRY and c.attempt < c.max_attempts:
                delay = c.spec.retry.delay(c.attempt)
                if await asyncio.to_thread(state.retrying, ws, c, etype, msg, delay):
                    await asyncio.sleep(delay)
                    continue
                return
            await asyncio.to_thread(state.fail, ws, c, status, etype, msg)
            return
    finally:
        watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await watcher


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
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    run = await asyncio.to_thread(get_workflow_run, run_id, ws=ws)

    def poke(_event: Any) -> None:
        loop.call_soon_threadsafe(wake.set)

    subs = [
        ws.bus.subscribe(topics.user_approvals(run.user_id), poke),
        ws.bus.subscribe(topics.workflow_run(run_id), poke),
    ]
    tasks: dict[str, asyncio.Task[Any]] = {}
    try:
        while True:
            wake.clear()
            progress = await asyncio.to_thread(state.advance, ws, run_id)
            if progress.terminal:
                break
            if dispatch is not None:
                if progress.ready:
                    await dispatch(list(progress.ready))
            else:
                for sid in progress.ready:
                    if sid not in tasks and len(tasks) < max_concurrency:
                        tasks[sid] = asyncio.create_task(run_step(ws, run_id, sid), name=f"step-{sid}")
            if not tasks:
                if progress.status is R.PAUSED:
                    break
                if stop_when_blocked and progress.status is R.WAITING_APPROVAL:
                    break
            waiter = asyncio.create_task(wake.wait())
            await asyncio.wait(
                {*tasks.values(), waiter},
                timeout=POLL_SECONDS * (1 if dispatch or not tasks else 4),
                return_when=asyncio.FIRST_COMPLETED,
            )
            waiter.cancel()
            crashed = False
            for sid, t in list(tasks.items()):
                if t.done():
                    tasks.pop(sid)
                    if not t.cancelled() and t.exception() is not None:
                        log.error("step %s of run %s crashed", sid, run_id, exc_info=t.exception())
                        crashed = True
            if crashed:  # its outcome was never written (a database error?): hand the step back
                await asyncio.to_thread(state.recover, ws, run_id)
        # Steps still running see the run is over through their watcher and record `cancelled`.
        if tasks:
            await asyncio.gather(*tasks.values(), return_exceptions=True)
    except asyncio.CancelledError:
        # The steps are stopped (left `running`, for resume to hand back) before the driver's
        # cancellation completes: a resume called right after it finds none of them still in this
        # process, where it would take them for live ones and leave them be.
        for t in tasks.values():
            t.cancel()
        await asyncio.gather(*tasks.values(), return_exceptions=True)
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
    for approvals. `executor="workers"` sends each step to a worker process (PostgreSQL only)."""
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
