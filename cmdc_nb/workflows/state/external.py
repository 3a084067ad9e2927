"""Hand-driven (external) steps: taken up, completed or failed by a person or an outside system.

No process owns such a step, so there is no lease to check: the run row's lock orders these against
every other transition, and the step's status says whose turn it is. Each is one transaction that
also advances the run (so a completion unblocks its dependants, and the last one finishes the run),
and then tells any driver of the run to look again at once — in this process through the bus, in
another through the shared events or its next poll.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from cmdc_nb._plumbing.workspace import Tx, Workspace
from cmdc_nb.errors import InvalidInputError, InvalidStateError, NotFoundError
from cmdc_nb.store.enums import StepType, WorkflowStepStatus
from cmdc_nb.store.models import WorkflowRun, WorkflowStep
from cmdc_nb.store.values import utcnow
from cmdc_nb.workflows.records import RUN_TERMINAL, publish_run, publish_step
from cmdc_nb.workflows.state.rows import R, S, _finish_step, _lock_run, _step_row, run_spec
from cmdc_nb.workflows.state.runs import advance_in
from cmdc_nb.workflows.state.steps import claim_in

__all__ = ["finish", "start"]


def _turn(tx: Tx, run: WorkflowRun, step_id: str, doing: str) -> WorkflowStep:
    """The external step `step_id`, parked for input if it is ready and nobody has looked yet (a run
    that no driver is driving: the seed's own way of working)."""
    if run.status in RUN_TERMINAL:
        raise InvalidStateError("workflow_run", run.status.value, doing, allowed=[])
    spec = run_spec(run)
    try:
        step = spec.step(step_id)
    except KeyError:
        raise NotFoundError("workflow_step", f"{run.id}/{step_id}") from None
    if step.type is not StepType.EXTERNAL:
        raise InvalidInputError(
            f"step {step_id!r} is a {step.type.value} step, which the engine runs; only external "
            "steps are started and completed by hand",
            field="step_id",
        )
    row = _step_row(tx, run.id, step_id)
    if row.status in (S.PENDING, S.WAITING_APPROVAL):  # not looked at since it became ready, or approved
        _, progress = advance_in(tx, run.id)
        if step_id in progress.ready:
            claim_in(tx, run, step_id)
        row = _step_row(tx, run.id, step_id)
    return row


def _refuse(row: WorkflowStep, doing: str, allowed: list[str]) -> InvalidStateError:
    err = InvalidStateError("workflow_step", row.status.value, doing, allowed=allowed)
    why = {
        S.PENDING: "its dependencies are not done yet (or the run is paused)",
        S.WAITING_APPROVAL: "it waits for its approval first",
        S.RUNNING: "someone has already taken it up",
    }.get(row.status)
    if why is not None:
        err.args = (f"step {row.step_id!r}: {err}; {why}",)
    return err


def _announce(tx: Tx, run: WorkflowRun, row: WorkflowStep) -> None:
    """Tell the run's drivers (they listen on the run's topic) to look now."""
    publish_run(tx, run, "workflow_run_step_input", step_id=row.step_id, step_status=row.status.value)


def start(ws: Workspace, run_id: uuid.UUID, step_id: str, *, by: uuid.UUID | None) -> WorkflowStep:
    """`waiting_input` → `running`: someone has taken the step up."""
    with ws.transaction() as tx:
        run = _lock_run(tx, run_id)  # whole: through `fetch`, which checks who may change it
        row = _turn(tx, run, step_id, S.RUNNING.value)
        if row.status is not S.WAITING_INPUT:
            raise _refuse(row, S.RUNNING.value, [S.WAITING_INPUT.value])
        now = utcnow()
        row.status = S.RUNNING
        row.meta = {
            **row.meta,
            "started_by": str(by) if by else None,
            "taken_up_at": now.isoformat(),
        }
        run.current_step_id = step_id
        tx.db.flush()
        publish_step(tx, row, "workflow_step_started", by=str(by) if by else None, external=True)
        advance_in(tx, run_id)  # the run may go from waiting_input to running
        return row


def finish(
    ws: Workspace,
    run_id: uuid.UUID,
    step_id: str,
    status: WorkflowStepStatus,
    *,
    output: Any = None,
    error: str | None = None,
    by: uuid.UUID | None,
    check: Any = None,
) -> WorkflowStep:
    """`waiting_input` / `running` → `completed` (with `output`) or `failed` (with `error`), and the
    run advanced in the same transaction: dependants parked or made ready, the run finished if this
    was its last step. `check(output, config)` validates the output against the step's rendered
    config before anything is written."""
    with ws.transaction() as tx:
        run = _lock_run(tx, run_id)  # whole: through `fetch`, which checks who may change it
        row = _turn(tx, run, step_id, status.value)
        if row.status not in (S.WAITING_INPUT, S.RUNNING):
            raise _refuse(row, status.value, [S.WAITING_INPUT.value, S.RUNNING.value])
        if check is not None:
            check(output, row.input if isinstance(row.input, Mapping) else {})
        who = "completed_by" if status is S.COMPLETED else "failed_by"
        row.meta = {**row.meta, who: str(by) if by else None}
        if status is S.COMPLETED:
            _finish_step(tx, run, row, S.COMPLETED, output=output, event="workflow_step_completed")
        else:
            _finish_step(
                tx, run, row, S.FAILED, error_type="ExternalFailure", error_message=(error or "failed")[:4000]
            )
        _, progress = advance_in(tx, run_id)
        if not progress.terminal and run.status is not R.PAUSED:
            # external steps this one unblocked are someone's turn at once, driver or not
            spec = run_spec(run)
            hand = [sid for sid in progress.ready if spec.step(sid).type is StepType.EXTERNAL]
            for sid in hand:
                claim_in(tx, run, sid)
            if hand:
                advance_in(tx, run_id)  # the run's status follows the steps just parked
        _announce(tx, run, row)
        return row
