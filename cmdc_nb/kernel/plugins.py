"""Plugins: code that runs at the kernel's hooks and steers it with actions.

A plugin is an object with a `priority` (1–1000, smaller runs first) and a `handle(event, ctx)` method
(sync or async) — or `on_<hook>(event, ctx)` methods, which the base class dispatches to. It returns
None (continue), one action, or a list of actions. Each hook allows only some actions (the seed's
matrix below, generated from `ALLOWED` so it cannot drift); a forbidden action, or a plugin that raises,
is reported as a `plugin_error` event and the run goes on as if the plugin had said continue.

How actions combine in one hook's pipeline:
- `Continue` → next plugin. `Skip` → stop this pipeline; the agent's flow is unaffected.
- `Intervene(prompt)` accumulates: several interventions are joined in priority order.
- `Abort(reason)`, `BlockTool(reason)` short-circuit: later plugins do not run.
- `ReplaceToolArgs`, `ReplaceToolResult`, `SwitchModel` override: later plugins see the new value, the
  last one wins.
- `Emit(name, payload)` publishes a `plugin_event` at once and continues.
- `RequireApproval(required, hint)` (cmdc_nb's addition, before_tool only) makes this call wait for a
  decision, or waives the tool's own approval (`required=False`); last one wins.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.kernel.tools import ToolContext, ToolResult

__all__ = [
    "ALLOWED",
    "Abort",
    "Action",
    "BlockTool",
    "Continue",
    "Emit",
    "Hook",
    "HookEvent",
    "HookOutcome",
    "Intervene",
    "Plugin",
    "PluginPipeline",
    "ReplaceToolArgs",
    "ReplaceToolResult",
    "RequireApproval",
    "Skip",
    "SwitchModel",
    "hook_action_matrix",
]


class Hook(StrEnum):
    SESSION_START = "session_start"
    SESSION_END = "session_end"
    BEFORE_PROMPT = "before_prompt"
    BEFORE_REQUEST = "before_request"
    AFTER_RESPONSE = "after_response"
    BEFORE_TOOL = "before_tool"
    ON_TOOL_ERROR = "on_tool_error"
    AFTER_TOOL = "after_tool"
    AFTER_TOOL_BATCH = "after_tool_batch"
    BEFORE_FINISH = "before_finish"
    AFTER_TURN = "after_turn"
    BEFORE_COMPACT = "before_compact"
    BEFORE_STEERING = "before_steering"


# --- actions ------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Action:
    kind: str = field(init=False, default="action")


@dataclass(frozen=True)
class Continue(Action):
    kind: str = field(init=False, default="continue")


@dataclass(frozen=True)
class Skip(Action):
    kind: str = field(init=False, default="skip")


@dataclass(frozen=True)
class Intervene(Action):
    prompt: str
    kind: str = field(init=False, default="intervene")


@dataclass(frozen=True)
class Abort(Action):
    reason: str
    kind: str = field(init=False, default="abort")


@dataclass(frozen=True)
class BlockTool(Action):
    reason: str
    kind: str = field(init=False, default="block_tool")


@dataclass(frozen=True)
class ReplaceToolArgs(Action):
    args: Mapping[str, Any]
    kind: str = field(init=False, default="replace_tool_args")


@dataclass(frozen=True)
class ReplaceToolResult(Action):
    content: str
    is_error: bool = False
    kind: str = field(init=False, default="replace_tool_result")


@dataclass(frozen=True)
class Emit(Action):
    name: str
    payload: Any = None
    kind: str = field(init=False, default="emit")


@dataclass(frozen=True)
class RequireApproval(Action):
    """cmdc_nb's addition at before_tool: this call needs a human decision (or, with `required=False`,
    does not, though its tool asks for one — e.g. a shell command on the safe list). Override: last wins."""

    required: bool = True
    hint: str | None = None
    kind: str = field(init=False, default="require_approval")


@dataclass(frozen=True)
class SwitchModel(Action):
    model: str
    provider_opts: Mapping[str, Any] | None = None
    kind: str = field(init=False, default="switch_model")


_C, _I, _A, _S, _E, _M = "continue", "intervene", "abort", "skip", "emit", "switch_model"
ALLOWED: dict[Hook, frozenset[str]] = {
    Hook.SESSION_START: frozenset({_C, _A, _E}),
    Hook.SESSION_END: frozenset({_C, _E}),
    Hook.BEFORE_PROMPT: frozenset({_C, _I, _A, _S, _E}),
    Hook.BEFORE_REQUEST: frozenset({_C, _I, _A, _S, _E, _M}),
    Hook.AFTER_RESPONSE: frozenset({_C, _I, _A, _S, _E, _M}),
    Hook.BEFORE_TOOL: frozenset({_C, "block_tool", "replace_tool_args", "require_approval", _A, _E}),
    Hook.ON_TOOL_ERROR: frozenset({_C, _A, _S, _E, _M}),
    Hook.AFTER_TOOL: frozenset({_C, _I, _A, _E, _M, "replace_tool_result"}),
    Hook.AFTER_TOOL_BATCH: frozenset({_C, _I, _A, _E, _M}),
    Hook.BEFORE_FINISH: frozenset({_C, _I, _A, _E}),
    Hook.AFTER_TURN: frozenset({_C, _E}),
    Hook.BEFORE_COMPACT: frozenset({_C, _S, _E}),
    Hook.BEFORE_STEERING: frozenset({_C, _I, _A, _E}),
}
ACTION_KINDS = (
    _C, _I, _A, _S, "block_tool", "replace_tool_args", "replace_tool_result", _E, _M, "require_approval",
)  # fmt: skip

_WHAT = {
    Hook.SESSION_START: "the agent's first run begins",
    Hook.SESSION_END: "the agent is stopped",
    Hook.BEFORE_PROMPT: "a prompt is about to start a run (`text`)",
    Hook.BEFORE_REQUEST: "a request is about to go to the model (`messages`, `model`)",
    Hook.AFTER_RESPONSE: "a response has been received (`message`, `text`, `tool_calls`)",
    Hook.BEFORE_TOOL: "a tool is about to run (`name`, `args`, `call_id`)",
    Hook.ON_TOOL_ERROR: "a tool failed (`name`, `call_id`, `error`, `attempt`)",
    Hook.AFTER_TOOL: "a tool has a result (`name`, `call_id`, `result`)",
    Hook.AFTER_TOOL_BATCH: "all tools of a response are done (`results`)",
    Hook.BEFORE_FINISH: "the model answered without tool calls (`reply`)",
    Hook.AFTER_TURN: "a run ends, finished or aborted (`outcome`, `abort_reason`, `duration_ms`, …)",
    Hook.BEFORE_COMPACT: "the conversation is about to be compacted (`messages`)",
    Hook.BEFORE_STEERING: "a steering message is about to be queued (`text`)",
}


def hook_action_matrix() -> str:
    """The hook × action table as Markdown, generated from `ALLOWED` (docs/kernel.md embeds it)."""
    head = "| hook | when | " + " | ".join(ACTION_KINDS) + " |"
    rule = "|---|---|" + "|".join(":-:" for _ in ACTION_KINDS) + "|"
    rows = [
        f"| `{h.value}` | {_WHAT[h]} | "
        + " | ".join("✓" if a in ALLOWED[h] else "" for a in ACTION_KINDS)
        + " |"
        for h in Hook
    ]
    return "\n".join([head, rule, *rows])


# --- events and plugins -------------------------------------------------------------------------------
@dataclass(frozen=True)
class HookEvent:
    """What a hook hands to plugins: the hook and its payload (also readable as attributes)."""

    hook: Hook
    payload: Mapping[str, Any] = field(default_factory=dict)

    def __getattr__(self, name: str) -> Any:
        try:
            return self.payload[name]
        except KeyError:
            raise AttributeError(
                f"{self.hook.value} has no {name!r} (it has: {', '.join(self.payload)})"
            ) from None


Returned = Action | Sequence[Action] | None


class Plugin:
    """Base class for plugins. Override `handle`, or define `on_<hook>` methods (e.g. `on_before_tool`)."""

    name: str = ""
    priority: int = 500
    # A safety plugin every sub-agent of an agent that has it gets too (a fresh copy), whatever plugins
    # the sub-agent's spec names: a child shares its parent's sandbox, so it must keep its limits.
    inherited_by_subagents: ClassVar[bool] = False

    def __init__(self) -> None:
        if not self.name:
            self.name = type(self).__name__

    def describe(self) -> str:
        return (inspect.getdoc(self) or self.name).splitlines()[0]

    def handle(self, event: HookEvent, ctx: ToolContext) -> Returned | Awaitable[Returned]:
        method = getattr(self, f"on_{event.hook.value}", None)
        return method(event, ctx) if method is not None else None

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} priority={self.priority}>"


@dataclass
class HookOutcome:
    """What a pipeline decided. `aborted` / `blocked` carry `(plugin, reason)`."""

    interventions: list[str] = field(default_factory=list)
    aborted: tuple[str, str] | None = None
    blocked: tuple[str, str] | None = None
    args: Mapping[str, Any] | None = None
    result: ToolResult | None = None
    approval: tuple[bool, str | None] | None = None
    switch_model: tuple[str, Mapping[str, Any] | None] | None = None
    skipped_by: str | None = None

    @property
    def intervention(self) -> str | None:
        return "\n\n".join(self.interventions) if self.interventions else None


ErrorSink = Callable[[str, Hook, str], None]
EmitSink = Callable[[str, str, Any], None]


class PluginPipeline:
    """The agent's plugins in priority order (stable for equal priorities)."""

    def __init__(self, plugins: Iterable[Plugin] = ()) -> None:
        self.plugins: list[Plugin] = []
        for p in plugins:
            self.add(p)

    def add(self, plugin: Plugin) -> None:
        if not callable(getattr(plugin, "handle", None)):
            raise InvalidInputError(f"{plugin!r} is not a plugin (it has no handle method)", field="plugins")
        prio = getattr(plugin, "priority", None)
        if isinstance(prio, bool) or not isinstance(prio, int) or not 1 <= prio <= 1000:
            raise InvalidInputError(
                f"priority of {plugin!r} must be an integer from 1 to 1000", field="plugins"
            )
        if any(p.name == plugin.name for p in self.plugins):
            raise InvalidInputError(f"two plugins are named {plugin.name!r}", field="plugins")
        self.plugins.append(plugin)
        self.plugins.sort(key=lambda p: p.priority)

    async def run(
        self,
        hook: Hook,
        payload: Mapping[str, Any],
        ctx: ToolContext,
        *,
        on_emit: EmitSink,
        on_error: ErrorSink,
    ) -> HookOutcome:
        out = HookOutcome()
        data = dict(payload)
        allowed = ALLOWED[hook]
        for plugin in self.plugins:
            try:
                returned = plugin.handle(HookEvent(hook, dict(data)), ctx)
                if inspect.isawaitable(returned):
                    returned = await returned
            except Exception as exc:
                on_error(plugin.name, hook, f"{type(exc).__name__}: {exc}")
                continue
            actions: list[Any] = (
                [] if returned is None else [returned] if isinstance(returned, Action) else list(returned)
            )
            stop = False
            for action in actions:
                if not isinstance(action, Action):
                    on_error(plugin.name, hook, f"returned {type(action).__name__}, not an action")
                    continue
                if action.kind not in allowed:
                    on_error(
                        plugin.name,
                        hook,
                        f"{action.kind} is not allowed at {hook.value} (allowed: {', '.join(sorted(allowed))})",
                    )
                    continue
                stop = self._apply(plugin.name, action, out, data, on_emit) or stop
                if stop:
                    break
            if stop:
                break
        return out

    @staticmethod
    def _apply(name: str, action: Action, out: HookOutcome, data: dict[str, Any], on_emit: EmitSink) -> bool:
        """Apply one action; True when the pipeline stops here."""
        match action:
            case Skip():
                out.skipped_by = name
                return True
            case Abort(reason=reason):
                out.aborted = (name, reason)
                return True
            case BlockTool(reason=reason):
                out.blocked = (name, reason)
                return True
            case Intervene(prompt=prompt):
                out.interventions.append(prompt)
            case ReplaceToolArgs(args=args):
                out.args = dict(args)
                data["args"] = dict(args)
            case ReplaceToolResult(content=content, is_error=is_error):
                out.result = ToolResult(content, is_error)
                data["result"] = out.result
            case RequireApproval(required=required, hint=hint):
                out.approval = (required, hint)
            case SwitchModel(model=model, provider_opts=opts):
                out.switch_model = (model, opts)
            case Emit(name=event_name, payload=payload):
                on_emit(name, event_name, payload)
        return False
