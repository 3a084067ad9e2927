"""cmdc_nb's agent loop: a scripted (zero-latency) model through litellm, one trivial tool per round,
stored to a session on SQLite (calls, tool uses, messages, costs, events) — or kept in memory.

Run with the project's venv. Prints one JSON line: {"ms_per_round": …}.
"""

import asyncio
import json
import os
import sys
import tempfile
import time

os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())

import cmdc_nb
from cmdc_nb import accounts, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call


@tool
def noop(i: int) -> int:
    """Return i."""
    return i


async def run(rounds: int, store: bool, ws, user) -> float:
    script = Script(
        [
            *(Turn(tool_calls=[call("noop", i=k)], usage=(10, 2)) for k in range(rounds)),
            Turn("done", usage=(10, 1)),
        ]
    )
    session = sessions.create_session(user, name="bench", ws=ws) if store else None
    agent = Agent(
        model=script.model,
        tools=[noop],
        session=session,
        ws=ws,
        max_turns=rounds + 5,
        max_identical_tool_calls=rounds + 5,
    )
    t = time.perf_counter()
    reply = await agent.prompt("go")
    elapsed = time.perf_counter() - t
    assert reply == "done"
    return elapsed / rounds * 1000


async def main(rounds: int, store: bool) -> None:
    ws = cmdc_nb.connect(f"sqlite:///{tempfile.mkdtemp()}/bench.db")
    user = accounts.create_user("bench@example.com", ws=ws)
    await run(10, store, ws, user)
    print(json.dumps({"ms_per_round": await run(rounds, store, ws, user)}))


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), sys.argv[2] == "sqlite"))
