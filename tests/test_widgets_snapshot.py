"""Outside a live kernel the widgets still show: each widget's output carries, beside its live view, a
static HTML snapshot of what it shows (the transcript, the DAG and the cost charts as SVG, the plan, the
queue, the index, the feed), kept current while nobody draws the live view, and nbconvert's HTML of a
saved notebook without widget state shows those snapshots."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
import uuid
from pathlib import Path
from typing import Any

import nbformat
import pytest
from bs4 import BeautifulSoup
from IPython.core.interactiveshell import InteractiveShell
from IPython.display import display
from IPython.utils.capture import capture_output
from waiting import CEILING_S

from cmdc_nb import accounts, approvals, costs, rag, sessions
from cmdc_nb import workflows as wf
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.plugins import Planning
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.store.models import User
from cmdc_nb.widgets import (
    ActivityFeed,
    ApprovalQueue,
    ChatWidget,
    CostDashboard,
    DagView,
    IndexBuilder,
    PlanView,
)
from cmdc_nb.widgets._cost_svg import PALETTE
from cmdc_nb.widgets._snapshot import SNAPSHOT_S
from cmdc_nb.workspace import Workspace

VIEW = "application/vnd.jupyter.widget-view+json"


@tool(requires_approval=True)
def save_note(title: str) -> str:
    """Save a note."""
    return f"saved {title}"


def snapshot(widget: Any) -> BeautifulSoup:
    """The widget's output as a notebook stores it: the live view and the snapshot, parsed."""
    bundle = widget._repr_mimebundle_()
    assert bundle[VIEW]["model_id"] == widget.model_id and bundle["text/plain"] == repr(widget)
    page = BeautifulSoup(bundle["text/html"], "html.parser")
    [root] = page.select(f'div.cmdc-snapshot[data-cmdc-widget="{type(widget).__name__}"]')
    assert root.find(["script", "button", "input", "textarea"]) is None  # a picture: nothing runs or clicks
    return page


async def until(predicate: Any) -> None:
    deadline = time.monotonic() + CEILING_S
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def test_a_chat_snapshot_is_its_transcript_with_the_tool_cards() -> None:
    script = Script(
        [
            Turn(
                "Saving <script>alert(1)</script> **now**.", tool_calls=[call("save_note", title="groceries")]
            ),
            "Saved the note.",
        ]
    )
    agent = Agent(model=script.model, tools=[save_note])
    chat = ChatWidget(agent, title="Notes")
    chat.input.value = "sk-typed-but-not-sent"  # what a person types stays in the kernel
    handle = chat.send("please save my list")
    await until(lambda: agent.status()["pending_approvals"])
    await asyncio.sleep(0)
    page = snapshot(chat)
    assert [p.get_text() for p in page.select(".cmdc-msg > p")] == [
        "please save my list",
        "Saving <script>alert(1)</script> now.",  # the model's text, escaped: shown, never run
    ]
    assert (
        "&lt;script&gt;alert(1)&lt;/script&gt;" in str(page)
        and page.select_one(".cmdc-msg strong").text == "now"
    )
    [card] = page.select(".cmdc-tool")
    assert (
        card["class"] == ["cmdc-tool", "waiting"] and card.select_one(".cmdc-tool-name").text == "save_note"
    )
    assert "waiting for your approval" in card.get_text() and '"groceries"' in card.select_one("pre").text
    assert "sk-typed-but-not-sent" not in str(page)

    chat.approve(agent.status()["pending_approvals"][0]["ref"])
    await handle
    page = snapshot(chat)
    [card] = page.select(".cmdc-tool")
    assert card["class"] == ["cmdc-tool", "ok"] and "done" in card.select_one(".cmdc-badge").text
    assert "saved groceries" in card.get_text()
    assert page.select(".cmdc-msg > p")[-1].get_text() == "Saved the note."
    assert (
        "4 messages" in page.select_one(".cmdc-stats").text and page.select_one(".cmdc-title").text == "Notes"
    )
    assert repr(chat) == f"<ChatWidget agent={agent.id[:8]} messages=4>"


def release() -> dict[str, Any]:
    return {
        "name": "Release",
        "steps": [
            wf.step("build", "transform", value="built"),
            wf.step("test", "transform", depends_on="build", value="ok"),
            wf.step("docs", "transform", depends_on="build", value="docs"),
            wf.step("ship", "approval", depends_on=["test", "docs"], title="Ship it <now>?"),
            wf.step("announce", "transform", depends_on="ship", value="out"),
        ],
    }


async def test_the_dag_snapshot_draws_each_step_where_the_view_lays_it_out(ws: Workspace, user: User) -> None:
    run = await wf.arun_workflow(wf.create_workflow(user, release(), ws=ws), stop_when_blocked=True, ws=ws)
    view = DagView(run, ws=ws)
    graph = view.canvas.graph
    svg = snapshot(view).select_one("svg.cmdc-dag-svg")
    nodes = {g["data-step"]: g for g in svg.select("g.cmdc-dag-node")}
    assert (
        {sid: g["data-status"] for sid, g in nodes.items()}
        == {n["id"]: n["status"] for n in graph["nodes"]}
        == {
            "build": "completed",
            "test": "completed",
            "docs": "completed",
            "ship": "waiting_approval",
            "announce": "pending",
        }
    )
    for n in graph["nodes"]:  # drawn where the kernel's layout put it, its name and its state in words
        box = nodes[n["id"]].select_one("rect.cmdc-dag-box")
        assert (float(box["x"]), float(box["y"])) == (n["x"], n["y"])
        label, state = (t.text for t in nodes[n["id"]].select("text"))
        assert label == n["id"] and state.startswith(f"{n['type']} · ")
    assert "‖ waiting approval" in nodes["ship"].get_text() and "✓ completed" in nodes["build"].get_text()
    assert len(svg.select("path.cmdc-dag-edge")) == len(graph["edges"]) == 5
    assert "Ship it <now>?" not in snapshot(view).get_text()
    view.select("ship")  # the selected step's details, as the view shows them
    assert "Ship it <now>?" in snapshot(view).get_text()
    await view.approve(note="fine")
    await until(lambda: view.run.status.value == "completed")
    view.refresh()
    nodes = {g["data-step"]: g["data-status"] for g in snapshot(view).select("g.cmdc-dag-node")}
    assert set(nodes.values()) == {"completed"}
    assert repr(view) == "<DagView 'release' completed>"


def spend(ws: Workspace, user: User) -> None:
    today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    refactor = sessions.create_session(user, name="Refactor", ws=ws)
    docs = sessions.create_session(user, name="Docs <draft>", ws=ws)
    for days_ago, s, provider, model, cost, cell in [
        (3, refactor, "openai", "openai/gpt-4o-mini", "0.10", "cell:x1"),
        (3, refactor, "anthropic", "anthropic/claude-sonnet-4-5", "0.30", "cell:x1"),
        (1, docs, "openai", "openai/gpt-4o-mini", "0.05", "cell:x2"),
        (0, docs, "openai", "openai/gpt-4o", "0.50", None),
        (0, refactor, "anthropic", "anthropic/claude-imaginary", None, None),  # unpriced
    ]:
        costs.record_cost(
            user, source_type="agent_call", source_id=uuid.uuid4(), provider=provider, model=model,
            tokens_in=1000, tokens_out=100 + days_ago, cost_usd=cost, session=s,
            incurred_at=today - dt.timedelta(days=days_ago), notebook_cell=cell, ws=ws,
        )  # fmt: skip


def marks(page: BeautifulSoup, chart: str) -> list[tuple[str, str, float]]:
    svg = page.select_one(f'svg[data-chart="{chart}"]')
    return [(m["data-series"], m["data-x"], float(m["data-value"])) for m in svg.select(".cmdc-mark")]


def rows(frame: Any, series: str, value: str) -> list[tuple[str, str, float]]:
    return [
        (str(s), str(d)[:10], float(v) if v == v and v is not None else 0.0)
        for s, d, v in zip(frame[series], frame["day"], frame[value].astype("object"), strict=True)
    ]


def test_the_cost_snapshot_draws_one_mark_per_point_of_each_frame(ws: Workspace, user: User) -> None:
    spend(ws, user)
    dash = CostDashboard(user, days=7, ws=ws, budget_usd="2")
    page = snapshot(dash)
    f = dash.frames
    assert sorted(marks(page, "daily")) == sorted(rows(f["daily"], "model", "cost_usd"))
    assert len(marks(page, "daily")) == len(f["daily"]) == 5
    spent = marks(page, "cumulative")
    assert [x for _, x, _ in spent] == [str(d)[:10] for d in f["cumulative"]["day"]]
    assert spent[-1][2] == pytest.approx(0.95) and len(spent) == 3
    assert float(page.select_one('svg[data-chart="cumulative"] .cmdc-budget')["data-value"]) == 2.0
    t = f["tokens"]
    expected = [
        (s, str(d)[:10], float(v))
        for s, col in (("in", "tokens_in"), ("out", "tokens_out"))
        for d, v in zip(t["day"], t[col], strict=True)
    ]
    assert marks(page, "tokens") == expected and len(expected) == 6  # an "in" and an "out" bar a day
    top = marks(page, "top")
    assert [(s, x) for s, x, _ in top] == [("sessions", "Docs <draft>"), ("sessions", "Refactor")] + [
        ("cells", str(c)) for c in f["top_cells"]["notebook_cell"]
    ]
    daily = page.select_one('svg[data-chart="daily"]')
    texts = [t.text for t in daily.select("text")]
    assert texts[0] == "Daily cost (USD)" and "USD" in texts and "day" in texts  # title, axis titles
    legend = [t.text for t in daily.select(".cmdc-legend-item text")]
    assert legend == sorted({m for m in f["daily"]["model"]})  # a legend entry per series
    assert "5 requests · $0.9500 · budget $2 · 1 unpriced" in page.get_text()
    assert repr(dash) == "<CostDashboard requests=5 days=7>"
    dash.by.value = "provider"  # the snapshot follows the toggle
    assert {s for s, _, _ in marks(snapshot(dash), "daily")} == {"openai", "anthropic"}
    dash.since.value = dash.until.value = dt.date(2020, 1, 1)
    assert all(not marks(snapshot(dash), c) for c in ("daily", "cumulative", "tokens", "top"))
    assert "no data in this range" in snapshot(dash).get_text()


def test_the_chart_colours_read_on_a_light_and_a_dark_page() -> None:
    def luminance(colour: str) -> float:
        def channel(c: float) -> float:
            return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

        r, g, b = (channel(int(colour[i : i + 2], 16) / 255) for i in (1, 3, 5))
        return 0.2126 * r + 0.7152 * g + 0.0722 * b

    for colour in PALETTE:
        for page in ("#ffffff", "#111111", "#212121"):  # white; JupyterLab Dark's two surfaces
            a, b = sorted((luminance(colour), luminance(page)))
            assert (b + 0.05) / (a + 0.05) >= 3.0, (colour, page)  # WCAG non-text contrast


async def test_the_plan_snapshot_is_its_checklist() -> None:
    script = Script(
        [
            "# Plan: notes\n- [ ] Collect <changes>\n- [ ] Write notes",
            Turn(tool_calls=[call("update_plan", step="1", status="completed", note="12 found")]),
            "All done.",
        ]
    )
    agent = Agent(model=script.model, plugins=[Planning(require_approval=True)])
    view = PlanView(agent)
    assert "none yet" in snapshot(view).get_text() and repr(view) == "<PlanView no plan>"
    handle = agent.prompt("Please prepare the release notes and publish them.")
    await until(lambda: view.decision.children)
    page = snapshot(view)
    assert [s.get_text() for s in page.select(".cmdc-step")] == ["○1. Collect <changes>", "○2. Write notes"]
    assert "waiting for your approval" in page.get_text() and page.find("textarea") is None
    view.approve()
    await handle
    page = snapshot(view)
    assert [s["class"][1] for s in page.select(".cmdc-step")] == ["completed", "pending"]
    assert "12 found" in page.get_text() and repr(view) == "<PlanView 1/2 done>"
    bar = page.select_one("progress")
    assert (bar["value"], bar["max"]) == ("1", "2")


async def test_the_queue_snapshot_lists_what_waits(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="notes", ws=ws)
    agent = Agent(
        model=Script([Turn(tool_calls=[call("save_note", title="<b>plan</b>")]), "ok"]).model,
        tools=[save_note],
        session=s,
        ws=ws,
    )
    queue = ApprovalQueue(user, ws=ws)
    handle = agent.prompt("save it")
    await until(lambda: queue.items)
    [item] = snapshot(queue).select(".cmdc-queue-item")
    assert "Approve tool: save_note" in item.get_text() and "<b>plan</b>" in item.select_one("pre").text
    assert item.find("b", string="plan") is None  # the payload is text, not markup
    await asyncio.to_thread(approvals.deny_item, queue.items[0], user, note="no", ws=ws)
    await asyncio.wait_for(handle, CEILING_S)
    await until(lambda: not queue.items)
    page = snapshot(queue)
    assert not page.select(".cmdc-queue-item") and "Nothing is waiting for you." in page.get_text()
    assert repr(queue) == "<ApprovalQueue pending=0>"


async def test_the_index_and_activity_snapshots(ws: Workspace, user: User) -> None:
    builder = IndexBuilder(
        rag.create_index(user, "notes", ws=ws), ws=ws, texts=["alpha beta <gamma>", "delta epsilon"]
    )
    await asyncio.wait_for(builder.ingest(), CEILING_S)
    await asyncio.sleep(0)
    builder.search("alpha")
    page = snapshot(builder)
    assert page.select_one(".cmdc-title").text == "notes" and "2 documents" in page.get_text()
    assert page.select_one("progress")["value"] == "2" and "2/2 documents" in page.get_text()
    hits = page.select(".cmdc-hit")
    assert len(hits) == len(builder.hits) >= 1 and "<gamma>" in hits[0].get_text()
    assert "search alpha" in page.select_one(".cmdc-snap-field").get_text()
    bob = accounts.create_user("bob@example.com", name="Bob <ops>", ws=ws)
    sessions.create_session(bob, name="x", ws=ws)
    feed = ActivityFeed(limit=10, ws=ws)
    page = snapshot(feed)
    assert len(page.select("tr")) == len(feed.entries) == 2 and "Bob <ops>" in page.get_text()


@pytest.fixture
def shell() -> InteractiveShell:
    """An in-process IPython shell: `display()` goes through the widget's own display code, and what
    it publishes is captured (IPython's capturing publisher)."""
    return InteractiveShell.instance()


async def test_the_output_follows_the_widget_until_a_front_end_draws_it(shell: InteractiveShell) -> None:
    words = " ".join(f"word{i}" for i in range(300))
    script = Script([Turn(words, chunk_delay=0.002), "second", "third", "fourth"])
    chat = ChatWidget(Agent(model=script.model))
    with capture_output() as shown:
        display(chat)
        [first] = shown.outputs
        display_id = first.transient["display_id"]

        def ours() -> list[Any]:
            """This chat's outputs: widgets that earlier tests left in this process publish too."""
            return [o for o in shown.outputs if o.transient.get("display_id") == display_id]

        assert set(first.data) == {VIEW, "text/html", "text/plain"} and not first.update
        started = time.perf_counter()
        await chat.send("Say a lot")
        took = time.perf_counter() - started
        await until(lambda: "word299" in ours()[-1].data["text/html"])
        updates = ours()[1:]
        assert all(u.update and u.transient["display_id"] == display_id for u in updates)
        assert 1 <= len(updates) <= took / SNAPSHOT_S + 3  # a few a second, never one per token
        # a front end draws the live view: the output is left alone (an update would rebuild the view)
        probe = chat._view_probe()
        probe._handle_custom_msg({"view": "shown", "id": "lab"}, [])
        held = len(ours())
        await chat.send("and more")
        await asyncio.sleep(SNAPSHOT_S * 3)
        assert len(ours()) == held
        probe._handle_custom_msg({"view": "gone", "id": "lab"}, [])  # nobody draws it now: caught up
        await until(lambda: len(ours()) == held + 1)
        assert "second" in ours()[-1].data["text/html"]
        # what changed during a cell is published when the cell ends (a run may end with that cell)
        await chat.send("once more")
        shell.run_cell("pass")
        assert "third" in ours()[-1].data["text/html"]
        await chat.send("last")
        chat.close()  # the output keeps the last picture, without the live view
        last = ours()[-1]
        assert (
            last.update
            and set(last.data) == {"text/html", "text/plain"}
            and "fourth" in last.data["text/html"]
        )


async def test_a_click_in_a_live_view_stops_updates_even_when_its_probe_never_reported() -> None:
    """anywidget drops a model that takes over 2 s to start, so on a busy page the view probe may never
    say "shown"; an output update would then rebuild the live view under the person using it. A click
    that reaches the kernel proves a live view is there."""
    chat = ChatWidget(Agent(model=Script(["first", "second"]).model))
    with capture_output() as shown:
        display(chat)
        display_id = shown.outputs[0].transient["display_id"]

        def ours() -> list[Any]:
            return [o for o in shown.outputs if o.transient.get("display_id") == display_id]

        chat.input.value = "hello"
        chat.send_button.click()  # what a click in JupyterLab runs (no probe message came)
        await until(lambda: not chat.agent.busy and "first" in chat._snapshot_page())
        await asyncio.sleep(SNAPSHOT_S * 3)
        assert len(ours()) == 1  # the live view was left alone
        probe = chat._view_probe()
        probe._handle_custom_msg({"view": "shown", "id": "lab"}, [])
        probe._handle_custom_msg({"view": "gone", "id": "lab"}, [])  # the probes report again: caught up
        await until(lambda: len(ours()) == 2)
        assert "first" in ours()[-1].data["text/html"]
        chat.close()


NOTEBOOK = [
    """import asyncio, datetime as dt, os, tempfile, uuid
os.environ["CMDC_NB_HOME"] = tempfile.mkdtemp()
import cmdc_nb
from cmdc_nb import accounts, costs, rag, sessions, workflows as wf
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.plugins import Planning
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.widgets import ActivityFeed, ApprovalQueue, ChatWidget, CostDashboard, DagView, IndexBuilder, PlanView
ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")""",
    """@tool(requires_approval=True)
def save_note(title: str) -> str:
    "Save a note."
    return f"saved {title}"

script = Script([Turn("Saving <script>alert(1)</script>.", tool_calls=[call("save_note", title="list")]),
                 "Saved the note."])
agent = Agent(model=script.model, tools=[save_note], session=sessions.create_session(me, name="Notes"))
chat = ChatWidget(agent)
handle = chat.send("save my list")
chat""",
    """queue = ApprovalQueue(me)
queue""",
    """while not agent.status()["pending_approvals"]:
    await asyncio.sleep(0.02)
chat.approve(agent.status()["pending_approvals"][0]["ref"])
print(await handle)""",
    """planner = Script(["# Plan: notes\\n- [ ] Collect\\n- [ ] Write",
                  Turn(tool_calls=[call("update_plan", step="1", status="completed")]), "Done."])
pagent = Agent(model=planner.model, plugins=[Planning()])
plan = PlanView(pagent)
plan""",
    """await pagent.prompt("Please prepare the release notes and publish them.")""",
    """flow = wf.create_workflow(me, {"name": "Release", "steps": [
    wf.step("build", "transform", value="ok"),
    wf.step("ship", "approval", depends_on="build", title="Ship?"),
    wf.step("announce", "transform", depends_on="ship", value="out")]})
run = await wf.arun_workflow(flow, stop_when_blocked=True)
view = DagView(run)
view""",
    """wf.approve_workflow_step(run, "ship")
run = await wf.execute_workflow_run(run)
view.refresh()""",
    """builder = IndexBuilder(rag.create_index(me, "notes"), texts=["alpha beta", "gamma delta"])
await builder.ingest()
builder.search("alpha")
builder""",
    """feed = ActivityFeed(user=me, limit=5)
feed""",
    """now = dt.datetime.now(dt.UTC)
for day, cost in enumerate(["0.10", "0.20", "0.40"]):
    costs.record_cost(me, source_type="agent_call", source_id=uuid.uuid4(), provider="openai",
                      model="openai/gpt-4o-mini", tokens_in=100, tokens_out=10, cost_usd=cost,
                      incurred_at=now - dt.timedelta(days=day))
dash = CostDashboard(me, days=7)
dash""",
    """costs.record_cost(me, source_type="agent_call", source_id=uuid.uuid4(), provider="anthropic",
                  model="anthropic/claude-sonnet-4-5", tokens_in=100, tokens_out=10, cost_usd="0.80")
dash.refresh();""",
]


def test_a_saved_notebook_shows_every_snapshot_in_nbconvert_html(tmp_path: Path) -> None:
    import nbclient
    from nbconvert import HTMLExporter

    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(c) for c in NOTEBOOK]
    nbclient.NotebookClient(
        nb, timeout=CEILING_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    errors = [o for c in nb.cells for o in c.outputs if o.output_type == "error"]
    assert not errors, errors
    with_state = nbformat.from_dict(nb)
    del nb.metadata["widgets"]  # as the committed notebooks are saved: no widget state
    for template in ("lab", "classic"):
        html, _ = HTMLExporter(template_name=template).from_notebook_node(nb)
        page = BeautifulSoup(html, "html.parser")
        found = {d["data-cmdc-widget"]: d for d in page.select("div.cmdc-snapshot")}
        assert set(found) == {
            "ChatWidget", "ApprovalQueue", "PlanView", "DagView", "IndexBuilder", "ActivityFeed", "CostDashboard",
        }  # fmt: skip
        text = page.get_text()
        assert "<ChatWidget" not in text and "<CostDashboard" not in text and "<DagView" not in text
        assert not page.select('script[type="application/vnd.jupyter.widget-view+json"]')
        # each snapshot is the widget's last picture, not the one it was displayed with
        chat = found["ChatWidget"]
        assert "Saved the note." in chat.get_text() and chat.select_one(".cmdc-tool.ok") is not None
        assert chat.find("script") is None and "<script>alert(1)</script>" in chat.get_text()
        assert "Nothing is waiting for you." in found["ApprovalQueue"].get_text()
        assert [s["class"][1] for s in found["PlanView"].select(".cmdc-step")] == ["completed", "pending"]
        steps = {g["data-step"]: g["data-status"] for g in found["DagView"].select("svg g.cmdc-dag-node")}
        assert steps == {"build": "completed", "ship": "completed", "announce": "completed"}
        assert found["IndexBuilder"].select(".cmdc-hit") and found["ActivityFeed"].select("tr")
        daily = found["CostDashboard"].select('svg[data-chart="daily"] .cmdc-mark')
        series = [m["data-series"] for m in daily]  # the last cell's record is drawn: the last picture
        assert series.count("openai/gpt-4o-mini") == 3 and series.count("anthropic/claude-sonnet-4-5") == 1
    # with the widget state saved (`cmdc-nb tour`), nbconvert draws the live views instead
    html, _ = HTMLExporter().from_notebook_node(with_state)
    assert (
        len(
            BeautifulSoup(html, "html.parser").select(
                'script[type="application/vnd.jupyter.widget-view+json"]'
            )
        )
        == 7
    )
