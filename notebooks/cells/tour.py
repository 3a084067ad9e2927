"""The cells of 00_tour: what cmdc_nb is, in one pass over every part.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
    """md:# cmdc_nb in ten minutes

One pass over every part of cmdc_nb, a section each; the notebooks after this one take each part in
depth.

**What you'll learn**

1. to chat with an agent whose tool waits for your approval, in a widget or from code;
2. to fork a conversation, to try another direction without losing the first;
3. to run a small workflow whose steps run in parallel and whose gate waits for a person;
4. to index a folder of documents and search it;
5. to see what the model calls cost, as a dashboard, a chart and a table.

**Prerequisites**: cmdc_nb with its `notebook` extra (`bash scripts/lab.sh` sets it all up, or open the
notebook on Binder); no API key. Everything here runs offline: the model is *scripted* (it goes through
litellm like any real provider, so streaming, usage and costs are exercised for real), the embedder is
a deterministic hashing one, and the database is an SQLite file in a temporary folder. With an API key in
the environment (`OPENAI_API_KEY`, `ANTHROPIC_API_KEY`, …, or any litellm model in `CMDC_NB_MODEL`), the
chat cells talk to that provider instead: `choose_model` picks it.

**Time to run**: about twenty seconds.

Next: [01 · Chat and approvals](01_chat_and_approvals.ipynb). Reference, one page a part:
[docs/kernel.md](../docs/kernel.md) (agents, tools, events), [docs/approvals.md](../docs/approvals.md),
[docs/workflows.md](../docs/workflows.md), [docs/rag.md](../docs/rag.md),
[docs/costs.md](../docs/costs.md) and [docs/widgets.md](../docs/widgets.md).""",
    SETUP,
    """md:## 1. A chat with a tool that needs your approval

A tool is a typed Python function; `@tool` reads its signature and docstring into the JSON schema the
model sees. `requires_approval=True` makes every call of it wait for a decision.""",
    f"""from cmdc_nb import sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call, choose_model

notes = {{}}

@tool(requires_approval=True, side_effects=("filesystem",))
def save_note(title: str, text: str) -> str:
    \"\"\"Save a note under a title.\"\"\"
    notes[title] = text
    return f"saved {{title!r}}"

script = Script([
    Turn("I'll save it as **groceries** once you approve.",
         tool_calls=[call("save_note", title="groceries", text="eggs, flour, butter")]),
    Turn("Saved. Anything else for the list?"),
], name="tour-chat")
chat_session = sessions.create_session(me, name="Tour chat")
agent = Agent(model=choose_model(script), tools=[save_note], session=chat_session, name="Note taker")
print(save_note.name, "takes", dict(save_note.parameters["properties"]))
print("needs approval:", save_note.requires_approval)
{CHECK}""",
    """md:The agent runs as a task on the notebook's event loop: the cell returns at once, the widget streams the
reply, and the tool call waits for **Approve / Deny / Edit** — in the widget, from another cell, from
the approval queue, or by a rule.""",
    """from cmdc_nb.widgets import ChatWidget

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
    """md:Everything the chat did is stored in the workspace — the messages, the tool call and its result — and
`cmdc_nb.frames` reads it into pandas:""",
    f"""from cmdc_nb import frames
frames.messages_frame(session=chat_session)[["sequence", "role", "content"]]
{CHECK}""",
    """md:## 2. Forking the conversation

A fork copies the history up to a message into a new session, so you can try another direction without
losing the first.""",
    f"""first = sessions.list_messages(chat_session).entries[0]
alt = sessions.fork_session(chat_session, first, name="Tour chat — shorter list")
print(alt.name, "has", sessions.count_messages(alt), "message(s), forked from", sessions.get_session(alt.parent_session_id).name)
print("the original still has", sessions.count_messages(chat_session))
{CHECK}""",
    """md:## 3. A small workflow with an approval gate

Steps run as soon as their dependencies are done (here `lint` and `test` in parallel); the gate waits
for a person; every step's outcome is committed before its dependants start, so a crash resumes where
it stopped. `stop_when_blocked=True` returns the run when it reaches the gate.""",
    f"""from cmdc_nb import workflows as wf

release = wf.create_workflow(me, {{
    "name": "Release",
    "input_schema": {{"type": "object", "properties": {{"version": {{"type": "string"}}}}, "required": ["version"]}},
    "steps": [
        wf.step("build", "transform", value="built {{{{ input.version }}}}"),
        wf.step("lint", "transform", depends_on="build", value="0 warnings"),
        wf.step("test", "transform", depends_on="build", value="412 passed"),
        wf.step("ship", "approval", depends_on=["lint", "test"], title="Ship {{{{ input.version }}}}?"),
        wf.step("announce", "transform", depends_on="ship", value="v{{{{ input.version }}}} is out"),
    ],
}})
run = await wf.arun_workflow(release, input={{"version": "2.0"}}, stop_when_blocked=True)
print("run is", run.status.value)
wf.steps_frame(run)[["step_id", "status", "output"]]
{CHECK}""",
    """md:`DagView` draws the run as a graph, each step coloured by its status, with the gate's
**Approve** button:""",
    """from cmdc_nb.widgets import DagView

view = DagView(run)
view""",
    f"""# approve here, unless Approve was clicked in the view above: that decided the gate and moved the run on
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
    """md:## 5. What it cost

Every call is priced from its tokens and the price table, exactly (a `Decimal`, never a float). Here,
three weeks of generated usage across two models, Monday 2 to Sunday 22 March 2026 — the dates are
pinned, so the figures are the same whatever day you run the notebook. Only the tokens are generated;
`record_cost` prices each call from the prices set here.""",
    f"""import datetime as dt, random, uuid
from cmdc_nb import costs, pricing
from cmdc_nb.widgets.report import usd

MINI, SONNET = "openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"
pricing.set_model_price(MINI, input_per_million_usd="0.15", output_per_million_usd="0.60")
pricing.set_model_price(SONNET, input_per_million_usd="3.00", output_per_million_usd="15.00")
FIRST_DAY, LAST_DAY = dt.date(2026, 3, 2), dt.date(2026, 3, 22)
START = dt.datetime.combine(FIRST_DAY, dt.time(0), dt.UTC)  # midnight UTC, the first day

rng = random.Random(7)
for n in range((LAST_DAY - FIRST_DAY).days + 1):
    day = START + dt.timedelta(days=n)
    for _ in range(rng.randint(0, 2) if day.weekday() >= 5 else rng.randint(3, 6)):  # quiet weekends
        model = rng.choice([MINI, MINI, SONNET])
        costs.record_cost(me, source_type="agent_call", source_id=uuid.uuid4(), provider=model.split("/")[0],
                          model=model, tokens_in=rng.randint(500, 4000), tokens_out=rng.randint(50, 600),
                          session=chat_session, incurred_at=day + dt.timedelta(hours=9, minutes=rng.randint(0, 480)))

spend = frames.costs_frame(user=me, since=START, until=START + dt.timedelta(days=21))
print(len(spend), "calls, all priced:", bool(spend["priced"].all()), "—", usd(spend["cost_usd"].sum()), "in all")
{CHECK}""",
    """md:`CostDashboard` explores them live — dates, user, model or provider. Here it is set to the three
weeks:""",
    """from cmdc_nb.widgets import CostDashboard

dashboard = CostDashboard(me)
dashboard.since.value, dashboard.until.value = FIRST_DAY, LAST_DAY
dashboard""",
    """md:The same figures as a picture and a table, which show wherever the notebook is read (SVG, no
JavaScript): the daily cost stacked by model, and what each model cost per call and per 1,000 tokens.""",
    f"""from cmdc_nb.widgets.report import bar_chart, formatted

display(bar_chart(frames.by_day(spend, by="model"), x="day", y="cost_usd", color="model",
                  title="Daily cost by model, 2–22 March 2026"))
formatted(frames.unit_costs(spend), money=["cost_usd", "usd_per_1k_tokens", "usd_per_call"])
{CHECK}""",
    """md:Sonnet is a third of the calls and nearly all of the bill: twenty times the price per token.

## Recap

- An `Agent` runs a model with tools on the notebook's event loop; a tool made with
  `@tool(requires_approval=True)` waits for Approve / Deny / Edit, in `ChatWidget` or from code.
- The conversation is stored: `frames.messages_frame` reads it, `sessions.fork_session` branches it.
- A workflow's steps run as soon as their dependencies are done; an `approval` step waits for a person;
  `DagView` draws the run.
- `rag.create_index` + `rag.ingest` index a folder (incrementally), `rag.search_frame` searches it.
- Every call's cost is its tokens times the price table; `frames.costs_frame` and its cuts answer who
  spent what, `CostDashboard` and `widgets.report` draw it.

## Exercises

**1. Incremental ingestion.** Add a page to the handbook — `docs / "parking.md"`, with a title and a
sentence about where to park a bike — then run `rag.ingest(handbook, progress=False)` again and keep its
report as `again`. Only the new page should be read and embedded. Run the check under the cell (its code
is folded: click the `…` to see it).""",
    """again = None  # your code: write docs / "parking.md", then again = rag.ingest(handbook, progress=False)
"""
    + CHECK,
    f"""hidden:# The check of exercise 1: parking.md is in the index, and the second ingestion added only it.
_indexed = [d.uri for d in rag.list_documents(handbook)]
if again is None:
    print("Not yet: set again = rag.ingest(handbook, progress=False) after writing parking.md.")
elif not any(uri.endswith("parking.md") for uri in _indexed):
    print("Not yet: the index holds", ", ".join(_indexed), "— write parking.md into docs, then ingest again.")
elif (again.added, again.unchanged) != (1, 3):
    print(f"Not yet: that ingestion added {{again.added}} and left {{again.unchanged}} unchanged; expected 1 and 3.")
else:
    print("✓ One page added, three left as they were:", again)
{CHECK}""",
    """md:**2. Weekends.** What share of the three weeks' spend fell on Saturdays and Sundays? `spend["day"]` is
each call's day (a pandas datetime: `.dt.day_of_week` is 5 and 6 at the weekend) and
`spend["cost_usd"]` its cost. Set `weekend_share` to a fraction (0.1 for 10 %).""",
    """weekend_share = None  # your answer: a fraction of the total
"""
    + CHECK,
    f"""hidden:# The check of exercise 2
_weekend = spend[spend["day"].dt.day_of_week >= 5]["cost_usd"].sum() / spend["cost_usd"].sum()
if weekend_share is None:
    print("Set weekend_share above, then run this cell.")
elif abs(float(weekend_share) - float(_weekend)) > 0.001:
    print(f"Not yet: {{float(weekend_share):.3f}} is not the weekend's share; divide the weekend's cost by the total.")
else:
    print(f"✓ {{float(_weekend):.1%}} of the spend fell on weekends.")
{CHECK}""",
    """md:Next: [01 · Chat and approvals](01_chat_and_approvals.ipynb) — the approval flow in depth: rules,
remembered decisions and their scope, edited arguments and the audit of who decided what.""",
]
