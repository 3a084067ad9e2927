"""The chat widget in real JupyterLab, in headless Chromium: the notebook runs, a tool call waits for
approval while the agent's turn is running, a click on Approve reaches the kernel, the turn finishes.
Screenshots: ci-artifacts/screenshots/chat-*.png."""

from __future__ import annotations

from pathlib import Path

from browser import WAIT_MS, browser_page, jupyterlab, run_all, screenshot, write_notebook

CHAT = '''
import os, tempfile
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.widgets import ChatWidget

@tool(requires_approval=True)
def deploy(target: str) -> str:
    """Deploy the current build."""
    return f"deployed to {target}"

script = Script([
    Turn("I will deploy the **current build** to `prod` once you approve.", tool_calls=[call("deploy", target="prod")], chunk_delay=0.02),
    Turn("Deployed. All green:\\n\\n```bash\\n$ curl -s https://example.invalid/health\\nok\\n```", chunk_delay=0.02),
])
agent = Agent(model=script.model, tools=[deploy], name="Release bot")
chat = ChatWidget(agent, models=["openai/gpt-4o-mini", "anthropic/claude-sonnet-4-5"], height="360px")
handle = chat.send("Ship the current build to prod")
chat
'''
CHECK = """
print("turn state:", agent.state.value, "| reply:", handle.result() if handle.done() else "pending")
"""


def test_approve_in_the_browser_while_the_turn_runs(tmp_path: Path) -> None:
    write_notebook(tmp_path / "chat.ipynb", [CHAT])
    with jupyterlab(tmp_path) as url, browser_page() as page:
        run_all(page, f"{url}/lab/tree/chat.ipynb")
        page.wait_for_selector("button.jupyter-button:has-text('Approve')", timeout=WAIT_MS)
        assert (
            page.locator(".cmdc-tool.waiting .cmdc-badge:has-text('waiting for your approval')").count() == 1
        )
        screenshot(page, "chat-waiting-for-approval.png")
        page.click("button.jupyter-button:has-text('Approve')")
        page.wait_for_selector("text=All green", timeout=WAIT_MS)
        page.wait_for_selector("text=ready", timeout=WAIT_MS)
        assert page.locator("button.jupyter-button:has-text('Approve')").count() == 0
        assert page.locator(".cmdc-tool.ok").count() == 1
        screenshot(page, "chat-turn-finished.png")


QUEUE = '''
import os, tempfile
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
import cmdc_nb
from cmdc_nb import accounts, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.widgets import ApprovalQueue, PlanView
from cmdc_nb.plugins import Planning

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")

@tool(requires_approval=True, side_effects=("network",))
def publish(channel: str, text: str) -> str:
    """Publish a post."""
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
'''
QUEUE_2 = "ApprovalQueue(me)"


def test_plan_view_and_approval_queue_in_the_browser(tmp_path: Path) -> None:
    write_notebook(tmp_path / "queue.ipynb", [QUEUE, QUEUE_2])
    with jupyterlab(tmp_path) as url, browser_page() as page:
        run_all(page, f"{url}/lab/tree/queue.ipynb")
        page.wait_for_selector("button.jupyter-button:has-text('Approve plan')", timeout=WAIT_MS)
        screenshot(page, "plan-view-proposed.png")
        page.click("button.jupyter-button:has-text('Approve plan')")
        # the agent goes on, then its publish call waits in the queue (which updates itself)
        page.wait_for_selector(".cmdc-queue-item button.jupyter-button:has-text('Approve')", timeout=WAIT_MS)
        assert page.locator("text=Approve tool: publish").count() == 1
        screenshot(page, "approval-queue-pending.png")
        page.click(".cmdc-queue-item button.jupyter-button:has-text('Approve')")
        page.wait_for_selector("text=Nothing is waiting for you.", timeout=WAIT_MS)
        page.wait_for_selector("text=2/2 done approved", timeout=WAIT_MS)
        screenshot(page, "plan-view-finished.png")


COSTS = """
import os, tempfile, uuid, datetime as dt, random
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
import cmdc_nb
from cmdc_nb import accounts, budgets, costs, sessions
from cmdc_nb.widgets import CostDashboard

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")
rng = random.Random(7)
names = ["Refactor the parser", "Write the docs", "Triage issues"]
chats = [sessions.create_session(me, name=n) for n in names]
models = [("openai", "openai/gpt-4o-mini", 0.002), ("anthropic", "anthropic/claude-sonnet-4-5", 0.02), ("openai", "openai/gpt-4o", 0.01)]
now = dt.datetime.now(dt.UTC)
for day in range(21):
    for _ in range(rng.randint(3, 9)):
        provider, model, unit = rng.choice(models)
        costs.record_cost(me, source_type="agent_call", source_id=uuid.uuid4(), provider=provider, model=model,
                          tokens_in=rng.randint(500, 5000), tokens_out=rng.randint(50, 800),
                          cost_usd=f"{unit * rng.uniform(1, 6):.6f}", session=rng.choice(chats),
                          incurred_at=now - dt.timedelta(days=day, hours=rng.randint(0, 8)),
                          notebook_cell=f"In[{rng.randint(1, 12)}]")
budgets.create_budget(name="November", limit_usd="2", period="monthly", user=me, hard_limit=False)
CostDashboard(me, days=21)
"""


def test_cost_dashboard_renders_its_charts_in_the_browser(tmp_path: Path) -> None:
    write_notebook(tmp_path / "costs.ipynb", [COSTS])
    with jupyterlab(tmp_path) as url, browser_page(height=1200) as page:
        run_all(page, f"{url}/lab/tree/costs.ipynb")
        page.wait_for_selector(".js-plotly-plot", timeout=WAIT_MS)
        page.wait_for_function(
            "() => document.querySelectorAll('.js-plotly-plot').length >= 4", timeout=WAIT_MS
        )
        assert page.locator("text=Daily cost (USD)").count() >= 1
        page.locator(".cmdc-costs").first.scroll_into_view_if_needed()
        screenshot(page, "cost-dashboard.png")


DAG = """
import os, tempfile
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
import cmdc_nb
from cmdc_nb import accounts
from cmdc_nb import workflows as wf
from cmdc_nb.widgets import DagView

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")
flow = wf.create_workflow(me, {
    "name": "Release v2",
    "input_schema": {"type": "object", "properties": {"version": {"type": "string", "default": "2.0.0"}}},
    "steps": [
        wf.step("build", "transform", name="Build", value="built {{ input.version }}"),
        wf.step("unit", "transform", name="Unit tests", depends_on="build", value="412 passed"),
        wf.step("e2e", "transform", name="E2E tests", depends_on="build", value="38 passed"),
        wf.step("docs", "transform", name="Docs", depends_on="build", value="docs built"),
        wf.step("ship", "approval", name="Ship it?", depends_on=["unit", "e2e", "docs"],
                title="Ship {{ input.version }} to production?", payload={"version": "{{ input.version }}"}),
        wf.step("deploy", "transform", name="Deploy", depends_on="ship", value="deployed"),
        wf.step("announce", "transform", name="Announce", depends_on="deploy", value="announced"),
    ]})
DagView(flow)
"""


def test_dag_view_starts_a_run_and_approves_its_gate_in_the_browser(tmp_path: Path) -> None:
    write_notebook(tmp_path / "dag.ipynb", [DAG])
    with jupyterlab(tmp_path) as url, browser_page() as page:
        run_all(page, f"{url}/lab/tree/dag.ipynb")
        page.wait_for_selector("g.cmdc-dag-node[data-step='ship']", timeout=WAIT_MS)
        page.click("button.jupyter-button:has-text('Start run')")
        page.wait_for_selector(
            "g.cmdc-dag-node[data-step='ship'][data-status='waiting_approval']", timeout=WAIT_MS
        )
        page.click("g.cmdc-dag-node[data-step='ship']")
        page.wait_for_selector("text=Ship 2.0.0 to production?", timeout=WAIT_MS)
        screenshot(page, "dag-view-waiting-for-approval.png")
        page.click(".cmdc-dagview button.jupyter-button:has-text('Approve')")
        page.wait_for_selector(
            "g.cmdc-dag-node[data-step='announce'][data-status='completed']", timeout=WAIT_MS
        )
        assert page.locator("g.cmdc-dag-node[data-status='completed']").count() == 7
        page.click("g.cmdc-dag-node[data-step='build']")
        page.wait_for_selector("text=built 2.0.0", timeout=WAIT_MS)
        screenshot(page, "dag-view-finished.png")


INDEX = """
import os, tempfile, pathlib
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
import cmdc_nb
from cmdc_nb import accounts, rag
from cmdc_nb.widgets import IndexBuilder

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")
repo = pathlib.Path(tempfile.mkdtemp()) / "payments"
(repo / "payments").mkdir(parents=True)
for name, doc in [("refunds", "Issue a refund for a captured charge, in full or in part."),
                  ("charges", "Capture an authorised charge and record the fee."),
                  ("webhooks", "Verify the signature of an incoming webhook event."),
                  ("currency", "Convert an amount between currencies with today's rate.")]:
    (repo / "payments" / f"{name}.py").write_text(
        f'def {name}(request):\\n    \\"\\"\\"{doc}\\"\\"\\"\\n    return handle_{name}(request)\\n')
(repo / "README.md").write_text("# Payments\\n\\nRefunds, charges and webhooks for the shop.\\n")
idx = rag.create_index(me, "payments service", source_type="local_repo",
                       source_config={"path": str(repo), "include": ["*.py", "*.md"]}, chunk_strategy="code_aware")
IndexBuilder(idx)
"""


def test_index_builder_ingests_and_searches_in_the_browser(tmp_path: Path) -> None:
    write_notebook(tmp_path / "index.ipynb", [INDEX])
    with jupyterlab(tmp_path) as url, browser_page() as page:
        run_all(page, f"{url}/lab/tree/index.ipynb")
        page.wait_for_selector("button.jupyter-button:has-text('Ingest now')", timeout=WAIT_MS)
        page.click("button.jupyter-button:has-text('Ingest now')")
        page.wait_for_selector(".cmdc-index-builder .cmdc-badge.ok", timeout=WAIT_MS)
        page.wait_for_selector("text=5 added", timeout=WAIT_MS)
        box = page.locator(".cmdc-index-builder input[placeholder='Search the index…']")
        box.fill("refund a captured charge")  # the hashing embedder matches words, not meaning
        box.press("Enter")
        page.wait_for_selector(".cmdc-hit", timeout=WAIT_MS)
        assert page.locator(".cmdc-hit").first.inner_text().startswith("1. payments/refunds.py")
        screenshot(page, "index-builder-search.png")
