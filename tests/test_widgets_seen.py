"""The panels as a user sees them, in real JupyterLab and headless Chromium (`tests/support/seeing.py`):
the approval queue, plan, index builder and activity feed read at ≥ 4.5:1 and fit their output area in
Light and Dark at 760 and 1280 px and in High Contrast at 1280 px, without a console error.
The cost dashboard draws every point of the frames behind its charts: when a refresh lands while the page
still loads, after a filter change in the browser, and in a second view of the same dashboard.
Screenshots: ci-artifacts/screenshots/<widget>-<light|dark|contrast>-<width>.png."""

from __future__ import annotations

import contextlib
import json
from typing import Any

import pytest
from browser import WAIT_MS
from seeing import LOOKS, Lab, look_name

pytestmark = pytest.mark.xdist_group("browser")

SETUP = """
import os, tempfile
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
import cmdc_nb
from cmdc_nb import accounts
ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")
"""

COSTS = """
import uuid, datetime as dt, random
from cmdc_nb import budgets, costs, sessions
from cmdc_nb.widgets import CostDashboard

rng = random.Random(7)
chats = [sessions.create_session(me, name=n) for n in ["Refactor the parser", "Write the docs", "Triage issues"]]
models = [("openai", "openai/gpt-4o-mini", 0.002), ("anthropic", "anthropic/claude-sonnet-4-5", 0.02),
          ("openai", "openai/gpt-4o", 0.01)]
now = dt.datetime.now(dt.UTC)

def spend(day):
    provider, model, unit = rng.choice(models)
    costs.record_cost(me, source_type="agent_call", source_id=uuid.uuid4(), provider=provider, model=model,
                      tokens_in=rng.randint(500, 5000), tokens_out=rng.randint(50, 800),
                      cost_usd=f"{unit * rng.uniform(1, 6):.6f}", session=rng.choice(chats),
                      incurred_at=now - dt.timedelta(days=day, hours=rng.randint(0, 8)),
                      notebook_cell=f"In[{rng.randint(1, 12)}]")

for day in range(1, 21):
    for _ in range(rng.randint(3, 9)):
        spend(day)
budgets.create_budget(name="November", limit_usd="2", period="monthly", user=me, hard_limit=False)
dash = CostDashboard(me, days=21)
dash
"""
# While the page is still drawing the dashboard, today's spend arrives and the dashboard refreshes.
COSTS_REFRESH = """
for _ in range(4):
    spend(0)
_ = dash.refresh()
"""


# What the kernel expects, printed for the page: the marks by model (shown) and by provider (after the
# toggle is clicked), computed by a second dashboard that is never displayed.
COSTS_EXPECT = """
import contextlib
import json
def marks(frames):
    return {"daily": len(frames["daily"]), "cumulative": len(frames["cumulative"]),
             "tokens": 2 * len(frames["tokens"]), "top": len(frames["top_sessions"]) + len(frames["top_cells"])}
by_provider = CostDashboard(me, days=21, by="provider")
print("EXPECT " + json.dumps({"model": marks(dash.frames), "provider": marks(by_provider.frames),
                              "traces": {"daily": len(dash.daily.data), "cumulative": len(dash.cumulative.data),
                                         "tokens": len(dash.tokens.data), "top": len(dash.top.data)},
                              "provider_traces": len(by_provider.daily.data)}))
by_provider.close()
"""
COSTS_AGAIN = "dash  # a second view of the same dashboard"

# The marks drawn in each chart of each view of the dashboard: every bar and marker on the page, with a size.
_DRAWN_JS = """
() => [...document.querySelectorAll('.cmdc-costs')].map((view) => Object.fromEntries(
  ['daily', 'cumulative', 'tokens', 'top'].map((name) => {
    const svg = view.querySelector('.cmdc-chart-' + name + ' svg');
    if (!svg) return [name, null];
    const marks = [...svg.querySelectorAll('.cmdc-mark')].filter((m) => {
      const box = m.getBoundingClientRect(); return box.width > 0 && box.height > 0; });
    return [name, { points: marks.length, traces: new Set(marks.map((m) => m.dataset.series)).size,
                    lines: svg.querySelectorAll('polyline, line.cmdc-budget').length,
                    title: (svg.querySelector('text') || {}).textContent || '' }];
  })))
"""


def drawn(lab: Lab) -> list[dict[str, Any]]:
    return list(lab.page.evaluate(_DRAWN_JS))


def expected(lab: Lab) -> dict[str, Any]:
    text = lab.page.locator(".jp-OutputArea-output pre:has-text('EXPECT ')").first.inner_text()
    return dict(json.loads(text.split("EXPECT ", 1)[1]))


def wait_for_points(lab: Lab, points: dict[str, int], views: int) -> None:
    """Wait until every view draws `points` (a failure shows what was drawn instead)."""
    want = json.dumps(points, sort_keys=True, separators=(",", ":"))  # as JSON.stringify writes it
    with contextlib.suppress(Exception):  # the assertion below shows what was drawn instead
        lab.page.wait_for_function(
            f"""() => {{ const views = ({_DRAWN_JS})();
                 return views.length === {views} && views.every((v) => JSON.stringify(Object.fromEntries(
                   Object.keys(v).sort().map((k) => [k, v[k] && v[k].points]))) === {want!r}); }}""",
            timeout=WAIT_MS,
        )
    assert [{k: v and v["points"] for k, v in view.items()} for view in drawn(lab)] == [points] * views


def look(lab: Lab, widget: str, selector: str) -> None:
    """In each look (theme and width): no text under 4.5:1, nothing wider than its box; a screenshot of each."""
    for theme, width in LOOKS:
        lab.view(theme, width)
        name = f"{widget}-{look_name(theme, width)}"
        lab.shot(name, selector)
        assert lab.low_contrast(selector) == [], name
        assert lab.overflow(selector) == [], name


def test_the_cost_dashboard_draws_every_point_and_reads_in_both_themes(lab: Lab) -> None:
    lab.console_errors.clear()
    lab.open(
        "costs",
        [SETUP, COSTS, COSTS_REFRESH, COSTS_EXPECT, COSTS_AGAIN],
        done=".jp-OutputArea-output pre:has-text('EXPECT ')",
    )
    want = expected(lab)
    # the refresh that landed while the page loaded is drawn, in both views, titles and all
    wait_for_points(lab, want["model"], views=2)
    for view in drawn(lab):
        traces = {k: v["traces"] for k, v in view.items() if k != "cumulative"}
        assert traces == {k: v for k, v in want["traces"].items() if k != "cumulative"}
        assert view["cumulative"]["lines"] == 2  # spent, and the budget
        assert view["daily"]["title"] == "Daily cost (USD)"
    # a filter changed in the browser redraws both views from the new frames
    lab.page.locator(".cmdc-costs").first.locator("button:has-text('provider')").click()
    wait_for_points(lab, {**want["model"], "daily": want["provider"]["daily"]}, views=2)
    assert {v["daily"]["traces"] for v in drawn(lab)} == {want["provider_traces"]}
    look(lab, "costs", ".cmdc-costs")
    assert lab.console_errors == []


QUEUE = """
from cmdc_nb import sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.widgets import ApprovalQueue, PlanView
from cmdc_nb.plugins import Planning

@tool(requires_approval=True, side_effects=("network",))
def publish(channel: str, text: str) -> str:
    \"\"\"Publish a post.\"\"\"
    return f"published on {channel}"

script = Script([
    "# Plan: announce the release\\n- [ ] Draft the post\\n- [ ] Publish it",
    Turn(tool_calls=[call("update_plan", step="1", status="completed", note="drafted")]),
    Turn(tool_calls=[call("publish", channel="mastodon", text="v2 is out"), call("update_plan", step="2", status="completed")]),
    "Posted.",
])
agent = Agent(model=script.model, tools=[publish], plugins=[Planning(require_approval=True)],
              session=sessions.create_session(me, name="Launch"), name="Announcer")
handle = agent.prompt("Please announce the v2 release on our social channels today.")
PlanView(agent)
"""
QUEUE_2 = "ApprovalQueue(me)"


def test_the_plan_and_the_approval_queue_read_in_both_themes(lab: Lab) -> None:
    lab.console_errors.clear()
    lab.open("queue", [SETUP, QUEUE, QUEUE_2], done="button.jupyter-button:has-text('Approve plan')")
    # the plan waits for approval: its editor and buttons are what a user reads first
    look(lab, "plan-proposed", ".cmdc-plan")
    lab.page.click("button.jupyter-button:has-text('Approve plan')")
    lab.page.wait_for_selector(".cmdc-queue-item button.jupyter-button:has-text('Approve')", timeout=WAIT_MS)
    assert (
        lab.page.locator(".cmdc-approvals .cmdc-badge.cmdc-risk-medium, .cmdc-approvals .cmdc-badge").count()
        >= 1
    )
    # the item says where it comes from: which agent, model and session
    origin = lab.page.locator(".cmdc-queue-item .cmdc-origin").first.inner_text()
    assert "agent Announcer" in origin and "session “Launch”" in origin, origin
    look(lab, "approvals", ".cmdc-approvals")
    # a user edits the call in the form built from the tool's schema, then approves the edit
    item = lab.page.locator(".cmdc-queue-item").first
    item.locator("button:has-text('Edit')").click()
    channel = item.locator(".cmdc-argfield:has-text('channel') input")
    channel.wait_for(timeout=WAIT_MS)
    assert channel.input_value() == "mastodon"
    channel.fill("blog")
    channel.press("Tab")  # ipywidgets' Text syncs its value on change
    item.locator("button:has-text('Approve with edits')").click()
    lab.page.wait_for_selector(".cmdc-plan :text('2/2 done approved')", timeout=WAIT_MS)
    # the run ends after the tool (its reply "Posted."): what the tool did is in the messages then
    published = lab.kernel(
        "await handle; print([m['content'] for m in agent.messages if m['role'] == 'tool'])"
    )
    assert "published on blog" in published and "mastodon" not in published, published
    assert lab.page.locator(".cmdc-plan .cmdc-step.completed").count() == 2
    look(lab, "plan", ".cmdc-plan")
    assert lab.console_errors == []


INDEX = """
import tempfile, pathlib
from cmdc_nb import rag
from cmdc_nb.widgets import IndexBuilder

repo = pathlib.Path(tempfile.mkdtemp()) / "payments"
(repo / "payments").mkdir(parents=True)
for name, doc in [("refunds", "Issue a refund for a captured charge, in full or in part."),
                  ("charges", "Capture an authorised charge and record the fee."),
                  ("webhooks", "Verify the signature of an incoming webhook event.")]:
    (repo / "payments" / f"{name}.py").write_text(
        f'def {name}(request):\\n    \\"\\"\\"{doc}\\"\\"\\"\\n    return handle_{name}(request)\\n')
idx = rag.create_index(me, "payments service", source_type="local_repo",
                       source_config={"path": str(repo), "include": ["*.py"]}, chunk_strategy="code_aware")
builder = IndexBuilder(idx)
builder
"""


def test_the_index_builder_ingests_and_searches_by_clicking_and_reads_in_both_themes(lab: Lab) -> None:
    lab.console_errors.clear()
    lab.open("index", [SETUP, INDEX], done=".cmdc-index-builder button:has-text('Ingest now')")
    lab.page.click(".cmdc-index-builder button:has-text('Ingest now')")
    lab.page.wait_for_selector(".cmdc-index-builder .cmdc-badge.ok", timeout=WAIT_MS)  # ready
    lab.page.wait_for_selector(".cmdc-index-builder :text('3 added')", timeout=WAIT_MS)
    box = lab.page.locator(".cmdc-index-builder input[placeholder='Search the index…']")
    box.fill("refund a captured charge")  # the hashing embedder matches words, not meaning
    box.press("Enter")
    lab.page.wait_for_selector(".cmdc-index-builder .cmdc-hit", timeout=WAIT_MS)
    assert lab.page.locator(".cmdc-hit").first.inner_text().startswith("1. payments/refunds.py")
    assert lab.kernel("print(idx.id == builder.index.id, builder.hits[0].uri)") == "True payments/refunds.py"
    look(lab, "index-builder", ".cmdc-index-builder")
    assert lab.console_errors == []


ACTIVITY = """
from cmdc_nb import presence, sessions
from cmdc_nb.widgets import ActivityFeed

pairing = sessions.create_session(me, name="Pairing")
bob = accounts.create_user("bob@example.com", name="Bob")
presence.join_resource(bob, "session", pairing.id, client_id="bob-laptop")
for text in ["hello", "can you look at the parser?", "sure, on it"]:
    sessions.create_message(pairing, role="user", content=text)
ActivityFeed(session=pairing)
"""


def test_the_activity_feed_reads_in_both_themes(lab: Lab) -> None:
    lab.console_errors.clear()
    lab.open("activity", [SETUP, ACTIVITY], done=".cmdc-activity .cmdc-pill")
    assert lab.page.locator(".cmdc-activity .cmdc-pill").inner_text() == "● Bob"
    assert lab.page.locator(".cmdc-activity tr:has-text('message.create')").count() == 3
    look(lab, "activity", ".cmdc-activity")
    assert lab.console_errors == []
