"""The hot path of a run, in SQLAlchemy Core: a step's outcome recorded and the run advanced in one
transaction, and several ready steps claimed in one statement.

`complete` records a successful attempt (by the lease owner only), and in the same transaction takes
the dependants it unblocked — those whose dependencies all completed, none of them a condition, that
are no approval gate — under a lease for the caller, up to `claim` of them. The caller runs them next
without going back through a poll; a worker queues the rest. Whatever needs judgement (a gate, a
branch, a skipped or failed upstream, fail-fast, the run's end) is left to `advance`, which the caller
is told to run (`Next.advance`). `claim_ready` is `advance` followed by claiming the ready steps it
found, one transaction: what a driver does when it starts or when a chain of steps ends.

Nothing is re-read that the engine knows: the run's input and spec are in the claim, the outputs of
finished steps (which never change once finished) are kept per run in this process, and the step row
is read once, locked, with the dependants it may unblock. The run row is locked first, as everywhere.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql

from cmdc_nb._plumbing.service import jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace
from cmdc_nb.errors import NotFoundError, WorkflowError
from cmdc_nb.events import topics
from cmdc_nb.store.enums import StepType
from cmdc_nb.store.models import WorkflowRun, WorkflowStep
from cmdc_nb.store.prepared import Prepared
from cmdc_nb.store.values import utcnow
from cmdc_nb.workflows.records import STEP_TERMINAL
from cmdc_nb.workflows.spec import StepSpec, WorkflowSpec
from cmdc_nb.workflows.state.rows import (
    HOST,
    LEASE_SECONDS,
    OWNER,
    Claim,
    Progress,
    R,
    S,
    cached_spec,
    finished,
    finished_lock,
)
from cmdc_nb.workflows.state.runs import advance_in
from cmdc_nb.workflows.state.steps import claim_in
from cmdc_nb.workflows.templates import render

__all__ = ["Next", "claim_ready", "complete", "remember"]

RUNS: sa.Table = WorkflowRun.__table__  # type: ignore[assignment]
STEPS: sa.Table = WorkflowStep.__table__  # type: ignore[assignment]
_ROW = (
    STEPS.c.id,
    STEPS.c.step_id,
    STEPS.c.step_type,
    STEPS.c.status,
    STEPS.c.metadata.label("meta"),
    STEPS.c.attempt_number,
    STEPS.c.max_attempts,
    STEPS.c.idempotency_key,
    STEPS.c.started_at,
    STEPS.c.duration_ms,
    STEPS.c.error_type,
    STEPS.c.error_message,
    STEPS.c.approval_id,
)


# Built once: constructing a statement costs more than executing it (≈200 µs against ≈100 µs on
# SQLite); built once, SQLAlchemy also finds its compiled form without rebuilding its cache key.
_B = sa.bindparam
# PostgreSQL: the run row locked, then the step rows, in one statement: the run in a materialized CTE
# that a LATERAL subquery of the step rows reads (a nested loop, the run's row fetched and locked
# first: the order every transition keeps). The step ids are one array parameter, so it is compiled
# once and runs on the driver's cursor (`store.prepared`). The run's lock is held until the commit,
# and every step of the run waits for it: what runs under it is kept short.
_RUN_LOCKED = (
    sa.select(RUNS.c.id, RUNS.c.status, RUNS.c.failed_step_id, RUNS.c.workflow_id)
    .where(RUNS.c.id == _B("b_run"))
    .with_for_update()
    .cte("run_locked")
    .prefix_with("MATERIALIZED")
)
_STEPS_LOCKED = (
    sa.select(*_ROW)
    .where(
        STEPS.c.workflow_run_id == _RUN_LOCKED.c.id,
        STEPS.c.step_id == sa.func.any(_B("b_ids", type_=postgresql.ARRAY(sa.Text()))),
    )
    .with_for_update()
    .lateral("steps_locked")
)
_HEAD_ROWS_PG = Prepared(
    sa.select(
        _RUN_LOCKED.c.status.label("run_status"),
        _RUN_LOCKED.c.failed_step_id,
        _RUN_LOCKED.c.workflow_id,
        *(_STEPS_LOCKED.c[c.name] for c in _ROW),
    ).select_from(_RUN_LOCKED.outerjoin(_STEPS_LOCKED, sa.true()))
)
# On SQLite the transaction holds the database's one write lock from its start (BEGIN IMMEDIATE), so
# `complete` reads the run's head and the step rows in one statement; PostgreSQL locks the run row
# first and then the steps, the order every transition keeps.
# The step ids come as one JSON array (`json_each`), not an expanding IN list, so the statement is
# compiled once and runs on the driver's cursor (`store.prepared`): SQLAlchemy's expansion of an IN
# list for each execution cost a quarter of a step's transaction.
_HEAD_ROWS = Prepared(
    sa.select(RUNS.c.status.label("run_status"), RUNS.c.failed_step_id, RUNS.c.workflow_id, *_ROW)
    .select_from(
        RUNS.outerjoin(
            STEPS,
            sa.and_(
                STEPS.c.workflow_run_id == RUNS.c.id,
                STEPS.c.step_id.in_(
                    sa.select(sa.column("value")).select_from(sa.func.json_each(_B("b_ids")))
                ),
            ),
        )
    )
    .where(RUNS.c.id == _B("b_run"))
)
_OUTPUTS = sa.select(STEPS.c.step_id, STEPS.c.output, STEPS.c.status).where(
    STEPS.c.workflow_run_id == _B("b_run"),
    STEPS.c.step_id.in_(_B("b_ids", expanding=True)),
    STEPS.c.status.in_(sorted(STEP_TERMINAL)),
)
# The columns to set come from the parameters (one compiled form per set of keys); run on the driver's
# cursor (`store.prepared`): a step's two updates are its hottest statements.
_SET_STEP = Prepared(sa.update(STEPS).where(STEPS.c.id == _B("b_id")))
_READY = (
    sa.select(*_ROW)
    .where(
        STEPS.c.workflow_run_id == _B("b_run"),
        STEPS.c.step_id.in_(_B("b_ids", expanding=True)),
        STEPS.c.status == S.PENDING,
    )
    .order_by(STEPS.c.sequence)
    .with_for_update(skip_locked=True)
)
# Only a step that used tokens or cost changes the run's row: `completed_step_ids` is caught up by the
# next transition that locks the run (`rows._catch_up_completed`), not rewritten at every step.
_ADD_TOTALS = (
    sa.update(RUNS)
    .where(RUNS.c.id == _B("b_run"))
    .values(
        total_tokens_in=RUNS.c.total_tokens_in + _B("b_tin", type_=sa.BigInteger),
        total_tokens_out=RUNS.c.total_tokens_out + _B("b_tout", type_=sa.BigInteger),
        total_cost_usd=RUNS.c.total_cost_usd + _B("b_cost", type_=RUNS.c.total_cost_usd.type),
    )
)


@dataclass(frozen=True)
class Next:
    """What recording a step's outcome led to. Truthy when the outcome was recorded."""

    recorded: bool
    claims: tuple[Claim, ...] = ()  # dependants now the caller's to run
    ready: tuple[str, ...] = ()  # dependants a plain `claim` may take (no budget left, or a gate)
    advance: bool = False  # something only `advance` decides: the caller should run it

    def __bool__(self) -> bool:
        return self.recorded


@dataclass(frozen=True)
class _Run:
    id: uuid.UUID
    workflow_id: uuid.UUID
    user_id: uuid.UUID
    session_id: uuid.UUID | None
    input: dict[str, Any]
    spec: WorkflowSpec


# -- what this process knows of finished steps (`rows.finished`) ---------------------------------------
_KEEP_RUNS = 16  # runs whose outputs are kept at once (a run's are dropped when it ends)


def _known(run_id: uuid.UUID) -> dict[str, tuple[Any, str]]:
    with finished_lock:
        got = finished.get(run_id)
        if got is None:
            if len(finished) >= _KEEP_RUNS:
                finished.pop(next(iter(finished)))
            got = finished[run_id] = {}
        return got


def remember(run_id: uuid.UUID, step_id: str, output: Any, *, backend: str) -> None:
    """Keep a step's output once its completion committed (never before: a rollback would leave a
    claim's context reading an output that was not stored)."""
    value = _as_stored(output, backend)
    _known(run_id)[step_id] = (value, S.COMPLETED.value)


def _as_stored(value: Any, backend: str) -> Any:
    """`value` as reading it back would give: JSON's types, and on PostgreSQL jsonb's key order
    (shorter keys first, then bytewise), so a template renders the same text either way."""
    if value is None or isinstance(value, bool | int | str):
        return value
    back = json.loads(json.dumps(value))
    return _jsonb_order(back) if backend == "postgresql" else back


def _jsonb_order(value: Any) -> Any:
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: _jsonb_order(value[k]) for k in keys}
    if isinstance(value, list):
        return [_jsonb_order(x) for x in value]
    return value


def _outputs(
    conn: sa.Connection, run_id: uuid.UUID, wanted: Iterable[str], extra: Mapping[str, tuple[Any, str]]
) -> dict[str, tuple[Any, str]]:
    """(output, status) of the finished steps among `wanted`: from what is known, the rest read once."""
    known = _known(run_id)
    with finished_lock:
        out = {k: extra[k] if k in extra else known[k] for k in wanted if k in extra or k in known}
    missing = [k for k in wanted if k not in out]
    if missing:
        rows = conn.execute(_OUTPUTS, {"b_run": run_id, "b_ids": sorted(missing)})
        read = {r.step_id: (r.output, r.status.value) for r in rows}
        with finished_lock:
            known.update(read)
        out.update(read)
    return out


# -- taking a step ------------------------------------------------------------------------------------
def _payload(row: Any, run_id: uuid.UUID, **changes: Any) -> dict[str, Any]:
    """The step's event payload (`records.step_payload`'s shape) from a row read with `_ROW`."""
    return {
        "run_id": str(run_id),
        "step_row_id": str(row.id),
        "step_id": row.step_id,
        "step_type": row.step_type.value,
        "status": row.status.value,
        "attempt": row.attempt_number,
        "error_type": row.error_type,
        "error_message": row.error_message,
        "duration_ms": row.duration_ms,
        "approval_id": str(row.approval_id) if row.approval_id else None,
    } | changes


def _take(
    tx: Tx, run: _Run, row: Any, step: StepSpec, owner: str, known: Mapping[str, tuple[Any, str]]
) -> Claim | None:
    """Claim a pending step with no gate: render its config, lease it, announce it. None if its
    templates fail (a plain `claim` records that failure)."""
    conn = tx.connection()
    outputs = _outputs(conn, run.id, run.spec.ancestors(step.id), known)
    ctx = {
        "input": run.input,
        "steps": {k: {"output": out, "status": st} for k, (out, st) in outputs.items()},
        "run": {"id": str(run.id), "workflow_id": str(run.workflow_id)},
    }
    try:
        config = render(dict(step.config), ctx, step_id=step.id)
    except WorkflowError:
        return None
    now = utcnow()
    key = row.idempotency_key or f"{run.id}:{step.id}"
    meta = dict(row.meta or {})
    resumed = bool(meta.get("interrupted"))
    meta["lease"] = {
        "owner": owner,
        "host": HOST,
        "pid": os.getpid(),
        "expires_at": (now + dt.timedelta(seconds=LEASE_SECONDS)).isoformat(),
    }
    _SET_STEP.run(
        conn,
        {
            "b_id": row.id,
            "status": S.RUNNING,
            "started_at": row.started_at or now,
            "input": jsonable(config),
            "idempotency_key": key if step.side_effecting else row.idempotency_key,
            "metadata": meta,
        },
    )
    tx.publish(
        topics.workflow_run_steps(run.id),
        "workflow_step_started",
        _payload(row, run.id, status=S.RUNNING.value, resumed=resumed),
    )
    return Claim(
        run_id=run.id,
        row_id=row.id,
        spec=step,
        config=config,
        attempt=row.attempt_number,
        max_attempts=row.max_attempts,
        idempotency_key=key,
        resumed=resumed,
        input=dict(run.input),  # its own, as a claim read from the database gives
        outputs={k: out for k, (out, _st) in outputs.items()},
        user_id=run.user_id,
        session_id=run.session_id,
        workflow_name=run.spec.name,
        workflow_id=run.workflow_id,
        owner=owner,
    )


def _plain(spec: WorkflowSpec, step: StepSpec) -> bool:
    """A step `complete` may take without `advance`'s judgement once its dependencies completed."""
    return not any(spec.step(d).type is StepType.CONDITION for d in step.depends_on)


def _gate(step: StepSpec) -> bool:
    """A step no process runs when it becomes ready: an approval gate opens, an external step waits
    for someone (`claim_in` does either)."""
    return step.type in (StepType.APPROVAL, StepType.EXTERNAL) or step.approval_required


# -- recording an outcome ------------------------------------------------------------------------------
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
    claim: int = 0,
) -> Next:
    """Record a successful attempt and take up to `claim` of the dependants it unblocked, in one
    transaction. Not recorded (nothing written) if this process no longer owns the step.

    Inside a transactional step's transaction this joins it, so the step's own writes and its outcome
    commit together; when the lease was lost, it raises so those writes roll back too.

    Long because it is the one transaction of a step: lock, check ownership, record, find and take
    the dependants, add to the run's totals — split up, each part would need the rows the others read."""
    sid = c.spec.id
    with ws.transaction(light=True) as tx:  # Core only: no ORM session made, none committed
        conn = tx.connection()
        # the spec never changes once a run starts: read (once a process) before the lock
        spec = cached_spec(conn, c.run_id)
        after = spec._dependants.get(sid, ())
        wanted = sorted({sid, *after, *(d for a in after for d in spec.step(a).depends_on)})
        if ws.backend == "sqlite":
            joined = _HEAD_ROWS.all(conn, {"b_run": c.run_id, "b_ids": json.dumps(wanted)})
        else:
            joined = _HEAD_ROWS_PG.all(conn, {"b_run": c.run_id, "b_ids": wanted})
        if not joined:
            raise NotFoundError("workflow_run", c.run_id)
        head = (joined[0].run_status, joined[0].failed_step_id, joined[0].workflow_id)
        rows = {r.step_id: r for r in joined if r.id is not None}
        run_status, failed_step_id, workflow_id = head
        me = rows.get(sid)
        lease = (me.meta or {}).get("lease") if me is not None else None
        if me is None or me.status is not S.RUNNING or (lease or {}).get("owner") != c.owner:
            if c.spec.transactional:
                raise WorkflowError(
                    f"step {sid!r} is no longer ours; its writes are rolled back",
                    step_id=sid,
                    error_type="LeaseLost",
                )
            return Next(False)
        now = utcnow()
        duration = int((now - me.started_at).total_seconds() * 1000) if me.started_at else None
        values: dict[str, Any] = {
            "b_id": me.id,
            "status": S.COMPLETED,
            "completed_at": now,
            "duration_ms": duration,
            "error_type": None,
            "error_message": None,
            "tokens_in": tokens_in,
            "tokens_out": tokens_out,
            "cost_usd": cost_usd,
            "agent_call_id": agent_call_id,
            "metadata": {
                k: x for k, x in {**(me.meta or {}), **jsonable(dict(meta or {}))}.items() if k != "lease"
            },
        }
        if output is not None:
            values["output"] = output
        _SET_STEP.run(conn, values)
        tx.publish(
            topics.workflow_run_steps(c.run_id),
            "workflow_step_completed",
            _payload(
                me,
                c.run_id,
                status=S.COMPLETED.value,
                attempt=c.attempt,
                error_type=None,
                error_message=None,
                duration_ms=duration,
            ),
        )

        status = {k: r.status for k, r in rows.items()} | {sid: S.COMPLETED}
        takes = run_status is R.RUNNING and not (failed_step_id and spec.failure_policy == "fail_fast")
        run = _Run(c.run_id, workflow_id, c.user_id, c.session_id, c.input, spec)
        known = {sid: (_as_stored(output, ws.backend), S.COMPLETED.value)}
        claims: list[Claim] = []
        ready: list[str] = []
        needs_advance = False
        for a in after:
            row = rows.get(a)
            step = spec.step(a)
            if row is None or row.status is not S.PENDING:
                continue
            deps = [status.get(d) for d in step.depends_on]
            if any(st not in STEP_TERMINAL for st in deps):
                continue  # still waiting on another dependency: its completion takes this one
            if not takes or any(st is not S.COMPLETED for st in deps) or not _plain(spec, step):
                needs_advance = True
            elif _gate(step) or len(claims) >= claim:
                ready.append(a)
            else:
                got = _take(tx, run, row, step, c.owner, known)
                if got is None:
                    ready.append(a)  # its templates fail: a plain claim records that
                else:
                    claims.append(got)

        if tokens_in or tokens_out or cost_usd:
            conn.execute(
                _ADD_TOTALS,
                {
                    "b_run": c.run_id,
                    "b_tin": tokens_in,
                    "b_tout": tokens_out,
                    "b_cost": cost_usd or Decimal(0),
                },
            )
        # A run whose last step this was is finished by `advance`: nothing was taken, nothing is left.
        if not claims and not ready and not after:
            needs_advance = True
        return Next(True, tuple(claims), tuple(ready), needs_advance)


# -- claiming what is ready ----------------------------------------------------------------------------
def claim_ready(ws: Workspace, run_id: uuid.UUID, limit: int, *, owner: str = OWNER) -> Progress:
    """`advance`, then claim up to `limit` of the ready steps (gates are opened, not claimed), in one
    transaction; the claims are in `Progress.claims`. `Progress.again` says a gate was opened or a
    step failed at its claim, so the run's state moved on and a new look is due at once."""
    with ws.transaction() as tx:
        run, progress = advance_in(tx, run_id)
        if progress.terminal or not progress.ready or run.status is not R.RUNNING:
            return progress
        spec = cached_spec(tx.connection(), run_id)
        info = _Run(run.id, run.workflow_id, run.user_id, run.session_id, dict(run.input or {}), spec)
        rows = tx.connection().execute(_READY, {"b_run": run_id, "b_ids": list(progress.ready)})
        claims: list[Claim] = []
        again = False
        for row in list(rows):
            step = spec.step(row.step_id)
            room = len(claims) < limit
            # a gate to open, or an external step to hand to someone: takes no slot
            opens = _gate(step) and (
                step.type is StepType.EXTERNAL or (row.meta or {}).get("decision") is None
            )
            got = None
            if room and not _gate(step):
                got = _take(tx, info, row, step, owner, {})
                if got is not None:
                    run.current_step_id = step.id
            if got is None and (room or opens):
                # a gate to open (or an approved one to run), or templates that fail: the ORM path
                # writes what that means, and the run's state moved on
                again = True
                got = claim_in(tx, run, row.step_id, owner=owner)
            if got is not None:
                claims.append(got)
        return Progress(progress.status, progress.ready, False, tuple(claims), again)
