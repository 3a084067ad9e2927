"""PlanView: the agent's plan as a live checklist with progress; approve or edit a proposed plan."""

from __future__ import annotations

import ipywidgets as w

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.agent import Agent
from cmdc_nb.plugins.planning import Planning
from cmdc_nb.widgets._common import on_loop
from cmdc_nb.widgets._render import escape
from cmdc_nb.widgets._snapshot import Snapshot
from cmdc_nb.widgets._theme import PANEL_CSS

__all__ = ["PlanView"]

_ICON = {"pending": "○", "in_progress": "◐", "completed": "●", "failed": "✕", "skipped": "–"}


class PlanView(Snapshot, w.VBox):  # type: ignore[misc]
    """The plan of `agent` (which has a Planning plugin). `approve(markdown=None)` / `reject(note)` do
    what the buttons do while a proposed plan waits."""

    def __init__(self, agent: Agent) -> None:
        super().__init__([])  # a widget first, so a refused argument below leaves nothing half-made
        found = [p for p in agent.plugins.plugins if isinstance(p, Planning)]
        if not found:
            raise InvalidInputError(
                "this agent has no Planning plugin: Agent(..., plugins=[Planning()])", field="agent"
            )
        self.agent, self.planning = agent, found[0]
        self.heading = w.HTML()
        self.progress = w.IntProgress(min=0, max=1, value=0, layout=w.Layout(width="260px", max_width="100%"))
        self.checklist = w.HTML()
        self.editor = w.Textarea(layout=w.Layout(width="98%", height="120px"))
        self.approve_button = w.Button(description="Approve plan", button_style="success", icon="check")
        self.reject_button = w.Button(description="Reject", button_style="danger", icon="times")
        self.approve_button.on_click(lambda _: self.approve(self.editor.value))
        self.reject_button.on_click(lambda _: self.reject("rejected in the plan view"))
        self.decision = w.VBox([])
        header = w.HBox([self.heading, self.progress])
        header.add_class("cmdc-row")
        self.children = [w.HTML(PANEL_CSS), header, self.checklist, self.decision, self._view_probe()]
        self._snapshot_follow(self.heading, self.progress, self.checklist, self.decision)
        self.add_class("cmdc-panel")
        self.add_class("cmdc-plan")
        self._sub = agent.events.subscribe(self._on_event)
        self.render()

    def __repr__(self) -> str:
        plan = self.planning.plan
        if plan is None:
            return "<PlanView no plan>"
        done, total = plan.progress()
        return f"<PlanView {done}/{total} done>"

    def _on_event(self, env: ev.Envelope) -> None:
        if env.type in ("plan_updated", "agent_end", "agent_abort"):
            on_loop(self.agent._loop, self.render)

    def render(self) -> None:
        plan = self.planning.plan
        if plan is None:
            self.heading.value = (
                '<span class="cmdc-title">Plan</span> <span class="cmdc-stats">none yet</span>'
            )
            self.checklist.value, self.decision.children = "", []
            return
        done, total = plan.progress()
        self.progress.max, self.progress.value = max(total, 1), done
        state = (
            "approved"
            if plan.approved
            else ("waiting for your approval" if self.planning.waiting_for_approval else "")
        )
        self.heading.value = (
            f'<span class="cmdc-title">Plan: {escape(plan.goal or "")}</span> '
            f'<span class="cmdc-stats">{done}/{total} done {escape(state)}</span>'
        )
        rows = []
        for s in plan.steps:
            note = f' <span class="cmdc-meta">— {escape(s.result)}</span>' if s.result else ""
            rows.append(
                f'<div class="cmdc-step {s.status}"><span class="cmdc-step-icon" title="{s.status}">{_ICON[s.status]}</span>'
                f"{escape(s.id)}. {escape(s.title)}{note}</div>"
            )
        self.checklist.value = "".join(rows)
        if self.planning.waiting_for_approval:
            if not self.decision.children:
                self.editor.value = plan.to_markdown()
            buttons = w.HBox([self.approve_button, self.reject_button])
            buttons.add_class("cmdc-row")
            self.decision.children = [self.editor, buttons]
        else:
            self.decision.children = []

    def approve(self, markdown: str | None = None) -> None:
        plan = self.planning.plan
        edited = (
            markdown
            if markdown is not None and plan is not None and markdown.strip() != plan.to_markdown().strip()
            else None
        )
        self.planning.approve_plan(edited)
        self.render()

    def reject(self, note: str | None = None) -> None:
        self.planning.reject_plan(note)
        self.render()

    def close(self) -> None:
        self._sub.close()
        super().close()
