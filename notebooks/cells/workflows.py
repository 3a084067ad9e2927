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
succeeded.

**What you'll learn**

1. how a spec is written, and how validation reports *every* problem of a broken one at once;
2. how independent steps run in parallel — seen on a timeline of the run;
3. what a failure does to a run, and how a retry carries over what had succeeded;
4. how an approval gate holds a run until someone decides, and where a model step's tokens go;
5. how a step a person does (an `external` step) waits for them, and how their answer moves the run on.

**Prerequisites**: cmdc_nb with its `notebook` extra (`bash scripts/lab.sh` sets it all up); no API key
— the reviewer is a scripted model and everything runs offline, in a throw-away workspace.
[00_tour](00_tour.ipynb) is a gentler start; [01 · Chat and approvals](01_chat_and_approvals.ipynb)
shows the approval queue this gate joins.

**Time to run**: about 20 seconds.

Next: [03 · A RAG index](03_rag_index.ipynb). Reference: [docs/workflows.md](../docs/workflows.md)
(step types, templates, failure policies, retries, durability, workers).""",
    SETUP,
    """md:## The spec, and what validation catches

Steps are Python functions, transforms, conditions, approval gates, agent calls, tools or shell
commands; `{{ input.x }}` and `{{ steps.y.output }}` are rendered in a sandbox. A spec is validated
before anything is stored, and a broken one is refused with *every* problem it has, each naming its
step — so one round of fixes is enough. This one has four: a typo in a dependency, a cycle, a template
that reads a step it does not depend on (its value would not be there yet) and one that reads a step
that does not exist.""",
    f"""from cmdc_nb import workflows as wf
from cmdc_nb.errors import WorkflowSpecError

try:
    wf.parse_spec({{"name": "broken", "steps": [
        wf.step("fetch", "transform", value="the diff"),
        wf.step("lint", "transform", depends_on=["fetch", "tests"], value="lint {{{{ steps.fetch.output }}}}"),
        wf.step("tests", "transform", depends_on="lint", value="tests"),       # lint ⇄ tests: a cycle
        wf.step("review", "transform", depends_on="fetch", value="{{{{ steps.lint.output }}}}"),
        wf.step("post", "transform", depends_on="reviw", value="{{{{ steps.summary.output }}}}"),
    ]}})
except WorkflowSpecError as err:
    for problem in err.problems:
        print("-", problem)
{CHECK}""",
    """md:## A review workflow

The step functions are registered by name, so that a worker in another process can find them again.
`lint` and `tests` sleep a little, standing in for real work — long enough to see them side by side.""",
    f"""import time
attempts = {{"tests": 0}}

@wf.step_function("review.fetch_diff")
def fetch_diff(pr: int) -> dict:
    return {{"pr": pr, "files": ["parser.py", "README.md"], "added": 42, "removed": 7}}

@wf.step_function("review.lint")
def lint(files: list) -> str:
    time.sleep(1.0)
    return f"0 warnings in {{len(files)}} files"

@wf.step_function("review.run_tests")
def run_tests(files: list) -> str:
    attempts["tests"] += 1
    time.sleep(0.05 if attempts["tests"] == 1 else 0.3)
    if attempts["tests"] == 1:
        raise RuntimeError("flaky: the test database was not ready")
    return f"{{len(files) * 57}} passed"
{CHECK}""",
    f"""from cmdc_nb.providers import Script, choose_model
reviewer = Script(["Looks good: small, focused change; the parser edge case is covered."] * 2, name="reviewer")

review = wf.create_workflow(me, {{
    "name": "Review a change",
    "input_schema": {{"type": "object", "properties": {{"pr": {{"type": "integer"}}}}, "required": ["pr"]}},
    "steps": [
        wf.step("fetch", fn="review.fetch_diff", args={{"pr": "{{{{ input.pr }}}}"}}),
        wf.step("lint", fn="review.lint", depends_on="fetch", args={{"files": "{{{{ steps.fetch.output.files }}}}"}}),
        wf.step("tests", fn="review.run_tests", depends_on="fetch", args={{"files": "{{{{ steps.fetch.output.files }}}}"}}),
        wf.step("review", "agent_call", depends_on=["lint", "tests"], model=choose_model(reviewer),
                prompt="Review PR {{{{ input.pr }}}}: +{{{{ steps.fetch.output.added }}}} -{{{{ steps.fetch.output.removed }}}}; "
                       "lint: {{{{ steps.lint.output }}}}; tests: {{{{ steps.tests.output }}}}"),
        wf.step("approve", "approval", depends_on="review", title="Post the review of PR {{{{ input.pr }}}}?",
                payload={{"comment": "{{{{ steps.review.output }}}}"}}),
        wf.step("post", "transform", depends_on="approve", value="posted: {{{{ steps.approve.output.payload.comment }}}}"),
    ],
}})
review.slug, review.version
{CHECK}""",
    """md:## A run that fails

`tests` raises on its first call. With the default policy (`fail_fast`) the run stops: what had not
started is cancelled, and `lint`, still running, is stopped at its next look at the database (a running
step looks every half second).""",
    f"""first = await wf.arun_workflow(review, input={{"pr": 128}})
print(first.status.value, "at", first.failed_step_id, "-", first.error_message)
wf.steps_frame(first)[["step_id", "status", "error_type"]]
{CHECK}""",
    """md:## Parallel, on a timeline

`lint` and `tests` both depend on `fetch` only, so they start together as soon as it is done. The
run's steps, as a DataFrame, carry when each started and finished; drawn as a timeline, a bar per step,
the two overlap. The failure of `tests` stops `lint` half-way and cancels what had not started.""",
    """from cmdc_nb.widgets.report import timeline_chart

STATUS_COLOURS = {"completed": "#59a14f", "failed": "#c62828", "cancelled": "#7f7f7f"}
first_timeline = timeline_chart(
    wf.steps_frame(first), start="started_at", end="completed_at", label="step_id",
    color="status", colors=STATUS_COLOURS, title="The first run, step by step",
)
first_timeline""",
    """md:The chart's times change from run to run; what it shows does not. Its text says it for readers of
the text alone (and for this notebook's test, which compares it):""",
    f"""print(first_timeline.description)
steps = wf.steps_frame(first).set_index("step_id")
print("lint and tests both started after fetch finished:",
      min(steps.started_at["lint"], steps.started_at["tests"]) >= steps.completed_at["fetch"])
{CHECK}""",
    """md:## Retry from the failed step

`retry_workflow_run` starts a new run of the same snapshot and input: completed steps (`fetch`) are
carried over with their outputs (and not charged again); the rest runs, `lint` and `tests` side by side
again.
The review then waits at the gate. `DagView` draws the run's graph live, its steps coloured as they go.""",
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
    f"""# the reviewer's tokens (and cost, with a real model) roll up into the step, the run and the workflow
review_step = wf.get_workflow_step(second, "review")
tokens = (review_step.tokens_in, review_step.tokens_out)
print("the reviewer's tokens in/out are counted:", all(n > 0 for n in tokens))
# the prompt carries the run's id, so its token count moves by one or two from run to run
print("and the run's totals are the reviewer's, its one model step:", (second.total_tokens_in, second.total_tokens_out) == tokens)
{CHECK}""",
    f"""stats = wf.get_workflow(review)
print("runs:", stats.run_count, "| succeeded:", stats.success_count, "| failed:", stats.failure_count)
wf.runs_frame(review)[["status", "trigger_type", "failed_step_id"]]
{CHECK}""",
    """md:## A step a person does

Some steps are nobody's code: a sign-off, a manual check, a reply from an outside system. An `external`
step waits for it. When its dependencies are done it becomes `waiting_input`, its `instructions`
rendered for the person, and the run waits with it. `complete_step` records what they did (checked
against the step's `output_schema`) and moves the run on in the same transaction. It works from this
notebook, another process, or a webhook; in `DagView`, select the step and use its box and buttons.""",
    f"""signoff = wf.create_workflow(me, {{"name": "Sign-off", "steps": [
    wf.step("draft", "transform", value="release note for {{{{ input.version }}}}"),
    {{"id": "legal", "type": "external", "depends_on": ["draft"], "config": {{
        "instructions": "Read the {{{{ steps.draft.output }}}} and sign it",
        "output_schema": {{"type": "object", "required": ["signed_by"],
                          "properties": {{"signed_by": {{"type": "string"}}}}}}}}}},
    wf.step("file", "transform", depends_on="legal", value="filed, signed by {{{{ steps.legal.output.signed_by }}}}"),
]}})
waiting = await wf.arun_workflow(signoff, input={{"version": "2.1"}}, stop_when_blocked=True)
legal = wf.get_workflow_step(waiting, "legal")
print(waiting.status.value, "|", legal.status.value, "|", legal.input["instructions"])
{CHECK}""",
    f"""from cmdc_nb.errors import InvalidInputError
try:
    wf.complete_step(waiting, "legal", output={{"signature": "x"}})  # not what the schema asks for
except InvalidInputError as exc:
    print("refused:", exc)
wf.complete_step(waiting, "legal", me, output={{"signed_by": "Ada"}})
done = await wf.resume_workflow_run(waiting)
print(done.status.value, "->", done.output["file"])
{CHECK}""",
    """md:## Recap

- A workflow is a spec of steps and their dependencies; `parse_spec` (run by `create_workflow`) refuses a
  broken one with every problem at once, in a typed `WorkflowSpecError` whose `problems` list names each
  step.
- Steps whose dependencies are done run at the same time; `wf.steps_frame(run)` has when each started
  and finished, and `widgets.report.timeline_chart` draws it as a static picture.
- `fail_fast` stops a run at its first failure; `retry_workflow_run` runs it again from there, carrying
  over what had completed.
- An `approval` step holds the run (`waiting_approval`) until someone decides, here or from anywhere
  else; `execute_workflow_run` then takes it on.
- An `external` step is a person's (or another system's) work: the run waits (`waiting_input`) until
  `complete_step(run, step_id, output=…)`, which checks the output and moves the run on.
- A model step's tokens and cost roll up into the step, the run and the workflow; `runs_frame` lists
  the runs.

More in [docs/workflows.md](../docs/workflows.md). Next: [03 · A RAG index](03_rag_index.ipynb).

## Exercise

Which steps did the retry really run? Draw the timeline of `second` with `timeline_chart`, as above,
then set `ran_again` to the ids of the steps it ran itself, in any order — not those carried over from
the first run (a carried step's `meta` names the step it came from, as in the cell after `DagView`).
Did `lint` and `tests` overlap again? The hidden cell after it checks your answer.""",
    f"""ran_again = None  # your answer: a list of step ids
{CHECK}""",
    f"""hidden:if ran_again is None:
    print("Set ran_again above, then run this cell.")
else:
    _want = [s.step_id for s in wf.list_workflow_steps(second) if not s.meta.get("carried_from")]
    assert sorted(ran_again) == sorted(_want), f"not {{ran_again!r}}: a carried step has meta['carried_from']"
    print(f"Right: the retry ran {{', '.join(_want)}}; fetch came from the first run as it was.")
{CHECK}""",
]
