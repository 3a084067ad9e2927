"""What a stored round keeps, on both backends and both write paths (the kernel's two-transaction fast
path, and the services' slow path a budget sends it through): one audit entry for each action — the
person's message, the call with its cost, the tool run — not one per row those actions wrote; the
system prompt once per agent; a tool's schema only where a decision's form needs it."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from waiting import CEILING_S

from cmdc_nb import activity, agents, budgets
from cmdc_nb.events import topics
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.store.enums import ToolUseStatus
from cmdc_nb.store.models import Message, Session, ToolUse, User
from cmdc_nb.workspace import Workspace


@tool
def double(n: int) -> int:
    """Double n."""
    return 2 * n


@tool(approval_class="medium", side_effects=("filesystem",))
def save(path: str) -> str:
    """Save to path."""
    return f"saved {path}"


def _actions(ws: Workspace, session: Any) -> list[str]:
    rows = activity.search_activity(session=session, limit=1000, ws=ws)
    return sorted(e.action for e in rows)


@pytest.mark.parametrize("path", ["fast", "slow"])
async def test_a_round_is_audited_once_per_action_on_either_path(
    ws: Workspace, user: User, session: Session, path: str
) -> None:
    if path == "slow":  # a budget that applies sends every write through the services
        budgets.create_budget(name="cap", limit_usd=Decimal("100"), user=user, ws=ws)
    script = Script([Turn(tool_calls=[call("double", n=k)]) for k in range(3)] + ["done"])
    agent = Agent(model=script.model, tools=[double], session=session, ws=ws, system_prompt="Be brief.")
    await agent.prompt("double three numbers")

    actions = _actions(ws, session)
    assert actions.count("message.create") == 1  # the person's prompt; the agent's messages are its calls'
    assert actions.count("agent.call.complete") == 4 and actions.count("tool.execute") == 3
    calls = agents.list_agent_calls(session, ws=ws).entries
    assert len(calls) == 4
    entries = activity.search_activity(action="agent.call.complete", session=session, limit=10, ws=ws)
    assert {e.details["model"] for e in entries} == {script.model}  # it names the call's model
    if path == "fast":
        assert actions.count("agent.call.start") == 0  # never committed apart from its completion
        stored = sorted((c.system_prompt is not None) for c in calls)
        assert stored == [False, False, False, True]  # the system prompt is stored once
    else:
        assert actions.count("agent.call.start") == 4  # committed apart: audited apart
    for c in calls:  # and every call still says what it sent
        assert "Be brief." in agents.call_request(c, ws=ws)["system_prompt"]
    uses = [u for c in calls for u in agents.list_tool_uses(c, ws=ws).entries]
    assert len(uses) == 3 and all("tool_schema" not in u.meta for u in uses)  # ran at once: no form
    assert all("policy" not in u.meta for u in uses)  # a policy that says nothing is not stored
    assert all(not u.requires_approval and u.status.value == "completed" for u in uses)


async def test_a_tool_use_waiting_for_a_decision_keeps_its_schema_for_the_form(
    ws: Workspace, session: Session
) -> None:
    script = Script([Turn(tool_calls=[call("save", path="a.txt")]), "saved"])
    agent = Agent(model=script.model, tools=[save], session=session, ws=ws)
    handle = agent.prompt("save it")
    while not agent.status()["pending_approvals"]:  # the call waits for a decision
        await asyncio.sleep(0.005)
    calls = agents.list_agent_calls(session, ws=ws).entries
    [use] = [u for c in calls for u in agents.list_tool_uses(c, ws=ws).entries]
    assert use.status == "pending"
    assert use.meta["tool_schema"]["parameters"]["properties"]["path"]["type"] == "string"
    [pending] = agent.status()["pending_approvals"]
    agent.approve(pending["ref"])
    assert await handle == "saved"


@tool(side_effects=("network",))
def ping(host: str) -> str:
    """Ping host."""
    return f"pong from {host}"


@pytest.mark.parametrize("path", ["fast", "slow"])
async def test_a_policy_that_says_something_is_kept_with_the_tool_use(
    ws: Workspace, user: User, session: Session, path: str
) -> None:
    if path == "slow":
        budgets.create_budget(name="cap", limit_usd=Decimal("100"), user=user, ws=ws)
    script = Script([Turn(tool_calls=[call("ping", host="example.com")]), "done"])
    await Agent(model=script.model, tools=[ping], session=session, ws=ws).prompt("ping it")
    (use,) = [
        u
        for c in agents.list_agent_calls(session, ws=ws).entries
        for u in agents.list_tool_uses(c, ws=ws).entries
    ]
    assert use.meta["policy"]["side_effects"] == ["network"] and not use.requires_approval


async def test_a_tool_use_cancelled_while_it_runs_keeps_its_cancel(
    ws: Workspace, user: User, session: Session
) -> None:
    """Someone (a widget, another kernel) cancels a tool use while its tool runs: the agent stops the
    tool as a steer would and tells the model it was cancelled — the cancel stands, the tool's result
    is neither stored nor sent, and the session's message count still matches its messages."""

    @tool
    def slow(n: int) -> int:
        """Cancelled from outside while it runs."""
        with ws.read() as db:
            running = db.scalars(sa.select(ToolUse).where(ToolUse.status == ToolUseStatus.EXECUTING)).all()
        assert len(running) == 1  # stored executing before it ran
        agents.cancel_tool_use(running[0].id, reason="stop it", ws=ws)
        return n

    script = Script([Turn(tool_calls=[call("slow", n=1)]), "done"])
    agent = Agent(model=script.model, tools=[slow], session=session, ws=ws)
    assert await agent.prompt("go") == "done"  # the run goes on
    with ws.read() as db:
        uses = db.scalars(sa.select(ToolUse).where(ToolUse.session_id == session.id)).all()
        messages = db.scalars(sa.select(Message).where(Message.session_id == session.id)).all()
        count = db.get(Session, session.id).message_count  # type: ignore[union-attr]
    assert [u.status for u in uses] == [ToolUseStatus.CANCELLED]
    assert uses[0].output is None
    assert not [m for m in messages if m.tool_use_id == uses[0].id and m.role.value == "tool_result"
                and m.content == "1"]  # fmt: skip
    assert count == len(messages)
    assert sorted(m.sequence for m in messages) == list(range(1, len(messages) + 1))
    told = [m for m in script.requests[1] if m.get("role") == "tool"]
    assert len(told) == 1 and "cancelled" in told[0]["content"] and told[0]["content"] != "1"


async def test_two_agents_writing_one_session_at_once_both_finish(ws: Workspace, session: Session) -> None:
    """Two agents store their rounds in one session at the same time: every message gets the next
    sequence under the session's lock, none is refused as a duplicate, and the count matches. (On
    PostgreSQL the newest sequence was read in the UPDATE that waited for that lock, from the snapshot
    it started with, so it missed the other writer's message and one agent's round failed.)"""
    rounds = 20

    def agent() -> Agent:
        script = Script([*(Turn(tool_calls=[call("double", n=k)]) for k in range(rounds)), "done"])
        return Agent(
            model=script.model, tools=[double], session=session, ws=ws,
            max_turns=rounds + 5, max_identical_tool_calls=rounds + 5,
        )  # fmt: skip

    assert await asyncio.gather(agent().prompt("go"), agent().prompt("go")) == ["done", "done"]
    with ws.read() as db:
        sequences = sorted(db.scalars(sa.select(Message.sequence).where(Message.session_id == session.id)))
        count = db.get(Session, session.id).message_count  # type: ignore[union-attr]
    assert sequences == list(range(1, len(sequences) + 1))
    assert count == len(sequences) == 2 * (1 + 2 * rounds + 1)  # prompt, call + result a round, reply


@tool
def show(x: float) -> str:
    """Show x."""
    return repr(x)


@pytest.mark.parametrize(
    ("value", "text"), [(float("nan"), "NaN"), (float("inf"), "Infinity"), (float("-inf"), "-Infinity")]
)
async def test_a_number_json_cannot_spell_is_stored_as_its_text(
    ws: Workspace, session: Session, value: float, text: str
) -> None:
    """A model's arguments may hold NaN or ±Infinity (Python's json reads them): the tool gets the
    float, the stored tool use keeps its text — PostgreSQL's JSON refused the number and failed the run,
    SQLite stored text no standard JSON reader takes."""
    script = Script([Turn(tool_calls=[call("show", x=value)]), "done"])
    agent = Agent(model=script.model, tools=[show], session=session, ws=ws)
    assert await agent.prompt("go") == "done"
    with ws.read() as db:
        [use] = db.scalars(sa.select(ToolUse).where(ToolUse.session_id == session.id)).all()
    assert (use.input, use.status, use.output) == ({"x": text}, ToolUseStatus.COMPLETED, repr(value))


async def test_a_call_aborted_while_its_price_is_looked_up_is_still_stored(
    ws: Workspace, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The fast path looks a model's price up once (then remembers it), after the response came: an
    abort landing during that lookup used to lose the call whole — sent, never stored — because it
    was no longer a draft and not yet written. It is stored, cancelled, and its request rebuilds."""
    import threading

    from cmdc_nb.errors import AbortedError
    from cmdc_nb.services.agents import rounds

    script = Script([Turn(tool_calls=[call("double", n=1)]), "after"])
    agent = Agent(model=script.model, tools=[double], session=session, ws=ws)
    loop = asyncio.get_running_loop()
    real = rounds.price_of
    aborted = threading.Event()

    def price_of_while_aborting(*a: Any, **kw: Any) -> Any:
        loop.call_soon_threadsafe(lambda: (agent.abort(), aborted.set()))
        aborted.wait(5)
        return real(*a, **kw)

    monkeypatch.setattr(rounds, "price_of", price_of_while_aborting)
    sent: list[str] = []
    agent.events.subscribe(lambda e: e.type == "request_start" and sent.append(e.event.agent_call_id))
    with pytest.raises(AbortedError):
        await agent.prompt("go")
    # The caller's wait ends at the abort; storing the cancellation goes on: wait for its event.
    cancelled = asyncio.Event()
    with ws.bus.subscribe(
        topics.session_agent_calls(session.id),
        lambda e: e.type == "agent_call_cancelled" and loop.call_soon_threadsafe(cancelled.set),
        since=0,
    ):
        await asyncio.wait_for(cancelled.wait(), CEILING_S)
    assert len(sent) == 1
    stored = agents.list_agent_calls(session, ws=ws).entries
    assert [(str(c.id), c.status) for c in stored] == [(sent[0], "cancelled")]
    assert agents.call_request(sent[0], ws=ws)["messages"][-1] == {"role": "user", "content": "go"}
