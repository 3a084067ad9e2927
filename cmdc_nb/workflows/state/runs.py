"""Moving a run: `advance` (apply decided gates, propagate skips and failures, fail fast, return the ready
steps, finish the run when every step is done), ending, pausing and cancelling it."""

from __future__ import annotations

import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.service import fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace
from cmdc_nb.errors import InvalidStateError, WorkflowError
from cmdc_nb.services import approvals
from cmdc_nb.store.enums import (
    ActivityAction,
    ApprovalStatus,
    StepType,
    TriggerType,
    WorkflowRunStatus,
    WorkflowStepStatus,
)
from cmdc_nb.store.models import ApprovalItem, Workflow, WorkflowRun, WorkflowStep
from cmdc_nb.store.values import utcnow
from cmdc_nb.workflows.records import RUN_TERMINAL, STEP_TERMINAL, insert_run, publish_run, publish_step
from cmdc_nb.workflows.spec import WorkflowSpec
from cmdc_nb.workflows.state.rows import (
    Progress,
    R,
    S,
    _branch_excluded,
    _context,
    _finish_step,
    _lock_run,
    _step_row,
    _step_rows,
    _step_states,
    forget,
    run_spec,
)
from cmdc_nb.workflows.templates import render

__all__ = ["advance", "advance_in", "create_retry", "set_cancelled", "set_paused"]


def advance(ws: Workspace, run_id: uuid.UUID) -> Progress:
    """Apply what happened since the last look, and say which steps may start now."""
    with ws.transaction() as tx:
        return advance_in(tx, run_id)[1]


def advance_in(tx: Tx, run_id: uuid.UUID) -> tuple[WorkflowRun, Progress]:
    """`advance` inside `tx`; also returns the run row it locked."""
    run = _lock_run(tx, run_id, light=True)
    progress = _advance_run(tx, run)
    if progress.terminal:
        forget(run_id)
    return run, progress


def _advance_run(tx: Tx, run: WorkflowRun) -> Progress:
    """Long because it is one decision over the whole run: gates, fail-fast, readiness with joins and
    branches, and the run's status, each reading what the one before changed."""
    run_id = run.id
    if run.status in RUN_TERMINAL:
        return Progress(run.status, (), True)
    spec = run_spec(run)
    status = _step_states(tx, run_id)

    for sid, st in list(status.items()):
        if st is S.WAITING_APPROVAL:
            row = _step_row(tx, run_id, sid)
            if row.approval_id is not None:
                _apply_decision(tx, run, row)
                status[sid] = row.status
        elif _by_hand(spec, sid, st) and (limit := spec.step(sid).timeout) is not None:
            status[sid] = _expire_input(tx, run, _step_row(tx, run_id, sid), limit)

    failed = [sid for sid, st in status.items() if st in (S.FAILED, S.TIMEOUT)]
    if failed and spec.failure_policy == "fail_fast":
        for sid, st in status.items():
            if st in (S.PENDING, S.WAITING_APPROVAL, S.WAITING_INPUT) or _by_hand(spec, sid, st):
                row = _step_row(tx, run_id, sid)
                _cancel_waiting(tx, row, f"the run stopped: step {failed[0]!r} failed")
                _finish_step(
                    tx,
                    run,
                    row,
                    S.CANCELLED,
                    error_type="RunFailed",
                    error_message=f"not run: step {failed[0]!r} failed",
                )
        _finalize(tx, run, spec, _step_rows(tx, run_id))
        return Progress(run.status, (), True)

    ready: list[str] = []
    for sid in list(status):
        if status[sid] is not S.PENDING:
            continue
        step = spec.step(sid)
        deps = [spec.step(d) for d in step.depends_on]
        if any(status[d.id] not in STEP_TERMINAL for d in deps):
            continue
        excluded = next((d for d in deps if _branch_excluded(tx, run_id, d, status[d.id], sid)), None)
        if excluded is not None:
            _finish_step(
                tx,
                run,
                _step_row(tx, run_id, sid),
                S.SKIPPED,
                error_type="BranchNotTaken",
                error_message=f"branch not taken at {excluded.id!r}",
            )
            status[sid] = S.SKIPPED
            continue
        done = [d for d in deps if status[d.id] is S.COMPLETED]
        runs = len(done) == len(deps) if step.join == "all" else bool(done or not deps)
        if runs:
            ready.append(sid)
        else:
            bad = next(d for d in deps if status[d.id] is not S.COMPLETED)
            _finish_step(
                tx,
                run,
                _step_row(tx, run_id, sid),
                S.SKIPPED,
                error_type="UpstreamNotCompleted",
                error_message=f"upstream step {bad.id!r} is {status[bad.id].value}",
            )
            status[sid] = S.SKIPPED

    if all(st in STEP_TERMINAL for st in status.values()):
        _finalize(tx, run, spec, _step_rows(tx, run_id))
        return Progress(run.status, (), True)
    if run.status is R.PAUSED:
        return Progress(R.PAUSED, (), False)
    running = any(st is S.RUNNING and not _by_hand(spec, sid, st) for sid, st in status.items())
    gates = any(st is S.WAITING_APPROVAL for st in status.values())
    by_hand = any(_by_hand(spec, sid, st) for sid, st in status.items())
    target = R.RUNNING
    if not (running or ready) and (gates or by_hand):
        target = R.WAITING_APPROVAL if gates else R.WAITING_INPUT
    _set_run_status(tx, run, target)
    return Progress(target, tuple(ready), False)


def _by_hand(spec: WorkflowSpec, sid: str, st: WorkflowStepStatus) -> bool:
    """An external step that is someone's turn (waiting, or started by them): no process runs it."""
    return st in (S.WAITING_INPUT, S.RUNNING) and spec.step(sid).type is StepType.EXTERNAL


def _expire_input(tx: Tx, run: WorkflowRun, row: WorkflowStep, timeout: float) -> WorkflowStepStatus:
    """End an external step not completed within its `timeout` (from when it became someone's turn)."""
    since = row.started_at
    if since is None or (utcnow() - since).total_seconds() < timeout:
        return row.status
    _finish_step(
        tx, run, row, S.TIMEOUT, error_type="Timeout", error_message=f"no input within {timeout:g} s"
    )
    return row.status


def _set_run_status(tx: Tx, run: WorkflowRun, target: WorkflowRunStatus) -> None:
    if run.status is target:
        return
    before = run.status
    run.status = target
    if target is R.RUNNING and run.started_at is None:
        run.started_at = utcnow()
    tx.db.flush()
    if before is R.PENDING and target is R.RUNNING:
        publish_run(tx, run, "workflow_run_started")
    else:
        publish_run(tx, run, f"workflow_run_{target.value}", previous=before.value)


def _cancel_waiting(tx: Tx, row: WorkflowStep, why: str) -> None:
    if row.status is S.WAITING_APPROVAL and row.approval_id is not None:
        item = tx.db.get(ApprovalItem, row.approval_id, with_for_update=True)
        if item is not None and item.status is ApprovalStatus.PENDING:
            approvals.decide_in(tx, item, ApprovalStatus.DENIED, note=why, reason="workflow run stopped")


def _apply_decision(tx: Tx, run: WorkflowRun, row: WorkflowStep) -> None:
    item = tx.db.get(ApprovalItem, row.approval_id, populate_existing=True)
    if item is None or item.status is ApprovalStatus.PENDING:
        return
    approved = item.status in (ApprovalStatus.APPROVED, ApprovalStatus.AUTO_APPROVED)
    decision = {
        "approved": approved,
        "status": item.status.value,
        "decided_by": str(item.decided_by_id) if item.decided_by_id else None,
        "note": item.decision_note or item.auto_approval_reason,
        "payload": item.modified_payload if item.modified_payload is not None else item.payload,
    }
    if approved and row.step_type is StepType.APPROVAL:
        _finish_step(tx, run, row, S.COMPLETED, output=jsonable(decision))
    elif approved:
        row.status = S.PENDING
        row.meta = {**row.meta, "approved": True, "decision": jsonable(decision)}
        tx.db.flush()
        publish_step(tx, row, "workflow_step_approved")
    elif (row.step_config.get("on_deny") or "fail") == "skip":
        _finish_step(
            tx,
            run,
            row,
            S.SKIPPED,
            output=jsonable(decision),
            error_type="ApprovalDenied",
            error_message=f"{item.status.value}: {decision['note'] or 'no note'}",
        )
    else:
        _finish_step(
            tx,
            run,
            row,
            S.FAILED,
            output=jsonable(decision),
            error_type="ApprovalDenied" if item.status is ApprovalStatus.DENIED else "ApprovalExpired",
            error_message=f"{item.status.value}: {decision['note'] or 'no note'}",
        )


def _finalize(tx: Tx, run: WorkflowRun, spec: WorkflowSpec, rows: list[WorkflowStep]) -> None:
    failed = [r for r in rows if r.status in (S.FAILED, S.TIMEOUT)]
    target = R.FAILED if failed else R.COMPLETED
    if target is R.COMPLETED:
        try:
            run.output = _run_output(run, spec, rows)
        except WorkflowError as exc:
            target = R.FAILED
            run.error_type, run.error_message = "OutputError", str(exc)
    else:
        first = failed[0]
        run.failed_step_id = run.failed_step_id or first.step_id
        run.error_step_id = first.step_id
        run.error_type = first.error_type or "StepFailed"
        run.error_message = first.error_message
    end(tx, run, target)


def end(tx: Tx, run: WorkflowRun, target: WorkflowRunStatus, *, reason: str | None = None) -> None:
    """Finish a run (completed, failed or cancelled): times, statistics, audit entry, event."""
    now = utcnow()
    run.status = target
    run.completed_at = now
    run.current_step_id = None
    run.duration_ms = int((now - (run.started_at or run.inserted_at)).total_seconds() * 1000)
    if reason:
        run.error_message = run.error_message or reason
    tx.db.flush()
    if target in (R.COMPLETED, R.FAILED, R.TIMEOUT):
        # FOR NO KEY UPDATE: finishing runs of one workflow hold the KEY SHARE lock their runs' foreign
        # key takes on its row, and FOR UPDATE would wait on each other's (a deadlock).
        w = fetch(tx.db, Workflow, run.workflow_id, "workflow", lock="no_key")
        n = w.success_count + w.failure_count + 1
        w.avg_duration_ms = int(((w.avg_duration_ms or 0) * (n - 1) + run.duration_ms) / n)
        w.avg_cost_usd = ((w.avg_cost_usd or Decimal(0)) * (n - 1) + run.total_cost_usd) / n
        if target is R.COMPLETED:
            w.success_count += 1
        else:
            w.failure_count += 1
    action = (
        ActivityAction.WORKFLOW_RUN_COMPLETE if target is R.COMPLETED else ActivityAction.WORKFLOW_RUN_FAIL
    )
    log_activity(
        tx,
        action,
        resource_type="workflow_run",
        resource_id=run.id,
        user_id=run.user_id,
        details={
            "status": target.value,
            "failed_step_id": run.failed_step_id,
            "duration_ms": run.duration_ms,
        },
    )
    publish_run(tx, run, f"workflow_run_{target.value}", error_message=run.error_message)


def _run_output(run: WorkflowRun, spec: WorkflowSpec, rows: list[WorkflowStep]) -> Any:
    if spec.output is not None:
        return jsonable(render(spec.output, _context(run, rows), step_id="(output)", field="output"))
    has_dependants = {d for r in rows for d in r.depends_on}
    sinks = {r.step_id: r.output for r in rows if r.status is S.COMPLETED and r.step_id not in has_dependants}
    return jsonable(sinks)


def set_paused(ws: Workspace, run_id: uuid.UUID) -> WorkflowRun:
    with ws.transaction() as tx:
        run = _lock_run(tx, run_id)
        if run.status in RUN_TERMINAL or run.status is R.PAUSED:
            raise InvalidStateError(
                "workflow_run",
                run.status.value,
                R.PAUSED.value,
                allowed=[] if run.status in RUN_TERMINAL else ["running"],
            )
        run.status = R.PAUSED
        tx.db.flush()
        publish_run(tx, run, "workflow_run_paused")
        return run


def set_cancelled(ws: Workspace, run_id: uuid.UUID, reason: str | None) -> WorkflowRun:
    with ws.transaction() as tx:
        run = _lock_run(tx, run_id)
        if run.status in RUN_TERMINAL:
            raise InvalidStateError("workflow_run", run.status.value, R.CANCELLED.value, allowed=[])
        why = reason or "cancelled"
        for row in _step_rows(tx, run_id):
            if row.status in (S.PENDING, S.WAITING_APPROVAL, S.WAITING_INPUT) or (
                row.status is S.RUNNING and row.step_type is StepType.EXTERNAL
            ):
                _cancel_waiting(tx, row, f"the run was cancelled: {why}")
                _finish_step(tx, run, row, S.CANCELLED, error_type="Cancelled", error_message=why)
        run.error_type = "Cancelled"
        end(tx, run, R.CANCELLED, reason=why)
        return run


def create_retry(ws: Workspace, old_id: uuid.UUID) -> uuid.UUID:
    """A new run of a failed, cancelled or timed-out run, its completed steps carried over as completed
    (their outputs and idempotency keys kept), the rest to run again; one transaction."""
    with ws.transaction() as tx:
        old = fetch(tx.db, WorkflowRun, old_id, "workflow_run", lock=True)
        if old.status not in (R.FAILED, R.CANCELLED, R.TIMEOUT):
            raise InvalidStateError("workflow_run", old.status.value, "retried", allowed=[])
        wf = fetch(tx.db, Workflow, old.workflow_id, "workflow", lock=True)
        spec = run_spec(old)
        new = insert_run(
            tx,
            wf,
            spec,
            old.user_id,
            dict(old.input or {}),
            trigger_type=TriggerType.RETRY,
            trigger_metadata={"retry_of": str(old.id)},
            session_id=old.session_id,
            retry_of=old,
        )
        done = {
            r.step_id: r
            for r in tx.db.scalars(sa.select(WorkflowStep).where(WorkflowStep.workflow_run_id == old.id))
            if r.status is S.COMPLETED
        }
        carried: list[str] = []
        for row in tx.db.scalars(sa.select(WorkflowStep).where(WorkflowStep.workflow_run_id == new.id)):
            prev = done.get(row.step_id)
            if prev is None:
                continue
            row.status = S.COMPLETED
            row.input, row.output = prev.input, prev.output
            row.started_at, row.completed_at, row.duration_ms = prev.started_at, prev.completed_at, 0
            row.idempotency_key = prev.idempotency_key
            row.meta = {"carried_from": str(prev.id)}
            carried.append(row.step_id)
            publish_step(tx, row, "workflow_step_carried_over")
        new.completed_step_ids = [sid for sid in spec.order() if sid in carried]
        return new.id
