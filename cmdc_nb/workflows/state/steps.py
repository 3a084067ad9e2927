"""Moving a step: `claim` under a lease (or park it at an approval gate), `complete` / `fail` / `retrying`
by the lease owner only, `heartbeat` to renew, and `recover` for steps whose owner is gone."""

from __future__ import annotations

import datetime as dt
import os
import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.proc import pid_alive
from cmdc_nb._plumbing.service import fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace
from cmdc_nb.errors import WorkflowError
from cmdc_nb.services import approvals
from cmdc_nb.store.enums import ApprovalSourceType, ApprovalType, StepType, WorkflowStepStatus
from cmdc_nb.store.models import WorkflowRun, WorkflowStep
from cmdc_nb.store.values import utcnow
from cmdc_nb.workflows.records import RUN_TERMINAL, publish_run, publish_step
from cmdc_nb.workflows.spec import StepSpec, WorkflowSpec
from cmdc_nb.workflows.state.rows import (
    HOST,
    LEASE_SECONDS,
    MAX_INTERRUPTIONS,
    OWNER,
    Claim,
    R,
    S,
    _finish_step,
    _lock_run,
    _outputs_of,
    _step_rows,
    local_lock,
    local_steps,
    run_spec,
)
from cmdc_nb.workflows.state.runs import _set_run_status
from cmdc_nb.workflows.templates import render

__all__ = ["await_input", "claim", "claim_in", "fail", "heartbeat", "recover", "retrying"]


def claim(ws: Workspace, run_id: uuid.UUID, step_id: str, *, owner: str = OWNER) -> Claim | None:
    """Take a ready step for this process; None if someone else has it, it must wait for approval,
    or the run is paused or over."""
    with ws.transaction() as tx:
        return claim_in(tx, _lock_run(tx, run_id, light=True), step_id, owner=owner)


def claim_in(tx: Tx, run: WorkflowRun, step_id: str, *, owner: str = OWNER) -> Claim | None:
    """`claim` inside `tx`, the run row already locked.

    Long because a claim is one decision: the row's state, its rendered config, a gate to open or a
    lease to take, and the claim handed back, each reading what the one before found."""
    run_id = run.id
    if run.status in RUN_TERMINAL or run.status is R.PAUSED:
        return None
    row = tx.db.scalar(
        sa.select(WorkflowStep)
        .where(WorkflowStep.workflow_run_id == run_id, WorkflowStep.step_id == step_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if row is None or row.status is not S.PENDING:
        return None
    spec = run_spec(run)
    step = spec.step(step_id)
    # A step's templates may read only the steps it depends on (checked when the spec is saved),
    # so its context holds just those: the claim costs the same at step 10 and step 1,000.
    outputs = _outputs_of(tx, run_id, spec.ancestors(step_id))
    ctx = {
        "input": dict(run.input or {}),
        "steps": {k: {"output": out, "status": st} for k, (out, st) in outputs.items()},
        "run": {"id": str(run.id), "workflow_id": str(run.workflow_id)},
    }
    try:
        config = render(dict(step.config), ctx, step_id=step_id)
    except WorkflowError as exc:
        row.started_at = utcnow()
        _finish_step(
            tx, run, row, S.FAILED, error_type=exc.error_type or "TemplateError", error_message=str(exc)
        )
        return None
    decision = row.meta.get("decision")
    if step.type is StepType.APPROVAL or (step.approval_required and decision is None):
        _open_gate(tx, run, row, step, config, spec)
        return None
    if decision is not None and isinstance(decision.get("payload"), Mapping) and step.approval_required:
        config = {**config, **decision["payload"]}  # the reviewer's edits win
    if step.type is StepType.EXTERNAL:
        await_input(tx, run, row, config)
        return None
    now = utcnow()
    row.status = S.RUNNING
    row.started_at = row.started_at or now
    row.input = jsonable(config)
    key = row.idempotency_key or f"{run.id}:{step_id}"
    if step.side_effecting:
        row.idempotency_key = key
    pid = os.getpid()
    row.meta = {
        **row.meta,
        "lease": {
            "owner": owner,
            "host": HOST,
            "pid": pid,
            "expires_at": (now + dt.timedelta(seconds=LEASE_SECONDS)).isoformat(),
        },
    }
    run.current_step_id = step_id
    tx.db.flush()
    _set_run_status(tx, run, R.RUNNING)
    publish_step(tx, row, "workflow_step_started", resumed=bool(row.meta.get("interrupted")))
    return Claim(
        run_id=run.id,
        row_id=row.id,
        spec=step,
        config=config,
        attempt=row.attempt_number,
        max_attempts=row.max_attempts,
        idempotency_key=key,
        resumed=bool(row.meta.get("interrupted")),
        input=ctx["input"],
        outputs={k: x["output"] for k, x in ctx["steps"].items()},
        user_id=run.user_id,
        session_id=run.session_id,
        workflow_name=spec.name,
        workflow_id=run.workflow_id,
        owner=owner,
    )


def _open_gate(
    tx: Tx, run: WorkflowRun, row: WorkflowStep, step: StepSpec, config: dict[str, Any], spec: WorkflowSpec
) -> None:
    if step.type is StepType.APPROVAL:
        title = str(config.get("title") or f"Approve {step.name or step.id}")
        payload = config.get("payload") or {}
        description = config.get("description")
    else:
        title = f"Run {step.type.value} step {step.name or step.id}"
        payload = config
        description = f"Step {step.id!r} of workflow {spec.name!r} needs approval before it runs."
    if not isinstance(payload, Mapping):
        payload = {"value": payload}
    expires_in = config.get("expires_in")
    item = approvals.insert_item_in(
        tx,
        user_id=run.user_id,
        approval_type=ApprovalType.WORKFLOW_STEP,
        title=title[:300],
        payload=payload,
        source_type=ApprovalSourceType.WORKFLOW_STEP,
        source_id=row.id,
        session_id=run.session_id,
        workflow_run_id=run.id,
        description=str(description) if description else None,
        context={"workflow": spec.name, "step_id": step.id, "step_type": step.type.value},
        priority=str(config.get("priority", "normal")),
        expires_at=v.expiry(None, float(expires_in)) if expires_in else None,
        timeout_action=str(config.get("timeout_action", "deny")),
    )
    row.status = S.WAITING_APPROVAL
    row.approval_id = item.id
    row.started_at = row.started_at or utcnow()
    tx.db.flush()
    publish_step(tx, row, "workflow_step_waiting_approval")
    approvals.auto_decide_in(tx, item)


def await_input(tx: Tx, run: WorkflowRun, row: WorkflowStep, config: Mapping[str, Any]) -> None:
    """Park an external step whose dependencies are done: no lease, no task — it is someone's turn
    until `start_step` / `complete_step` / `fail_step` (`state.external`), a timeout or a cancel."""
    now = utcnow()
    row.status = S.WAITING_INPUT
    row.started_at = row.started_at or now
    row.input = jsonable(dict(config))
    row.meta = {**row.meta, "waiting_since": now.isoformat()}
    tx.db.flush()
    instructions = config.get("instructions")
    publish_step(
        tx, row, "workflow_step_waiting_input", instructions=str(instructions) if instructions else None
    )


def _owned(row: WorkflowStep, c: Claim) -> bool:
    return row.status is S.RUNNING and (row.meta.get("lease") or {}).get("owner") == c.owner


def fail(ws: Workspace, c: Claim, status: WorkflowStepStatus, error_type: str, message: str) -> bool:
    with ws.transaction() as tx:
        run = _lock_run(tx, c.run_id, light=True)
        row = fetch(tx.db, WorkflowStep, c.row_id, "workflow_step", lock=True)
        if not _owned(row, c):
            return False
        _finish_step(tx, run, row, status, error_type=error_type, error_message=message[:4000])
        return True


def retrying(ws: Workspace, c: Claim, error_type: str, message: str, delay: float) -> bool:
    """Count a failed attempt that will be tried again (committed, so a crash resumes at the right try)."""
    with ws.transaction() as tx:
        _lock_run(tx, c.run_id, light=True)
        row = fetch(tx.db, WorkflowStep, c.row_id, "workflow_step", lock=True)
        if not _owned(row, c):
            return False
        errors = [
            *row.meta.get("errors", []),
            {"attempt": row.attempt_number, "type": error_type, "message": message[:1000]},
        ]
        row.meta = {**row.meta, "errors": errors[-20:]}
        row.attempt_number += 1
        c.attempt = row.attempt_number
        tx.db.flush()
        publish_step(tx, row, "workflow_step_retrying", delay_s=delay, error_type=error_type)
        return True


def heartbeat(ws: Workspace, c: Claim, *, renew: bool) -> str | None:
    """Why the step should stop (the run is over or cancelled, or the step was taken away), else None.
    With `renew`, the lease is extended."""
    if renew:
        with ws.transaction() as tx:
            row = tx.db.get(WorkflowStep, c.row_id, with_for_update=True, populate_existing=True)
            if row is not None and _owned(row, c):
                lease = dict(row.meta["lease"])
                lease["expires_at"] = (utcnow() + dt.timedelta(seconds=LEASE_SECONDS)).isoformat()
                row.meta = {**row.meta, "lease": lease}
    with ws.read() as db:
        status = db.scalar(sa.select(WorkflowRun.status).where(WorkflowRun.id == c.run_id))
        row = db.get(WorkflowStep, c.row_id, populate_existing=True)
        if status in RUN_TERMINAL:
            return f"the run is {status.value}"
        if row is None or not _owned(row, c):
            return "the step was taken over"
    return None


def lease_dead(lease: Mapping[str, Any] | None, *, now: dt.datetime | None = None) -> bool:
    if not lease:
        return True
    now = now or utcnow()
    try:
        expires = dt.datetime.fromisoformat(str(lease.get("expires_at")))
    except ValueError:
        return True
    if expires < now:
        return True
    if lease.get("owner") == OWNER:
        return False  # ours: the caller checks local_steps
    return lease.get("host") == HOST and not pid_alive(int(lease.get("pid", 0)))


def recover(ws: Workspace, run_id: uuid.UUID, *, force: bool = False) -> list[str]:
    """Hand back the steps whose owner is gone (its process died, or its lease expired). With
    `force`, every running step not executing in this process. Returns their ids."""
    with ws.transaction() as tx:
        run = _lock_run(tx, run_id)
        if run.status in RUN_TERMINAL:
            return []
        spec = run_spec(run)
        back: list[str] = []
        for row in _step_rows(tx, run_id):
            if row.status is not S.RUNNING or row.step_type is StepType.EXTERNAL:
                continue  # an external step is run by a person, not a process: nothing died
            with local_lock:
                here = (run_id, row.step_id) in local_steps
            lease = row.meta.get("lease")
            mine = isinstance(lease, Mapping) and lease.get("owner") == OWNER
            if here or not (force or lease_dead(lease) or mine):
                continue
            n = int(row.meta.get("interrupted", 0)) + 1
            row.meta = {**{k: x for k, x in row.meta.items() if k != "lease"}, "interrupted": n}
            give_up = None
            if spec.step(row.step_id).config.get("on_interrupt") == "fail":
                give_up = "interrupted while running; not run again (on_interrupt: fail)"
            elif n > MAX_INTERRUPTIONS:
                give_up = f"interrupted {n} times; not run again"
            if give_up is not None:
                _finish_step(tx, run, row, S.FAILED, error_type="Interrupted", error_message=give_up)
            else:
                row.status = S.PENDING
                tx.db.flush()
                publish_step(tx, row, "workflow_step_interrupted", times=n)
            back.append(row.step_id)
        if run.status is R.PAUSED:
            run.status = R.RUNNING
            tx.db.flush()
            publish_run(tx, run, "workflow_run_resumed")
        return back
