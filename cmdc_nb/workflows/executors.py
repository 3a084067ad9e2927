"""What each step type does once the engine has claimed it and rendered its config.

An executor is `async (step, config, ctx) -> StepResult`. It raises to fail the attempt (the engine
retries per the step's policy) and never writes step or run rows itself: the engine records the outcome
in one transaction. Approval steps have no executor: the engine turns them into approval items.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import os
import uuid
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import jsonable
from cmdc_nb._plumbing.workspace import Tx, Workspace
from cmdc_nb.errors import WorkflowError
from cmdc_nb.store.enums import StepType
from cmdc_nb.workflows.functions import resolve_function
from cmdc_nb.workflows.spec import StepSpec
from cmdc_nb.workflows.templates import truthy

__all__ = ["EXECUTORS", "StepContext", "StepResult", "register_executor"]

_MAX_STREAM = 64_000


@dataclass
class StepContext:
    """Handed to python step functions that take a `ctx` parameter (and to every executor).

    A step runs at least once: a step completed is never run again, but one cut off by a crash (its
    process killed) runs again on resume, and a failed attempt runs again under its retry policy.
    `idempotency_key` (`"{run_id}:{step_id}"`) names one logical execution of the step, so the same
    key comes back for every attempt of it: after a crash (`resume_workflow_run`, in this process or
    on a worker) and after a policy retry. `retry_workflow_run` makes a new run, whose steps that run
    again are new executions with new keys (the steps it carries over keep theirs). Record the key
    atomically with the step's effect — give it to an API that deduplicates by key, or store it as a
    unique key in the same write as the effect — and the effect is applied exactly once.

    `attempt` is the policy attempt, from 1 (a re-run after a crash repeats the same number);
    `resumed` says this execution follows one that was cut off. `tx` is the open transaction of a
    `transactional` step: writes made through it commit together with the step's outcome, or not at
    all. `steps` holds the outputs of the steps this one depends on, directly or not
    (`{"fetch": {"output": …}}`) — the only ones certain to be finished.

    >>> @wf.step_function("charge")                                               # doctest: +SKIP
    ... def charge(order: str, cents: int, ctx: wf.StepContext) -> str:
    ...     return payments.charge(order, cents, idempotency_key=ctx.idempotency_key).id
    """

    ws: Workspace
    run_id: uuid.UUID
    step_id: str
    step_row_id: uuid.UUID
    user_id: uuid.UUID
    attempt: int
    idempotency_key: str
    input: Mapping[str, Any]
    steps: Mapping[str, Any]
    workflow_name: str = ""
    session_id: uuid.UUID | None = None
    resumed: bool = False
    tx: Tx | None = None
    emit: Callable[[str, Mapping[str, Any]], None] = field(default=lambda type, payload: None, repr=False)


@dataclass
class StepResult:
    output: Any = None
    tokens_in: int = 0
    tokens_out: int = 0
    cost_usd: Decimal | None = None
    agent_call_id: uuid.UUID | None = None
    meta: dict[str, Any] = field(default_factory=dict)


Executor = Callable[[StepSpec, dict[str, Any], StepContext], Awaitable[StepResult]]
EXECUTORS: dict[StepType, Executor] = {}


@checked
def register_executor(step_type: StepType | str) -> Callable[[Executor], Executor]:
    """A decorator installing (or replacing) the executor of a step type."""

    def add(f: Executor) -> Executor:
        EXECUTORS[StepType(step_type)] = f
        return f

    return add


def checked_output(value: Any, step_id: str) -> Any:
    """The output as stored: JSON values only (UUIDs, dates and Decimals become strings)."""
    out = jsonable(value)
    try:
        json.dumps(out)
    except (TypeError, ValueError):
        raise WorkflowError(
            f"step {step_id!r} returned {type(value).__name__}, which is not JSON (return dicts, lists, "
            "strings, numbers, booleans or None)",
            step_id=step_id,
            error_type="OutputNotJSON",
        ) from None
    return out


@register_executor(StepType.TRANSFORM)
async def _transform(step: StepSpec, config: dict[str, Any], ctx: StepContext) -> StepResult:
    return StepResult(output=config["value"])


@register_executor(StepType.CONDITION)
async def _condition(step: StepSpec, config: dict[str, Any], ctx: StepContext) -> StepResult:
    return StepResult(output=truthy(config["if"]))


def _wants_ctx(fn: Callable[..., Any]) -> bool:
    try:
        return "ctx" in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


def call_python(fn: Callable[..., Any], config: Mapping[str, Any], ctx: StepContext) -> Any:
    """Call a sync step function (in the caller's thread: a transactional step's transaction is there)."""
    args = config.get("args") or {}
    if not isinstance(args, Mapping):
        raise WorkflowError(f"step {ctx.step_id!r}: config.args must be a mapping", step_id=ctx.step_id)
    kwargs = dict(args)
    if _wants_ctx(fn):
        kwargs["ctx"] = ctx
    return fn(**kwargs)


@register_executor(StepType.PYTHON)
async def _python(step: StepSpec, config: dict[str, Any], ctx: StepContext) -> StepResult:
    fn = resolve_function(str(config["function"]))
    if inspect.iscoroutinefunction(fn):
        args = dict(config.get("args") or {})
        if _wants_ctx(fn):
            args["ctx"] = ctx
        value = await fn(**args)
    else:
        value = await asyncio.to_thread(call_python, fn, config, ctx)
        if inspect.isawaitable(value):
            value = await value
    return StepResult(output=value)


@register_executor(StepType.SHELL)
async def _shell(step: StepSpec, config: dict[str, Any], ctx: StepContext) -> StepResult:
    command = config["command"]
    env = {**os.environ, **{str(k): str(x) for k, x in (config.get("env") or {}).items()}}
    env["CMDC_IDEMPOTENCY_KEY"] = ctx.idempotency_key
    env["CMDC_STEP_ATTEMPT"] = str(ctx.attempt)
    cwd = config.get("cwd")
    if isinstance(command, list):
        proc = await asyncio.create_subprocess_exec(
            *map(str, command),
            cwd=cwd,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
    elif isinstance(command, str):
        proc = await asyncio.create_subprocess_shell(
            command, cwd=cwd, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
        )
    else:
        raise WorkflowError(f"step {step.id!r}: command must be text or a list", step_id=step.id)
    try:
        out, err = await proc.communicate()
    except asyncio.CancelledError:
        proc.kill()
        await proc.wait()
        raise
    result = {
        "exit_code": proc.returncode,
        "stdout": out.decode("utf-8", "replace")[-_MAX_STREAM:],
        "stderr": err.decode("utf-8", "replace")[-_MAX_STREAM:],
    }
    if proc.returncode != 0 and not config.get("allow_failure", False):
        tail = str(result["stderr"]).strip().splitlines()[-1:] or [""]
        raise WorkflowError(
            f"step {step.id!r}: command exited with {proc.returncode}: {tail[0][:300]}",
            step_id=step.id,
            error_type="CommandFailed",
        )
    return StepResult(output=result)


@register_executor(StepType.TOOL)
async def _tool(step: StepSpec, config: dict[str, Any], ctx: StepContext) -> StepResult:
    from cmdc_nb.kernel.tools import ToolContext, ToolError
    from cmdc_nb.toolkit import LocalSandbox, builtin_tools

    name = str(config["tool"])
    tools = {t.name: t for t in builtin_tools()}
    if name not in tools:
        raise WorkflowError(
            f"step {step.id!r}: no tool named {name!r}; there are: {', '.join(sorted(tools))}",
            step_id=step.id,
        )
    workdir = str(config.get("working_dir") or os.getcwd())
    tctx = ToolContext(
        agent_id=f"workflow:{ctx.run_id}",
        session_id=str(ctx.session_id) if ctx.session_id else None,
        working_dir=workdir,
        user_data={"idempotency_key": ctx.idempotency_key, "attempt": ctx.attempt},
        tool_name=name,
        sandbox=LocalSandbox(workdir),
    )
    try:
        result = await tools[name].invoke(dict(config.get("args") or {}), tctx)
    except ToolError as exc:
        raise WorkflowError(f"step {step.id!r}: {exc}", step_id=step.id, error_type="ToolError") from None
    if result.is_error:
        raise WorkflowError(
            f"step {step.id!r}: {result.content[:500]}", step_id=step.id, error_type="ToolError"
        )
    return StepResult(output=result.content)


@register_executor(StepType.AGENT_CALL)
async def _agent_call(step: StepSpec, config: dict[str, Any], ctx: StepContext) -> StepResult:
    from cmdc_nb.kernel.agent import Agent
    from cmdc_nb.toolkit import builtin_tools

    session_id = ctx.session_id
    if session_id is None:
        session_id = await asyncio.to_thread(_run_session, ctx)
    tools = builtin_tools(include=config["tools"]) if config.get("tools") else []
    options: dict[str, Any] = {
        "model": config.get("model") or "scripted/default",
        "system_prompt": config.get("system_prompt"),
        "tools": tools,
        "max_turns": int(config.get("max_turns", 20)),
        "session": session_id,
        "ws": ctx.ws,
        "workflow_step": (ctx.run_id, ctx.step_row_id),
        "name": f"{ctx.workflow_name}/{step.id}",
    }
    if config.get("working_dir"):
        options["working_dir"] = config["working_dir"]
    for key in ("temperature", "max_tokens", "fallback_models"):
        if config.get(key) is not None:
            options[key] = config[key]
    agent = Agent(**options)
    try:
        reply = await agent.prompt(str(config["prompt"]))
    finally:
        await agent.stop()
    tokens_in, tokens_out, cost, last_call = await asyncio.to_thread(_call_totals, ctx)
    output: Any = reply
    if config.get("output") == "json":
        try:
            output = json.loads(reply)
        except ValueError:
            raise WorkflowError(
                f"step {step.id!r}: the reply is not JSON: {reply[:200]!r}",
                step_id=step.id,
                error_type="NotJSON",
            ) from None
    return StepResult(
        output=output, tokens_in=tokens_in, tokens_out=tokens_out, cost_usd=cost, agent_call_id=last_call
    )


def _run_session(ctx: StepContext) -> uuid.UUID:
    """The run's session (created on first need, in one transaction, and linked to the run)."""
    import sqlalchemy as sa

    from cmdc_nb.services import sessions
    from cmdc_nb.store.models import WorkflowRun

    with ctx.ws.transaction() as tx:
        run = tx.db.execute(
            sa.select(WorkflowRun).where(WorkflowRun.id == ctx.run_id).with_for_update()
        ).scalar_one()
        if run.session_id is not None:
            return run.session_id
        s = sessions.create_session(
            ctx.user_id,
            name=f"{ctx.workflow_name or 'workflow'} run {str(ctx.run_id)[:8]}",
            purpose="workflow run",
            tags=["workflow"],
            ws=ctx.ws,
        )
        run.session_id = s.id
        return s.id


def _call_totals(ctx: StepContext) -> tuple[int, int, Decimal | None, uuid.UUID | None]:
    import sqlalchemy as sa

    from cmdc_nb.store.models import AgentCall

    with ctx.ws.read() as db:
        rows = db.execute(
            sa.select(
                AgentCall.id,
                AgentCall.tokens_in,
                AgentCall.tokens_out,
                AgentCall.cost_usd,
                AgentCall.inserted_at,
            )
            .where(AgentCall.workflow_step_id == ctx.step_row_id)
            .order_by(AgentCall.inserted_at)
        ).all()
    tin = sum(r.tokens_in or 0 for r in rows)
    tout = sum(r.tokens_out or 0 for r in rows)
    costs = [r.cost_usd for r in rows if r.cost_usd is not None]
    return tin, tout, (sum(costs, Decimal(0)) if costs else None), (rows[-1].id if rows else None)


@register_executor(StepType.RAG_QUERY)
async def _rag_query(step: StepSpec, config: dict[str, Any], ctx: StepContext) -> StepResult:
    from cmdc_nb import rag

    hits = await asyncio.to_thread(
        rag.search,
        config["index"],
        str(config["query"]),
        k=int(config.get("k", 5)),
        mode=config.get("mode", "hybrid"),
        language=config.get("language"),
        path=config.get("path"),
        user=ctx.user_id,
        ws=ctx.ws,
    )
    return StepResult(output=[h.as_dict() for h in hits])
