"""LangGraph's prebuilt tool-calling agent, a zero-latency fake chat model, and its SQLite or PostgreSQL
checkpointer (or none).

Run in its own venv (bench/.cache/langgraph). Prints one JSON line: {"ms_per_round": …}.
Arguments: rounds, then `sqlite`, `postgres` (the server in CMDC_BENCH_PG_URL) or `none`. One warm-up
run of 10 rounds first (not timed).
"""

import json
import os
import re
import sqlite3
import sys
import tempfile
import time
import uuid
from contextlib import ExitStack
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


def saver_for(mode: str, stack: ExitStack):
    if mode == "sqlite":
        path = Path(tempfile.mkdtemp()) / "lg.db"
        return SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    if mode == "postgres":
        from langgraph.checkpoint.postgres import PostgresSaver

        url = re.sub(r"^postgresql\+\w+://", "postgresql://", os.environ["CMDC_BENCH_PG_URL"])
        saver = stack.enter_context(PostgresSaver.from_conn_string(url))
        saver.setup()  # its tables, once (idempotent); each run has its own thread
        return saver
    return None


def run(rounds: int, mode: str) -> float:
    replies = [
        AIMessage(content="", tool_calls=[{"name": "noop", "args": {"i": k}, "id": f"c{k}"}])
        for k in range(rounds)
    ]
    model = ToolFake(responses=[*replies, AIMessage(content="done")])
    with ExitStack() as stack:
        agent = create_react_agent(model, [noop], checkpointer=saver_for(mode, stack))
        config = {"configurable": {"thread_id": uuid.uuid4().hex}, "recursion_limit": 4 * rounds + 10}
        t = time.perf_counter()
        out = agent.invoke({"messages": [("user", "go")]}, config=config)
        elapsed = time.perf_counter() - t
    assert out["messages"][-1].content == "done"
    return elapsed / rounds * 1000


if __name__ == "__main__":
    rounds, mode = int(sys.argv[1]), sys.argv[2]
    run(10, mode)
    print(json.dumps({"ms_per_round": run(rounds, mode)}))
