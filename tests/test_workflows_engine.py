"""The workflow engine on both backends: parallel branches, gates, conditions, retries, timeouts,
failure policies, cancel, pause and resume, retry from the failed step, agent-call steps, statistics."""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from waiting import CEILING_S

from cmdc_nb import accounts, approvals, pricing
from cmdc_nb import workflows as wf
from cmdc_nb.errors import InvalidInputError, InvalidStateError
from cmdc_nb.providers import Script, Turn
from cmdc_nb.store.models import AgentCall, User
from cmdc_nb.workspace import Workspace

LIVENESS = 60.0  # seconds: a bound that only a hung run reaches
calls: Counter[str] = Counter()


executions: list[tuple[str, str, int, bool]] = []  # (step, idempotency key, attempt, resumed)


@pytest.fixture(autouse=True)
def _reset() -> None:
    calls.clear()
    executions.clear()


@wf.step_function("t.add")
def add(a: int, b: int) -> int:
    calls["add"] += 1
    return a + b


@wf.step_function("t.flaky")
def flaky(key: str, fail_times: int) -> str:
    calls[key] += 1
    if calls[key] <= fail_times:
        raise ConnectionError(f"attempt {calls[key]} failed")
    return f"ok after {calls[key]}"


@wf.step_function("t.boom")
def boom() -> None:
    calls["boom"] += 1
    raise ValueError("the step broke")


@wf.step_function("t.count")
def count(name: str) -> str:
    calls[name] += 1
    return name


barrier = threading.Barrier(3, timeout=CEILING_S)


@wf.step_function("t.meet")
def meet(name: str) -> str:
    # Returns only when all three branches are inside at once: proof that they ran concurrently.
    barrier.wait()
    return name


release = threading.Event()
started = threading.Event()


@wf.step_function("t.block")
async def block() -> str:
    started.set()
    while not release.is_set():
        await asyncio.sleep(0.01)
    return "released"


@wf.step_function("t.keyed")
async def keyed(name: str, fail_times: int, ctx: wf.StepContext) -> str:
    executions.append((name, ctx.idempotency_key, ctx.attempt, ctx.resumed))
    if name == "hang" and not ctx.resumed:
        await asyncio.sleep(CEILING_S)  # cut off here: the cell driving the run is interrupted
    if sum(1 for e in executions if e[0] == name) <= fail_times:
        raise ConnectionError(f"{name} failed")
    return name


def make(ws: Workspace, user: User, steps: list[dict[str, Any]], **extra: Any) -> Any:
    return wf.create_workflow(user, {"name": extra.pop("name", "wf"), "steps": steps, **extra}, ws=ws)


def statuses(ws: Workspace, run: Any) -> dict[str, str]:
    return {s.step_id: s.status.value for s in wf.list_workflow_steps(run, ws=ws)}


async def go(ws: Workspace, w: Any, **kw: Any) -> Any:
    return await asyncio.wait_for(wf.arun_workflow(w, ws=ws, **kw), LIVENESS)


async def test_a_diamond_runs_its_branches_concurrently_and_joins(ws: Workspace, user: User) -> None:
    barrier.reset()
    w = make(
        ws,
        user,
        [
            wf.step("start", "transform", value="{{ input.n }}"),
            *(wf.step(b, fn="t.meet", depends_on="start", args={"name": b}) for b in ("x", "y", "z")),
            wf.step(
                "join",
                "transform",
                depends_on=["x", "y", "z"],
                value="{{ [steps.x.output, steps.y.output, steps.z.output] | join('+') }}",
            ),
        ],
        input_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    )
    run = await go(ws, w, input={"n": 7}, max_concurrency=3)
    assert run.status == "completed"
    assert run.output == {"join": "x+y+z"}
    assert run.completed_step_ids[0] == "start" and run.completed_step_ids[-1] == "join"
    steps = {s.step_id: s for s in wf.list_workflow_steps(run, ws=ws)}
    assert steps["start"].output == 7 and steps["start"].input == {"value": 7}
    # Each dependant started only after its dependency's outcome was committed.
    for sid in ("x", "y", "z"):
        assert steps[sid].started_at >= steps["start"].completed_at
        assert steps["join"].started_at >= steps[sid].completed_at
    stats = wf.get_workflow(w, ws=ws)
    assert (stats.run_count, stats.success_count, stats.failure_count) == (1, 1, 0)
    assert stats.avg_duration_ms == run.duration_ms


async def test_input_is_validated_against_the_schema_before_anything_is_stored(
    ws: Workspace, user: User
) -> None:
    w = make(
        ws,
        user,
        [wf.step("a", "transform", value=1)],
        input_schema={"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]},
    )
    with pytest.raises(InvalidInputError, match=r"n: 'seven' is not of type 'integer'"):
        wf.start_workflow_run(w, input={"n": "seven"}, ws=ws)
    assert wf.list_workflow_runs(w, ws=ws) == []
    assert wf.get_workflow(w, ws=ws).run_count == 0


async def test_a_condition_skips_the_branch_not_taken(ws: Workspace, user: User) -> None:
    w = make(
        ws,
        user,
        [
            wf.step("score", "transform", value="{{ input.score }}"),
            wf.step(
                "check",
                "condition",
                depends_on="score",
                **{"if": "{{ steps.score.output >= 50 }}", "then": ["praise"], "else": ["coach"]},
            ),
            wf.step("praise", fn="t.count", depends_on="check", args={"name": "praise"}),
            wf.step("coach", fn="t.count", depends_on="check", args={"name": "coach"}),
            wf.step("after_coach", fn="t.count", depends_on="coach", args={"name": "after_coach"}),
            wf.step("report", "transform", depends_on=["praise", "coach"], join="any", value="done"),
        ],
    )
    high = await go(ws, w, input={"score": 80})
    assert statuses(ws, high) == {
        "score": "completed",
        "check": "completed",
        "praise": "completed",
        "coach": "skipped",
        "after_coach": "skipped",
        "report": "completed",
    }
    assert (
        wf.get_workflow_step(high, "after_coach", ws=ws).error_message == "upstream step 'coach' is skipped"
    )
    low = await go(ws, w, input={"score": 10})
    assert statuses(ws, low)["praise"] == "skipped" and statuses(ws, low)["after_coach"] == "completed"
    assert calls == Counter({"praise": 1, "coach": 1, "after_coach": 1})


async def test_a_failing_step_is_retried_with_backoff_and_each_attempt_is_recorded(
    ws: Workspace, user: User
) -> None:
    w = make(
        ws,
        user,
        [
            wf.step(
                "f",
                fn="t.flaky",
                args={"key": "f", "fail_times": 2},
                retries={"attempts": 3, "backoff": 0.01},
            )
        ],
    )
    run = await go(ws, w)
    step = wf.get_workflow_step(run, "f", ws=ws)
    assert (run.status, step.status, step.output, step.attempt_number) == (
        "completed",
        "completed",
        "ok after 3",
        3,
    )
    assert [e["message"] for e in step.meta["errors"]] == ["attempt 1 failed", "attempt 2 failed"]
    assert calls["f"] == 3


async def test_out_of_attempts_fails_the_run_fast_and_cancels_what_has_not_started(
    ws: Workspace, user: User
) -> None:
    w = make(
        ws,
        user,
        [
            wf.step(
                "f", fn="t.flaky", args={"key": "f", "fail_times": 9}, retries={"attempts": 2, "backoff": 0}
            ),
            wf.step("after", fn="t.count", depends_on="f", args={"name": "after"}),
        ],
    )
    run = await go(ws, w)
    assert run.status == "failed" and run.failed_step_id == "f" and run.error_type == "ConnectionError"
    assert run.error_message == "attempt 2 failed"
    assert statuses(ws, run) == {"f": "failed", "after": "cancelled"}
    assert calls == Counter({"f": 2})
    assert wf.get_workflow(w, ws=ws).failure_count == 1


async def test_continue_policy_lets_independent_branches_finish(ws: Workspace, user: User) -> None:
    w = make(
        ws,
        user,
        [
            wf.step("bad", fn="t.boom"),
            wf.step("after_bad", fn="t.count", depends_on="bad", args={"name": "after_bad"}),
            wf.step("good", fn="t.count", args={"name": "good"}),
            wf.step("after_good", fn="t.count", depends_on="good", args={"name": "after_good"}),
        ],
        failure_policy="continue",
    )
    run = await go(ws, w)
    assert run.status == "failed" and run.error_message == "the step broke"
    assert statuses(ws, run) == {
        "bad": "failed",
        "good": "completed",
        "after_bad": "skipped",
        "after_good": "completed",
    }
    assert calls == Counter({"boom": 1, "good": 1, "after_good": 1})


async def test_a_step_over_its_timeout_is_marked_timeout(ws: Workspace, user: User) -> None:
    release.clear()
    w = make(ws, user, [wf.step("slow", fn="t.block", timeout=0.2)])
    run = await go(ws, w)
    step = wf.get_workflow_step(run, "slow", ws=ws)
    assert (run.status, step.status, step.error_type) == ("failed", "timeout", "Timeout")
    assert step.error_message == "no result within 0.2 s"


async def test_an_approval_gate_waits_for_a_decision_made_elsewhere(ws: Workspace, user: User) -> None:
    w = make(
        ws,
        user,
        [
            wf.step("draft", "transform", value="Release {{ input.v }}"),
            wf.step(
                "ok",
                "approval",
                depends_on="draft",
                title="Publish {{ steps.draft.output }}?",
                payload={"text": "{{ steps.draft.output }}"},
            ),
            wf.step("publish", "transform", depends_on="ok", value="{{ steps.ok.output.payload.text }}"),
        ],
    )
    run = await go(ws, w, input={"v": "1.0"}, stop_when_blocked=True)
    assert run.status == "waiting_approval"
    [item] = approvals.list_pending_approvals(user, ws=ws).entries
    assert (item.title, item.payload, item.approval_type) == (
        "Publish Release 1.0?",
        {"text": "Release 1.0"},
        "workflow_step",
    )
    # Another cell (or process) decides while the run is driven in the background.
    driver = asyncio.create_task(wf.execute_workflow_run(run, ws=ws))
    await asyncio.sleep(0.05)
    approvals.approve_item(
        item, user, note="ship it", modified_payload={"text": "Release 1.0 (final)"}, ws=ws
    )
    done = await asyncio.wait_for(driver, LIVENESS)
    assert done.status == "completed" and done.output == {"publish": "Release 1.0 (final)"}
    gate = wf.get_workflow_step(done, "ok", ws=ws)
    assert gate.output["approved"] is True and gate.output["note"] == "ship it"


async def test_denying_a_gate_fails_the_run_or_skips_when_configured(ws: Workspace, user: User) -> None:
    w = make(
        ws,
        user,
        [
            wf.step("ok", "approval", title="Go?"),
            wf.step("after", fn="t.count", depends_on="ok", args={"name": "after"}),
        ],
    )
    run = await go(ws, w, stop_when_blocked=True)
    wf.deny_workflow_step(run, "ok", note="not today", ws=ws)
    run = await asyncio.wait_for(wf.execute_workflow_run(run, ws=ws), LIVENESS)
    assert run.status == "failed" and run.error_type == "ApprovalDenied"
    assert wf.get_workflow_step(run, "ok", ws=ws).error_message == "denied: not today"
    assert calls["after"] == 0

    w2 = make(
        ws,
        user,
        [
            wf.step("ok", "approval", title="Optional?", on_deny="skip"),
            wf.step("always", "transform", depends_on="ok", join="any", value=1),
        ],
        name="wf2",
    )
    run2 = await go(ws, w2, stop_when_blocked=True)
    wf.deny_workflow_step(run2, "ok", ws=ws)
    run2 = await asyncio.wait_for(wf.execute_workflow_run(run2, ws=ws), LIVENESS)
    assert statuses(ws, run2)["ok"] == "skipped"


async def test_approval_required_runs_the_step_with_the_reviewers_edits(ws: Workspace, user: User) -> None:
    w = make(ws, user, [wf.step("deploy", fn="t.add", approval_required=True, args={"a": 1, "b": 1})])
    run = await go(ws, w, stop_when_blocked=True)
    assert calls["add"] == 0 and statuses(ws, run) == {"deploy": "waiting_approval"}
    wf.approve_workflow_step(run, "deploy", payload={"function": "t.add", "args": {"a": 40, "b": 2}}, ws=ws)
    run = await asyncio.wait_for(wf.resume_workflow_run(run, ws=ws), LIVENESS)
    assert run.status == "completed" and wf.get_workflow_step(run, "deploy", ws=ws).output == 42


async def test_an_auto_approval_rule_opens_a_gate_without_a_human(ws: Workspace, user: User) -> None:
    w = make(
        ws,
        user,
        [
            wf.step("ok", "approval", title="Nightly report"),
            wf.step("x", "transform", depends_on="ok", value=1),
        ],
    )
    approvals.create_approval_rule(
        user,
        name="nightly",
        approval_type="workflow_step",
        action="approve",
        applies_to_workflows=[w.id],
        ws=ws,
    )
    run = await go(ws, w)
    assert run.status == "completed"
    assert wf.get_workflow_step(run, "ok", ws=ws).output["status"] == "auto_approved"


async def test_cancel_stops_a_running_step_and_cancels_the_rest(ws: Workspace, user: User) -> None:
    release.clear()
    started.clear()
    w = make(
        ws,
        user,
        [
            wf.step("slow", fn="t.block"),
            wf.step("next", fn="t.count", depends_on="slow", args={"name": "next"}),
        ],
    )
    handle = wf.run_workflow(w, ws=ws)
    assert isinstance(handle, wf.RunHandle)
    await asyncio.wait_for(asyncio.to_thread(started.wait), LIVENESS)
    wf.cancel_workflow_run(handle.run_id, reason="changed my mind", ws=ws)
    run = await asyncio.wait_for(handle, LIVENESS)
    assert run.status == "cancelled" and run.error_message == "changed my mind"
    assert statuses(ws, run) == {"slow": "cancelled", "next": "cancelled"}
    assert calls["next"] == 0
    with pytest.raises(InvalidStateError):
        wf.cancel_workflow_run(run, ws=ws)


async def test_pause_lets_the_running_step_finish_and_resume_goes_on(ws: Workspace, user: User) -> None:
    release.clear()
    started.clear()
    w = make(
        ws,
        user,
        [
            wf.step("slow", fn="t.block"),
            wf.step("next", fn="t.count", depends_on="slow", args={"name": "next"}),
        ],
    )
    handle = wf.run_workflow(w, ws=ws)
    await asyncio.wait_for(asyncio.to_thread(started.wait), LIVENESS)
    wf.pause_workflow_run(handle.run_id, ws=ws)
    release.set()
    paused = await asyncio.wait_for(handle, LIVENESS)
    assert paused.status == "paused" and statuses(ws, paused) == {"slow": "completed", "next": "pending"}
    run = await asyncio.wait_for(wf.resume_workflow_run(paused, ws=ws), LIVENESS)
    assert run.status == "completed" and calls["next"] == 1


async def test_retry_runs_from_the_failed_step_without_redoing_what_succeeded(
    ws: Workspace, user: User
) -> None:
    w = make(
        ws,
        user,
        [
            wf.step("a", fn="t.count", args={"name": "a"}),
            wf.step("b", fn="t.count", depends_on="a", args={"name": "b"}),
            wf.step("c", fn="t.flaky", depends_on="b", args={"key": "c", "fail_times": 1}),
            wf.step("d", "transform", depends_on="c", value="{{ steps.a.output }}-{{ steps.c.output }}"),
        ],
    )
    failed = await go(ws, w)
    assert failed.status == "failed" and failed.failed_step_id == "c"
    retry = await asyncio.wait_for(wf.retry_workflow_run(failed, ws=ws), LIVENESS)
    assert (retry.status, retry.retry_of_run_id, retry.trigger_type, retry.retry_count) == (
        "completed",
        failed.id,
        "retry",
        1,
    )
    assert retry.output == {"d": "a-ok after 2"}
    assert calls == Counter({"a": 1, "b": 1, "c": 2})
    carried = wf.get_workflow_step(retry, "a", ws=ws)
    assert carried.meta["carried_from"] and carried.output == "a"
    assert retry.completed_step_ids == ["a", "b", "c", "d"]
    with pytest.raises(InvalidStateError):
        wf.retry_workflow_run(retry, ws=ws)
    stats = wf.get_workflow(w, ws=ws)
    assert (stats.run_count, stats.success_count, stats.failure_count) == (2, 1, 1)


async def test_the_idempotency_key_names_one_execution_of_a_step_through_retries_and_resumes(
    ws: Workspace, user: User
) -> None:
    """One key per logical execution, as with Temporal activity ids and Stripe idempotency keys: a
    policy retry and a re-run after an interruption keep the step's key (the attempt number says which
    try it is), while `retry_workflow_run` is a new run whose steps that run again get new keys."""
    w = make(
        ws,
        user,
        [
            wf.step(
                "flaky",
                fn="t.keyed",
                args={"name": "flaky", "fail_times": 1},
                retries={"attempts": 2, "backoff": 0},
            ),
            wf.step("hang", fn="t.keyed", depends_on="flaky", args={"name": "hang", "fail_times": 0}),
            wf.step("late", fn="t.keyed", depends_on="hang", args={"name": "late", "fail_times": 1}),
        ],
    )
    run = wf.start_workflow_run(w, ws=ws)
    driver = asyncio.create_task(wf.execute_workflow_run(run, ws=ws))
    async with asyncio.timeout(LIVENESS):
        while not any(e[0] == "hang" for e in executions):
            await asyncio.sleep(0.01)
    driver.cancel()  # as when the notebook's cell is interrupted: "hang" is left running
    with pytest.raises(asyncio.CancelledError):
        await driver
    assert statuses(ws, run) == {"flaky": "completed", "hang": "running", "late": "pending"}

    failed = await asyncio.wait_for(wf.resume_workflow_run(run, ws=ws), LIVENESS)
    assert (failed.status, failed.failed_step_id) == ("failed", "late")
    retry = await asyncio.wait_for(wf.retry_workflow_run(failed, ws=ws), LIVENESS)
    assert retry.status == "completed"
    assert executions == [
        ("flaky", f"{run.id}:flaky", 1, False),
        ("flaky", f"{run.id}:flaky", 2, False),  # a policy retry: same key, next attempt
        ("hang", f"{run.id}:hang", 1, False),
        ("hang", f"{run.id}:hang", 1, True),  # re-run after the interruption: same key, same attempt
        ("late", f"{run.id}:late", 1, False),
        ("late", f"{retry.id}:late", 1, False),  # a new run, a new execution: a new key
    ]
    keys = {s.step_id: s.idempotency_key for s in wf.list_workflow_steps(retry, ws=ws)}
    assert keys == {"flaky": f"{run.id}:flaky", "hang": f"{run.id}:hang", "late": f"{retry.id}:late"}


async def test_agent_call_steps_run_through_the_kernel_and_roll_up_tokens_and_cost(
    ws: Workspace, user: User
) -> None:
    script = Script(
        [Turn("LGTM: tests pass", usage=(1000, 10)), Turn("Shipped.", usage=(500, 4))], name="wf-review"
    )
    pricing.set_model_price(script.model, input_per_million_usd="1", output_per_million_usd="2", ws=ws)
    w = make(
        ws,
        user,
        [
            wf.step("review", "agent_call", model=script.model, prompt="Review PR {{ input.pr }}"),
            wf.step(
                "ship",
                "agent_call",
                depends_on="review",
                model=script.model,
                prompt="Reviewer said: {{ steps.review.output }}",
            ),
        ],
    )
    run = await go(ws, w, input={"pr": 42})
    assert run.status == "completed" and run.output == {"ship": "Shipped."}
    review = wf.get_workflow_step(run, "review", ws=ws)
    assert (review.tokens_in, review.tokens_out, review.cost_usd) == (1000, 10, Decimal("0.00102"))
    assert (run.total_tokens_in, run.total_tokens_out, run.total_cost_usd) == (1500, 14, Decimal("0.001528"))
    assert script.requests[1][-1]["content"] == "Reviewer said: LGTM: tests pass"
    with ws.read() as db:
        stored = db.scalars(sa.select(AgentCall).where(AgentCall.workflow_run_id == run.id)).all()
    assert {c.workflow_step_id for c in stored} == {review.id, wf.get_workflow_step(run, "ship", ws=ws).id}
    assert run.session_id is not None  # the run's conversation is a session like any other
    assert wf.get_workflow(w, ws=ws).avg_cost_usd == Decimal("0.001528")


async def test_shell_and_tool_steps(ws: Workspace, user: User, tmp_path: Any) -> None:
    w = make(
        ws,
        user,
        [
            wf.step(
                "write",
                "tool",
                tool="write_file",
                working_dir=str(tmp_path),
                args={"path": "notes.txt", "content": "hello {{ input.who }}"},
            ),
            wf.step(
                "show",
                "shell",
                depends_on="write",
                command="cat notes.txt && echo && echo $CMDC_IDEMPOTENCY_KEY $CMDC_STEP_ATTEMPT",
                cwd=str(tmp_path),
            ),
            wf.step("bad", "shell", depends_on="show", command="echo oops >&2; exit 3"),
        ],
    )
    run = await go(ws, w, input={"who": "world"})
    show = wf.get_workflow_step(run, "show", ws=ws)
    assert show.output["stdout"].splitlines() == ["hello world", f"{run.id}:show 1"]
    assert show.idempotency_key == f"{run.id}:show"
    bad = wf.get_workflow_step(run, "bad", ws=ws)
    assert (bad.status, bad.error_type, bad.error_message) == (
        "failed",
        "CommandFailed",
        "step 'bad': command exited with 3: oops",
    )


async def test_template_errors_and_non_json_outputs_fail_without_retrying(ws: Workspace, user: User) -> None:
    wf.register_step_function("t.obj", lambda: object())
    w = make(
        ws,
        user,
        [
            wf.step("t", "transform", value="{{ input.nothing.here }}", retries=3),
            wf.step("o", fn="t.obj", retries=3),
        ],
        failure_policy="continue",
    )
    run = await go(ws, w)
    t, o = wf.get_workflow_step(run, "t", ws=ws), wf.get_workflow_step(run, "o", ws=ws)
    assert (t.status, t.error_type, t.attempt_number) == ("failed", "TemplateError", 1)
    assert "'dict object' has no attribute 'nothing'" in t.error_message
    assert (o.status, o.error_type, o.attempt_number) == ("failed", "OutputNotJSON", 1)


async def test_every_transition_is_an_event(ws: Workspace, user: User) -> None:
    seen: list[tuple[str, str]] = []
    sub = ws.bus.subscribe("workflow*", lambda e: seen.append((e.topic.split(":")[0], e.type)))
    w = make(ws, user, [wf.step("a", "transform", value=1), wf.step("b", fn="t.boom", depends_on="a")])
    run = await go(ws, w)
    sub.close()
    types = [t for _, t in seen]
    for expected in (
        "workflow_created",
        "workflow_run_created",
        "workflow_run_started",
        "workflow_step_started",
        "workflow_step_completed",
        "workflow_step_failed",
        "workflow_run_failed",
    ):
        assert expected in types
    assert (
        types.index("workflow_step_completed")
        < types.index("workflow_step_failed")
        < types.index("workflow_run_failed")
    )
    assert run.status == "failed"


def test_versions_are_kept_and_runs_keep_their_snapshot(ws: Workspace, user: User) -> None:
    w = make(ws, user, [wf.step("a", "transform", value="v1")])
    run = wf.start_workflow_run(w, ws=ws)
    w2 = wf.update_workflow(
        w, {"name": "wf", "steps": [wf.step("a", "transform", value="v2")]}, note="bump", ws=ws
    )
    assert w2.version == 2
    versions = wf.list_workflow_versions(w, ws=ws)
    assert [(x["version"], x["spec"]["steps"][0]["config"]["value"], x["note"]) for x in versions] == [
        (1, "v1", "bump"),
        (2, "v2", None),
    ]
    assert (
        run.workflow_snapshot["version"] == 1 and run.workflow_snapshot["steps"][0]["config"]["value"] == "v1"
    )
    done = asyncio.run(wf.execute_workflow_run(run, ws=ws))
    assert done.output == {"a": "v1"}
    assert wf.get_workflow_by_slug(user, "wf", ws=ws).id == w.id
    assert [x.id for x in wf.list_workflows(user, ws=ws)] == [w.id]
    wf.archive_workflow(w, ws=ws)
    with pytest.raises(InvalidInputError, match="archived; activate it first"):
        wf.start_workflow_run(w, ws=ws)


def test_a_script_blocks_until_the_run_is_over_and_frames_show_it(ws: Workspace, user: User) -> None:
    other = accounts.create_user("bo@example.com", ws=ws)
    w = make(
        ws,
        user,
        [
            wf.step("a", fn="t.add", args={"a": 1, "b": 2}),
            wf.step("b", fn="t.add", depends_on="a", args={"a": "{{ steps.a.output }}", "b": 3}),
        ],
    )
    run = wf.run_workflow(w, other, ws=ws)  # no running loop: blocks, returns the finished run
    assert run.status == "completed" and run.user_id == other.id and run.output == {"b": 6}
    frame = wf.steps_frame(run, ws=ws)
    assert list(frame["step_id"]) == ["a", "b"] and list(frame["output"]) == [3, 6]
    runs = wf.runs_frame(w, ws=ws)
    assert list(runs["status"]) == ["completed"]


async def test_a_step_whose_outcome_cannot_be_written_is_handed_back_then_failed(
    ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    from cmdc_nb.errors import StorageError
    from cmdc_nb.workflows import state

    real = state.complete
    failures = {"left": 1}

    def flaky_complete(*args: Any, **kwargs: Any) -> bool:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise StorageError("database error: disk I/O error")
        return real(*args, **kwargs)

    monkeypatch.setattr(state, "complete", flaky_complete)
    w = make(ws, user, [wf.step("a", fn="t.count", args={"name": "a"})])
    run = await go(ws, w)
    step = wf.get_workflow_step(run, "a", ws=ws)
    assert run.status == "completed" and step.meta["interrupted"] == 1 and calls["a"] == 2

    failures["left"] = 99  # it never works: after three hand-backs the step fails instead of looping
    run = await go(ws, w)
    step = wf.get_workflow_step(run, "a", ws=ws)
    assert (run.status, step.status, step.error_type) == ("failed", "failed", "Interrupted")
    assert step.error_message == "interrupted 4 times; not run again"


async def test_many_runs_of_one_workflow_driven_at_once_all_finish(ws: Workspace, user: User) -> None:
    """Runs of one workflow finishing at the same moment each count themselves on the workflow's row,
    and each publishes events. On PostgreSQL that deadlocked half of twelve such runs: a finishing run
    asked FOR UPDATE on the workflow row its runs' foreign keys hold KEY SHARE on (now FOR NO KEY
    UPDATE), and a transaction's late autoflush ran after it had taken the event log's lock (now every
    write is flushed before the events are recorded)."""
    script = Script(lambda messages: Turn("ok"), name="many-runs")
    quick = wf.create_workflow(user, {"name": "quick", "steps": [wf.step("t", "transform", value=1)]}, ws=ws)
    asked = wf.create_workflow(
        user,
        {"name": "asked", "steps": [wf.step("ask", "agent_call", model=script.model, prompt="hi")]},
        ws=ws,
    )
    for flow in (quick, asked):
        for _ in range(2):
            runs = await asyncio.wait_for(
                asyncio.gather(*[wf.arun_workflow(flow, ws=ws) for _ in range(12)], return_exceptions=True),
                CEILING_S,
            )
            assert [getattr(r, "status", r) for r in runs] == [
                wf.get_workflow_run(runs[0], ws=ws).status
            ] * 12
            assert {r.status.value for r in runs} == {"completed"}
        row = wf.get_workflow(flow, ws=ws)
        assert (row.run_count, row.success_count, row.failure_count) == (24, 24, 0)
