"""The agent: a state machine that runs as a task on the event loop it is first used from.

```
idle ──prompt──▶ running ──first chunk──▶ streaming ──done──▶ executing_tools ──batch done──▶ running …
                    ▲                                  │ no tool calls
                    └──────── next turn ◀──────────────┴──▶ before_finish ──▶ idle (agent_end)
abort from any state ──▶ idle (agent_abort, within one loop iteration)
```

In a notebook, `handle = agent.prompt("…")` returns at once (the run is a task on the kernel's loop, so
later cells, widget clicks and `approve()` calls keep working) and `await handle` waits for the reply;
scripts call `agent.run("…")`. A tool that needs approval waits for its own decision only: other tools of
the batch run on, and the loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import logging
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

from cmdc_nb.errors import (
    AbortedError,
    AgentError,
    AgentNotAliveError,
    BudgetExceededError,
    CmdcError,
    InvalidInputError,
    NotFoundError,
    ProviderError,
)
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.loop_guard import LoopGuard
from cmdc_nb.kernel.options import AgentOptions, normalize_model
from cmdc_nb.kernel.persist import Recorder, StoredToolUse, history_from_rows
from cmdc_nb.kernel.plugins import Hook, HookOutcome, PluginPipeline
from cmdc_nb.kernel.prompts import build_system_prompt
from cmdc_nb.kernel.tools import Tool, ToolContext, ToolError, ToolResult, as_tool
from cmdc_nb.providers import Completion, ProviderRequest, StreamPart, TokenUsage, ToolCall, stream_completion

__all__ = [
    "ABORT_REASONS",
    "Agent",
    "AgentState",
    "EndReason",
    "PromptHandle",
    "SteerResult",
    "normalize_abort_reason",
]

log = logging.getLogger("cmdc_nb.kernel")

ABORT_REASONS = (
    "user_cancelled",
    "timeout",
    "shutdown",
    "budget_exceeded",
    "permission_denied",
    "provider_error",
)
KILL_TOOLS = ("running", "all", "none")


def normalize_abort_reason(reason: Any) -> str:
    """The seed's whitelist: a known reason passes; None is user_cancelled; anything else is unknown."""
    if reason is None:
        return "user_cancelled"
    text = str(getattr(reason, "value", reason)).strip().lower().replace("-", "_").replace(" ", "_")
    if text in ABORT_REASONS:
        return text
    log.warning("abort reason %r is not one of %s; recorded as 'unknown'", reason, ", ".join(ABORT_REASONS))
    return "unknown"


class AgentState(StrEnum):
    IDLE = "idle"
    RUNNING = "running"
    STREAMING = "streaming"
    EXECUTING_TOOLS = "executing_tools"


@dataclass(frozen=True)
class EndReason:
    """How a run (or the agent) ended: normal, aborted, max_turns_exceeded, loop_detected,
    provider_error, provider_timeout, plugin_aborted, exception or shutdown."""

    kind: str
    detail: str | None = None
    plugin: str | None = None


class PromptHandle:
    """What `prompt()` returns: `await handle` gives the reply (all assistant text of the run)."""

    def __init__(self, text: str, queued: bool, future: asyncio.Future[str]) -> None:
        self.text = text
        self.queued = queued
        self.future = future

    def __await__(self) -> Any:
        return self.future.__await__()

    def done(self) -> bool:
        return self.future.done()

    def result(self) -> str:
        return self.future.result()

    def __repr__(self) -> str:
        state = "done" if self.future.done() else "queued" if self.queued else "running"
        return f"<PromptHandle {state} {self.text[:40]!r}>"


@dataclass(frozen=True)
class SteerResult:
    """`status`: queued, started (the agent was idle: the text became a prompt), rejected_full."""

    accepted: bool
    status: str
    handle: PromptHandle | None = None


@dataclass
class _Pending:
    """A tool call waiting for a decision (approval) or an answer (user input)."""

    ref: str
    future: asyncio.Future[Any]
    tool: str = ""
    args: Mapping[str, Any] = field(default_factory=dict)
    call_id: str = ""
    question: str = ""
    requested_at: float = field(default_factory=time.time)
    approval_id: str | None = None


@dataclass
class _Decision:
    approved: bool
    note: str | None = None
    args: Mapping[str, Any] | None = None
    auto_resume: bool = True


@dataclass
class _Running:
    task: asyncio.Task[Any]
    name: str
    call_id: str
    started: float
    immune: bool
    executing: bool = False


@dataclass
class _Run:
    handle: PromptHandle
    started: float
    texts: list[str] = field(default_factory=list)
    turns: int = 0
    usage: TokenUsage = field(default_factory=TokenUsage)
    cost: Decimal | None = Decimal(0)
    messages_at_start: int = 0
    call_id: str | None = None  # the agent call in flight (for cancellation)
    stop_after_batch: bool = False
    abort: tuple[str, str | None] | None = None


def _ms(t: float) -> int:
    return int(t * 1000)


def _add_cost(a: Decimal | None, b: Decimal | None) -> Decimal | None:
    return None if a is None or b is None else a + b


class Agent:
    """An agent. `Agent(model="scripted/demo", tools=[add], session=s)`; options as in AgentOptions."""

    def __init__(self, options: AgentOptions | None = None, /, **kw: Any) -> None:
        if options is None:
            options = AgentOptions.build(**kw)
        elif kw:
            raise InvalidInputError("give AgentOptions or keyword options, not both", field="options")
        self.options = options
        self.id = options.new_id()
        self.model = options.model
        self.provider_opts: dict[str, Any] = dict(options.provider_opts)
        self.tools: dict[str, Tool] = {t.name: t for t in options.tools}
        self.plugins = PluginPipeline(options.plugins)
        self.recorder = Recorder(options.session, options.ws, record_messages=options.record_messages)
        self._sandbox = options.sandbox
        self.todos: list[dict[str, Any]] = []
        self.output_filters: list[Callable[[str], str]] = []  # OutputFilter's redaction, for example
        self.events = ev.EventLog(self.id, options.event_buffer_size, forward=self._forward)
        self.messages: list[dict[str, Any]] = [dict(m) for m in options.messages]
        self.state = AgentState.IDLE
        self.usage = TokenUsage()
        self.cost_usd: Decimal | None = Decimal(0)
        self.turns = 0
        self.system_context: dict[str, str] = {}
        self.last_reply: str | None = None
        self.alive = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Runner | None = None
        self._driver: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[Any] | None = None
        self._run: _Run | None = None
        self._prompts: deque[tuple[str, PromptHandle | None, bool]] = deque()
        self._steering: deque[str] = deque()
        self._approvals: dict[str, _Pending] = {}
        self._inputs: dict[str, _Pending] = {}
        self._running: dict[str, _Running] = {}
        self._monitors: list[asyncio.Future[EndReason]] = []
        self._guard = LoopGuard(options.max_identical_tool_calls, options.max_consecutive_tool_failures)
        self._started = False
        self._bus_sub: Any = None
        self._resume_calls: dict[str, str] = {}  # tool call id -> agent call id, for a resumed turn

    def __repr__(self) -> str:
        return f"<Agent {self.id[:8]} model={self.model!r} state={self.state.value} turns={self.turns}>"

    # -- loop binding ---------------------------------------------------------------------------------
    def _bind(self) -> asyncio.AbstractEventLoop:
        if not self.alive:
            raise AgentNotAliveError(self.id)
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise AgentError(
                "prompt() needs a running event loop: in a notebook cell or async code use "
                "`await agent.prompt(...)` (or keep the handle); in a script use agent.run(...)"
            ) from None
        if self._loop is None:
            self._loop = loop
            self._subscribe_decisions()
        elif self._loop is not loop:
            raise AgentError("this agent runs on another event loop; create a new agent for this one")
        return loop

    def _subscribe_decisions(self) -> None:
        """Decisions taken anywhere (another cell, the approval queue, a rule) reach the waiting call."""
        if not self.recorder.enabled:
            return
        from cmdc_nb.events import topics
        from cmdc_nb.workspace import get_workspace

        loop = self._loop
        assert loop is not None

        def on_event(event: Any) -> None:
            if event.type in ("tool_use_approved", "tool_use_denied") and not loop.is_closed():
                ref = str(event.payload.get("tool_use_id"))
                loop.call_soon_threadsafe(self._decided_elsewhere, ref, event.type == "tool_use_approved")

        self._bus_sub = get_workspace(self.recorder.ws).bus.subscribe(
            topics.session_agent_calls(self.recorder.session_id), on_event
        )

    def _decided_elsewhere(self, ref: str, approved: bool) -> None:
        pending = self._approvals.get(ref)
        if pending is not None and not pending.future.done():
            pending.future.set_result(_Decision(approved))

    def _forward(self, env: ev.Envelope) -> None:
        if not self.recorder.enabled:
            return
        from cmdc_nb.workspace import get_workspace

        get_workspace(self.recorder.ws).bus.publish(f"agent:{self.id}", env.type, env.to_dict())

    def emit(self, event: ev.AgentEvent) -> ev.Envelope:
        return self.events.emit(event)

    # -- public surface (the facade calls these) ------------------------------------------------------
    def prompt(self, text: str) -> PromptHandle:
        """Start a run with `text`, or queue it when the agent is busy. Returns at once."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("a prompt needs some text", field="text")
        loop = self._bind()
        future: asyncio.Future[str] = loop.create_future()
        queued = self.busy
        handle = PromptHandle(text, queued, future)
        self._prompts.append((text, handle, False))
        self.emit(ev.PromptReceived(text, queued))
        self._ensure_driver(loop)
        return handle

    @property
    def busy(self) -> bool:
        """Whether a run is in progress or prompts are waiting."""
        return self._run is not None or bool(self._prompts)

    def _ensure_driver(self, loop: asyncio.AbstractEventLoop) -> None:
        if self._driver is None or self._driver.done():
            self._driver = loop.create_task(self._drive(), name=f"cmdc-agent-{self.id[:8]}")

    def resume(self) -> PromptHandle:
        """Finish a turn that was interrupted (for example waiting for approval when the process
        stopped): pending tool calls are awaited or run, then the conversation goes on."""
        loop = self._bind()
        future: asyncio.Future[str] = loop.create_future()
        handle = PromptHandle("", False, future)
        self._prompts.appendleft(("", handle, True))
        self._ensure_driver(loop)
        return handle

    def run(self, text: str | None = None, *, timeout: float | None = None) -> str:
        """Synchronous prompt-and-wait for scripts (`None` resumes an interrupted turn)."""
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            pass
        else:
            raise AgentError(
                "run() blocks, and an event loop is running here (a notebook?): use "
                "`await agent.prompt(...)` instead, so approvals and widgets keep working"
            )
        if self._runner is None:
            self._runner = asyncio.Runner()

        async def go() -> str:
            handle = self.resume() if text is None else self.prompt(text)
            return await asyncio.wait_for(asyncio.shield(handle.future), timeout)

        return self._runner.run(go())

    async def collect_reply(self, timeout: float | None = 60.0) -> str:
        """The reply of the run in progress (or the queued ones), else of the last run."""
        pending = [h for _, h, _ in self._prompts if h is not None]
        if self._run is not None:
            pending.insert(0, self._run.handle)
        if not pending:
            if self.last_reply is None:
                raise AgentError("nothing to collect: the agent has not run yet")
            return self.last_reply
        return await asyncio.wait_for(asyncio.shield(pending[-1].future), timeout)

    def steer(self, text: str) -> SteerResult:
        """Redirect a running agent: applied at the next safe point (the gap between turns). When idle it
        is a prompt; when the queue is full it is rejected (and a `steering_received` event says so)."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("steering needs some text", field="text")
        self._bind()
        if not self.busy:
            self.emit(ev.SteeringReceived(text, "started"))
            return SteerResult(True, "started", self.prompt(text))
        if len(self._steering) >= self.options.max_steering_queue:
            self.emit(ev.SteeringReceived(text, "rejected_full"))
            return SteerResult(False, "rejected_full")
        self._steering.append(text)
        self.emit(ev.SteeringReceived(text, "queued"))
        if self.state is AgentState.EXECUTING_TOOLS:
            self._kill_tools("running", "interrupted: the user steered the agent", only_executing=True)
        return SteerResult(True, "queued")

    def abort(self, reason: Any = None, *, kill_tools: str = "running", clear_queue: bool = True) -> str:
        """Stop the current run now; `agent_abort` is emitted before this returns. `kill_tools`: running
        (all but interrupt-immune tools), all, or none (let them finish in the background)."""
        if not self.alive:
            raise AgentNotAliveError(self.id)
        if kill_tools not in KILL_TOOLS:
            raise InvalidInputError(
                f"{kill_tools!r} is not one of: {', '.join(KILL_TOOLS)}", field="kill_tools"
            )
        norm = (
            reason
            if reason in ("max_turns_exceeded", "loop_detected", "plugin_aborted")
            else normalize_abort_reason(reason)
        )
        detail = None if reason is None or str(reason) == norm else str(reason)
        state = self.state
        if clear_queue:
            while self._prompts:
                _, h, _ = self._prompts.popleft()
                if h is not None and not h.future.done():
                    h.future.set_exception(AbortedError(norm, "cleared from the queue"))
            self._steering.clear()
        run = self._run
        if run is not None and run.abort is None:
            run.abort = (norm, detail)
            if kill_tools != "none":
                self._kill_tools(kill_tools, f"aborted ({norm})")
            if self._run_task is not None and not self._run_task.done():
                self._run_task.cancel()
        self.state = AgentState.IDLE
        self.emit(ev.AgentAbort(norm, detail, state.value))
        return norm

    def _kill_tools(self, which: str, why: str, *, only_executing: bool = False) -> None:
        for r in list(self._running.values()):
            if only_executing and not r.executing:
                continue
            immune = r.immune and which != "all"
            if not immune and not r.task.done():
                r.task.cancel(why)

    def status(self) -> dict[str, Any]:
        now = time.time()
        run = self._run
        return {
            "agent_id": self.id,
            "alive": self.alive,
            "state": self.state.value,
            "model": self.model,
            "turns": self.turns,
            "turns_count": self.turns,
            "messages_count": len(self.messages),
            "active_since_ms": _ms(now - run.started) if run is not None else None,
            "pending_tools": [
                {
                    "name": r.name,
                    "call_id": r.call_id,
                    "started_at_ms": _ms(r.started),
                    "executing": r.executing,
                }
                for r in self._running.values()
            ],
            "pending_approvals": [
                {
                    "ref": p.ref,
                    "tool": p.tool,
                    "args": dict(p.args),
                    "call_id": p.call_id,
                    "requested_at_ms": _ms(p.requested_at),
                }
                for p in self._approvals.values()
            ],
            "pending_user_inputs": [{"ref": p.ref, "question": p.question} for p in self._inputs.values()],
            "queue_sizes": {"prompts": len(self._prompts), "steerings": len(self._steering)},
            "usage": self.usage.as_dict(),
            "cost_usd": self.cost_usd,
        }

    def monitor(self) -> asyncio.Future[EndReason]:
        """A future resolved with how the current (or next) run ends, or with `shutdown` at stop()."""
        loop = self._bind()
        fut: asyncio.Future[EndReason] = loop.create_future()
        self._monitors.append(fut)
        return fut

    def _end_monitors(self, reason: EndReason) -> None:
        for fut in self._monitors:
            if not fut.done():
                fut.set_result(reason)
        self._monitors.clear()

    def approve(
        self,
        ref: str,
        *,
        args: Mapping[str, Any] | None = None,
        note: str | None = None,
        auto_resume: bool = True,
        remember: bool = False,
        by: Any = None,
    ) -> None:
        """Approve a waiting tool call (`ref` from its approval_required event); `args` edits it."""
        self._decide(str(ref), True, args=args, note=note, auto_resume=auto_resume, remember=remember, by=by)

    def reject(self, ref: str, *, note: str | None = None, auto_resume: bool = False, by: Any = None) -> None:
        """Deny a waiting tool call. With auto_resume=False (the default) the run ends after this
        batch of tools instead of asking the model again."""
        self._decide(str(ref), False, args=None, note=note, auto_resume=auto_resume, remember=False, by=by)

    def _decide(
        self,
        ref: str,
        approved: bool,
        *,
        args: Mapping[str, Any] | None,
        note: str | None,
        auto_resume: bool,
        remember: bool,
        by: Any,
    ) -> None:
        if not self.alive:
            raise AgentNotAliveError(self.id)
        pending = self._approvals.get(ref)
        if pending is None:
            raise NotFoundError("pending approval", ref)
        if args is not None and not isinstance(args, Mapping):
            raise InvalidInputError("must be a mapping of argument names to values", field="args")
        if self.recorder.enabled:
            # The store decides first (so a crash after this line still has the decision); its event
            # also resolves the wait, but resolving here too makes the answer immediate and carries args.
            self.recorder.decide(ref, approved, note=note, args=args, by=by, remember=remember)
        if not pending.future.done():
            pending.future.set_result(_Decision(approved, note, args, auto_resume))

    def user_respond(self, ref: str, response: str) -> None:
        pending = self._inputs.get(str(ref))
        if pending is None:
            raise NotFoundError("pending user input", ref)
        if not isinstance(response, str):
            raise InvalidInputError("must be text", field="response")
        if not pending.future.done():
            pending.future.set_result(response)
        self.emit(ev.UserResponded(str(ref), response))
        self.emit(ev.AgentResumed("user_respond", (str(ref),)))

    def switch_model(
        self, model: str, *, provider_opts: Mapping[str, Any] | None = None, reason: str | None = None
    ) -> None:
        new = normalize_model(model)
        if provider_opts is not None and not isinstance(provider_opts, Mapping):
            raise InvalidInputError("must be a mapping of litellm keyword arguments", field="provider_opts")
        old = self.model
        changed = provider_opts is not None and dict(provider_opts) != self.provider_opts
        self.model = new
        if provider_opts is not None:
            self.provider_opts = dict(provider_opts)
        self.emit(ev.ModelSwitched(old, new, reason, self.turns, changed))

    # tools: batch changes validate everything first, so a bad item changes nothing
    def _attach(self, tools: Iterable[Tool | Callable[..., Any]]) -> list[str]:
        new = [as_tool(t) for t in tools]
        names = [t.name for t in new]
        clash = sorted({n for n in names if n in self.tools or names.count(n) > 1})
        if clash:
            raise InvalidInputError(f"a tool named {clash[0]!r} is already attached", field="tools")
        for t in new:
            self.tools[t.name] = t
        return names

    def _detach(self, names: Iterable[Any]) -> list[str]:
        wanted = [str(getattr(n, "name", n)) for n in names]
        missing = [n for n in wanted if n not in self.tools]
        if missing:
            raise NotFoundError("tool", missing[0])
        for n in wanted:
            del self.tools[n]
        return wanted

    def attach_tool(self, tool: Tool | Callable[..., Any]) -> str:
        """Make a tool available from the next request on."""
        (name,) = self._attach([tool])
        self.emit(ev.ToolAttached(name))
        return name

    def attach_tools(self, tools: Iterable[Tool | Callable[..., Any]]) -> list[str]:
        """Attach several tools at once: all of them, or (on any problem) none."""
        names = self._attach(tools)
        self.emit(ev.ToolsUpdated(tuple(names), ()))
        return names

    def detach_tool(self, name: Any) -> str:
        """Remove a tool; a later call to it gets an error result (and a tool_call_unknown event)."""
        (gone,) = self._detach([name])
        self.emit(ev.ToolDetached(gone))
        return gone

    def detach_tools(self, names: Iterable[Any]) -> list[str]:
        gone = self._detach(names)
        self.emit(ev.ToolsUpdated((), tuple(gone)))
        return gone

    def replace_tools(self, tools: Iterable[Tool | Callable[..., Any]]) -> tuple[list[str], list[str]]:
        """Swap the whole tool set; the event lists what was attached and detached."""
        new = {t.name: t for t in (as_tool(x) for x in tools)}
        attached = sorted(n for n in new if n not in self.tools or self.tools[n] is not new[n])
        detached = sorted(n for n in self.tools if n not in new)
        self.tools = new
        self.emit(ev.ToolsUpdated(tuple(attached), tuple(detached)))
        return attached, detached

    async def stop(self) -> None:
        """Abort any run, run the session_end hook, and retire the agent."""
        if not self.alive:
            return
        if self.busy:
            self.abort("shutdown")
            if self._driver is not None:
                with contextlib.suppress(BaseException):
                    await self._driver
        await self._hook(Hook.SESSION_END, {})
        self.alive = False
        if self._bus_sub is not None:
            self._bus_sub.close()
        self._end_monitors(EndReason("shutdown"))

    # -- the loop -------------------------------------------------------------------------------------
    def context(self, **extra: Any) -> ToolContext:
        return ToolContext(
            agent_id=self.id,
            session_id=str(self.recorder.session_id) if self.recorder.session_id else None,
            working_dir=self.options.working_dir,
            user_data=self.options.user_data,
            turn=self.turns,
            model=self.model,
            total_tokens=self.usage.total,
            cost_usd=self.cost_usd,
            last_assistant_reply=self.last_reply,
            emit=self._tool_emit,
            ask_user=self._ask_user,
            sandbox=self.sandbox,
            agent=self,
            **extra,
        )

    def _filtered(self, text: str) -> str:
        for f in self.output_filters:
            text = f(text)
        return text

    @property
    def sandbox(self) -> Any:
        """Where the built-in file and command tools act (a LocalSandbox on working_dir by default)."""
        if self._sandbox is None:
            from cmdc_nb.toolkit.sandbox import LocalSandbox

            self._sandbox = LocalSandbox(self.options.working_dir)
        return self._sandbox

    def _tool_emit(self, name: str, payload: Any) -> None:
        self.emit(ev.PluginEvent("tool", name, payload))

    async def _ask_user(
        self, question: str, options: Sequence[Mapping[str, Any]] = (), timeout_s: float | None = 300.0
    ) -> str:
        ref = uuid.uuid4().hex[:12]
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inputs[ref] = _Pending(ref, fut, question=question)
        self.emit(ev.UserInputRequested(ref, question, tuple(dict(o) for o in options)))
        try:
            return await asyncio.wait_for(fut, timeout_s)
        finally:
            self._inputs.pop(ref, None)

    async def _hook(self, hook: Hook, payload: Mapping[str, Any], **ctx: Any) -> HookOutcome:
        if not self.plugins.plugins:
            return HookOutcome()
        return await self.plugins.run(
            hook, payload, self.context(**ctx), on_emit=self._plugin_emit, on_error=self._plugin_error
        )

    def _plugin_emit(self, plugin: str, name: str, payload: Any) -> None:
        if name == "update_system_context" and isinstance(payload, Mapping):
            key, text = str(payload.get("key")), payload.get("text")
            if text is None:
                self.system_context.pop(key, None)
            else:
                self.system_context[key] = str(text)
        elif name == "synthetic_tool_results" and isinstance(payload, Sequence):
            self._patch_tool_results(
                {str(p["call_id"]): (str(p["content"]), bool(p.get("is_error", True))) for p in payload}
            )
        if isinstance(payload, Mapping) and not payload.get("_no_user_data") and self.options.user_data:
            payload = {**payload, "user_data": dict(self.options.user_data)}
        self.emit(ev.PluginEvent(plugin, name, payload))

    def _plugin_error(self, plugin: str, hook: Hook, error: str) -> None:
        log.warning("plugin %s failed at %s: %s", plugin, hook.value, error)
        self.emit(ev.PluginError(plugin, hook.value, error))

    def _dangling(self) -> list[dict[str, Any]]:
        """Tool calls of the last assistant message that have no result yet."""
        for i in range(len(self.messages) - 1, -1, -1):
            m = self.messages[i]
            if m.get("role") == "assistant":
                if not m.get("tool_calls"):
                    return []
                answered = {x.get("tool_call_id") for x in self.messages[i + 1 :] if x.get("role") == "tool"}
                return [c for c in m["tool_calls"] if c["id"] not in answered]
            if m.get("role") == "user":
                return []
        return []

    def _patch_tool_results(self, results: Mapping[str, tuple[str, bool]]) -> None:
        missing = {c["id"] for c in self._dangling()}
        for cid, (content, _is_error) in results.items():
            if cid in missing:
                self.messages.append({"role": "tool", "tool_call_id": cid, "content": content})

    async def _drive(self) -> None:
        while self._prompts and self.alive:
            text, handle, resuming = self._prompts.popleft()
            assert handle is not None
            self._run_task = asyncio.ensure_future(self._one_run(text, handle, resuming))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._run_task)
            self._run_task = None

    async def _one_run(self, text: str, handle: PromptHandle, resuming: bool) -> None:
        run = self._run = _Run(handle, time.time(), messages_at_start=len(self.messages))
        self._guard.reset()
        reason = EndReason("normal")
        try:
            if not self._started:
                self._started = True
                out = await self._hook(Hook.SESSION_START, {})
                if out.aborted:
                    raise self._plugin_abort(run, *out.aborted)
            self.state = AgentState.RUNNING
            self.emit(ev.AgentStart(text, self.turns))
            if resuming:
                await self._resume_dangling(run)
            else:
                await self._accept_prompt(run, text)
            reason = await self._turns(run)
        except _Stop as stop:
            reason = stop.reason
        except asyncio.CancelledError:
            reason = EndReason("aborted", *(run.abort or ("user_cancelled", None)))
            await self._after_abort(run)
        except BudgetExceededError as exc:
            reason = EndReason("aborted", "budget_exceeded")
            self.emit(ev.AgentAbort("budget_exceeded", str(exc), self.state.value))
            run.abort = ("budget_exceeded", str(exc))
            self._finish_handle(run, exc)
        except ProviderError as exc:
            reason = EndReason("provider_timeout" if exc.kind == "timeout" else "provider_error", str(exc))
            self._finish_handle(run, exc)
        except Exception as exc:  # a bug in a tool wrapper or a plugin hook must not kill the kernel
            log.exception("agent %s run failed", self.id)
            reason = EndReason("exception", f"{type(exc).__name__}: {exc}")
            self._finish_handle(run, exc)
        finally:
            self._run = None
        await self._end_run(run, reason)

    def _finish_handle(self, run: _Run, exc: BaseException | None = None) -> None:
        if run.handle.future.done():
            return
        if exc is not None:
            run.handle.future.set_exception(exc)
            run.handle.future.exception()  # mark retrieved: a caller that never awaits sees no warning
        else:
            run.handle.future.set_result("\n\n".join(t for t in run.texts if t))

    async def _end_run(self, run: _Run, reason: EndReason) -> None:
        self.state = AgentState.IDLE
        outcome = "aborted" if reason.kind == "aborted" else "finished"
        ended = time.time()
        with contextlib.suppress(asyncio.CancelledError):
            await self._hook(
                Hook.AFTER_TURN,
                {
                    "outcome": outcome,
                    "end_reason": reason.kind,
                    "abort_reason": reason.detail if outcome == "aborted" else None,
                    "messages_diff": self.messages[run.messages_at_start :],
                    "token_usage_diff": run.usage,
                    "started_at_ms": _ms(run.started),
                    "ended_at_ms": _ms(ended),
                    "duration_ms": _ms(ended - run.started),
                },
            )
        reply = "\n\n".join(t for t in run.texts if t)
        if reason.kind != "aborted":
            self.emit(ev.AgentEnd(reply, reason.kind, run.turns, run.usage, run.cost, reason.detail))
            self.last_reply = reply
        if reason.kind == "aborted" and not run.handle.future.done():
            run.handle.future.set_exception(AbortedError(*(run.abort or ("user_cancelled", None))))
            run.handle.future.exception()
        elif (
            reason.kind in ("max_turns_exceeded", "loop_detected", "plugin_aborted")
            and not run.handle.future.done()
        ):
            run.handle.future.set_exception(AbortedError(reason.kind, reason.detail))
            run.handle.future.exception()
        self._finish_handle(run)
        self._end_monitors(reason)

    async def _accept_prompt(self, run: _Run, text: str) -> None:
        out = await self._hook(Hook.BEFORE_PROMPT, {"text": text})
        if out.aborted:
            raise self._plugin_abort(run, *out.aborted)
        await self._add_message({"role": "user", "content": text})
        if out.intervention:
            self.emit(ev.Intervention(out.intervention, Hook.BEFORE_PROMPT.value))
            await self._add_message(
                {"role": "user", "content": out.intervention}, meta={"intervention": "before_prompt"}
            )

    async def _add_message(
        self,
        msg: dict[str, Any],
        *,
        agent_call_id: str | None = None,
        tool_calls: Sequence[ToolCall] = (),
        tool_use_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
    ) -> None:
        self.messages.append(msg)
        role = {"tool": "tool_result"}.get(msg["role"], msg["role"])
        extra = dict(meta or {})
        if msg["role"] == "tool":
            extra["tool_call_id"] = msg["tool_call_id"]
        await self.recorder.message(
            role,
            msg.get("content"),
            tool_calls=tool_calls,
            agent_call_id=agent_call_id,
            tool_use_id=tool_use_id,
            meta=extra,
        )

    async def _apply_steering(self) -> bool:
        if not self._steering:
            return False
        texts: list[str] = []
        while self._steering:
            text = self._steering.popleft()
            out = await self._hook(Hook.BEFORE_STEERING, {"text": text})
            if out.aborted:
                self.emit(ev.SteeringReceived(text, "rejected_plugin"))
                continue
            texts.append(text + (f"\n\n{out.intervention}" if out.intervention else ""))
        for t in texts:
            await self._add_message({"role": "user", "content": t}, meta={"steering": True})
        if texts:
            self.emit(ev.SteeringApplied(len(texts), tuple(texts)))
            self.emit(ev.AgentResumed("steering", (), len(texts)))
        return bool(texts)

    async def _turns(self, run: _Run) -> EndReason:
        while True:
            await self._apply_steering()
            if run.turns >= self.options.max_turns:
                return EndReason("max_turns_exceeded", f"stopped after {run.turns} turns (max_turns)")
            done, call_id = await self._request(run)
            out = await self._hook(
                Hook.AFTER_RESPONSE,
                {
                    "message": done.message(),
                    "text": done.text,
                    "tool_calls": [c.to_message() for c in done.tool_calls],
                },
            )
            self._plugin_control(run, out, Hook.AFTER_RESPONSE)
            if done.tool_calls:
                await self._tool_batch(run, done.tool_calls, call_id)
                if out.intervention:
                    await self._intervene(out.intervention, Hook.AFTER_RESPONSE)
                if run.stop_after_batch:
                    return EndReason("normal", "stopped after a rejected tool call")
                continue
            if out.intervention:
                await self._intervene(out.intervention, Hook.AFTER_RESPONSE)
                continue
            if self._steering:
                continue
            fin = await self._hook(Hook.BEFORE_FINISH, {"reply": done.text})
            self._plugin_control(run, fin, Hook.BEFORE_FINISH)
            if fin.intervention:
                await self._intervene(fin.intervention, Hook.BEFORE_FINISH)
                continue
            return EndReason("normal")

    async def _intervene(self, text: str, hook: Hook) -> None:
        self.emit(ev.Intervention(text, hook.value))
        await self._add_message({"role": "user", "content": text}, meta={"intervention": hook.value})

    def _plugin_control(self, run: _Run, out: HookOutcome, hook: Hook) -> None:
        """Abort and switch_model actions, common to several hooks."""
        if out.switch_model is not None:
            model, opts = out.switch_model
            self.switch_model(model, provider_opts=opts, reason=f"plugin at {hook.value}")
        if out.aborted is not None:
            raise self._plugin_abort(run, *out.aborted)

    def _plugin_abort(self, run: _Run, plugin: str, why: str) -> _Stop:
        run.abort = ("plugin_aborted", why)
        self.emit(ev.AgentAbort("plugin_aborted", f"{plugin}: {why}", self.state.value))
        return _Stop(EndReason("plugin_aborted", why, plugin))

    def context_tokens(self) -> int:
        """How full the context is: the last request's prompt tokens plus what came since (counted)."""
        from cmdc_nb.pricing import count_tokens

        return count_tokens(self.messages, model=self.model)

    def _compaction_due(self) -> bool:
        opts = self.options
        if opts.compact_at_tokens is None and opts.compact_at_fraction is None:
            return False
        used = self.context_tokens()
        if opts.compact_at_tokens is not None and used >= opts.compact_at_tokens:
            return True
        if opts.compact_at_fraction is not None:
            window = _context_window(self.model)
            return window is not None and used >= opts.compact_at_fraction * window
        return False

    async def _request(self, run: _Run) -> tuple[Completion, str | None]:
        if self._compaction_due():
            await self.compact(keep_last=self.options.compact_keep_last, during_run=True)
        out = await self._hook(Hook.BEFORE_REQUEST, {"messages": list(self.messages), "model": self.model})
        self._plugin_control(run, out, Hook.BEFORE_REQUEST)
        if out.intervention:
            await self._intervene(out.intervention, Hook.BEFORE_REQUEST)
        run.turns += 1
        self.turns += 1
        system = build_system_prompt(self)
        messages = ([{"role": "system", "content": system}] if system else []) + self.messages
        tools = [t.schema() for t in self.tools.values()]
        self.state = AgentState.RUNNING
        run.call_id = await self.recorder.start_call(
            model=self.model,
            messages=self.messages,
            system_prompt=system,
            temperature=self.options.temperature,
            max_tokens=self.options.max_tokens,
            tools=list(self.tools),
            turn=run.turns,
        )
        self.emit(ev.RequestStart(self.model, len(messages), run.turns, run.call_id))
        first = asyncio.Event()
        streaming_write: list[asyncio.Task[None]] = []

        pending: list[str] = []

        def on_part(part: StreamPart) -> None:
            if run.abort is not None:
                return  # nothing after agent_abort
            if not first.is_set():
                first.set()
                self.state = AgentState.STREAMING
                self.emit(ev.MessageStart(run.turns, self.model))
                streaming_write.append(asyncio.ensure_future(self.recorder.streaming(run.call_id)))
            if part.kind == "text":
                if self.output_filters:
                    # Hold back the last partial word so a secret split across chunks is still caught.
                    pending.append(part.text)
                    text = "".join(pending)
                    cut = max(text.rfind(" "), text.rfind("\n")) + 1
                    if cut > 0:
                        pending[:] = [text[cut:]]
                        self.emit(ev.MessageDelta(self._filtered(text[:cut])))
                    return
                self.emit(ev.MessageDelta(part.text))
            elif part.kind == "thinking":
                self.emit(ev.ThinkingDelta(part.text))

        async def on_retry(attempt: int, delay: float, err: ProviderError) -> None:
            self.emit(ev.Retry(attempt, delay, err.kind, str(err)))
            if streaming_write:
                await streaming_write.pop()
            first.clear()
            await self.recorder.fail_call(run.call_id, err.kind, str(err), timeout=err.kind == "timeout")
            await self.recorder.retry_call(run.call_id)

        async def on_fallback(old: str, new: str, err: ProviderError) -> None:
            # The failed model's call is recorded as failed; the fallback model gets a call of its own.
            self.emit(ev.ModelFallback(old, new, str(err)))
            if streaming_write:
                await streaming_write.pop()
            first.clear()
            await self.recorder.fail_call(run.call_id, err.kind, str(err), timeout=err.kind == "timeout")
            run.call_id = await self.recorder.start_call(
                model=new,
                messages=self.messages,
                system_prompt=system,
                temperature=self.options.temperature,
                max_tokens=self.options.max_tokens,
                tools=list(self.tools),
                turn=run.turns,
            )

        request = ProviderRequest(
            model=self.model,
            messages=messages,
            tools=tools,
            max_tokens=self.options.max_tokens,
            temperature=self.options.temperature,
            extra=self.provider_opts,
            timeout_s=self.options.request_timeout_s,
        )
        try:
            done = await stream_completion(
                request,
                on_part=on_part,
                retry=self.options.retry,
                fallbacks=self.options.fallback_models,
                cassette=self.options.cassette,
                pricer=self.recorder.price,
                on_retry=on_retry,
                on_fallback=on_fallback,
            )
        except ProviderError as err:
            for t in streaming_write:
                await t
            self.emit(ev.StreamError(err.kind, str(err)))
            await self.recorder.fail_call(run.call_id, err.kind, str(err), timeout=err.kind == "timeout")
            run.call_id = None
            raise
        for t in streaming_write:
            await t
        if pending and "".join(pending):
            self.emit(ev.MessageDelta(self._filtered("".join(pending))))
        if self.output_filters:
            done.text = self._filtered(done.text)
        if not first.is_set():  # a response with no chunks still moves the call through streaming
            self.emit(ev.MessageStart(run.turns, done.model))
            await self.recorder.streaming(run.call_id)
        call_id = run.call_id
        cost = await self.recorder.complete_response(call_id, done)
        self.messages.append(done.message())
        done.cost_usd = cost
        run.call_id = None
        self.usage += done.usage
        run.usage += done.usage
        self.cost_usd = _add_cost(self.cost_usd, cost)
        run.cost = _add_cost(run.cost, cost)
        if done.text:
            run.texts.append(done.text)
            self.last_reply = done.text
        self.emit(
            ev.ResponseComplete(
                done.text,
                tuple(c.to_message() for c in done.tool_calls),
                done.finish_reason,
                done.model,
                done.usage,
                cost,
                done.attempts,
            )
        )
        self.emit(ev.TurnComplete(run.turns, done.usage, cost))
        return done, call_id

    # -- tools ----------------------------------------------------------------------------------------
    async def _tool_batch(
        self,
        run: _Run,
        calls: Sequence[ToolCall],
        agent_call_id: str | None,
        known: Mapping[str, StoredToolUse | None] | None = None,
    ) -> None:
        self.state = AgentState.EXECUTING_TOOLS
        self.emit(ev.ToolCalls(len(calls), tuple(c.name for c in calls)))
        interventions: list[str] = []
        tasks = []
        for c in calls:
            task = asyncio.ensure_future(
                self._one_tool(
                    run,
                    c,
                    agent_call_id,
                    interventions,
                    (known or {}).get(c.id),
                    bool(known and c.id in known),
                )
            )
            tool = self.tools.get(c.name)
            immune = c.name in self.options.interrupt_immune_tools or bool(tool and tool.interrupt_immune)
            self._running[c.id] = _Running(task, c.name, c.id, time.time(), immune)
            tasks.append(task)
        try:
            # asyncio.wait (not gather): cancelling this run must not cancel interrupt-immune tools.
            await asyncio.wait(tasks)
        finally:
            for c in calls:
                self._running.pop(c.id, None)
        results: list[tuple[ToolCall, ToolResult, str | None]] = []
        for c, t in zip(calls, tasks, strict=True):
            if t.cancelled():
                results.append((c, ToolResult("interrupted before it finished", True), None))
            elif t.exception() is not None:
                exc = t.exception()
                if isinstance(exc, _Stop):
                    raise exc
                results.append((c, ToolResult(f"{type(exc).__name__}: {exc}", True), None))
            else:
                results.append((c, *t.result()))
        for c, result, tu in results:
            await self._add_message(
                {"role": "tool", "tool_call_id": c.id, "content": result.content},
                tool_use_id=tu,
                meta={"name": c.name, "is_error": result.is_error},
            )
        stop = None
        for c, _result, _ in results:
            stop = stop or self._guard.observe(c.name, c.arguments)
        stop = stop or self._guard.batch(all(r.is_error for _, r, _ in results), calls[-1].name)
        out = await self._hook(
            Hook.AFTER_TOOL_BATCH,
            {
                "results": [
                    {"name": c.name, "call_id": c.id, "content": r.content, "is_error": r.is_error}
                    for c, r, _ in results
                ]
            },
        )
        self._plugin_control(run, out, Hook.AFTER_TOOL_BATCH)
        for text in [*interventions, *([out.intervention] if out.intervention else [])]:
            await self._intervene(text, Hook.AFTER_TOOL)
        if stop is not None:
            self.emit(ev.LoopDetected(*stop))
            raise _Stop(EndReason("loop_detected", stop[1]))
        self.state = AgentState.RUNNING

    async def _one_tool(
        self,
        run: _Run,
        call: ToolCall,
        agent_call_id: str | None,
        interventions: list[str],
        stored: StoredToolUse | None,
        resumed: bool,
    ) -> tuple[ToolResult, str | None]:
        tool = self.tools.get(call.name)
        if tool is None:
            self.emit(ev.ToolCallUnknown(call.name, call.id))
            available = ", ".join(sorted(self.tools)) or "none"
            return ToolResult(f"unknown tool {call.name!r}; available tools: {available}", True), None
        if call.arguments_error:
            return ToolResult(f"{call.name}: {call.arguments_error}; send a JSON object", True), None
        args: Mapping[str, Any] = dict(call.arguments)
        tu: StoredToolUse | None = stored
        needs, hint = tool.requires_approval, None
        if tu is not None and resumed:
            needs = tu.requires_approval
        else:
            out = await self._hook(
                Hook.BEFORE_TOOL,
                {"name": call.name, "args": dict(args), "call_id": call.id},
                call_id=call.id,
                tool_name=call.name,
            )
            if out.aborted is not None:
                raise self._plugin_abort(run, *out.aborted)
            if out.blocked is not None:
                return ToolResult(f"blocked by {out.blocked[0]}: {out.blocked[1]}", True), None
            if out.args is not None:
                args = dict(out.args)
            if out.approval is not None:
                needs, hint = out.approval
            policy = tool.policy()
            if needs and policy["approval_class"] == "none":
                policy["approval_class"] = "medium"
            tu = await self.recorder.tool_use(agent_call_id, call, args, policy, needs, tool.schema())
        ref = tu.id if tu is not None else call.id
        status = tu.status if tu is not None else ("pending" if needs else "none")
        if tu is not None and status == "executing":
            # The process stopped while this ran: it may have had effects, so it is not run again.
            await self.recorder.tool_failed(ref, "interrupted", "the process stopped while the tool ran")
            return ToolResult(
                "interrupted: the process stopped while this tool ran; it was not run again", True
            ), ref
        if tu is not None and status in ("completed", "failed", "timeout", "cancelled"):
            return ToolResult(tu.output or tu.error or status, status != "completed"), ref
        if status == "pending" and needs:
            decision = await self._await_approval(ref, call, args, tu, hint)
            if not decision.auto_resume:
                run.stop_after_batch = True
            if not decision.approved:
                note = decision.note or (tu and (await self.recorder.get_tool_use(ref)).denial_reason)
                return ToolResult(f"denied by the user{': ' + note if note else ''}", True), (
                    ref if tu else None
                )
            if tu is not None:
                args = (await self.recorder.get_tool_use(ref)).input
            elif decision.args is not None:
                args = dict(decision.args)
        elif status == "denied":
            return ToolResult(
                f"denied{': ' + tu.denial_reason if tu and tu.denial_reason else ''}", True
            ), ref
        return await self._execute(run, tool, call, args, tu.id if tu else None, interventions)

    async def _await_approval(
        self,
        ref: str,
        call: ToolCall,
        args: Mapping[str, Any],
        tu: StoredToolUse | None,
        hint: str | None = None,
    ) -> _Decision:
        fut: asyncio.Future[_Decision] = asyncio.get_running_loop().create_future()
        self._approvals[ref] = _Pending(
            ref, fut, call.name, dict(args), call.id, approval_id=tu.approval_id if tu else None
        )
        self.emit(
            ev.ApprovalRequired(ref, call.name, dict(args), call.id, tu.approval_id if tu else None, hint)
        )
        try:
            if tu is not None:
                # It may have been decided between our read and our subscription: look once more.
                now = await self.recorder.get_tool_use(ref)
                if now.status in ("approved", "denied") and not fut.done():
                    fut.set_result(_Decision(now.status == "approved"))
            decision = await fut
        except asyncio.CancelledError:
            if tu is not None:
                with contextlib.suppress(CmdcError):
                    await asyncio.shield(
                        self.recorder.tool_cancelled(ref, "aborted while waiting for approval")
                    )
            raise
        finally:
            self._approvals.pop(ref, None)
        self.emit(ev.AgentResumed("tool_approved" if decision.approved else "tool_rejected", (ref,)))
        return decision

    async def _execute(
        self,
        run: _Run,
        tool: Tool,
        call: ToolCall,
        args: Mapping[str, Any],
        tu: str | None,
        interventions: list[str],
    ) -> tuple[ToolResult, str | None]:
        running = self._running.get(call.id)
        if running is not None:
            running.executing = True
        started = time.time()
        await self.recorder.tool_started(tu)
        self.emit(ev.ToolExecutionStart(call.name, call.id, dict(args)))
        self.emit(ev.ToolExecutionMetrics(call.name, call.id, _ms(started)))
        retries = tool.retries if tool.retries is not None else self.options.tool_retries
        timeout = tool.timeout_s if tool.timeout_s is not None else self.options.tool_timeout_s
        attempt = 0
        timed_out = False
        result: ToolResult
        while True:
            attempt += 1
            try:
                ctx = self.context(call_id=call.id, tool_name=call.name)
                if timeout is not None:
                    result = await asyncio.wait_for(tool.invoke(args, ctx), timeout)
                else:
                    result = await tool.invoke(args, ctx)
                break
            except asyncio.CancelledError as exc:
                why = str(exc.args[0]) if exc.args else "interrupted"
                with contextlib.suppress(CmdcError):
                    await asyncio.shield(self.recorder.tool_cancelled(tu, why))
                self.emit(ev.ToolExecutionEnd(call.name, call.id, False, why))
                if run.abort is None:
                    task = asyncio.current_task()
                    if task is not None:
                        task.uncancel()
                    return ToolResult(why, True), tu  # killed by steering: the run goes on
                raise
            except TimeoutError:
                timed_out = True
                error = f"timed out after {timeout:g} s"
            except ToolError as exc:
                error = str(exc)
            except Exception as exc:
                error = f"{type(exc).__name__}: {exc}"
            out = await self._hook(
                Hook.ON_TOOL_ERROR,
                {"name": call.name, "call_id": call.id, "error": error, "attempt": attempt},
                call_id=call.id,
                tool_name=call.name,
            )
            self._plugin_control(run, out, Hook.ON_TOOL_ERROR)
            if attempt <= retries:
                await asyncio.sleep(self.options.tool_retry_delay_s)
                timed_out = False
                continue
            result = ToolResult(error, True)
            break
        ended = time.time()
        if result.is_error:
            await self.recorder.tool_failed(
                tu, "timeout" if timed_out else "error", result.content, timed_out=timed_out
            )
        else:
            await self.recorder.tool_done(tu, result.content)
        out = await self._hook(
            Hook.AFTER_TOOL,
            {"name": call.name, "call_id": call.id, "result": result, "args": dict(args)},
            call_id=call.id,
            tool_name=call.name,
        )
        self._plugin_control(run, out, Hook.AFTER_TOOL)
        if out.result is not None:
            result = out.result
        if out.intervention:
            interventions.append(out.intervention)
        self.emit(ev.ToolExecutionEnd(call.name, call.id, not result.is_error, result.content))
        self.emit(
            ev.ToolExecutionMetrics(
                call.name, call.id, _ms(started), _ms(ended), _ms(ended - started), attempt
            )
        )
        return result, tu

    async def _after_abort(self, run: _Run) -> None:
        """Clean up after a cancelled run: the call in flight is cancelled, dangling tool calls get a
        result so the conversation stays valid for the next request."""
        with contextlib.suppress(CmdcError):
            await self.recorder.cancel_call(run.call_id, f"aborted ({(run.abort or ('user_cancelled',))[0]})")
        reason = (run.abort or ("user_cancelled", None))[0]
        for c in self._dangling():
            await self._add_message(
                {
                    "role": "tool",
                    "tool_call_id": c["id"],
                    "content": f"interrupted: the run was aborted ({reason})",
                },
                meta={"name": c["function"]["name"], "is_error": True},
            )

    # -- resuming -------------------------------------------------------------------------------------
    @classmethod
    def from_session(cls, session: Any, **options: Any) -> Agent:
        """Rebuild an agent from a stored session: its messages become the conversation. If the last
        turn was interrupted (tool calls without results), `resume()` finishes it."""
        opts = AgentOptions.build(session=session, **options)
        agent = cls(opts)
        rows = agent.recorder.history()
        agent.messages, agent._resume_calls = history_from_rows(rows)
        agent.messages = [*[dict(m) for m in opts.messages], *agent.messages]
        return agent

    @property
    def interrupted(self) -> bool:
        """Whether the conversation ends in tool calls that have no result (resume() finishes them)."""
        return bool(self._dangling())

    async def _resume_dangling(self, run: _Run) -> None:
        dangling = self._dangling()
        if not dangling:
            return
        calls = [ToolCall.parse(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in dangling]
        agent_call_id = self._resume_calls.get(calls[0].id)
        known: dict[str, StoredToolUse | None] = {}
        for c in calls:
            known[c.id] = await self.recorder.find_tool_use(agent_call_id, c.id) if agent_call_id else None
        self.emit(ev.AgentResumed("resume", tuple(c.id for c in calls), len(calls)))
        await self._tool_batch(run, calls, agent_call_id, {k: v for k, v in known.items() if v is not None})

    # -- compaction -----------------------------------------------------------------------------------
    async def _summarise(self, old: list[dict[str, Any]]) -> str:
        """One model call that writes the summary; stored (with its cost) like any call of the session."""
        messages = [
            {"role": "system", "content": SUMMARY_PROMPT},
            {"role": "user", "content": json.dumps(old, ensure_ascii=False, default=str)},
        ]
        call_id = await self.recorder.start_call(
            model=self.model, messages=messages, system_prompt=SUMMARY_PROMPT, temperature=None,
            max_tokens=None, tools=[], turn=self.turns, purpose="compaction",
        )  # fmt: skip
        try:
            done = await stream_completion(
                ProviderRequest(self.model, messages, extra=self.provider_opts),
                on_part=lambda p: None,
                retry=self.options.retry,
                cassette=self.options.cassette,
                pricer=self.recorder.price,
            )
        except ProviderError as err:
            await self.recorder.fail_call(call_id, err.kind, str(err), timeout=err.kind == "timeout")
            raise
        cost = await self.recorder.complete_response(call_id, done, message=False)
        self.usage += done.usage
        self.cost_usd = _add_cost(self.cost_usd, cost)
        return done.text

    async def compact(
        self, *, keep_last: int = 6, summary: str | None = None, during_run: bool = False
    ) -> ev.Compaction | None:
        """Replace all but the last `keep_last` messages by a summary (written by the model unless
        given). The evicted messages are kept in `<working_dir>/.cmdc/conversation_history/`.
        Returns None when a before_compact plugin skipped it, or there was nothing to compact.
        (`during_run` is for the kernel and the compact_conversation tool, which run inside a turn.)"""
        self._bind()
        if self.busy and not during_run:
            raise AgentError("compact() while a run is in progress; wait for it (or abort it) first")
        cut = max(0, len(self.messages) - keep_last)
        while cut > 0 and self.messages[cut].get("role") == "tool":
            cut -= 1  # never keep a tool result without the call that asked for it
        if cut <= 0:
            return None
        out = await self._hook(Hook.BEFORE_COMPACT, {"messages": list(self.messages)})
        if out.skipped_by is not None:
            return None
        old = self.messages[:cut]
        if summary is None:
            summary = await self._summarise(old)
        folder = Path(self.options.working_dir) / ".cmdc" / "conversation_history"
        folder.mkdir(parents=True, exist_ok=True)
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        (folder / f"{self.id}-{stamp}.json").write_text(
            json.dumps(old, ensure_ascii=False, default=str, indent=1), encoding="utf-8"
        )
        before = len(self.messages)
        self.messages = [
            {"role": "user", "content": f"[Summary of the earlier conversation]\n{summary}"},
            *self.messages[cut:],
        ]
        event = ev.Compaction(before, len(self.messages), len(old), summary)
        self.emit(event)
        return event


def _context_window(model: str) -> int | None:
    from cmdc_nb.pricing import _litellm_map

    table = _litellm_map()
    for key in (model, model.split("/", 1)[-1]):
        entry = table.get(key)
        if isinstance(entry, Mapping):
            window = entry.get("max_input_tokens") or entry.get("max_tokens")
            if isinstance(window, int):
                return window
    return None


SUMMARY_PROMPT = (
    "Summarise this conversation for the assistant that continues it: keep key decisions, facts, open "
    "tasks and file names. Be brief."
)


class _Stop(Exception):
    """Internal: end the run with this reason."""

    def __init__(self, reason: EndReason) -> None:
        self.reason = reason
        super().__init__(reason.kind)
