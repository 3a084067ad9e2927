"""Scheduled jobs — cron (time-zone aware, via croniter), interval and one-time — and the runner.

```
job:  active → paused → active        (pause_job / resume_job)
      active | paused → cancelled     (cancel_job)
      active → completed              (a one-time job ran, max_runs reached, or past expires_at)
      active → failed                 (a one-time job failed all its attempts)
```

**Claiming is atomic.** A runner claims an occurrence by moving the job's `next_run_at` from that
occurrence to the next one with a compare-and-set `UPDATE … WHERE next_run_at = :occurrence`, and
records the attempt in `job_runs`, whose unique `(job_id, scheduled_for, attempt)` backs it up. Two
runners racing over the same due jobs therefore run each occurrence once.

**Misfires.** When the runner was down and an occurrence is more than `MISFIRE_GRACE` late, the
job's `misfire_policy` decides: `run_once` runs it once now (however many occurrences were missed),
`skip` records it as skipped. Either way the next occurrence is computed from now, so there is no
catch-up storm.

**Handlers.** `register_job_handler(name)` registers a callable (sync — run in a worker thread — or
async). Custom jobs name theirs in `job_config["handler"]`; `workflow`, `reindex` and `cleanup` jobs use
the handler registered under that type (`cleanup` is built in: expired approvals, stale presence,
expired artifacts and their blobs).

**Runners.** In a notebook, `Scheduler().start()` runs as a background task on the kernel's own event
loop and never blocks it; from a shell, `cmdc-nb scheduler` runs one until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import inspect
import os
import socket
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from croniter import croniter

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.proc import HOST, pid_alive
from cmdc_nb._plumbing.service import UNSET, Unset, check_transition, fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import ConfigurationError, InvalidInputError
from cmdc_nb.events import topics
from cmdc_nb.store.enums import JobStatus, JobType, ScheduleType
from cmdc_nb.store.models import JobRun, ScheduledJob, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import utcnow

__all__ = [
    "JOB_TRANSITIONS",
    "LEASE",
    "MISFIRE_GRACE",
    "JobContext",
    "Scheduler",
    "cancel_job",
    "create_scheduled_job",
    "delete_scheduled_job",
    "get_scheduled_job",
    "list_due_jobs",
    "list_job_runs",
    "list_scheduled_jobs",
    "next_occurrence",
    "pause_job",
    "register_job_handler",
    "resume_job",
    "run_due_jobs",
    "update_scheduled_job",
]

MISFIRE_GRACE = dt.timedelta(seconds=60)
LEASE = dt.timedelta(minutes=10)  # a crashed runner's claim on a non-concurrent job lapses after this

_J = JobStatus
JOB_TRANSITIONS: dict[JobStatus, frozenset[JobStatus]] = {
    _J.ACTIVE: frozenset({_J.PAUSED, _J.CANCELLED, _J.COMPLETED, _J.FAILED}),
    _J.PAUSED: frozenset({_J.ACTIVE, _J.CANCELLED}),
    _J.COMPLETED: frozenset(),
    _J.FAILED: frozenset(),
    _J.CANCELLED: frozenset(),
}

JobRef = ScheduledJob | uuid.UUID | str


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


# --- schedules --------------------------------------------------------------------------------------


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    # OSError: zoneinfo opens a file named after the zone, so a long or odd name fails in the OS
    # (found by fuzzing); TypeError: not a string.
    except (ZoneInfoNotFoundError, ValueError, OSError, TypeError):
        raise InvalidInputError(
            f"unknown time zone {str(name)[:80]!r} (use an IANA name like 'Europe/Paris')", field="timezone"
        ) from None


def _cron_next(expression: str, tz: str, after: dt.datetime, previous: dt.datetime | None) -> dt.datetime:
    zone = _zone(tz)
    it = croniter(expression, after.astimezone(zone))
    nxt: dt.datetime = it.get_next(dt.datetime)
    # When clocks fall back, a local time happens twice; cron runs it once.
    if previous is not None:
        prev_local = previous.astimezone(zone)
        while nxt.replace(tzinfo=None) == prev_local.replace(tzinfo=None):
            nxt = it.get_next(dt.datetime)
    return nxt.astimezone(dt.UTC)


def next_occurrence(
    job: ScheduledJob, *, after: dt.datetime, previous: dt.datetime | None = None
) -> dt.datetime | None:
    """The job's first occurrence strictly after `after` (None when it has no more)."""
    if job.schedule_type is ScheduleType.ONCE:
        return job.run_at if previous is None else None
    if job.schedule_type is ScheduleType.INTERVAL:
        step = dt.timedelta(seconds=job.interval_seconds or 60)
        anchor = previous or after
        if anchor > after:
            return anchor
        missed = (after - anchor) // step + 1
        return anchor + missed * step
    return _cron_next(job.cron_expression or "", job.timezone, after, previous)


def _schedule_fields(
    cron: str | None, interval_seconds: int | None, run_at: dt.datetime | None, timezone: str
) -> dict[str, Any]:
    given = [x is not None for x in (cron, interval_seconds, run_at)]
    if sum(given) != 1:
        raise InvalidInputError("give exactly one of cron=, interval_seconds= or run_at=", field="schedule")
    _zone(timezone)
    if cron is not None:
        if not isinstance(cron, str) or not croniter.is_valid(cron):
            raise InvalidInputError(f"{cron!r} is not a cron expression (e.g. '0 9 * * 1-5')", field="cron")
        return {
            "schedule_type": ScheduleType.CRON,
            "cron_expression": cron,
            "interval_seconds": None,
            "run_at": None,
        }
    if interval_seconds is not None:
        v.count(interval_seconds, "interval_seconds", minimum=1)
        return {
            "schedule_type": ScheduleType.INTERVAL,
            "interval_seconds": interval_seconds,
            "cron_expression": None,
            "run_at": None,
        }
    return {
        "schedule_type": ScheduleType.ONCE,
        "run_at": v.aware(run_at, "run_at"),
        "cron_expression": None,
        "interval_seconds": None,
    }


def _job_payload(j: ScheduledJob) -> dict[str, Any]:
    return {
        "job_id": str(j.id),
        "user_id": str(j.user_id),
        "name": j.name,
        "job_type": j.job_type.value,
        "status": j.status.value,
        "next_run_at": j.next_run_at.isoformat() if j.next_run_at else None,
    }


def _publish(tx: Tx, j: ScheduledJob, type: str, **extra: Any) -> None:
    tx.publish(topics.user(j.user_id), type, {**_job_payload(j), **extra})


def create_scheduled_job(
    user: User | uuid.UUID | str,
    *,
    job_type: JobType | str = JobType.CUSTOM,
    name: str | None = None,
    cron: str | None = None,
    interval_seconds: int | None = None,
    run_at: dt.datetime | None = None,
    timezone: str = "UTC",
    job_config: Mapping[str, Any] | None = None,
    max_runs: int | None = None,
    expires_at: dt.datetime | None = None,
    allow_concurrent: bool = False,
    misfire_policy: str = "run_once",
    retry_on_failure: bool = True,
    max_retries: int = 3,
    retry_delay_seconds: int = 60,
    ws: Workspace | None = None,
) -> ScheduledJob:
    """Schedule a job: exactly one of `cron` (in `timezone`), `interval_seconds` or `run_at`.

    A custom job names its handler in `job_config["handler"]` (see `register_job_handler`).
    """
    jtype = v.choice(JobType, job_type, "job_type")
    schedule = _schedule_fields(cron, interval_seconds, run_at, timezone)
    config = jsonable(dict(job_config or {}))
    if jtype is JobType.CUSTOM and not isinstance(config.get("handler"), str):
        raise InvalidInputError(
            'a custom job needs job_config={"handler": "<registered name>"}', field="job_config"
        )
    if misfire_policy not in ("run_once", "skip"):
        raise InvalidInputError(f"{misfire_policy!r} is not one of: run_once, skip", field="misfire_policy")
    for fname, value in (
        ("max_runs", max_runs),
        ("max_retries", max_retries),
        ("retry_delay_seconds", retry_delay_seconds),
    ):
        if value is not None:
            v.count(value, fname)
    now = utcnow()
    job = ScheduledJob(
        id=uuid.uuid4(),
        user_id=v.id_of(user, "user"),
        name=name,
        job_type=jtype,
        job_config=config,
        timezone=timezone,
        max_runs=max_runs,
        expires_at=v.aware(expires_at, "expires_at") if expires_at is not None else None,
        allow_concurrent=bool(allow_concurrent),
        misfire_policy=misfire_policy,
        retry_on_failure=bool(retry_on_failure),
        max_retries=max_retries,
        retry_delay_seconds=retry_delay_seconds,
        **schedule,
    )
    job.next_run_at = next_occurrence(job, after=now)
    with get_workspace(ws).transaction() as tx:
        fetch(tx.db, User, job.user_id, "user")
        tx.db.add(job)
        tx.db.flush()
        _publish(tx, job, "job_scheduled")
    return job


def get_scheduled_job(job: JobRef, *, ws: Workspace | None = None) -> ScheduledJob:
    with get_workspace(ws).read() as db:
        return fetch(db, ScheduledJob, job, "scheduled_job")


def list_scheduled_jobs(
    user: User | uuid.UUID | str,
    *,
    status: JobStatus | str | None = None,
    job_type: JobType | str | None = None,
    limit: int = 50,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[ScheduledJob]:
    """The user's jobs, oldest first."""
    user = access.scope_user(get_workspace(ws), user)
    stmt = sa.select(ScheduledJob).where(ScheduledJob.user_id == v.id_of(user, "user"))
    if status is not None:
        stmt = stmt.where(ScheduledJob.status == v.choice(JobStatus, status, "status"))
    if job_type is not None:
        stmt = stmt.where(ScheduledJob.job_type == v.choice(JobType, job_type, "job_type"))
    with get_workspace(ws).read() as db:
        return paginate(
            db,
            stmt,
            order_by=ScheduledJob.inserted_at,
            id_column=ScheduledJob.id,
            limit=limit,
            after=after,
            descending=False,
        )


def _due(now: dt.datetime) -> sa.Select[Any]:
    return (
        sa.select(ScheduledJob)
        .where(
            ScheduledJob.status == JobStatus.ACTIVE,
            ScheduledJob.next_run_at.is_not(None),
            ScheduledJob.next_run_at <= now,
        )
        .order_by(ScheduledJob.next_run_at, ScheduledJob.id)
    )


def list_due_jobs(*, now: dt.datetime | None = None, ws: Workspace | None = None) -> list[ScheduledJob]:
    at = v.aware(now, "now") if now is not None else utcnow()
    with get_workspace(ws).read() as db:
        return list(db.scalars(_due(at)))


def update_scheduled_job(
    job: JobRef,
    *,
    name: str | Unset | None = UNSET,
    cron: str | Unset = UNSET,
    interval_seconds: int | Unset = UNSET,
    run_at: dt.datetime | Unset = UNSET,
    timezone: str | Unset = UNSET,
    job_config: Mapping[str, Any] | Unset = UNSET,
    max_runs: int | Unset | None = UNSET,
    expires_at: dt.datetime | Unset | None = UNSET,
    ws: Workspace | None = None,
) -> ScheduledJob:
    """Change a job; a new schedule (or time zone) recomputes `next_run_at` from now."""
    with get_workspace(ws).transaction() as tx:
        j = fetch(tx.db, ScheduledJob, job, "scheduled_job", lock=True)
        reschedule = not all(isinstance(x, Unset) for x in (cron, interval_seconds, run_at, timezone))
        if reschedule:
            tz = j.timezone if isinstance(timezone, Unset) else timezone
            if all(isinstance(x, Unset) for x in (cron, interval_seconds, run_at)):
                fields = _schedule_fields(j.cron_expression, j.interval_seconds, j.run_at, tz)
            else:
                fields = _schedule_fields(
                    None if isinstance(cron, Unset) else cron,
                    None if isinstance(interval_seconds, Unset) else interval_seconds,
                    None if isinstance(run_at, Unset) else run_at,
                    tz,
                )
            for key, value in {**fields, "timezone": tz}.items():
                setattr(j, key, value)
        if not isinstance(name, Unset):
            j.name = name
        if not isinstance(job_config, Unset):
            j.job_config = jsonable(dict(job_config))
        if not isinstance(max_runs, Unset):
            j.max_runs = max_runs
        if not isinstance(expires_at, Unset):
            j.expires_at = v.aware(expires_at, "expires_at") if expires_at is not None else None
        if reschedule and j.status is JobStatus.ACTIVE:
            j.next_run_at = next_occurrence(j, after=utcnow())
        tx.db.flush()
        _publish(tx, j, "job_updated")
    return j


def _move(job: JobRef, target: JobStatus, ws: Workspace | None) -> ScheduledJob:
    with get_workspace(ws).transaction() as tx:
        j = fetch(tx.db, ScheduledJob, job, "scheduled_job", lock=True)
        check_transition("scheduled_job", JOB_TRANSITIONS, j.status, target)
        j.status = target
        if target is JobStatus.ACTIVE:
            # Resuming starts from now: occurrences missed while paused are not made up.
            j.next_run_at = next_occurrence(j, after=utcnow())
        elif target is JobStatus.CANCELLED:
            j.next_run_at = None
        tx.db.flush()
        _publish(tx, j, f"job_{target.value}")
    return j


def pause_job(job: JobRef, *, ws: Workspace | None = None) -> ScheduledJob:
    return _move(job, JobStatus.PAUSED, ws)


def resume_job(job: JobRef, *, ws: Workspace | None = None) -> ScheduledJob:
    return _move(job, JobStatus.ACTIVE, ws)


def cancel_job(job: JobRef, *, ws: Workspace | None = None) -> ScheduledJob:
    return _move(job, JobStatus.CANCELLED, ws)


def delete_scheduled_job(job: JobRef, *, ws: Workspace | None = None) -> None:
    with get_workspace(ws).transaction() as tx:
        j = fetch(tx.db, ScheduledJob, job, "scheduled_job", lock=True)
        _publish(tx, j, "job_deleted")
        tx.db.delete(j)


def list_job_runs(
    job: JobRef, *, limit: int = 50, after: str | None = None, ws: Workspace | None = None
) -> Page[JobRun]:
    """Every recorded attempt of a job, newest first."""
    stmt = sa.select(JobRun).where(JobRun.job_id == v.id_of(job, "scheduled_job"))
    with get_workspace(ws).read() as db:
        return paginate(db, stmt, order_by=JobRun.inserted_at, id_column=JobRun.id, limit=limit, after=after)


# --- claiming and running ---------------------------------------------------------------------------


@dataclass
class _Claim:
    job: ScheduledJob
    occurrence: dt.datetime
    run_id: uuid.UUID
    next_run_at: dt.datetime | None


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
            occurrence = job.next_run_at
            assert occurrence is not None
            if job.expires_at is not None and occurrence > job.expires_at:
                job.status, job.next_run_at = JobStatus.COMPLETED, None
                tx.db.flush()
                _publish(tx, job, "job_completed", reason="expired")
                continue
            nxt = next_occurrence(job, after=max(now, occurrence), previous=occurrence)
            if job.expires_at is not None and nxt is not None and nxt > job.expires_at:
                nxt = None
            won = tx.db.execute(
                sa.update(ScheduledJob)
                .where(
                    ScheduledJob.id == job.id,
                    ScheduledJob.status == JobStatus.ACTIVE,
                    ScheduledJob.next_run_at == occurrence,
                )
                .values(
                    next_run_at=nxt, claimed_by=runner_id, claimed_until=now + LEASE, currently_running=True
                )
                .execution_options(synchronize_session=False)
            )
            if won.rowcount != 1:  # type: ignore[attr-defined]
                continue  # another runner moved it first
            skip = job.misfire_policy == "skip" and occurrence < now - MISFIRE_GRACE
            run = JobRun(
                id=uuid.uuid4(),
                job_id=job.id,
                scheduled_for=occurrence,
                attempt=1,
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
            _publish(tx, job, "job_run_started", scheduled_for=occurrence.isoformat())
            claims.append(_Claim(job, occurrence, run.id, nxt))
            tx.db.expunge(job)
    return claims


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


def _new_attempt(ws: Workspace, claim: _Claim, attempt: int, runner_id: str) -> uuid.UUID:
    with ws.transaction() as tx:
        run = JobRun(
            id=uuid.uuid4(),
            job_id=claim.job.id,
            scheduled_for=claim.occurrence,
            attempt=attempt,
            status="running",
            runner_id=runner_id,
            started_at=utcnow(),
        )
        tx.db.add(run)
        tx.db.flush()
        return run.id


def _finish_job(ws: Workspace, claim: _Claim, *, ok: bool, error: str | None) -> None:
    with ws.transaction() as tx:
        j = fetch(tx.db, ScheduledJob, claim.job.id, "scheduled_job", lock=True)
        now = utcnow()
        j.run_count += 1
        j.success_count += 1 if ok else 0
        j.failure_count += 0 if ok else 1
        j.last_run_at = now
        j.last_run_status = "success" if ok else "failure"
        j.last_run_error = error
        j.currently_running = False
        j.claimed_by = j.claimed_until = None
        if j.status is JobStatus.ACTIVE:
            if j.schedule_type is ScheduleType.ONCE:
                j.status = JobStatus.COMPLETED if ok else JobStatus.FAILED
                j.next_run_at = None
            elif (j.max_runs is not None and j.run_count >= j.max_runs) or j.next_run_at is None:
                j.status = JobStatus.COMPLETED
                j.next_run_at = None
        tx.db.flush()
        _publish(tx, j, "job_run_succeeded" if ok else "job_run_failed", error=error)


def _resolve(job: ScheduledJob) -> Handler:
    key = job.job_config.get("handler") if job.job_type is JobType.CUSTOM else job.job_type.value
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
        """Claim every job due at `now` and run them concurrently; the final attempt of each."""
        at = v.aware(now, "now") if now is not None else utcnow()
        claims = await asyncio.to_thread(_claim_due, self.workspace, self.runner_id, at, self.batch)
        return list(await asyncio.gather(*(self._execute(c) for c in claims)))

    async def _execute(self, claim: _Claim) -> JobRun:
        ws, job = self.workspace, claim.job
        attempts = 1 + (job.max_retries if job.retry_on_failure else 0)
        run_id = claim.run_id
        error: str | None = None
        run: JobRun | None = None
        for attempt in range(1, attempts + 1):
            if attempt > 1:
                await asyncio.sleep(job.retry_delay_seconds)
                run_id = await asyncio.to_thread(_new_attempt, ws, claim, attempt, self.runner_id)
            ctx = JobContext(
                job.id,
                job.user_id,
                job.name,
                job.job_type,
                dict(job.job_config),
                claim.occurrence,
                attempt,
                ws,
            )
            try:
                output = await _call(_resolve(job), ctx)
            except Exception as exc:  # a job's failure is recorded, never raised into the runner
                error = f"{type(exc).__name__}: {exc}"[:2000]
                run = await asyncio.to_thread(_finish_attempt, ws, run_id, ok=False, output=None, error=error)
                continue
            run = await asyncio.to_thread(_finish_attempt, ws, run_id, ok=True, output=output, error=None)
            error = None
            break
        await asyncio.to_thread(_finish_job, ws, claim, ok=error is None, error=error)
        assert run is not None
        return run

    async def run_forever(self) -> None:
        while True:
            await self.tick()
            await asyncio.sleep(self.poll_seconds)

    def start(self) -> asyncio.Task[None]:
        """Run in the background on the current event loop (a notebook's kernel loop); returns the task."""
        if self._task is not None and not self._task.done():
            return self._task
        self._task = asyncio.get_running_loop().create_task(
            self.run_forever(), name=f"cmdc-scheduler {self.runner_id}"
        )
        return self._task

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def run_due_jobs(*, now: dt.datetime | None = None, ws: Workspace | None = None) -> list[JobRun]:
    """Run what is due once, from synchronous code. (In a notebook, `await Scheduler().tick()`.)"""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(Scheduler(ws).tick(now))
    raise ConfigurationError(
        "an event loop is running here: use `await cmdc_nb.scheduling.Scheduler().tick()`"
    )
