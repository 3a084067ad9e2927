"""The child of the stored-round crash test: an agent looping ROUNDS rounds of one tool call each
(the fast path: each round's call, cost, messages and tool use in one write before the tool runs, its
end and result message in one after), until the parent SIGKILLs it.

`python tests/support/round_children.py <db-url> <home> <session-id> <effects-log>`"""

from __future__ import annotations

import asyncio
import sys
import time

import cmdc_nb
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call

ROUNDS = 60
EFFECTS = ""


@tool
def tick(k: int) -> str:
    """A side effect that must not happen twice."""
    with open(EFFECTS, "a", encoding="utf-8") as f:
        f.write(f"tick {k}\n")
    time.sleep(0.01)
    return f"ticked {k}"


def script() -> Script:
    return Script(
        [*(Turn(tool_calls=[call("tick", k=k, id=f"t{k}")], usage=(10, 2)) for k in range(ROUNDS)), "Done."]
    )


async def main(url: str, home: str, session_id: str) -> None:
    ws = cmdc_nb.connect(url, home=home, migrate=False)
    agent = Agent(model=script().model, tools=[tick], session=session_id, ws=ws, max_turns=ROUNDS + 5,
                  max_identical_tool_calls=ROUNDS + 5)  # fmt: skip
    print("READY", flush=True)
    await agent.prompt("tick")
    print("IDLE", flush=True)
    await asyncio.sleep(3600)


if __name__ == "__main__":
    EFFECTS = sys.argv[4]
    asyncio.run(main(*sys.argv[1:4]))
