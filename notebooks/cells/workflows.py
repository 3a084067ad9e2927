"""The cells of 02_workflows: a code-review DAG with an approval gate, a failure and a retry.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
    """md:# Workflows: a code-review DAG with an approval gate, a failure and a retry

A workflow is a DAG of steps stored in the workspace. This one reviews a change: it fetches the diff,
lints and tests in parallel, asks a (scripted) reviewer model, waits for a person, then posts. One
step fails the first time — and the run is retried *from the failed step*, without redoing what
succeeded.""",
    SETUP,
    """md:## The spec

Steps are Python functions, transforms, conditions, approval gates, agent calls, tools or shell
commands; `{{ input.x }}` and `{{ steps.y.output }}` are rendered in a sandbox. The spec is validated
when it is saved: cycles, unknown dependencies, templates that read a step they do not depend on.""",
    f"""from cmdc_nb import workflows as wf
from cmdc_nb.errors import WorkflowSpecError

try:
    wf.parse_spec({{"name": "broken", "steps": [
        wf.step("a", "transform", depends_on="c", value=1),
        wf.step("b", "transform", depends_on="a", value="{{{{ steps.zzz.output }}}}"),
        wf.step("c", "transform", depends_on="b", value=3),
    ]}})
except WorkflowSpecError as err:
    for problem in err.problems:
        print("-", problem)
{CHECK}""",
    """attempts = {"tests": 0}

@wf.step_function("review.fetch_diff")
def fetch_diff(pr: int) -> dict:
    return {"pr": pr, "files": ["parser.py", "README.md"], "added": 42, "removed": 7}

@wf.step_function("review.run_tests")
def run_tests(files: list) -> str:
    attempts["tests"] += 1
    if attempts["tests"] == 1:
        raise RuntimeError("flaky: the test database was not ready")
    return f"{len(files) * 57} passed"
""",
    """from cmdc_nb.providers import Script, choose_model
reviewer = Script(["Looks good: small, focused change; the parser edge case is covered."] * 2, name="reviewer")

review = wf.create_workflow(me, {
    "name": "Review a change",
    "input_schema": {"type": "object", "properties": {"pr": {"type": "integer"}}, "required": ["pr"]},
    "steps": [
        wf.step("fetch", fn="review.fetch_diff", args={"pr": "{{ input.pr }}"}),
        wf.step("lint", "transform", depends_on="fetch", value="0 warnings in {{ steps.fetch.output.files | length }} files"),
        wf.step("tests", fn="review.run_tests", depends_on="fetch", args={"files": "{{ steps.fetch.output.files }}"}),
        wf.step("review", "agent_call", depends_on=["lint", "tests"], model=choose_model(reviewer),
                prompt="Review PR {{ input.pr }}: +{{ steps.fetch.output.added }} -{{ steps.fetch.output.removed }}; tests: {{ steps.tests.output }}"),
        wf.step("approve", "approval", depends_on="review", title="Post the review of PR {{ input.pr }}?",
                payload={"comment": "{{ steps.review.output }}"}),
        wf.step("post", "transform", depends_on="approve", value="posted: {{ steps.approve.output.payload.comment }}"),
    ],
})
review.slug, review.version""",
    """md:## A run that fails

`tests` raises on its first call. With the default policy (`fail_fast`) the run stops and what had not
started is cancelled.""",
    f"""first = await wf.arun_workflow(review, input={{"pr": 128}})
print(first.status.value, "at", first.failed_step_id, "-", first.error_message)
wf.steps_frame(first)[["step_id", "status", "error_type"]]
{CHECK}""",
    """md:## Retry from the failed step

`retry_workflow_run` starts a new run of the same snapshot and input: completed steps are carried over
with their outputs (and not charged again); the rest runs. The review then waits at the gate.""",
    """from cmdc_nb.widgets import DagView
second = await wf.retry_workflow_run(first, stop_when_blocked=True)
print(second.status.value, "| retry of the first run:", second.retry_of_run_id == first.id)
DagView(second)""",
    f"""print("fetch ran", "once" if wf.get_workflow_step(second, "fetch").meta.get("carried_from") else "twice")
[item] = [s for s in wf.list_workflow_steps(second) if s.status.value == "waiting_approval"]
print("waiting:", item.step_id)
{CHECK}""",
    """md:Approve it here — or in the `ApprovalQueue` widget, by an auto-approval rule, or from another
process: the gate is a row in the database.""",
    f"""# unless it was approved in the view above already (a click there moves the run on itself)
if wf.get_workflow_step(second, "approve").status.value == "waiting_approval":
    wf.approve_workflow_step(second, "approve", note="ship it")
second = await wf.execute_workflow_run(second)
print(second.status.value, "->", second.output["post"])
{CHECK}""",
    """# the reviewer's tokens (and cost, with a real model) roll up into the step, the run and the workflow
review_step = wf.get_workflow_step(second, "review")
print("tokens in/out:", review_step.tokens_in, review_step.tokens_out, "| run total:", second.total_tokens_in, second.total_tokens_out)""",
    f"""stats = wf.get_workflow(review)
print("runs:", stats.run_count, "| succeeded:", stats.success_count, "| failed:", stats.failure_count)
wf.runs_frame(review)[["status", "trigger_type", "failed_step_id"]]
{CHECK}""",
]
