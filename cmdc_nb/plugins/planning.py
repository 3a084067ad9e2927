"""Planning: ask for a plan on long prompts, keep it in the system prompt, advance it step by step.

On a prompt of at least `min_prompt_length` characters the plugin asks the model for a Markdown
checklist first (`before_prompt` intervene). The answer is parsed into a `Plan` (`after_response`); the
plan goes into the system prompt (`update_system_context`) and a `plan_updated` event. With
`require_approval=True` the run waits there until a person calls `approve_plan()` (optionally with an
edited Markdown plan) or `reject_plan()`. The model then carries the plan out, reporting progress with the
`update_plan` tool this plugin attaches; each report updates the system prompt and emits an event.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import CmdcError, InvalidInputError
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.plugins import Abort, Action, Emit, HookEvent, Intervene, Plugin
from cmdc_nb.kernel.tools import Tool, ToolContext, ToolError
from cmdc_nb.plugins.plan import STEP_STATUSES, Plan

__all__ = ["PLAN_REQUEST", "PlanUpdated", "Planning"]


@ev.register_event_type
@dataclass(frozen=True, slots=True)
class PlanUpdated(ev.AgentEvent):
    """The plan was generated (`reason="generated"`), advanced, replanned, approved or finished."""

    type: ClassVar[str] = "plan_updated"
    reason: str
    plan: Mapping[str, Any]


PLAN_REQUEST = (
    "Before doing anything else, write a short plan for this task as a Markdown checklist "
    "(one line per step, `- [ ] step`), under a `# Plan:` heading naming the goal. Do not start yet."
)
EXECUTE = "Now carry out the plan step by step. Report each step's progress with the update_plan tool."


class Planning(Plugin):
    """Asks for a plan on long prompts, keeps it in the system prompt, and tracks its steps."""

    name = "planning"
    priority = 200

    @checked
    def __init__(
        self,
        *,
        plan_first: bool = True,
        min_prompt_length: int = 20,
        max_plan_attempts: int = 2,
        require_approval: bool = False,
        approval_timeout_s: float | None = None,
    ) -> None:
        super().__init__()
        self.plan_first = plan_first
        self.min_prompt_length = min_prompt_length
        self.max_plan_attempts = max_plan_attempts
        self.require_approval = require_approval
        self.approval_timeout_s = approval_timeout_s
        self.plan: Plan | None = None
        self._awaiting = False
        self._attempts = 0
        self._decision: asyncio.Future[tuple[bool, str | None]] | None = None
        self._agent: Any = None

    # -- hooks ------------------------------------------------------------------------------------------
    def on_session_start(self, event: HookEvent, ctx: ToolContext) -> None:
        self._agent = ctx.agent
        if ctx.agent is not None and "update_plan" not in ctx.agent.tools:
            ctx.agent.tools["update_plan"] = self.update_plan_tool()

    def on_before_prompt(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        self._agent = ctx.agent
        if not self.plan_first or len(event.text) < self.min_prompt_length:
            return None
        self.plan, self._awaiting, self._attempts = None, True, 0
        return Intervene(PLAN_REQUEST)

    async def on_after_response(self, event: HookEvent, ctx: ToolContext) -> Action | list[Action] | None:
        if not self._awaiting or event.tool_calls:
            return None
        self._attempts += 1
        try:
            plan = Plan.from_markdown(event.text or "")
        except InvalidInputError:
            if self._attempts < self.max_plan_attempts:
                return Intervene("That was not a plan. " + PLAN_REQUEST)
            self._awaiting = False  # give up without blocking the work
            return Emit("plan_failed", {"attempts": self._attempts})
        self._awaiting = False
        self.plan = plan
        self._publish(ctx, "generated")
        if self.require_approval:
            approved, edited = await self._wait_for_decision(ctx)
            if not approved:
                self._publish(ctx, "rejected")
                return Abort(f"the plan was rejected{': ' + edited if edited else ''}")
            if edited:
                self.plan = Plan.from_markdown(edited, goal=plan.goal)
            self.plan.approve()
            self._publish(ctx, "approved")
        return Intervene(EXECUTE)

    def on_after_turn(self, event: HookEvent, ctx: ToolContext) -> None:
        self._awaiting = False

    # -- a person's decision ----------------------------------------------------------------------------
    async def _wait_for_decision(self, ctx: ToolContext) -> tuple[bool, str | None]:
        self._decision = asyncio.get_running_loop().create_future()
        self._publish(ctx, "proposed")  # waiting for approve_plan() / reject_plan() from here on
        try:
            return await asyncio.wait_for(self._decision, self.approval_timeout_s)
        except TimeoutError:
            return False, "no decision in time"
        finally:
            self._decision = None

    @property
    def waiting_for_approval(self) -> bool:
        return self._decision is not None and not self._decision.done()

    def approve_plan(self, markdown: str | None = None) -> None:
        """Approve the proposed plan (or an edited version of it, as Markdown)."""
        if not self.waiting_for_approval:
            raise CmdcError("no plan is waiting for approval")
        if markdown is not None:
            Plan.from_markdown(markdown)  # refuse a malformed edit here, before the run resumes
        assert self._decision is not None
        self._decision.set_result((True, markdown))

    def reject_plan(self, note: str | None = None) -> None:
        if not self.waiting_for_approval:
            raise CmdcError("no plan is waiting for approval")
        assert self._decision is not None
        self._decision.set_result((False, note))

    # -- progress -----------------------------------------------------------------------------------------
    def _publish(self, ctx: ToolContext, reason: str) -> None:
        agent = ctx.agent or self._agent
        if agent is None or self.plan is None:
            return
        agent.system_context["plan"] = self.plan.to_prompt_section()
        agent.emit(PlanUpdated(reason, self.plan.to_dict()))

    def update_plan_tool(self) -> Tool:
        plugin = self

        async def update_plan(step: str, status: str, ctx: ToolContext, note: str | None = None) -> str:
            """Report progress on a step of the current plan.

            Args:
                step: the step's number, e.g. "2"
                status: pending, in_progress, completed, failed or skipped
                note: a short result or reason (optional)
            """
            if plugin.plan is None:
                raise ToolError("there is no plan yet")
            if status not in STEP_STATUSES:
                raise ToolError(f"status must be one of: {', '.join(STEP_STATUSES)}")
            try:
                plugin.plan.set_status(step, status, note)
            except CmdcError as exc:
                raise ToolError(str(exc)) from None
            plugin._publish(ctx, "finished" if plugin.plan.finished else "advanced")
            done, total = plugin.plan.progress()
            return f"step {step} is {status}; {done}/{total} done"

        return Tool.from_function(update_plan)
