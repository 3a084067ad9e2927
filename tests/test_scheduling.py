"""Scheduled jobs: schedules (DST included), atomic claims, misfires, retries, limits and the runner."""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections import Counter
from zoneinfo import ZoneInfo

import pytest
from waiting import CEILING_S

import cmdc_nb
from cmdc_nb import scheduling
from cmdc_nb.errors import InvalidInputError, InvalidStateError
from cmdc_nb.store.models import ScheduledJob, User
from cmdc_nb.workspace import Workspace

UTC = dt.UTC
AMS = ZoneInfo("Europe/Amsterdam")
calls: Counter[str] = Counter()
lock = threading.Lock()


@scheduling.register_job_handler("count")
def count(ctx: scheduling.JobContext) -> dict[str, str]:
    with lock:
        calls[str(ctx.job_id)] += 1
    return {"job": str(ctx.job_id)}


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()


def custom(ws: Workspace, user: User, **kw: object) -> ScheduledJob:
    kw.setdefault("job_config", {"handler": "count"})
    kw.setdefault("retry_delay_seconds", 0)
    return scheduling.create_scheduled_job(user, ws=ws, **kw)


def set_next(ws: Workspace, job: ScheduledJob, at: dt.datetime) -> None:
    with ws.transaction() as tx:
        tx.db.get(ScheduledJob, job.id).next_run_at = at


def tick(ws: Workspace, now: dt.datetime) -> list:
    return scheduling.run_due_jobs(now=now, ws=ws)


# --- schedules --------------------------------------------------------------------------------------


def test_validation_names_the_problem(ws: Workspace, user: User) -> None:
    for kw, field in [
        ({}, "schedule"),
        ({"cron": "0 9 * *", "job_config": {"handler": "count"}}, "cron"),
        ({"cron": "0 9 * * *", "interval_seconds": 5}, "schedule"),
        ({"interval_seconds": 0}, "interval_seconds"),
        ({"cron": "0 9 * * *", "timezone": "Mars/Olympus"}, "timezone"),
        ({"interval_seconds": 5, "misfire_policy": "later"}, "misfire_policy"),
        ({"run_at": dt.datetime(2030, 1, 1)}, "run_at"),  # naive
    ]:
        with pytest.raises(InvalidInputError) as info:
            custom(ws, user, **kw)
        assert info.value.field == field
    with pytest.raises(InvalidInputError, match="handler"):
        scheduling.create_scheduled_job(user, interval_seconds=5, ws=ws)


def test_next_run_at_for_each_kind(ws: Workspace, user: User) -> None:
    before = dt.datetime.now(UTC)
    every = custom(ws, user, interval_seconds=600)
    assert dt.timedelta(seconds=599) < every.next_run_at - before < dt.timedelta(seconds=602)
    at = before + dt.timedelta(days=2)
    once = custom(ws, user, run_at=at)
    assert once.next_run_at == at
    daily = custom(ws, user, cron="0 9 * * *", timezone="Europe/Amsterdam")
    local = daily.next_run_at.astimezone(AMS)
    assert (local.hour, local.minute) == (9, 0) and daily.next_run_at > before


def _job(cron: str, tz: str) -> ScheduledJob:
    return ScheduledJob(schedule_type="cron", cron_expression=cron, timezone=tz)


@pytest.mark.parametrize(
    ("cron", "tz", "start", "local_times"),
    [
        # spring forward in Amsterdam (29 March 2026): 09:00 local throughout, UTC shifts by an hour
        ("0 9 * * *", "Europe/Amsterdam", dt.datetime(2026, 3, 27, 12, tzinfo=UTC), ["09:00"] * 4),
        # fall back (25 October 2026): 02:30 happens twice that night, the job runs once
        ("30 2 * * *", "Europe/Amsterdam", dt.datetime(2026, 10, 23, 12, tzinfo=UTC), ["02:30"] * 4),
        # New York's change (1 November 2026)
        ("15 8 * * *", "America/New_York", dt.datetime(2026, 10, 30, 20, tzinfo=UTC), ["08:15"] * 4),
    ],
)
def test_cron_across_dst_keeps_local_time(
    cron: str, tz: str, start: dt.datetime, local_times: list[str]
) -> None:
    job, after, prev, seen = _job(cron, tz), start, None, []
    for _ in range(4):
        nxt = scheduling.next_occurrence(job, after=after, previous=prev)
        seen.append(nxt.astimezone(ZoneInfo(tz)))
        after = prev = nxt
    assert [t.strftime("%H:%M") for t in seen] == local_times
    assert len({t.date() for t in seen}) == 4  # one run per day, none doubled
    offsets = {t.utcoffset() for t in seen}
    assert len(offsets) == 2  # the change really was crossed


def test_the_runner_fires_at_the_right_local_times_across_fall_back(ws: Workspace, user: User) -> None:
    job = custom(ws, user, cron="30 2 * * *", timezone="Europe/Amsterdam")
    set_next(ws, job, dt.datetime(2026, 10, 24, 0, 30, tzinfo=UTC))  # 02:30 CEST, the day before
    for _ in range(4):
        due = scheduling.get_scheduled_job(job, ws=ws).next_run_at
        assert len(tick(ws, due + dt.timedelta(seconds=1))) == 1
    runs = sorted(scheduling.list_job_runs(job, ws=ws), key=lambda r: r.scheduled_for)
    local = [r.scheduled_for.astimezone(AMS) for r in runs]
    assert [t.strftime("%m-%d %H:%M %z") for t in local] == [
        "10-24 02:30 +0200",
        "10-25 02:30 +0200",
        "10-26 02:30 +0100",
        "10-27 02:30 +0100",
    ]


# --- running ----------------------------------------------------------------------------------------


def test_a_due_job_runs_once_and_is_recorded(ws: Workspace, user: User) -> None:
    job = custom(ws, user, interval_seconds=3600)
    due = job.next_run_at
    assert tick(ws, due - dt.timedelta(seconds=1)) == []
    [run] = tick(ws, due)
    assert (run.status, run.attempt, run.output, run.duration_ms is not None) == (
        "success",
        1,
        {"job": str(job.id)},
        True,
    )
    after = scheduling.get_scheduled_job(job, ws=ws)
    assert (after.run_count, after.success_count, after.last_run_status, after.currently_running) == (
        1,
        1,
        "success",
        False,
    )
    assert after.next_run_at == due + dt.timedelta(hours=1)
    assert tick(ws, due) == []  # that occurrence is done
    assert calls[str(job.id)] == 1


def test_two_runners_racing_over_100_due_jobs_run_each_exactly_once(
    db_url: str, ws: Workspace, user: User
) -> None:
    past = dt.datetime.now(UTC) - dt.timedelta(seconds=5)
    jobs = [custom(ws, user, run_at=past) for _ in range(100)]
    other = cmdc_nb.connect(db_url, home=ws.home, make_default=False, migrate=False)
    start = threading.Barrier(2)
    results: dict[str, list] = {}

    def runner(name: str, workspace: Workspace) -> None:
        start.wait()
        results[name] = asyncio.run(scheduling.Scheduler(workspace, batch=100).tick())

    threads = [threading.Thread(target=runner, args=(n, w)) for n, w in (("a", ws), ("b", other))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    other.close()
    assert len(results["a"]) + len(results["b"]) == 100
    assert {str(j.id) for j in jobs} == set(calls) and set(calls.values()) == {1}
    for j in jobs:
        runs = list(scheduling.list_job_runs(j, ws=ws))
        assert len(runs) == 1 and runs[0].status == "success"
        assert scheduling.get_scheduled_job(j, ws=ws).status == "completed"


def test_misfires_run_once_or_skip(ws: Workspace, user: User) -> None:
    now = dt.datetime.now(UTC)
    once = custom(ws, user, interval_seconds=60, misfire_policy="run_once")
    skip = custom(ws, user, interval_seconds=60, misfire_policy="skip")
    for j in (once, skip):
        set_next(ws, j, now - dt.timedelta(hours=3))  # 180 occurrences missed while no runner ran
    runs = tick(ws, now)
    assert [r.status for r in runs] == ["success"]
    assert calls[str(once.id)] == 1 and calls[str(skip.id)] == 0
    [skipped] = scheduling.list_job_runs(skip, ws=ws)
    assert skipped.status == "skipped" and "misfire" in skipped.error
    for j in (once, skip):
        assert scheduling.get_scheduled_job(j, ws=ws).next_run_at > now  # no catch-up storm


def test_failures_are_retried_and_every_attempt_recorded(ws: Workspace, user: User) -> None:
    attempts: list[int] = []

    @scheduling.register_job_handler("flaky")
    def flaky(ctx: scheduling.JobContext) -> str:
        attempts.append(ctx.attempt)
        if ctx.attempt < 3:
            raise RuntimeError(f"boom {ctx.attempt}")
        return "ok"

    now = dt.datetime.now(UTC)
    job = custom(ws, user, run_at=now, job_config={"handler": "flaky"}, max_retries=3)
    outcomes = [tick(ws, now) for _ in range(4)]  # a delay of 0: each retry is due at the next tick
    assert [[(r.attempt, r.status) for r in runs] for runs in outcomes] == [
        [(1, "failure")],
        [(2, "failure")],
        [(3, "success")],
        [],
    ]
    assert attempts == [1, 2, 3]
    runs = sorted(scheduling.list_job_runs(job, ws=ws), key=lambda r: r.attempt)
    assert [(r.attempt, r.status, r.error, r.scheduled_for) for r in runs] == [
        (1, "failure", "RuntimeError: boom 1", now),
        (2, "failure", "RuntimeError: boom 2", now),
        (3, "success", None, now),
    ]
    j = scheduling.get_scheduled_job(job, ws=ws)
    assert (j.status, j.run_count, j.success_count, j.failure_count) == ("completed", 1, 1, 0)


def test_a_retry_is_a_future_attempt_with_backoff_never_a_sleep(
    ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A synchronous `run_due_jobs()` once blocked for minutes sleeping between retries; now each retry
    is stored as the job's next due time and the call returns after one attempt."""

    def no_sleep(*args: object) -> None:
        raise AssertionError("the runner slept inside the call")

    monkeypatch.setattr(time, "sleep", no_sleep)
    monkeypatch.setattr(asyncio, "sleep", no_sleep)
    t0 = dt.datetime(2026, 11, 24, 9, tzinfo=UTC)
    job = custom(
        ws,
        user,
        cron="0 9 * * *",
        job_config={"handler": "nobody-registered-this"},
        max_retries=2,
        retry_delay_seconds=100,
    )
    set_next(ws, job, t0)
    [first] = tick(ws, t0)
    j = scheduling.get_scheduled_job(job, ws=ws)
    assert (first.attempt, first.status, j.next_run_at, j.status) == (
        1,
        "failure",
        t0 + dt.timedelta(seconds=100),
        "active",
    )
    assert (j.last_run_status, j.run_count, j.currently_running) == ("failure", 0, False)
    assert tick(ws, t0 + dt.timedelta(seconds=99)) == []  # not due yet
    [second] = tick(ws, t0 + dt.timedelta(seconds=100))
    j = scheduling.get_scheduled_job(job, ws=ws)
    assert (second.attempt, second.scheduled_for) == (2, t0)  # a retry of the 09:00 occurrence
    assert j.next_run_at == t0 + dt.timedelta(seconds=100 + 200)  # the delay doubles
    [third] = tick(ws, j.next_run_at)
    j = scheduling.get_scheduled_job(job, ws=ws)
    assert third.attempt == 3 and "register_job_handler" in (third.error or "")
    # The last attempt failed: the occurrence is counted once and the job waits for tomorrow's.
    assert (j.next_run_at, j.run_count, j.failure_count) == (t0 + dt.timedelta(days=1), 1, 1)


def test_a_retry_that_would_come_after_the_next_occurrence_is_left_to_it(ws: Workspace, user: User) -> None:
    job = custom(
        ws,
        user,
        interval_seconds=60,
        job_config={"handler": "nobody-registered-this"},
        retry_delay_seconds=600,
    )
    due = job.next_run_at
    [run] = tick(ws, due)
    j = scheduling.get_scheduled_job(job, ws=ws)
    assert run.status == "failure" and j.next_run_at == due + dt.timedelta(seconds=60)
    assert (j.run_count, j.failure_count, "retry" in j.meta) == (1, 1, False)


def test_resuming_a_job_drops_its_pending_retry(ws: Workspace, user: User) -> None:
    job = custom(ws, user, interval_seconds=3600, job_config={"handler": "nobody-registered-this"})
    tick(ws, job.next_run_at)
    assert "retry" in scheduling.get_scheduled_job(job, ws=ws).meta
    scheduling.pause_job(job, ws=ws)
    resumed = scheduling.resume_job(job, ws=ws)
    [run] = tick(ws, resumed.next_run_at)  # the regular occurrence, as a first attempt
    assert (run.attempt, run.scheduled_for) == (1, resumed.next_run_at)


def test_a_one_time_job_that_keeps_failing_is_failed(ws: Workspace, user: User) -> None:
    now = dt.datetime.now(UTC)
    job = custom(ws, user, run_at=now, job_config={"handler": "nobody-registered-this"}, max_retries=1)
    [first] = tick(ws, now)
    assert scheduling.get_scheduled_job(job, ws=ws).status == "active"  # its retry is still to come
    [final] = tick(ws, now)
    assert final.status == "failure" and "register_job_handler('nobody-registered-this'" in final.error
    assert first.attempt == 1 and final.attempt == 2
    j = scheduling.get_scheduled_job(job, ws=ws)
    assert (j.status, j.failure_count, len(scheduling.list_job_runs(job, ws=ws))) == ("failed", 1, 2)


def test_max_runs_and_expiry_complete_a_job(ws: Workspace, user: User) -> None:
    capped = custom(ws, user, interval_seconds=60, max_runs=2)
    for _ in range(3):
        due = scheduling.get_scheduled_job(capped, ws=ws).next_run_at
        if due is not None:
            tick(ws, due)
    j = scheduling.get_scheduled_job(capped, ws=ws)
    assert (j.run_count, j.status, j.next_run_at) == (2, "completed", None)
    now = dt.datetime.now(UTC)
    ending = custom(ws, user, interval_seconds=60, expires_at=now + dt.timedelta(seconds=90))
    tick(ws, ending.next_run_at)
    assert scheduling.get_scheduled_job(ending, ws=ws).status == "completed"  # the next would be past expiry


def test_pause_resume_cancel(ws: Workspace, user: User) -> None:
    job = custom(ws, user, interval_seconds=60)
    assert scheduling.pause_job(job, ws=ws).status == "paused"
    assert tick(ws, job.next_run_at + dt.timedelta(minutes=5)) == []  # paused jobs do not run
    resumed = scheduling.resume_job(job, ws=ws)
    assert resumed.status == "active" and resumed.next_run_at > dt.datetime.now(UTC)
    assert scheduling.cancel_job(job, ws=ws).next_run_at is None
    with pytest.raises(InvalidStateError):
        scheduling.resume_job(job, ws=ws)
    with pytest.raises(InvalidStateError):
        scheduling.pause_job(job, ws=ws)


def test_update_reschedules(ws: Workspace, user: User) -> None:
    job = custom(ws, user, interval_seconds=60)
    moved = scheduling.update_scheduled_job(job, cron="0 12 * * *", timezone="Asia/Tokyo", name="noon", ws=ws)
    local = moved.next_run_at.astimezone(ZoneInfo("Asia/Tokyo"))
    assert (moved.schedule_type, moved.name, local.hour) == ("cron", "noon", 12)
    assert [j.id for j in scheduling.list_scheduled_jobs(user, job_type="custom", ws=ws)] == [job.id]


def test_the_cleanup_job_is_built_in(ws: Workspace, user: User) -> None:
    scheduling.create_scheduled_job(user, job_type="cleanup", run_at=dt.datetime.now(UTC), ws=ws)
    [run] = tick(ws, dt.datetime.now(UTC))
    assert run.status == "success" and set(run.output) >= {"approvals_settled", "presence_left"}


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_background_runner_never_blocks_the_event_loop(ws: Workspace, user: User) -> None:
    @scheduling.register_job_handler("slow")
    def slow(ctx: scheduling.JobContext) -> None:
        time.sleep(0.4)  # blocking work: it must run off the loop

    job = custom(
        ws, user, run_at=dt.datetime.now(UTC) - dt.timedelta(seconds=1), job_config={"handler": "slow"}
    )
    runner = scheduling.Scheduler(ws, poll_seconds=0.05)
    task = runner.start()
    beats = 0
    deadline = time.monotonic() + CEILING_S
    while scheduling.get_scheduled_job(job, ws=ws).status != "completed" and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
        beats += 1
    await runner.stop()
    assert task.done() and scheduling.get_scheduled_job(job, ws=ws).status == "completed"
    assert beats >= 10  # the loop kept turning while the job slept
    with pytest.raises(cmdc_nb.errors.ConfigurationError, match="await"):
        scheduling.run_due_jobs(ws=ws)


def test_a_running_job_is_not_started_again_unless_concurrency_is_allowed(ws: Workspace, user: User) -> None:
    single = custom(ws, user, interval_seconds=60)
    multi = custom(ws, user, interval_seconds=60, allow_concurrent=True)
    now = dt.datetime.now(UTC)
    with ws.transaction() as tx:  # both look as if a runner is busy with their previous occurrence
        for j in (single, multi):
            row = tx.db.get(ScheduledJob, j.id)
            row.next_run_at, row.currently_running = now, True
            row.claimed_until = now + dt.timedelta(minutes=5)
    ran = tick(ws, now)
    assert [r.job_id for r in ran] == [multi.id]
    with ws.transaction() as tx:  # the busy runner crashed: its lease lapses
        tx.db.get(ScheduledJob, single.id).claimed_until = now - dt.timedelta(seconds=1)
    assert [r.job_id for r in tick(ws, now)] == [single.id]


def test_runs_left_running_by_a_dead_runner_are_closed_and_the_job_goes_on(ws: Workspace, user: User) -> None:
    import subprocess
    import sys
    import uuid

    from cmdc_nb._plumbing.proc import HOST
    from cmdc_nb.store.models import JobRun

    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead_runner = f"{HOST}:{int(gone.stdout)}:abcdef"
    job = custom(ws, user, interval_seconds=60)
    t0 = dt.datetime(2026, 11, 24, 12, tzinfo=UTC)
    with ws.transaction() as tx:  # what a runner killed mid-run leaves behind: a claim and a running run
        row = tx.db.get(ScheduledJob, job.id)
        row.next_run_at, row.currently_running = t0, True
        row.claimed_by, row.claimed_until = dead_runner, t0 + scheduling.LEASE  # its lease has not lapsed
        stuck = JobRun(
            id=uuid.uuid4(),
            job_id=job.id,
            scheduled_for=t0 - dt.timedelta(minutes=1),
            attempt=1,
            status="running",
            runner_id=dead_runner,
            started_at=t0,
        )
        tx.db.add(stuck)
    runs = tick(ws, t0)  # the runner's process is gone: no need to wait for the lease
    assert [r.status for r in runs] == ["success"] and calls[str(job.id)] == 1
    closed = {r.id: r for r in scheduling.list_job_runs(job, ws=ws).entries}[stuck.id]
    assert closed.status == "failure" and "abandoned" in (closed.error or "")
    after = scheduling.get_scheduled_job(job, ws=ws)
    assert (after.run_count, after.failure_count, after.success_count) == (2, 1, 1)
    assert not after.currently_running
