"""pydantic-ai with a FunctionModel (zero latency): one run of N rounds (a tool call each, then a final
answer), its message history saved to SQLite after the run (as its docs suggest persisting history).

Run in its own venv (bench/.cache/pydantic-ai). Prints one JSON line: {"ms_per_round": …}.
"""

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from pydantic_ai import Agent
from pydantic_ai.messages import (
    ModelMessagesTypeAdapter,
    ModelResponse,
    TextPart,
    ToolCallPart,
    ToolReturnPart,
)
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits

ROUNDS = [0]


def respond(messages, info: AgentInfo) -> ModelResponse:
    done = sum(isinstance(p, ToolReturnPart) for m in messages for p in m.parts)
    if done >= ROUNDS[0]:
        return ModelResponse(parts=[TextPart("done")])
    return ModelResponse(parts=[ToolCallPart("noop", {"i": done})])


agent = Agent(FunctionModel(respond))


@agent.tool_plain
def noop(i: int) -> int:
    """Return i."""
    return i


def run(rounds: int) -> float:
    ROUNDS[0] = rounds
    db = sqlite3.connect(Path(tempfile.mkdtemp()) / "pa.db")
    db.execute("create table history (id integer primary key, messages blob)")
    t = time.perf_counter()
    result = agent.run_sync("go", usage_limits=UsageLimits(request_limit=rounds + 5))
    db.execute(
        "insert into history (messages) values (?)",
        (ModelMessagesTypeAdapter.dump_json(result.all_messages()),),
    )
    db.commit()
    elapsed = time.perf_counter() - t
    assert result.output == "done"
    return elapsed / rounds * 1000


if __name__ == "__main__":
    rounds = int(sys.argv[1])
    run(10)
    print(json.dumps({"ms_per_round": run(rounds)}))
