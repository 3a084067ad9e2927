"""Running an eval: `run_eval(dataset, task, models=[…], scorers=[…])`, stopping and resuming it, and the
`EvalRun` handle that reads its results.

An eval run is a workflow run (`eval: <name>`, one step per case and model; see `cases`), so it is
stored, resumable and distributable like any run: `resume_eval` after a kill finishes the cases that
were not finished (a case cut off mid-call resumes its stored conversation; one already scored is never
run again), after the budget stopped it, it goes on with a new budget; `executor="workers"` sends the
cases to worker processes on PostgreSQL.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Coroutine, Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import ConfigurationError, InvalidInputError, InvalidStateError
from cmdc_nb.evals import results
from cmdc_nb.evals.cases import STEP_FUNCTION
from cmdc_nb.evals.dataset import Dataset, dataset
from cmdc_nb.evals.scorers import Scorer, as_scorer
from cmdc_nb.evals.tasks import AgentTask, as_task, pin
from cmdc_nb.store.enums import WorkflowRunStatus
from cmdc_nb.store.models import WorkflowRun
from cmdc_nb.store.values import to_money

__all__ = ["EvalRun", "arun_eval", "get_eval", "resume_eval", "run_eval"]

MAX_MODELS = 20
_TERMINAL = {
    WorkflowRunStatus.COMPLETED,
    WorkflowRunStatus.FAILED,
    WorkflowRunStatus.CANCELLED,
    WorkflowRunStatus.TIMEOUT,
}


class EvalRun:
    """An eval run: its status, results (`results()`), per-model summary (`summary()`) and Pareto chart
    (`pareto_chart()`). In a notebook `run_eval` returns it at once, running: `await` it."""

    def __init__(self, run_id: uuid.UUID, ws: Workspace, task: asyncio.Task[Any] | None = None) -> None:
        self.run_id = run_id
        self._ws = ws
        self._task = task

    @property
    def id(self) -> uuid.UUID:
        """The workflow run's id, so an EvalRun goes where a run's id does (`traces.export_workflow_trace(run)`)."""
        return self.run_id

    def __await__(self) -> Any:
        async def wait() -> EvalRun:
            if self._task is not None:
                await self._task
            return self

        return wait().__await__()

    def done(self) -> bool:
        return self._task is None or self._task.done()

    @property
    def run(self) -> WorkflowRun:
        """The workflow run as stored now."""
        from cmdc_nb.workflows.records import get_workflow_run

        return get_workflow_run(self.run_id, ws=self._ws)

    @property
    def spec(self) -> dict[str, Any]:
        return dict(self.run.input or {})

    @property
    def name(self) -> str:
        return str(self.spec.get("name", "eval"))

    @property
    def status(self) -> str:
        return self.run.status.value

    @property
    def models(self) -> list[str]:
        return list(self.spec.get("models", []))

    @property
    def scorer_names(self) -> list[str]:
        return [str(s["name"]) for s in self.spec.get("scorers", [])]

    def results(self) -> Any:
        """One row per case and model: status, passed, score (mean of the scorers), each scorer's score
        and reason, inputs, output, expected, error, exact cost (task and judge), tokens, latency and the
        case's session id (open it in a Chat, fork it, export its trace)."""
        spec = self.spec  # read once: the run's row holds it
        names = [str(s["name"]) for s in spec.get("scorers", [])]
        rows = results.result_rows(self._ws, self.run_id, names, spec["cases"], spec["models"])
        return results.results_frame(rows, names)

    def summary(self) -> Any:
        """Per model: mean score with a 95 % bootstrap interval, pass rate, exact cost, cost per case and
        per correct answer, p50/p95 latency, and whether it is on the cost–quality Pareto front."""
        return results.summary_frame(self.results())

    def pareto_chart(self) -> Any:
        """The models at (cost per case, mean score), the Pareto front drawn (a plotly figure)."""
        return results.pareto_figure(self.summary(), title=f"{self.name}: cost and quality")

    def cost_usd(self) -> Decimal:
        """What the eval's calls cost, exactly — tasks and judges, in this run and the runs it resumed —
        replayed calls at their recorded cost (what running them costs)."""
        import sqlalchemy as sa

        from cmdc_nb.store.models import CostRecord

        with self._ws.read() as db:
            total = db.scalar(
                sa.select(sa.func.coalesce(sa.func.sum(CostRecord.cost_usd), 0)).where(
                    CostRecord.workflow_run_id.in_(self._chain())
                )
            )
        return Decimal(str(total or 0))

    def spent_usd(self) -> Decimal:
        """What the eval paid: `cost_usd()` less the cases replayed from cassettes (nothing was sent)."""
        from cmdc_nb.evals.context import spent_usd

        return spent_usd(self._ws, self._chain())

    def _chain(self) -> list[uuid.UUID]:
        from cmdc_nb.evals.context import run_chain

        return run_chain(self._ws, self.run_id)

    def __repr__(self) -> str:
        return f"<EvalRun {self.name!r} {self.run_id} {'running' if not self.done() else self.status}>"


def _models(models: Any) -> list[str]:
    from cmdc_nb.kernel.options import normalize_model

    if isinstance(models, str) or not isinstance(models, Iterable):
        raise InvalidInputError(
            "must be a list of model names, such as ['openai/gpt-4o-mini']", field="models"
        )
    out = [normalize_model(m, "models") for m in models]
    if not out:
        raise InvalidInputError("name at least one model", field="models")
    if len(out) > MAX_MODELS:
        raise InvalidInputError(f"at most {MAX_MODELS} models in one eval", field="models")
    if len(set(out)) != len(out):
        raise InvalidInputError("a model is named twice", field="models")
    return out


def _scorers(scorers: Any, ds: Dataset) -> list[Scorer]:
    if isinstance(scorers, str | Mapping | Scorer) or callable(scorers):
        scorers = [scorers]
    if not isinstance(scorers, Iterable):
        raise InvalidInputError("must be a list of scorers", field="scorers")
    out = [as_scorer(s) for s in scorers]
    if not out:
        raise InvalidInputError("name at least one scorer, e.g. evals.exact()", field="scorers")
    names = [s.name for s in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise InvalidInputError(f"two scorers are named {dupes[0]!r}; give one name=…", field="scorers")
    needs = [
        s
        for s in out
        if s.kind in ("exact", "numeric") or (s.kind == "contains" and s.spec()["text"] is None)
    ]
    missing = [c.id for c in ds if c.expected is None]
    if needs and missing:
        raise InvalidInputError(
            f"{needs[0].kind} compares with the expected output, and case {missing[0]!r} has none "
            f"({len(missing)} of {len(ds)} cases lack one)",
            field="scorers",
        )
    return out


def _check_concurrency(n: Any) -> int:
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= 64:
        raise InvalidInputError("must be an integer from 1 to 64", field="concurrency")
    return n


def _check_executor(executor: Any, w: Workspace) -> None:
    if executor not in ("local", "workers"):
        raise InvalidInputError(f"{executor!r} is not one of: local, workers", field="executor")
    if executor == "workers" and w.backend != "postgresql":
        raise ConfigurationError(
            "worker processes need a PostgreSQL workspace; on SQLite, cases run in this process (executor='local')"
        )


def _budget(budget: Any) -> str | None:
    if budget is None:
        return None
    money = to_money(budget, field="budget")
    if money <= 0:
        raise InvalidInputError("must be an amount in USD above 0", field="budget")
    return str(money)


def _folder(cassettes: Any) -> str | None:
    if cassettes is None:
        return None
    if not isinstance(cassettes, str | os.PathLike):
        raise InvalidInputError("must be a folder's path", field="cassettes")
    path = Path(cassettes).expanduser().resolve()
    if path.exists() and not path.is_dir():
        raise InvalidInputError(f"{path.name} is a file; cassettes go in a folder", field="cassettes")
    return str(path)


def start_eval(
    ds: Any,
    task: Any,
    *,
    models: Sequence[str],
    scorers: Any,
    user: Any,
    name: str | None,
    budget: Any,
    cassettes: Any = None,
    executor: str = "local",
    ws: Workspace | None,
) -> uuid.UUID:
    """Check everything, then store the eval as a workflow and its run (pending) in one transaction;
    the run's id."""
    from cmdc_nb.store.enums import TriggerType
    from cmdc_nb.workflows import records
    from cmdc_nb.workflows.spec import load_spec, step

    d = dataset(ds)
    t = as_task(task)
    if isinstance(t, AgentTask):
        t.check_cases(d)
    ms = _models(models)
    sc = _scorers(scorers, d)
    label = v.text(name if name is not None else d.name, "name", max_len=150)
    uid = v.id_of(user, "user")
    data = {
        "name": label,
        "task": t.name,
        "task_kind": t.kind,
        "task_fingerprint": t.fingerprint(),
        "models": ms,
        "scorers": [s.spec() for s in sc],
        "cases": [c.as_dict() for c in d],
        "budget": _budget(budget),
        "cassettes": _folder(cassettes),
    }
    steps = [
        step(
            f"c{i:05d}-m{j}",
            "python",
            name=f"{c.id} · {m}"[:200],
            fn=STEP_FUNCTION,
            args={"case": i, "model": j},
        )
        for i, c in enumerate(d)
        for j, m in enumerate(ms)
    ]
    spec = load_spec(
        {"name": f"eval: {label}", "steps": steps, "failure_policy": "fail_fast", "tags": ["eval"]}
    )
    w = get_workspace(ws)
    _check_executor(executor, w)
    with w.transaction() as tx:
        workflow = records.create_workflow_in(tx, uid, spec)
        run = records.insert_run(
            tx, workflow, spec, uid, data, trigger_type=TriggerType.API, trigger_metadata={"eval": label}
        )
    pin(run.id, t)
    return run.id


def _launch(ws: Workspace, run_id: uuid.UUID, coro: Coroutine[Any, Any, Any]) -> EvalRun:
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        asyncio.run(coro)
        return EvalRun(run_id, ws)
    return EvalRun(run_id, ws, loop.create_task(coro, name=f"eval-{run_id}"))


def _drive(ws: Workspace, run_id: uuid.UUID, concurrency: int, executor: str) -> Coroutine[Any, Any, Any]:
    from cmdc_nb.workflows.engine import execute_workflow_run

    return execute_workflow_run(run_id, max_concurrency=concurrency, executor=executor, ws=ws)  # type: ignore[arg-type]


@checked
def run_eval(
    dataset: Any,
    task: Any,
    *,
    models: Sequence[str],
    scorers: Any,
    user: Any,
    name: str | None = None,
    concurrency: int = 4,
    budget: Decimal | str | float | int | None = None,
    cassettes: str | os.PathLike[str] | None = None,
    executor: str = "local",
    ws: Workspace | None = None,
) -> EvalRun:
    """Run `task` on every case of `dataset` with every model of `models`, and score each output.

    - `dataset`: a Dataset, a list of cases, a DataFrame or a JSONL path (see `evals.dataset`).
    - `task`: `evals.agent_task(…)`, `evals.function_task(fn)`, `evals.workflow_task(w)` or a function.
    - `scorers`: `evals.exact()`, `contains()`, `regex(…)`, `json_schema(…)`, `numeric()`, `custom(fn)`,
      `judge(model, rubric=…)` — one or a list.
    - `concurrency`: cases run at once in this process; `executor="workers"` sends them to worker
      processes instead (PostgreSQL; start them with `cmdc-nb worker --load <module with the task>`).
    - `cassettes`: a folder where each case's calls are recorded (one file per case, model and agent),
      and from which a re-run replays them: no call is sent, and the scores are the same.
    - `budget`: USD for the whole eval (tasks and judges): a call that could cross it is not sent, and
      the eval stops there; `resume_eval(run, budget=…)` goes on.

    Each case and model is stored as a session with its calls, tool uses and exact costs. Everything
    is checked before anything is stored. In a notebook this returns at once: `await` the EvalRun."""
    w = get_workspace(ws)
    n = _check_concurrency(concurrency)
    run_id = start_eval(
        dataset,
        task,
        models=models,
        scorers=scorers,
        user=user,
        name=name,
        budget=budget,
        cassettes=cassettes,
        executor=executor,
        ws=w,
    )
    return _launch(w, run_id, _drive(w, run_id, n, executor))


async def arun_eval(dataset: Any, task: Any, **kw: Any) -> EvalRun:
    """`run_eval`, awaited to the end (for async code that is not a notebook cell)."""
    handle: EvalRun = run_eval(dataset, task, **kw)
    done: EvalRun = await handle
    return done


@checked
def get_eval(run: Any, *, ws: Workspace | None = None) -> EvalRun:
    """The eval run `run` (its workflow run, or that run's id), to read its results."""
    w = get_workspace(ws)
    rid = run.run_id if isinstance(run, EvalRun) else v.id_of(run, "eval")
    handle = EvalRun(rid, w)
    if not set(handle.spec) >= _EVAL_KEYS:
        raise InvalidInputError(f"workflow run {rid} is not an eval run", field="run")
    return handle


def _set_budget(ws: Workspace, run_id: uuid.UUID, budget: str | None) -> None:
    import sqlalchemy as sa

    with ws.transaction() as tx:
        row = tx.db.execute(
            sa.select(WorkflowRun).where(WorkflowRun.id == run_id).with_for_update()
        ).scalar_one()
        row.input = {**(row.input or {}), "budget": budget}


_KEEP = object()
_EVAL_KEYS = frozenset({"name", "task", "models", "scorers", "cases"})


@checked
def resume_eval(
    run: Any,
    *,
    budget: Any = _KEEP,
    concurrency: int = 4,
    executor: str = "local",
    force: bool = False,
    ws: Workspace | None = None,
) -> EvalRun:
    """Go on with an eval that stopped: killed (its cases in flight are finished from what they stored,
    none is scored twice), paused, cancelled, or stopped by its budget (give a larger `budget=`, or
    None for none). Finished cases are never run again. Returns the EvalRun to await (in a notebook) —
    after a budget stop or a cancel it is a new run that carries the finished cases over."""
    from cmdc_nb.workflows import state

    w = get_workspace(ws)
    n = _check_concurrency(concurrency)
    _check_executor(executor, w)
    handle = get_eval(run, ws=w)
    new_budget = None if budget is _KEEP else _budget(budget)
    row = handle.run
    rid = row.id
    if row.status is WorkflowRunStatus.COMPLETED:
        raise InvalidStateError("eval", "completed", "resumed", allowed=[])
    if row.status in _TERMINAL:
        rid = state.create_retry(w, rid)
    else:
        state.recover(w, rid, force=force)
    if budget is not _KEEP:
        _set_budget(w, rid, new_budget)
    return _launch(w, rid, _drive(w, rid, n, executor))
