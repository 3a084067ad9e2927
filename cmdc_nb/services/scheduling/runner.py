"""Running due jobs: a claim is a compare-and-set of `next_run_at` plus a `job_runs` row unique on
`(job_id, scheduled_for, attempt)`; handlers run in a worker thread (sync) or on the loop (async), so a
runner never blocks a notebook's kernel; runs left by a dead runner are closed as abandoned.

A failed attempt is never retried inside the call that ran it: its retry is a future attempt, stored as
the job's `next_run_at` (with backoff) and `meta["retry"]` (the occurrence and the attempt number), which
a later tick claims like any due occurrence."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib
import inspect
import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.proc import HOST, pid_alive
from cmdc_nb._plumbing.service import fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import ConfigurationError, InvalidInputError
from cmdc_nb.services.scheduling.jobs import LEASE, MISFIRE_GRACE, _due, _publish, next_occurrence
from cmdc_nb.store.enums import JobStatus, JobType, ScheduleType
from cmdc_nb.store.models import JobRun, ScheduledJob
from cmdc_nb.store.values import utcnow

__all__ = ["JobContext", "Scheduler", "register_job_handler", "run_due_jobs"]


@dataclass(frozen=True)
class JobContext:
    """What a handler is given: the job, the occurrence it runs for, and the workspace."""

    job_id: uuid.UUID
    user_id: uuid.UUID
    name: str | None
    job_type: JobType
    config: dict[str, Any]
    scheduled_for: dt.datetime
    attempt: int
    ws: Workspace


Handler = Callable[[JobContext], Any]
_handlers: dict[str, Handler] = {}

# The built-in job types whose handlers live on a higher floor (the workflow engine, the RAG indexer):
# importing the module registers the handler. The services cannot import those floors, so the module
# is named here and imported the first time a job of that type runs, as an entry point would be.
BUILT_IN_HANDLERS: dict[str, str] = {
    JobType.WORKFLOW.value: "cmdc_nb.workflows.scheduled",
    JobType.REINDEX.value: "cmdc_nb.rag.scheduled",
}
RETRY_BACKOFF_CAP = dt.timedelta(days=1)  # the longest wait between two attempts at one occurrence


@checked
def register_job_handler(name: str, fn: Handler | None = None) -> Any:
    """Register `fn` under `name` (usable as a decorator). Re-registering a name replaces it."""
    v.text(name, "name", max_len=100)

    def add(f: Handler) -> Handler:
        if not callable(f):
            raise InvalidInputError("must be callable", field="fn")
        _handlers[name] = f
        return f

    return add(fn) if fn is not None else add


def _cleanup(ctx: JobContext) -> dict[str, int]:
    from cmdc_nb.services import approvals, artifacts, presence

    expired = approvals.expire_old_approvals(ws=ctx.ws)
    stale = presence.cleanup_stale_presence(ws=ctx.ws)
    cleaned = artifacts.delete_expired_artifacts(ws=ctx.ws)
    return {
        "approvals_settled": expired.total,
        "presence_left": stale,
        "artifacts_deleted": cleaned.deleted_artifacts,
        "blobs_deleted": cleaned.deleted_blobs,
    }


register_job_handler("cleanup", _cleanup)


# --- claiming and running ---------------------------------------------------------------------------


@dataclass
class _Claim:
    job: ScheduledJob
    occurrence: dt.datetime  # the occurrence this attempt is for (a retry keeps its occurrence)
    run_id: uuid.UUID
    next_run_at: dt.datetime | None
    attempt: int = 1
    now: dt.datetime | None = None  # the tick's clock (simulated in tests), from which a retry is timed


def _pending_retry(job: ScheduledJob) -> tuple[dt.datetime, int] | None:
    """The occurrence and attempt number of the retry the job is due for, if its `next_run_at` is one.

    A retry stored for another time (the job was since resumed or rescheduled) is not one: the job's
    regular occurrence runs instead."""
    retry = (job.meta or {}).get("retry")
    if not isinstance(retry, dict) or job.next_run_at is None:
        return None
    try:
        at = dt.datetime.fromisoformat(str(retry["at"]))
        occurrence = dt.datetime.fromisoformat(str(retry["scheduled_for"]))
        attempt = int(retry["attempt"])
    except (KeyError, ValueError, TypeError):
        return None
    return (occurrence, attempt) if at == job.next_run_at else None


def retry_delay(job: ScheduledJob, failed_attempt: int) -> dt.timedelta:
    """How long after attempt `failed_attempt` fails the next one is due: `retry_delay_seconds`, doubled
    for each further attempt, capped at `RETRY_BACKOFF_CAP`."""
    base = max(0, job.retry_delay_seconds)
    seconds = base * 2 ** min(max(failed_attempt - 1, 0), 32)
    return min(dt.timedelta(seconds=seconds), RETRY_BACKOFF_CAP)


def _claim_due(ws: Workspace, runner_id: str, now: dt.datetime, batch: int) -> list[_Claim]:
    claims: list[_Claim] = []
    with ws.transaction() as tx:
        stmt = _due(now).limit(batch)
        if tx.db.get_bind().dialect.name == "postgresql":
            stmt = stmt.with_for_update(skip_locked=True)  # other runners take the other jobs
        # Locked, so two runners never both close one job's runs (their counter updates would collide);
        # on PostgreSQL a runner skips a job another one is closing or claiming.
        running = (
            sa.select(ScheduledJob)
            .where(ScheduledJob.currently_running.is_(True))
            .with_for_update(skip_locked=tx.db.get_bind().dialect.name == "postgresql")
        )
        for job in list(tx.db.scalars(running)):
            if _runner_gone(job.claimed_by, job.claimed_until, now):
                _abandon_runs(tx, job)
        for job in list(tx.db.scalars(stmt)):
            if (
                not job.allow_concurrent
                and job.currently_running
                and job.claimed_until
                and job.claimed_until > now
            ):
                continue
            due = job.next_run_at
            assert due is not None
            retry = _pending_retry(job)
            occurrence, attempt = retry or (due, 1)
            if job.expires_at is not None and occurrence > job.expires_at:
                job.status, job.next_run_at = JobStatus.COMPLETED, None
                tx.db.flush()
                _publish(tx, job, "job_completed", reason="expired")
                continue
            nxt = next_occurrence(job, after=max(now, occurrence), previous=occurrence)
            if job.expires_at is not None and nxt is not None and nxt > job.expires_at:
                nxt = None
            if not _take(tx, job, due, nxt, runner_id, now):
                continue  # another runner moved it first
            # A late retry still runs: its occurrence was run once already, and failed.
            skip = attempt == 1 and job.misfire_policy == "skip" and due < now - MISFIRE_GRACE
            run = JobRun(
                id=uuid.uuid4(),
                job_id=job.id,
                scheduled_for=occurrence,
                attempt=attempt,
                status="skipped" if skip else "running",
                runner_id=runner_id,
                started_at=utcnow(),  # wall-clock time, even when `now` is simulated
                finished_at=utcnow() if skip else None,
                error="missed while no scheduler was running (misfire_policy=skip)" if skip else None,
            )
            try:
                with tx.db.begin_nested():
                    tx.db.add(run)
                    tx.db.flush()
            except sa.exc.IntegrityError:
                continue  # recorded by another runner already
            tx.db.refresh(job)
            if skip:
                job.currently_running = False
                job.claimed_by = job.claimed_until = None
                if nxt is None:
                    job.status = JobStatus.COMPLETED
                tx.db.flush()
                _publish(tx, job, "job_run_skipped", scheduled_for=occurrence.isoformat())
                continue
            _publish(tx, job, "job_run_started", scheduled_for=occurrence.isoformat(), attempt=attempt)
            claims.append(_Claim(job, occurrence, run.id, nxt, attempt, now))
            tx.db.expunge(job)
    return claims


def _take(
    tx: Tx, job: ScheduledJob, due: dt.datetime, nxt: dt.datetime | None, runner_id: str, now: dt.datetime
) -> bool:
    """Compare-and-set the job's `next_run_at` from `due` to `nxt` under this runner's claim."""
    won = tx.db.execute(
        sa.update(ScheduledJob)
        .where(
            ScheduledJob.id == job.id,
            ScheduledJob.status == JobStatus.ACTIVE,
            ScheduledJob.next_run_at == due,
        )
        .values(
            {
                ScheduledJob.next_run_at: nxt,
                ScheduledJob.claimed_by: runner_id,
                ScheduledJob.claimed_until: now + LEASE,
                ScheduledJob.currently_running: True,
                # the retry is taken now (or was stale): either way it is not due again
                ScheduledJob.meta: {k: x for k, x in (job.meta or {}).items() if k != "retry"},
            }
        )
        .execution_options(synchronize_session=False)
    )
    return bool(won.rowcount == 1)  # type: ignore[attr-defined]


def _runner_gone(runner_id: str | None, claimed_until: dt.datetime | None, now: dt.datetime) -> bool:
    """The claim's runner stopped: its lease lapsed, or it ran on this host and its process is gone."""
    if claimed_until is None or claimed_until <= now:
        return True
    host, _, rest = (runner_id or "").partition(":")
    pid = rest.partition(":")[0]
    return host == HOST and pid.isdigit() and not pid_alive(int(pid))


def _abandon_runs(tx: Tx, job: ScheduledJob) -> None:
    """Close the runs a dead runner left `running` as failures, so the record says what happened; the
    job is claimed afresh for its next occurrence (a crashed occurrence is not run again)."""
    stuck = list(
        tx.db.scalars(
            sa.select(JobRun).where(JobRun.job_id == job.id, JobRun.status == "running").with_for_update()
        )
    )
    for run in stuck:
        run.status = "failure"
        run.finished_at = utcnow()
        run.error = f"abandoned: its runner {run.runner_id} stopped before finishing"
    job.currently_running = False
    job.claimed_by = job.claimed_until = None
    job.failure_count += len(stuck)
    job.run_count += len(stuck)
    job.last_run_status = "failure" if stuck else job.last_run_status
    if job.status is JobStatus.ACTIVE and job.next_run_at is None:  # its last occurrence was the one lost
        job.status = JobStatus.FAILED if job.schedule_type is ScheduleType.ONCE else JobStatus.COMPLETED
    tx.db.flush()
    if stuck:
        _publish(tx, job, "job_runs_abandoned", runs=[str(r.id) for r in stuck])


def _finish_attempt(ws: Workspace, run_id: uuid.UUID, *, ok: bool, output: Any, error: str | None) -> JobRun:
    with ws.transaction() as tx:
        run = fetch(tx.db, JobRun, run_id, "job_run", lock=True)
        now = utcnow()
        run.status = "success" if ok else "failure"
        run.finished_at = now
        run.duration_ms = int((now - (run.started_at or now)).total_seconds() * 1000)
        run.output = jsonable(output) if ok and _is_jsonable(output) else None
        run.error = error
        tx.db.flush()
    return run


def _is_jsonable(value: Any) -> bool:
    return value is None or isinstance(value, str | int | float | bool | list | dict)


def _finish_job(ws: Workspace, claim: _Claim, *, ok: bool, error: str | None) -> None:
    with ws.transaction() as tx:
        j = fetch(tx.db, ScheduledJob, claim.job.id, "scheduled_job", lock=True)
        now = utcnow()
        j.last_run_at = now
        j.last_run_status = "success" if ok else "failure"
        j.last_run_error = error
        j.currently_running = False
        j.claimed_by = j.claimed_until = None
        if not ok and _schedule_retry(j, claim):
            tx.db.flush()
            _publish(
                tx,
                j,
                "job_retry_scheduled",
                error=error,
                scheduled_for=claim.occurrence.isoformat(),
                attempt=claim.attempt + 1,
            )
            return
        # The occurrence is over (it succeeded, or failed its last attempt): count it once.
        j.run_count += 1
        j.success_count += 1 if ok else 0
        j.failure_count += 0 if ok else 1
        if j.status is JobStatus.ACTIVE:
            if j.schedule_type is ScheduleType.ONCE:
                j.status = JobStatus.COMPLETED if ok else JobStatus.FAILED
                j.next_run_at = None
            elif (j.max_runs is not None and j.run_count >= j.max_runs) or j.next_run_at is None:
                j.status = JobStatus.COMPLETED
                j.next_run_at = None
        tx.db.flush()
        _publish(tx, j, "job_run_succeeded" if ok else "job_run_failed", error=error)


def _schedule_retry(j: ScheduledJob, claim: _Claim) -> bool:
    """Make the failed occurrence's next attempt the job's next due time, if it has one left and it
    comes before the job's next regular occurrence (which otherwise runs the work afresh)."""
    if j.status is not JobStatus.ACTIVE or not j.retry_on_failure or claim.attempt > j.max_retries:
        return False
    at = (claim.now or utcnow()) + retry_delay(j, claim.attempt)
    if j.next_run_at is not None and at >= j.next_run_at:
        return False
    j.next_run_at = at
    j.meta = {
        **(j.meta or {}),
        "retry": {
            "at": at.isoformat(),
            "scheduled_for": claim.occurrence.isoformat(),
            "attempt": claim.attempt + 1,
        },
    }
    return True


def _resolve(job: ScheduledJob) -> Handler:
    key = job.job_config.get("handler") if job.job_type is JobType.CUSTOM else job.job_type.value
    handler = _handlers.get(str(key))
    if handler is None and str(key) in BUILT_IN_HANDLERS and job.job_type is not JobType.CUSTOM:
        importlib.import_module(BUILT_IN_HANDLERS[str(key)])  # registers it (see BUILT_IN_HANDLERS)
        handler = _handlers.get(str(key))
    if handler is None:
        raise ConfigurationError(
            f"no handler registered for {key!r}: call cmdc_nb.scheduling.register_job_handler({key!r}, fn)"
        )
    return handler


async def _call(handler: Handler, ctx: JobContext) -> Any:
    if inspect.iscoroutinefunction(handler):
        return await handler(ctx)
    result = await asyncio.to_thread(handler, ctx)  # sync work never blocks the event loop
    if inspect.isawaitable(result):
        return await result
    return result


@dataclass
class Scheduler:
    """Runs due jobs. `await tick()` once, `start()` in the background, or `run_forever()`."""

    ws: Workspace | None = None
    runner_id: str = field(
        default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
    )
    poll_seconds: float = 1.0
    batch: int = 100
    _task: asyncio.Task[None] | None = field(default=None, init=False, repr=False)

    @property
    def workspace(self) -> Workspace:
        return get_workspace(self.ws)

    async def tick(self, now: dt.datetime | None = None) -> list[JobRun]:
        """Claim every job due at `now` (retries included) and run one attempt of each, concurrently;
        returns those attempts' runs. A failed attempt's retry is scheduled for a later tick."""
        at = v.aware(now, "now") if now is not None else utcnow()
        claims = await asyncio.to_thread(_claim_due, self.workspace, self.runner_id, at, self.batch)
        return list(await asyncio.gather(*(self._execute(c) for c in claims)))

    async def _execute(self, claim: _Claim) -> JobRun:
        """One attempt at the claimed occurrence. A failure is recorded and, if the job retries, its
        next attempt is scheduled for later (`_schedule_retry`): nothing here waits for it."""
        ws, job = self.workspace, claim.job
        ctx = JobContext(
            job.id,
            job.user_id,
            job.name,
            job.job_type,
            dict(job.job_config),
            claim.occurrence,
            claim.attempt,
            ws,
        )
        try:
            output = await _call(_resolve(job), ctx)
        except Exception as exc:  # a job's failure is recorded, never raised into the runner
            error = f"{type(exc).__name__}: {exc}"[:2000]
            run = await asyncio.to_thread(
                _finish_attempt, ws, claim.run_id, ok=False, output=None, error=error
            )
            await asyncio.to_thread(_finish_job, ws, claim, ok=False, error=error)
            return run
        run = await asyncio.to_thread(_finish_attempt, ws, claim.run_id, ok=True, output=output, error=None)
        await asyncio.to_thread(_finish_job, ws, claim, ok=True, error=None)
        return run

    async def run_forever(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.poll_seconds)

    def start(self) -> asyncio.Task[None]:
        """Run in the background on the current event loop (a notebook's kernel loop); returns the task."""
        if self._task is not None and not self._task.done():
            return self._task
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            # a plain script: there is no loop to run beside
            raise ConfigurationError(
                "Scheduler.start() runs beside a running event loop (a notebook's); in a script use "
                "asyncio.run(scheduler.run_forever()), or the `cmdc-nb scheduler` command"
            ) from None
        self._task = loop.create_task(self.run_forever(), name=f"cmdc-scheduler {self.runner_id}")
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


@checked
def run_due_jobs(*, now: dt.datetime | None = None, ws: Workspace | None = None) -> list[JobRun]:
    """Run what is due once, from synchronous code. (In a notebook, `await Scheduler().tick()`.)

    Returns promptly: a failed attempt's retry is stored as the job's next due time, never waited for."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(Scheduler(ws).tick(now))
    raise ConfigurationError(
        "an event loop is running here: use `await cmdc_nb.scheduling.Scheduler().tick()`"
    )
