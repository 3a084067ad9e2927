"""A stored call keeps its prompt as a reference to the previous call's plus what is new (migration
0010), and `agents.call_request` rebuilds the exact request the provider was sent — on both backends,
for plain turns, tool rounds, compaction, forks, sub-agents and a retried call."""

from __future__ import annotations

import dataclasses
import itertools
import json
from pathlib import Path
from typing import Any

import pytest
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


@tool
def note(text: str, weight: float = 1.0) -> str:
    """Echo a note."""
    return f"noted: {text} ×{weight}"


def _tails(calls: list[Any]) -> list[tuple[Any, Any]]:
    """Each call's stored new part: its message sequences when it refers to them, else its copy."""
    return [((c.prompt_ref or {}).get("messages"), c.prompt_messages) for c in calls]


async def test_a_rounds_reply_and_tool_results_are_referred_to_by_sequence_not_copied(
    ws: Workspace, session: Session
) -> None:
    # Arguments and results a provider might send: non-ASCII, quotes, newlines, big numbers.
    odd = ["zebrafish 🐟 café", 'say "hi"\nthen\tleave', "\\u0000 is not a NUL", "x" * 3000]
    script = Script(
        [
            Turn(tool_calls=[call("note", text=t, weight=w)])
            for t, w in zip(odd, [1, -7, 2**53, 10**20], strict=True)
        ]
        + ["done", "again"]
    )
    agent = Agent(model=script.model, tools=[note], session=session, ws=ws, system_prompt="Be brief.")
    await agent.prompt("take notes")
    await agent.prompt("more")
    calls = _calls(ws, session)
    assert _rebuilt(ws, session) == script.requests
    assert agents.call_request(calls[-1], ws=ws)["messages"] == agent.last_request.messages
    tails = _tails(calls)
    # Each call after the first added its base's reply and tool result (or, for the second prompt,
    # the final reply and the user's message): two messages, stored once, as messages.
    assert tails[0][0] is None
    for span, copy in tails[1:]:
        assert span is not None and span[1] == span[0] + 1 and copy == []
    seqs = [m.sequence for m in sessions.list_messages(session, limit=100, ws=ws).entries]
    assert [s for span, _ in tails[1:] for s in range(span[0], span[1] + 1)] == seqs[1:-1]


async def test_floats_are_referred_to_on_sqlite_and_copied_on_postgresql(
    ws: Workspace, session: Session
) -> None:
    # JSONB keeps numbers as numeric: -0.0 reads back as 0 and 1e300 as an integer, so a message whose
    # arguments hold floats would not read back as sent there.
    weights = [0.1, -0.0, 1e300, 1e-7]
    script = Script([*(Turn(tool_calls=[call("note", text="w", weight=w)]) for w in weights), "done"])
    await Agent(model=script.model, tools=[note], session=session, ws=ws).prompt("go")
    calls = _calls(ws, session)
    assert _rebuilt(ws, session) == script.requests
    referred = [span is not None for span, _ in _tails(calls)[1:]]
    assert referred == [ws.backend == "sqlite"] * len(weights)


async def test_what_does_not_read_back_exactly_as_sent_is_copied(ws: Workspace, session: Session) -> None:
    # A NaN argument is stored as the string "NaN" (JSON has no NaN), so the stored message no longer
    # reads back as the request carried it: the next call keeps a copy, and still rebuilds exactly.
    script = Script(
        [
            Turn(tool_calls=[call("note", text="a", weight=float("nan"))]),
            Turn(tool_calls=[call("note", text="b")]),
            "done",
        ]
    )
    agent = Agent(model=script.model, tools=[note], session=session, ws=ws)
    await agent.prompt("go")
    calls = _calls(ws, session)
    tails = _tails(calls)
    assert tails[1][0] is None and len(tails[1][1]) == 2  # copied: the NaN reply and its result
    assert tails[2][0] is not None and tails[2][1] == []  # referred to again after it
    # (as JSON: NaN is unequal to itself; keys sorted: JSONB keeps its own order)
    assert json.dumps(_rebuilt(ws, session), sort_keys=True) == json.dumps(script.requests, sort_keys=True)


async def test_a_message_another_writer_stored_in_between_leaves_the_copy(
    ws: Workspace, session: Session
) -> None:
    @tool
    def interject(text: str) -> str:
        """Someone else writes to the session while the tool runs."""
        sessions.create_message(session, role="user", content="meanwhile", ws=ws)
        return text

    script = Script([Turn(tool_calls=[call("interject", text="x")]), "done"])
    agent = Agent(model=script.model, tools=[interject], session=session, ws=ws)
    await agent.prompt("go")
    calls = _calls(ws, session)
    assert _tails(calls)[1][0] is None and len(calls[1].prompt_messages) == 2  # not contiguous: copied
    assert _rebuilt(ws, session) == script.requests  # "meanwhile" was never sent, nor rebuilt


@pytest.mark.parametrize(
    ("span", "says"),
    [
        ([900, 901], "sequence 900"),  # messages that are not there
        ("flip", "sequences"),  # last before first: would rebuild nothing where two messages were
        ([1, 2**40], "sequences"),  # a span no call adds: would be walked for ever
        ([0, 1], "sequences"),  # sequences start at 1
        (["2", 3], "sequences"),  # strings are not sequence numbers
        ([3], "sequences"),
    ],
)
async def test_a_damaged_reference_to_messages_is_an_error_not_a_guess(
    ws: Workspace, session: Session, span: Any, says: str
) -> None:
    from cmdc_nb.errors import NotFoundError
    from cmdc_nb.store.models import AgentCall

    script = Script([Turn(tool_calls=[call("note", text="a")]), "done"])
    await Agent(model=script.model, tools=[note], session=session, ws=ws).prompt("go")
    last = _calls(ws, session)[-1]
    with ws.transaction() as tx:
        row = tx.db.get(AgentCall, last.id)
        assert row is not None and row.prompt_ref is not None and row.prompt_ref.get("messages")
        first, end = row.prompt_ref["messages"]
        row.prompt_ref = {**row.prompt_ref, "messages": [end, first] if span == "flip" else span}
    with pytest.raises(NotFoundError, match=says):
        agents.call_request(last, ws=ws)


async def test_downgrading_0014_writes_the_referred_messages_back_as_copies(
    ws: Workspace, session: Session
) -> None:
    from alembic import command

    from cmdc_nb.store import migrate
    from cmdc_nb.store.prompt_refs import full_prompt

    script = Script([Turn(tool_calls=[call("note", text=t)]) for t in "abc"] + ["done"])
    await Agent(model=script.model, tools=[note], session=session, ws=ws).prompt("go")
    calls = _calls(ws, session)
    assert sum(1 for span, _ in _tails(calls) if span) == 3
    wanted = {str(c.id): agents.call_request(c, ws=ws)["messages"] for c in calls}
    t = sa.table("agent_calls", sa.column("id", sa.Uuid()), sa.column("prompt_messages", sa.JSON()),
                 sa.column("prompt_ref", sa.JSON()))  # fmt: skip
    with ws.engine.begin() as conn:
        cfg = migrate._config()
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0013")
        rows = {
            str(r.id): (_json(r.prompt_messages), _json(r.prompt_ref)) for r in conn.execute(sa.select(t))
        }
        command.upgrade(cfg, "head")
    assert all(ref is None or "messages" not in ref for _, ref in rows.values())
    # the copies written back rebuild every prompt (its system prompt apart) with no messages at hand
    assert {cid: full_prompt(cid, rows) for cid in wanted} == {cid: w[1:] for cid, w in wanted.items()}
    assert [agents.call_request(c, ws=ws)["messages"] for c in calls] == list(wanted.values())


def _json(value: Any) -> Any:
    return json.loads(value) if isinstance(value, str) else value


async def test_a_message_stored_in_another_form_still_counts_as_the_same_prefix(
    ws: Workspace, session: Session
) -> None:
    # A NUL (or a lone surrogate) is stored as U+FFFD: the conversation still holds the original, so
    # comparing the two forms must not take every later message for a change (copying more and more).
    @tool
    def odd(k: int) -> str:
        """Returns text with a NUL the first time."""
        return "\x00nul\x00" if k == 0 else f"ok {k}"

    script = Script([*(Turn(tool_calls=[call("odd", k=k)]) for k in range(5)), "done"])
    await Agent(model=script.model, tools=[odd], session=session, ws=ws).prompt("go")
    calls = _calls(ws, session)
    assert [len(c.prompt_messages) for c in calls[2:]] == [0] * 4  # each refers to its two messages
    assert all(span is not None for span, _ in _tails(calls)[2:])
