"""Reflection: before finishing, the agent reviews its own answer (or a reviewer sub-agent does).

Phases: idle —before_finish→ reviewing —a response containing the pass signal→ done. A review that does
not pass stays in `reviewing` (the next before_finish reviews again) until `max_reviews`, after which the
answer is accepted as it is (`reflection_approved` with `forced=True`). Each new prompt starts over.
With `reviewer_subagent=True` a separate agent (on `reviewer_model`, if given) judges the answer; if it
fails, the plugin falls back to self-review.

The run's reply is all the assistant text of the run: the first answer, any corrections and the pass
signal. The answer that was accepted is `reflection_approved`'s `answer` (and the plugin's `answer`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import ClassVar

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.options import SubAgent
from cmdc_nb.kernel.plugins import Action, HookEvent, Intervene, Plugin
from cmdc_nb.kernel.tools import ToolContext

__all__ = ["Reflection", "ReflectionApproved"]


@ev.register_event_type
@dataclass(frozen=True, slots=True)
class ReflectionApproved(ev.AgentEvent):
    """A review passed (or `max_reviews` was reached: `forced`). `answer` is the answer accepted — the
    last one reviewed, not the review's own reply (`critique`), which holds the pass signal."""

    type: ClassVar[str] = "reflection_approved"
    critique: str
    iteration: int
    forced: bool = False
    answer: str = ""


REVIEW = (
    "Review your last answer against these criteria: {criteria}. If it fully meets them, reply with exactly "
    "{signal}. Otherwise reply with the corrected, complete answer."
)


class Reflection(Plugin):
    """Makes the agent review its answer before finishing."""

    name = "reflection"
    priority = 400

    @checked
    def __init__(
        self,
        *,
        criteria: str = "correct, complete and clear",
        pass_signal: str | re.Pattern[str] = "APPROVED",
        max_reviews: int = 3,
        reviewer_prompt: str | None = None,
        reviewer_subagent: bool = False,
        reviewer_model: str | None = None,
        reviewer_timeout_s: float = 60.0,
    ) -> None:
        super().__init__()
        self.criteria = criteria
        self.pass_signal = pass_signal
        self.max_reviews = max_reviews
        self.reviewer_prompt = reviewer_prompt
        self.reviewer_subagent = reviewer_subagent
        self.reviewer_model = reviewer_model
        self.reviewer_timeout_s = reviewer_timeout_s
        self.phase = "idle"
        self.reviews = 0
        self.answer: str | None = None  # the answer under review, then the one accepted

    def passes(self, text: str) -> bool:
        if isinstance(self.pass_signal, re.Pattern):
            return self.pass_signal.search(text) is not None
        return self.pass_signal in text

    def _prompt(self) -> str:
        signal = self.pass_signal.pattern if isinstance(self.pass_signal, re.Pattern) else self.pass_signal
        return (self.reviewer_prompt or REVIEW).format(criteria=self.criteria, signal=signal)

    def on_before_prompt(self, event: HookEvent, ctx: ToolContext) -> None:
        self.phase, self.reviews, self.answer = "idle", 0, None

    async def on_before_finish(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        if self.phase == "done":
            return None
        self.answer = event.reply
        if self.reviews >= self.max_reviews:
            self._done(ctx, event.reply, forced=True)
            return None
        self.phase = "reviewing"
        self.reviews += 1
        if self.reviewer_subagent and ctx.agent is not None:
            verdict = await self._ask_reviewer(ctx, event.reply)
            if verdict is not None:
                if self.passes(verdict):
                    self._done(ctx, verdict)
                    return None
                return Intervene(
                    f"A reviewer found problems with your answer:\n{verdict}\nGive the corrected, complete answer."
                )
        return Intervene(self._prompt())

    def on_after_response(self, event: HookEvent, ctx: ToolContext) -> None:
        if self.phase == "reviewing" and not event.tool_calls and self.passes(event.text or ""):
            self._done(ctx, event.text)

    def _done(self, ctx: ToolContext, critique: str, *, forced: bool = False) -> None:
        self.phase = "done"
        if ctx.agent is not None:
            ctx.agent.emit(ReflectionApproved(critique, self.reviews, forced, self.answer or ""))

    async def _ask_reviewer(self, ctx: ToolContext, reply: str) -> str | None:
        from cmdc_nb.toolkit.agentic import run_subagent

        spec = SubAgent(
            name="reviewer",
            description="Reviews an answer",
            system_prompt=f"You review answers. {self._prompt()}",
            model=self.reviewer_model,
            tools=[],
            timeout_s=self.reviewer_timeout_s,
        )
        question = ctx.agent.messages[-2]["content"] if len(ctx.agent.messages) >= 2 else ""
        try:
            verdict, _ = await run_subagent(
                ctx.agent, spec, f"Question:\n{question}\n\nAnswer to review:\n{reply}"
            )
        except Exception:
            return None  # fall back to self-review
        return str(verdict)

    def describe(self) -> str:
        return f"Reflection ({self.phase}, {self.reviews}/{self.max_reviews} reviews)"
