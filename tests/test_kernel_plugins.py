"""Every hook × action cell of the plugin matrix, end to end with the scripted model.

One scenario reaches every hook: a prompt, a response with two tool calls (`add` works, `flaky` fails),
a final answer, then steering, compaction and stop. A plugin `p1` returns one action at one hook (once);
a spy plugin after it records which hooks it still saw, so short-circuits are visible.
"""

from __future__ import annotations

import asyncio
import tempfile
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest

from cmdc_nb.errors import AbortedError
from cmdc_nb.kernel import (
    ALLOWED,
    Abort,
    Action,
    Agent,
    BlockTool,
    Continue,
    Emit,
    Hook,
    HookEvent,
    Intervene,
    Plugin,
    ReplaceToolArgs,
    ReplaceToolResult,
    RequireApproval,
    Skip,
    SwitchModel,
    ToolContext,
    ToolError,
    hook_action_matrix,
    tool,
)
from cmdc_nb.kernel.plugins import ACTION_KINDS
from cmdc_nb.providers import Script, Turn, call


class Once(Plugin):
    """Returns `action` the first time `hook` runs."""

    def __init__(self, hook: Hook, action: Action, *, name: str = "p1", priority: int = 100) -> None:
        super().__init__()
        self.name, self.priority, self.hook, self.action, self.fired = name, priority, hook, action, False

    def handle(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        if event.hook is self.hook and not self.fired:
            self.fired = True
            return self.action
        return None


class Spy(Plugin):
    name = "spy"
    priority = 900

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[Hook] = []

    def handle(self, event: HookEvent, ctx: ToolContext) -> None:
        self.seen.append(event.hook)


@dataclass
class Outcome:
    agent: Agent
    spy: Spy
    events: list[Any]
    reply: str | None
    error: BaseException | None
    added: list[tuple[int, int]] = field(default_factory=list)
    compacted: Any = None

    def types(self) -> list[str]:
        return [e.type for e in self.events]

    def of(self, type_: str) -> list[Any]:
        return [e.event for e in self.events if e.type == type_]

    def tool_result(self, name: str) -> str:
        ids = [
            c["id"]
            for m in self.agent.messages
            if m.get("tool_calls")
            for c in m["tool_calls"]
            if c["function"]["name"] == name
        ]
        return next(
            m["content"]
            for m in self.agent.messages
            if m.get("role") == "tool" and m["tool_call_id"] == ids[0]
        )


BASELINE = "Working.\n\ndone"


async def scenario(hook: Hook, action: Action | None) -> Outcome:
    other = Script(["from the other model"], repeat_last=True)
    script = Script(
        [
            Turn("Working.", tool_calls=[call("add", a=1, b=2), call("flaky")]),
            "done",
            "after an intervention",
        ],
        repeat_last=True,
    )
    added: list[tuple[int, int]] = []

    @tool
    def add(a: int, b: int) -> int:
        "Add two integers."
        added.append((a, b))
        return a + b

    @tool
    def flaky() -> str:
        "Always fails."
        raise ToolError("flaky failed")

    spy = Spy()
    plugins: list[Plugin] = [spy] if action is None else [Once(hook, _resolve(action, other.model)), spy]
    agent = Agent(model=script.model, tools=[add, flaky], plugins=plugins, working_dir=tempfile.mkdtemp())
    events: list[Any] = []
    agent.events.subscribe(events.append)

    def steer_once(env: Any) -> None:
        if env.type == "tool_calls" and hook is Hook.BEFORE_STEERING:
            agent.steer("please hurry")

    agent.events.subscribe(steer_once)
    agent.events.subscribe(lambda env: env.type == "approval_required" and agent.approve(env.event.ref))
    reply, error = None, None
    try:
        reply = await agent.prompt("Add one and two.")
    except AbortedError as exc:
        error = exc
    out = Outcome(agent, spy, events, reply, error, added)
    if hook is Hook.BEFORE_COMPACT:
        out.compacted = await agent.compact(keep_last=1, summary="S")
    await agent.stop()
    return out


def _resolve(action: Action, other_model: str) -> Action:
    return SwitchModel(other_model) if isinstance(action, SwitchModel) else action


ACTIONS: dict[str, Action] = {
    "continue": Continue(),
    "skip": Skip(),
    "intervene": Intervene("INTERVENTION"),
    "abort": Abort("nope"),
    "block_tool": BlockTool("not today"),
    "replace_tool_args": ReplaceToolArgs({"a": 10, "b": 20}),
    "replace_tool_result": ReplaceToolResult("replaced"),
    "emit": Emit("ping", {"n": 1}),
    "switch_model": SwitchModel("<other>"),
    "require_approval": RequireApproval(hint="check the numbers"),
}
CELLS = [(h, a) for h in Hook for a in ACTION_KINDS if a in ALLOWED[h]]
FORBIDDEN = [(h, a) for h in Hook for a in ACTION_KINDS if a not in ALLOWED[h]]


def test_the_matrix_has_the_seed_shape() -> None:
    assert len(Hook) == 13
    assert len(CELLS) == 57  # the seed's 56, plus require_approval at before_tool
    assert ALLOWED[Hook.BEFORE_TOOL] == {
        "continue",
        "block_tool",
        "replace_tool_args",
        "require_approval",
        "abort",
        "emit",
    }
    assert ALLOWED[Hook.SESSION_END] == {"continue", "emit"}


@pytest.fixture(scope="module")
def baseline_counts() -> Counter[Hook]:
    """How often the spy sees each hook when no plugin acts (steering and compaction included)."""
    counts: Counter[Hook] = Counter()
    for hook in (Hook.BEFORE_STEERING, Hook.BEFORE_COMPACT):
        out = asyncio.run(scenario(hook, None))
        counts.update(h for h in out.spy.seen if h is hook)
    out = asyncio.run(scenario(Hook.SESSION_START, None))
    assert out.reply == BASELINE
    counts.update(h for h in out.spy.seen if h not in (Hook.BEFORE_STEERING, Hook.BEFORE_COMPACT))
    return counts


def test_the_scenario_reaches_every_hook(baseline_counts: Counter[Hook]) -> None:
    assert set(baseline_counts) == set(Hook)
    assert baseline_counts[Hook.BEFORE_REQUEST] == 2 and baseline_counts[Hook.BEFORE_TOOL] == 2


def _hook_reached(hook: Hook, out: Outcome) -> bool:
    return hook in out.spy.seen


@pytest.mark.parametrize(("hook", "kind"), CELLS, ids=[f"{h.value}-{a}" for h, a in CELLS])
async def test_allowed_cell(hook: Hook, kind: str, baseline_counts: Counter[Hook]) -> None:
    out = await scenario(hook, ACTIONS[kind])
    assert not out.of("plugin_error"), out.of("plugin_error")
    if kind == "continue":
        assert out.reply == BASELINE
        assert _hook_reached(hook, out)  # the next plugin ran
    elif kind == "emit":
        ping = [e for e in out.of("plugin_event") if e.name == "ping"]
        assert [(e.plugin, e.payload) for e in ping] == [("p1", {"n": 1})]
        assert _hook_reached(hook, out)
    elif kind == "skip":
        # The pipeline stopped at p1 that once: the spy saw this hook one time less than without it.
        assert out.spy.seen.count(hook) == baseline_counts[hook] - 1
        if hook is Hook.BEFORE_COMPACT:
            assert out.compacted is None
        else:
            assert out.reply == BASELINE  # the agent's flow is unaffected
    elif kind == "abort":
        _check_abort(hook, out)
        assert out.spy.seen.count(hook) < baseline_counts[hook]  # short-circuit
    elif kind == "intervene":
        _check_intervene(hook, out)
    elif kind == "block_tool":
        assert out.added == []
        assert out.tool_result("add") == "blocked by p1: not today"
    elif kind == "replace_tool_args":
        assert out.added == [(10, 20)]
        assert out.tool_result("add") == "30"
    elif kind == "replace_tool_result":
        assert out.tool_result("add") == "replaced"
        assert out.added == [(1, 2)]
    elif kind == "require_approval":
        [asked] = out.of("approval_required")
        assert (asked.tool, asked.args, asked.hint) == ("add", {"a": 1, "b": 2}, "check the numbers")
        assert out.added == [(1, 2)] and out.reply == BASELINE  # approved, then run
    elif kind == "switch_model":
        switched = out.of("model_switched")
        assert len(switched) == 1 and switched[0].to_model.startswith("scripted/script-")
        later = [e.model for e in out.of("request_start")]
        assert switched[0].to_model in later
        assert "from the other model" in (out.reply or "")
    else:  # pragma: no cover - every allowed kind is handled above
        raise AssertionError(kind)


def _check_abort(hook: Hook, out: Outcome) -> None:
    if hook is Hook.BEFORE_STEERING:
        assert [e.status for e in out.of("steering_received")] == ["queued", "rejected_plugin"]
        assert out.reply == BASELINE
        return
    aborts = out.of("agent_abort")
    assert [a.reason for a in aborts] == ["plugin_aborted"]
    assert "p1: nope" in (aborts[0].detail or "")
    assert isinstance(out.error, AbortedError) and out.error.reason == "plugin_aborted"
    assert out.of("agent_end")[-1].reason == "plugin_aborted"


def _check_intervene(hook: Hook, out: Outcome) -> None:
    interventions = out.of("intervention")
    expected_hook = Hook.AFTER_TOOL if hook is Hook.AFTER_TOOL_BATCH else hook
    if hook is Hook.BEFORE_STEERING:
        steering = [
            m["content"]
            for m in out.agent.messages
            if m.get("role") == "user" and "hurry" in (m["content"] or "")
        ]
        assert steering == ["please hurry\n\nINTERVENTION"]
        return
    assert [i.hook for i in interventions] == [expected_hook.value]
    users = [m["content"] for m in out.agent.messages if m.get("role") == "user"]
    assert "INTERVENTION" in users
    assert _hook_reached(hook, out)  # intervene accumulates: later plugins still run
    if hook is Hook.BEFORE_FINISH:
        assert out.reply == BASELINE + "\n\nafter an intervention"  # it forced another turn


@pytest.mark.parametrize(("hook", "kind"), FORBIDDEN, ids=[f"{h.value}-{a}" for h, a in FORBIDDEN])
async def test_forbidden_cell_is_reported_and_ignored(hook: Hook, kind: str) -> None:
    out = await scenario(hook, ACTIONS[kind])
    errors = out.of("plugin_error")
    assert [(e.plugin, e.hook) for e in errors] == [("p1", hook.value)]
    assert f"{kind} is not allowed at {hook.value}" in errors[0].error
    assert out.of("agent_abort") == []
    assert out.added == [(1, 2)]


async def test_a_plugin_that_raises_is_isolated() -> None:
    class Broken(Plugin):
        priority = 10

        def on_before_request(self, event: HookEvent, ctx: ToolContext) -> None:
            raise RuntimeError("plugin bug")

    script = Script(["fine"])
    agent = Agent(model=script.model, plugins=[Broken()])
    events: list[Any] = []
    agent.events.subscribe(events.append)
    assert await agent.prompt("hello") == "fine"
    errors = [e.event for e in events if e.type == "plugin_error"]
    assert [(e.plugin, e.hook, e.error) for e in errors] == [
        ("Broken", "before_request", "RuntimeError: plugin bug")
    ]


async def test_interventions_accumulate_in_priority_order() -> None:
    script = Script(["ok"])
    agent = Agent(
        model=script.model,
        plugins=[
            Once(Hook.BEFORE_PROMPT, Intervene("second"), name="b", priority=300),
            Once(Hook.BEFORE_PROMPT, Intervene("first"), name="a", priority=20),
        ],
    )
    await agent.prompt("go")
    assert agent.messages[1] == {"role": "user", "content": "first\n\nsecond"}


async def test_replaced_args_are_seen_by_later_plugins_and_the_last_replacement_wins() -> None:
    seen: list[Mapping[str, Any]] = []

    class Watch(Plugin):
        priority = 500

        def on_before_tool(self, event: HookEvent, ctx: ToolContext) -> Action:
            seen.append(event.args)
            return ReplaceToolArgs({"a": 100, "b": 1})

    script = Script([Turn(tool_calls=[call("add", a=1, b=1)]), "ok"])

    @tool
    def add(a: int, b: int) -> int:
        "Add."
        return a + b

    agent = Agent(
        model=script.model,
        tools=[add],
        plugins=[Once(Hook.BEFORE_TOOL, ReplaceToolArgs({"a": 5, "b": 5})), Watch()],
    )
    await agent.prompt("go")
    assert seen == [{"a": 5, "b": 5}]
    assert agent.messages[2]["content"] == "101"


def test_plugin_priority_is_checked() -> None:
    class Bad(Plugin):
        priority = 0

    with pytest.raises(Exception, match="priority"):
        Agent(model="scripted/x", plugins=[Bad()])


def test_the_documented_matrix_is_the_generated_one() -> None:
    from pathlib import Path

    doc = (Path(__file__).parents[1] / "docs" / "kernel.md").read_text(encoding="utf-8")
    assert hook_action_matrix() in doc, (
        "docs/kernel.md is stale: paste cmdc_nb.kernel.hook_action_matrix() into it"
    )


def test_async_handlers_and_lists_of_actions() -> None:
    class Two(Plugin):
        async def on_before_prompt(self, event: HookEvent, ctx: ToolContext) -> list[Action]:
            await asyncio.sleep(0)
            return [Emit("one"), Intervene("extra")]

    script = Script(["ok"])
    agent = Agent(model=script.model, plugins=[Two()])
    assert agent.run("hi") == "ok"
    assert agent.messages[1]["content"] == "extra"


def test_the_documented_events_are_the_generated_table() -> None:
    from pathlib import Path

    import cmdc_nb.plugins
    import cmdc_nb.toolkit  # noqa: F401 - the features register their own event types
    from cmdc_nb.kernel.events import events_table

    doc = (Path(__file__).parents[1] / "docs" / "kernel.md").read_text(encoding="utf-8")
    assert events_table() in doc, (
        "docs/kernel.md is stale: paste cmdc_nb.kernel.events.events_table() into it"
    )


async def test_a_plugin_brings_its_own_event_type_without_touching_the_kernel() -> None:
    from cmdc_nb.kernel import AgentEvent, register_event_type
    from cmdc_nb.kernel.events import EVENT_TYPES, events_table

    @register_event_type
    @dataclass(frozen=True, slots=True)
    class Shouted(AgentEvent):
        type: ClassVar[str] = "test_shouted"
        text: str

    class Shout(Plugin):
        name = "shout"

        def on_after_response(self, event: HookEvent, ctx: ToolContext) -> None:
            ctx.agent.emit(Shouted(str(event.text).upper()))

    try:
        assert (
            EVENT_TYPES["test_shouted"] is Shouted and "`test_shouted` | `Shouted` | text" in events_table()
        )
        agent = Agent(model=Script(["hello"]).model, plugins=[Shout()])
        got: list[Any] = []
        agent.events.subscribe(got.append)
        await agent.prompt("hi")
        [shout] = [e for e in got if e.type == "test_shouted"]
        assert shout.event.text == "HELLO" and shout.to_dict()["text"] == "HELLO"

        # a type belongs to one class: another class cannot take it, nor a kernel event's
        @dataclass(frozen=True, slots=True)
        class Impostor(AgentEvent):
            type: ClassVar[str] = "agent_end"

        with pytest.raises(ValueError, match=r"already belongs to cmdc_nb\.kernel\.events\.AgentEnd"):
            register_event_type(Impostor)
        with pytest.raises(TypeError):
            register_event_type(dict)  # type: ignore[type-var]
    finally:
        EVENT_TYPES.pop("test_shouted", None)
