"""Hand-driven (external) workflow steps on both backends: the seed's `start_step` / `complete_step`.

An external step is done by a person or an outside system: the engine parks it (`waiting_input`),
and `complete_step(run, step_id, output=…)` records its output and moves the run on — with a driver
running here, in another process, or none at all (the seed's own way of working)."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
import workflow_children as children
from waiting import CEILING_S

import cmdc_nb
from cmdc_nb import accounts
from cmdc_nb import workflows as wf
from cmdc_nb.errors import (
    AccessDeniedError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
    WorkflowSpecError,
)
from cmdc_nb.events import topics
from cmdc_nb.store.models import User, WorkflowRun
from cmdc_nb.workspace import Workspace

LIVENESS = 60.0
REVIEW_SCHEMA = {
    "type": "object",
    "properties": {"verdict": {"type": "string", "enum": ["ship", "fix"]}, "notes": {"type": "string"}},
    "required": ["verdict"],
}


def review_flow(ws: Workspace, user: User, **review: Any) -> Any:
    """fetch (engine) → review (a person) → report (engine, reads the person's verdict)."""
    return wf.create_workflow(
        user,
        {
            "name": "review by hand",
            "input_schema": {"type": "object", "properties": {"pr": {"type": "string"}}},
            "steps": [
                wf.step("fetch", "transform", value="diff of {{ input.pr }}"),
                {
                    "id": "review",
                    "type": "external",
                    "depends_on": ["fetch"],
                    "config": {
                        "instructions": "Read {{ steps.fetch.output }} and give a verdict",
                        "output_schema": REVIEW_SCHEMA,
                    },
                    **review,
                },
                wf.step(
                    "report", "transform", depends_on="review", value="{{ steps.review.output.verdict }}"
                ),
            ],
        },
        ws=ws,
    )


def statuses(ws: Workspace, run: Any) -> dict[str, str]:
    return {s.step_id: s.status.value for s in wf.list_workflow_steps(run, ws=ws)}


async def until(check: Any, what: str) -> None:
    """Wait for `check()` (a database read, off the loop) to be true; only a hung run reaches the ceiling."""
    deadline = time.monotonic() + CEILING_S
    while not await asyncio.to_thread(check):
        assert time.monotonic() < deadline, f"never: {what}"
        await asyncio.sleep(0.02)


async def test_a_running_driver_waits_for_the_person_and_goes_on_at_once_when_they_complete(
    ws: Workspace, user: User
) -> None:
    w = review_flow(ws, user)
    seen: list[tuple[str, str | None]] = []
    handle = wf.run_workflow(w, user, input={"pr": "#7"}, ws=ws)
    subs = [
        ws.bus.subscribe(
            topics.workflow_run_steps(handle.run_id),
            lambda e: seen.append((e.type, e.payload.get("step_id"))),
        ),
        ws.bus.subscribe(topics.workflow_run(handle.run_id), lambda e: seen.append((e.type, None))),
    ]
    await until(lambda: wf.get_workflow_run(handle.run_id, ws=ws).status == "waiting_input", "run waits")

    step = wf.get_workflow_step(handle.run_id, "review", ws=ws)
    assert step.status == "waiting_input" and step.started_at is not None
    assert step.input["instructions"] == "Read diff of #7 and give a verdict"  # rendered for the person
    assert not handle.done()  # the driver is still there, waiting

    taken = await asyncio.to_thread(wf.start_step, handle.run_id, "review", user, ws=ws)
    assert taken.status == "running" and taken.meta["started_by"] == str(user.id)
    assert wf.get_workflow_run(handle.run_id, ws=ws).status == "waiting_input"  # nothing for the engine

    # the person answers from another thread (a form, a webhook): the driver goes on without a poll
    await asyncio.to_thread(
        wf.complete_step, handle.run_id, "review", user, output={"verdict": "ship", "notes": "lgtm"}, ws=ws
    )
    run = await asyncio.wait_for(handle, LIVENESS)
    for sub in subs:
        sub.close()

    assert run.status == "completed" and run.output == {"report": "ship"}
    assert statuses(ws, run) == {"fetch": "completed", "review": "completed", "report": "completed"}
    review = wf.get_workflow_step(run, "review", ws=ws)
    assert review.output == {"verdict": "ship", "notes": "lgtm"}
    assert review.meta["completed_by"] == str(user.id) and review.duration_ms is not None
    assert run.completed_step_ids == ["fetch", "review", "report"]
    # subscribed before the driver's task first ran: every event of the person's step is here, in order
    order = [t for t, sid in seen if sid in ("review", None)]
    assert order.index("workflow_step_waiting_input") < order.index("workflow_run_waiting_input")
    assert order.index("workflow_run_waiting_input") < order.index("workflow_step_started")
    assert order.index("workflow_step_started") < order.index("workflow_step_completed")
    assert order[-1] == "workflow_run_completed"


async def test_the_seeds_way_start_step_and_complete_step_move_a_run_no_one_drives(
    ws: Workspace, user: User
) -> None:
    w = wf.create_workflow(
        user,
        {
            "name": "all by hand",
            "steps": [
                {"id": "analyze", "type": "external"},
                {
                    "id": "review",
                    "type": "external",
                    "depends_on": ["analyze"],
                    "config": {"instructions": "x"},
                },
            ],
        },
        ws=ws,
    )
    run = wf.start_workflow_run(w, user, input={}, ws=ws)  # stored, not driven
    step = wf.start_step(run, "analyze", ws=ws)
    assert step.step_id == "analyze" and step.status == "running"
    with pytest.raises(InvalidStateError, match="not done yet"):
        wf.start_step(run, "review", ws=ws)

    done = wf.complete_step(step, output={"analysis": "fine"}, ws=ws)  # the seed passes the step itself
    assert done.status == "completed"
    # the dependant is someone's turn at once, with no driver having looked
    assert statuses(ws, run) == {"analyze": "completed", "review": "waiting_input"}
    assert wf.get_workflow_run(run, ws=ws).status == "waiting_input"

    wf.complete_step(run, "review", output="approved", ws=ws)  # never started: allowed
    over = wf.get_workflow_run(run, ws=ws)
    assert over.status == "completed" and over.output == {"review": "approved"}
    assert wf.get_workflow(w, ws=ws).success_count == 1


async def test_stop_when_blocked_returns_at_the_person_and_another_process_finishes_the_run(
    ws: Workspace, user: User, db_url: str, home_dir: Path
) -> None:
    w = review_flow(ws, user)
    run = await asyncio.wait_for(
        wf.arun_workflow(w, user, input={"pr": "#8"}, stop_when_blocked=True, ws=ws), LIVENESS
    )
    assert run.status == "waiting_input"
    assert statuses(ws, run) == {"fetch": "completed", "review": "waiting_input", "report": "pending"}

    other = cmdc_nb.connect(db_url, home=home_dir)  # as another process would
    try:
        wf.complete_step(run.id, "review", output={"verdict": "fix"}, ws=other)
    finally:
        other.close()
    # resume finds nothing to hand back (no process ran the step) and drives the rest
    done = await asyncio.wait_for(wf.resume_workflow_run(run, ws=ws), LIVENESS)
    assert done.status == "completed" and done.output == {"report": "fix"}


async def test_what_a_person_sends_is_checked_and_a_refusal_changes_nothing(
    ws: Workspace, user: User
) -> None:
    w = review_flow(ws, user)
    run = await asyncio.wait_for(
        wf.arun_workflow(w, user, input={"pr": "#8"}, stop_when_blocked=True, ws=ws), LIVENESS
    )
    before = statuses(ws, run)

    refused: list[tuple[Any, type[Exception], str]] = [
        (
            {"verdict": "maybe"},
            InvalidInputError,
            r"output: does not match the step's output_schema: verdict: 'maybe' is not one of",
        ),
        ({"notes": "no verdict"}, InvalidInputError, r"'verdict' is a required property"),
        ("ship", InvalidInputError, r"is not of type 'object'"),
        ({"verdict": "ship", "n": float("nan")}, InvalidInputError, r"output: must be JSON"),
        ({"verdict": "ship", "n": object()}, InvalidInputError, r"output: must be JSON"),
        ({"verdict": "ship\x00"}, InvalidInputError, r"NUL"),
    ]
    for output, kind, message in refused:
        with pytest.raises(kind, match=message):
            wf.complete_step(run, "review", output=output, ws=ws)
    with pytest.raises(InvalidInputError, match=r"step 'fetch' is a transform step, which the engine runs"):
        wf.complete_step(run, "fetch", output=1, ws=ws)
    with pytest.raises(NotFoundError):
        wf.complete_step(run, "no_such_step", output=1, ws=ws)
    with pytest.raises(InvalidInputError, match="name the step"):
        wf.complete_step(run, output=1, ws=ws)
    with pytest.raises(InvalidInputError, match="step_id"):
        wf.complete_step(run, ["review"], output=1, ws=ws)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="error"):
        wf.fail_step(run, "review", error=None, ws=ws)  # type: ignore[arg-type]
    assert statuses(ws, run) == before  # every refusal left the run as it was

    wf.complete_step(run, "review", output={"verdict": "ship"}, ws=ws)
    with pytest.raises(InvalidStateError, match="cannot go from completed"):
        wf.complete_step(run, "review", output={"verdict": "fix"}, ws=ws)  # no second answer
    assert wf.get_workflow_step(run, "review", ws=ws).output == {"verdict": "ship"}


async def test_a_failed_external_step_fails_the_run_and_cancels_what_waits(ws: Workspace, user: User) -> None:
    w = wf.create_workflow(
        user,
        {
            "name": "two people",
            "steps": [
                {"id": "legal", "type": "external"},
                {"id": "design", "type": "external"},
                wf.step("ship", "transform", depends_on=["legal", "design"], value=1),
            ],
        },
        ws=ws,
    )
    run = await asyncio.wait_for(
        wf.arun_workflow(w, user, input={"pr": "#8"}, stop_when_blocked=True, ws=ws), LIVENESS
    )
    assert statuses(ws, run) == {"legal": "waiting_input", "design": "waiting_input", "ship": "pending"}
    wf.start_step(run, "design", ws=ws)
    wf.fail_step(run, "legal", error="the licence forbids it", ws=ws)
    over = wf.get_workflow_run(run, ws=ws)
    assert over.status == "failed" and over.failed_step_id == "legal"
    assert over.error_type == "ExternalFailure" and over.error_message == "the licence forbids it"
    # fail-fast: the one someone had taken up is cancelled too (no watcher would ever stop it)
    assert statuses(ws, run) == {"legal": "failed", "design": "cancelled", "ship": "cancelled"}
    with pytest.raises(InvalidStateError):
        wf.complete_step(run, "design", output=1, ws=ws)


async def test_cancelling_a_run_ends_its_waiting_and_taken_up_steps(ws: Workspace, user: User) -> None:
    w = wf.create_workflow(
        user,
        {"name": "c", "steps": [{"id": "a", "type": "external"}, {"id": "b", "type": "external"}]},
        ws=ws,
    )
    run = wf.start_workflow_run(w, user, ws=ws)
    wf.start_step(run, "a", ws=ws)
    assert wf.get_workflow_step(run, "a", ws=ws).status == "running"
    wf.cancel_workflow_run(run, reason="not needed", ws=ws)
    assert statuses(ws, run) == {"a": "cancelled", "b": "cancelled"}


async def test_an_external_step_not_done_within_its_timeout_times_out(ws: Workspace, user: User) -> None:
    w = wf.create_workflow(
        user,
        {"name": "t", "steps": [{"id": "sign", "type": "external", "timeout": 0.3}]},
        ws=ws,
    )
    run = await asyncio.wait_for(wf.arun_workflow(w, user, ws=ws), LIVENESS)  # the driver enforces it
    assert run.status == "failed"
    sign = wf.get_workflow_step(run, "sign", ws=ws)
    assert sign.status == "timeout" and sign.error_message == "no input within 0.3 s"


async def test_an_approval_required_external_step_is_approved_before_it_is_anyones_turn(
    ws: Workspace, user: User
) -> None:
    w = wf.create_workflow(
        user,
        {
            "name": "g",
            "steps": [
                {
                    "id": "deploy",
                    "type": "external",
                    "approval_required": True,
                    "config": {"instructions": "go"},
                }
            ],
        },
        ws=ws,
    )
    run = await asyncio.wait_for(
        wf.arun_workflow(w, user, input={"pr": "#8"}, stop_when_blocked=True, ws=ws), LIVENESS
    )
    assert run.status == "waiting_approval"
    with pytest.raises(InvalidStateError, match="waits for its approval"):
        wf.complete_step(run, "deploy", output=1, ws=ws)
    wf.approve_workflow_step(run, "deploy", user, payload={"instructions": "deploy to staging"}, ws=ws)
    run = await asyncio.wait_for(wf.resume_workflow_run(run, stop_when_blocked=True, ws=ws), LIVENESS)
    assert run.status == "waiting_input"
    assert wf.get_workflow_step(run, "deploy", ws=ws).input["instructions"] == "deploy to staging"


async def test_only_the_acting_user_may_answer_for_themselves(
    ws: Workspace, user: User, db_url: str, home_dir: Path
) -> None:
    w = review_flow(ws, user)
    run = await asyncio.wait_for(
        wf.arun_workflow(w, user, input={"pr": "#8"}, stop_when_blocked=True, ws=ws), LIVENESS
    )
    mallory = accounts.create_user("mallory@example.com", ws=ws)
    as_mallory = cmdc_nb.connect(db_url, home=home_dir, as_user=mallory)
    try:
        with pytest.raises(AccessDeniedError):
            wf.complete_step(run.id, "review", output={"verdict": "ship"}, ws=as_mallory)
        with pytest.raises(AccessDeniedError):
            wf.complete_step(run.id, "review", user, output={"verdict": "ship"}, ws=as_mallory)
    finally:
        as_mallory.close()
    assert wf.get_workflow_step(run, "review", ws=ws).status == "waiting_input"


def test_a_spec_says_what_is_wrong_with_an_external_steps_config(ws: Workspace, user: User) -> None:
    with pytest.raises(WorkflowSpecError) as err:
        wf.parse_spec(
            {
                "name": "bad",
                "steps": [
                    {"id": "a", "type": "external", "config": {"output_schema": {"type": "nonsense"}}},
                    {"id": "b", "type": "external", "config": {"instructions": ["not", "text"]}},
                ],
            }
        )
    text = str(err.value)
    assert "config.output_schema is not a valid JSON Schema" in text
    assert "config.instructions must be text" in text


def test_a_waiting_step_outlives_its_killed_driver_and_the_run_finishes_after_resume(
    ws: Workspace, user: User, db_url: str, home_dir: Path
) -> None:
    w = review_flow(ws, user)
    run = wf.start_workflow_run(w, user, input={"pr": "#9"}, ws=ws)
    proc = subprocess.Popen(
        [sys.executable, str(Path(children.__file__)), "execute", db_url, str(home_dir), str(run.id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + CEILING_S
        while wf.get_workflow_run(run, ws=ws).status != "waiting_input":
            assert proc.poll() is None and time.monotonic() < deadline, "the child never reached the step"
            time.sleep(0.05)
        wf.start_step(run, "review", user, ws=ws)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=LIVENESS)
    finally:
        if proc.poll() is None:
            proc.kill()
    # the person's claim is not a process's lease: resume must not hand the step back
    wf.complete_step(run, "review", user, output={"verdict": "ship"}, ws=ws)
    done = wf.resume_workflow_run(run, ws=ws)  # blocking here: no event loop in this test
    assert done.status == "completed" and done.output == {"report": "ship"}
    review = wf.get_workflow_step(run, "review", ws=ws)
    assert "interrupted" not in review.meta and review.meta["started_by"] == str(user.id)


def test_a_driver_in_another_process_sees_a_completion_made_here(
    ws: Workspace, user: User, db_url: str, home_dir: Path
) -> None:
    w = review_flow(ws, user)
    run = wf.start_workflow_run(w, user, input={"pr": "#10"}, ws=ws)
    proc = subprocess.Popen(
        [sys.executable, str(Path(children.__file__)), "execute", db_url, str(home_dir), str(run.id)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        deadline = time.monotonic() + CEILING_S
        while wf.get_workflow_step(run, "review", ws=ws).status != "waiting_input":
            assert proc.poll() is None and time.monotonic() < deadline, "the child never reached the step"
            time.sleep(0.05)
        wf.complete_step(run, "review", output={"verdict": "fix"}, ws=ws)
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "DONE completed"  # the child's driver finished it
        proc.wait(timeout=LIVENESS)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert wf.get_workflow_run(run, ws=ws).output == {"report": "fix"}


def test_downgrading_below_0011_refuses_while_external_steps_exist_and_keeps_every_row(
    ws: Workspace, user: User
) -> None:
    from alembic import command

    from cmdc_nb.store import migrate

    plain = wf.create_workflow(user, {"name": "p", "steps": [wf.step("a", "transform", value=1)]}, ws=ws)
    wf.run_workflow(plain, user, ws=ws)
    by_hand = wf.create_workflow(user, {"name": "h", "steps": [{"id": "x", "type": "external"}]}, ws=ws)
    held = wf.start_workflow_run(by_hand, user, ws=ws)

    def count(c: Any) -> tuple[int, int]:
        steps = c.exec_driver_sql("SELECT count(*) FROM workflow_steps").scalar_one()
        return steps, c.exec_driver_sql("SELECT count(*) FROM workflow_runs").scalar_one()

    with ws.engine.connect() as c:
        before = count(c)
    cfg = migrate._config()
    # the refusal rolls back the whole downgrade, the later revisions' steps before it included
    refused = rf"1 workflow run\(s\) have external steps.*{held.id}"
    with pytest.raises(RuntimeError, match=refused), ws.engine.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0010")
    with ws.engine.connect() as c:
        assert migrate.current_revision(c) == migrate.HEAD
    wf.cancel_workflow_run(held, ws=ws)
    with ws.engine.begin() as c:
        c.execute(sa.delete(WorkflowRun).where(WorkflowRun.workflow_id == by_hand.id))
    with ws.engine.begin() as c:
        cfg.attributes["connection"] = c
        command.downgrade(cfg, "0010")
        assert count(c) == (before[0] - 1, before[1] - 1)  # only the run deleted above is gone
        command.upgrade(cfg, "head")
        assert count(c) == (before[0] - 1, before[1] - 1)


async def test_two_answers_at_once_one_wins_whole_and_the_other_is_refused(ws: Workspace, user: User) -> None:
    """Two people (or a retrying webhook) answer the same step at the same moment: the run row's lock
    orders them, so exactly one output is stored, the run advances once, and the other is told."""
    w = review_flow(ws, user)
    for _ in range(5):
        run = await asyncio.wait_for(
            wf.arun_workflow(w, user, input={"pr": "#r"}, stop_when_blocked=True, ws=ws), LIVENESS
        )
        barrier = threading.Barrier(3)

        def answer(verdict: str, run: Any = run, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            try:
                wf.complete_step(run.id, "review", output={"verdict": verdict}, ws=ws)
            except InvalidStateError:
                return "refused"
            return verdict

        def cancel(run: Any = run, barrier: threading.Barrier = barrier) -> str:
            barrier.wait()
            try:
                wf.cancel_workflow_run(run.id, reason="race", ws=ws)
            except InvalidStateError:
                return "refused"
            return "cancelled"

        results = await asyncio.gather(
            asyncio.to_thread(answer, "ship"), asyncio.to_thread(answer, "fix"), asyncio.to_thread(cancel)
        )
        stored = wf.get_workflow_step(run, "review", ws=ws)
        winners = [r for r in results[:2] if r != "refused"]
        if stored.status == "completed":
            assert winners == [stored.output["verdict"]]  # one answer, the one stored
            assert wf.get_workflow_run(run, ws=ws).completed_step_ids.count("review") == 1
        else:  # the cancel came first: no answer was taken
            assert stored.status == "cancelled" and winners == [] and results[2] == "cancelled"


async def test_what_an_attacker_sends_is_refused_before_it_costs_anything(ws: Workspace, user: User) -> None:
    """Found by a hostile review: a schema that makes the server fetch a URL, outputs that recurse or
    whose keys collide, a schema that cannot be checked, an approved step that stayed stuck."""
    # a $ref outside the schema would have jsonschema fetch it (offline or not, with no timeout)
    for where in ("input_schema", "output_schema"):
        spec: dict[str, Any] = {"name": "r", "steps": [{"id": "x", "type": "external"}]}
        if where == "input_schema":
            spec["input_schema"] = {"$ref": "http://127.0.0.1:9/secret"}
        else:
            spec["steps"][0]["config"] = {"output_schema": {"$ref": "http://127.0.0.1:9/secret"}}
        with pytest.raises(WorkflowSpecError, match="may only refer within itself"):
            wf.create_workflow(user, spec, ws=ws)

    w = wf.create_workflow(
        user,
        {
            "name": "b",
            "steps": [{"id": "x", "type": "external", "config": {"output_schema": {"$ref": "#/nope"}}}],
        },
        ws=ws,
    )
    run = await asyncio.wait_for(wf.arun_workflow(w, user, stop_when_blocked=True, ws=ws), LIVENESS)
    with pytest.raises(InvalidInputError, match="output_schema cannot check it"):
        wf.complete_step(run, "x", output={}, ws=ws)

    plain = wf.create_workflow(user, {"name": "p", "steps": [{"id": "x", "type": "external"}]}, ws=ws)
    run = await asyncio.wait_for(wf.arun_workflow(plain, user, stop_when_blocked=True, ws=ws), LIVENESS)
    deep: Any = "leaf"
    for _ in range(3000):
        deep = [deep]
    cycle: dict[str, Any] = {}
    cycle["self"] = cycle
    for output, words in [
        (deep, "nests deeper than 64"),
        (cycle, "contains itself"),
        ({1: "x", "1": "y"}, "keys must be text"),
    ]:
        with pytest.raises(InvalidInputError, match=words):
            wf.complete_step(run, "x", output=output, ws=ws)
    assert wf.get_workflow_step(run, "x", ws=ws).status == "waiting_input"

    gated = wf.create_workflow(
        user, {"name": "g", "steps": [{"id": "x", "type": "external", "approval_required": True}]}, ws=ws
    )
    run = await asyncio.wait_for(wf.arun_workflow(gated, user, stop_when_blocked=True, ws=ws), LIVENESS)
    wf.approve_workflow_step(run, "x", user, ws=ws)
    done = wf.complete_step(run, "x", output="ok", ws=ws)  # no resume needed after the approval
    assert done.status == "completed" and wf.get_workflow_run(run, ws=ws).status == "completed"


async def test_a_template_that_blows_the_sandboxs_limits_fails_its_step_not_the_run_forever(
    ws: Workspace, user: User
) -> None:
    """Found by a hostile review, for every step type: the sandbox's range limit, a gigabyte string, a
    division by zero left the run pending with a database's complaint; now the step fails, saying why."""
    for template, words in [
        ("{% for x in range(200000) %}{% endfor %}", "Range too big"),
        ("{{ 'a' * 10**9 }}", "would build more than 1,000,000 items"),
        ("{{ 1/0 }}", "ZeroDivisionError"),
    ]:
        w = wf.create_workflow(
            user, {"name": "t", "steps": [wf.step("s", "transform", value=template)]}, ws=ws
        )
        run = await asyncio.wait_for(wf.arun_workflow(w, user, ws=ws), LIVENESS)
        step = wf.get_workflow_step(run, "s", ws=ws)
        assert run.status == "failed" and step.status == "failed" and step.error_type == "TemplateError"
        assert words in (step.error_message or "")
