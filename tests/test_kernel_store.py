"""Agents that store their turns: messages, agent calls, tool uses with approvals, costs — on both
backends — and a turn that waits for approval surviving the death of its process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from waiting import CEILING_S

from cmdc_nb import accounts, agents, approvals, budgets, kernel, pricing, sessions
from cmdc_nb.errors import AccessDeniedError, BudgetExceededError, InvalidStateError, ProviderError
from cmdc_nb.events import topics
from cmdc_nb.kernel import Agent, tool
from cmdc_nb.providers import RetryPolicy, Script, Turn, call
from cmdc_nb.store.models import CostDailySummary, CostRecord, Session, User
from cmdc_nb.workspace import Workspace, acting_as


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(requires_approval=True, side_effects=("filesystem",))
def delete(path: str) -> str:
    """Delete a file."""
    return f"deleted {path}"


def recorder(agent: Agent) -> list[Any]:
    got: list[Any] = []
    agent.events.subscribe(got.append)
    return got


async def test_a_run_is_stored_turn_by_turn_with_exact_costs(ws: Workspace, session: Session) -> None:
    script = Script(
        [Turn("Adding.", tool_calls=[call("add", a=2, b=3)], usage=(1200, 30)), Turn("5", usage=(1300, 1))]
    )
    pricing.set_model_price(script.model, input_per_million_usd="0.15", output_per_million_usd="0.6", ws=ws)
    agent = Agent(model=script.model, tools=[add], session=session, ws=ws)
    got = recorder(agent)
    assert await agent.prompt("2+3?") == "Adding.\n\n5"
    msgs = sessions.list_messages(session, ws=ws).entries
    assert [(m.role, m.content) for m in msgs] == [
        ("user", "2+3?"),
        ("assistant", "Adding."),
        ("tool_result", "5"),
        ("assistant", "5"),
    ]
    assert msgs[1].content_blocks == [
        {"type": "tool_call", "id": "call_1_add", "name": "add", "arguments": {"a": 2, "b": 3}}
    ]
    calls = sorted(agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)
    assert [(c.status, c.tokens_in, c.tokens_out, c.stop_reason) for c in calls] == [
        ("completed", 1200, 30, "tool_calls"),
        ("completed", 1300, 1, "stop"),
    ]
    expected = [
        Decimal("0.000198"),
        Decimal("0.0001956"),
    ]  # 1200*.15/1e6 + 30*.6/1e6, 1300*.15/1e6 + 1*.6/1e6
    assert [c.cost_usd for c in calls] == expected
    assert msgs[1].agent_call_id == calls[0].id
    [tu] = agents.list_tool_uses(calls[0], ws=ws).entries
    assert (tu.tool_name, tu.status, tu.input, tu.output, tu.tool_use_id) == (
        "add",
        "completed",
        {"a": 2, "b": 3},
        "5",
        "call_1_add",
    )
    assert msgs[2].tool_use_id == tu.id
    s = sessions.get_session(session, ws=ws)
    assert (s.total_tokens_in, s.total_tokens_out, s.total_cost_usd) == (2500, 31, sum(expected))
    with ws.read() as db:
        assert db.scalar(sa.select(sa.func.sum(CostRecord.cost_usd))) == sum(expected)
        # the daily summary's maps (written after the round's pipeline on PostgreSQL, in its transaction)
        [summary] = db.scalars(sa.select(CostDailySummary)).all()
    assert {k: Decimal(v) for k, v in summary.cost_by_model.items()} == {script.model: sum(expected)}
    assert {k: Decimal(v) for k, v in summary.cost_by_session.items()} == {str(session.id): sum(expected)}
    assert (summary.total_requests, summary.total_cost_usd) == (2, sum(expected))
    end = next(e.event for e in got if e.type == "agent_end")
    assert (end.cost_usd, end.usage.input, end.usage.output) == (sum(expected), 2500, 31)
    forwarded: list[Any] = []
    ws.bus.subscribe(topics.agent(agent.id), forwarded.append, since=0)
    assert [e.type for e in forwarded][-1] == "agent_end" and forwarded[-1].payload["cost_usd"] == str(
        sum(expected)
    )


async def test_an_approval_decided_from_another_cell_resumes_the_turn(
    ws: Workspace, user: User, session: Session
) -> None:
    script = Script([Turn(tool_calls=[call("delete", path="old.log"), call("add", a=1, b=1)]), "cleaned"])
    agent = kernel.create_agent(model=script.model, tools=[delete, add], session=session, ws=ws)
    got = recorder(agent)
    handle = agent.prompt("clean up")
    while not approvals.list_pending_approvals(user, ws=ws).entries:
        await asyncio.sleep(0.01)
    [item] = approvals.list_pending_approvals(user, ws=ws).entries
    assert (item.payload["tool_name"], item.payload["input"], item.risk_factors) == (
        "delete",
        {"path": "old.log"},
        ["filesystem"],
    )
    # `add` does not wait for `delete`'s decision: it finishes while `delete` is still pending.
    while not any(e.type == "tool_execution_end" and e.event.name == "add" for e in got):
        await asyncio.sleep(0.01)
    assert approvals.get_approval_item(item, ws=ws).status == "pending" and not handle.done()
    # Decided elsewhere (another cell, the approval queue, another thread) with an edited argument.
    await asyncio.to_thread(
        approvals.approve_item,
        item,
        user,
        note="fine",
        modified_payload={**item.payload, "input": {"path": "new.log"}},
        ws=ws,
    )
    assert await asyncio.wait_for(handle, CEILING_S) == "cleaned"
    [tu_delete] = [
        t
        for c in agents.list_agent_calls(session, ws=ws).entries
        for t in agents.list_tool_uses(c, ws=ws).entries
        if t.tool_name == "delete"
    ]
    assert (tu_delete.status, tu_delete.input, tu_delete.output) == (
        "completed",
        {"path": "new.log"},
        "deleted new.log",
    )
    assert tu_delete.meta["original_input"] == {"path": "old.log"}
    await kernel.stop(agent)


async def test_rules_approve_without_asking_and_denials_reach_the_model(
    ws: Workspace, user: User, session: Session
) -> None:
    approvals.create_approval_rule(
        user,
        name="logs",
        approval_type="tool_use",
        tool_names=["delete"],
        conditions={"path": ".*\\.log"},
        action="approve",
        ws=ws,
    )
    script = Script(
        [
            Turn(tool_calls=[call("delete", path="a.log")]),
            Turn(tool_calls=[call("delete", path="a.py")]),
            "ok",
        ]
    )
    agent = Agent(model=script.model, tools=[delete], session=session, ws=ws)
    got = recorder(agent)
    agent.events.subscribe(
        lambda e: (
            e.type == "approval_required"
            and kernel.reject(agent, e.event.ref, note="keep sources", auto_resume=True)
        )
    )
    assert await agent.prompt("tidy") == "ok"
    approvals_asked = [e.event.args for e in got if e.type == "approval_required"]
    assert approvals_asked == [{"path": "a.py"}]  # the rule approved a.log without asking
    tool_results = [m["content"] for m in agent.messages if m["role"] == "tool"]
    assert tool_results == ["deleted a.log", "denied by the user: keep sources"]
    statuses = sorted(
        t.status
        for c in agents.list_agent_calls(session, ws=ws).entries
        for t in agents.list_tool_uses(c, ws=ws).entries
    )
    assert statuses == ["completed", "denied"]


async def test_every_decided_call_says_who_decided_it_and_a_call_a_rule_denies_is_never_asked(
    ws: Workspace, user: User, session: Session
) -> None:
    approvals.create_approval_rule(
        user, name="logs", tool_names=["delete"], conditions={"path": ".*\\.log"}, action="approve", ws=ws
    )
    approvals.create_approval_rule(
        user,
        name="never /etc",
        tool_names=["delete"],
        conditions={"path_pattern": "/etc/**"},
        action="deny",
        action_note="system files are off limits",
        ws=ws,
    )
    paths = ["a.log", "/etc/passwd", "a.py"]
    script = Script([*(Turn(tool_calls=[call("delete", path=p)]) for p in paths), "ok"])
    agent = Agent(model=script.model, tools=[delete], session=session, ws=ws)
    got = recorder(agent)
    agent.events.subscribe(
        lambda e: (
            e.type == "approval_required"
            and kernel.reject(agent, e.event.ref, note="keep sources", auto_resume=True, by=user)
        )
    )
    assert await agent.prompt("tidy") == "ok"
    decided = [
        (e.event.approved, e.event.how, e.event.by, e.event.note) for e in got if e.type == "tool_decided"
    ]
    assert decided == [  # one per call, in the order of the calls
        (True, "rule", "logs", None),
        (False, "rule", "never /etc", "system files are off limits"),
        (False, "person", "ada@example.com", "keep sources"),
    ]
    # the call the deny rule refused: no one was asked, nothing ran, and the model read why
    asked = [e.event.args for e in got if e.type == "approval_required"]
    ran = [e.event.args for e in got if e.type == "tool_execution_start"]
    assert (asked, ran) == ([{"path": "a.py"}], [{"path": "a.log"}])
    tool_results = [m["content"] for m in agent.messages if m["role"] == "tool"]
    assert tool_results[1] == "denied: system files are off limits"
    await kernel.stop(agent)


async def test_abort_mid_stream_cancels_the_stored_call(ws: Workspace, session: Session) -> None:
    script = Script([Turn("word " * 300, chunk_delay=0.01)])
    agent = Agent(model=script.model, session=session, ws=ws)
    got = recorder(agent)
    handle = agent.prompt("talk")
    while [e.type for e in got].count("message_delta") < 3:
        await asyncio.sleep(0.001)
    t0 = time.perf_counter()
    agent.abort()
    with pytest.raises(Exception, match="aborted"):
        await handle
    assert time.perf_counter() - t0 < 0.1
    await asyncio.sleep(0)
    for _ in range(100):
        calls = agents.list_agent_calls(session, ws=ws).entries
        if calls and calls[0].status == "cancelled":
            break
        await asyncio.sleep(0.02)
    assert [c.status for c in calls] == ["cancelled"]


async def test_provider_retries_and_fallbacks_are_recorded(ws: Workspace, session: Session) -> None:
    main = Script([Turn(error="rate_limit", retry_after=0.01), Turn(error="unavailable")], repeat_last=True)
    backup = Script(["from the backup"])
    agent = Agent(
        model=main.model,
        fallback_models=[backup.model],
        retry=RetryPolicy(retries=1, backoff_s=0.001),
        session=session,
        ws=ws,
    )
    got = recorder(agent)
    assert await agent.prompt("hi") == "from the backup"
    retry = next(e.event for e in got if e.type == "retry")
    assert (retry.attempt, retry.delay_s, retry.kind) == (1, 0.01, "rate_limit")  # Retry-After honoured
    fb = next(e.event for e in got if e.type == "model_fallback")
    assert (fb.from_model, fb.to_model) == (main.model, backup.model)
    calls = sorted(agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)
    assert [(c.model, c.status, c.retry_count) for c in calls] == [
        (main.model, "failed", 1),
        (backup.model, "completed", 0),
    ]
    assert calls[0].error_type == "unavailable"
    assert main.served == 2 and backup.served == 1


async def test_a_provider_error_that_cannot_be_retried_ends_the_run(ws: Workspace, session: Session) -> None:
    script = Script([Turn(error="authentication")])
    agent = Agent(model=script.model, session=session, ws=ws)
    got = recorder(agent)
    mon = agent.monitor()
    with pytest.raises(ProviderError) as err:
        await agent.prompt("hi")
    assert err.value.kind == "authentication" and not err.value.retryable
    assert (await mon).kind == "provider_error"
    assert [e.type for e in got][-2:] == ["stream_error", "agent_end"]
    assert [c.status for c in agents.list_agent_calls(session, ws=ws).entries] == ["failed"]
    assert script.served == 1


async def test_a_hard_budget_stops_the_call_before_it_is_sent(
    ws: Workspace, user: User, session: Session
) -> None:
    script = Script(["never"])
    pricing.set_model_price(script.model, input_per_million_usd="1000", output_per_million_usd="1000", ws=ws)
    budgets.create_budget(name="tiny", limit_usd="0.01", period="daily", user=user, ws=ws)
    agent = Agent(model=script.model, session=session, ws=ws, max_tokens=100)
    got = recorder(agent)
    with pytest.raises(BudgetExceededError):
        await agent.prompt("hi")
    assert script.served == 0
    assert next(e.event for e in got if e.type == "agent_abort").reason == "budget_exceeded"
    assert agents.list_agent_calls(session, ws=ws).entries == []


_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    import cmdc_nb
    from cmdc_nb.kernel import Agent, tool
    from cmdc_nb.providers import Script, Turn, call

    @tool(requires_approval=True)
    def deploy(target: str) -> str:
        "Deploy."
        with open(os.environ["MARKER"], "a") as f:
            f.write(target + "\\n")
        return f"deployed to {target}"

    ws = cmdc_nb.connect(os.environ["DB_URL"])
    script = Script([Turn("Deploying.", tool_calls=[call("deploy", target="prod")])], name="deploy-script")

    async def main():
        agent = Agent(model=script.model, tools=[deploy], session=os.environ["SESSION_ID"], ws=ws)
        agent.events.subscribe(lambda e: e.type == "approval_required" and print("WAITING", flush=True))
        await agent.prompt("deploy it")

    asyncio.run(main())
    """
)


async def test_a_pending_approval_survives_the_process_and_the_resumed_turn_completes(
    ws: Workspace, db_url: str, user: User, session: Session, tmp_path: Path
) -> None:
    marker = tmp_path / "deployed.txt"
    env = {**os.environ, "DB_URL": db_url, "SESSION_ID": str(session.id), "MARKER": str(marker)}
    child = subprocess.Popen([sys.executable, "-c", _CHILD], env=env, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        line = await asyncio.wait_for(asyncio.to_thread(child.stdout.readline), CEILING_S)
        assert line.strip() == "WAITING"
    finally:
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not marker.exists()
    [item] = approvals.list_pending_approvals(user, ws=ws).entries  # still pending after the kill

    @tool(requires_approval=True)
    def deploy(target: str) -> str:
        "Deploy."
        with marker.open("a") as f:
            f.write(target + "\n")
        return f"deployed to {target}"

    Script(["Deployed to prod."], name="deploy-script")  # the model's next answer, in this process
    agent = kernel.resume_agent(session, model="scripted/deploy-script", tools=[deploy], ws=ws)
    assert agent.interrupted
    got = recorder(agent)
    agent.events.subscribe(lambda e: e.type == "approval_required" and kernel.approve(agent, e.event.ref))
    handle = agent.resume()
    assert await asyncio.wait_for(handle, CEILING_S) == "Deployed to prod."
    assert marker.read_text() == "prod\n"  # executed once, after the approval
    assert next(e.event for e in got if e.type == "approval_required").ref == str(item.source_id)
    msgs = sessions.list_messages(session, ws=ws).entries
    assert [(m.role, m.content) for m in msgs] == [
        ("user", "deploy it"),
        ("assistant", "Deploying."),
        ("tool_result", "deployed to prod"),
        ("assistant", "Deployed to prod."),
    ]
    assert sorted(c.status for c in agents.list_agent_calls(session, ws=ws).entries) == [
        "completed",
        "completed",
    ]
    await kernel.stop(agent)


async def test_a_tool_that_was_running_when_the_process_died_is_not_run_again(
    ws: Workspace, session: Session
) -> None:
    ran: list[str] = []

    @tool
    def charge(amount: int) -> str:
        "Charge a card."
        ran.append("charged")
        return "charged"

    # A stored turn whose tool use was `executing` when the process stopped.
    call_row = agents.create_agent_call(session, model="scripted/x", ws=ws)
    agents.complete_agent_call(call_row, ws=ws)
    sessions.create_message(session, role="user", content="charge 5", ws=ws)
    sessions.create_message(
        session,
        role="assistant",
        content="Charging.",
        content_blocks=[{"type": "tool_call", "id": "c1", "name": "charge", "arguments": {"amount": 5}}],
        agent_call=call_row,
        ws=ws,
    )
    tu = agents.create_tool_use(call_row, tool_name="charge", input={"amount": 5}, tool_use_id="c1", ws=ws)
    agents.start_tool_execution(tu, ws=ws)
    script = Script(["I could not confirm the charge."])
    agent = Agent.from_session(session, model=script.model, tools=[charge], ws=ws)
    assert agent.interrupted
    assert await agent.resume() == "I could not confirm the charge."
    assert ran == []
    assert agents.get_tool_use(tu, ws=ws).status == "failed"
    assert "not run again" in agent.messages[2]["content"]


async def test_abort_while_waiting_for_approval_cancels_the_tool_use_and_its_item(
    ws: Workspace, user: User, session: Session
) -> None:
    script = Script([Turn(tool_calls=[call("delete", path="x")])])
    agent = Agent(model=script.model, tools=[delete], session=session, ws=ws)
    got = recorder(agent)
    handle = agent.prompt("delete x")
    while "approval_required" not in [e.type for e in got]:
        await asyncio.sleep(0.005)
    t0 = time.perf_counter()
    kernel.abort(agent, reason="permission_denied")
    with pytest.raises(Exception, match="permission_denied"):
        await handle
    assert time.perf_counter() - t0 < 0.1
    for _ in range(100):
        tus = [
            t
            for c in agents.list_agent_calls(session, ws=ws).entries
            for t in agents.list_tool_uses(c, ws=ws).entries
        ]
        if tus and tus[0].status == "cancelled":
            break
        await asyncio.sleep(0.02)
    assert [t.status for t in tus] == ["cancelled"]
    assert approvals.list_pending_approvals(user, ws=ws).entries == []


async def test_compaction_is_a_stored_call_with_its_cost(
    ws: Workspace, session: Session, tmp_path: Path
) -> None:
    script = Script(["one", "two", Turn("the summary", usage=(500, 20))])
    agent = Agent(model=script.model, session=session, ws=ws, working_dir=str(tmp_path))
    await agent.prompt("a")
    await agent.prompt("b")
    event = await agent.compact(keep_last=2)
    assert event is not None and event.summary == "the summary"
    calls = sorted(agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)
    assert [(c.status, c.meta.get("purpose")) for c in calls] == [
        ("completed", None),
        ("completed", None),
        ("completed", "compaction"),
    ]
    assert (calls[-1].tokens_in, calls[-1].tokens_out) == (500, 20)
    assert sessions.count_messages(session, ws=ws) == 4  # the summary call wrote no message


def test_an_approval_decided_in_another_process_resumes_the_waiting_agent(
    ws: Workspace, session: Session, db_url: str, home_dir: Path
) -> None:
    import kernel_children  # tests/ is on sys.path

    # This process is "kernel B": it decides through the services, the agent lives in the child.
    tool_use_id, out = kernel_children.approve_from_here(ws, db_url, str(home_dir), session)
    assert "REPLY Deployed." in out, out
    assert agents.get_tool_use(tool_use_id, ws=ws).status == "completed"


async def test_nul_bytes_and_lone_surrogates_from_tools_and_models_do_not_fail_the_stored_turn(
    ws: Workspace, session: Session
) -> None:
    # PostgreSQL refuses NUL in text and neither backend stores unpaired surrogates; a binary file or a
    # garbled model reply must still be recorded (as U+FFFD), not end the turn with a storage error.
    @tool
    def cat() -> str:
        """Print a binary file."""
        return "ELF\x00\x01 \ud800end"

    script = Script([Turn("Reading.", tool_calls=[call("cat")]), Turn("done\x00 \udfff")])
    agent = Agent(model=script.model, tools=[cat], session=session, ws=ws)
    await agent.prompt("what is in it?")
    msgs = sessions.list_messages(session, ws=ws).entries
    assert [(m.role, m.content) for m in msgs] == [
        ("user", "what is in it?"),
        ("assistant", "Reading."),
        ("tool_result", "ELF\ufffd\x01 \ufffdend"),
        ("assistant", "done\ufffd \ufffd"),
    ]
    first = min(agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)
    [tu] = agents.list_tool_uses(first, ws=ws).entries
    assert tu.status == "completed" and tu.output == "ELF\ufffd\x01 \ufffdend"
    calls = agents.list_agent_calls(session, ws=ws).entries
    assert sorted(c.status for c in calls) == ["completed", "completed"]


@pytest.mark.parametrize("approved", [False, True], ids=["runs-at-once", "approved-by-a-rule"])
async def test_a_tools_error_with_nul_and_surrogates_is_stored_cleaned(
    ws: Workspace, user: User, session: Session, approved: bool
) -> None:
    # The error's text is the tool's: a failure it raises must be recorded, not end the turn with a
    # storage error (PostgreSQL refuses NUL). Both ways a tool use ends: the round's fast write, and
    # the services after an approval.
    @tool(requires_approval=approved)
    def burn() -> str:
        """Fail oddly."""
        raise RuntimeError("bad\x00byte \ud800 here")

    if approved:
        approvals.create_approval_rule(
            user, name="burns", approval_type="tool_use", tool_names=["burn"], action="approve", ws=ws
        )
    script = Script([Turn(tool_calls=[call("burn")]), "gave up"])
    agent = Agent(model=script.model, tools=[burn], session=session, ws=ws)
    assert await agent.prompt("burn it") == "gave up"
    first = min(agents.list_agent_calls(session, ws=ws).entries, key=lambda c: c.started_at)
    [tu] = agents.list_tool_uses(first, ws=ws).entries
    assert (tu.status, tu.error_type) == ("failed", "error")
    assert tu.error_message is not None and "bad\ufffdbyte \ufffd here" in tu.error_message
    assert "\x00" not in tu.error_message


async def test_approve_from_the_loop_stores_off_the_loop_and_the_event_resumes_the_turn(
    ws: Workspace, user: User, session: Session, monkeypatch: pytest.MonkeyPatch
) -> None:
    script = Script([Turn(tool_calls=[call("delete", path="a.log")]), "done"])
    agent = kernel.create_agent(model=script.model, tools=[delete], session=session, ws=ws)
    got = recorder(agent)
    handle = agent.prompt("clean up")
    while not agent.status()["pending_approvals"]:
        await asyncio.sleep(0.01)
    [waiting] = agent.status()["pending_approvals"]
    loop_thread = threading.get_ident()
    writers: list[int] = []
    real = agent.recorder.decide

    def spy(*args: Any, **kw: Any) -> Any:
        writers.append(threading.get_ident())
        return real(*args, **kw)

    monkeypatch.setattr(agent.recorder, "decide", spy)
    written = agent.approve(waiting["ref"], args={"path": "b.log"})
    # called on the agent's loop: the write is handed to a worker thread and awaited by whoever wants to
    assert written is not None and not written.done()
    # decided here: no longer waiting for a person; the same decision again is the same write, another
    # one is refused (a loop that approves whatever waits cannot decide one call twice)
    assert agent.status()["pending_approvals"] == []
    assert agent.approve(waiting["ref"], args={"path": "b.log"}) is written
    with pytest.raises(InvalidStateError):
        agent.reject(waiting["ref"])
    await written
    assert writers and writers[0] != loop_thread
    assert await asyncio.wait_for(handle, CEILING_S) == "done"
    [tu] = [
        t
        for c in agents.list_agent_calls(session, ws=ws).entries
        for t in agents.list_tool_uses(c, ws=ws).entries
    ]
    assert (tu.status, tu.input, tu.output) == ("completed", {"path": "b.log"}, "deleted b.log")
    assert [e.event.trigger for e in got if e.type == "agent_resumed"][:1] == ["tool_approved"]
    # the item that asked, decided once, by the same write
    item = approvals.get_approval_item(tu.approval_id, ws=ws)
    assert item.status == "approved" and item.modified_payload["input"] == {"path": "b.log"}
    await kernel.stop(agent)


async def test_a_decision_that_cannot_be_stored_leaves_the_call_waiting(
    ws: Workspace, user: User, session: Session
) -> None:
    script = Script([Turn(tool_calls=[call("delete", path="a.log")]), "done"])
    agent = kernel.create_agent(model=script.model, tools=[delete], session=session, ws=ws)
    handle = agent.prompt("clean up")
    while not agent.status()["pending_approvals"]:
        await asyncio.sleep(0.01)
    [waiting] = agent.status()["pending_approvals"]
    stranger = accounts.create_user("stranger@example.com", ws=ws)
    with acting_as(stranger):  # someone the session is not shared with
        written = agent.approve(waiting["ref"])
    assert written is not None
    with pytest.raises(AccessDeniedError):
        await written
    assert agent.status()["pending_approvals"] and not handle.done()
    assert agents.get_tool_use(waiting["ref"], ws=ws).status == "pending"
    # the owner's decision goes through
    await agent.reject(waiting["ref"], note="no")
    await asyncio.wait_for(handle, CEILING_S)
    assert agents.get_tool_use(waiting["ref"], ws=ws).status == "denied"
    await kernel.stop(agent)


@pytest.mark.parametrize("path", ["tool use", "approval item", "rule"])
def test_every_decision_path_writes_one_event_of_one_shape(
    ws: Workspace, user: User, session: Session, path: str
) -> None:
    call_row = agents.create_agent_call(session, model="scripted/x", ws=ws)
    if path == "rule":
        approvals.create_approval_rule(user, name="ok", action="approve", tool_names=["delete"], ws=ws)
    seen: list[Any] = []
    ws.bus.subscribe(topics.session_agent_calls(session.id), seen.append)
    tu = agents.create_tool_use(
        call_row, tool_name="delete", input={"path": "x"}, requires_approval=True, ws=ws
    )
    if path == "tool use":
        agents.approve_tool_use(tu, by=user, ws=ws)
    elif path == "approval item":
        approvals.approve_item(tu.approval_id, user, ws=ws)
    decided = [e for e in seen if e.type in ("tool_use_approved", "tool_use_denied")]
    assert len(decided) == 1
    assert set(decided[0].payload) == {
        "tool_use_id",
        "agent_call_id",
        "session_id",
        "tool_name",
        "sequence",
        "status",
        "requires_approval",
        "approval_id",
    }
    assert decided[0].payload["status"] == "approved"
    assert agents.get_tool_use(tu, ws=ws).status == "approved"
    assert approvals.get_approval_item(tu.approval_id, ws=ws).status in ("approved", "auto_approved")
