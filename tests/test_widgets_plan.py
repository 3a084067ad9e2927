"""PlanView: a proposed plan approved (edited) from the view; steps tick off live."""

from __future__ import annotations

import asyncio

import pytest

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.kernel import Agent
from cmdc_nb.plugins import Planning
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.widgets import PlanView

LONG = "Please prepare the release notes for version 2 and publish them."


async def test_approve_an_edited_plan_then_watch_it_progress() -> None:
    script = Script(
        [
            "# Plan: release notes\n- [ ] Collect changes\n- [ ] Write notes\n- [ ] Publish",
            Turn(tool_calls=[call("update_plan", step="1", status="completed", note="12 changes")]),
            Turn(tool_calls=[call("update_plan", step="2", status="completed")]),
            "All done.",
        ]
    )
    planning = Planning(require_approval=True)
    agent = Agent(model=script.model, plugins=[planning])
    view = PlanView(agent)
    assert "none yet" in view.heading.value
    handle = agent.prompt(LONG)
    while not view.decision.children:
        await asyncio.sleep(0.005)
    assert "waiting for your approval" in view.heading.value and "Collect changes" in view.checklist.value
    view.editor.value = "# Plan: release notes\n- [ ] Collect changes\n- [ ] Write notes"  # drop "Publish"
    view.approve_button.click()
    assert (await handle).endswith("All done.")
    assert (view.progress.value, view.progress.max) == (2, 2)
    assert "12 changes" in view.checklist.value and "Publish" not in view.checklist.value
    assert "2/2 done approved" in view.heading.value and view.decision.children == ()


async def test_reject_from_the_view_and_agents_without_planning() -> None:
    script = Script(["- [ ] Something risky"])
    agent = Agent(model=script.model, plugins=[Planning(require_approval=True)])
    view = PlanView(agent)
    handle = agent.prompt(LONG)
    while not view.decision.children:
        await asyncio.sleep(0.005)
    view.reject_button.click()
    with pytest.raises(Exception, match="plan was rejected"):
        await handle
    with pytest.raises(InvalidInputError, match="no Planning plugin"):
        PlanView(Agent(model=script.model))
