"""The seed's facade: module-level functions that take an agent or its id (the session id when it
stores to one). An unknown id raises NotFoundError; a stopped agent raises AgentNotAliveError.

>>> agent = create_agent(model="scripted/demo", tools=[add], session=s)   # doctest: +SKIP
>>> handle = prompt(agent.id, "What is 2 + 3?")                           # doctest: +SKIP
>>> await collect_reply(agent.id)                                           # doctest: +SKIP
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from cmdc_nb.errors import AgentNotAliveError, NotFoundError
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.agent import Agent, EndReason, PromptHandle, SteerResult
from cmdc_nb.kernel.tools import Tool

__all__ = [
    "abort",
    "agent_of",
    "approve",
    "attach_tool",
    "attach_tools",
    "collect_reply",
    "create_agent",
    "detach_tool",
    "detach_tools",
    "list_agents",
    "messages",
    "monitor",
    "prompt",
    "reject",
    "replace_tools",
    "resume_agent",
    "status",
    "steer",
    "stop",
    "subscribe",
    "switch_model",
    "user_respond",
]

_agents: dict[str, Agent] = {}
_lock = threading.Lock()

AgentRef = Agent | str | Any


def _register(agent: Agent) -> Agent:
    with _lock:
        old = _agents.get(agent.id)
        if old is not None and old is not agent and old.alive:
            raise AgentNotAliveError(agent.id, "another live agent already uses this id; stop it first")
        _agents[agent.id] = agent
    return agent


def create_agent(**options: Any) -> Agent:
    """A new agent (options as in AgentOptions), registered under its id."""
    return _register(Agent(**options))


def resume_agent(session: Any, **options: Any) -> Agent:
    """Rebuild the agent of a stored session (its messages become the conversation). If its last turn
    was interrupted, call `agent.resume()` (or `await resume_agent(...).resume()`) to finish it."""
    old = _agents.get(str(getattr(session, "id", session)))
    if old is not None and old.alive:
        raise AgentNotAliveError(old.id, "a live agent already runs this session; use it, or stop it first")
    return _register(Agent.from_session(session, **options))


def agent_of(ref: AgentRef) -> Agent:
    """The live agent `ref` names (an Agent, its id, or its session / session id)."""
    if isinstance(ref, Agent):
        agent = ref
    else:
        key = str(getattr(ref, "id", ref))
        with _lock:
            found = _agents.get(key)
        if found is None:
            raise NotFoundError("agent", key)
        agent = found
    if not agent.alive:
        raise AgentNotAliveError(agent.id)
    return agent


def list_agents() -> list[Agent]:
    with _lock:
        return [a for a in _agents.values() if a.alive]


def prompt(ref: AgentRef, text: str, *, files: Any = None) -> PromptHandle:
    return agent_of(ref).prompt(text, files=files)


async def collect_reply(ref: AgentRef, *, timeout: float | None = 60.0) -> str:
    return await agent_of(ref).collect_reply(timeout)


def steer(ref: AgentRef, text: str) -> SteerResult:
    return agent_of(ref).steer(text)


def abort(ref: AgentRef, *, reason: Any = None, kill_tools: str = "running", clear_queue: bool = True) -> str:
    return agent_of(ref).abort(reason, kill_tools=kill_tools, clear_queue=clear_queue)


def approve(
    ref: AgentRef,
    tool_ref: str,
    *,
    args: Mapping[str, Any] | None = None,
    note: str | None = None,
    auto_resume: bool = True,
    remember: bool = False,
    by: Any = None,
) -> asyncio.Future[None] | None:
    """Approve a waiting tool call; see `Agent.approve` (await the result to see the write's errors)."""
    return agent_of(ref).approve(
        tool_ref, args=args, note=note, auto_resume=auto_resume, remember=remember, by=by
    )


def reject(
    ref: AgentRef, tool_ref: str, *, note: str | None = None, auto_resume: bool = False, by: Any = None
) -> asyncio.Future[None] | None:
    """Deny a waiting tool call; see `Agent.reject`."""
    return agent_of(ref).reject(tool_ref, note=note, auto_resume=auto_resume, by=by)


def user_respond(ref: AgentRef, input_ref: str, response: str) -> None:
    agent_of(ref).user_respond(input_ref, response)


def switch_model(
    ref: AgentRef, model: str, *, provider_opts: Mapping[str, Any] | None = None, reason: str | None = None
) -> None:
    agent_of(ref).switch_model(model, provider_opts=provider_opts, reason=reason)


def attach_tool(ref: AgentRef, tool: Tool | Callable[..., Any]) -> str:
    return agent_of(ref).attach_tool(tool)


def attach_tools(ref: AgentRef, tools: Iterable[Tool | Callable[..., Any]]) -> list[str]:
    return agent_of(ref).attach_tools(tools)


def detach_tool(ref: AgentRef, name: str) -> str:
    return agent_of(ref).detach_tool(name)


def detach_tools(ref: AgentRef, names: Iterable[str]) -> list[str]:
    return agent_of(ref).detach_tools(names)


def replace_tools(ref: AgentRef, tools: Iterable[Tool | Callable[..., Any]]) -> tuple[list[str], list[str]]:
    return agent_of(ref).replace_tools(tools)


def status(ref: AgentRef) -> dict[str, Any]:
    return agent_of(ref).status()


def monitor(ref: AgentRef) -> asyncio.Future[EndReason]:
    return agent_of(ref).monitor()


def messages(ref: AgentRef) -> list[dict[str, Any]]:
    return [dict(m) for m in agent_of(ref).messages]


def subscribe(
    ref: AgentRef,
    callback: Callable[[ev.Envelope], None] | None = None,
    *,
    since: int | None = None,
    types: Iterable[str] | None = None,
) -> ev.EventSubscription:
    """Replay the agent's buffered events after `since` (filtered by `types`), then follow live.
    Without a callback, returns an async iterator: `async for env in subscribe(agent): …`."""
    return agent_of(ref).events.subscribe(callback, since=since, types=types)


async def stop(ref: AgentRef) -> None:
    agent = agent_of(ref)
    await agent.stop()
    with _lock:
        if _agents.get(agent.id) is agent:
            del _agents[agent.id]
