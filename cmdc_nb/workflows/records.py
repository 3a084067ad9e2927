"""Workflows, runs and steps as stored rows: create, version, list, and start a run (its step rows).

Every function here is one transaction. The engine (`cmdc_nb.workflows.engine`) moves runs and steps
along; what it writes also goes through one transaction per change, so a crash between two changes
leaves a consistent run that `resume_workflow_run` can finish.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch, free_slug, jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError, InvalidStateError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.services.sessions import slugify
from cmdc_nb.store.enums import (
    ActivityAction,
    TriggerType,
    WorkflowRunStatus,
    WorkflowStatus,
    WorkflowStepStatus,
)
from cmdc_nb.store.models import User, Workflow, WorkflowRun, WorkflowStep
from cmdc_nb.store.values import utcnow
from cmdc_nb.workflows.spec import WorkflowSpec, load_spec

__all__ = [
    "RUN_TERMINAL",
    "STEP_TERMINAL",
    "activate_workflow",
    "archive_workflow",
    "create_workflow",
    "get_workflow",
    "get_workflow_by_slug",
    "get_workflow_run",
    "get_workflow_step",
    "insert_run",
    "keep_spec",
    "known_spec",
    "list_workflow_runs",
    "list_workflow_steps",
    "list_workflow_versions",
    "list_workflows",
    "run_payload",
    "spec_of",
    "start_workflow_run",
    "step_payload",
    "update_workflow",
    "validate_input",
]

WorkflowRef = Workflow | uuid.UUID | str
RunRef = WorkflowRun | uuid.UUID | str

RUN_TERMINAL = frozenset(
    {
        WorkflowRunStatus.COMPLETED,
        WorkflowRunStatus.FAILED,
        WorkflowRunStatus.CANCELLED,
        WorkflowRunStatus.TIMEOUT,
    }
)
STEP_TERMINAL = frozenset(
    {
        WorkflowStepStatus.COMPLETED,
        WorkflowStepStatus.FAILED,
        WorkflowStepStatus.SKIPPED,
        WorkflowStepStatus.CANCELLED,
        WorkflowStepStatus.TIMEOUT,
    }
)
_WORKFLOW_TRANSITIONS = {
    WorkflowStatus.DRAFT: frozenset({WorkflowStatus.ACTIVE, WorkflowStatus.ARCHIVED}),
    WorkflowStatus.ACTIVE: frozenset({WorkflowStatus.DEPRECATED, WorkflowStatus.ARCHIVED}),
    WorkflowStatus.DEPRECATED: frozenset({WorkflowStatus.ACTIVE, WorkflowStatus.ARCHIVED}),
    WorkflowStatus.ARCHIVED: frozenset(),
}


def _workflow_payload(w: Workflow) -> dict[str, Any]:
    return {
        "workflow_id": str(w.id),
        "user_id": str(w.user_id),
        "name": w.name,
        "slug": w.slug,
        "version": w.version,
        "status": w.status.value,
    }


def run_payload(r: WorkflowRun) -> dict[str, Any]:
    return {
        "run_id": str(r.id),
        "workflow_id": str(r.workflow_id),
        "user_id": str(r.user_id),
        "status": r.status.value,
        "completed_step_ids": list(r.completed_step_ids),
        "failed_step_id": r.failed_step_id,
        "total_cost_usd": str(r.total_cost_usd),
    }


def step_payload(s: WorkflowStep) -> dict[str, Any]:
    return {
        "run_id": str(s.workflow_run_id),
        "step_row_id": str(s.id),
        "step_id": s.step_id,
        "step_type": s.step_type.value,
        "status": s.status.value,
        "attempt": s.attempt_number,
        "error_type": s.error_type,
        "error_message": s.error_message,
        "duration_ms": s.duration_ms,
        "approval_id": str(s.approval_id) if s.approval_id else None,
    }


def publish_workflow(tx: Tx, w: Workflow, type: str) -> None:
    payload = _workflow_payload(w)
    tx.publish(topics.workflow(w.id), type, payload)
    tx.publish(topics.user_workflows(w.user_id), type, payload)


def publish_run(tx: Tx, r: WorkflowRun, type: str, **extra: Any) -> None:
    payload = {**run_payload(r), **jsonable(extra)}
    tx.publish(topics.workflow_run(r.id), type, payload)
    tx.publish(topics.workflow_runs(r.workflow_id), type, payload)
    tx.publish(topics.user_workflows(r.user_id), type, payload)


def publish_step(tx: Tx, s: WorkflowStep, type: str, **extra: Any) -> None:
    tx.publish(topics.workflow_run_steps(s.workflow_run_id), type, {**step_payload(s), **jsonable(extra)})


def _apply_spec(w: Workflow, spec: WorkflowSpec) -> None:
    d = spec.as_dict()
    w.name = spec.name
    w.description = spec.description
    w.steps = d["steps"]
    w.input_schema = dict(spec.input_schema) if spec.input_schema is not None else None
    w.output_schema = dict(spec.output_schema) if spec.output_schema is not None else None
    w.default_config = dict(spec.default_config) if spec.default_config is not None else None
    w.failure_policy = spec.failure_policy
    w.tags = list(spec.tags)
    w.category = spec.category
    w.triggers = [dict(t) for t in spec.triggers]
    w.is_template = spec.is_template
    w.meta = (
        {**w.meta, "output": spec.output}
        if spec.output is not None
        else {k: x for k, x in w.meta.items() if k != "output"}
    )


# The spec each run started with, parsed once per process (a run's snapshot never changes): the
# engine reads it at every transition, and parsing a 1,000-step spec costs ≈60 ms.
_run_specs: dict[uuid.UUID, WorkflowSpec] = {}
_run_specs_lock = threading.Lock()


def known_spec(run_id: uuid.UUID) -> WorkflowSpec | None:
    """The parsed spec of run `run_id` if this process has it (`keep_spec`)."""
    with _run_specs_lock:
        return _run_specs.get(run_id)


def keep_spec(run_id: uuid.UUID, spec: WorkflowSpec) -> None:
    """Keep the parsed spec run `run_id` started with (what parsing its snapshot gives)."""
    with _run_specs_lock:
        if len(_run_specs) > 512:
            _run_specs.clear()
        _run_specs[run_id] = spec


def spec_of(w: Workflow | Mapping[str, Any]) -> WorkflowSpec:
    """The spec a workflow row (or a run's snapshot) holds."""
    if isinstance(w, Workflow):
        raw: dict[str, Any] = {
            "name": w.name,
            "description": w.description,
            "steps": w.steps,
            "input_schema": w.input_schema,
            "output_schema": w.output_schema,
            "default_config": w.default_config,
            "failure_policy": w.failure_policy,
            "tags": list(w.tags),
            "category": w.category,
        }
        if w.meta.get("output") is not None:
            raw["output"] = w.meta["output"]
    else:
        raw = {k: x for k, x in w.items() if k not in ("id", "version")}
    return load_spec({k: x for k, x in raw.items() if x is not None})


@checked
def create_workflow(
    user: User | uuid.UUID | str,
    spec: WorkflowSpec | Mapping[str, Any] | str | Any,
    *,
    slug: str | None = None,
    activate: bool = True,
    ws: Workspace | None = None,
) -> Workflow:
    """Store a validated spec as a workflow (version 1), active at once unless `activate=False`."""
    uid = v.id_of(user, "user")
    parsed = load_spec(spec)
    with get_workspace(ws).transaction() as tx:
        return create_workflow_in(tx, uid, parsed, slug=slug, activate=activate)


def create_workflow_in(
    tx: Tx, uid: uuid.UUID, parsed: WorkflowSpec, *, slug: str | None = None, activate: bool = True
) -> Workflow:
    """`create_workflow` inside an open transaction (for services that store a run with it)."""
    slug = slug or parsed.slug
    if tx.db.get(User, uid) is None:
        raise NotFoundError("user", uid)
    if slug is not None:
        slug = v.text(slug, "slug", max_len=100)
    w = Workflow(
        id=uuid.uuid4(),
        user_id=uid,
        slug=slug or free_slug(tx.db, Workflow, uid, slugify(parsed.name)),
        version=1,
        status=WorkflowStatus.ACTIVE if activate else WorkflowStatus.DRAFT,
        meta={},
    )
    _apply_spec(w, parsed)
    tx.db.add(w)
    tx.db.flush()
    log_activity(
        tx,
        ActivityAction.WORKFLOW_CREATE,
        resource_type="workflow",
        resource_id=w.id,
        user_id=uid,
        details={"name": w.name, "slug": w.slug, "steps": len(w.steps)},
    )
    publish_workflow(tx, w, "workflow_created")
    return w


@checked
def get_workflow(workflow: WorkflowRef, *, ws: Workspace | None = None) -> Workflow:
    with get_workspace(ws).read() as db:
        return fetch(db, Workflow, workflow, "workflow")


@checked
def get_workflow_by_slug(user: User | uuid.UUID | str, slug: str, *, ws: Workspace | None = None) -> Workflow:
    user = access.scope_user(get_workspace(ws), user)
    uid = v.id_of(user, "user")
    with get_workspace(ws).read() as db:
        w = db.scalar(sa.select(Workflow).where(Workflow.user_id == uid, Workflow.slug == slug))
        if w is None:
            raise NotFoundError("workflow", slug)
        return w


@checked
def list_workflows(
    user: User | uuid.UUID | str,
    *,
    status: WorkflowStatus | str | None = None,
    category: str | None = None,
    is_template: bool | None = None,
    tags: Sequence[str] = (),
    limit: int = 100,
    ws: Workspace | None = None,
) -> list[Workflow]:
    """The user's workflows, most recently updated first."""
    user = access.scope_user(get_workspace(ws), user)
    uid = v.id_of(user, "user")
    v.count(limit, "limit", minimum=1)
    stmt = sa.select(Workflow).where(Workflow.user_id == uid)
    if status is not None:
        stmt = stmt.where(Workflow.status == v.choice(WorkflowStatus, status, "status"))
    if category is not None:
        stmt = stmt.where(Workflow.category == category)
    if is_template is not None:
        stmt = stmt.where(Workflow.is_template == is_template)
    with get_workspace(ws).read() as db:
        rows = list(db.scalars(stmt.order_by(Workflow.updated_at.desc(), Workflow.id.desc()).limit(limit)))
    if tags:
        rows = [w for w in rows if set(tags) <= set(w.tags)]
    return rows


@checked
def update_workflow(
    workflow: WorkflowRef,
    spec: WorkflowSpec | Mapping[str, Any] | str | Any,
    *,
    note: str | None = None,
    ws: Workspace | None = None,
) -> Workflow:
    """Replace the spec; the version goes up by one and the old version is kept in the history
    (`list_workflow_versions`). Runs already started keep the snapshot they started with."""
    parsed = load_spec(spec)
    with get_workspace(ws).transaction() as tx:
        w = fetch(tx.db, Workflow, workflow, "workflow", lock=True)
        if w.status is WorkflowStatus.ARCHIVED:
            raise InvalidStateError("workflow", w.status.value, "updated", allowed=[])
        history = list(w.meta.get("history", []))
        history.append(
            {
                "version": w.version,
                "spec": spec_of(w).as_dict(),
                "replaced_at": utcnow().isoformat(),
                "note": note,
            }
        )
        _apply_spec(w, parsed)
        w.meta = {**w.meta, "history": history[-50:]}
        w.version += 1
        tx.db.flush()
        publish_workflow(tx, w, "workflow_updated")
    return w


@checked
def list_workflow_versions(workflow: WorkflowRef, *, ws: Workspace | None = None) -> list[dict[str, Any]]:
    """Every kept version, oldest first, the current one last: `{version, spec, replaced_at, note}`."""
    w = get_workflow(workflow, ws=ws)
    current = {"version": w.version, "spec": spec_of(w).as_dict(), "replaced_at": None, "note": None}
    return [*w.meta.get("history", []), current]


def _move_workflow(workflow: WorkflowRef, target: WorkflowStatus, ws: Workspace | None) -> Workflow:
    with get_workspace(ws).transaction() as tx:
        w = fetch(tx.db, Workflow, workflow, "workflow", lock=True)
        allowed = _WORKFLOW_TRANSITIONS[w.status]
        if target not in allowed:
            raise InvalidStateError(
                "workflow", w.status.value, target.value, allowed=sorted(a.value for a in allowed)
            )
        w.status = target
        tx.db.flush()
        publish_workflow(tx, w, f"workflow_{target.value}")
    return w


@checked
def activate_workflow(workflow: WorkflowRef, *, ws: Workspace | None = None) -> Workflow:
    return _move_workflow(workflow, WorkflowStatus.ACTIVE, ws)


@checked
def archive_workflow(workflow: WorkflowRef, *, ws: Workspace | None = None) -> Workflow:
    return _move_workflow(workflow, WorkflowStatus.ARCHIVED, ws)


def validate_input(spec: WorkflowSpec, value: Any) -> dict[str, Any]:
    """`value` checked against the spec's `input_schema` (every violation listed, with its path)."""
    if value is None:
        value = {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"a run's input must be a mapping, got {type(value).__name__}", field="input")
    data: dict[str, Any] = jsonable(dict(value))
    if spec.input_schema is not None:
        import jsonschema

        validator_cls = jsonschema.validators.validator_for(spec.input_schema)
        errors = sorted(
            validator_cls(spec.input_schema).iter_errors(data), key=lambda e: list(e.absolute_path)
        )
        if errors:
            parts = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:10]]
            raise InvalidInputError(
                "does not match the workflow's input_schema: " + "; ".join(parts), field="input"
            )
    return data


@checked
def start_workflow_run(
    workflow: WorkflowRef,
    user: User | uuid.UUID | str | None = None,
    *,
    input: Mapping[str, Any] | None = None,
    trigger_type: TriggerType | str = TriggerType.MANUAL,
    trigger_metadata: Mapping[str, Any] | None = None,
    session: Any = None,
    git_context: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> WorkflowRun:
    """Create a run (status pending) with one row per step and a snapshot of the spec it runs.

    The input is validated against the workflow's `input_schema` first; nothing is stored if it does
    not match. Execute the run with `execute_workflow_run` (or `run_workflow`, which does both)."""
    trig = v.choice(TriggerType, trigger_type, "trigger_type")
    with get_workspace(ws).transaction() as tx:
        w = fetch(tx.db, Workflow, workflow, "workflow", lock=True)
        uid = v.id_of(user, "user") if user is not None else w.user_id
        if w.status is not WorkflowStatus.ACTIVE:
            raise InvalidInputError(
                f"workflow {w.slug!r} is {w.status.value}; activate it first (activate_workflow)",
                field="workflow",
            )
        spec = spec_of(w)
        data = validate_input(spec, input)
        run = insert_run(
            tx,
            w,
            spec,
            uid,
            data,
            trigger_type=trig,
            trigger_metadata=trigger_metadata,
            session_id=v.id_of(session, "session") if session is not None else None,
            git_context=git_context,
        )
    return run


def insert_run(
    tx: Tx,
    w: Workflow,
    spec: WorkflowSpec,
    user_id: uuid.UUID,
    data: dict[str, Any],
    *,
    trigger_type: TriggerType,
    trigger_metadata: Mapping[str, Any] | None = None,
    session_id: uuid.UUID | None = None,
    git_context: Mapping[str, Any] | None = None,
    retry_of: WorkflowRun | None = None,
) -> WorkflowRun:
    version = retry_of.workflow_snapshot.get("version", w.version) if retry_of is not None else w.version
    snapshot = {"id": str(w.id), "version": version, **spec.as_dict()}
    run = WorkflowRun(
        id=uuid.uuid4(),
        workflow_id=w.id,
        user_id=user_id,
        session_id=session_id,
        workflow_snapshot=snapshot,
        status=WorkflowRunStatus.PENDING,
        input=data,
        trigger_type=trigger_type,
        trigger_metadata=jsonable(dict(trigger_metadata)) if trigger_metadata else None,
        git_context=jsonable(dict(git_context)) if git_context else None,
        retry_of_run_id=retry_of.id if retry_of is not None else None,
        retry_count=(retry_of.retry_count + 1) if retry_of is not None else 0,
        completed_step_ids=[],
        meta={},
    )
    tx.db.add(run)
    tx.db.flush()
    # The snapshot is `spec.as_dict()`: parsing it back gives `spec`, so the engine need not (a run
    # rolled back leaves an entry no run id will ever ask for).
    keep_spec(run.id, spec)
    # One bulk INSERT of plain rows: building a mapped object per step cost half of starting a run.
    steps = [spec.step(sid) for sid in spec.order()]
    tx.db.execute(
        sa.insert(WorkflowStep),
        [
            {
                "id": uuid.uuid4(),
                "workflow_run_id": run.id,
                "step_id": s.id,
                "step_name": s.name or s.id,
                "step_type": s.type,
                "step_config": jsonable(dict(s.config)),
                "status": WorkflowStepStatus.PENDING,
                "sequence": seq,
                "depends_on": list(s.depends_on),
                "max_attempts": s.retry.attempts,
                "meta": {},
            }
            for seq, s in enumerate(steps)
        ],
    )
    tx.db.execute(sa.update(Workflow).where(Workflow.id == w.id).values(run_count=Workflow.run_count + 1))
    tx.db.flush()
    log_activity(
        tx,
        ActivityAction.WORKFLOW_RUN_START,
        resource_type="workflow_run",
        resource_id=run.id,
        user_id=user_id,
        details={"workflow_id": str(w.id), "version": version, "trigger_type": trigger_type.value},
    )
    publish_run(tx, run, "workflow_run_created")
    return run


@checked
def get_workflow_run(run: RunRef, *, ws: Workspace | None = None) -> WorkflowRun:
    with get_workspace(ws).read() as db:
        return fetch(db, WorkflowRun, run, "workflow_run")


@checked
def list_workflow_runs(
    workflow: WorkflowRef | None = None,
    *,
    user: User | uuid.UUID | str | None = None,
    status: WorkflowRunStatus | str | Sequence[WorkflowRunStatus | str] | None = None,
    limit: int = 100,
    ws: Workspace | None = None,
) -> list[WorkflowRun]:
    """Runs of a workflow (or of a user), newest first."""
    user = access.scope_user(get_workspace(ws), user)
    v.count(limit, "limit", minimum=1)
    stmt = sa.select(WorkflowRun)
    if workflow is not None:
        stmt = stmt.where(WorkflowRun.workflow_id == v.id_of(workflow, "workflow"))
    if user is not None:
        stmt = stmt.where(WorkflowRun.user_id == v.id_of(user, "user"))
    if status is not None:
        wanted = [status] if isinstance(status, str) else list(status)
        stmt = stmt.where(WorkflowRun.status.in_([v.choice(WorkflowRunStatus, s, "status") for s in wanted]))
    with get_workspace(ws).read() as db:
        return list(
            db.scalars(stmt.order_by(WorkflowRun.inserted_at.desc(), WorkflowRun.id.desc()).limit(limit))
        )


@checked
def list_workflow_steps(run: RunRef, *, ws: Workspace | None = None) -> list[WorkflowStep]:
    """The run's steps in topological order."""
    rid = v.id_of(run, "workflow_run")
    with get_workspace(ws).read() as db:
        return list(
            db.scalars(
                sa.select(WorkflowStep)
                .where(WorkflowStep.workflow_run_id == rid)
                .order_by(WorkflowStep.sequence)
            )
        )


@checked
def get_workflow_step(run: RunRef, step_id: str, *, ws: Workspace | None = None) -> WorkflowStep:
    rid = v.id_of(run, "workflow_run")
    with get_workspace(ws).read() as db:
        s = db.scalar(
            sa.select(WorkflowStep).where(
                WorkflowStep.workflow_run_id == rid, WorkflowStep.step_id == step_id
            )
        )
        if s is None:
            raise NotFoundError("workflow_step", f"{rid}/{step_id}")
        return s
