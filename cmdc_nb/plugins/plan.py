"""A plan: steps with a status, annotations, progress, Markdown in and out, and replanning.

>>> plan = Plan.from_markdown("# Plan: ship it\\n- [ ] Run the tests\\n- [ ] Tag the release")
>>> plan.step_started("1").step_completed("1", "42 passed").progress()
(1, 2)
>>> print(plan.to_markdown())
# Plan: ship it
- [x] 1. Run the tests — 42 passed
- [ ] 2. Tag the release
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from cmdc_nb.errors import InvalidInputError, NotFoundError

__all__ = ["STEP_STATUSES", "Plan", "PlanStep"]

StepStatus = Literal["pending", "in_progress", "completed", "failed", "skipped"]
STEP_STATUSES: tuple[str, ...] = ("pending", "in_progress", "completed", "failed", "skipped")
_BOX = {"pending": " ", "in_progress": "~", "completed": "x", "failed": "!", "skipped": "-"}
_FROM_BOX: dict[str, StepStatus] = {
    " ": "pending",
    "": "pending",
    "~": "in_progress",
    "x": "completed",
    "X": "completed",
    "!": "failed",
    "-": "skipped",
}


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class PlanStep:
    id: str
    title: str
    status: StepStatus = "pending"
    annotations: list[str] = field(default_factory=list)
    result: str | None = None
    started_at: dt.datetime | None = None
    ended_at: dt.datetime | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "status": self.status,
            "annotations": list(self.annotations),
            "result": self.result,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "ended_at": self.ended_at.isoformat() if self.ended_at else None,
        }


@dataclass
class Plan:
    goal: str = ""
    steps: list[PlanStep] = field(default_factory=list)
    approved: bool = False
    created_at: dt.datetime = field(default_factory=_now)
    last_replanned_at: dt.datetime | None = None

    # -- reading ----------------------------------------------------------------------------------------
    def step(self, step_id: str | int) -> PlanStep:
        key = str(step_id).strip().rstrip(".")
        for s in self.steps:
            if s.id == key:
                return s
        raise NotFoundError("plan step", key)

    def progress(self) -> tuple[int, int]:
        """(steps done — completed or skipped —, all steps)."""
        return sum(s.status in ("completed", "skipped") for s in self.steps), len(self.steps)

    @property
    def finished(self) -> bool:
        return bool(self.steps) and all(s.status in ("completed", "skipped", "failed") for s in self.steps)

    @property
    def current(self) -> PlanStep | None:
        return next((s for s in self.steps if s.status == "in_progress"), None) or next(
            (s for s in self.steps if s.status == "pending"), None
        )

    # -- moving steps -----------------------------------------------------------------------------------
    def _move(self, step_id: str | int, status: StepStatus, note: str | None) -> Plan:
        s = self.step(step_id)
        if status == "in_progress":
            s.started_at = s.started_at or _now()
        else:
            s.ended_at = _now()
        s.status = status
        if note:
            s.result = note
        return self

    def step_started(self, step_id: str | int) -> Plan:
        return self._move(step_id, "in_progress", None)

    def step_completed(self, step_id: str | int, result: str | None = None) -> Plan:
        return self._move(step_id, "completed", result)

    def step_failed(self, step_id: str | int, error: str | None = None) -> Plan:
        return self._move(step_id, "failed", error)

    def step_skipped(self, step_id: str | int, reason: str | None = None) -> Plan:
        return self._move(step_id, "skipped", reason)

    def annotate_step(self, step_id: str | int, note: str) -> Plan:
        self.step(step_id).annotations.append(note)
        return self

    def set_status(self, step_id: str | int, status: str, note: str | None = None) -> Plan:
        if status not in STEP_STATUSES:
            raise InvalidInputError(f"{status!r} is not one of: {', '.join(STEP_STATUSES)}", field="status")
        return self._move(step_id, status, note)  # type: ignore[arg-type]

    def approve(self) -> Plan:
        self.approved = True
        return self

    # -- replanning -------------------------------------------------------------------------------------
    def _renumber(self) -> None:
        for i, s in enumerate(self.steps, 1):
            s.id = str(i)
        self.last_replanned_at = _now()

    def replace_steps(self, titles: list[str]) -> Plan:
        """New steps in place of the unfinished ones (finished steps stay, in front)."""
        kept = [s for s in self.steps if s.status in ("completed", "skipped", "failed")]
        self.steps = kept + [PlanStep("", t) for t in titles]
        self._renumber()
        return self

    def add_step(self, title: str) -> Plan:
        self.steps.append(PlanStep("", title))
        self._renumber()
        return self

    def insert_step(
        self, title: str, *, before: str | int | None = None, after: str | int | None = None
    ) -> Plan:
        if (before is None) == (after is None):
            raise InvalidInputError("give exactly one of before= or after=", field="before")
        anchor = self.steps.index(self.step(before if before is not None else after))  # type: ignore[arg-type]
        self.steps.insert(anchor if before is not None else anchor + 1, PlanStep("", title))
        self._renumber()
        return self

    def remove_step(self, step_id: str | int) -> Plan:
        self.steps.remove(self.step(step_id))
        self._renumber()
        return self

    # -- text -------------------------------------------------------------------------------------------
    def to_markdown(self) -> str:
        lines = [f"# Plan: {self.goal}"] if self.goal else []
        for s in self.steps:
            tail = f" — {s.result}" if s.result else ""
            lines.append(f"- [{_BOX[s.status]}] {s.id}. {s.title}{tail}")
            lines.extend(f"  - {a}" for a in s.annotations)
        return "\n".join(lines)

    def to_prompt_section(self) -> str:
        done, total = self.progress()
        current = self.current
        now = f"Current step: {current.id}. {current.title}\n" if current else ""
        return (
            f"You are following this plan ({done}/{total} done). {now}"
            "Report progress with the update_plan tool (step id, status, optional note).\n\n"
            + self.to_markdown()
        )

    @classmethod
    def from_markdown(cls, text: str, *, goal: str | None = None) -> Plan:
        """Parse a checklist (`- [ ] …`), a numbered list (`1. …`) or a bulleted list (`- …`)."""
        title = goal or ""
        steps: list[PlanStep] = []
        for raw in text.splitlines():
            line = raw.rstrip()
            heading = re.match(r"^#+\s*(?:Plan:?\s*)?(.*)$", line.strip())
            if heading and not steps and not title:
                title = heading.group(1).strip()
                continue
            m = re.match(r"^\s{0,3}(?:[-*+]|\d+[.)])\s+(?:\[([ xX~!\-]?)\]\s*)?(?:\d+[.)]\s+)?(.+)$", line)
            if not m or raw.startswith("    "):
                continue
            box, body = m.group(1), m.group(2).strip()
            body, _, result = body.partition(" — ")
            steps.append(
                PlanStep(
                    str(len(steps) + 1),
                    body.strip(),
                    _FROM_BOX.get(box or "", "pending"),
                    result=result or None,
                )
            )
        if not steps:
            raise InvalidInputError("no steps found: write the plan as a Markdown list", field="text")
        return cls(goal=title, steps=steps)

    def to_dict(self) -> dict[str, Any]:
        done, total = self.progress()
        return {
            "goal": self.goal,
            "approved": self.approved,
            "progress": {"done": done, "total": total},
            "steps": [s.to_dict() for s in self.steps],
            "markdown": self.to_markdown(),
        }
