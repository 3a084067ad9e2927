"""The IPython magics, in an in-process IPython shell."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn
from cmdc_nb.widgets import ApprovalQueue, ChatWidget


@pytest.fixture
def ip() -> Any:
    shell = InteractiveShell.instance()
    shell.run_line_magic("load_ext", "cmdc_nb")
    yield shell
    shell.user_ns.clear()


async def test_chat_sends_the_cell_to_the_newest_agent_and_shows_its_chat(ip: Any, capsys: Any) -> None:
    first = Script(["from the first"])
    second = Script(["from the second"])
    ip.user_ns["a"] = Agent(model=first.model, name="first")
    ip.user_ns["b"] = Agent(model=second.model, name="second")
    chat = ip.run_cell_magic("chat", "", "hello")
    assert isinstance(chat, ChatWidget) and chat.agent is ip.user_ns["b"]
    assert await chat.last_handle == "from the second"
    again = ip.run_cell_magic("chat", "a", "hi")
    assert again.agent is ip.user_ns["a"] and await again.last_handle == "from the first"
    second.turns.append(Turn("again"))
    assert ip.run_cell_magic("chat", "b", "more") is chat  # one chat per agent
    assert await chat.last_handle == "again"
    ip.run_line_magic("cmdc", "status")
    out = capsys.readouterr().out
    assert "first" in out and "second" in out and "idle" in out
    ip.run_line_magic("cmdc", "use a")
    first.turns.append(Turn("a again"))
    assert ip.run_cell_magic("chat", "", "and you?").agent is ip.user_ns["a"]
    with pytest.raises(ValueError, match="unknown %cmdc command"):
        ip.run_line_magic("cmdc", "dance")


async def test_cmdc_cost_and_approvals(ip: Any, ws: Any, user: Any, capsys: Any) -> None:
    from cmdc_nb import sessions

    @tool(requires_approval=True)
    def ship() -> str:
        "Ship."
        return "shipped"

    s = sessions.create_session(user, name="m", ws=ws)
    script = Script([Turn("ok", usage=(100, 10))])
    agent = Agent(model=script.model, session=s, ws=ws, tools=[ship], name="costly")
    ip.user_ns["agent"] = agent
    await agent.prompt("hi")
    ip.run_line_magic("cmdc", "cost")
    out = capsys.readouterr().out
    assert "costly" in out and "100 in" in out and "today" in out
    queue = ip.run_line_magic("cmdc", "approvals")
    assert isinstance(queue, ApprovalQueue) and queue.items == []
