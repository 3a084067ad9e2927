"""DagView: a workflow laid out as a graph, a run coloured live by status; its buttons start, cancel,
pause, resume and retry runs and decide approval gates for real — and a gate decided in the view moves
the run on, whoever started it."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from ipywidgets import Button

from cmdc_nb import workflows as wf
from cmdc_nb.store.models import User
from cmdc_nb.widgets import DagView
from cmdc_nb.widgets.dag import NODE_W, example_value, layout
from cmdc_nb.workflows.engine import driven_here
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
    assert labels(view.controls.children) == ["Cancel", "Pause"]  # no Resume: deciding the gate drives it
    view.select("ship")
    await asyncio.wait_for(view.deny(note="not this week"), LIVENESS)
    run = await asyncio.wait_for(view.handle, LIVENESS)  # the view drove the run past the denied gate
    assert run.status == "failed" and statuses(view)["ship"] == "failed"
    assert "not this week" in view.details.children[0].value
    assert "failed" in view.heading.value
    assert labels(view.controls.children[0].children[-1].children) == [
        "Start a new run",
        "Retry from failed step",
    ]

    second = wf.start_workflow_run(w, input={"version": "4"}, ws=ws)
    view2 = DagView(second.id, ws=ws)  # an id works too
    assert labels(view2.controls.children) == ["Cancel", "Pause", "Resume"]  # nothing drives it yet
    view2.pause()
    assert view2.run is not None and view2.run.status == "paused"
    assert labels(view2.controls.children) == ["Cancel", "Resume"]
    handle = view2.resume()
    await until(lambda: statuses(view2).get("ship") == "waiting_approval")
    view2.cancel()
    run2 = await asyncio.wait_for(handle, LIVENESS)
    assert run2.status == "cancelled" and statuses(view2)["announce"] == "cancelled"
    with pytest.raises(ValueError, match="select a step"):
        view2.approve()


def labels(widgets: Any) -> list[str]:
    return [c.description for c in widgets]


def gate_buttons(view: DagView) -> list[str]:
    """The Approve / Deny / Edit buttons shown in the selected step's details."""
    return [b.description for c in view.details.children if hasattr(c, "children") for b in c.children]


async def test_a_gate_approved_in_the_view_resumes_a_run_started_with_stop_when_blocked(
    ws: Workspace, user: User
) -> None:
    w = wf.create_workflow(user, spec(), ws=ws)
    run = await wf.arun_workflow(w, input={"version": "5"}, stop_when_blocked=True, ws=ws)
    assert run.status == "waiting_approval" and not driven_here(run)  # nobody drives it any more
    view = DagView(run, ws=ws)
    view.select("ship")
    assert gate_buttons(view) == ["Approve", "Deny", "Edit payload"]
    decided = view.approve(note="looks good")
    assert gate_buttons(view) == []  # gone at once, before the decision is even written
    assert view.approve() is None and "being recorded already" in view.message.value  # no second decision
    await asyncio.wait_for(decided, LIVENESS)
    finished = await asyncio.wait_for(view.handle, LIVENESS)  # the driver the view started
    assert finished.status == "completed" and finished.output == {"announce": "5"}
    await until(lambda: set(statuses(view).values()) == {"completed"})
    assert "completed" in view.heading.value and "5/5 steps" in view.heading.value
    assert "approved" in view.message.value
    stored = wf.get_workflow_step(run, "ship", ws=ws)  # the database agrees
    assert stored.status == "completed" and stored.output["note"] == "looks good"
    assert wf.get_workflow_run(run, ws=ws).status == "completed"
    view.close()


async def test_a_gate_approved_in_the_view_leaves_a_waiting_driver_to_go_on(
    ws: Workspace, user: User
) -> None:
    w = wf.create_workflow(user, spec(), ws=ws)
    handle = wf.run_workflow(w, input={"version": "6"}, ws=ws)  # another cell: its driver waits at the gate
    await until(lambda: wf.get_workflow_run(handle.run_id, ws=ws).status == "waiting_approval")
    view = DagView(handle.run_id, ws=ws)
    view.select("ship")
    assert driven_here(handle.run_id) and labels(view.controls.children) == ["Cancel", "Pause"]
    await asyncio.wait_for(view.approve(), LIVENESS)
    assert view.handle is None  # no second driver: the cell's own one goes on
    run = await asyncio.wait_for(handle, LIVENESS)
    assert run.status == "completed" and run.output == {"announce": "6"}
    await until(lambda: "completed" in view.heading.value)
    view.close()


async def test_a_gate_decided_elsewhere_offers_resume_instead_of_a_second_decision(
    ws: Workspace, user: User
) -> None:
    w = wf.create_workflow(user, spec(), ws=ws)
    run = await wf.arun_workflow(w, input={"version": "7"}, stop_when_blocked=True, ws=ws)
    view = DagView(run, ws=ws)
    view.select("ship")
    wf.approve_workflow_step(run, "ship", note="from another cell", ws=ws)
    await until(lambda: "Resume" in labels(view.controls.children))  # the view heard the decision
    assert gate_buttons(view) == [] and "Resume to go on" in view.details.children[-1].value
    assert "approved, not resumed" in view.heading.value
    finished = await asyncio.wait_for(view.resume(), LIVENESS)
    assert finished.status == "completed" and finished.output == {"announce": "7"}
    view.close()


FLAKY_CALLS = {"n": 0}


@wf.step_function("tests.widgets_dag.flaky")
def flaky(version: str) -> str:
    """Fails on its first call, as a test database that was not ready would."""
    FLAKY_CALLS["n"] += 1
    if FLAKY_CALLS["n"] == 1:
        raise RuntimeError("the test database was not ready")
    return f"{version} passed"


async def test_retry_from_the_failed_step_in_the_view(ws: Workspace, user: User) -> None:
    FLAKY_CALLS["n"] = 0
    w = wf.create_workflow(
        user,
        {
            "name": "Flaky",
            "steps": [
                wf.step("build", "transform", value="built"),
                wf.step("tests", fn=flaky, depends_on="build", args={"version": "8"}),
                wf.step("ship", "transform", depends_on="tests", value="{{ steps.tests.output }}"),
            ],
        },
        ws=ws,
    )
    first = await wf.arun_workflow(w, ws=ws)
    view = DagView(first, ws=ws)
    assert first.status == "failed" and statuses(view)["tests"] == "failed"
    [retry] = [
        b for b in view.controls.children[0].children[-1].children if b.description.startswith("Retry")
    ]
    retry.click()
    assert view.run is not None and view.run.id != first.id and view.run.retry_of_run_id == first.id
    assert f"Retrying run {str(first.id)[:8]} from step tests" in view.message.value
    second = await asyncio.wait_for(view.handle, LIVENESS)
    assert second.status == "completed" and second.output == {"ship": "8 passed"}
    await until(lambda: set(statuses(view).values()) == {"completed"})
    assert f"retry of run {str(first.id)[:8]}" in view.heading.value
    assert wf.get_workflow_step(second, "build", ws=ws).meta.get("carried_from")  # not run again
    assert FLAKY_CALLS["n"] == 2
    view.close()


def test_the_start_box_is_prefilled_with_values_of_each_fields_type() -> None:
    schema = {
        "type": "object",
        "properties": {
            "pr": {"type": "integer"},
            "ratio": {"type": "number"},
            "dry_run": {"type": "boolean"},
            "files": {"type": "array"},
            "title": {"type": "string"},
            "env": {"enum": ["staging", "prod"]},
            "version": {"type": "string", "default": "1.0"},
            "owner": {"type": ["null", "string"], "examples": ["ada"]},
            "limits": {"type": "object", "properties": {"max": {"type": "integer", "default": 3}}},
        },
    }
    assert {k: example_value(p) for k, p in schema["properties"].items()} == {
        "pr": 0,
        "ratio": 0,
        "dry_run": False,
        "files": [],
        "title": "",
        "env": "staging",
        "version": "1.0",
        "owner": "ada",
        "limits": {"max": 3},
    }


async def test_a_workflow_with_an_integer_input_starts_from_the_prefilled_box(
    ws: Workspace, user: User
) -> None:
    w = wf.create_workflow(
        user,
        {
            "name": "Review",
            "input_schema": {"type": "object", "properties": {"pr": {"type": "integer"}}, "required": ["pr"]},
            "steps": [wf.step("fetch", "transform", value="{{ input.pr }}")],
        },
        ws=ws,
    )
    view = DagView(w, ws=ws)
    assert view.input_box.value == '{\n  "pr": 0\n}'
    view.start_button.click()  # the prefilled box is valid input as it is
    assert view.run is not None and view.run.input == {"pr": 0}
    run = await asyncio.wait_for(view.handle, LIVENESS)
    assert run.status == "completed"
    view.close()


def hand_spec() -> dict[str, Any]:
    return {
        "name": "Sign-off",
        "steps": [
            wf.step("draft", "transform", value="v1"),
            {
                "id": "sign",
                "type": "external",
                "depends_on": ["draft"],
                "config": {
                    "instructions": "Sign draft {{ steps.draft.output }}",
                    "output_schema": {
                        "type": "object",
                        "properties": {"signed_by": {"type": "string", "default": "me"}},
                        "required": ["signed_by"],
                    },
                },
            },
            wf.step("file", "transform", depends_on="sign", value="{{ steps.sign.output.signed_by }}"),
        ],
    }


def hand_buttons(view: DagView) -> list[str]:
    return [
        b.description
        for b in (b for c in view.details.children for b in getattr(c, "children", ()))
        if isinstance(b, Button)
    ]


async def test_an_external_step_is_taken_up_and_completed_from_the_view_and_the_run_goes_on(
    ws: Workspace, user: User
) -> None:
    w = wf.create_workflow(user, hand_spec(), ws=ws)
    run = await wf.arun_workflow(w, stop_when_blocked=True, ws=ws)
    assert run.status == "waiting_input" and not driven_here(run)
    view = DagView(run, ws=ws, user=user)
    assert statuses(view)["sign"] == "waiting_input"
    assert "waiting for input at sign" in view.heading.value
    view.select("sign")
    panel = view._hand[1] if view._hand else None
    assert panel is not None and "Sign draft v1" in panel.instructions.value  # rendered for the person
    assert hand_buttons(view) == ["Take it up", "Mark done", "Mark failed"]
    assert (
        panel.output_box.value.replace(" ", "").replace("\n", "") == '{"signed_by":"me"}'
    )  # from the schema

    panel.take_button.click()
    assert wf.get_workflow_step(run, "sign", ws=ws).status == "running"
    assert hand_buttons(view) == ["Mark done", "Mark failed"]

    panel.output_box.value = '{"signed_by": 42}'  # wrong type: refused, said next to what was typed
    panel.done_button.click()
    assert "signed_by: 42 is not of type &#x27;string&#x27;" in panel.message.value
    assert panel.output_box.value == '{"signed_by": 42}'
    assert wf.get_workflow_step(run, "sign", ws=ws).status == "running"
    panel.output_box.value = "{not json"
    panel.done_button.click()
    assert "not valid JSON" in panel.message.value

    panel.output_box.value = '{"signed_by": "Ada"}'
    panel.done_button.click()
    finished = await asyncio.wait_for(view.handle, LIVENESS)  # the view drove the run on
    assert finished.status == "completed" and finished.output == {"file": "Ada"}
    await until(lambda: set(statuses(view).values()) == {"completed"})
    stored = wf.get_workflow_step(run, "sign", ws=ws)
    assert stored.output == {"signed_by": "Ada"} and stored.meta["completed_by"] == str(user.id)
    view.close()


async def test_an_external_step_marked_failed_in_the_view_fails_the_run(ws: Workspace, user: User) -> None:
    w = wf.create_workflow(user, hand_spec(), ws=ws)
    run = await wf.arun_workflow(w, stop_when_blocked=True, ws=ws)
    view = DagView(run, ws=ws)
    view.select("sign")
    assert view._hand is not None
    panel = view._hand[1]
    panel.reason.value = "the draft is wrong"
    panel.fail_button.click()
    await until(lambda: "failed" in view.heading.value)
    assert wf.get_workflow_run(run, ws=ws).status == "failed"
    assert wf.get_workflow_step(run, "sign", ws=ws).error_message == "the draft is wrong"
    await until(lambda: statuses(view)["file"] == "cancelled")  # fail-fast: not run
    assert statuses(view)["sign"] == "failed" and "the draft is wrong" in view.heading.value
    view.close()
