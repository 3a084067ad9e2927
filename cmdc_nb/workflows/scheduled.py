"""The scheduler's `workflow` job: each occurrence starts a run of the job's workflow with its input.

```python
scheduling.create_scheduled_job(user, job_type="workflow", cron="0 9 * * *", timezone="America/New_York",
                                job_config={"workflow_id": str(w.id), "input": {"pr_url": "…"}})
```

The run is a normal workflow run (`trigger_type="schedule"`, `trigger_metadata` naming the job and the
occurrence), driven until it is over or waits for an approval; the job run's output names it. Importing
this module registers the handler; the scheduler imports it the first time a `workflow` job runs.
"""

from __future__ import annotations

import asyncio
from typing import Any

from cmdc_nb.errors import InvalidInputError, WorkflowError
from cmdc_nb.services.scheduling import JobContext, register_job_handler
from cmdc_nb.store.enums import TriggerType, WorkflowRunStatus
from cmdc_nb.workflows.engine import execute_workflow_run
from cmdc_nb.workflows.records import start_workflow_run

__all__ = ["run_scheduled_workflow"]

_OVER_BADLY = (WorkflowRunStatus.FAILED, WorkflowRunStatus.CANCELLED, WorkflowRunStatus.TIMEOUT)


async def run_scheduled_workflow(ctx: JobContext) -> dict[str, Any]:
    """Start a run of `job_config["workflow_id"]` with `job_config["input"]` and drive it here until it
    is over or waits for a person (an approval gate: approve it and resume the run as usual).

    A run that fails fails the job's attempt (its error names the run), so the job's retries apply."""
    cfg = ctx.config
    workflow = cfg.get("workflow_id")
    if not workflow:
        raise InvalidInputError('a workflow job needs job_config={"workflow_id": …}', field="job_config")
    data = cfg.get("input") or {}
    executor = cfg.get("executor", "local")
    if executor not in ("local", "workers"):
        raise InvalidInputError(f"{executor!r} is not one of: local, workers", field="job_config.executor")
    if not isinstance(data, dict):
        raise InvalidInputError("job_config.input must be an object", field="job_config")
    run = await asyncio.to_thread(
        start_workflow_run,
        str(workflow),
        ctx.user_id,
        input=data,
        trigger_type=TriggerType.SCHEDULE,
        trigger_metadata={
            "job_id": str(ctx.job_id),
            "scheduled_for": ctx.scheduled_for.isoformat(),
            "attempt": ctx.attempt,
        },
        ws=ctx.ws,
    )
    done = await execute_workflow_run(
        run.id, stop_when_blocked=True, executor="workers" if executor == "workers" else "local", ws=ctx.ws
    )
    if done.status in _OVER_BADLY:
        raise WorkflowError(
            f"workflow run {run.id} {done.status.value}: {done.error_message or 'no error recorded'}",
            error_type=done.error_type,
        )
    return {"workflow_id": str(run.workflow_id), "workflow_run_id": str(run.id), "status": done.status.value}


register_job_handler("workflow", run_scheduled_workflow)
