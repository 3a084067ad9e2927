"""The run's and its steps' rows as every transition reads them: locked in one order (the run first, then
its steps), their statuses and outputs, the template context, and this process's identity for leases."""

from __future__ import annotations

import os
import socket
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb._plumbing.service import fetch
from cmdc_nb._plumbing.workspace import Tx
from cmdc_nb.errors import NotFoundError
from cmdc_nb.store.enums import StepType, WorkflowRunStatus, WorkflowStepStatus
from cmdc_nb.store.models import WorkflowRun, WorkflowStep
from cmdc_nb.store.values import utcnow
from cmdc_nb.workflows.records import STEP_TERMINAL, keep_spec, known_spec, publish_step, spec_of
from cmdc_nb.workflows.spec import StepSpec, WorkflowSpec

__all__ = [
    "HOST",
    "LEASE_SECONDS",
    "OWNER",
    "Claim",
    "Progress",
    "cached_spec",
    "finished",
    "finished_lock",
    "forget",
    "local_lock",
    "local_steps",
    "run_spec",
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
    workflow_id: uuid.UUID | None = None
    owner: str = OWNER
    cancel_reason: str | None = field(default=None)
    # Set (from the writing thread) just before the outcome is written: a heartbeat that then finds
    # the step no longer running is seeing that write, not a reason to stop the task — which may by
    # then be running the dependant the write claimed.
    recording: bool = field(default=False)


@dataclass(frozen=True)
class Progress:
    status: WorkflowRunStatus
    ready: tuple[str, ...] = ()
    terminal: bool = False
    claims: tuple[Claim, ...] = ()  # ready steps claimed for the caller (`hot.claim_ready`)
    again: bool = False  # the claims moved the run on (a gate opened, a step failed): look again


# A finished step's output and status never change (a retry is a new run), so once read or written
# they are kept, per run, while it runs: the claims of its later steps build their template context
# from here instead of reading their ancestors' outputs again (see `hot`).
finished: dict[uuid.UUID, dict[str, tuple[Any, str]]] = {}
finished_lock = threading.Lock()


def forget(run_id: uuid.UUID) -> None:
    """Drop what this process keeps of a run (it ended)."""
    with finished_lock:
        finished.pop(run_id, None)


def run_spec(run: WorkflowRun) -> WorkflowSpec:
    """The spec a run started with (its snapshot), parsed once per process."""
    spec = known_spec(run.id)
    if spec is None:
        spec = spec_of(run.workflow_snapshot)
        keep_spec(run.id, spec)
    return spec


def cached_spec(conn: sa.Connection, run_id: uuid.UUID) -> WorkflowSpec:
    """The spec a run started with, from `run_spec`'s cache, or its snapshot read once (Core)."""
    spec = known_spec(run_id)
    if spec is not None:
        return spec
    snapshot = conn.scalar(sa.select(WorkflowRun.workflow_snapshot).where(WorkflowRun.id == run_id))
    if snapshot is None:
        raise NotFoundError("workflow_run", run_id)
    spec = spec_of(snapshot)
    keep_spec(run_id, spec)
    return spec


def _lock_run(tx: Tx, run_id: uuid.UUID, *, light: bool = False) -> WorkflowRun:
    """The run row, locked. `light` leaves its spec snapshot unread (read on first use): the step
    transitions need it only once per process (`run_spec` caches it), and for a big DAG it is the
    largest column of the row — decoding it on every claim cost more than the claim."""
    if not light:
        full = fetch(tx.db, WorkflowRun, run_id, "workflow_run", lock=True)
        _catch_up_completed(tx, full)
        return full
    run = tx.db.scalar(
        sa.select(WorkflowRun)
        .where(WorkflowRun.id == run_id)
        .options(orm.defer(WorkflowRun.workflow_snapshot))
        .with_for_update()
        .execution_options(populate_existing=True)
    )
    if run is None:
        raise NotFoundError("workflow_run", run_id)
    _catch_up_completed(tx, run)
    return run


def _catch_up_completed(tx: Tx, run: WorkflowRun) -> None:
    """Append to `completed_step_ids` the steps the hot path completed since it was last written.

    The hot path leaves the run row alone: on SQLite a row whose size changes is rewritten whole, and
    the run's row holds its spec, so appending there at every step cost a run time quadratic in its
    size. Every other transition locks the run through here, so the list is whole whenever a driver
    looks, an event about the run is published, and when the run ends; in completion order."""
    done = tx.db.scalars(
        sa.select(WorkflowStep.step_id)
        .where(WorkflowStep.workflow_run_id == run.id, WorkflowStep.status == S.COMPLETED)
        .order_by(WorkflowStep.completed_at, WorkflowStep.sequence)
    ).all()
    if len(done) != len(run.completed_step_ids):
        listed = set(run.completed_step_ids)
        missing = [sid for sid in done if sid not in listed]
        if missing:
            run.completed_step_ids = [*run.completed_step_ids, *missing]


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
# Loading whole rows (and locking them) for every claim and advance would make a run quadratic in
# its steps. Writers lock the run row first, so reading the states needs no
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
