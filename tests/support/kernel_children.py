"""A kernel in another process, for the cross-process approval test.

`python tests/support/kernel_children.py <db-url> <home> <session-id>` runs an agent whose tool needs approval,
prints `WAITING <tool-use-id>` while it waits, and `REPLY <text>` when the turn ends."""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from waiting import CEILING_S

import cmdc_nb
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call


@tool(requires_approval=True, side_effects=("network",))
def deploy(target: str) -> str:
    """Deploy the build."""
    return f"deployed to {target}"


async def main(url: str, home: str, session_id: str) -> None:
    if os.environ.get("CMDC_TEST_EVENTS_ONLY"):
        # Only the event bridge can tell this agent about the decision: no polling of the database.
        from cmdc_nb.kernel import tool_runner

        tool_runner.DECISION_POLL_S = 3600.0
    ws = cmdc_nb.connect(url, home=home, migrate=False)
    script = Script([Turn(tool_calls=[call("deploy", target="prod")]), "Deployed."], name="remote")
    agent = Agent(model=script.model, tools=[deploy], session=session_id, ws=ws)
    handle = agent.prompt("deploy to prod")
    while not agent.status()["pending_approvals"]:
        await asyncio.sleep(0.02)
    [pending] = agent.status()["pending_approvals"]
    print(f"WAITING {pending['ref']}", flush=True)
    print(f"REPLY {await handle}", flush=True)


def approve_from_here(
    ws: Any, db_url: str, home: str, session: Any, *, events_only: bool = False
) -> tuple[str, str]:
    """For the tests: start this script as "kernel A" waiting for approval on `session`, approve its
    tool call from this process ("kernel B") through the services, and return (tool_use_id, A's output)."""
    import subprocess

    from cmdc_nb import agents, approvals

    env = {**os.environ, **({"CMDC_TEST_EVENTS_ONLY": "1"} if events_only else {})}
    proc = subprocess.Popen(
        [sys.executable, __file__, db_url, str(home), str(session.id)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("WAITING"), (line, proc.stderr.read() if proc.poll() is not None else "")
        tool_use_id = line.split()[1]
        item = agents.get_tool_use(tool_use_id, ws=ws).approval_id
        approvals.approve_item(item, session.user_id, note="from the other kernel", ws=ws)
        out, err = proc.communicate(timeout=CEILING_S)
    finally:
        if proc.poll() is None:
            proc.kill()
    return tool_use_id, out + err[-2000:]


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
