"""One case with one model: the workflow step an eval run is made of.

An eval run is a workflow run with one python step per case and model, so the engine gives it what it
gives every run: each step claimed under a lease, completed exactly once, handed back after a kill,
run in this event loop or on worker processes. The step reads the eval from the run's input (cases,
models, scorers, task, budget) — never from its own config, which the engine renders as a template
and a case's text must not be — runs the task on the case's session, scores the output, and returns
the row of the results (scores, tokens, exact cost, latency, error), stored as the step's output in
the transaction that completes it.
"""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb.errors import BudgetExceededError
from cmdc_nb.evals.context import TASK_AGENT, EvalContext, budget_for, case_session
from cmdc_nb.evals.dataset import Case
from cmdc_nb.evals.scorers import Score, scorer_from_spec
from cmdc_nb.evals.tasks import pinned, task_for
from cmdc_nb.store.models import AgentCall
from cmdc_nb.workflows.executors import StepContext

__all__ = ["STEP_FUNCTION", "run_case"]

STEP_FUNCTION = "cmdc_nb.evals.cases:run_case"


async def run_case(case: int, model: int, ctx: StepContext) -> dict[str, Any]:
    spec = ctx.input
    c = Case.from_dict(spec["cases"][case])
    m = str(spec["models"][model])
    task = await asyncio.to_thread(_task, ctx, spec)
    scorers = [scorer_from_spec(s) for s in spec["scorers"]]
    budget = budget_for(ctx.ws, ctx.run_id, spec.get("budget"), replays=bool(spec.get("cassettes")))
    session_id = await asyncio.to_thread(case_session, ctx, c, m, str(spec.get("name") or "eval"))
    ectx = EvalContext(ctx, c, m, session_id, budget)
    # Every call of the case comes from cassettes (the task's, each judge's), decided before any is
    # made (a call recorded now makes its file): running it again costs nothing.
    replayed = ectx.replays("task", m) and all(
        ectx.replays(f"judge:{s.name}", str(s.spec()["model"])) for s in scorers if s.kind == "judge"
    )
    started = time.perf_counter()
    output: Any = None
    error: str | None = None
    try:
        try:
            output = _storable(await task.execute(ectx))
        except (BudgetExceededError, asyncio.CancelledError):
            raise  # the eval stops here (and resumes from here)
        except Exception as exc:  # the task's failure is this case's result, not the eval's end
            error = f"{type(exc).__name__}: {exc}"[:1000]
        wall = time.perf_counter() - started
        ectx.output = output
        scores = await _scores(scorers, output, c, ectx, error)
    finally:
        if budget is not None:
            budget.release(ctx.idempotency_key)
    usage = await asyncio.to_thread(_usage, ctx, wall, ectx)
    values = [s.value for s in scores]
    return {
        "case": c.id,
        "model": m,
        "output": output,
        "error": error,
        "scores": {s.name: s.as_dict() for s in scores},
        "score": sum(values) / len(values) if values else 0.0,
        "passed": error is None and all(s.passed for s in scores),
        "session_id": str(session_id),
        "replayed": replayed,
        **usage,
    }


def _task(ctx: StepContext, spec: Any) -> Any:
    """The eval's task (see `tasks.task_for`), with the run it retries, whose pinned task it inherits."""
    from cmdc_nb.store.models import WorkflowRun

    found = pinned(ctx.run_id)
    if found is not None:  # the common case: no read for it
        return found
    with ctx.ws.read() as db:
        retry_of = db.scalar(sa.select(WorkflowRun.retry_of_run_id).where(WorkflowRun.id == ctx.run_id))
    return task_for(ctx.run_id, str(spec["task"]), spec.get("task_fingerprint"), retry_of)


async def _scores(
    scorers: list[Any], output: Any, case: Case, ectx: EvalContext, error: str | None
) -> list[Score]:
    out = []
    for s in scorers:
        if error is not None:
            out.append(Score(s.name, 0.0, False, "not scored: the task failed"))
            continue
        try:
            out.append(await s.score(output, case, ectx))
        except (BudgetExceededError, asyncio.CancelledError):
            raise
        except Exception as exc:  # a scorer's failure is this score, said, not the run's end
            out.append(Score(s.name, 0.0, False, f"the scorer failed: {type(exc).__name__}: {exc}"[:500]))
    return out


def _storable(value: Any) -> Any:
    """The output as stored with the step: JSON values as they are, anything else as its text."""
    try:
        json.dumps(value, allow_nan=False)
        return value
    except (TypeError, ValueError):
        return str(value)


def _usage(ctx: StepContext, wall: float, ectx: EvalContext) -> dict[str, Any]:
    """Tokens, exact cost and latency of the case, read from its stored calls (so a case resumed after a
    kill reports the calls it made before, not only those after)."""
    with ctx.ws.read() as db:
        rows = db.execute(
            sa.select(
                AgentCall.meta, AgentCall.tokens_in, AgentCall.tokens_out, AgentCall.cost_usd,
                AgentCall.started_at, AgentCall.completed_at,
            ).where(AgentCall.workflow_step_id == ctx.step_row_id)
        ).all()  # fmt: skip
    task = [r for r in rows if not str((r.meta or {}).get("agent") or TASK_AGENT).startswith("judge:")]
    judged = [r for r in rows if str((r.meta or {}).get("agent") or "").startswith("judge:")]
    cost = sum((r.cost_usd for r in task if r.cost_usd is not None), Decimal(0))
    judge_cost = sum((r.cost_usd for r in judged if r.cost_usd is not None), Decimal(0))
    tin, tout = sum(r.tokens_in or 0 for r in task), sum(r.tokens_out or 0 for r in task)
    timed = [r for r in task if r.started_at is not None and r.completed_at is not None]
    latency = (
        (max(r.completed_at for r in timed) - min(r.started_at for r in timed)).total_seconds()
        if timed
        else wall
    )
    sub = ectx.sub_run
    if sub is not None:  # a workflow task: its run's totals
        cost, tin, tout = (
            sub.total_cost_usd or Decimal(0),
            sub.total_tokens_in or 0,
            sub.total_tokens_out or 0,
        )
        latency = (sub.duration_ms or 0) / 1000 or wall
    return {
        "cost_usd": str(cost),
        "judge_cost_usd": str(judge_cost),
        "tokens_in": tin,
        "tokens_out": tout,
        "calls": len(task),
        "latency_s": round(latency, 6),
    }
