"""Write the notebooks from the cell sources below, execute them (offline, deterministic) and save them
with their outputs. CI re-executes them with nbval and compares the outputs of the cells marked
`# NBVAL_CHECK_OUTPUT` (ids, times and durations sanitised by notebooks/sanitize.cfg).

    .venv/bin/python notebooks/build.py            # every notebook
    .venv/bin/python notebooks/build.py 00_tour    # one
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient

HERE = Path(__file__).resolve().parent
CHECK = "# NBVAL_CHECK_OUTPUT"

SETUP = f"""import os, tempfile
os.environ["CMDC_NB_HOME"] = tempfile.mkdtemp(prefix="cmdc-nb-")  # a fresh, throw-away data folder
import cmdc_nb
from cmdc_nb import accounts
ws = cmdc_nb.connect()  # SQLite by default; cmdc_nb.connect("postgresql+psycopg://…") for a team
me = accounts.create_user("ada@example.com", name="Ada Lovelace")
print(ws.backend, "workspace ready for", me.name)
{CHECK}"""

TOUR = [
    """md:# cmdc_nb in ten minutes

Everything here runs offline: the model is *scripted* (it goes through litellm like any real provider,
so streaming, usage and costs are exercised for real), the embedder is a deterministic hashing one, and
the database is an SQLite file in a temporary folder. With an API key in the environment
(`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, …, or any litellm model in `CMDC_NB_MODEL`), the chat cells talk to
that provider instead: `choose_model` picks it.

1. A chat with a tool that needs your approval
2. Forking the conversation
3. A small workflow with an approval gate
4. A small index and a search
5. The cost dashboard""",
    SETUP,
    """md:## 1. A chat with a tool that needs your approval

The agent runs as a task on the notebook's event loop: the cell returns at once, the widget streams the
reply, and the tool call waits for **Approve / Deny / Edit** — in the widget, from another cell, from
the approval queue, or by a rule.""",
    """from cmdc_nb import sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call, choose_model
from cmdc_nb.widgets import ChatWidget

notes = {}

@tool(requires_approval=True, side_effects=("filesystem",))
def save_note(title: str, text: str) -> str:
    \"\"\"Save a note under a title.\"\"\"
    notes[title] = text
    return f"saved {title!r}"

script = Script([
    Turn("I'll save it as **groceries** once you approve.",
         tool_calls=[call("save_note", title="groceries", text="eggs, flour, butter")]),
    Turn("Saved. Anything else for the list?"),
], name="tour-chat")
chat_session = sessions.create_session(me, name="Tour chat")
agent = Agent(model=choose_model(script), tools=[save_note], session=chat_session, name="Note taker")
chat = ChatWidget(agent, height="300px")
handle = chat.send("Please save my grocery list: eggs, flour, butter")
chat""",
    """md:The turn is waiting for a decision. Click **Approve** above, or decide from code — the widget
updates either way:""",
    f"""import asyncio
while not handle.done():  # approve whatever waits (a real model may ask more than once)
    for pending in agent.status()["pending_approvals"]:
        print("waiting:", pending["tool"], pending["args"])
        chat.approve(pending["ref"])
    await asyncio.sleep(0.05)
print("reply:", await handle)
print("notes:", notes)
{CHECK}""",
    f"""from cmdc_nb import frames
frames.messages_frame(session=chat_session)[["sequence", "role", "content"]]
{CHECK}""",
    """md:## 2. Forking the conversation

A fork copies the history up to a message into a new session, so you can try another direction without
losing the first.""",
    f"""first = sessions.list_messages(chat_session).entries[0]
alt = sessions.fork_session(chat_session, first, name="Tour chat — shorter list")
print(alt.name, "has", sessions.count_messages(alt), "message(s), forked from", sessions.get_session(alt.parent_session_id).name)
{CHECK}""",
    """md:## 3. A small workflow with an approval gate

Steps run as soon as their dependencies are done (here `lint` and `test` in parallel); the gate waits
for a person; every step's outcome is committed before its dependants start, so a crash resumes where
it stopped.""",
    """from cmdc_nb import workflows as wf
from cmdc_nb.widgets import DagView

release = wf.create_workflow(me, {
    "name": "Release",
    "input_schema": {"type": "object", "properties": {"version": {"type": "string"}}, "required": ["version"]},
    "steps": [
        wf.step("build", "transform", value="built {{ input.version }}"),
        wf.step("lint", "transform", depends_on="build", value="0 warnings"),
        wf.step("test", "transform", depends_on="build", value="412 passed"),
        wf.step("ship", "approval", depends_on=["lint", "test"], title="Ship {{ input.version }}?"),
        wf.step("announce", "transform", depends_on="ship", value="v{{ input.version }} is out"),
    ],
})
run = await wf.arun_workflow(release, input={"version": "2.0"}, stop_when_blocked=True)
view = DagView(run)
view""",
    f"""print("run is", run.status.value)
# approve here, unless Approve was clicked in the view above: that decided the gate and moved the run on
if wf.get_workflow_step(run, "ship").status.value == "waiting_approval":
    wf.approve_workflow_step(run, "ship", note="looks good")
run = await wf.execute_workflow_run(run)
print("run is", run.status.value, "->", run.output)
wf.steps_frame(run)[["step_id", "step_type", "status", "output"]]
{CHECK}""",
    """md:## 4. A small index and a search

Ingestion is incremental (unchanged files are skipped) and transactional (a kill never loses a
document); search is hybrid — vectors and full text, fused.""",
    f"""import pathlib
from cmdc_nb import rag

docs = pathlib.Path(tempfile.mkdtemp()) / "handbook"
docs.mkdir()
(docs / "expenses.md").write_text("# Expenses\\n\\nSubmit receipts within 30 days. Travel needs a manager's approval.\\n")
(docs / "holidays.md").write_text("# Holidays\\n\\nEveryone gets 25 days of paid leave. Book them in the team calendar.\\n")
(docs / "laptops.md").write_text("# Laptops\\n\\nLaptops are replaced every three years. Report a lost laptop at once.\\n")
handbook = rag.create_index(me, "handbook", source_type="local_repo", source_config={{"path": str(docs)}})
report = rag.ingest(handbook, progress=False)
print(report.added, "documents,", report.chunks_written, "chunks")
rag.search_frame(handbook, "how many days of paid leave", k=2)[["rank", "citation", "content"]]
{CHECK}""",
    """md:## 5. The cost dashboard

Every call is priced exactly (a `Decimal`, never a float). Here, three weeks of generated usage across
models and sessions:""",
    """import datetime as dt, random, uuid
from cmdc_nb import costs
from cmdc_nb.widgets import CostDashboard

rng = random.Random(7)
models = [("openai", "openai/gpt-4o-mini", 0.002), ("anthropic", "anthropic/claude-sonnet-4-5", 0.02)]
now = dt.datetime.now(dt.UTC)
for day in range(21):
    for _ in range(rng.randint(2, 6)):
        provider, model, unit = rng.choice(models)
        costs.record_cost(me, source_type="agent_call", source_id=uuid.uuid4(), provider=provider, model=model,
                          tokens_in=rng.randint(500, 4000), tokens_out=rng.randint(50, 600),
                          cost_usd=f"{unit * rng.uniform(1, 5):.6f}", session=chat_session,
                          incurred_at=now - dt.timedelta(days=day, hours=rng.randint(0, 6)))
CostDashboard(me, days=21)""",
    f"""spend = frames.costs_frame(user=me)
print(len(spend), "calls, $", spend["cost_usd"].sum(), "in total")
frames.by_model(spend)
{CHECK}""",
]

WORKFLOWS = [
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

RAG = [
    """md:# RAG: build an index over a real folder, inspect it, compare the search modes, measure recall

The folder is this package's own source code — real Python, chunked by functions and classes.""",
    SETUP,
    """import pathlib
from cmdc_nb import rag

source = pathlib.Path(cmdc_nb.__file__).parent  # cmdc_nb/ itself
index = rag.create_index(me, "cmdc_nb source", source_type="local_repo",
                         source_config={"path": str(source), "include": ["*.py"]},
                         chunk_strategy="code_aware", max_tokens=400, overlap_tokens=0)
report = rag.ingest(index)  # a progress bar while it runs
report""",
    f"""again = rag.ingest(index, progress=False)
print("second run:", again.unchanged == report.added, "unchanged, nothing re-embedded:", again.chunks_written == 0)
{CHECK}""",
    """md:## Inspect the chunks

Code-aware chunks follow the grammar: each records the functions and classes it holds, and its lines.""",
    """chunks = rag.list_chunks(index, uri="rag/search.py")
[(c.start_line, c.end_line, (c.code_context or {}).get("symbols")) for c in chunks][:8]""",
    """md:## Three ways to search

*vector* (by meaning — here the hashing embedder, which mostly matches words), *text* (full text,
BM25 on SQLite / `ts_rank_cd` on PostgreSQL) and *hybrid* (both, fused by reciprocal rank).""",
    """import pandas as pd
query = "reciprocal rank fusion of two result lists"
pd.concat({mode: rag.search_frame(index, query, k=3, mode=mode)[["citation", "score"]] for mode in ("vector", "text", "hybrid")}, axis=1)""",
    """md:## Filters and citations""",
    """hits = rag.search(index, "claim a step under a lease", k=3, path="workflows/*")
for h in hits:
    print(h.rank, h.citation, (h.code_context or {}).get("symbols"))""",
    """md:## Measure recall

A small labelled set: for each question, the file that answers it.""",
    """labelled = {
    "reciprocal rank fusion hybrid search": "rag/search.py",
    "split python code into chunks by functions and classes": "rag/chunking.py",
    "honour gitignore files when listing a folder": "rag/sources.py",
    "retry a failed workflow run from the failed step": "workflows/engine.py",
    "render templates in a sandbox": "workflows/templates.py",
    "encrypt api keys at rest": "*vault*.py",
}
evaluation = rag.recall_at_k(index, labelled, ks=(1, 3, 10))
evaluation""",
    "evaluation.frame()",
    """md:## An agent that cites its sources

`rag.retrieve_tool(index)` is a tool any agent can call; it returns numbered passages with their
sources.""",
    """from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script, Turn, call, choose_model

script = Script([Turn(tool_calls=[call("retrieve", query="how are exact vector searches ordered")]),
                 "Exact search orders by similarity, then URI and chunk number [1]."], name="rag-agent")
agent = Agent(model=choose_model(script), tools=[rag.retrieve_tool(index, k=2)])
print(await agent.prompt("How are exact searches ordered? Look it up before answering."))
tool_results = [m["content"] for m in agent.messages if m["role"] == "tool"]
print(tool_results[0][:400] if tool_results else "(the model answered without looking anything up)")""",
]


CHAT = [
    """md:# Chat and approvals: rules, sticky decisions, steering, abort, model switching

An agent's tools can need a person's approval. Rules decide the routine cases before anyone is asked;
a decision can be remembered for the session; a running turn can be steered or stopped.""",
    SETUP,
    """md:## A rule approves the routine case, a person decides the rest

The rule approves `write_file` under `/tmp/`; the write to the home folder waits.""",
    """from cmdc_nb import approvals, kernel, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call, choose_model
from cmdc_nb.widgets import ApprovalQueue, ChatWidget

files = {}

@tool(approval_class="medium", side_effects=("filesystem",))
def write_file(path: str, text: str) -> str:
    \"\"\"Write a text file.\"\"\"
    files[path] = text
    return f"wrote {len(text)} characters to {path}"

approvals.create_approval_rule(me, name="scratch files", approval_type="tool_use", tool_names=["write_file"],
                               conditions={"path_pattern": "/tmp/**"}, action="approve")
writer = Script([
    Turn("Saving both.", tool_calls=[call("write_file", path="/tmp/draft.txt", text="first draft"),
                                     call("write_file", path="/home/ada/report.md", text="# Q3 report")]),
    "Both files are written.",
], name="writer")
chat_session = sessions.create_session(me, name="Approvals")
agent = Agent(model=choose_model(writer), tools=[write_file], session=chat_session, name="Writer")
chat = ChatWidget(agent, height="320px")
handle = chat.send("Save 'first draft' to /tmp/draft.txt and '# Q3 report' to /home/ada/report.md")
chat""",
    f"""import asyncio
while not handle.done():
    for pending in agent.status()["pending_approvals"]:
        print("waiting for a person:", pending["args"]["path"])
        # Approve, and remember the decision for this session: the same call is approved from now on.
        kernel.approve(agent, pending["ref"], remember=True, note="reports are fine")
    await asyncio.sleep(0.05)
print(await handle)
print(sorted(files))
{CHECK}""",
    """md:## A remembered decision, and switching models mid-session

`switch_model` changes the model for the next request; the conversation carries over.""",
    f"""again = Script([Turn(tool_calls=[call("write_file", path="/home/ada/report.md", text="# Q3 report")]),
                "Rewritten — no one had to be asked."], name="writer-2")
kernel.switch_model(agent, choose_model(again))
print(await agent.prompt("Write '# Q3 report' to /home/ada/report.md again"))
print([r.name for r in approvals.list_approval_rules(me)])
{CHECK}""",
    """md:## Steering a running turn

`steer` queues a message that the agent reads at its next safe point, inside the same run.""",
    f"""def answer(messages):
    last = [m for m in messages if m["role"] == "user"][-1]["content"]
    return Turn(f"(answering: {{last}})", chunk_delay=0.02)

steerable = Script(answer, name="steerable")
kernel.switch_model(agent, choose_model(steerable))
handle = agent.prompt("Summarise the Q3 report")
await asyncio.sleep(0.05)
print(kernel.steer(agent, "Keep it to one sentence").status)
print(await handle)
{CHECK}""",
    """md:## Stopping a turn

`abort` stops at once: the run is cancelled, the calls in flight are stored as cancelled, and the
agent is ready for the next prompt.""",
    f"""slow = Script([Turn("Thinking about it " * 200, chunk_delay=0.01)], name="slow")
kernel.switch_model(agent, choose_model(slow))
handle = agent.prompt("Write a long essay")
await asyncio.sleep(0.1)
print(kernel.abort(agent, reason="user_cancelled"))
try:
    await handle
except Exception as exc:
    print(type(exc).__name__)
print("agent is", agent.state.value)
{CHECK}""",
    """md:Everything waiting for you, across sessions and workflows, is in one queue (empty now):""",
    "ApprovalQueue(me)",
]

COSTS = [
    """md:# Cost analytics: what the agents cost, and where the month is heading

A team lead's questions about the agents' spend, one section each, answered from the cost records
cmdc_nb keeps: every model call is priced from its token counts and your price table, exactly.

**What you'll learn**

1. which model, project and notebook cell cost most;
2. the daily cost, stacked by model;
3. the week-over-week trend;
4. the cost per 1,000 tokens and per successful call;
5. what retries cost — and what they do not;
6. spend against a monthly budget: the burn rate and the month-end projection;
7. the soft budget's warnings at 50 % and 80 %;
8. how a hard budget refuses a call before it is sent.

**Prerequisites**: cmdc_nb with its `notebook` extra (`bash scripts/lab.sh` sets it all up); no API key —
everything here runs offline, in a throw-away workspace. [00_tour](00_tour.ipynb) is a gentler start.

**Time to run**: about a minute, most of it recording six weeks of usage one call at a time.

**The dates are pinned.** The usage is six whole weeks of a small team's work, Monday 2 February to
Sunday 15 March 2026, and *today*, for every figure below, is `TODAY` = Monday 16 March 2026, 00:00 UTC:
the notebook shows the same numbers on whatever day you run it.

Next: [05 · Inside the agent loop](05_inside_the_agent_loop.ipynb). Reference:
[docs/costs.md](../docs/costs.md) (pricing, records, frames, budgets).""",
    SETUP,
    """md:## The data: six weeks of usage, priced from tokens

Prices are USD per million tokens, in the workspace's price table (`cmdc_nb.pricing`: your own prices
first, then litellm's bundled ones). A cost record keeps a call's tokens, and its cost is computed from
them: tokens × price, an exact `Decimal`.""",
    """import datetime as dt
import pandas as pd
from cmdc_nb import budgets, costs, frames, pricing, sessions
from cmdc_nb.widgets.report import bar_chart, formatted, line_chart, usd

TODAY = dt.datetime(2026, 3, 16, tzinfo=dt.UTC)     # "now" for every figure: Mon 16 March 2026, 00:00
FIRST_DAY = dt.datetime(2026, 2, 2, tzinfo=dt.UTC)  # six whole weeks before it, each Monday to Sunday

prices = {  # USD per million tokens: input, output
    "anthropic/claude-sonnet-4-5": ("3.00", "15.00"),
    "openai/gpt-4o": ("2.50", "10.00"),
    "openai/gpt-4o-mini": ("0.15", "0.60"),
    "gemini/gemini-2.0-flash": ("0.10", "0.40"),
}
for model, (per_in, per_out) in prices.items():
    pricing.set_model_price(model, input_per_million_usd=per_in, output_per_million_usd=per_out)
table = [(p.model, p.input_per_million_usd, p.output_per_million_usd) for p in pricing.list_model_prices()]
formatted(pd.DataFrame(table, columns=["model", "input, per million", "output, per million"]),
          money=["input, per million", "output, per million"])
"""
    + CHECK,
    """md:Before any of it, the team lead set a **soft monthly budget** of \\$140 (February's work came to
about \\$115), warning at 50 %, 80 % and 100 %. A soft budget only warns: each warning is a
`budget_warning` event, published once per threshold and month as the cost that crosses it is recorded.
We keep them as they come (section 7 shows them).""",
    """from cmdc_nb.events import topics

monthly = budgets.create_budget(name="Team monthly", limit_usd="140", period="monthly", user=me,
                                hard_limit=False)  # soft: it warns, and stops nothing
warnings = []  # the budget's warnings, as published


def keep_warnings(event):
    if event.type == "budget_warning":
        warnings.append(event)


ws.bus.subscribe(topics.user_costs(me.id), keep_warnings)
print(f"{monthly.name}: {usd(monthly.limit_usd)} a month, warns at {monthly.warn_at} %")
"""
    + CHECK,
    """md:Four projects (sessions), each calling its models from a notebook cell — named by the notebook's path
and the cell, as `costs.current_notebook_cell()` records it when a call is made from JupyterLab. Calls
grow by a tenth each week, weekends are quiet, and on Tuesday 10 March an evaluation sweep sent 300
documents through the largest model. Only token counts are generated: `record_cost` prices each call.""",
    """import random, uuid

projects = {name: sessions.create_session(me, name=name)
            for name in ("Parser rewrite", "Docs site", "Support triage", "Data pipeline")}
SONNET, GPT4O, MINI, FLASH = prices  # the four models' names
work = [  # project, the cell that calls the model, its models and their shares, calls a working day,
          # tokens in (from, to), tokens out (from, to)
    ("Parser rewrite", "parser/refactor.ipynb:In[7]", {SONNET: 1}, 30, (15_000, 50_000), (800, 3_000)),
    ("Parser rewrite", "parser/review.ipynb:In[4]", {GPT4O: 1}, 10, (8_000, 30_000), (400, 1_500)),
    ("Docs site", "docs/drafts.ipynb:In[3]", {GPT4O: 0.7, MINI: 0.3}, 12, (3_000, 12_000), (500, 2_000)),
    ("Support triage", "support/triage.ipynb:In[5]", {MINI: 1}, 10, (1_000, 4_000), (100, 400)),
    ("Data pipeline", "pipeline/extract.ipynb:In[8]", {FLASH: 1}, 14, (2_000, 8_000), (200, 800)),
]
SWEEP = ("Parser rewrite", "evals/sweep.ipynb:In[14]", SONNET, (20_000, 40_000), (1_500, 3_000))
rng = random.Random(2026)


def calls_on(day, week):
    \"\"\"One day's calls: (project, cell, model, tokens in, tokens out).\"\"\"
    busy = (0.25 if day.weekday() >= 5 else 1.0) * (1 + 0.10 * week)  # quiet weekends; +10 % a week
    calls = []
    for project, cell, models, per_day, tokens_in, tokens_out in work:
        for _ in range(round(per_day * busy * rng.uniform(0.8, 1.2))):
            model = rng.choices(list(models), weights=list(models.values()))[0]
            calls.append((project, cell, model, rng.randint(*tokens_in), rng.randint(*tokens_out)))
    if day.date() == dt.date(2026, 3, 10):  # the evaluation sweep
        project, cell, model, tokens_in, tokens_out = SWEEP
        for _ in range(300):
            calls.append((project, cell, model, rng.randint(*tokens_in), rng.randint(*tokens_out)))
    return calls


for n in range((TODAY - FIRST_DAY).days):
    day = FIRST_DAY + dt.timedelta(days=n)
    calls = calls_on(day, week=n // 7)
    minutes = sorted(rng.randint(8 * 60, 19 * 60) for _ in calls)  # office hours, in order
    for (project, cell, model, tokens_in, tokens_out), minute in zip(calls, minutes):
        costs.record_cost(me, source_type="agent_call", source_id=uuid.uuid4(),
                          provider=model.split("/")[0], model=model, tokens_in=tokens_in,
                          tokens_out=tokens_out, session=projects[project], notebook_cell=cell,
                          incurred_at=day + dt.timedelta(minutes=minute))  # no cost: it is priced here

spend = frames.costs_frame(user=me, since=FIRST_DAY, until=TODAY)
print(f"{len(spend):,} calls from {spend['day'].min():%a %d %b} to {spend['day'].max():%a %d %b}, "
      f"{spend['priced'].sum():,} of them priced: {usd(spend['cost_usd'].sum())} in all")
"""
    + CHECK,
    """md:Each cost is the call's tokens times the model's prices, exact to the trillionth of a dollar (shown
to the cent below, or to four decimals under a cent):""",
    """call = spend.iloc[0]
price = pricing.get_price(call["model"])
tokens_in, tokens_out = int(call["tokens_in"]), int(call["tokens_out"])
per_in, per_out = price.input_per_million_usd, price.output_per_million_usd
by_hand = (tokens_in * per_in + tokens_out * per_out) / 1_000_000
print(f"{call['model']}: {tokens_in:,} tokens in × {usd(per_in)} / M "
      f"+ {tokens_out:,} out × {usd(per_out)} / M = ${by_hand}")
print(f"recorded: ${call['cost_usd'].normalize()}, the same: {by_hand == call['cost_usd']}")
print(f"shown as {usd(by_hand)}")
"""
    + CHECK,
    """md:## 1. Which model, project and notebook cell cost most?

`frames.by_model`, `frames.by_session` and `frames.top_n` cut the frame; `formatted` writes the money for
reading and `bar_chart` draws a picture (SVG, so it shows on GitHub and nbviewer too).""",
    """by_model = frames.by_model(spend).rename(columns={"rows": "calls"})
by_model["share"] = by_model["cost_usd"].astype(float) / float(spend["cost_usd"].sum())
formatted(by_model, money=["cost_usd"], percent=["share"])
"""
    + CHECK,
    """names = {str(s.id): name for name, s in projects.items()}
by_project = frames.by_session(spend).rename(columns={"rows": "calls"})
by_project.insert(0, "project", by_project.pop("session_id").astype(str).map(names))
bar_chart(by_project, x="project", y="cost_usd", horizontal=True, labels=True,
          title="Cost by project, 2 Feb – 15 Mar 2026")
"""
    + CHECK,
    """top_cells = frames.top_n(spend, "notebook_cell", n=5)
bar_chart(top_cells, x="notebook_cell", y="cost_usd", horizontal=True, labels=True,
          title="The five costliest notebook cells")
"""
    + CHECK,
    """md:Claude Sonnet is most of the bill, through the parser project's agent cell — and one cell of an
evaluation notebook, run once, cost more than the whole docs project.

## 2. Daily cost, stacked by model""",
    """daily = frames.by_day(spend, by="model")
bar_chart(daily, x="day", y="cost_usd", color="model", title="Daily cost by model")
"""
    + CHECK,
    """md:Working days cost about the same, weekends little; Tuesday 10 March stands out — the evaluation
sweep.

## 3. Week over week

`frames.by_week` sums per week (Monday to Sunday) and gives each week's change over the one before.""",
    """weekly = frames.by_week(spend)
display(bar_chart(frames.by_week(spend, by="model"), x="week", y="cost_usd", color="model", labels=True,
                  title="Weekly cost by model (weeks from Monday)", height=340))
formatted(weekly, money=["cost_usd"], change=["change"])
"""
    + CHECK,
    """md:The underlying trend is a steady rise — about a tenth a week as the team leans on the agents — and
the week of the sweep nearly doubled.

## 4. Cost per 1,000 tokens and per successful call

`frames.unit_costs` divides exactly. A cost record is one call that completed: an attempt that failed
leaves none, so the cost per call is per *successful* call.""",
    """unit = frames.unit_costs(spend, by="model")
display(formatted(unit, money=["cost_usd", "usd_per_1k_tokens", "usd_per_call"]))
bar_chart(unit, x="model", y="usd_per_call", horizontal=True, labels=True,
          title="Cost per successful call")
"""
    + CHECK,
    """md:A Claude Sonnet call costs about three times a GPT-4o one and over a hundred times a Gemini Flash one:
per 1,000 tokens the gap is the price table's, per call it also counts how much each job sends.

## 5. What retries cost

A rate-limited request (HTTP 429) is refused before the model does any work, and providers do not bill
it. cmdc_nb retries it (`RetryPolicy`: exponential backoff, the provider's Retry-After honoured) and
records **one** call, with its `retry_count`, and one cost: the attempt that answered. An attempt that
fails *after* the model began answering (a timeout, a dropped stream) is different: the provider may
bill the tokens it processed, but sends no usage for a broken stream, so nothing is recorded for it.

Four requests to an offline model priced like GPT-4o: one answered at once, one after two rate limits,
one after a timeout mid-answer, one rate-limited until the retries ran out.""",
    """from cmdc_nb.errors import ProviderError
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import RetryPolicy, Script, Turn

answer = Turn("Summary.", usage=(12_000, 800))  # 12,000 tokens in, 800 out
limited = Turn(error="rate_limit", retry_after=0.05)
cut_off = Turn("Summary of document three, so", error="timeout", error_after=2)  # times out mid-answer
flaky = Script([answer,                         # document one
                limited, limited, answer,       # two
                cut_off, answer,                # three
                limited, limited, limited, limited], name="gpt-4o-like")  # four
pricing.set_model_price(flaky.model, input_per_million_usd="2.50", output_per_million_usd="10.00")
retried = sessions.create_session(me, name="Retries")
agent = Agent(model=flaky.model, session=retried, retry=RetryPolicy(retries=3, backoff_s=0.05))
for doc in ("one", "two", "three", "four"):
    try:
        await agent.prompt(f"Summarise document {doc}")
    except ProviderError as exc:
        print(f"document {doc}: gave up after {flaky.served} requests in all — {exc.kind}")
retry_calls = frames.calls_frame(session=retried)
shown = ["status", "retry_count", "tokens_in", "tokens_out", "cost_usd", "error_type"]
formatted(retry_calls[shown], money=["cost_usd"])
"""
    + CHECK,
    """billed = frames.costs_frame(session=retried)
answered = int((retry_calls["status"] == "completed").sum())
retries = int(retry_calls["retry_count"].sum())
total, first = billed["cost_usd"].sum(), billed["cost_usd"].iloc[0]  # the first was answered at once
print(f"requests sent: {flaky.served} for {len(retry_calls)} calls, {retries} of them retries")
print(f"cost records: {len(billed)}, one per answered call: {usd(total)}")
print(f"without a retry, {answered} such calls cost {usd(answered * first)}: retries added "
      f"{usd(total - answered * first)}")
print(f"per successful call: {usd(total / answered)}")
"""
    + CHECK,
    """md:So in money a rate-limit retry costs nothing; it costs time (the backoff), and a call that runs out of
retries fails without an answer. To see where retries happen in your own records, `frames.calls_frame`
has `retry_count` and `error_type` per call.

## 6. The month against the budget: burn rate and month-end projection

`budgets.budget_status(budget, at=…)` says where a budget stood at a moment; `budgets.budget_forecast`
adds the burn rate (spent ÷ days elapsed in the period) and the spend it projects for the period's end.""",
    """status = budgets.budget_status(monthly, at=TODAY)
forecast = budgets.budget_forecast(monthly, at=TODAY)
days = (TODAY - forecast.period_start).days
print(f"{monthly.name}, {status.period_key}: {usd(status.spent_usd)} of {usd(status.limit_usd)} spent "
      f"({status.percent} %) in the {days} days to {TODAY:%a %d %b}")
print(f"burn rate: {usd(forecast.burn_rate_usd_per_day)} a day")
print(f"at that rate: {usd(forecast.projected_usd)} by the end of March, "
      f"{forecast.projected_percent} % of the budget")
if forecast.limit_at:
    print(f"the budget runs out on {forecast.limit_at:%a %d %b}")
"""
    + CHECK,
    """march = frames.by_day(spend[spend["day"] >= forecast.period_start.replace(tzinfo=None)])
one_day = dt.timedelta(days=1)
lines = pd.concat([  # spent by each day's end (the next midnight), then the projection from TODAY
    pd.DataFrame({"at": [forecast.period_start, *(march["day"] + one_day)], "series": "spent",
                  "usd": [0.0, *march["cost_usd"].astype(float).cumsum()]}),
    pd.DataFrame({"at": [TODAY, forecast.period_end], "series": "projected at the burn rate",
                  "usd": [float(status.spent_usd), float(forecast.projected_usd)]}),
])
limit = float(monthly.limit_usd)
marks = [  # where this month's warnings were sent
    (dt.datetime.fromisoformat(p["incurred_at"]), p["spent_usd"], f"{p['threshold_percent']} %")
    for p in (e.payload for e in warnings) if p["period"] == status.period_key
]
if forecast.limit_at:
    marks.append((forecast.limit_at, limit, f"runs out {forecast.limit_at:%b %d}"))
marks.append((forecast.period_end, forecast.projected_usd, f"{usd(forecast.projected_usd)} by Mar 31"))
line_chart(lines, x="at", y="usd", color="series", dashed=["projected at the burn rate"],
           rules={f"budget {usd(limit)}": limit, "80 %": 0.8 * limit, "50 %": 0.5 * limit},
           marks=marks, x_range=(forecast.period_start, forecast.period_end),
           title="March: spend against the budget")
"""
    + CHECK,
    """md:Half the budget went by the 10th (the sweep), 80 % by the 13th, and at the month's pace so far the
budget runs out in a few days and March ends well over it. The straight line counts the sweep as if it
happened again in the second half of the month: the second exercise asks what March looks like without it.

## 7. The soft budget's warnings

Each warning was published as the cost that crossed its threshold was recorded — one per threshold
and month — and `ws.bus.subscribe(...)` (as above) hands them to your code as they come. Here they
are, as a team lead would read them:""",
    r"""from IPython.display import Markdown


sent = [e.payload for e in warnings]
seen = pd.DataFrame({
    "month": [p["period"] for p in sent],
    "threshold": [f"{p['threshold_percent']} %" for p in sent],
    "crossed": [f"{dt.datetime.fromisoformat(p['incurred_at']):%a %d %b, %H:%M} UTC" for p in sent],
    "spent then": [p["spent_usd"] for p in sent],
})
display(formatted(seen, money=["spent then"]))


def dollars(amount):
    return usd(amount).replace("$", "\\$")  # in Markdown a bare $ starts LaTeX


Markdown("\n\n".join(
    f"> ⚠️ **{monthly.name}: {p['threshold_percent']} % of the {dollars(monthly.limit_usd)} budget "
    f"spent** by {dt.datetime.fromisoformat(p['incurred_at']):%a %d %b} ({dollars(p['spent_usd'])}). "
    f"At this month's burn rate March ends at {dollars(forecast.projected_usd)}."
    for p in sent if p["period"] == status.period_key
))
"""
    + CHECK,
    """md:February warned at 50 % and 80 % and stayed under the budget; March has warned twice by the 13th.
A warning per threshold and month, not per call: the budget remembers which it has sent.

## 8. A hard budget refuses a call before it is sent

A *hard* budget adds a call's worst case — its prompt counted with a tokenizer plus all of `max_tokens`
of output — to what was spent, and refuses the call if that would cross the limit: nothing reaches
the model.""",
    """from cmdc_nb.errors import BudgetExceededError

pricey = Script(["A long answer."], name="pricey")
pricing.set_model_price(pricey.model, input_per_million_usd="1000", output_per_million_usd="1000")
capped = sessions.create_session(me, name="Capped experiment")
budgets.create_budget(name="experiment cap", limit_usd="0.01", session=capped, hard_limit=True)
agent = Agent(model=pricey.model, session=capped, max_tokens=4000)
try:
    await agent.prompt("Write me a novel")
except BudgetExceededError as exc:
    print("refused before sending:", type(exc).__name__)
print("requests that reached the model:", pricey.served)
"""
    + CHECK,
    """md:## The same, to explore

`CostDashboard` draws these cuts live, with filters for the dates, the user and the project. Here it is set
to March so far, so its cumulative chart is the month against the budget line:""",
    """from cmdc_nb.widgets import CostDashboard

dashboard = CostDashboard(me, by="model")
dashboard.since.value, dashboard.until.value = dt.date(2026, 3, 1), dt.date(2026, 3, 15)
dashboard""",
    """md:## Recap

- Costs are recorded per call from its tokens and the price table, exact; `frames.costs_frame` reads
  them into pandas for a date range you choose.
- `frames.by_model`, `by_session`, `top_n`, `by_day`, `by_week` and `unit_costs` answer *who, what,
  when and how much per unit*; `widgets.report.formatted` and `bar_chart` / `line_chart` show them.
- A rate-limit retry is not billed: one call, one cost record, however many attempts.
- `budgets.budget_forecast` gives the burn rate and the month-end projection; a soft budget warns once
  per threshold and month, a hard one refuses a call before it is sent.

## Exercises

**1.** Which project costs the most *per successful call*? Use `frames.unit_costs` with
`by="session_id"` and the `names` mapping from section 1, and set `costliest_per_call` to the project's
name. The hidden cell after it checks your answer.""",
    """costliest_per_call = None  # your answer: a project's name""",
    """hidden:if costliest_per_call is None:
    print("Set costliest_per_call above, then run this cell.")
else:
    _unit = frames.unit_costs(spend, by="session_id")
    _want = names[str(_unit.iloc[0]["session_id"])]
    assert costliest_per_call == _want, f"not {costliest_per_call!r}: sort by usd_per_call, not cost_usd"
    print(f"Right: {_want}, at {usd(_unit.iloc[0]['usd_per_call'])} a call.")
"""
    + CHECK,
    """md:**2.** The evaluation sweep was a one-off. Project March's month-end spend *without* it — the sweep's
cell is `evals/sweep.ipynb:In[14]` — at the burn rate of the rest, and set `projected_without_sweep`
(in USD). Does March still go over the budget?""",
    """projected_without_sweep = None  # your answer, in USD""",
    """hidden:if projected_without_sweep is None:
    print("Set projected_without_sweep above, then run this cell.")
else:
    _rest = spend["notebook_cell"] != "evals/sweep.ipynb:In[14]"
    _march = spend[(spend["day"] >= "2026-03-01") & _rest]
    _want = _march["cost_usd"].sum() / 15 * 31
    assert abs(float(projected_without_sweep) - float(_want)) < 0.01, f"expected about {usd(_want)}"
    _verdict = "still over" if _want > monthly.limit_usd else "within"
    print(f"Right: {usd(_want)} — {_verdict} the {usd(monthly.limit_usd)} budget.")
"""
    + CHECK,
]

LOOP = [
    """md:# Inside the agent loop

An agent is a loop: send the conversation to the model; if the reply asks for tools, run them, append
their results and send the conversation again; when a reply asks for no tool, it is the answer. This
notebook writes that loop in about fifteen lines of plain Python, runs cmdc_nb's `Agent` on the same model
to show what it adds — an event at each step, and hooks where plugins change what happens — and ends
with two plugins at work: one that blocks a tool call, and Reflection, which makes the model review its
answer before the run ends.

**You will learn**

- what `@tool` sends the model: a JSON schema made from the function's signature and docstring;
- the loop itself, and the messages sent on each request;
- the events `Agent.prompt` emits at each step, as a table, and where the plugin hooks sit;
- how a plugin's intervention sends the loop round again (Reflection), and which answer it accepted.

**Prerequisites**: Python's `async` / `await`; [01 — Chat and approvals](01_chat_and_approvals.ipynb)
shows an agent from the outside, this notebook opens it up.
**Time to run**: about 20 seconds, offline: the model is *scripted* (it goes through litellm like a real
provider). With an API key set, the chat cells talk to that provider instead (`choose_model`).

Reference: [docs/kernel.md](../docs/kernel.md) · Next: [06 — Team mode](06_team_mode.ipynb)""",
    SETUP,
    """md:## 1. A tool is a function and a JSON schema

The model never sees your Python function: it sees a name, a description and a JSON schema of the
arguments. `@tool` builds them from the signature (through pydantic) and the docstring.""",
    r'''import json
from cmdc_nb.kernel import tool

@tool
def add(a: int, b: int) -> int:
    """Add two integers.

    Args:
        a: the first number
        b: the second number
    """
    return a + b

print(json.dumps(add.schema(), indent=2))
'''
    + CHECK,
    """md:The model answers with a name and a JSON object of arguments. They are checked against the
schema before the function runs: what can be coerced is, and anything else becomes an error result
the model reads and can correct.""",
    r"""from cmdc_nb.kernel import ToolError

print(add.validate({"a": "2", "b": 3}))  # "2" is coerced to 2
try:
    add.validate({"a": 2, "c": 3})
except ToolError as exc:
    print(exc)
"""
    + CHECK,
    """md:## 2. The loop in about fifteen lines

A scripted model plays its turns in order: the first asks for `add(2, 3)`, the second answers.
`stream_completion` is the provider call the kernel makes (litellm's `acompletion` with streaming,
one retry layer and fallback models); it returns a `Completion` with the text and the parsed tool
calls.""",
    r"""from cmdc_nb.providers import ProviderRequest, Script, Turn, call, describe_model_choice, stream_completion

script = Script([Turn("Let me add them.", tool_calls=[call("add", a=2, b=3)]), "2 + 3 = 5."], name="adder")
choice = describe_model_choice(script)  # the scripted model, or a real one when an API key is set
model = choice.model
print(choice)
"""
    + CHECK,
    r"""async def toy_loop(model, question, tools, max_turns=5):
    by_name = {t.name: t for t in tools}
    schemas = [t.schema() for t in tools]  # what the model is told about the tools
    messages = [{"role": "user", "content": question}]
    sent = []  # a copy of each request's messages, to look at below
    for _ in range(max_turns):
        sent.append(list(messages))
        request = ProviderRequest(model, messages, tools=schemas)  # the whole conversation, every time
        reply = await stream_completion(request, on_part=lambda part: None)  # streamed pieces: unused here
        messages.append(reply.message())  # the assistant's turn, its tool calls included
        if not reply.tool_calls:
            return reply.text, sent  # no tool call: this is the answer
        for c in reply.tool_calls:  # run each tool; its result goes back as a "tool" message
            result = by_name[c.name].fn(**c.arguments)
            messages.append({"role": "tool", "tool_call_id": c.id, "content": str(result)})
    raise RuntimeError(f"no answer after {max_turns} requests")

answer, toy_sent = await toy_loop(model, "What is 2 + 3?", [add])
print(answer)
print(len(toy_sent), "requests")
"""
    + CHECK,
    """md:### What each request carried

The model keeps nothing between requests: each one carries the whole conversation so far. The second
request repeats the question, adds the model's own tool call (an assistant message with `tool_calls`)
and the tool's result (a `tool` message tied to the call by `tool_call_id`).""",
    r'''import pandas as pd

def requests_table(requests):
    """One row per message of each request: what the model was sent, request by request."""
    rows = []
    for n, messages in enumerate(requests, 1):
        for i, m in enumerate(messages):
            calls = [f"{c['function']['name']}({c['function']['arguments']})" for c in m.get("tool_calls") or []]
            rows.append({"request": n, "message": i, "role": m["role"], "content": m.get("content"),
                         "tool_calls": ", ".join(calls), "tool_call_id": m.get("tool_call_id", "")})
    return pd.DataFrame(rows).set_index(["request", "message"])

requests_table(toy_sent)
'''
    + CHECK,
    """md:## 3. The loop, drawn

The same loop as the kernel runs it. The boxes are the plugin hooks (section 5); under each, the
events it emits. The toy loop above is the path *request → tool calls? → run the tools → request*,
and *no → answer*.

```mermaid
flowchart TD
    P(["agent.prompt(text)"]) --> BP["before_prompt<br/>agent_start · the user message appended"]
    BP --> BR["before_request"]
    BR --> RQ["request to the model<br/>request_start · message_delta … · response_complete"]
    RQ --> AR["after_response"]
    AR --> TC{"tool calls?"}
    TC -- yes --> BT["before_tool, for each call<br/>tool_calls · tool_execution_start"]
    BT --> RUN["run the tools, concurrently<br/>tool_execution_end"]
    RUN --> AT["after_tool · after_tool_batch<br/>the results appended as tool messages"]
    AT --> BR
    TC -- no --> BF["before_finish"]
    BF -- "a plugin intervenes:<br/>its text becomes a user message" --> BR
    BF -- "nothing to add" --> END(["after_turn · agent_end<br/>the reply is returned"])
```

A run also stops at `max_turns` (100 requests), when the same call repeats (`loop_detected`), or on
`agent.abort()` from any state; `agent.steer(text)` adds a user message before the next request.""",
    """md:## 4. `Agent.prompt`: the same loop, with an event at each step

The agent runs the same model (the script rewound to its first turn) with the same tool. Every step
is an event; a subscriber sees each one as it happens. At each `request_start`, `agent.last_request`
is the request about to go to the model.""",
    r"""from cmdc_nb.kernel import Agent

script.reset()  # rewind the script to its first turn
agent = Agent(model=model, tools=[add], prompt_mode="minimal", system_prompt="You are a careful calculator.")
events, sent = [], []

def watch(env):
    events.append(env)
    if env.type == "request_start":
        sent.append(agent.last_request)  # the request as it goes to the model

agent.events.subscribe(watch)
print(await agent.prompt("What is 2 + 3?"))
"""
    + CHECK,
    """md:The reply is all the assistant text of the run, not only the last response's. The events, in
order (timings left out, since they change on every run):""",
    r'''def events_frame(envelopes):
    """One row per event: its index, its type and its fields."""
    def details(event):  # its fields, without the empty ones and the timings
        parts = []
        for k, v in event.to_dict().items():
            if v in (None, "", [], {}) or k.endswith("_ms"):
                continue
            parts.append(f"usage={v['input']} in + {v['output']} out" if k == "usage" else f"{k}={v!r}")
        return ", ".join(parts)
    return pd.DataFrame([{"#": e.index, "type": e.type, "details": details(e.event)} for e in envelopes]).set_index("#")

events_frame(events)
'''
    + CHECK,
    """md:Each `message_delta` is a streamed piece of text; `tool_execution_metrics` comes at a tool's start
and at its end (with its duration). The requests the agent sent are the toy loop's, with the system
prompt first (`prompt_mode="minimal"`: yours and the tool names; the default, `"full"`, adds cmdc_nb's
instructions and the working directory):""",
    r"""requests_table([r.messages for r in sent])
"""
    + CHECK,
    """md:Every event type, with its fields (the kernel's first, then those of the built-in plugins and
tools, which register their own):""",
    r"""from IPython.display import Markdown
import cmdc_nb.plugins, cmdc_nb.toolkit  # each feature registers its own event types
from cmdc_nb.kernel.events import events_table
Markdown(events_table())
"""
    + CHECK,
    """md:## 5. Plugins: hooks and actions

A plugin is called at the hooks of the diagram and answers with an action: continue, intervene (add a
user message), abort, skip the later plugins, block the tool, replace its arguments or its result,
switch the model, emit an event, or make the call wait for approval. Which hook allows which action:""",
    r"""from cmdc_nb.kernel import hook_action_matrix
Markdown(hook_action_matrix())
"""
    + CHECK,
    """md:A plugin that blocks shell commands which delete files, and notes each hook it is called at. The
blocked call never runs: the model gets an error result saying why, and answers from there.""",
    r'''from cmdc_nb.kernel import BlockTool, Plugin

class NoDeletes(Plugin):
    """Blocks shell commands that delete files; notes each hook it is called at."""
    def __init__(self):
        super().__init__()
        self.calls = []

    def handle(self, event, ctx):
        action = None
        if event.hook.value == "before_tool" and "rm " in str(event.args.get("command")):
            action = BlockTool("deleting files is not allowed here")
        self.calls.append({"hook": event.hook.value, "requests so far": ctx.turn,
                           "returned": type(action).__name__ if action else "None (go on)"})
        return action

@tool
def shell(command: str) -> str:
    """Run a shell command."""
    return f"ran {command}"

script = Script([Turn(tool_calls=[call("shell", command="rm -rf build/")]), "I may not delete; leaving build/ alone."],
                name="cleaner")
guard = NoDeletes()
agent = Agent(model=describe_model_choice(script).model, tools=[shell], plugins=[guard])
print(await agent.prompt("Clean the build folder with `rm -rf build/`"))
print("the model was told:", [m["content"] for m in agent.messages if m["role"] == "tool"])
pd.DataFrame(guard.calls)
'''
    + CHECK,
    """md:## 6. Planning: a plugin that changes the request

With the Planning plugin the agent writes a plan first; the plugin keeps it in the system prompt and
attaches an `update_plan` tool, with which the model marks steps done as it works. The last request
shows both (`prompt_mode="none"` leaves only the plugins' part of the system prompt).""",
    r"""from cmdc_nb.plugins import Planning
from cmdc_nb.widgets import PlanView

script = Script([
    "# Plan: ship the release\n- [ ] Run the tests\n- [ ] Tag the release",
    Turn(tool_calls=[call("update_plan", step="1", status="completed", note="412 passed")]),
    Turn(tool_calls=[call("update_plan", step="2", status="completed", note="v2.0.0")]),
    "Released v2.0.0.",
], name="planner")
planning = Planning()
agent = Agent(model=describe_model_choice(script).model, plugins=[planning], prompt_mode="none")
view = PlanView(agent)
print(await agent.prompt("Ship the v2.0.0 release: run the tests, then tag it"))  # ≥ 20 characters: plan first
print("steps done:", planning.plan.progress() if planning.plan else "no plan was written")
last = agent.last_request
print("tools offered:", [t["function"]["name"] for t in last.tools])
print("system prompt:", next((m["content"] for m in last.messages if m["role"] == "system"), "(none)"), sep="\n")
"""
    + CHECK,
    "view",
    """md:## 7. Reflection: the loop goes round again

The Reflection plugin reviews the answer before the run ends: at `before_finish` it *intervenes* —
its review prompt becomes a user message, and the loop sends another request (the arrow back from
`before_finish` in the diagram). The model either replies with the pass signal (`APPROVED`) or with a
corrected answer, which is reviewed again, up to `max_reviews`.""",
    r"""from cmdc_nb.plugins import Reflection

script = Script(["6 × 7 = 41.", "Sorry: 6 × 7 = 42.", "APPROVED"], name="reflective")
agent = Agent(model=describe_model_choice(script).model, plugins=[Reflection(max_reviews=3)])
events = []
agent.events.subscribe(events.append)
reply = await agent.prompt("What is six times seven?")

reviews = {e.event.prompt for e in events if e.type == "intervention"}
pd.DataFrame([{"role": "user (Reflection's review)" if m["content"] in reviews else m["role"],
               "content": m["content"]} for m in agent.messages])
"""
    + CHECK,
    """md:The conversation holds both answers and the pass signal, and so does the run's reply, which is
all the assistant text of the run. The answer the review accepted is in the `reflection_approved`
event:""",
    r"""[approved] = [e.event for e in events if e.type == "reflection_approved"]
print("the run's reply:", repr(reply))
print("reviews:", approved.iteration, "(max_reviews reached: accepted as it was)" if approved.forced else "(passed)")
print("accepted answer:", approved.answer)
"""
    + CHECK,
    """md:## Recap

- A tool is a function plus a JSON schema; the model sends a name and arguments, which are validated
  before the function runs.
- The loop: send the whole conversation → run the tool calls → append the results → send again, until
  a reply asks for no tool. Each request carries everything; the model remembers nothing.
- `Agent.prompt` runs that loop as a task on the notebook's event loop, emitting an event at each step
  (`agent.events.subscribe`), with `agent.last_request` showing each request as it goes out.
- Plugins answer at hooks with actions; an intervention at `before_finish` sends the loop round again,
  which is how Reflection reviews an answer (the accepted one is `reflection_approved.answer`).

More in [docs/kernel.md](../docs/kernel.md): the state machine, steering, abort, approvals, retries and
fallback models, compaction.

## Exercises

**1. An unknown tool.** Models sometimes call a tool that does not exist. In `toy_loop`,
`by_name[c.name]` then raises `KeyError` and the loop dies; the kernel instead answers the call with an
error result (`unknown tool 'multiply'; available tools: add`) and lets the model go on. Change
`my_loop` below (a copy of `toy_loop`) to do the same, run it, then run the check under it (its code is
folded: click the `…` to see it).""",
    r"""async def my_loop(model, question, tools, max_turns=5):
    by_name = {t.name: t for t in tools}
    schemas = [t.schema() for t in tools]
    messages = [{"role": "user", "content": question}]
    sent = []
    for _ in range(max_turns):
        sent.append(list(messages))
        reply = await stream_completion(ProviderRequest(model, messages, tools=schemas), on_part=lambda part: None)
        messages.append(reply.message())
        if not reply.tool_calls:
            return reply.text, sent
        for c in reply.tool_calls:
            result = by_name[c.name].fn(**c.arguments)  # your change: what if c.name is not in by_name?
            messages.append({"role": "tool", "tool_call_id": c.id, "content": str(result)})
    raise RuntimeError(f"no answer after {max_turns} requests")
"""
    + CHECK,
    r"""hidden:# The check of exercise 1: a scripted model calls `multiply`, which does not exist.
check = Script([Turn(tool_calls=[call("multiply", a=6, b=7)]), "I can only add."], name="exercise-1")
try:
    _, check_sent = await my_loop(check.model, "What is 6 × 7?", [add])
except Exception as exc:
    print(f"Not yet: my_loop raised {type(exc).__name__}: {exc}. Append a tool message saying the tool is unknown instead.")
else:
    told = [m["content"] for m in check_sent[-1] if m["role"] == "tool"]
    if told and "multiply" in told[0]:
        print("✓ The model was told:", told[0])
    else:
        print("Not yet: the tool message should name the unknown tool, so the model knows what went wrong.")
"""
    + CHECK,
    """md:**2. A plugin that blocks.** Write `NoNegatives`: at `before_tool`, block `add` when either
number is negative, with a reason the model can read (`BlockTool("…")`). `event.name` is the tool's
name and `event.args` its arguments. Then run the check.""",
    r"""class NoNegatives(Plugin):
    def on_before_tool(self, event, ctx):
        return None  # your code: return BlockTool("…") when add gets a negative number
"""
    + CHECK,
    r"""hidden:# The check of exercise 2: a scripted model adds -1 and 2, then adds 1 and 2.
check = Script([Turn(tool_calls=[call("add", a=-1, b=2, id="negative")]),
                Turn(tool_calls=[call("add", a=1, b=2, id="positive")]), "Done."], name="exercise-2")
check_agent = Agent(model=check.model, tools=[add], plugins=[NoNegatives()])
await check_agent.prompt("Add -1 and 2, then 1 and 2")
results = {m["tool_call_id"]: m["content"] for m in check_agent.messages if m["role"] == "tool"}
if not results["negative"].startswith("blocked by NoNegatives"):
    print("Not yet: add(-1, 2) ran and returned", repr(results["negative"]))
elif results["positive"] != "3":
    print("Not yet: add(1, 2) should run, but the model got", repr(results["positive"]))
else:
    print("✓ The model was told:", results["negative"])
"""
    + CHECK,
    """md:Next: [06 — Team mode](06_team_mode.ipynb), where two kernels share one PostgreSQL workspace.""",
]

TEAM = [
    """md:# Team mode: two kernels on one PostgreSQL workspace

Several people (or kernels, or workers) share one workspace when it lives in PostgreSQL. Here two
workspaces stand in for two kernels, each acting for its user: Ada shares a session with Grace, runs a
workflow in it that waits at an approval gate, Grace's kernel hears of it and approves, and Ada's goes
on. `cmdc-nb db start` runs a local PostgreSQL to try this on one machine (see `docs/team.md`).

This notebook needs a PostgreSQL URL (with the pgvector, citext, pg_trgm and btree_gin extensions
available): set `CMDC_NB_TEAM_URL` (the test suite's `CMDC_TEST_PG_URL` also works). Without one, every
cell says so and does nothing.""",
    """import os, tempfile, uuid
os.environ["CMDC_NB_HOME"] = tempfile.mkdtemp(prefix="cmdc-nb-")
import sqlalchemy as sa
import cmdc_nb

admin_url = os.environ.get("CMDC_NB_TEAM_URL") or os.environ.get("CMDC_TEST_PG_URL")
if not admin_url:
    print("No PostgreSQL URL (CMDC_NB_TEAM_URL): skipping team mode. Everything else runs on SQLite.")
    url = None
else:
    # a fresh database for this demo, so it never touches your data
    name = f"cmdc_team_demo_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(admin_url.replace("postgresql://", "postgresql+psycopg://", 1), isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
    url = sa.make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    print("team workspace: a new database on", sa.make_url(url).host)""",
    """if url:
    kernel_a = cmdc_nb.connect(url, make_default=False)   # Ada's notebook
    kernel_b = cmdc_nb.connect(url, make_default=False)   # Grace's notebook
    from cmdc_nb import accounts
    ada = accounts.create_user("ada@example.com", name="Ada", ws=kernel_a)
    grace = accounts.create_user("grace@example.com", name="Grace", ws=kernel_b)
    kernel_a.act_as(ada); kernel_b.act_as(grace)        # or: cmdc_nb.connect(url, as_user="ada@example.com")
    print([u.name for u in accounts.list_users(ws=kernel_b).entries])""",
    """md:## Who sees what

Each kernel acts for its user: Ada's sessions are hers until she shares them. Grace cannot read Ada's
private notes; she can work in the release room Ada shares with her.""",
    """if url:
    from cmdc_nb import sessions
    from cmdc_nb.errors import AccessDeniedError
    notes = sessions.create_session(ada, name="Ada's private notes", ws=kernel_a)
    room = sessions.create_session(ada, name="Release room", ws=kernel_a)
    sessions.share_session(room, with_users=[grace], ws=kernel_a)
    try:
        sessions.list_messages(notes, ws=kernel_b)
    except AccessDeniedError as exc:
        print("Grace, on Ada's notes:", exc)
    print("shared with Grace:", [s.name for s in sessions.list_sessions(grace, shared=True, ws=kernel_b).entries])""",
    """md:## Events cross kernels

Committed changes reach every kernel on the workspace through the database (LISTEN/NOTIFY): Grace's
kernel hears what happens in Ada's, in order and once, with the writer named in `event.origin`.""",
    """if url:
    heard = []
    kernel_b.bus.subscribe("workflow_run:*", lambda e: heard.append(e))
    from cmdc_nb import workflows as wf
    deploy = wf.create_workflow(ada, {"name": "Deploy", "steps": [
        wf.step("build", "transform", value="built"),
        wf.step("sign_off", "approval", depends_on="build", title="Deploy to production?"),
        wf.step("deploy", "transform", depends_on="sign_off", value="deployed by {{ steps.sign_off.output.note }}"),
    ]}, ws=kernel_a)
    handle = wf.run_workflow(deploy, session=room, ws=kernel_a)   # in the background of Ada's kernel
    import asyncio
    while not any(e.type == "workflow_step_waiting_approval" for e in heard):
        await asyncio.sleep(0.05)
    print("Grace's kernel heard:", [e.type for e in heard if e.origin])""",
    """if url:
    # Grace approves the gate in her own kernel: the run's session is shared with her
    run_seen_by_grace = wf.get_workflow_run(handle.run_id, ws=kernel_b)
    wf.approve_workflow_step(run_seen_by_grace, "sign_off", grace, note="Grace", ws=kernel_b)
    done = await handle                                  # Ada's driver hears the decision as an event
    print(done.status.value, "->", done.output)""",
    """if url:
    kernel_a.close(); kernel_b.close()
    with admin.connect() as conn:
        conn.exec_driver_sql(f'DROP DATABASE "{name}" WITH (FORCE)')
    print("demo database dropped")""",
]

NOTEBOOKS = {
    "00_tour": TOUR,
    "01_chat_and_approvals": CHAT,
    "02_workflows": WORKFLOWS,
    "03_rag_index": RAG,
    "04_cost_analytics": COSTS,
    "05_inside_the_agent_loop": LOOP,
    "06_team_mode": TEAM,
}


def build(name: str) -> Path:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    for cell in NOTEBOOKS[name]:
        if cell.startswith("md:"):
            nb.cells.append(nbformat.v4.new_markdown_cell(cell[3:]))
        elif cell.startswith("hidden:"):  # an exercise's check: its code folded in JupyterLab
            hidden = {"jupyter": {"source_hidden": True}, "tags": ["hide-input"]}
            nb.cells.append(nbformat.v4.new_code_cell(cell[7:], metadata=hidden))
        else:
            nb.cells.append(nbformat.v4.new_code_cell(cell))
    # No widget state in the files: a plotly FigureWidget's state carries its 5 MB JavaScript bundle, and the
    # notebooks are re-run to be seen anyway (`cmdc-nb tour` keeps the state in its HTML).
    NotebookClient(
        nb,
        timeout=300,
        kernel_name="python3",
        store_widget_state=False,
        resources={"metadata": {"path": str(HERE)}},
    ).execute()
    path = HERE / f"{name}.ipynb"
    nbformat.write(nb, path)
    return path


if __name__ == "__main__":
    os.environ["CMDC_NB_OFFLINE"] = "1"  # the stored outputs are the offline models', whatever keys are set
    for name in sys.argv[1:] or list(NOTEBOOKS):
        print("built", build(name))
