"""The system prompt, by prompt mode: full (base prompt, tools, context), task (compact), minimal
(tool names only) or none (only yours). Every mode ends with the plugins' context sections."""

from __future__ import annotations

from typing import Any

__all__ = ["BASE_PROMPT", "TASK_PROMPT", "build_system_prompt"]

BASE_PROMPT = """You are an AI agent run from a Jupyter notebook through cmdc_nb.
Work step by step. Use the tools when they help, and only the tools you are given; never invent tool
results. Some tool calls wait for a person to approve them: if one is denied, do not retry it unchanged —
explain or try another way. Be concise, and say plainly when you do not know."""

TASK_PROMPT = """You are a focused sub-agent. Do the task you are given with the tools you have, then
reply with the result only."""


def build_system_prompt(agent: Any) -> str:
    """The system prompt the next request carries (agent: a kernel Agent)."""
    opts = agent.options
    parts: list[str] = []
    mode = opts.prompt_mode
    if mode == "full":
        parts.append(BASE_PROMPT)
        parts.append(f"Working directory: {opts.working_dir}")
    elif mode == "task":
        parts.append(TASK_PROMPT)
    if opts.system_prompt:
        parts.append(opts.system_prompt)
    if agent.tools and mode == "full":
        parts.append(
            "## Tools\n"
            + "\n".join(f"- {t.name}: {t.description.splitlines()[0]}" for t in agent.tools.values())
        )
    elif agent.tools and mode == "minimal":
        parts.append("Tools: " + ", ".join(agent.tools))
    for key, text in agent.system_context.items():
        parts.append(f"## {key}\n{text}")
    return "\n\n".join(p for p in parts if p)
