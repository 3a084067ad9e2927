"""DagView: a workflow laid out as a graph, a run coloured live by status; its buttons start, cancel,
pause and resume runs and decide approval gates for real."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from cmdc_nb import workflows as wf
from cmdc_nb.store.models import User
from cmdc_nb.widgets import DagView
from cmdc_nb.widgets.dag import NODE_W, layout
from cmdc_nb.workspace import Workspace

LIVENESS = 60.0


def spec() -> dict[str, Any]:
    return {
        "name": "Release",
        "input_schema": {"type": "object", "properties": {"version": {"type": "string", "default": "1.0"}}},
        "steps": [
            wf.step("build", "transform", value="build {{ input.version }}"),
            wf.step("test", "transform", depends_on="build", value="ok"),
            wf.step("docs", "transform", depends_on="build", value="docs"),
            wf.step(
                "ship",
                "approval",
                depends_on=["test", "docs"],
                title="Ship {{ input.version }}?",
                payload={"version": "{{ input.version }}"},
            ),
            wf.step(
                "announce", "transform", depends_on="ship", value="{{ steps.ship.output.payload.version }}"
            ),
        ],
    }


def statuses(view: DagView) -> dict[str, str]:
    return {n["id"]: n["status"] for n in view.canvas.graph["nodes"]}


async def until(predicate: Any) -> None:
    async def wait() -> None:
        while not predicate():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(wait(), LIVENESS)


def test_layout_puts_each_generation_in_its_own_column() -> None:
    geo = layout(spec()["steps"])
    xs = {sid: x for sid, (x, _) in geo["positions"].items()}
    assert xs["build"] < xs["test"] == xs["docs"] < xs["ship"] < xs["announce"]
    ys = {sid: y for sid, (_, y) in geo["positions"].items()}
    assert ys["test"] < ys["docs"]  # the order written, top to bottom
    assert ["build", "test"] in geo["edges"] and geo["width"] >= 4 * NODE_W  # four columns


async def test_a_workflow_view_starts_a_run_and_follows_it_to_the_gate(ws: Workspace, user: User) -> None:
    w = wf.create_workflow(user, spec(), ws=ws)
    view = DagView(w, ws=ws)
    assert set(statuses(view).values()) == {"planned"}
    assert "5 steps" in view.heading.value and view.controls.children  # a Start button and the input box
    assert '"version": "1.0"' in view.input_box.value  # prefilled from the schema's defaults
    view.input_box.value = '{"version": "2.0"}'
    view.start_button.click()
    assert view.run is not None
    await until(lambda: statuses(view).get("ship") == "waiting_approval")
    assert statuses(view) == {
        "build": "completed",
        "test": "completed",
        "docs": "completed",
        "ship": "waiting_approval",
        "announce": "pending",
    }
    view.select("ship")
    assert "Ship 2.0?" in view.details.children[0].value
    approve = next(c for c in view.details.children[-3].children if c.description == "Approve")
    approve.click()  # the Approve button of the gate
    run = await asyncio.wait_for(view.handle, LIVENESS)
    assert run.status == "completed" and run.output == {"announce": "2.0"}
    await until(lambda: set(statuses(view).values()) == {"completed"})
    view.select("build")
    assert "build 2.0" in view.details.children[0].value and "duration" in view.details.children[0].value
    view.close()


async def test_bad_input_is_reported_in_the_view_and_nothing_starts(ws: Workspace, user: User) -> None:
    raw = spec()
    raw["input_schema"]["required"] = ["version"]
    w = wf.create_workflow(user, raw, ws=ws)
    view = DagView(w, ws=ws)
    view.input_box.value = "{not json"
    view.start_button.click()
    assert "not valid JSON" in view.message.value and view.run is None
    view.input_box.value = "{}"
    view.start_button.click()
    assert "&#x27;version&#x27; is a required property" in view.message.value and view.run is None
    assert wf.list_workflow_runs(w, ws=ws) == []


async def test_deny_cancel_pause_and_resume_from_the_view(ws: Workspace, user: User) -> None:
    w = wf.create_workflow(user, spec(), ws=ws)
    run = await wf.arun_workflow(w, input={"version": "3"}, stop_when_blocked=True, ws=ws)
    view = DagView(run, ws=ws)
    assert statuses(view)["ship"] == "waiting_approval"
    assert [b.description for b in view.controls.children] == ["Cancel", "Pause"]
    view.select("ship")
    view.deny(note="not this week")
    run = await asyncio.wait_for(wf.execute_workflow_run(run, ws=ws), LIVENESS)
    view.refresh()
    assert run.status == "failed" and statuses(view)["ship"] == "failed"
    assert "not this week" in view.details.children[0].value
    assert "failed" in view.heading.value

    second = wf.start_workflow_run(w, input={"version": "4"}, ws=ws)
    view2 = DagView(second.id, ws=ws)  # an id works too
    view2.pause()
    assert view2.run is not None and view2.run.status == "paused"
    assert [b.description for b in view2.controls.children] == ["Cancel", "Resume"]
    handle = view2.resume()
    await until(lambda: statuses(view2).get("ship") == "waiting_approval")
    view2.cancel()
    run2 = await asyncio.wait_for(handle, LIVENESS)
    assert run2.status == "cancelled" and statuses(view2)["announce"] == "cancelled"
    with pytest.raises(ValueError, match="select a step"):
        view2.approve()
