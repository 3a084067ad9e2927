"""Tasks: what an eval runs for each case and model.

- `agent_task(prompt=…, **agent options)` — an agent factory: for each case and model, an agent with
  these options (system prompt, tools, plugins, max_turns, …) gets the prompt made from the case's
  inputs. Its reply (the last assistant message) is the output.
- `function_task(fn)` — `fn(inputs, ctx)` computes the output itself (sync or async); `ctx.agent(…)`
  gives it agents whose calls are stored with the case. A plain function passed to `run_eval` is one.
- `workflow_task(workflow)` — each case runs the workflow with the case's inputs as its input; the
  run's output is the case's output.

Tasks are stored by name with the eval run, so a resumed run or a worker finds the same task again:
tasks register themselves under their name when made (define them at module level and `--load` that
module in workers, as for workflow step functions). Making a task again under the same name replaces it.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import json
import re
import string
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from cmdc_nb.errors import InvalidInputError, WorkflowError
from cmdc_nb.evals.dataset import Case

if TYPE_CHECKING:
    from cmdc_nb.evals.context import EvalContext

__all__ = [
    "AgentTask",
    "FunctionTask",
    "Task",
    "WorkflowTask",
    "agent_task",
    "as_task",
    "function_task",
    "get_task",
    "workflow_task",
]

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$")
_tasks: dict[str, Task] = {}
# Agent options a task may not set: the eval sets them per case.
_OWNED = frozenset(
    {"model", "session", "ws", "workflow_step", "messages", "agent_id", "name", "record_messages"}
)


class Task:
    """Something an eval runs per case and model; `await task.execute(ctx)` returns the output."""

    kind = "task"

    def __init__(self, name: str) -> None:
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidInputError(
                f"a task's name is letters, digits and . _ : / - (at most 200), got {name!r}", field="name"
            )
        self.name = name
        _tasks[name] = self

    async def execute(self, ctx: EvalContext) -> Any:
        raise NotImplementedError

    def describe(self) -> Any:
        """What makes this task what it is (hashed into `fingerprint`)."""
        return {"kind": self.kind, "name": self.name}

    def fingerprint(self) -> str:
        """A hash of the task's definition: stored with an eval, so a resume (or a worker) that finds a
        different task under the same name refuses to go on rather than mix two tasks' results."""
        text = json.dumps(self.describe(), sort_keys=True, default=_described)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r}>"


def _described(value: Any) -> str:
    """A stable text for what JSON cannot hold: a function by its import path, a tool or plugin by its
    class and name, anything else by its type (never its repr: addresses change between processes)."""
    if callable(value) and hasattr(value, "__qualname__"):
        return f"{getattr(value, '__module__', '')}:{value.__qualname__}"
    name = getattr(value, "name", None)
    return f"{type(value).__module__}.{type(value).__qualname__}:{name if isinstance(name, str) else ''}"


def prompt_fields(prompt: str) -> list[str]:
    """The `{field}`s of a prompt template, each a plain input name (no positions, no attribute or
    index lookups, no nested format specs); InvalidInputError otherwise."""
    try:
        parsed = list(string.Formatter().parse(prompt))
    except ValueError as exc:
        raise InvalidInputError(
            f"the prompt is not a template: {exc} (write {{{{ for a brace)", field="prompt"
        ) from None
    fields = []
    for _, f, spec, _ in parsed:
        if f is None:
            continue
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", f) or "{" in (spec or ""):
            raise InvalidInputError(
                f"the prompt's field {{{f}}} must be a plain input name, such as {{question}}", field="prompt"
            )
        fields.append(f)
    return fields


def _render(prompt: str | Callable[[Any], str] | None, case: Case) -> str:
    inputs = case.inputs
    if prompt is None:
        text = inputs if isinstance(inputs, str) else json.dumps(inputs, ensure_ascii=False)
    elif callable(prompt):
        text = prompt(inputs)
    elif isinstance(inputs, Mapping):
        fields = prompt_fields(prompt)
        missing = [f for f in fields if f not in inputs]
        if missing:
            raise InvalidInputError(
                f"case {case.id!r} has no input {missing[0]!r} for the prompt (it has: {', '.join(map(str, inputs))})",
                field="prompt",
            )
        text = prompt.format_map({k: v for k, v in inputs.items() if k in fields})
    else:
        text = prompt.replace("{input}", str(inputs)) if "{input}" in prompt else f"{prompt}\n\n{inputs}"
    if not isinstance(text, str) or not text.strip():
        raise InvalidInputError(f"case {case.id!r}: the prompt came out empty", field="prompt")
    return text


class AgentTask(Task):
    """An agent per case and model (see `agent_task`)."""

    kind = "agent"

    def __init__(
        self, name: str, prompt: str | Callable[[Any], str] | None, output: str, options: Mapping[str, Any]
    ) -> None:
        if prompt is not None and not isinstance(prompt, str) and not callable(prompt):
            raise InvalidInputError(
                "must be text with {input fields}, or a function of the inputs", field="prompt"
            )
        if output not in ("text", "json"):
            raise InvalidInputError("must be 'text' or 'json'", field="output")
        owned = sorted(_OWNED & set(options))
        if owned:
            raise InvalidInputError(
                f"the eval sets {owned[0]!r} for each case; leave it out of the task", field=owned[0]
            )
        from cmdc_nb.kernel.options import AgentOptions

        AgentOptions.build(model="scripted/check", **options)  # every option checked now, not per case
        if isinstance(prompt, str):
            prompt_fields(prompt)
        super().__init__(name)
        self.prompt, self.output, self.options = prompt, output, dict(options)

    def describe(self) -> Any:
        return {**super().describe(), "prompt": self.prompt, "output": self.output, "options": self.options}

    def check_cases(self, cases: Any) -> None:
        """Every case has the inputs the prompt names (said before anything runs)."""
        if not isinstance(self.prompt, str):
            return
        fields = prompt_fields(self.prompt)
        for c in cases:
            if fields and not isinstance(c.inputs, Mapping):
                raise InvalidInputError(
                    f"the prompt names {{{fields[0]}}}, and case {c.id!r}'s inputs are not a mapping",
                    field="prompt",
                )
            missing = [f for f in fields if f not in c.inputs]
            if missing:
                raise InvalidInputError(
                    f"case {c.id!r} has no input {missing[0]!r} for the prompt", field="prompt"
                )

    def prompt_for(self, case: Case) -> str:
        return _render(self.prompt, case)

    async def execute(self, ctx: EvalContext) -> Any:
        text = self.prompt_for(ctx.case)
        agent = await ctx.agent(**self.options)
        try:
            last = agent.messages[-1] if agent.messages else None
            if last is None:
                await ctx.guarded(agent.prompt(text), agent)
            elif not (last.get("role") == "assistant" and not last.get("tool_calls")):
                await ctx.guarded(agent.resume(), agent)  # cut off by a kill: finish the turn
        finally:
            await agent.stop()
        reply = _last_reply(agent.messages)
        if self.output == "json":
            from cmdc_nb.evals.scorers import _strip_fence

            try:
                return json.loads(_strip_fence(reply))
            except ValueError:
                raise WorkflowError(f"the reply is not JSON: {reply[:200]!r}", error_type="NotJSON") from None
        return reply


def _last_reply(messages: list[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "assistant" and isinstance(m.get("content"), str) and m["content"].strip():
            return str(m["content"])
    return ""


def agent_task(
    prompt: str | Callable[[Any], str] | None = None,
    *,
    name: str = "agent",
    output: str = "text",
    **options: Any,
) -> AgentTask:
    """An agent factory: for each case and model, an agent with `options` (system_prompt, tools,
    plugins, max_turns, max_tokens, temperature, …) is sent `prompt` — text whose `{field}`s are filled
    from the case's inputs, or a function of the inputs (default: the inputs themselves). Its last
    reply is the output (parsed as JSON with `output="json"`)."""
    return AgentTask(name, prompt, output, options)


class FunctionTask(Task):
    """`fn(inputs, ctx)` computes the output (see `function_task`)."""

    kind = "function"

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        if not callable(fn):
            raise InvalidInputError("must be a function of (inputs, ctx)", field="fn")
        super().__init__(name)
        self.fn = fn

    def describe(self) -> Any:
        return {**super().describe(), "fn": _described(self.fn)}

    async def execute(self, ctx: EvalContext) -> Any:
        how = _takes_context(self.fn)
        args: tuple[Any, ...] = (ctx.case.inputs, ctx) if how == "positional" else (ctx.case.inputs,)
        kwargs = {"ctx": ctx} if how == "keyword" else {}
        if inspect.iscoroutinefunction(self.fn):
            return await self.fn(*args, **kwargs)
        value = await asyncio.to_thread(self.fn, *args, **kwargs)
        return await value if inspect.isawaitable(value) else value


def _takes_context(fn: Callable[..., Any]) -> str | None:
    """How `fn` takes the context: "keyword" (a parameter named ctx), "positional" (a second positional
    parameter, whatever its name), or None."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.name == "ctx" and p.kind is not p.POSITIONAL_ONLY for p in params):
        return "keyword"
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    many = len(positional) >= 2 or any(p.kind is p.VAR_POSITIONAL for p in params)
    return "positional" if many else None


def function_task(fn: Callable[..., Any], *, name: str | None = None) -> FunctionTask:
    """A task that is a function `fn(inputs)` or `fn(inputs, ctx)` (sync or async). `ctx.agent(**options)`
    returns an agent whose calls are stored with the case (and count against the eval's budget);
    `ctx.model` is the model under test."""
    if name is None:
        qualname = str(getattr(fn, "__qualname__", "task"))
        if "<" in qualname:
            raise InvalidInputError(
                "a lambda or a nested function needs a name: function_task(fn, name='…')", field="name"
            )
        name = f"{getattr(fn, '__module__', '')}:{qualname}"
    return FunctionTask(fn, name)


class WorkflowTask(Task):
    """Each case runs a stored workflow with the case's inputs as the run's input."""

    kind = "workflow"

    def __init__(self, workflow: Any, name: str) -> None:
        super().__init__(name)
        self.workflow = workflow

    def describe(self) -> Any:
        return {**super().describe(), "workflow": self.workflow}

    async def execute(self, ctx: EvalContext) -> Any:
        return await ctx.run_workflow(self.workflow)


def workflow_task(workflow: Any, *, name: str | None = None) -> WorkflowTask:
    """A task that runs `workflow` (a stored workflow, its id or slug-less id text) once per case, with
    the case's inputs (a mapping) as the run's input and the model under test as `input.model`. The
    run's output is the case's output; its agent calls' costs are the case's."""
    from cmdc_nb._plumbing import validate as v

    wid = v.id_of(workflow, "workflow")
    return WorkflowTask(str(wid), name or f"workflow:{wid}")


_pinned: dict[str, Task] = {}  # run id -> the task object the eval started with, in this process


def pin(run_id: Any, task: Task) -> None:
    """The task object an eval started with in this process: its cases run with it whatever is made
    under its name later (a notebook cell making another task of that name)."""
    _pinned[str(run_id)] = task


def pinned(run_id: Any) -> Task | None:
    """The task an eval run started with in this process, if it did."""
    return _pinned.get(str(run_id))


def task_for(run_id: Any, name: str, fingerprint: str | None, retry_of: Any = None) -> Task:
    """The eval's task: the object it started with (in this process), else the one registered under its
    name, which must be the same definition (its fingerprint) — else the eval stops and says why."""
    task = _pinned.get(str(run_id)) or (_pinned.get(str(retry_of)) if retry_of is not None else None)
    if task is None:
        task = get_task(name)
        if fingerprint is not None and task.fingerprint() != fingerprint:
            raise WorkflowError(
                f"the task {name!r} in this process is not the one this eval started with (it was made again "
                "differently): make it as it was, or start a new eval",
                error_type="TaskChanged",
            )
        pin(run_id, task)
    return task


def get_task(name: str) -> Task:
    """The task registered under `name` (or a function found by its import path `module:qualname`)."""
    task = _tasks.get(name)
    if task is not None:
        return task
    if ":" in name and not name.startswith("workflow:"):
        from cmdc_nb.workflows.functions import resolve_function

        try:
            return FunctionTask(resolve_function(name), name)
        except InvalidInputError:
            pass
    if name.startswith("workflow:"):
        return WorkflowTask(name.removeprefix("workflow:"), name)
    raise InvalidInputError(
        f"no task named {name!r} in this process: run the cell (or import the module, `--load` for workers) "
        "that makes it",
        field="task",
    )


def as_task(task: Any) -> Task:
    """A Task; a function becomes a function task (it must be findable by `module:qualname`)."""
    if isinstance(task, Task):
        return task
    if callable(task):
        from cmdc_nb.workflows.functions import function_ref

        try:
            ref = function_ref(task, "task")
        except Exception as exc:
            raise InvalidInputError(str(exc), field="task") from None
        return FunctionTask(task, ref)
    raise InvalidInputError(
        f"{type(task).__name__} is not a task: use evals.agent_task(…), evals.function_task(fn), "
        "evals.workflow_task(workflow) or a function of (inputs, ctx)",
        field="task",
    )
