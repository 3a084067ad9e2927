"""The agent inside a real IPython kernel: a sync cell starts it and returns, the agent runs on the
kernel's own event loop between cells, another cell approves, a later cell awaits the reply."""

from __future__ import annotations

from pathlib import Path

import nbclient
import nbformat
from waiting import CEILING_S

CELLS = [
    """
import asyncio
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call

@tool(requires_approval=True)
def deploy(target: str) -> str:
    "Deploy the build."
    return f"deployed to {target}"

script = Script([Turn("Deploying.", tool_calls=[call("deploy", target="prod")]), "Done."])
agent = Agent(model=script.model, tools=[deploy])
handle = agent.prompt("ship it")  # a plain (sync) cell: returns at once
print(handle.done())
""",
    """
for _ in range(600):  # the agent works on the kernel's loop while this cell waits
    if agent.status()["pending_approvals"]:
        break
    await asyncio.sleep(0.05)
status = agent.status()
print(status["state"], [p["tool"] for p in status["pending_approvals"]])
""",
    """
agent.approve(agent.status()["pending_approvals"][0]["ref"])  # from another cell
print(repr(await handle))
""",
    """
try:
    agent.run("this would block the kernel")
except Exception as exc:
    print(type(exc).__name__)
""",
]


def test_an_agent_runs_on_the_notebook_kernels_loop(tmp_path: Path) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(c.strip()) for c in CELLS]
    nbclient.NotebookClient(
        nb, timeout=CEILING_S, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
    ).execute()
    outputs = [
        "".join(o.get("text", "") for o in cell.outputs if o.get("name") == "stdout").strip()
        for cell in nb.cells
    ]
    assert outputs == ["False", "executing_tools ['deploy']", "'Deploying.\\n\\nDone.'", "AgentError"]
