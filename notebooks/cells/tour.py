"""The cells of 00_tour: what cmdc_nb is, in one pass over every part.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
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
