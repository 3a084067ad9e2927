"""Evaluations: run one task over a dataset with several models, score every output, and compare
quality, exact cost and latency side by side.

>>> from cmdc_nb import evals
>>> ds = evals.dataset([{"inputs": {"q": "2+2"}, "expected": "4"}, …])           # doctest: +SKIP
>>> task = evals.agent_task("Answer with the number only: {q}", name="arith")    # doctest: +SKIP
>>> run = await evals.run_eval(ds, task, models=["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"],
...                            scorers=[evals.numeric()], user=me, budget="1.00")  # doctest: +SKIP
>>> run.summary()        # mean score ± 95 % CI, pass rate, cost per correct answer, p50/p95 latency
>>> run.pareto_chart()   # the cost–quality front

Each case and model is a stored session (its calls, tool uses and costs, like any chat), and the eval
is a workflow run of one step per case and model: it resumes after a kill without running or paying
for a finished case again, and runs on worker processes with `executor="workers"`. See docs/evals.md.
"""

from __future__ import annotations

from cmdc_nb.evals.context import EvalContext
from cmdc_nb.evals.dataset import Case, Dataset, dataset
from cmdc_nb.evals.runs import EvalRun, arun_eval, get_eval, resume_eval, run_eval
from cmdc_nb.evals.scorers import (
    Score,
    Scorer,
    contains,
    custom,
    exact,
    json_schema,
    judge,
    numeric,
    regex,
)
from cmdc_nb.evals.tasks import (
    AgentTask,
    FunctionTask,
    Task,
    WorkflowTask,
    agent_task,
    function_task,
    workflow_task,
)

__all__ = [
    "AgentTask",
    "Case",
    "Dataset",
    "EvalContext",
    "EvalRun",
    "FunctionTask",
    "Score",
    "Scorer",
    "Task",
    "WorkflowTask",
    "agent_task",
    "arun_eval",
    "contains",
    "custom",
    "dataset",
    "exact",
    "function_task",
    "get_eval",
    "json_schema",
    "judge",
    "numeric",
    "regex",
    "resume_eval",
    "run_eval",
    "workflow_task",
]
