"""Running the tool calls of one response: concurrently, each with its hooks, its approval (only that
call waits), its timeout, retries and result — and cleaning up after an abort."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Mapping, Sequence
from typing import Any

from cmdc_nb.errors import CmdcError
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel._core import AgentCore
from cmdc_nb.kernel.persist import StoredToolUse
from cmdc_nb.kernel.plugins import Hook
from cmdc_nb.kernel.run_state import AgentState, Decision, EndReason, Pending, Run, RunningTool, Stop, ms
from cmdc_nb.kernel.tools import Tool, ToolError, ToolResult
from cmdc_nb.providers import ToolCall

__all__ = ["ToolRunner"]


DECISION_POLL_S = 1.0  # how often a waiting tool call reads its decision when events cannot reach it
DECISION_FALLBACK_S = 10.0  # ... and when they can (the event bridge shares them): a safety net


class ToolRunner(AgentCore):
    async def _tool_batch(
        self,
        run: Run,
        calls: Sequence[ToolCall],
        agent_call_id: str | None,
        known: Mapping[str, StoredToolUse | None] | None = None,
    ) -> None:
        self.state = AgentState.EXECUTING_TOOLS
        run.batch_size = len(calls)
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
            self._running[c.id] = RunningTool(task, c.name, c.id, time.time(), immune)
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
                if isinstance(exc, Stop):
                    raise exc
                results.append((c, ToolResult(f"{type(exc).__name__}: {exc}", True), None))
            else:
                results.append((c, *t.result()))
        for c, result, tu in results:
            msg = {"role": "tool", "tool_call_id": c.id, "content": result.content}
            if c.id in run.results_stored:  # stored with its tool use's end (see _execute)
                self.messages.append(msg)
                continue
            await self._add_message(msg, tool_use_id=tu, meta={"name": c.name, "is_error": result.is_error})
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
            raise Stop(EndReason("loop_detected", stop[1]))
        self.state = AgentState.RUNNING

    async def _one_tool(
        self,
        run: Run,
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
        if tu is not None and status == "executing" and resumed:
            # The process stopped while this ran: it may have had effects, so it is not run again.
            await self.recorder.tool_failed(ref, "interrupted", "the process stopped while the tool ran")
            return ToolResult(
                "interrupted: the process stopped while this tool ran; it was not run again", True
            ), ref
        if tu is not None and status in ("completed", "failed", "timeout", "cancelled"):
            return ToolResult(tu.output or tu.error or status, status != "completed"), ref
        if (status == "pending" and needs) or status in ("approved", "denied"):
            settled = await self._settle(run, ref, call, args, tu, hint, status)
            if isinstance(settled, ToolResult):  # denied: the denial is the call's result
                return settled, (ref if tu else None)
            args = settled
        started = tu is not None and status == "executing"
        return await self._execute(
            run, tool, call, args, tu.id if tu else None, interventions, started=started
        )

    async def _settle(
        self,
        run: Run,
        ref: str,
        call: ToolCall,
        args: Mapping[str, Any],
        tu: StoredToolUse | None,
        hint: str | None,
        status: str,
    ) -> ToolResult | Mapping[str, Any]:
        """A call's decision: waited for (`pending`), or the one a rule made as the call was recorded
        (or taken while the process was down). Says who decided (`tool_decided`) whichever it was — a
        call denied by a rule has no other event — and gives the arguments it runs with, or its denial."""
        waited = status == "pending"
        if waited:
            decision = await self._await_approval(ref, call, args, tu, hint)
            if not decision.auto_resume:
                run.stop_after_batch = True
        else:
            decision = Decision(status == "approved")
        how, by, note = ("person", decision.by, decision.note)
        if tu is not None:
            how, by, stored_note = await self.recorder.decider(ref)
            note = decision.note or stored_note
        self.emit(ev.ToolDecided(ref, call.name, call.id, decision.approved, how, by, note))
        if waited:
            self.emit(ev.AgentResumed("tool_approved" if decision.approved else "tool_rejected", (ref,)))
        if not decision.approved:
            said = "denied by the user" if waited else "denied"
            return ToolResult(f"{said}{': ' + note if note else ''}", True)
        if tu is not None:
            return (await self.recorder.get_tool_use(ref)).input if waited else tu.input
        return dict(decision.args) if decision.args is not None else args

    async def _await_approval(
        self,
        ref: str,
        call: ToolCall,
        args: Mapping[str, Any],
        tu: StoredToolUse | None,
        hint: str | None = None,
    ) -> Decision:
        fut: asyncio.Future[Decision] = asyncio.get_running_loop().create_future()
        self._approvals[ref] = Pending(
            ref, fut, call.name, dict(args), call.id, approval_id=tu.approval_id if tu else None
        )
        self.emit(
            ev.ApprovalRequired(ref, call.name, dict(args), call.id, tu.approval_id if tu else None, hint)
        )
        fallback: asyncio.Task[None] | None = None
        try:
            if tu is not None:
                early = self._early_decisions.pop(ref, None)
                if early is not None:  # its event came before this call began to wait
                    fut.set_result(Decision(early))
                fallback = asyncio.create_task(self._poll_decision(ref, fut))
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
            if fallback is not None:
                fallback.cancel()
        return decision

    async def _poll_decision(self, ref: str, fut: asyncio.Future[Decision]) -> None:
        """The fallback waiter: decisions arrive as events (see Agent._decided); one taken by a process
        whose events do not reach this bus (another kernel on SQLite, a worker without the event bridge)
        is read from the database — each second, or every ten when events are shared anyway."""
        every = DECISION_FALLBACK_S if self.recorder.shares_events else DECISION_POLL_S
        while not fut.done():
            await asyncio.sleep(every)
            try:
                now = await self.recorder.get_tool_use(ref)
            except CmdcError:  # a transient database error: look again next time
                continue
            if now.status in ("approved", "denied") and not fut.done():
                self._decided(ref, now.status == "approved")

    async def _execute(
        self,
        run: Run,
        tool: Tool,
        call: ToolCall,
        args: Mapping[str, Any],
        tu: str | None,
        interventions: list[str],
        *,
        started: bool = False,
    ) -> tuple[ToolResult, str | None]:
        running = self._running.get(call.id)
        if running is not None:
            running.executing, running.tool_use_id = True, tu
        if not started:  # approved calls (and agents that store nothing) move to executing here
            await self.recorder.tool_started(tu)
        started_at = time.time()
        self.emit(ev.ToolExecutionStart(call.name, call.id, dict(args)))
        self.emit(ev.ToolExecutionMetrics(call.name, call.id, ms(started_at)))
        outcome = await self._attempts(run, tool, call, args, tu)
        if isinstance(outcome, str):  # killed by steering: the run goes on without this call's result
            return ToolResult(outcome, True), tu
        result, attempt, timed_out = outcome
        ended = time.time()
        # With no plugin to change the result after this, and no other call in the batch to keep the
        # messages in order, the result message is stored with the tool's end: one write, not two.
        result_msg = None
        if not self.plugins.plugins and run.batch_size == 1:
            result_msg = (
                result.content,
                {"name": call.name, "is_error": result.is_error, "tool_call_id": call.id},
            )
        if result.is_error:
            stored = await self.recorder.tool_failed(
                tu,
                "timeout" if timed_out else "error",
                result.content,
                timed_out=timed_out,
                result=result_msg,
            )
        else:
            stored = await self.recorder.tool_done(tu, result.content, result=result_msg)
        if stored:
            run.results_stored.add(call.id)
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
                call.name, call.id, ms(started_at), ms(ended), ms(ended - started_at), attempt
            )
        )
        return result, tu

    async def _attempts(
        self, run: Run, tool: Tool, call: ToolCall, args: Mapping[str, Any], tu: str | None
    ) -> tuple[ToolResult, int, bool] | str:
        """Run the tool under its timeout, retrying as configured (each failure through `on_tool_error`).
        Returns the result, the attempts made and whether the last one timed out; why, when steering
        killed the call (the run goes on); and re-raises when the run itself was aborted."""
        retries = tool.retries if tool.retries is not None else self.options.tool_retries
        timeout = tool.timeout_s if tool.timeout_s is not None else self.options.tool_timeout_s
        attempt = 0
        while True:
            attempt += 1
            timed_out = False
            try:
                ctx = self.context(call_id=call.id, tool_name=call.name)
                invoked = tool.invoke(args, ctx)
                return (
                    (await (asyncio.wait_for(invoked, timeout) if timeout is not None else invoked)),
                    attempt,
                    False,
                )
            except asyncio.CancelledError as exc:
                why = str(exc.args[0]) if exc.args else "interrupted"
                with contextlib.suppress(CmdcError):
                    await asyncio.shield(self.recorder.tool_cancelled(tu, why))
                self.emit(ev.ToolExecutionEnd(call.name, call.id, False, why))
                task = asyncio.current_task()
                if run.abort is not None or task is None:
                    raise
                task.uncancel()
                return why
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
            if attempt > retries:
                return ToolResult(error, True), attempt, timed_out
            await asyncio.sleep(self.options.tool_retry_delay_s)

    async def _after_abort(self, run: Run) -> None:
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
