"""Every change a run goes through, each one transaction: advance, claim, complete, fail, recover.

These are what make a run durable and shareable between processes. The run row is locked first, then
its step rows, in every function, so two processes (or two workers) moving the same run serialise on it:

- `advance` reads the run and decides what comes next: decided approvals are applied, skipped branches
  and failed upstreams propagate, fail-fast stops the run, and the steps whose dependencies are done are
  returned as ready. When every step is done the run is finished here (output, totals, statistics).
- `claim` moves one ready step to `running` under a lease (owner, pid, host, expiry) — or, for an
  approval gate, creates the approval item and parks the step. A step already claimed is never claimed
  again, which is what keeps a step from running twice.
- `complete` / `fail` record an attempt's outcome; only the lease owner may, so a step taken over by
  `recover` after its owner died cannot be recorded twice.
- `recover` hands back the steps whose owner is gone (a dead pid on this host, or an expired lease).
"""

from __future__ import annotations

import datetime as dt
import os
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.proc import pid_alive
from cmdc_nb._plumbing.service import fetch, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace
from cmdc_nb.errors import InvalidStateError, NotFoundError, WorkflowError
from cmdc_nb.services import approvals
from cmdc_nb.store.enums import (
    ActivityAction,
    ApprovalSourceType,
    ApprovalStatus,
    ApprovalType,
    StepType,
    WorkflowRunStatus,
    WorkflowStepStatus,
)
from cmdc_nb.store.models import ApprovalItem, Workflow, WorkflowRun, WorkflowStep
from cmdc_nb.store.values import utcnow
from cmdc_nb.workflows.records import RUN_TERMINAL, STEP_TERMINAL, publish_run, publish_step, spec_of
from cmdc_nb.workflows.spec import StepSpec, WorkflowSpec
from cmdc_nb.workflows.templates import render

__all__ = [
    "HOST",
    "LEASE_SECONDS",
    "OWNER",
    "Claim",
    "Progress",
    "advance",
    "claim",
    "complete",
    "fail",
    "heartbeat",
    "recover",
    "retrying",
]

HOST = socket.gethostname()
OWNER = f"{HOST}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
LEASE_SECONDS = 60.0
MAX_INTERRUPTIONS = (
    3  # a step whose runs keep dying (a crash it causes itself) is failed, not retried forever
)
S = WorkflowStepStatus
R = WorkflowRunStatus

# Steps this process is executing right now ((run id, step id) → True); a lease of ours that is not
# here was left by a driver that is gone (an interrupted cell), so it may be recovered at once.
local_steps: set[tuple[uuid.UUID, str]] = set()
local_lock = threading.Lock()


@dataclass(frozen=True)
class Progress:
    status: WorkflowRunStatus
    ready: tuple[str, ...] = ()
    terminal: bool = False


@dataclass
class Claim:
    """A step this process owns until it records the outcome."""

    run_id: uuid.UUID
    row_id: uuid.UUID
    spec: StepSpec
    config: dict[str, Any]
    attempt: int
    max_attempts: int
    idempotency_key: str
    resumed: bool
    input: dict[str, Any]
    outputs: dict[str, Any]
    user_id: uuid.UUID
    session_id: uuid.UUID | None
    workflow_name: str
    owner: str = OWNER
    cancel_reason: str | None = field(default=None)


_specs: dict[uuid.UUID, WorkflowSpec] = {}
_specs_lock = threading.Lock()


def run_spec(run: WorkflowRun) -> WorkflowSpec:
    """The spec a run started with (its snapshot), parsed once per process."""
    with _specs_lock:
        spec = _specs.get(run.id)
    if spec is None:
        spec = spec_of(run.workflow_snapshot)
        with _specs_lock:
            if len(_specs) > 512:
                _specs.clear()
            _specs[run.id] = spec
    return spec


def _lock_run(tx: Tx, run_id: uuid.UUID, *, light: bool = False) -> WorkflowRun:
    """The run row, locked. `light` leaves its spec snapshot unread (read on first use): the step
    transitions need it only once per process (`run_spec` caches it), and for a big DAG it is the
    largest column of the row — decoding it on every claim cost more than the claim."""
    if not light:
        return fetch(tx.db, WorkflowRun, run_id, "workflow_run", lock=True)
    run = tx.db.scalar(
        sa.select(WorkflowRun)
        .where(WorkflowRun.id == run_id)
        .options(orm.defer(WorkflowRun.workflow_snapshot))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if run is None:
        raise NotFoundError("workflow_run", run_id)
    return run


def _step_rows(tx: Tx, run_id: uuid.UUID) -> list[WorkflowStep]:
    return list(
        tx.db.scalars(
            sa.select(WorkflowStep)
            .where(WorkflowStep.workflow_run_id == run_id)
            .order_by(WorkflowStep.sequence)
            .with_for_update()
            .execution_options(populate_existing=True)
        )
    )


# What `advance` reads of every step is its id and status; the rest comes from the run's cached spec.
# Loading whole rows (and locking them) for every claim and advance made a run quadratic in its
# steps — 68 ms a step at 500 steps. Writers lock the run row first, so reading the states needs no
# row locks of its own; a row is loaded (and locked) only when it is about to change.
def _step_states(tx: Tx, run_id: uuid.UUID) -> dict[str, WorkflowStepStatus]:
    rows = tx.db.execute(
        sa.select(WorkflowStep.step_id, WorkflowStep.status)
        .where(WorkflowStep.workflow_run_id == run_id)
        .order_by(WorkflowStep.sequence)
    )
    return {r.step_id: r.status for r in rows}


def _step_row(tx: Tx, run_id: uuid.UUID, step_id: str) -> WorkflowStep:
    return tx.db.execute(
        sa.select(WorkflowStep)
        .where(WorkflowStep.workflow_run_id == run_id, WorkflowStep.step_id == step_id)
        .with_for_update()
        .execution_options(populate_existing=True)
    ).scalar_one()


def _outputs_of(tx: Tx, run_id: uuid.UUID, step_ids: frozenset[str]) -> dict[str, tuple[Any, str]]:
    """(output, status) of the finished steps among `step_ids`."""
    if not step_ids:
        return {}
    rows = tx.db.execute(
        sa.select(WorkflowStep.step_id, WorkflowStep.output, WorkflowStep.status).where(
            WorkflowStep.workflow_run_id == run_id,
            WorkflowStep.step_id.in_(sorted(step_ids)),
            WorkflowStep.status.in_(list(STEP_TERMINAL)),
        )
    )
    return {r.step_id: (r.output, r.status.value) for r in rows}


def _context(run: WorkflowRun, rows: list[WorkflowStep]) -> dict[str, Any]:
    return {
        "input": dict(run.input or {}),
        "steps": {
            r.step_id: {"output": r.output, "status": r.status.value}
            for r in rows
            if r.status in STEP_TERMINAL
        },
        "run": {"id": str(run.id), "workflow_id": str(run.workflow_id)},
    }


def _finish_step(
    tx: Tx,
    run: WorkflowRun,
    row: WorkflowStep,
    status: WorkflowStepStatus,
    *,
    output: Any = None,
    error_type: str | None = None,
    error_message: str | None = None,
    event: str | None = None,
) -> None:
    now = utcnow()
    row.status = status
    row.completed_at = now
    if row.started_at is not None:
        row.duration_ms = int((now - row.started_at).total_seconds() * 1000)
    if output is not None:
        row.output = output
    row.error_type, row.error_message = error_type, error_message
    row.meta = {k: x for k, x in row.meta.items() if k != "lease"}
    if status is S.COMPLETED:
        run.completed_step_ids = [*run.completed_step_ids, row.step_id]
    elif status in (S.FAILED, S.TIMEOUT) and run.failed_step_id is None:
        run.failed_step_id = row.step_id
    tx.db.flush()
    publish_step(tx, row, event or f"workflow_step_{status.value}")


def _branch_excluded(
    tx: Tx, run_id: uuid.UUID, dep: StepSpec, status: WorkflowStepStatus, step_id: str
) -> bool:
    """Whether a completed condition `dep` sends the flow away from `step_id`."""
    if dep.type is not StepType.CONDITION or status is not S.COMPLETED:
        return False
    output, config = tx.db.execute(
        sa.select(WorkflowStep.output, WorkflowStep.step_config).where(
            WorkflowStep.workflow_run_id == run_id, WorkflowStep.step_id == dep.id
        )
    ).one()
    not_taken = (config or {}).get("else" if output else "then") or []
    if isinstance(not_taken, str):
        not_taken = [not_taken]
    return step_id in not_taken


def advance(ws: Workspace, run_id: uuid.UUID) -> Progress:
    """Apply what happened since the last look, and say which steps may start now."""
    with ws.transaction() as tx:
        run = _lock_run(tx, run_id, light=True)
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

        failed = [sid for sid, st in status.items() if st in (S.FAILED, S.TIMEOUT)]
        if failed and spec.failure_policy == "fail_fast":
            for sid, st in status.items():
                if st in (S.PENDING, S.WAITING_APPROVAL):
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
        running = any(st is S.RUNNING for st in status.values())
        waiting = any(st is S.WAITING_APPROVAL for st in status.values())
        target = R.RUNNING if (running or ready or not waiting) else R.WAITING_APPROVAL
        _set_run_status(tx, run, target)
        return Progress(target, tuple(ready), False)


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
        w = fetch(tx.db, Workflow, run.workflow_id, "workflow", lock=True)
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


def claim(ws: Workspace, run_id: uuid.UUID, step_id: str, *, owner: str = OWNER) -> Claim | None:
    """Take a ready step for this process; None if someone else has it, it must wait for approval,
    or the run is paused or over."""
    with ws.transaction() as tx:
        run = _lock_run(tx, run_id, light=True)
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


def _owned(row: WorkflowStep, c: Claim) -> bool:
    return row.status is S.RUNNING and (row.meta.get("lease") or {}).get("owner") == c.owner


def complete(
    ws: Workspace,
    c: Claim,
    output: Any,
    *,
    tokens_in: int = 0,
    tokens_out: int = 0,
    cost_usd: Decimal | None = None,
    agent_call_id: uuid.UUID | None = None,
    meta: Mapping[str, Any] | None = None,
) -> bool:
    """Record a successful attempt. False (and nothing written) if this process no longer owns it.

    Inside a transactional step's transaction this joins it, so the step's own writes and its outcome
    commit together; when the lease was lost, it raises so those writes roll back too."""
    with ws.transaction() as tx:
        run = _lock_run(tx, c.run_id, light=True)
        row = fetch(tx.db, WorkflowStep, c.row_id, "workflow_step", lock=True)
        if not _owned(row, c):
            if c.spec.transactional:
                raise WorkflowError(
                    f"step {c.spec.id!r} is no longer ours; its writes are rolled back",
                    step_id=c.spec.id,
                    error_type="LeaseLost",
                )
            return False
        row.tokens_in, row.tokens_out, row.cost_usd = tokens_in, tokens_out, cost_usd
        row.agent_call_id = agent_call_id
        if meta:
            row.meta = {**row.meta, **jsonable(dict(meta))}
        run.total_tokens_in += tokens_in
        run.total_tokens_out += tokens_out
        run.total_cost_usd += cost_usd or Decimal(0)
        _finish_step(tx, run, row, S.COMPLETED, output=output)
        return True


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
            if row.status is not S.RUNNING:
                continue
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
            if row.status in (S.PENDING, S.WAITING_APPROVAL):
                _cancel_waiting(tx, row, f"the run was cancelled: {why}")
                _finish_step(tx, run, row, S.CANCELLED, error_type="Cancelled", error_message=why)
        run.error_type = "Cancelled"
        end(tx, run, R.CANCELLED, reason=why)
        return run
