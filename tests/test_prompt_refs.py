"""A stored call keeps its prompt as a reference to the previous call's plus what is new (migration
0010), and `agents.call_request` rebuilds the exact request the provider was sent — on both backends,
for plain turns, tool rounds, compaction, forks, sub-agents and a retried call."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cmdc_nb import agents, sessions
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.kernel.options import SubAgent
from cmdc_nb.providers import RetryPolicy, Script, Turn, call
from cmdc_nb.providers._offline import provider_messages
from cmdc_nb.store.models import Session, User
from cmdc_nb.toolkit import builtin_tools
from cmdc_nb.workspace import Workspace


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


def _calls(ws: Workspace, session: Any) -> list[Any]:
    return sorted(agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)


def _rebuilt(ws: Workspace, session: Any, model: str | None = None) -> list[list[Any]]:
    """Each call's rebuilt messages as the scripted model received them (litellm drops None values)."""
    return [
        provider_messages(agents.call_request(c, ws=ws)["messages"])
        for c in _calls(ws, session)
        if model is None or c.model == model
    ]


async def test_plain_turns_and_tool_rounds_rebuild_what_the_provider_was_sent(
    ws: Workspace, session: Session
) -> None:
    script = Script(
        [Turn(tool_calls=[call("add", a=k, b=1)], usage=(10, 2)) for k in range(4)] + ["five", "six"]
    )
    agent = Agent(model=script.model, tools=[add], session=session, ws=ws, system_prompt="Be brief.")
    await agent.prompt("count")
    await agent.prompt("again")
    calls = _calls(ws, session)
    assert len(calls) == len(script.requests) == 6
    assert _rebuilt(ws, session) == script.requests
    # and exactly as the agent built it (before litellm's clean-up)
    assert agent.last_request is not None
    assert agents.call_request(calls[-1], ws=ws)["messages"] == agent.last_request.messages
    # Every call after the first refers to the one before and stores only what it added.
    assert calls[0].prompt_ref is None
    for prev, cur in itertools.pairwise(calls):
        assert cur.prompt_ref is not None and cur.prompt_ref["base"] == str(prev.id)
        assert cur.prompt_ref["keep"] > 0
        assert len(cur.prompt_messages) < len(agents.call_request(cur, ws=ws)["messages"])
    req = agents.call_request(calls[-1], ws=ws)
    assert (req["model"], req["tools"], req["system_prompt"] is not None) == (script.model, ["add"], True)


async def test_compaction_and_the_turns_after_it_rebuild_exactly(
    ws: Workspace, session: Session, tmp_path: Path
) -> None:
    script = Script(["one", "two", Turn("the summary", usage=(500, 20)), "three"])
    agent = Agent(model=script.model, session=session, ws=ws, working_dir=str(tmp_path))
    await agent.prompt("a")
    await agent.prompt("b")
    assert await agent.compact(keep_last=2) is not None
    await agent.prompt("c")
    assert len(script.requests) == 4
    assert _rebuilt(ws, session) == script.requests


async def test_a_call_that_failed_and_was_retried_rebuilds_the_request_it_resent(
    ws: Workspace, session: Session
) -> None:
    script = Script(["first", Turn(error="rate_limit", retry_after=0.01), "second"])
    agent = Agent(model=script.model, session=session, ws=ws, retry=RetryPolicy(retries=1, backoff_s=0.001))
    await agent.prompt("a")
    assert await agent.prompt("b") == "second"
    calls = _calls(ws, session)
    assert [(c.status, c.retry_count) for c in calls] == [("completed", 0), ("completed", 1)]
    assert script.requests[1] == script.requests[2]  # the retry resent the same messages
    assert _rebuilt(ws, session) == [script.requests[0], script.requests[2]]
    assert calls[1].prompt_ref is not None


async def test_a_forked_session_rebuilds_its_own_calls(ws: Workspace, session: Session) -> None:
    script = Script(["one", "two", "forked reply"])
    agent = Agent(model=script.model, session=session, ws=ws)
    await agent.prompt("a")
    await agent.prompt("b")
    first_reply = sessions.list_messages(session, ws=ws).entries[1]
    fork = sessions.fork_session(session, first_reply, ws=ws)
    child = Agent.from_session(fork, model=script.model, ws=ws)
    await child.prompt("c")
    assert _rebuilt(ws, session) == script.requests[:2]
    assert _rebuilt(ws, fork) == [script.requests[2]]
    assert [m["content"] for m in script.requests[2] if m["role"] == "user"] == ["a", "c"]


async def test_a_sub_agents_calls_rebuild_apart_from_the_parents(
    ws: Workspace, user: User, tmp_path: Path
) -> None:
    s = sessions.create_session(user, name="parent", ws=ws)
    child = Script(["The file has 3 lines."])
    parent = Script(
        [Turn(tool_calls=[call("task", description="Count the lines", subagent_type="counter")]), "3 lines."]
    )
    agent = Agent(
        model=parent.model,
        tools=builtin_tools(include=["task", "read_file"]),
        subagents=[SubAgent(name="counter", description="counts", model=child.model)],
        session=s,
        ws=ws,
        working_dir=str(tmp_path),
    )
    assert await agent.prompt("How long?") == "3 lines."
    assert _rebuilt(ws, s, parent.model) == parent.requests
    assert _rebuilt(ws, s, child.model) == child.requests


async def test_calls_stored_whole_before_the_migration_read_as_they_were(
    ws: Workspace, session: Session
) -> None:
    prompt = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]
    c = agents.create_agent_call(
        session, model="anthropic/claude-sonnet-4", prompt_messages=prompt, system_prompt="sys", ws=ws
    )
    assert c.prompt_ref is None
    assert agents.call_request(c, ws=ws)["messages"] == [{"role": "system", "content": "sys"}, *prompt]


async def test_an_export_holds_whole_prompts_and_imports_rebuild_them(
    ws: Workspace, user: User, session: Session
) -> None:
    script = Script([Turn(tool_calls=[call("add", a=1, b=2)]), "3", "again"])
    agent = Agent(model=script.model, tools=[add], session=session, ws=ws)
    await agent.prompt("1+2")
    await agent.prompt("more")
    doc = sessions.export_session(session, ws=ws)
    assert all("prompt_ref" not in c for c in doc["agent_calls"])
    # each exported call carries its own system prompt, though the store keeps it once
    assert all(c["system_prompt"] and c["system_prompt"].startswith("You are") for c in doc["agent_calls"])
    copy = sessions.import_session(user, doc, ws=ws)
    assert _rebuilt(ws, copy) == script.requests


async def test_downgrading_0010_gives_every_call_its_whole_prompt_back(
    ws: Workspace, session: Session
) -> None:
    from alembic import command

    from cmdc_nb.store import migrate

    script = Script([Turn(tool_calls=[call("add", a=1, b=2)]), "3", "again"])
    agent = Agent(model=script.model, tools=[add], session=session, ws=ws)
    await agent.prompt("1+2")
    await agent.prompt("more")
    ids = [c.id for c in _calls(ws, session)]
    wanted = [agents.call_request(c, ws=ws)["messages"] for c in ids]
    with ws.engine.begin() as conn:
        cfg = migrate._config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0009")
        t = sa.table(
            "agent_calls",
            sa.column("id", sa.Uuid()),
            sa.column("prompt_messages", sa.JSON()),
            sa.column("system_prompt", sa.Text()),
        )
        got = {r.id: r.prompt_messages for r in conn.execute(sa.select(t))}
        systems = {r.id: r.system_prompt for r in conn.execute(sa.select(t))}
        assert "prompt_ref" not in {c["name"] for c in sa.inspect(conn).get_columns("agent_calls")}
    stored = [got[i] if isinstance(got[i], list) else json.loads(got[i]) for i in ids]
    assert [provider_messages(m) for m in stored] == [r[1:] for r in script.requests]  # system apart
    assert all(w[1:] == s for w, s in zip(wanted, stored, strict=True))  # the system prompt apart
    assert [systems[i] for i in ids] == [w[0]["content"] for w in wanted]  # and each its system prompt


async def test_an_agents_system_prompt_is_stored_once_and_every_call_still_rebuilds_it(
    ws: Workspace, session: Session
) -> None:
    script = Script([Turn(tool_calls=[call("add", a=k, b=1)]) for k in range(3)] + ["done", "again"])
    agent = Agent(model=script.model, tools=[add], session=session, ws=ws, system_prompt="Be brief.")
    await agent.prompt("count")
    agent.options = dataclasses.replace(
        agent.options, system_prompt="Be very brief."
    )  # changed: stored again
    await agent.prompt("more")
    calls = _calls(ws, session)
    sent = [r[0]["content"] for r in script.requests]  # what the provider was sent as system
    assert [agents.call_request(c, ws=ws)["system_prompt"] for c in calls] == sent
    stored = [c.system_prompt for c in calls]
    assert stored[0] is not None and stored.count(None) == len(calls) - 2  # the first and the changed one
    changed = sent.index(next(x for x in sent if "very brief" in x))
    assert stored[changed] == sent[changed] and "Be very brief." in stored[changed]
    assert all(c.prompt_ref.get("system") == "base" for c, s in zip(calls, stored, strict=True) if s is None)
