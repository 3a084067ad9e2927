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
    """md:# Cost analytics: a month of realistic usage, frames, charts and budgets

Costs are exact `Decimal`s priced from an editable price table. Here, a generated month of usage by a
small team: four models from three providers, four projects, calls from notebook cells, some of them
failed and retried.""",
    SETUP,
    """import datetime as dt, random, uuid
from cmdc_nb import budgets, costs, frames, pricing, sessions

prices = {  # USD per million input / output tokens
    "openai/gpt-4o-mini": ("0.15", "0.60"),
    "openai/gpt-4o": ("2.50", "10.00"),
    "anthropic/claude-sonnet-4-5": ("3.00", "15.00"),
    "gemini/gemini-2.0-flash": ("0.10", "0.40"),
}
for model, (i, o) in prices.items():
    pricing.set_model_price(model, input_per_million_usd=i, output_per_million_usd=o)

rng = random.Random(2026)
projects = [sessions.create_session(me, name=n, tags=[t]) for n, t in
            [("Parser rewrite", "eng"), ("Docs site", "docs"), ("Support triage", "support"), ("Data pipeline", "eng")]]
start = dt.datetime.now(dt.UTC).replace(hour=9, minute=0, second=0, microsecond=0) - dt.timedelta(days=29)
weights = [5, 2, 2, 3]
for day in range(30):
    busy = 0.4 if day % 7 in (5, 6) else 1.0  # quieter weekends (by position, so every run is the same)
    for _ in range(int(rng.randint(8, 20) * busy)):
        model = rng.choices(list(prices), weights=weights)[0]
        retry = rng.random() < 0.06  # a rate limit, then a retry: both attempts are billed
        for attempt in range(2 if retry else 1):
            costs.record_cost(me, source_type="agent_call", source_id=uuid.uuid4(), provider=model.split("/")[0],
                              model=model, tokens_in=rng.randint(800, 12000), tokens_out=rng.randint(60, 1500),
                              session=rng.choice(projects), notebook_cell=f"In[{rng.randint(1, 30)}]",
                              metadata={"attempt": attempt + 1},
                              incurred_at=start + dt.timedelta(days=day, minutes=rng.randint(0, 600)))
spend = frames.costs_frame(user=me)
print(len(spend), "priced calls")""",
    f"""print("total:", spend["cost_usd"].sum())
frames.by_model(spend)
{CHECK}""",
    """md:## Frames: per day and provider, per project, per notebook cell""",
    'frames.by_day(spend, by="provider").tail(6)',
    f"""names = {{str(s.id): s.name for s in projects}}
top = frames.top_n(spend, "session_id", n=4)
top.insert(0, "project", top["session_id"].astype(str).map(names))
top.drop(columns="session_id")
{CHECK}""",
    'frames.top_n(spend, "notebook_cell", n=5)',
    """md:## The dashboard""",
    """from cmdc_nb.widgets import CostDashboard
CostDashboard(me, days=30, by="provider")""",
    """md:## Budgets

A soft budget warns at 50%, 80% and 100%; a hard budget refuses a call *before it is sent* when its
estimated cost would cross the limit.""",
    """monthly = budgets.create_budget(name="Team monthly", limit_usd="250", period="monthly", user=me, hard_limit=False)
budgets.budget_status(monthly)""",
    f"""from cmdc_nb.errors import BudgetExceededError
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script

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
{CHECK}""",
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
