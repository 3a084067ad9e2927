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
the handler registered under that type, and all three are built in: `cleanup` here (expired approvals,
stale presence, expired artifacts and their blobs), `workflow` in `cmdc_nb.workflows.scheduled` (a run
of `job_config["workflow_id"]` with `job_config["input"]`) and `reindex` in `cmdc_nb.rag.scheduled` (an
incremental re-ingest of `job_config["index_id"]`). Those two live on higher floors, which the services
may not import: the runner imports their module the first time such a job runs, which registers them.

**Retries.** A failed attempt is not retried inside the tick that ran it: its next attempt is stored as
the job's `next_run_at`, `retry_delay_seconds` later and doubling each time (capped at a day), and a
later tick runs it under the same occurrence (`job_runs.attempt` 2, 3, …). A retry that would come after
the job's next regular occurrence is dropped in its favour. So `run_due_jobs()` always returns promptly.

**Runners.** In a notebook, `Scheduler().start()` runs as a background task on the kernel's own event
loop and never blocks it; from a shell, `cmdc-nb scheduler` runs one until interrupted.
"""

from __future__ import annotations

from cmdc_nb.services.scheduling.jobs import (
    JOB_TRANSITIONS,
    LEASE,
    MISFIRE_GRACE,
    cancel_job,
    create_scheduled_job,
    delete_scheduled_job,
    get_scheduled_job,
    list_due_jobs,
    list_job_runs,
    list_scheduled_jobs,
    next_occurrence,
    pause_job,
    resume_job,
    update_scheduled_job,
)
from cmdc_nb.services.scheduling.runner import JobContext, Scheduler, register_job_handler, run_due_jobs

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
