"""The chat widget in real JupyterLab, in headless Chromium: the notebook runs, a tool call waits for
approval while the agent's turn is running, a click on Approve reaches the kernel, the turn finishes.
Screenshots: ci-artifacts/screenshots/chat-*.png."""

from __future__ import annotations

from pathlib import Path

from browser import browser_page, jupyterlab, run_all, screenshot, write_notebook

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
        page.wait_for_selector("button.jupyter-button:has-text('Approve')", timeout=120_000)
        assert page.locator("text=waiting for approval").count() == 1
        screenshot(page, "chat-waiting-for-approval.png")
        page.click("button.jupyter-button:has-text('Approve')")
        page.wait_for_selector("text=All green", timeout=60_000)
        page.wait_for_selector("text=ready", timeout=10_000)
        assert page.locator("button.jupyter-button:has-text('Approve')").count() == 0
        assert page.locator(".cmdc-tool.ok").count() == 1
        screenshot(page, "chat-turn-finished.png")
