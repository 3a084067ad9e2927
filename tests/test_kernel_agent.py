"""The agent loop and the facade, end to end with scripted models (no database: nothing is stored)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from waiting import CEILING_S

from cmdc_nb import kernel
from cmdc_nb.errors import (
    AbortedError,
    AgentError,
    AgentNotAliveError,
    InvalidInputError,
    NotFoundError,
)
from cmdc_nb.kernel import Agent, ToolContext, tool
from cmdc_nb.providers import Script, Turn, call


def recorder(agent: Agent) -> list[Any]:
    got: list[Any] = []
    agent.events.subscribe(got.append)
    return got


def types(envs: list[Any]) -> list[str]:
    return [e.type for e in envs]


def first(envs: list[Any], type_: str) -> Any:
    return next(e.event for e in envs if e.type == type_)


@tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@tool(requires_approval=True)
def delete(path: str) -> str:
    """Delete a file (needs approval)."""
    return f"deleted {path}"


async def test_prompt_returns_at_once_and_the_loop_stays_free_while_a_tool_waits_for_approval() -> None:
    script = Script([Turn(tool_calls=[call("delete", path="a.txt")]), "Deleted."])
    agent = kernel.create_agent(model=script.model, tools=[delete])
    got = recorder(agent)
    handle = kernel.prompt(agent.id, "delete a.txt")
    assert not handle.done() and handle.queued is False
    ticks = 0
    while "approval_required" not in types(got):
        await asyncio.sleep(0.001)
        ticks += 1
    for _ in range(20):  # the agent waits; the loop keeps running other work
        await asyncio.sleep(0.001)
        ticks += 1
    status = kernel.status(agent.id)
    assert status["state"] == "executing_tools"
    [pending] = status["pending_approvals"]
    assert (pending["tool"], pending["args"]) == ("delete", {"path": "a.txt"})
    assert ticks >= 21 and not handle.done()
    kernel.approve(agent.id, pending["ref"])
    assert await handle == "Deleted."
    assert first(got, "agent_resumed").trigger == "tool_approved"
    assert agent.messages[2] == {"role": "tool", "tool_call_id": "call_1_delete", "content": "deleted a.txt"}
    await kernel.stop(agent)


async def test_approve_with_edited_arguments_and_reject_ending_the_run() -> None:
    script = Script(
        [
            Turn(tool_calls=[call("delete", path="/etc/passwd")]),
            "ok",
            Turn(tool_calls=[call("delete", path="x")]),
            "never",
        ]
    )
    agent = Agent(model=script.model, tools=[delete])
    got = recorder(agent)
    agent.events.subscribe(
        lambda e: e.type == "approval_required" and agent.approve(e.event.ref, args={"path": "/tmp/safe"})
    )
    assert await agent.prompt("clean up") == "ok"
    assert agent.messages[2]["content"] == "deleted /tmp/safe"
    agent2 = Agent(model=script.model, tools=[delete])
    agent2.events.subscribe(
        lambda e: e.type == "approval_required" and agent2.reject(e.event.ref, note="not that one")
    )
    got2 = recorder(agent2)
    assert await agent2.prompt("again") == ""
    assert agent2.messages[-1]["content"] == "denied by the user: not that one"
    assert first(got2, "agent_resumed").trigger == "tool_rejected"
    assert first(got2, "agent_end").detail == "stopped after a rejected tool call"
    assert script.served == 3  # the rejection did not ask the model again
    assert "agent_end" in types(got)


async def test_a_decision_says_who_took_it_even_when_nothing_is_stored() -> None:
    script = Script([Turn(tool_calls=[call("delete", path="a.txt")]), "kept"])
    agent = Agent(model=script.model, tools=[delete])
    got = recorder(agent)
    agent.events.subscribe(
        lambda e: (
            e.type == "approval_required"
            and agent.reject(e.event.ref, note="keep it", auto_resume=True, by="ada@example.com")
        )
    )
    assert await agent.prompt("delete a.txt") == "kept"
    decided = first(got, "tool_decided")
    assert (decided.call_id, decided.approved, decided.how, decided.by, decided.note) == (
        "call_1_delete",
        False,
        "person",
        "ada@example.com",
        "keep it",
    )
    # said before the run goes on, so a view marks the call denied before anything else happens
    assert types(got).index("tool_decided") < types(got).index("agent_resumed")


async def test_edited_arguments_that_do_not_fit_the_tool_are_refused_and_the_call_still_waits() -> None:
    script = Script([Turn(tool_calls=[call("delete", path="a.txt")]), "ok"])
    agent = Agent(model=script.model, tools=[delete])
    got = recorder(agent)
    handle = agent.prompt("clean up")
    while not agent.status()["pending_approvals"]:  # the call waits for a decision
        await asyncio.sleep(0.001)
    [pending] = agent.status()["pending_approvals"]
    ref = pending["ref"]
    for edited, words in [({"path": 7}, "path must be text"), ({}, "path is required")]:
        with pytest.raises(InvalidInputError, match=words) as info:
            agent.approve(ref, args=edited)
        assert info.value.field == f"args.{words.split()[0]}"
    assert not handle.done() and "agent_resumed" not in types(got)
    agent.approve(ref, args={"path": "b.txt"})
    assert await handle == "ok"
    assert agent.messages[2]["content"] == "deleted b.txt"


async def test_steering_is_applied_at_the_next_turn_gap_and_a_full_queue_rejects() -> None:
    script = Script([Turn(tool_calls=[call("add", a=1, b=1)]), "steered answer"])
    agent = Agent(model=script.model, tools=[add], max_steering_queue=1)
    got = recorder(agent)
    results: list[Any] = []

    def steer(e: Any) -> None:
        if e.type == "tool_calls":
            results.append(agent.steer("use Roman numerals"))
            results.append(agent.steer("and be brief"))

    agent.events.subscribe(steer)
    assert await agent.prompt("1+1?") == "steered answer"
    assert [(r.accepted, r.status) for r in results] == [(True, "queued"), (False, "rejected_full")]
    assert [e.event.status for e in got if e.type == "steering_received"] == ["queued", "rejected_full"]
    assert first(got, "steering_applied").texts == ("use Roman numerals",)
    second_request = script.requests[1]
    assert second_request[-1] == {"role": "user", "content": "use Roman numerals"}
    assert types(got).index("steering_applied") < types(got).index("agent_resumed")
    idle = agent.steer("now something else")
    assert (idle.accepted, idle.status) == (True, "started")
    # it ran as a prompt; the script has no turn left, and its answer says so
    assert await idle.handle == (  # type: ignore[misc]
        f"(the offline script '{script.name}' has no more turns: give it more turns, or pick another model)"
    )


async def test_abort_mid_stream_lands_within_100_ms_and_nothing_streams_after_it() -> None:
    script = Script([Turn(" ".join(f"w{i}" for i in range(400)), chunk_delay=0.01)])
    agent = Agent(model=script.model)
    got = recorder(agent)
    handle = agent.prompt("talk")
    while types(got).count("message_delta") < 5:
        await asyncio.sleep(0.001)
    t0 = time.perf_counter()
    assert kernel.abort(agent, reason="timeout") == "timeout"
    emitted = time.perf_counter() - t0
    with pytest.raises(AbortedError) as err:
        await handle
    landed = time.perf_counter() - t0
    assert err.value.reason == "timeout"
    assert emitted < 0.1 and landed < 0.1, (emitted, landed)
    i = types(got).index("agent_abort")
    assert "message_delta" not in types(got)[i:]
    assert agent.state.value == "idle"
    await asyncio.sleep(0.05)
    assert "message_delta" not in types(got)[i:]


@pytest.mark.parametrize(
    ("kill_tools", "survivors"),
    [("running", ["immune"]), ("all", []), ("none", ["immune", "killable"])],
)
async def test_abort_mid_tool_lands_within_100_ms_and_kills_what_it_is_told(
    kill_tools: str, survivors: list[str]
) -> None:
    finished: list[str] = []

    async def nap(name: str) -> str:
        await asyncio.sleep(0.3)
        finished.append(name)
        return name

    @tool
    async def slow() -> str:
        "Sleep, then report."
        return await nap("killable")

    @tool(interrupt_immune=True)
    async def guarded() -> str:
        "Sleep, then report; not interrupted by abort or steering."
        return await nap("immune")

    script = Script([Turn(tool_calls=[call("slow"), call("guarded")])])
    agent = Agent(model=script.model, tools=[slow, guarded])
    got = recorder(agent)
    handle = agent.prompt("go")
    while types(got).count("tool_execution_start") < 2:
        await asyncio.sleep(0.001)
    t0 = time.perf_counter()
    agent.abort(kill_tools=kill_tools)
    with pytest.raises(AbortedError):
        await handle
    assert time.perf_counter() - t0 < 0.1
    await asyncio.sleep(0.4)
    assert sorted(finished) == survivors
    tool_msgs = [m["content"] for m in agent.messages if m["role"] == "tool"]
    assert tool_msgs == ["interrupted: the run was aborted (user_cancelled)"] * 2


async def test_abort_reasons_are_normalised_and_clear_queue_false_keeps_the_queue() -> None:
    assert kernel.normalize_abort_reason(None) == "user_cancelled"
    assert kernel.normalize_abort_reason("Budget-Exceeded") == "budget_exceeded"
    assert kernel.normalize_abort_reason("my cat") == "unknown"
    script = Script([Turn("slow " * 50, chunk_delay=0.01), "second answer"])
    agent = Agent(model=script.model)
    got = recorder(agent)
    h1 = agent.prompt("one")
    h2 = agent.prompt("two")
    assert h2.queued
    while "message_delta" not in types(got):
        await asyncio.sleep(0.001)
    agent.abort("my cat", clear_queue=False)
    with pytest.raises(AbortedError):
        await h1
    assert await h2 == "second answer"
    assert first(got, "agent_abort").reason == "unknown"
    assert first(got, "agent_abort").detail == "my cat"


async def test_switch_model_applies_to_the_next_request() -> None:
    a = Script([Turn(tool_calls=[call("add", a=2, b=2)])])
    b = Script(["four, from b"])
    agent = Agent(model=a.model, tools=[add])
    got = recorder(agent)
    agent.events.subscribe(
        lambda e: e.type == "tool_calls" and kernel.switch_model(agent, b.model, reason="cheaper")
    )
    assert await agent.prompt("2+2") == "four, from b"
    sw = first(got, "model_switched")
    assert (sw.from_model, sw.to_model, sw.reason, sw.turn, sw.provider_opts_changed) == (
        a.model,
        b.model,
        "cheaper",
        1,
        False,
    )
    assert [e.event.model for e in got if e.type == "request_start"] == [a.model, b.model]
    with pytest.raises(InvalidInputError, match="openai/gpt-4o-mini"):
        agent.switch_model("gpt-4o")


async def test_last_request_shows_each_request_as_the_model_received_it() -> None:
    script = Script([Turn("Adding.", tool_calls=[call("add", a=2, b=3)]), "5"])
    agent = Agent(model=script.model, tools=[add], prompt_mode="none", system_prompt="Add.")
    assert agent.last_request is None
    sent: list[Any] = []
    agent.events.subscribe(lambda e: sent.append(agent.last_request) if e.type == "request_start" else None)
    assert await agent.prompt("2+3?") == "Adding.\n\n5"
    assert [list(r.messages) for r in sent] == script.requests  # exactly what reached the model
    assert [m["role"] for m in sent[1].messages] == ["system", "user", "assistant", "tool"]
    assert sent[1].messages[-1] == {"role": "tool", "tool_call_id": "call_1_add", "content": "5"}
    assert [(r.model, list(r.tools)) for r in sent] == [(script.model, [add.schema()])] * 2
    assert agent.last_request is sent[-1]


async def test_tools_attach_atomically_and_a_detached_tool_gives_an_error_result() -> None:
    script = Script([Turn(tool_calls=[call("add", a=1, b=2)]), "recovered"])
    agent = Agent(model=script.model, tools=[add])
    got = recorder(agent)

    @tool
    def mul(a: int, b: int) -> int:
        "Multiply."
        return a * b

    with pytest.raises(InvalidInputError, match="already attached"):
        kernel.attach_tools(agent, [mul, add])
    assert sorted(agent.tools) == ["add"]  # nothing attached
    assert kernel.attach_tools(agent, [mul]) == ["mul"]
    assert kernel.detach_tool(agent, "add") == "add"
    with pytest.raises(NotFoundError):
        kernel.detach_tools(agent, ["mul", "nope"])
    assert sorted(agent.tools) == ["mul"]
    assert await agent.prompt("1+2") == "recovered"
    assert first(got, "tool_call_unknown").name == "add"
    assert agent.messages[2]["content"] == "unknown tool 'add'; available tools: mul"
    attached, detached = kernel.replace_tools(agent, [add])
    assert (attached, detached) == (["add"], ["mul"])
    assert [(e.event.attached, e.event.detached) for e in got if e.type == "tools_updated"] == [
        (("mul",), ()),
        (("add",), ("mul",)),
    ]


async def test_monitor_reports_how_runs_end() -> None:
    loop_script = Script([Turn(tool_calls=[call("add", a=1, b=1)])], repeat_last=True)
    agent = Agent(model=loop_script.model, tools=[add], max_turns=2, max_identical_tool_calls=10)
    mon = kernel.monitor(agent)
    with pytest.raises(AbortedError, match="max_turns_exceeded"):
        await agent.prompt("loop")
    assert (await mon).kind == "max_turns_exceeded"
    mon = agent.monitor()
    await kernel.stop(agent)
    assert (await mon).kind == "shutdown"
    with pytest.raises(AgentNotAliveError):
        kernel.prompt(agent, "again")


async def test_runaway_identical_calls_are_stopped_with_a_clear_event() -> None:
    script = Script([Turn(tool_calls=[call("add", a=1, b=1)])], repeat_last=True)
    agent = Agent(model=script.model, tools=[add])
    got = recorder(agent)
    with pytest.raises(AbortedError, match="loop_detected"):
        await agent.prompt("loop")
    loop = first(got, "loop_detected")
    assert (loop.kind, loop.detail) == ("repeated_call", "add was called 3 times with the same arguments")
    assert script.served == 3


def test_loop_guard_sees_patterns_and_failure_streaks() -> None:
    from cmdc_nb.kernel.loop_guard import LoopGuard

    g = LoopGuard(max_identical=10, max_failures=3)
    seen = [g.observe(n, {}) for n in ["a", "b", "a", "b", "a", "b"]]
    assert seen[-1] == ("repeating_pattern", "the same 2 calls repeated 3 times") and seen[:-1] == [None] * 5
    g.reset()
    assert [g.batch(True, "x"), g.batch(False, "x"), g.batch(True, "x"), g.batch(True, "x")] == [None] * 4
    assert g.batch(True, "x") == (
        "consecutive_failures",
        "the tool calls of 3 turns in a row failed (last: x)",
    )


async def test_user_respond_answers_a_tool_that_asks() -> None:
    @tool
    async def ask(question: str, ctx: ToolContext) -> str:
        "Ask the user."
        assert ctx.ask_user is not None
        return await ctx.ask_user(question, [{"id": "y", "label": "Yes"}])

    script = Script([Turn(tool_calls=[call("ask", question="Proceed?")]), "thanks"])
    agent = Agent(model=script.model, tools=[ask])
    got = recorder(agent)
    agent.events.subscribe(
        lambda e: e.type == "ask_user" and kernel.user_respond(agent, e.event.ref, "yes please")
    )
    assert await agent.prompt("go") == "thanks"
    asked = first(got, "ask_user")
    assert (asked.question, asked.options) == ("Proceed?", ({"id": "y", "label": "Yes"},))
    assert agent.messages[2]["content"] == "yes please"
    assert first(got, "agent_resumed").trigger == "user_respond"


async def test_tool_calls_of_a_turn_run_concurrently_with_timeouts_and_retries() -> None:
    attempts: list[int] = []

    @tool
    async def nap() -> str:
        "Sleep 0.2 s."
        await asyncio.sleep(0.2)
        return "rested"

    @tool(timeout_s=0.05)
    async def hang() -> str:
        "Never returns in time."
        await asyncio.sleep(5)
        return "never"

    @tool(retries=1)
    def flaky() -> str:
        "Fails once."
        attempts.append(1)
        if len(attempts) == 1:
            raise RuntimeError("first try fails")
        return "second try works"

    script = Script(
        [Turn(tool_calls=[call("nap", id="n1"), call("nap", id="n2"), call("hang"), call("flaky")]), "done"]
    )
    agent = Agent(model=script.model, tools=[nap, hang, flaky], tool_retry_delay_s=0)
    got = recorder(agent)
    assert await agent.prompt("go") == "done"
    kinds = [
        (e.type, e.event.call_id) for e in got if e.type in ("tool_execution_start", "tool_execution_end")
    ]
    first_end = next(i for i, (k, _) in enumerate(kinds) if k == "tool_execution_end")
    started_before = {c for k, c in kinds[:first_end] if k == "tool_execution_start"}
    assert {"n1", "n2"} <= started_before  # both naps were running at once
    results = {m["tool_call_id"]: m["content"] for m in agent.messages if m["role"] == "tool"}
    assert results == {
        "n1": "rested",
        "n2": "rested",
        "call_3_hang": "timed out after 0.05 s",
        "call_4_flaky": "second try works",
    }
    metrics = [e.event for e in got if e.type == "tool_execution_metrics" and e.event.duration_ms is not None]
    assert {m.call_id: m.attempts for m in metrics}["call_4_flaky"] == 2


async def test_events_replay_since_with_types_then_follow_live() -> None:
    script = Script(["one", "two"])
    agent = Agent(model=script.model, event_buffer_size=100)
    await agent.prompt("first")
    envs = agent.events.replay()
    assert [e.index for e in envs] == list(range(1, len(envs) + 1))
    since = envs[2].index
    got: list[Any] = []
    sub = kernel.subscribe(agent, got.append, since=since, types=["message_delta"])
    assert {e.type for e in got} == {"message_delta"} and all(e.index > since for e in got)
    n = len(got)
    await agent.prompt("second")
    live = got[n:]
    assert "agent_start" in types(live) and "agent_end" in types(live)  # live events are not filtered
    sub.close()
    stream = kernel.subscribe(agent, since=0, types=["agent_end"])
    replayed = [await asyncio.wait_for(stream.__anext__(), 1) for _ in range(2)]
    assert [e.event.reply for e in replayed] == ["one", "two"]
    stream.close()


def test_the_facade_names_unknown_and_dead_agents() -> None:
    with pytest.raises(NotFoundError, match="agent not found"):
        kernel.status("no-such-agent")


def test_options_are_validated_with_the_valid_choices_listed(tmp_path: Any) -> None:
    with pytest.raises(InvalidInputError, match="full, task, minimal, none"):
        Agent(model="scripted/x", prompt_mode="chatty")
    with pytest.raises(InvalidInputError, match="unknown option"):
        Agent(model="scripted/x", temprature=0.2)
    with pytest.raises(InvalidInputError, match="names no provider"):
        Agent(model="gpt-4o")
    with pytest.raises(InvalidInputError, match="unknown provider 'nosuch'"):
        Agent(model="nosuch/model")
    with pytest.raises(InvalidInputError, match="not an existing directory"):
        Agent(model="scripted/x", working_dir=str(tmp_path / "missing"))
    with pytest.raises(InvalidInputError, match="temperature"):
        Agent(model="scripted/x", temperature=3)
    assert Agent(model="anthropic:claude-sonnet-4-5").model == "anthropic/claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("tool_timeout_s", float("nan")),
        ("tool_timeout_s", float("inf")),
        ("request_timeout_s", float("nan")),
        ("temperature", float("nan")),
        ("tool_retry_delay_s", float("-inf")),
        ("interrupt_immune_tools", "shell"),  # a string is not a list of names
        ("fallback_models", "openai/gpt-4o-mini"),
        ("tools", "shell"),
        ("plugins", {"name": "x"}),
        ("messages", "hello"),
        ("max_turns", True),  # a bool is not a count
        ("max_turns", 2.5),
    ],
)
def test_options_of_the_wrong_type_are_refused_naming_the_field(option: str, value: Any) -> None:
    with pytest.raises(InvalidInputError) as err:
        Agent(model="scripted/x", **{option: value})
    assert err.value.field == option


@pytest.mark.parametrize(
    ("mode", "present", "absent"),
    [
        ("full", ["Jupyter notebook", "## Tools\n- add: Add two integers.", "Be a pirate."], []),
        ("task", ["focused sub-agent", "Be a pirate."], ["## Tools"]),
        ("minimal", ["Tools: add", "Be a pirate."], ["Jupyter"]),
        ("none", ["Be a pirate."], ["Tools", "Jupyter"]),
    ],
)
async def test_prompt_modes(mode: str, present: list[str], absent: list[str]) -> None:
    script = Script(["arr"])
    agent = Agent(model=script.model, tools=[add], prompt_mode=mode, system_prompt="Be a pirate.")
    await agent.prompt("hi")
    system = script.requests[0][0]
    assert system["role"] == "system"
    assert all(p in system["content"] for p in present) and not any(a in system["content"] for a in absent)
    if mode == "none":
        assert system["content"] == "Be a pirate."


async def test_prior_messages_and_collect_reply() -> None:
    script = Script(["Your name is Ada."])
    agent = kernel.create_agent(
        model=script.model,
        messages=[{"role": "user", "content": "I am Ada."}, {"role": "assistant", "content": "Hello Ada."}],
    )
    agent.prompt("What is my name?")
    assert await kernel.collect_reply(agent) == "Your name is Ada."
    assert script.requests[0][1:3] == [
        {"role": "user", "content": "I am Ada."},
        {"role": "assistant", "content": "Hello Ada."},
    ]
    assert await kernel.collect_reply(agent) == "Your name is Ada."  # idle: the last reply
    assert kernel.messages(agent)[-1] == {"role": "assistant", "content": "Your name is Ada."}


async def test_run_refuses_to_block_a_running_loop() -> None:
    agent = Agent(model="scripted/x")
    with pytest.raises(AgentError, match=r"await agent\.prompt"):
        agent.run("hi")


def test_run_works_in_a_script() -> None:
    script = Script([Turn(tool_calls=[call("add", a=20, b=22)]), "42"])
    agent = Agent(model=script.model, tools=[add])
    assert agent.run("20+22?") == "42"
    assert agent.run  # the agent keeps its loop between run() calls
    script.turns.append(Turn("again"))
    assert agent.run("once more") == "again"


async def test_every_facade_function_takes_an_agent_or_its_id() -> None:
    script = Script([Turn(tool_calls=[call("add", a=1, b=2)]), "three"])
    agent = kernel.create_agent(model=script.model, agent_id="facade-demo", user_data={"tier": "pro"})
    assert kernel.agent_of("facade-demo") is agent and agent in kernel.list_agents()
    assert kernel.attach_tool("facade-demo", add) == "add"
    got = recorder(agent)
    steer = kernel.steer("facade-demo", "what is 1+2?")  # idle: a prompt
    assert steer.status == "started" and steer.handle is not None
    assert await steer.handle == "three"
    assert kernel.status("facade-demo")["state"] == "idle"
    assert [e.type for e in got][:2] == ["steering_received", "prompt_received"]
    assert kernel.abort("facade-demo") == "user_cancelled"  # from idle: still an event, at once
    assert got[-1].type == "agent_abort" and got[-1].event.state == "idle"
    await kernel.stop("facade-demo")
    with pytest.raises(NotFoundError):
        kernel.prompt("facade-demo", "hello?")
    with pytest.raises(AgentNotAliveError):
        kernel.prompt(agent, "hello?")


async def test_user_data_reaches_tools_and_plugin_events() -> None:
    @tool
    def whoami(ctx: ToolContext) -> str:
        "Who is asking."
        ctx.emit("looked_up", {"by": "whoami"})
        return str(ctx.user_data["user"])

    class Shout(kernel.Plugin):
        def on_after_turn(self, event: kernel.HookEvent, ctx: ToolContext) -> kernel.Action:
            return kernel.Emit("turn_over", {"outcome": event.outcome})

    script = Script([Turn(tool_calls=[call("whoami")]), "you are ada"])
    agent = Agent(model=script.model, tools=[whoami], plugins=[Shout()], user_data={"user": "ada"})
    got = recorder(agent)
    assert await agent.prompt("who am I?") == "you are ada"
    assert agent.messages[2]["content"] == "ada"
    events = [(e.event.plugin, e.event.name, e.event.payload) for e in got if e.type == "plugin_event"]
    assert events == [
        ("tool", "looked_up", {"by": "whoami"}),
        ("Shout", "turn_over", {"outcome": "finished", "user_data": {"user": "ada"}}),
    ]


async def test_compaction_keeps_recent_messages_and_files_the_rest(tmp_path: Any) -> None:
    script = Script(["one", "two", "three", "A short summary."])
    agent = Agent(model=script.model, working_dir=str(tmp_path))
    for q in ("a", "b", "c"):
        await agent.prompt(q)
    event = await agent.compact(keep_last=2)
    assert event is not None and (event.messages_before, event.removed, event.messages_after) == (6, 4, 3)
    assert agent.messages[0] == {
        "role": "user",
        "content": "[Summary of the earlier conversation]\nA short summary.",
    }
    assert agent.messages[1:] == [{"role": "user", "content": "c"}, {"role": "assistant", "content": "three"}]
    [saved] = (tmp_path / ".cmdc" / "conversation_history").iterdir()
    assert [m["content"] for m in __import__("json").loads(saved.read_text())] == ["a", "one", "b", "two"]


async def test_an_api_key_in_provider_opts_never_shows() -> None:
    key = "sk-sentinel-provider-key-0123456789"
    script = Script(["ok"])
    agent = Agent(model=script.model, provider_opts={"api_key": key})
    got = recorder(agent)
    await agent.prompt("hi")
    agent.switch_model(script.model, provider_opts={"api_key": key + "2"}, reason="rotate")
    shown = repr(agent) + repr(agent.options) + str(agent.status()) + str([e.to_dict() for e in got])
    assert "sentinel" not in shown


async def test_approve_and_user_respond_work_from_another_thread() -> None:
    @tool
    async def ask(ctx: ToolContext) -> str:
        "Ask."
        assert ctx.ask_user is not None
        return await ctx.ask_user("name?")

    script = Script([Turn(tool_calls=[call("delete", path="x"), call("ask")]), "ok"])
    agent = Agent(model=script.model, tools=[delete, ask])
    handle = agent.prompt("go")
    while not (agent.status()["pending_approvals"] and agent.status()["pending_user_inputs"]):
        await asyncio.sleep(0.005)
    ref = agent.status()["pending_approvals"][0]["ref"]
    question = agent.status()["pending_user_inputs"][0]["ref"]
    await asyncio.to_thread(agent.approve, ref)  # e.g. a server thread
    await asyncio.to_thread(agent.user_respond, question, "Ada")
    assert await asyncio.wait_for(handle, CEILING_S) == "ok"
    assert [m["content"] for m in agent.messages if m["role"] == "tool"] == ["deleted x", "Ada"]
