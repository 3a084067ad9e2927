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
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable
from decimal import Decimal
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
from cmdc_nb.kernel.decisions import Decisions
from cmdc_nb.kernel.loop_guard import LoopGuard
from cmdc_nb.kernel.options import AgentOptions
from cmdc_nb.kernel.persist import Recorder, history_from_rows
from cmdc_nb.kernel.plugins import Hook, PluginPipeline
from cmdc_nb.kernel.request import Requester
from cmdc_nb.kernel.run_state import (
    ABORT_REASONS,
    KILL_TOOLS,
    AgentState,
    EndReason,
    Pending,
    PromptHandle,
    Run,
    RunningTool,
    SteerResult,
    Stop,
    ms,
    normalize_abort_reason,
)
from cmdc_nb.kernel.tool_runner import ToolRunner
from cmdc_nb.kernel.tools import Tool, as_tool
from cmdc_nb.providers import ProviderRequest, TokenUsage, ToolCall
from cmdc_nb.providers.attachments import Attachment, attachments, message_content, refusal

log = logging.getLogger("cmdc_nb.kernel")
__all__ = [
    "ABORT_REASONS",
    "Agent",
    "AgentState",
    "EndReason",
    "PromptHandle",
    "SteerResult",
    "normalize_abort_reason",
]


class Agent(ToolRunner, Requester, Decisions):
    """An agent. `Agent(model="scripted/demo", tools=[add], session=s)`; options as in AgentOptions."""

    def __init__(self, options: AgentOptions | None = None, /, **kw: Any) -> None:
        if options is None:
            options = AgentOptions.build(**kw)
        elif kw:
            raise InvalidInputError("give AgentOptions or keyword options, not both", field="options")
        self.options = options
        self.created_at = time.monotonic()
        self.id = options.new_id()
        self.model = options.model
        self.provider_opts: dict[str, Any] = dict(options.provider_opts)
        self.tools: dict[str, Tool] = {t.name: t for t in options.tools}
        self.plugins = PluginPipeline(options.plugins)
        self.recorder = Recorder(
            options.session,
            options.ws,
            record_messages=options.record_messages,
            workflow_step=options.workflow_step,
            agent_name=options.name,
        )
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
        self.title: str | None = None  # the newest <title> the model wrote (stream_tags=True)
        self._last_request: ProviderRequest | None = None
        self.alive = True
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: asyncio.Runner | None = None
        self._driver: asyncio.Task[None] | None = None
        self._run_task: asyncio.Task[Any] | None = None
        self._run: Run | None = None
        self._prompts: deque[tuple[str, PromptHandle | None, bool]] = deque()
        self._steering: deque[str] = deque()
        self._approvals: dict[str, Pending] = {}
        self._inputs: dict[str, Pending] = {}
        self._running: dict[str, RunningTool] = {}
        self._monitors: list[asyncio.Future[EndReason]] = []
        self._guard = LoopGuard(options.max_identical_tool_calls, options.max_consecutive_tool_failures)
        self._started = False
        self._bus_sub: Any = None
        self._resume_calls: dict[str, str] = {}  # tool call id -> agent call id, for a resumed turn
        self._early_decisions: dict[str, bool] = {}  # see _decided

    def __repr__(self) -> str:
        return f"<Agent {self.id[:8]} model={self.model!r} state={self.state.value} turns={self.turns}>"

    # -- public surface (the facade calls these) ------------------------------------------------------
    def prompt(self, text: str, *, files: Any = None) -> PromptHandle:
        """Start a run with `text`, or queue it when the agent is busy. Returns at once.

        `files`: a list of paths, bytes or `attach(...)` results — images, PDFs and text files sent with
        the prompt in litellm's multimodal format and stored as artifacts of the session. A model that
        cannot take them (by litellm's model map, or a scripted model's `accepts`) is refused here with
        a sentence, before anything is sent or stored."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("a prompt needs some text", field="text")
        attached = attachments(files)
        said = refusal(self.model, attached) if attached else None
        if said:
            raise InvalidInputError(said, field="files")
        loop = self._bind()
        future: asyncio.Future[str] = loop.create_future()
        queued = self.busy
        handle = PromptHandle(text, queued, future, attached)
        self._prompts.append((text, handle, False))
        self.emit(ev.PromptReceived(text, queued, tuple(a.meta() for a in attached)))
        self._ensure_driver(loop)
        return handle

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
            if not run.handle.future.done():
                # The caller's wait ends now; storing the cancellation goes on in the background.
                run.handle.future.set_exception(AbortedError(norm, detail))
                run.handle.future.exception()
        self.state = AgentState.IDLE
        self.emit(ev.AgentAbort(norm, detail, state.value))
        return norm

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
            "active_since_ms": ms(now - run.started) if run is not None else None,
            "pending_tools": [
                {
                    "name": r.name,
                    "call_id": r.call_id,
                    "started_at_ms": ms(r.started),
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
                    "requested_at_ms": ms(p.requested_at),
                }
                for p in self._approvals.values()
                if p.choice is None  # decided here, its event on the way: no longer waiting for a person
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

    def user_respond(self, ref: str, response: str) -> None:
        pending = self._inputs.get(str(ref))
        if pending is None:
            raise NotFoundError("pending user input", ref)
        if not isinstance(response, str):
            raise InvalidInputError("must be text", field="response")
        self._resolve(pending.future, response)
        self.emit(ev.UserResponded(str(ref), response))
        self.emit(ev.AgentResumed("user_respond", (str(ref),)))

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

    async def _drive(self) -> None:
        while self._prompts and self.alive:
            text, handle, resuming = self._prompts.popleft()
            assert handle is not None
            self._run_task = asyncio.ensure_future(self._one_run(text, handle, resuming))
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.shield(self._run_task)
            self._run_task = None

    async def _one_run(self, text: str, handle: PromptHandle, resuming: bool) -> None:
        run = self._run = Run(handle, time.time(), messages_at_start=len(self.messages))
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
                await self._accept_prompt(run, text, handle.files)
            try:
                reason = await self._turns(run)
            except Stop as stop:
                reason = stop.reason
            # A write still in flight (a tool's end, stored while the loop went on) fails the run
            # here, as it would have where it began.
            await self.recorder.flush()
        except Stop as stop:
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

    def _finish_handle(self, run: Run, exc: BaseException | None = None) -> None:
        if run.handle.future.done():
            return
        if exc is not None:
            run.handle.future.set_exception(exc)
            run.handle.future.exception()  # mark retrieved: a caller that never awaits sees no warning
        else:
            run.handle.future.set_result("\n\n".join(t for t in run.texts if t))

    async def _end_run(self, run: Run, reason: EndReason) -> None:
        with contextlib.suppress(CmdcError, asyncio.CancelledError):
            await self.recorder.flush()  # what the fast path holds is stored before the run ends
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
                    "started_at_ms": ms(run.started),
                    "ended_at_ms": ms(ended),
                    "duration_ms": ms(ended - run.started),
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

    async def _accept_prompt(self, run: Run, text: str, files: tuple[Attachment, ...] = ()) -> None:
        out = await self._hook(Hook.BEFORE_PROMPT, {"text": text, "files": [f.meta() for f in files]})
        if out.aborted:
            raise self._plugin_abort(run, *out.aborted)
        await self._add_message({"role": "user", "content": message_content(text, files)}, files=files)
        if out.intervention:
            self.emit(ev.Intervention(out.intervention, Hook.BEFORE_PROMPT.value))
            await self._add_message(
                {"role": "user", "content": out.intervention}, meta={"intervention": "before_prompt"}
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

    async def _turns(self, run: Run) -> EndReason:
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

    # -- resuming -------------------------------------------------------------------------------------
    @classmethod
    def from_session(cls, session: Any, **options: Any) -> Agent:
        """Rebuild an agent from a stored session: its messages become the conversation. If the last
        turn was interrupted (tool calls without results), `resume()` finishes it."""
        opts = AgentOptions.build(session=session, **options)
        agent = cls(opts)
        rows = agent.recorder.history()
        agent.messages, agent._resume_calls = history_from_rows(rows, agent.recorder.files_of)
        agent.messages = [*[dict(m) for m in opts.messages], *agent.messages]
        return agent

    @property
    def interrupted(self) -> bool:
        """Whether the conversation ends in tool calls that have no result (resume() finishes them)."""
        return bool(self._dangling())

    async def _resume_dangling(self, run: Run) -> None:
        dangling = self._dangling()
        if not dangling:
            return
        calls = [ToolCall.parse(c["id"], c["function"]["name"], c["function"]["arguments"]) for c in dangling]
        agent_call_id = self._resume_calls.get(calls[0].id)
        known = await self.recorder.tool_uses_of(agent_call_id) if agent_call_id else {}
        self.emit(ev.AgentResumed("resume", tuple(c.id for c in calls), len(calls)))
        await self._tool_batch(run, calls, agent_call_id, {c.id: known[c.id] for c in calls if c.id in known})
