"""Runs and steps as pandas DataFrames (one row each), for looking at a workflow's history."""

from __future__ import annotations

from typing import Any

from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace
from cmdc_nb.workflows.records import RunRef, WorkflowRef, list_workflow_runs, list_workflow_steps

__all__ = ["runs_frame", "steps_frame"]

_RUN_COLUMNS = [
    "run_id",
    "status",
    "trigger_type",
    "started_at",
    "completed_at",
    "duration_ms",
    "total_tokens_in",
    "total_tokens_out",
    "total_cost_usd",
    "failed_step_id",
    "retry_of_run_id",
    "error_message",
]
_STEP_COLUMNS = [
    "step_id",
    "step_type",
    "status",
    "attempt_number",
    "max_attempts",
    "started_at",
    "completed_at",
    "duration_ms",
    "tokens_in",
    "tokens_out",
    "cost_usd",
    "depends_on",
    "error_type",
    "error_message",
    "output",
]


@checked
def runs_frame(workflow: WorkflowRef, *, limit: int = 1000, ws: Workspace | None = None) -> Any:
    """The workflow's runs, newest first."""
    import pandas as pd

    rows = list_workflow_runs(workflow, limit=limit, ws=ws)
    data = [
        {
            "run_id": str(r.id),
            "status": r.status.value,
            "trigger_type": r.trigger_type.value if r.trigger_type else None,
            "started_at": r.started_at,
            "completed_at": r.completed_at,
            "duration_ms": r.duration_ms,
            "total_tokens_in": r.total_tokens_in,
            "total_tokens_out": r.total_tokens_out,
            "total_cost_usd": float(r.total_cost_usd),
            "failed_step_id": r.failed_step_id,
            "retry_of_run_id": str(r.retry_of_run_id) if r.retry_of_run_id else None,
            "error_message": r.error_message,
        }
        for r in rows
    ]
    return pd.DataFrame(data, columns=_RUN_COLUMNS)


@checked
def steps_frame(run: RunRef, *, ws: Workspace | None = None) -> Any:
    """The run's steps in topological order."""
    import pandas as pd

    data = [
        {
            "step_id": s.step_id,
            "step_type": s.step_type.value,
            "status": s.status.value,
            "attempt_number": s.attempt_number,
            "max_attempts": s.max_attempts,
            "started_at": s.started_at,
            "completed_at": s.completed_at,
            "duration_ms": s.duration_ms,
            "tokens_in": s.tokens_in,
            "tokens_out": s.tokens_out,
            "cost_usd": float(s.cost_usd) if s.cost_usd is not None else None,
            "depends_on": list(s.depends_on),
            "error_type": s.error_type,
            "error_message": s.error_message,
            "output": s.output,
        }
        for s in list_workflow_steps(run, ws=ws)
    ]
    return pd.DataFrame(data, columns=_STEP_COLUMNS)
