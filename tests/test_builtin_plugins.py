"""The built-in plugins and agent tools, end to end with scripted models."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest

from cmdc_nb import agents, budgets, pricing, sessions
from cmdc_nb.errors import AbortedError, InvalidInputError
from cmdc_nb.kernel import Agent, ToolError, tool
from cmdc_nb.kernel.options import SubAgent
from cmdc_nb.plugins import (
    CODER,
    CostGuard,
    EventLogger,
    LargeResultOffload,
    MemoryFlush,
    MemoryLoader,
    ModelRouter,
    OutputFilter,
    PatchToolCalls,
    Plan,
    Planning,
    Recovery,
    Reflection,
    Skills,
    discover_skills,
)
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.store.models import User
from cmdc_nb.toolkit import builtin_tools
from cmdc_nb.workspace import Workspace


def recorder(agent: Agent) -> list[Any]:
    got: list[Any] = []
    agent.events.subscribe(got.append)
    return got


def of(got: list[Any], type_: str) -> list[Any]:
    return [e.event for e in got if e.type == type_]


LONG = "Please read the README of this project and write me a short summary of it."


async def test_a_plan_is_produced_shown_advanced_and_finished(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# Demo\nA tiny project.\n")
    script = Script(
        [
            "# Plan: summarise the README\n- [ ] Read README.md\n- [ ] Write the summary",
            Turn(
                tool_calls=[
                    call("update_plan", step="1", status="in_progress", id="u1"),
                    call("read_file", path="README.md", id="r1"),
                ]
            ),
            Turn(tool_calls=[call("update_plan", step="1", status="completed", note="read it", id="u2")]),
            Turn(tool_calls=[call("update_plan", step="2", status="completed", id="u3")]),
            "Summary: a tiny demo project.",
        ]
    )
    planning = Planning()
    agent = Agent(
        model=script.model,
        tools=builtin_tools(include=["read_file"]),
        plugins=[planning],
        working_dir=str(tmp_path),
    )
    got = recorder(agent)
    reply = await agent.prompt(LONG)
    assert reply.endswith("Summary: a tiny demo project.")
    # 1. asked for a plan, 2. the plan is in the system prompt of the next requests, as it progresses
    assert "write a short plan for this task" in script.requests[0][-1]["content"]
    second_system = script.requests[1][0]["content"]
    assert "## plan\nYou are following this plan (0/2 done). Current step: 1. Read README.md" in second_system
    assert "- [ ] 1. Read README.md\n- [ ] 2. Write the summary" in second_system
    assert "- [x] 1. Read README.md — read it" in script.requests[3][0]["content"]
    reasons = [e.reason for e in of(got, "plan_updated")]
    assert reasons == ["generated", "advanced", "advanced", "finished"]
    assert planning.plan is not None and planning.plan.progress() == (2, 2) and planning.plan.finished
    assert of(got, "plan_updated")[-1].plan["progress"] == {"done": 2, "total": 2}


async def test_a_plan_can_wait_for_a_person_who_edits_or_rejects_it() -> None:
    script = Script(["- [ ] Step A\n- [ ] Step B", "Working on the edited plan."])
    planning = Planning(require_approval=True)
    agent = Agent(model=script.model, plugins=[planning])
    got = recorder(agent)
    handle = agent.prompt(LONG)
    while not planning.waiting_for_approval:
        await asyncio.sleep(0.005)
    assert agent.busy and not handle.done()
    with pytest.raises(InvalidInputError):
        planning.approve_plan("no list here")
    planning.approve_plan("- [ ] Only step")
    assert (await handle).endswith("Working on the edited plan.")
    assert [s.title for s in planning.plan.steps] == ["Only step"] and planning.plan.approved  # type: ignore[union-attr]
    assert [e.reason for e in of(got, "plan_updated")] == ["generated", "proposed", "approved"]

    script2 = Script(["- [ ] Risky step"])
    planning2 = Planning(require_approval=True)
    agent2 = Agent(model=script2.model, plugins=[planning2])
    handle2 = agent2.prompt(LONG)
    while not planning2.waiting_for_approval:
        await asyncio.sleep(0.005)
    planning2.reject_plan("too risky")
    with pytest.raises(AbortedError, match="plan was rejected: too risky"):
        await handle2


async def test_planning_gives_up_without_blocking_when_no_plan_comes() -> None:
    script = Script(["Sure thing!", "Still no list.", "Here is the answer anyway."], repeat_last=True)
    agent = Agent(model=script.model, plugins=[Planning(max_plan_attempts=2)])
    got = recorder(agent)
    assert await agent.prompt(LONG) == "Sure thing!\n\nStill no list."
    assert [e.name for e in of(got, "plugin_event")] == ["plan_failed"]


def test_plan_replanning_and_markdown_round_trip() -> None:
    plan = Plan.from_markdown("# Plan: release\n1. Test\n2. Tag\n3. Publish")
    plan.step_completed(1, "green").insert_step("Changelog", before=3).remove_step("2")
    assert (
        plan.to_markdown() == "# Plan: release\n- [x] 1. Test — green\n- [ ] 2. Changelog\n- [ ] 3. Publish"
    )
    plan.replace_steps(["Build", "Ship"])
    assert [(s.id, s.title, s.status) for s in plan.steps] == [
        ("1", "Test", "completed"),
        ("2", "Build", "pending"),
        ("3", "Ship", "pending"),
    ]
    again = Plan.from_markdown(plan.to_markdown())
    assert again.to_markdown() == plan.to_markdown() and plan.last_replanned_at is not None
    with pytest.raises(InvalidInputError):
        plan.set_status("1", "done")


async def test_reflection_reviews_then_approves() -> None:
    script = Script(["The answer is 41.", "The answer is 42.", "APPROVED"])
    agent = Agent(model=script.model, plugins=[Reflection(max_reviews=3)])
    got = recorder(agent)
    assert (
        await agent.prompt("What is six times seven?") == "The answer is 41.\n\nThe answer is 42.\n\nAPPROVED"
    )
    [approved] = of(got, "reflection_approved")
    assert (approved.iteration, approved.forced) == (2, False)
    # the answer accepted is the corrected one, not the review's "APPROVED" nor the first answer
    assert (approved.answer, approved.critique) == ("The answer is 42.", "APPROVED")
    assert [i.hook for i in of(got, "intervention")] == ["before_finish", "before_finish"]


async def test_reflection_stops_after_max_reviews() -> None:
    script = Script(["meh"], repeat_last=True)
    agent = Agent(
        model=script.model,
        plugins=[Reflection(max_reviews=2, pass_signal=__import__("re").compile(r"^LGTM$"))],
    )
    got = recorder(agent)
    await agent.prompt("Anything")
    assert script.served == 3
    assert [(e.iteration, e.forced, e.answer) for e in of(got, "reflection_approved")] == [(2, True, "meh")]


async def test_a_reviewer_subagent_judges_and_self_review_is_the_fallback() -> None:
    reviewer = Script(["APPROVED"])
    main = Script(["Paris."])
    agent = Agent(
        model=main.model, plugins=[Reflection(reviewer_subagent=True, reviewer_model=reviewer.model)]
    )
    got = recorder(agent)
    assert await agent.prompt("Capital of France?") == "Paris."
    assert main.served == 1 and reviewer.served == 1
    assert [e.answer for e in of(got, "reflection_approved")] == ["Paris."]
    assert [e.name for e in of(got, "subagent_start")] == ["reviewer"]
    broken = Script([Turn(error="authentication")])
    main2 = Script(["Lyon.", "APPROVED"])
    agent2 = Agent(
        model=main2.model, plugins=[Reflection(reviewer_subagent=True, reviewer_model=broken.model)]
    )
    assert await agent2.prompt("Capital of France?") == "Lyon.\n\nAPPROVED"  # reviewed by itself instead


async def test_task_runs_a_sub_agent_stored_under_the_parent_session(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="parent", ws=ws)
    child_model = Script(["The file has 3 lines."])
    parent = Script(
        [
            Turn(
                tool_calls=[call("task", description="Count the lines of notes.txt", subagent_type="counter")]
            ),
            "It has 3 lines.",
        ]
    )
    agent = Agent(
        model=parent.model,
        tools=builtin_tools(include=["task", "read_file"]),
        subagents=[SubAgent(name="counter", description="counts", model=child_model.model)],
        session=s,
        ws=ws,
    )
    got = recorder(agent)
    assert await agent.prompt("How long is notes.txt?") == "It has 3 lines."
    start, end = of(got, "subagent_start")[0], of(got, "subagent_end")[0]
    assert (start.name, start.task, end.ok, end.reply) == (
        "counter",
        "Count the lines of notes.txt",
        True,
        "The file has 3 lines.",
    )
    assert child_model.requests[0][-1] == {"role": "user", "content": "Count the lines of notes.txt"}
    calls = agents.list_agent_calls(s, ws=ws).entries
    assert sorted(c.model for c in calls) == sorted([parent.model, parent.model, child_model.model])
    assert [m.role for m in sessions.list_messages(s, ws=ws).entries] == [
        "user",
        "assistant",
        "tool_result",
        "assistant",
    ]
    with pytest.raises(InvalidInputError, match="SubAgent"):
        Agent(model=parent.model, subagents=["not a sub-agent"])


async def test_task_sub_agents_have_no_task_tool_and_time_out() -> None:
    slow_child = Script([Turn("…", delay=1.0)])
    parent = Script([Turn(tool_calls=[call("task", description="slow", subagent_type="slow")]), "gave up"])
    agent = Agent(
        model=parent.model,
        tools=builtin_tools(include=["task"]),
        subagents=[SubAgent(name="slow", model=slow_child.model, timeout_s=0.1)],
    )
    assert await agent.prompt("go") == "gave up"
    assert agent.messages[2]["content"] == "sub-agent 'slow' did not finish within 0.1 s"
    from cmdc_nb.toolkit.agentic import run_subagent

    spy = Script(["ok"])
    _reply, child = await run_subagent(agent, SubAgent(name="x", model=spy.model), "hi")
    assert "task" not in child.tools


async def test_ask_user_write_todos_and_compact_conversation() -> None:
    script = Script(
        [
            Turn(tool_calls=[call("ask_user", question="Which colour?", options=["red", "blue"])]),
            Turn(
                tool_calls=[
                    call(
                        "write_todos",
                        todos=[
                            {"id": "1", "content": "paint", "status": "in_progress"},
                            {"id": "2", "content": "dry"},
                        ],
                    )
                ]
            ),
            Turn(
                tool_calls=[
                    call(
                        "write_todos",
                        todos=[
                            {"id": "1", "content": "a", "status": "in_progress"},
                            {"id": "2", "content": "b", "status": "in_progress"},
                        ],
                    )
                ]
            ),
            Turn(tool_calls=[call("compact_conversation", keep_last=2)]),
            "A summary of what happened.",
            "Done painting.",
        ]
    )
    agent = Agent(
        model=script.model, tools=builtin_tools(include=["ask_user", "write_todos", "compact_conversation"])
    )
    got = recorder(agent)
    agent.events.subscribe(lambda e: e.type == "ask_user" and agent.user_respond(e.event.ref, "blue"))
    assert await agent.prompt("Paint the fence") == "Done painting."
    asked = of(got, "ask_user")[0]
    assert asked.options == ({"id": "1", "label": "red"}, {"id": "2", "label": "blue"})
    results = [e.event.result for e in got if e.type == "tool_execution_end"]
    assert results[0] == "blue"
    assert results[1] == "to-do list updated: 0/2 done"
    assert results[2] == "at most one to-do may be in_progress"
    assert results[3].startswith("compacted:")
    assert [t["status"] for t in agent.todos] == ["in_progress", "pending"]
    assert len(of(got, "todo_change")) == 1 and len(of(got, "compaction")) == 1
    assert agent.messages[0]["content"].startswith(
        "[Summary of the earlier conversation]\nA summary of what happened."
    )


async def test_compaction_is_triggered_by_tokens(tmp_path: Path) -> None:
    script = Script(["first done", "The summary.", "Final answer."])
    agent = Agent(model=script.model, compact_at_tokens=500, compact_keep_last=1, working_dir=str(tmp_path))
    got = recorder(agent)
    assert await agent.prompt("x" * 4000) == "first done"  # one message: nothing to compact yet
    assert of(got, "compaction") == []
    assert await agent.prompt("and then?") == "Final answer."
    [c] = of(got, "compaction")
    assert (c.summary, c.removed, c.messages_after) == ("The summary.", 2, 2)
    assert "x" * 4000 not in json.dumps(script.requests[2])  # the big prompt left the context
    assert script.requests[2][-1] == {"role": "user", "content": "and then?"}
    assert list((tmp_path / ".cmdc" / "conversation_history").iterdir())


async def test_cost_guard_limits_and_warnings() -> None:
    script = Script(
        [
            Turn(tool_calls=[call("noop")], usage=(800, 10)),
            Turn(tool_calls=[call("noop", id="b")], usage=(900, 10)),
            "never",
        ]
    )

    @tool
    def noop() -> str:
        "Nothing."
        return "ok"

    agent = Agent(
        model=script.model,
        tools=[noop],
        plugins=[CostGuard(max_tokens=1000, warn_threshold=0.5)],
        max_identical_tool_calls=10,
    )
    got = recorder(agent)
    with pytest.raises(AbortedError, match="tokens budget exhausted"):
        await agent.prompt("go")
    assert [e.payload["limit"] for e in of(got, "plugin_event") if e.name == "cost_warning"] == ["tokens"]
    assert script.served == 2


async def test_cost_guard_checks_the_workspace_budgets(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="budgeted", ws=ws)
    script = Script([Turn(tool_calls=[call("noop")], usage=(1000, 1000)), "never"])
    pricing.set_model_price(script.model, input_per_million_usd="1000", output_per_million_usd="1000", ws=ws)
    budgets.create_budget(name="tiny", limit_usd="1.5", period="daily", session=s, ws=ws)

    @tool
    def noop() -> str:
        "Nothing."
        return "ok"

    # max_tokens=1 lets the first call past the hard-budget check; it then costs $2 (usage is scripted).
    agent = Agent(model=script.model, tools=[noop], plugins=[CostGuard()], session=s, ws=ws, max_tokens=1)
    with pytest.raises(AbortedError, match="tiny"):
        await agent.prompt("go")
    assert script.served == 1  # CostGuard stopped the second request before it left


async def test_model_router_conditions() -> None:
    cheap, big = Script(["cheap"], repeat_last=True), Script(["big"], repeat_last=True)
    now = dt.datetime(2026, 11, 24, 23, 30, tzinfo=dt.UTC)
    router = ModelRouter(
        [
            (("user_data", "score", "gte", 90), big.model),
            (("time_of_day_in", [range(22, 24), range(0, 7)]), cheap.model),
        ],
        now_fn=lambda: now,
    )
    agent = Agent(model=big.model, plugins=[router], user_data={"score": 50})
    got = recorder(agent)
    assert await agent.prompt("hi") == "cheap"  # night: the cheap model
    assert of(got, "model_switched")[0].to_model == cheap.model
    vip = Agent(
        model=cheap.model,
        plugins=[ModelRouter([(("user_data", "score", "gte", 90), big.model)])],
        user_data={"score": 95},
    )
    assert await vip.prompt("hi") == "big"
    odd = ModelRouter([(("user_data", "score", "gt", 5), big.model)], default_model=cheap.model)
    weird = Agent(model=big.model, plugins=[odd], user_data={"score": "not a number"})
    assert await weird.prompt("hi") == "cheap"  # a condition that cannot be evaluated is false
    with pytest.raises(InvalidInputError, match="unknown condition"):
        ModelRouter([(("moon_phase", "full"), big.model)])
    turns = ModelRouter([(("turn_gt", 0), cheap.model)])
    assert turns.choose(agent.context()) == cheap.model
    assert (
        ModelRouter([(("token_budget_lt", 10), cheap.model)]).choose(
            Agent(model=big.model, user_data={"token_budget": 5}).context()
        )
        == cheap.model
    )


async def test_recovery_backs_off_falls_back_escalates_and_gives_up() -> None:
    backup = Script(["recovered on the backup"], repeat_last=True)
    script = Script([Turn(tool_calls=[call("flaky", id=f"f{i}")]) for i in range(3)], repeat_last=False)
    attempts: list[int] = []

    @tool(retries=1)
    def flaky() -> str:
        "Always fails."
        attempts.append(1)
        raise ToolError("broken")

    agent = Agent(
        model=script.model,
        tools=[flaky],
        plugins=[Recovery(max_retries=2, backoff_base_s=0.001, fallback_model=backup.model)],
        tool_retry_delay_s=0,
    )
    got = recorder(agent)
    assert await agent.prompt("go") == "recovered on the backup"
    assert len(attempts) == 2  # one retry, after a back-off
    assert of(got, "model_switched")[0].to_model == backup.model
    agent2 = Agent(
        model=Script([Turn(tool_calls=[call("flaky", id=f"g{i}")]) for i in range(3)]).model,
        tools=[flaky],
        plugins=[Recovery(max_retries=1, backoff_base_s=0.001)],
        max_identical_tool_calls=10,
    )
    got2 = recorder(agent2)
    with pytest.raises(AbortedError, match="flaky kept failing"):
        await agent2.prompt("go")
    assert [e.name for e in of(got2, "plugin_event")] == ["escalation", "escalation"]


async def test_output_filter_redacts_streams_messages_and_tool_results() -> None:
    key = "sk-proj-ABCDEFGHIJKLMNOPQRST123456"
    script = Script([Turn(tool_calls=[call("env")]), f"Your key is {key} — keep it safe."])

    @tool
    def env() -> str:
        "Read the environment."
        return f"OPENAI_API_KEY={key}\nHOME=/root"

    agent = Agent(model=script.model, tools=[env], plugins=[OutputFilter()])
    got = recorder(agent)
    reply = await agent.prompt("What is my key?")
    assert key not in reply and "[REDACTED:api_key]" in reply
    streamed = "".join(e.delta for e in of(got, "message_delta"))
    assert key not in streamed and streamed == reply
    assert key not in json.dumps(script.requests[1])  # the tool result was redacted before the model saw it
    assert key not in json.dumps(agent.messages)


async def test_patch_tool_calls_repairs_a_history_cut_short() -> None:
    history = [
        {"role": "user", "content": "run it"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [{"id": "x1", "type": "function", "function": {"name": "run", "arguments": "{}"}}],
        },
        {"role": "user", "content": "well?"},
    ]
    script = Script(["It was interrupted."])
    agent = Agent(model=script.model, messages=history, plugins=[PatchToolCalls()])
    await agent.prompt("and now?")
    sent = script.requests[0]
    assert sent[3] == {
        "role": "tool",
        "tool_call_id": "x1",
        "content": "Error: Tool call was interrupted or not executed.",
    }


async def test_large_results_are_offloaded_to_a_file(tmp_path: Path) -> None:
    @tool
    def dump() -> str:
        "A lot of text."
        return "".join(f"row {i}\n" for i in range(20_000))

    script = Script([Turn(tool_calls=[call("dump", id="d1")]), "ok"])
    agent = Agent(
        model=script.model,
        tools=[dump],
        plugins=[LargeResultOffload(max_chars=10_000)],
        working_dir=str(tmp_path),
    )
    got = recorder(agent)
    await agent.prompt("go")
    [off] = of(got, "large_result_offloaded")
    assert off.path == ".cmdc/large_tool_results/d1.txt" and off.chars > 100_000
    assert (tmp_path / off.path).read_text().endswith("row 19999\n")
    sent = agent.messages[2]["content"]
    assert len(sent) < 5_000 and "read_file(path='.cmdc/large_tool_results/d1.txt'" in sent


async def test_event_logger_writes_json_lines(tmp_path: Path) -> None:
    script = Script(["hello there"])
    agent = Agent(model=script.model, plugins=[EventLogger()], working_dir=str(tmp_path))
    await agent.prompt("hi")
    await agent.stop()
    lines = [
        json.loads(x) for x in (tmp_path / ".cmdc" / "logs" / f"{agent.id}.jsonl").read_text().splitlines()
    ]
    kinds = [x["event"] for x in lines]
    assert "agent_end" in kinds and "message_delta" not in kinds  # info level
    assert {"ts", "agent", "session", "event", "data", "level", "turn"} <= set(lines[0])
    debug = Agent(
        model=Script(["a b"]).model, plugins=[EventLogger(level="debug", log_file=str(tmp_path / "d.jsonl"))]
    )
    await debug.prompt("hi")
    assert "message_delta" in (tmp_path / "d.jsonl").read_text()


async def test_memory_is_loaded_and_flushed_before_compaction(tmp_path: Path) -> None:
    (tmp_path / "MEMORY.md").write_text("- The user prefers short answers.\n")
    script = Script(["Noted.", "Sure.", "A summary.", "Ok."])
    flush = MemoryFlush()
    agent = Agent(model=script.model, plugins=[MemoryLoader(), flush], working_dir=str(tmp_path))
    got = recorder(agent)
    await agent.prompt("Remember that we use PostgreSQL 18. Also, what's up?")
    assert (
        "<agent_memory>" in script.requests[0][0]["content"]
        and "prefers short answers" in script.requests[0][0]["content"]
    )
    await agent.prompt("I am Ada.")
    await agent.compact(keep_last=1)
    memory = (tmp_path / "MEMORY.md").read_text()
    assert memory == "- The user prefers short answers.\n- we use PostgreSQL 18.\n- I am Ada.\n"
    assert of(got, "memory_flushed")[0].count == 2
    agent.messages[:0] = [
        {"role": "user", "content": "Remember that we use PostgreSQL 18."},
        {"role": "assistant", "content": "ok"},
    ]
    await agent.compact(keep_last=1, summary="s")
    assert (tmp_path / "MEMORY.md").read_text() == memory  # de-duplicated
    bad = MemoryFlush(extract_fn=lambda messages: 1 / 0)
    agent2 = Agent(model=Script(["x"]).model, plugins=[bad], working_dir=str(tmp_path))
    got2 = recorder(agent2)
    await agent2.prompt("a")
    assert await agent2.compact(keep_last=1, summary="s") is not None  # compaction went on
    assert "memory flush failed" in of(got2, "plugin_error")[0].error


def _skill(folder: Path, name: str, description: str, body: str = "Do it well.") -> None:
    (folder / name).mkdir(parents=True)
    (folder / name / "SKILL.md").write_text(f"---\nname: {name}\ndescription: {description}\n---\n{body}\n")


async def test_skills_are_discovered_later_folders_win_and_load_on_demand(tmp_path: Path) -> None:
    user, project = tmp_path / "user", tmp_path / "project"
    _skill(user, "review", "Review code (user)")
    _skill(project, "review", "Review code (project)", body="Check the tests first.")
    _skill(project, "deploy", "Deploy safely")
    (project / "broken").mkdir()
    (project / "broken" / "SKILL.md").write_text("no frontmatter")
    found = discover_skills([(user, "user"), (project, "project")])
    assert [(s.name, s.description, s.source) for s in found] == [
        ("deploy", "Deploy safely", "project"),
        ("review", "Review code (project)", "project"),
    ]
    script = Script([Turn(tool_calls=[call("load_skill", name="review")]), "ok"])
    agent = Agent(model=script.model, plugins=[Skills([(user, "user"), (project, "project")])])
    await agent.prompt("review my code")
    assert "- review: Review code (project)" in script.requests[0][0]["content"]
    assert agent.messages[2]["content"] == "Check the tests first.\n"


async def test_the_coder_blueprint_gives_each_agent_fresh_plugins(tmp_path: Path) -> None:
    a = CODER.create(model="scripted/x", working_dir=str(tmp_path))
    b = CODER.create(model="scripted/x", working_dir=str(tmp_path))
    assert sorted(a.tools) == sorted(t.name for t in builtin_tools())
    assert [p.name for p in a.plugins.plugins] == [
        "security_guard",
        "human_approval",
        "patch_tool_calls",
        "large_result_offload",
    ]
    assert all(x is not y for x, y in zip(a.plugins.plugins, b.plugins.plugins, strict=True))
    extended = CODER.add_tools(tool(lambda: "hi", name="hello"))  # type: ignore[arg-type]
    assert "hello" in extended.create(model="scripted/x", working_dir=str(tmp_path)).tools


async def test_recovery_alone_makes_a_failing_tool_retry() -> None:
    tries: list[int] = []

    @tool
    def shaky() -> str:
        "Works on the third try."
        tries.append(1)
        if len(tries) < 3:
            raise ToolError("not yet")
        return "worked"

    script = Script([Turn(tool_calls=[call("shaky")]), "done"])
    agent = Agent(model=script.model, tools=[shaky], plugins=[Recovery(max_retries=3, backoff_base_s=0.001)])
    assert await agent.prompt("go") == "done"
    assert len(tries) == 3 and agent.messages[2]["content"] == "worked"


def test_plan_steps_fail_skip_and_carry_notes() -> None:
    plan = Plan.from_markdown("- [ ] Build\n- [ ] Test\n- [ ] Deploy")
    plan.step_started(1).annotate_step(1, "using the cache").step_failed(1, "compiler error")
    plan.step_skipped("3", "blocked by the build")
    assert [s.status for s in plan.steps] == ["failed", "pending", "skipped"]
    assert plan.progress() == (1, 3) and not plan.finished and plan.current is plan.steps[1]
    assert plan.to_markdown() == (
        "- [!] 1. Build — compiler error\n  - using the cache\n- [ ] 2. Test\n- [-] 3. Deploy — blocked by the build"
    )


def test_blueprints_take_plugin_factories(tmp_path: Path) -> None:
    from cmdc_nb.plugins import BASE

    guarded = BASE.add_plugins(lambda: CostGuard(max_tokens=10))
    a, b = (
        guarded.create(model="scripted/x", working_dir=str(tmp_path)),
        guarded.create(model="scripted/x", working_dir=str(tmp_path)),
    )
    assert [p.name for p in a.plugins.plugins] == [
        "event_logger",
        "security_guard",
        "patch_tool_calls",
        "cost_guard",
    ]
    assert a.plugins.plugins[-1] is not b.plugins.plugins[-1]
