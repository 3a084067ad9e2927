"""The IPython magics, in an in-process IPython shell."""

from __future__ import annotations

from typing import Any

import pytest
from IPython.core.interactiveshell import InteractiveShell

from cmdc_nb.errors import InvalidInputError
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
    # one chat per agent: a later cell sends to it and says where it is
    assert ip.run_cell_magic("chat", "b", "more") is None
    assert "sent to b (second) — the chat is in cell [1]" in capsys.readouterr().out
    assert await chat.last_handle == "again"
    ip.run_line_magic("cmdc", "status")
    out = capsys.readouterr().out
    assert "first" in out and "second" in out and "idle" in out
    ip.run_line_magic("cmdc", "use a")
    first.turns.append(Turn("a again"))
    assert ip.run_cell_magic("chat", "", "and you?") is None  # to a, whose chat is shown above
    assert await again.last_handle == "a again"
    with pytest.raises(InvalidInputError, match="unknown %cmdc command"):
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


async def test_an_agent_has_one_chat_and_a_later_cell_says_where_it_is(ip: Any, capsys: Any) -> None:
    script = Script(["one", "two", "three"])
    ip.user_ns["helper"] = Agent(model=Script(["unused"]).model, name="helper")
    ip.user_ns["writer"] = Agent(model=script.model, name="writer")
    ip.execution_count = 3  # the cell [3] running
    chat = ip.run_cell_magic("chat", "", "first")
    # the newest of several agents was guessed: said in one line, and its chat is shown
    assert capsys.readouterr().out == "%%chat → writer, the newest agent (name another: %%chat <agent>)\n"
    assert isinstance(chat, ChatWidget) and chat.agent is ip.user_ns["writer"]
    assert await chat.last_handle == "one"
    chat.set_state({"_view_count": 1})  # the browser shows it (its front end counts its views)
    ip.execution_count = 4
    # no second copy of the chat: one line saying where it is, and the same chat goes on
    assert ip.run_cell_magic("chat", "writer", "second") is None
    assert capsys.readouterr().out == "sent to writer — the chat is in cell [3]\n"
    assert await chat.last_handle == "two"
    assert [m["content"] for m in ip.user_ns["writer"].messages] == ["first", "one", "second", "two"]
    chat.set_state({"_view_count": 0})  # its output was cleared: no view is left
    ip.execution_count = 5
    assert ip.run_cell_magic("chat", "writer", "third") is chat  # so it is shown again, the same chat
    assert await chat.last_handle == "three" and capsys.readouterr().out == ""


async def test_a_chat_cell_run_before_the_page_drew_the_first_does_not_draw_a_second(
    ip: Any, capsys: Any
) -> None:
    """Run All: the second %%chat cell runs before the browser has drawn (and counted) the first
    cell's chat; it is on its way, so the second cell says where it is instead of drawing another."""
    ip.user_ns["solo"] = Agent(model=Script(["one", "two", "three"]).model)
    ip.execution_count = 3
    chat = ip.run_cell_magic("chat", "", "first")
    assert isinstance(chat, ChatWidget) and chat._view_count == 0  # not drawn yet
    ip.execution_count = 4
    assert ip.run_cell_magic("chat", "", "second") is None
    assert capsys.readouterr().out == "sent to solo — the chat is in cell [3]\n"
    chat.set_state({"_view_count": 1})  # the page draws it
    chat.set_state({"_view_count": 0})  # and its output is cleared
    ip.execution_count = 5
    assert ip.run_cell_magic("chat", "", "third") is chat  # shown again
    await chat.last_handle


async def test_running_the_chat_cell_again_shows_the_chat_again(
    ip: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Kernel:  # what ipykernel tells of the running cell: JupyterLab sends its id
        cell = "cell-a"

        def get_parent(self, channel: str) -> dict[str, Any]:
            return {"metadata": {"cellId": self.cell}}

    kernel = Kernel()
    monkeypatch.setattr(ip, "kernel", kernel, raising=False)
    ip.user_ns["solo"] = Agent(model=Script(["one", "two", "three"]).model)
    chat = ip.run_cell_magic("chat", "", "first")
    assert await chat.last_handle == "one" and capsys.readouterr().out == ""  # one agent: nothing guessed
    chat.set_state({"_view_count": 1})
    # the same cell again: its output (the chat) is being replaced, so the chat comes with the new output
    assert ip.run_cell_magic("chat", "", "second") is chat
    assert await chat.last_handle == "two"
    kernel.cell = "cell-b"
    assert ip.run_cell_magic("chat", "", "third") is None
    assert "sent to solo — the chat is in cell" in capsys.readouterr().out


async def test_cmdc_status_is_a_table_that_follows_the_agents_while_they_run(
    ip: Any, capsys: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import asyncio
    import re
    import time

    from cmdc_nb.widgets._status import StatusTable

    def rows(table: StatusTable) -> dict[str, list[str]]:
        """The table as a reader sees it: a row of cells per agent."""
        found = re.findall(r"<tr>(.*?)</tr>", table.table.value.split("<tbody>")[1])
        cells = [re.findall(r"<td>(.*?)</td>", r) for r in found]
        return {c[0]: c[1:] for c in cells}

    async def until(predicate: Any) -> None:
        deadline = time.monotonic() + 60  # liveness only
        while not predicate():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.005)

    monkeypatch.setattr(ip, "kernel", object(), raising=False)  # a kernel whose front end draws widgets
    script = Script([Turn("still " * 40, chunk_delay=0.005, usage=(120, 30))])
    scout = Agent(model=script.model, name="scout")
    ip.user_ns["scout"] = scout
    table = ip.run_line_magic("cmdc", "status")
    assert isinstance(table, StatusTable) and capsys.readouterr().out == ""
    assert rows(table) == {"scout": ["idle", script.model, "0", "0", "0", "$0"]}
    handle = scout.prompt("go")
    await until(lambda: rows(table)["scout"][0] != "idle")  # redrawn by the agent's events, no cell run
    assert rows(table)["scout"][0] in ("running", "streaming")
    await handle
    await until(lambda: rows(table)["scout"][0] == "idle")
    assert rows(table) == {"scout": ["idle", script.model, "1", "2", "150", "$0"]}
    # an agent made in a later cell joins the table when that cell ends
    ip.user_ns["late"] = Agent(model=Script(["x"]).model)
    ip.events.trigger("post_run_cell", None)
    assert list(rows(table)) == ["scout", "late"]
    assert ip.run_line_magic("cmdc", "status") is table  # one live table, however often it is asked for
    monkeypatch.delattr(ip, "kernel")
    ip.run_line_magic("cmdc", "status")  # no front end: the same table as text
    out = capsys.readouterr().out
    assert out.startswith("scout") and "idle" in out and "turns 1" in out and "tokens 150" in out


async def test_the_cell_named_is_the_one_whose_prompt_shows_the_chat(ip: Any, capsys: Any) -> None:
    """IPython counts a cell before running it: while cell [N] runs, execution_count is N + 1. The line
    a later %%chat cell prints names the cell the user sees the chat in, [N]."""
    ip.init_user_ns()  # the history's names (_oh, _i…), which the other tests' clean-up removed
    ip.user_ns["solo"] = Agent(model=Script(["one", "two"]).model)
    first = ip.execution_count
    ran = await run(ip, "%%chat\nfirst")
    shown = ran.result
    assert isinstance(shown, ChatWidget), ran.error_in_exec
    capsys.readouterr()
    assert (await run(ip, "%%chat\nsecond")).result is None
    await shown.last_handle
    assert capsys.readouterr().out == f"sent to solo — the chat is in cell [{first}]\n"


async def run(ip: Any, cell: str) -> Any:
    """Run `cell` as a notebook runs it: counted in the history, transformed first."""
    return await ip.run_cell_async(cell, store_history=True, transformed_cell=ip.transform_cell(cell))
