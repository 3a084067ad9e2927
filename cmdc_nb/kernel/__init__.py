"""The agent kernel: an asyncio agent loop over litellm, with tools, plugins, steering, abort,
approvals and replayable events — made to run inside a notebook's event loop without blocking it.

>>> from cmdc_nb.kernel import Agent, tool
>>> from cmdc_nb.providers import Script, Turn, call
>>> @tool
... def add(a: int, b: int) -> int:
...     "Add two integers."
...     return a + b
>>> script = Script([Turn(tool_calls=[call("add", a=2, b=3)]), Turn("2 + 3 = 5")])
>>> Agent(model=script.model, tools=[add]).run("What is 2 + 3?")   # doctest: +SKIP
'2 + 3 = 5'

In a notebook: `handle = agent.prompt("…")` returns at once; `await handle` waits for the reply.
The module-level functions (`prompt`, `steer`, `abort`, `approve`, …) are the seed's facade: they take
an agent or its id.
"""

from __future__ import annotations

from cmdc_nb.kernel import events
from cmdc_nb.kernel.agent import (
    ABORT_REASONS,
    Agent,
    AgentState,
    EndReason,
    PromptHandle,
    SteerResult,
    normalize_abort_reason,
)
from cmdc_nb.kernel.events import AgentEvent, register_event_type
from cmdc_nb.kernel.facade import (
    abort,
    agent_of,
    approve,
    attach_tool,
    attach_tools,
    collect_reply,
    create_agent,
    detach_tool,
    detach_tools,
    list_agents,
    messages,
    monitor,
    prompt,
    reject,
    replace_tools,
    resume_agent,
    status,
    steer,
    stop,
    subscribe,
    switch_model,
    user_respond,
)
from cmdc_nb.kernel.options import PROMPT_MODES, AgentOptions, SubAgent
from cmdc_nb.kernel.plugins import (
    ALLOWED,
    Abort,
    Action,
    BlockTool,
    Continue,
    Emit,
    Hook,
    HookEvent,
    Intervene,
    Plugin,
    ReplaceToolArgs,
    ReplaceToolResult,
    RequireApproval,
    Skip,
    SwitchModel,
    hook_action_matrix,
)
from cmdc_nb.kernel.tools import Tool, ToolContext, ToolError, ToolResult, tool
from cmdc_nb.providers import _litellm

__all__ = [
    "ABORT_REASONS",
    "ALLOWED",
    "PROMPT_MODES",
    "Abort",
    "Action",
    "Agent",
    "AgentEvent",
    "AgentOptions",
    "AgentState",
    "BlockTool",
    "Continue",
    "Emit",
    "EndReason",
    "Hook",
    "HookEvent",
    "Intervene",
    "Plugin",
    "PromptHandle",
    "ReplaceToolArgs",
    "ReplaceToolResult",
    "RequireApproval",
    "Skip",
    "SteerResult",
    "SubAgent",
    "SwitchModel",
    "Tool",
    "ToolContext",
    "ToolError",
    "ToolResult",
    "abort",
    "agent_of",
    "approve",
    "attach_tool",
    "attach_tools",
    "collect_reply",
    "create_agent",
    "detach_tool",
    "detach_tools",
    "events",
    "hook_action_matrix",
    "list_agents",
    "messages",
    "monitor",
    "normalize_abort_reason",
    "prompt",
    "register_event_type",
    "reject",
    "replace_tools",
    "resume_agent",
    "status",
    "steer",
    "stop",
    "subscribe",
    "switch_model",
    "tool",
    "user_respond",
]

# An agent is coming: litellm (seconds to import and warm) starts loading in a daemon thread now, so
# the notebook's think time hides it; skipped where CMDC_NB_OFFLINE is set (providers._litellm).
_litellm.preload()
