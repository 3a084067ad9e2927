"""Blueprints: reusable agent configurations. A blueprint holds options, plugin factories (so each agent
gets fresh plugin state) and tools; `create(**overrides)` makes an agent from it.

>>> coder = CODER.add_tools(my_tool)                  # doctest: +SKIP
>>> agent = coder.create(model="openai/gpt-4o-mini", working_dir="repo")   # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from cmdc_nb.kernel.agent import Agent
from cmdc_nb.kernel.options import AgentOptions
from cmdc_nb.kernel.plugins import Plugin
from cmdc_nb.kernel.tools import Tool, as_tool
from cmdc_nb.plugins.hygiene import EventLogger, LargeResultOffload, PatchToolCalls
from cmdc_nb.plugins.security import HumanApproval, SecurityGuard

__all__ = ["BASE", "CODER", "Blueprint"]

PluginFactory = Callable[[], Plugin]


@dataclass(frozen=True)
class Blueprint:
    name: str
    description: str = ""
    tools: tuple[Tool, ...] = ()
    plugins: tuple[PluginFactory, ...] = ()
    options: Mapping[str, Any] = field(default_factory=dict)

    def add_tools(self, *tools: Tool | Callable[..., Any]) -> Blueprint:
        return replace(self, tools=(*self.tools, *(as_tool(t) for t in tools)))

    def add_plugins(self, *plugins: PluginFactory) -> Blueprint:
        """Plugin classes or zero-argument factories (a fresh instance per agent)."""
        return replace(self, plugins=(*self.plugins, *plugins))

    def with_options(self, **options: Any) -> Blueprint:
        return replace(self, options={**self.options, **options})

    def agent_options(self, **overrides: Any) -> AgentOptions:
        extra_tools: Sequence[Any] = overrides.pop("tools", ())
        extra_plugins: Sequence[Any] = overrides.pop("plugins", ())
        kw = {**self.options, **overrides}
        tools = {t.name: t for t in (*self.tools, *(as_tool(t) for t in extra_tools))}
        return AgentOptions.build(
            **kw,
            tools=list(tools.values()),
            plugins=[factory() for factory in self.plugins] + list(extra_plugins),
            name=kw.get("name") or self.name,
        )

    def create(self, **overrides: Any) -> Agent:
        return Agent(self.agent_options(**overrides))


BASE = Blueprint(
    "base",
    "SecurityGuard, EventLogger and PatchToolCalls: the seed's base blueprint.",
    plugins=(SecurityGuard, EventLogger, PatchToolCalls),
)


def _coder() -> Blueprint:
    from cmdc_nb.toolkit import builtin_tools

    return Blueprint(
        "coder",
        "A coding agent: the built-in tools, confined to the working directory, shell commands approved by a person "
        "unless on the safe list, secrets refused, huge results paged.",
        tools=tuple(builtin_tools()),
        plugins=(SecurityGuard, HumanApproval, PatchToolCalls, LargeResultOffload),
        options={"prompt_mode": "full"},
    )


CODER = _coder()
