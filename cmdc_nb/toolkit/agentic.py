"""The built-in tools that act on the agent itself: task (run a sub-agent), ask_user, write_todos and
compact_conversation."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, ClassVar, Literal

import pydantic

from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.options import SubAgent
from cmdc_nb.kernel.tools import Tool, ToolContext, ToolError, tool
from cmdc_nb.providers import TokenUsage

__all__ = [
    "AGENT_TOOLS",
    "SubagentEnd",
    "SubagentStart",
    "Todo",
    "TodoChange",
    "ask_user",
    "compact_conversation",
    "run_subagent",
    "task",
    "write_todos",
]


@ev.register_event_type
@dataclass(frozen=True, slots=True)
class SubagentStart(ev.AgentEvent):
    type: ClassVar[str] = "subagent_start"
    name: str
    agent_id: str
    task: str


@ev.register_event_type
@dataclass(frozen=True, slots=True)
class SubagentEnd(ev.AgentEvent):
    type: ClassVar[str] = "subagent_end"
    name: str
    agent_id: str
    ok: bool
    reply: str
    usage: TokenUsage
    cost_usd: Decimal | None


@ev.register_event_type
@dataclass(frozen=True, slots=True)
class TodoChange(ev.AgentEvent):
    type: ClassVar[str] = "todo_change"
    todos: tuple[Mapping[str, Any], ...]


GENERAL_PURPOSE = SubAgent(
    name="general-purpose",
    description="A general-purpose helper with the same tools (except task) and model as its parent.",
)


def _agent(ctx: ToolContext) -> Any:
    if ctx.agent is None:
        raise ToolError("this tool must be called by an agent")
    return ctx.agent


def _inherited_plugins(parent: Any) -> list[Any]:
    """Fresh copies of the parent's safety plugins (SecurityGuard, HumanApproval, …): the child works in
    the parent's sandbox, so it keeps the parent's limits."""
    return [copy.copy(p) for p in parent.plugins.plugins if getattr(p, "inherited_by_subagents", False)]


async def run_subagent(parent: Any, spec: SubAgent, description: str) -> tuple[str, Any]:
    """Run `spec` on `description` in isolation (its own messages, no `task` tool); returns its reply and
    the child agent. Its calls and costs are stored under the parent's session, its messages are not."""
    from cmdc_nb.kernel.agent import Agent

    opts = parent.options
    tools = [t for t in (spec.tools if spec.tools is not None else parent.tools.values()) if t.name != "task"]
    child = Agent(
        model=spec.model or parent.model,
        tools=tools,
        system_prompt=spec.system_prompt if spec.system_prompt is not None else opts.system_prompt,
        plugins=_inherited_plugins(parent) + (list(spec.plugins) if spec.plugins is not None else []),
        user_data=dict(spec.user_data) if spec.user_data is not None else dict(opts.user_data),
        prompt_mode=spec.prompt_mode,
        working_dir=opts.working_dir,
        sandbox=parent.sandbox,
        session=opts.session,
        ws=opts.ws,
        record_messages=False,
        provider_opts=dict(parent.provider_opts),
        retry=opts.retry,
        cassette=opts.cassette,
        max_turns=opts.max_turns,
        name=f"{spec.name} (sub-agent of {parent.id[:8]})",
    )
    parent.emit(SubagentStart(spec.name, child.id, description))
    ok, reply = False, ""
    try:
        reply = await asyncio.wait_for(child.prompt(description), spec.timeout_s)
        ok = True
        return reply, child
    except TimeoutError:
        child.abort("timeout")
        raise ToolError(f"sub-agent {spec.name!r} did not finish within {spec.timeout_s:g} s") from None
    except Exception as exc:
        raise ToolError(f"sub-agent {spec.name!r} failed: {exc}") from None
    finally:
        parent.emit(SubagentEnd(spec.name, child.id, ok, reply, child.usage, child.cost_usd))
        await child.stop()


@tool(timeout_s=None)
async def task(description: str, ctx: ToolContext, subagent_type: str = "general-purpose") -> str:
    """Hand a self-contained task to a sub-agent and get its final answer.

    Args:
        description: everything the sub-agent needs to know to do the task
        subagent_type: which sub-agent (see the agent's sub-agents; default general-purpose)
    """
    parent = _agent(ctx)
    specs = {s.name: s for s in parent.options.subagents}
    specs.setdefault(GENERAL_PURPOSE.name, GENERAL_PURPOSE)
    spec = specs.get(subagent_type)
    if spec is None:
        raise ToolError(f"unknown sub-agent {subagent_type!r}; available: {', '.join(sorted(specs))}")
    reply, _child = await run_subagent(parent, spec, description)
    return reply


@tool(timeout_s=None)
async def ask_user(question: str, ctx: ToolContext, options: list[str] | None = None) -> str:
    """Ask the person at the notebook a question and wait for the answer.

    Args:
        question: what to ask
        options: choices to offer (leave empty for a free answer)
    """
    if ctx.ask_user is None:
        raise ToolError("nobody to ask: this agent has no user channel")
    choices = [{"id": str(i + 1), "label": o} for i, o in enumerate(options or [])]
    try:
        return await ctx.ask_user(question, choices, 300.0)
    except TimeoutError:
        raise ToolError("no answer within 300 s") from None


class Todo(pydantic.BaseModel):
    id: str
    content: str
    status: Literal["pending", "in_progress", "completed", "cancelled"] = "pending"


@tool
def write_todos(todos: list[Todo], ctx: ToolContext) -> str:
    """Replace the to-do list (at most one item in_progress at a time).

    Args:
        todos: the whole list: id, content, status (pending, in_progress, completed, cancelled)
    """
    if sum(t.status == "in_progress" for t in todos) > 1:
        raise ToolError("at most one to-do may be in_progress")
    if len({t.id for t in todos}) != len(todos):
        raise ToolError("to-do ids must be unique")
    agent = _agent(ctx)
    agent.todos = [t.model_dump() for t in todos]
    agent.emit(TodoChange(tuple(agent.todos)))
    done = sum(t.status == "completed" for t in todos)
    return f"to-do list updated: {done}/{len(todos)} done"


@tool
async def compact_conversation(ctx: ToolContext, keep_last: int = 6) -> str:
    """Summarise the older part of the conversation to free context (the history is kept in a file).

    Args:
        keep_last: how many recent messages to keep as they are
    """
    agent = _agent(ctx)
    before = len(agent.messages)
    event = await agent.compact(keep_last=max(2, keep_last), during_run=True)
    if event is None:
        return f"nothing to compact ({before} messages)"
    return (
        f"compacted: {event.messages_before} messages → {event.messages_after} ({event.removed} summarised)"
    )


AGENT_TOOLS: tuple[Tool, ...] = (task, ask_user, write_todos, compact_conversation)
