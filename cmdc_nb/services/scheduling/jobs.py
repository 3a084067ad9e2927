"""Scheduled jobs as rows: cron or interval schedules in the job's zone (croniter), the next occurrence,
creating, updating, pausing, listing and the runs they left."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import sqlalchemy as sa
from croniter import croniter

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import UNSET, Unset, check_transition, fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.events import topics
from cmdc_nb.store.enums import JobStatus, JobType, ScheduleType
from cmdc_nb.store.models import JobRun, ScheduledJob, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import utcnow

__all__ = [
    "JOB_TRANSITIONS",
    "LEASE",
    "MISFIRE_GRACE",
    "cancel_job",
    "create_scheduled_job",
    "delete_scheduled_job",
    "get_scheduled_job",
    "list_due_jobs",
    "list_job_runs",
    "list_scheduled_jobs",
    "next_occurrence",
    "pause_job",
    "resume_job",
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


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    # OSError: zoneinfo opens a file named after the zone, so a long or odd name fails in the OS
    # (a long or odd name); TypeError: not a string.
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


@checked
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


# What each job type's handler reads from `job_config` (the built-in handlers name their target).
_CONFIG_KEY = {JobType.CUSTOM: "handler", JobType.WORKFLOW: "workflow_id", JobType.REINDEX: "index_id"}
_CONFIG_HINT = {
    JobType.CUSTOM: '{"handler": "<registered name>"}',
    JobType.WORKFLOW: '{"workflow_id": str(workflow.id), "input": {…}}',
    JobType.REINDEX: '{"index_id": str(index.id)}',
}


def _check_config(jtype: JobType, config: Mapping[str, Any]) -> None:
    """Refuse, when the job is created, a config its handler could not run with at every occurrence."""
    key = _CONFIG_KEY.get(jtype)
    if key is not None and not (isinstance(config.get(key), str) and config[key]):
        raise InvalidInputError(
            f"a {jtype.value} job needs job_config={_CONFIG_HINT[jtype]}", field="job_config"
        )
    if jtype is JobType.WORKFLOW and not isinstance(config.get("input", {}), dict):
        raise InvalidInputError("a workflow job's job_config.input must be an object", field="job_config")


@checked
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
    """Schedule a `workflow`, `reindex`, `cleanup` or `custom` job: one of `cron` (in `timezone`),
    `interval_seconds` or `run_at`.

    A custom job names its handler in `job_config["handler"]` (see `register_job_handler`); a `workflow`
    job starts a run of `job_config["workflow_id"]` with `job_config["input"]`; a `reindex` job
    re-ingests `job_config["index_id"]` incrementally. A failed attempt is retried up to `max_retries`
    times, `retry_delay_seconds` later and twice as long each time, by later ticks of the runner.
    """
    jtype = v.choice(JobType, job_type, "job_type")
    schedule = _schedule_fields(cron, interval_seconds, run_at, timezone)
    config = jsonable(dict(job_config or {}))
    _check_config(jtype, config)
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


@checked
def get_scheduled_job(job: JobRef, *, ws: Workspace | None = None) -> ScheduledJob:
    with get_workspace(ws).read() as db:
        return fetch(db, ScheduledJob, job, "scheduled_job")


@checked
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


@checked
def list_due_jobs(*, now: dt.datetime | None = None, ws: Workspace | None = None) -> list[ScheduledJob]:
    at = v.aware(now, "now") if now is not None else utcnow()
    with get_workspace(ws).read() as db:
        return list(db.scalars(_due(at)))


@checked
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
            config = jsonable(dict(job_config))
            _check_config(j.job_type, config)
            j.job_config = config
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


@checked
def pause_job(job: JobRef, *, ws: Workspace | None = None) -> ScheduledJob:
    return _move(job, JobStatus.PAUSED, ws)


@checked
def resume_job(job: JobRef, *, ws: Workspace | None = None) -> ScheduledJob:
    return _move(job, JobStatus.ACTIVE, ws)


@checked
def cancel_job(job: JobRef, *, ws: Workspace | None = None) -> ScheduledJob:
    return _move(job, JobStatus.CANCELLED, ws)


@checked
def delete_scheduled_job(job: JobRef, *, ws: Workspace | None = None) -> None:
    with get_workspace(ws).transaction() as tx:
        j = fetch(tx.db, ScheduledJob, job, "scheduled_job", lock=True)
        _publish(tx, j, "job_deleted")
        tx.db.delete(j)


@checked
def list_job_runs(
    job: JobRef, *, limit: int = 50, after: str | None = None, ws: Workspace | None = None
) -> Page[JobRun]:
    """Every recorded attempt of a job, newest first."""
    stmt = sa.select(JobRun).where(JobRun.job_id == v.id_of(job, "scheduled_job"))
    with get_workspace(ws).read() as db:
        return paginate(db, stmt, order_by=JobRun.inserted_at, id_column=JobRun.id, limit=limit, after=after)
