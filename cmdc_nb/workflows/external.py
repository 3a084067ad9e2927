"""Steps a person or an outside system performs: the seed's `start_step` / `complete_step`.

A step of type `external` is not run by the engine. When its dependencies are done it becomes
`waiting_input` (event `workflow_step_waiting_input`, with its rendered `instructions`), and the run
is `waiting_input` once nothing else can move. Whoever does the work calls

>>> wf.start_step(run, "review")                                       # doctest: +SKIP
>>> wf.complete_step(run, "review", output={"verdict": "ship it"})     # doctest: +SKIP

(`start_step` is optional: it only says that someone took the step up), or `fail_step(run, "review",
error=…)`. Each is one transaction that also advances the run, so a driver of the run — in this
notebook or another process — goes on at once, and a run nobody drives (`start_workflow_run` alone,
the seed's way) moves as far as the hand-driven steps take it. The step's `output_schema` (a JSON
Schema in its config) is checked before the output is stored; its `timeout` bounds the wait. A waiting
step survives any restart: nothing runs, so nothing is lost — `resume_workflow_run` simply waits again.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import jsonable
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.enums import WorkflowStepStatus
from cmdc_nb.store.models import WorkflowStep
from cmdc_nb.workflows.records import RunRef, get_workflow_step
from cmdc_nb.workflows.state import external as state

__all__ = ["complete_step", "fail_step", "start_step"]

S = WorkflowStepStatus


def _target(run: RunRef | WorkflowStep, step_id: str | None) -> tuple[Any, str]:
    """(run id, step id) from `(run, "id")` or from a step row alone (the seed passes the step)."""
    if isinstance(run, WorkflowStep):
        if step_id is not None and step_id != run.step_id:
            raise InvalidInputError(
                f"a step row ({run.step_id!r}) and a different step id ({step_id!r}) were given",
                field="step_id",
            )
        return run.workflow_run_id, run.step_id
    if step_id is None:
        raise InvalidInputError("name the step: complete_step(run, 'step_id', …)", field="step_id")
    return v.id_of(run, "workflow_run"), v.text(step_id, "step_id", max_len=100)


def _by(ws: Workspace, user: Any) -> Any:
    """Who acts: `user` (it must be the acting user, when the workspace acts for someone), else the
    acting user, else nobody named."""
    named = access.resolve_user(access.current(ws.acting_user_id), user)
    return v.id_of(named, "user") if named is not None else None


def _check_output(output: Any, config: Mapping[str, Any]) -> None:
    schema = config.get("output_schema")
    if not isinstance(schema, Mapping):
        return
    import jsonschema

    try:
        checker = jsonschema.validators.validator_for(schema)(schema)
        errors = sorted(checker.iter_errors(output), key=lambda e: list(e.absolute_path))
    except Exception as exc:  # a $ref to nowhere, a pattern that is no regex: the schema's fault
        raise InvalidInputError(
            f"the step's output_schema cannot check it ({type(exc).__name__}): fix the workflow's spec",
            field="output",
        ) from None
    if errors:
        parts = [f"{'/'.join(map(str, e.absolute_path)) or '(root)'}: {e.message}" for e in errors[:10]]
        raise InvalidInputError(
            "does not match the step's output_schema: " + "; ".join(parts), field="output"
        )


def _json_output(output: Any) -> Any:
    """The output as stored: JSON values only (UUIDs, dates and Decimals become text). NaN and NUL
    characters are refused here, as PostgreSQL's jsonb would refuse them later."""
    _shape(output)
    value = jsonable(output)
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidInputError(
            f"must be JSON (mappings, lists, text, numbers, true/false, None), not {type(output).__name__}"
            " or a value inside it",
            field="output",
        ) from None
    return value


MAX_DEPTH = 64  # nesting an output may have (JSON documents of people and webhooks are shallow)


def _shape(output: Any) -> None:
    """Refuse before converting, in one walk: nesting past MAX_DEPTH or a cycle (Python would recurse
    until it failed), mapping keys that are not text (1 and "1" would silently become one key), and
    text that cannot be stored (NUL, lone surrogates), keys included."""
    stack: list[tuple[Any, int]] = [(output, 0)]
    seen: set[int] = set()
    while stack:
        x, depth = stack.pop()
        if isinstance(x, str):
            if (problem := v.text_problem(x)) is not None:
                raise InvalidInputError(f"text inside it {problem}", field="output")
            continue
        if not isinstance(x, dict | list | tuple):
            continue
        if depth >= MAX_DEPTH:
            raise InvalidInputError(f"nests deeper than {MAX_DEPTH} levels", field="output")
        if id(x) in seen:
            raise InvalidInputError("contains itself (a cycle), which JSON cannot hold", field="output")
        seen.add(id(x))
        if isinstance(x, dict):
            if any(not isinstance(k, str) for k in x):
                raise InvalidInputError("mapping keys must be text", field="output")
            stack.extend((k, depth + 1) for k in x)
            stack.extend((val, depth + 1) for val in x.values())
        else:
            stack.extend((val, depth + 1) for val in x)


@checked
def start_step(
    run: RunRef | WorkflowStep,
    step_id: str | None = None,
    user: Any = None,
    *,
    ws: Workspace | None = None,
) -> WorkflowStep:
    """Say that someone has taken up an external step (`waiting_input` → `running`). Optional:
    `complete_step` accepts a step that was never started. Returns the step."""
    w = get_workspace(ws)
    rid, sid = _target(run, step_id)
    return state.start(w, rid, sid, by=_by(w, user))


@checked
def complete_step(
    run: RunRef | WorkflowStep,
    step_id: str | None = None,
    user: Any = None,
    *,
    output: Any = None,
    ws: Workspace | None = None,
) -> WorkflowStep:
    """Record an external step's result (any JSON value; checked against its config's
    `output_schema` when it has one), and move the run on in the same transaction. Returns the step."""
    w = get_workspace(ws)
    rid, sid = _target(run, step_id)
    value = _json_output(output)
    # Checked before the write transaction when the step's config is rendered already (it is, once the
    # step is someone's turn): a slow schema then holds no lock. A step parked by this very call is
    # checked inside it.
    row = get_workflow_step(rid, sid, ws=w)
    config = row.input if isinstance(row.input, Mapping) else None
    ready = row.status in (S.WAITING_INPUT, S.RUNNING) and config is not None
    if config is not None and ready:
        _check_output(value, config)
    check = None if ready else _check_output
    return state.finish(w, rid, sid, S.COMPLETED, output=value, by=_by(w, user), check=check)


@checked
def fail_step(
    run: RunRef | WorkflowStep,
    step_id: str | None = None,
    user: Any = None,
    *,
    error: str = "failed",
    ws: Workspace | None = None,
) -> WorkflowStep:
    """Record that an external step could not be done (`error` says why); the run's failure policy
    applies as for any failed step. Returns the step."""
    w = get_workspace(ws)
    rid, sid = _target(run, step_id)
    reason = v.text(error, "error", max_len=4000)
    return state.finish(w, rid, sid, S.FAILED, error=reason, by=_by(w, user))
