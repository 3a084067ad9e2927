"""DAG workflows: specs, a durable engine with approval gates, and steps on worker processes.

>>> from cmdc_nb import workflows as wf
>>> w = wf.create_workflow(user, {                                              # doctest: +SKIP
...     "name": "Review a PR",
...     "input_schema": {"type": "object", "required": ["pr_url"]},
...     "steps": [
...         wf.step("fetch", "python", fn=fetch_pr, args={"url": "{{ input.pr_url }}"}),
...         wf.step("review", "agent_call", depends_on="fetch", model="scripted/r",
...                 prompt="Review this diff:\n{{ steps.fetch.output }}"),
...         wf.step("post", "approval", depends_on="review", title="Post the review?"),
...     ]})
>>> run = await wf.run_workflow(w, input={"pr_url": "https://…/pull/1"})       # doctest: +SKIP

Layers: `spec` (parse and validate) and `templates` below `records` (stored rows), `state` (each
transition, one transaction), `executors` (what each step type does), `engine` (driving a run in this
event loop), `external` (steps a person or an outside system performs) and `workers` (driving it on procrastinate worker processes). See docs/workflows.md.
"""

from __future__ import annotations

from cmdc_nb.workflows.engine import (
    RunHandle,
    approve_workflow_step,
    arun_workflow,
    cancel_workflow_run,
    deny_workflow_step,
    execute_workflow_run,
    pause_workflow_run,
    resume_workflow_run,
    retry_workflow_run,
    run_workflow,
)
from cmdc_nb.workflows.executors import StepContext, StepResult, register_executor
from cmdc_nb.workflows.external import complete_step, fail_step, start_step
from cmdc_nb.workflows.frames import runs_frame, steps_frame
from cmdc_nb.workflows.functions import register_step_function, step_function
from cmdc_nb.workflows.records import (
    activate_workflow,
    archive_workflow,
    create_workflow,
    get_workflow,
    get_workflow_by_slug,
    get_workflow_run,
    get_workflow_step,
    list_workflow_runs,
    list_workflow_steps,
    list_workflow_versions,
    list_workflows,
    start_workflow_run,
    update_workflow,
)
from cmdc_nb.workflows.spec import (
    Retry,
    StepSpec,
    WorkflowSpec,
    load_spec,
    parse_spec,
    step,
)

__all__ = [
    "Retry",
    "RunHandle",
    "StepContext",
    "StepResult",
    "StepSpec",
    "WorkflowSpec",
    "activate_workflow",
    "approve_workflow_step",
    "archive_workflow",
    "arun_workflow",
    "cancel_workflow_run",
    "complete_step",
    "create_workflow",
    "deny_workflow_step",
    "execute_workflow_run",
    "fail_step",
    "get_workflow",
    "get_workflow_by_slug",
    "get_workflow_run",
    "get_workflow_step",
    "list_workflow_runs",
    "list_workflow_steps",
    "list_workflow_versions",
    "list_workflows",
    "load_spec",
    "parse_spec",
    "pause_workflow_run",
    "register_executor",
    "register_step_function",
    "resume_workflow_run",
    "retry_workflow_run",
    "run_workflow",
    "runs_frame",
    "start_step",
    "start_workflow_run",
    "step",
    "step_function",
    "steps_frame",
    "update_workflow",
]
