"""Running claimed steps in this process: execute with timeout and retries, record the outcome, and
go straight on to the dependants that outcome unblocked.

A step's success is recorded by `state.complete`, which in the same transaction claims the dependants
it unblocked, as many as the driver has free slots for (`Pool`). The task that ran the step runs the
first of them next; the others start as tasks of their own. So along a chain of steps no transaction
is spent on asking what is ready: the driver looks (`state.claim_ready`) only when a chain ends, or
when a step leaves something for it (a gate, a branch, a failure). On a worker there is no pool: the
worker runs one dependant itself and queues the rest (`on_next`).

While a step runs, a watcher renews its lease and stops it if the run is cancelled or fails fast
elsewhere. `_running` lets a cancel from this process stop the steps at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from cmdc_nb._plumbing.workspace import Workspace
from cmdc_nb.errors import WorkflowError
from cmdc_nb.events import topics
from cmdc_nb.store.enums import WorkflowStepStatus
from cmdc_nb.workflows import state
from cmdc_nb.workflows.executors import EXECUTORS, StepContext, call_python, checked_output
from cmdc_nb.workflows.functions import resolve_function

__all__ = ["POLL_SECONDS", "RENEW_SECONDS", "Pool", "run_chain", "run_step"]

log = logging.getLogger("cmdc_nb.workflows")
S = WorkflowStepStatus

POLL_SECONDS = 0.5  # how often a waiting driver and each step's watcher look at the database
RENEW_SECONDS = 10.0  # how often a running step's lease is extended (leases last state.LEASE_SECONDS)
_NO_RETRY = frozenset({"TemplateError", "OutputNotJSON", "LeaseLost"})

# Steps running in this process, per run, so a cancel from this process stops them at once.
_running: dict[uuid.UUID, dict[str, tuple[asyncio.Task[None], state.Claim]]] = {}

OnNext = Callable[[state.Next], Awaitable[None]]


class Pool:
    """The steps one driver runs in this process: at most `limit` at once, counting the slots a
    finishing step has set aside for the dependants it may claim. Every task ending wakes the driver."""

    def __init__(self, ws: Workspace, limit: int, wake: Callable[[], None]) -> None:
        self.ws = ws
        self.limit = limit
        self.wake = wake
        self.tasks: set[asyncio.Task[None]] = set()
        self.reserved = 0

    def free(self) -> int:
        return max(self.limit - len(self.tasks) - self.reserved, 0)

    def reserve(self) -> int:
        n = self.free()
        self.reserved += n
        return n

    def start(self, c: state.Claim) -> None:
        task = asyncio.create_task(run_chain(self.ws, c, self), name=f"step-{c.spec.id}")
        self.tasks.add(task)
        task.add_done_callback(lambda _t: self.wake())


async def run_step(ws: Workspace, run_id: uuid.UUID, step_id: str, *, on_next: OnNext | None = None) -> bool:
    """Claim one ready step and execute it to an outcome, then the dependants it claimed on the way
    (`on_next` hears of each recorded outcome). False if the step was not ours to run."""
    c = await asyncio.to_thread(state.claim, ws, run_id, step_id)
    if c is None:
        return False
    await run_chain(ws, c, None, on_next=on_next)
    return True


async def run_chain(
    ws: Workspace, c: state.Claim, pool: Pool | None, *, on_next: OnNext | None = None
) -> None:
    """Execute a claimed step, then each first dependant its completion claimed, until none is."""
    task = asyncio.current_task()
    assert task is not None
    claim: state.Claim | None = c
    while claim is not None:
        key = (claim.run_id, claim.spec.id)
        with state.local_lock:
            state.local_steps.add(key)
        _running.setdefault(claim.run_id, {})[claim.spec.id] = (task, claim)
        try:
            nxt = await _execute(ws, claim, task, pool)
        finally:
            with state.local_lock:
                state.local_steps.discard(key)
            _running.get(claim.run_id, {}).pop(claim.spec.id, None)
            if not _running.get(claim.run_id):
                _running.pop(claim.run_id, None)
        claim = nxt.claims[0] if nxt is not None and nxt.claims else None
        if nxt is not None and on_next is not None:
            await on_next(nxt)


async def _watch(
    ws: Workspace, c: state.Claim, task: asyncio.Task[None], *, since: float | None = None
) -> None:
    """Beat every POLL_SECONDS; started late (`since`: when the step started), it beats at once."""
    last_renew = time.monotonic() if since is None else since
    first = since is not None
    while True:
        if not first:
            await asyncio.sleep(POLL_SECONDS)
        first = False
        renew = time.monotonic() - last_renew >= RENEW_SECONDS
        try:
            why = await asyncio.to_thread(state.heartbeat, ws, c, renew=renew)
        except Exception:  # a transient database error: try again at the next beat
            log.warning("heartbeat of step %s failed", c.spec.id, exc_info=True)
            continue
        if renew:
            last_renew = time.monotonic()
        if why is not None:
            if c.recording:  # the step's own outcome is being written (see Claim.recording)
                return
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


def _transactional(ws: Workspace, c: state.Claim, ctx: StepContext, claim: int) -> state.Next:
    """Run a transactional python step and record its outcome in one transaction (in this thread)."""
    fn = resolve_function(str(c.config["function"]))
    with ws.transaction() as tx:
        ctx.tx = tx
        value = call_python(fn, c.config, ctx)
        output = checked_output(value, c.spec.id)
        c.recording = True
        nxt = state.complete(ws, c, output, claim=claim)
    if nxt:
        state.remember(c.run_id, c.spec.id, output, backend=ws.backend)
    return nxt


class _Unrecorded(Exception):
    """The step's work succeeded but recording it failed: not a failure of the step (no retry policy
    applies); the driver hands the step back, and it runs again under its idempotency key."""


async def _record(
    ws: Workspace,
    c: state.Claim,
    pool: Pool | None,
    write: Callable[[int], state.Next],
    *,
    chain: bool = True,
) -> state.Next:
    """Record the outcome with `write(claim)` in a thread, claiming as many dependants as the pool
    has room for (none unless `chain`); start all but the first (this task runs that one). If this
    task is cancelled meanwhile, the write still ends, and what it claimed is stopped with the run —
    or, when the loop is closing, left for resume to hand back, like the step itself."""
    extra = pool.reserve() if pool is not None and chain else 0
    loop = asyncio.get_running_loop()
    work = functools.partial(contextvars.copy_context().run, write, (1 + extra) if chain else 0)
    fut = asyncio.ensure_future(loop.run_in_executor(ws.writer, work))
    try:
        nxt = await asyncio.shield(fut)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            # shielded again: a second cancel must not cancel the write itself, which on SQLite may
            # still be queued behind others on the one writer thread (it would then never run)
            nxt = await asyncio.shield(fut)
            for x in nxt.claims:
                if c.cancel_reason is not None:
                    why = f"stopped: {c.cancel_reason}"
                    await asyncio.to_thread(state.fail, ws, x, S.CANCELLED, "Cancelled", why)
        raise
    finally:
        if pool is not None:
            pool.reserved -= extra
    if pool is not None:
        for x in nxt.claims[1:]:
            pool.start(x)
        if nxt.ready or nxt.advance:
            pool.wake()
    return nxt


async def _attempt(ws: Workspace, c: state.Claim, pool: Pool | None) -> state.Next:
    """One attempt. A timeout bounds the step's work, never the recording of its outcome (a
    transactional step's work and outcome are one transaction: it claims no dependants then)."""
    ctx = _step_context(ws, c)
    timeout = c.spec.timeout
    if c.spec.transactional:
        if asyncio.iscoroutinefunction(resolve_function(str(c.config["function"]))):
            raise WorkflowError(
                f"step {c.spec.id!r}: a transactional step needs a plain (sync) function",
                step_id=c.spec.id,
                error_type="TemplateError",
            )
        recorded = _record(ws, c, pool, lambda n: _transactional(ws, c, ctx, n), chain=timeout is None)
        return await (asyncio.wait_for(recorded, timeout) if timeout is not None else recorded)
    executor = EXECUTORS.get(c.spec.type)
    if executor is None:
        raise WorkflowError(f"no executor for {c.spec.type.value} steps", step_id=c.spec.id)
    work = executor(c.spec, dict(c.config), ctx)
    result = await (asyncio.wait_for(work, timeout) if timeout is not None else work)
    output = checked_output(result.output, c.spec.id)

    def write(n: int) -> state.Next:
        c.recording = True
        nxt = state.complete(
            ws,
            c,
            output,
            tokens_in=result.tokens_in,
            tokens_out=result.tokens_out,
            cost_usd=result.cost_usd,
            agent_call_id=result.agent_call_id,
            meta=result.meta or None,
            claim=n,
        )
        if nxt:
            state.remember(c.run_id, c.spec.id, output, backend=ws.backend)
        return nxt

    try:
        return await _record(ws, c, pool, write)
    except asyncio.CancelledError:
        raise
    except Exception as exc:  # the step worked; its outcome could not be written
        raise _Unrecorded(exc) from exc


async def _execute(
    ws: Workspace, c: state.Claim, task: asyncio.Task[None], pool: Pool | None
) -> state.Next | None:
    """Run the step's attempts to an outcome; the `Next` of its completion, None if it did not complete.

    Long because the outcome of an attempt is one decision: completed, cancelled (by whom), timed
    out, failed, retried later, or not recorded — each written differently."""
    # Most steps end within a poll: a timer, not a task, waits for the first beat (a task created and
    # cancelled per step cost more than the timer), and the watcher task starts only then.
    watchers: list[asyncio.Task[None]] = []
    since = time.monotonic()

    def watch() -> None:
        watchers.append(asyncio.create_task(_watch(ws, c, task, since=since)))

    timer = asyncio.get_running_loop().call_later(POLL_SECONDS, watch)
    try:
        while True:
            try:
                return await _attempt(ws, c, pool)
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
                return None
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
                return None
            await asyncio.to_thread(state.fail, ws, c, status, etype, msg)
            return None
    finally:
        timer.cancel()
        for watcher in watchers:
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await watcher
