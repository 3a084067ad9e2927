"""LangGraph's prebuilt tool-calling agent, a zero-latency fake chat model, the SQLite checkpointer.

Run in its own venv (bench/.cache/langgraph). Prints one JSON line: {"ms_per_round": …}.
Argument: rounds. One warm-up run of 10 rounds first (not timed).
"""

import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path

from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage
from langchain_core.tools import tool
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.prebuilt import create_react_agent


@tool
def noop(i: int) -> int:
    """Return i."""
    return i


class ToolFake(FakeMessagesListChatModel):
    def bind_tools(self, tools, **kwargs):  # the fake needs no schema
        return self


def run(rounds: int, checkpoint: bool) -> float:
    replies = [
        AIMessage(content="", tool_calls=[{"name": "noop", "args": {"i": k}, "id": f"c{k}"}])
        for k in range(rounds)
    ]
    model = ToolFake(responses=[*replies, AIMessage(content="done")])
    saver = None
    if checkpoint:
        path = Path(tempfile.mkdtemp()) / "lg.db"
        saver = SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    agent = create_react_agent(model, [noop], checkpointer=saver)
    config = {"configurable": {"thread_id": "bench"}, "recursion_limit": 4 * rounds + 10}
    t = time.perf_counter()
    out = agent.invoke({"messages": [("user", "go")]}, config=config)
    elapsed = time.perf_counter() - t
    assert out["messages"][-1].content == "done"
    return elapsed / rounds * 1000


if __name__ == "__main__":
    rounds = int(sys.argv[1])
    checkpoint = sys.argv[2] == "sqlite"
    run(10, checkpoint)
    print(json.dumps({"ms_per_round": run(rounds, checkpoint)}))
