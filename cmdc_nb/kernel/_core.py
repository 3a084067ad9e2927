"""The agent's core: its state, events, hooks and messages — what the loop, the tool runner and
compaction share. `Agent` (agent.py) builds on it; nothing here starts a run."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from cmdc_nb.errors import AgentError, AgentNotAliveError, InvalidInputError
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.loop_guard import LoopGuard
from cmdc_nb.kernel.options import AgentOptions, normalize_model
from cmdc_nb.kernel.persist import Recorder
from cmdc_nb.kernel.plugins import Hook, HookOutcome, PluginPipeline
from cmdc_nb.kernel.run_state import AgentState, EndReason, Pending, Run, RunningTool, Stop
from cmdc_nb.kernel.tools import Tool, ToolContext
from cmdc_nb.providers import TokenUsage, ToolCall
from cmdc_nb.providers.attachments import Attachment

__all__ = ["AgentCore"]

log = logging.getLogger("cmdc_nb.kernel")


class AgentCore:
    """State and helpers shared by the agent's parts (see agent.py for the loop)."""

    id: str
    options: AgentOptions
    model: str
    provider_opts: dict[str, Any]
    tools: dict[str, Tool]
    plugins: PluginPipeline
    recorder: Recorder
    events: ev.EventLog
    messages: list[dict[str, Any]]
    state: AgentState
    usage: TokenUsage
    cost_usd: Decimal | None
    turns: int
    system_context: dict[str, str]
    last_reply: str | None
    title: str | None
    alive: bool
    todos: list[dict[str, Any]]
    output_filters: list[Callable[[str], str]]
    _sandbox: Any
    _loop: asyncio.AbstractEventLoop | None
    _run_task: asyncio.Task[Any] | None
    _run: Run | None
    _prompts: Any
    _steering: Any
    _approvals: dict[str, Pending]
    _early_decisions: dict[str, bool]
    _inputs: dict[str, Pending]
    _running: dict[str, RunningTool]
    _monitors: list[asyncio.Future[EndReason]]
    _guard: LoopGuard

    def _subscribe_decisions(self) -> None:  # the agent subscribes once it knows its loop
        pass

    def _decided(self, ref: str, approved: bool) -> None:  # a stored decision arrived (see Agent)
        pass

    def _resolve(self, future: asyncio.Future[Any], value: Any) -> None:
        """Resolve a wait of the run from any thread (a widget callback, a server thread, a test)."""

        def settle() -> None:
            if not future.done():
                future.set_result(value)

        loop = self._loop
        try:
            here = asyncio.get_running_loop()
        except RuntimeError:
            here = None
        if loop is None or here is loop or loop.is_closed():
            settle()
        else:
            loop.call_soon_threadsafe(settle)

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

    @property
    def busy(self) -> bool:
        """Whether a run is in progress or prompts are waiting."""
        return self._run is not None or bool(self._prompts)

    def emit(self, event: ev.AgentEvent) -> ev.Envelope:
        return self.events.emit(event)

    def _forward(self, env: ev.Envelope) -> None:
        if not self.recorder.enabled:
            return
        from cmdc_nb._plumbing.workspace import get_workspace
        from cmdc_nb.events import topics
        from cmdc_nb.events._bus import LazyPayload

        # as plain JSON when first read: most mirrored events are buffered and never read
        get_workspace(self.recorder.ws).bus.publish(topics.agent(self.id), env.type, LazyPayload(env.to_dict))

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
            from cmdc_nb.kernel.sandbox import LocalSandbox

            self._sandbox = LocalSandbox(self.options.working_dir)
        return self._sandbox

    def _tool_emit(self, name: str, payload: Any) -> None:
        self.emit(ev.PluginEvent("tool", name, payload))

    async def _ask_user(
        self, question: str, options: Sequence[Mapping[str, Any]] = (), timeout_s: float | None = 300.0
    ) -> str:
        ref = uuid.uuid4().hex[:12]
        fut: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self._inputs[ref] = Pending(ref, fut, question=question)
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

    async def _add_message(
        self,
        msg: dict[str, Any],
        *,
        agent_call_id: str | None = None,
        tool_calls: Sequence[ToolCall] = (),
        tool_use_id: str | None = None,
        meta: Mapping[str, Any] | None = None,
        files: Sequence[Attachment] = (),
    ) -> None:
        self.messages.append(msg)
        role = {"tool": "tool_result"}.get(msg["role"], msg["role"])
        extra = dict(meta or {})
        if msg["role"] == "tool":
            extra["tool_call_id"] = msg["tool_call_id"]
        content = msg.get("content")
        if type(content) is list:  # the text; the files are stored apart, as artifacts
            content = next((p.get("text", "") for p in content if p.get("type") == "text"), "")
        await self.recorder.message(
            role,
            content,
            files=files,
            tool_calls=tool_calls,
            agent_call_id=agent_call_id,
            tool_use_id=tool_use_id,
            meta=extra,
        )

    async def _intervene(self, text: str, hook: Hook) -> None:
        self.emit(ev.Intervention(text, hook.value))
        await self._add_message({"role": "user", "content": text}, meta={"intervention": hook.value})

    def _plugin_control(self, run: Run, out: HookOutcome, hook: Hook) -> None:
        """Abort and switch_model actions, common to several hooks."""
        if out.switch_model is not None:
            model, opts = out.switch_model
            self.switch_model(model, provider_opts=opts, reason=f"plugin at {hook.value}")
        if out.aborted is not None:
            raise self._plugin_abort(run, *out.aborted)

    def _plugin_abort(self, run: Run, plugin: str, why: str) -> Stop:
        run.abort = ("plugin_aborted", why)
        self.emit(ev.AgentAbort("plugin_aborted", f"{plugin}: {why}", self.state.value))
        return Stop(EndReason("plugin_aborted", why, plugin))

    def _kill_tools(self, which: str, why: str, *, only_executing: bool = False) -> None:
        for r in list(self._running.values()):
            if only_executing and not r.executing:
                continue
            immune = r.immune and which != "all"
            if not immune and not r.task.done():
                r.task.cancel(why)

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
