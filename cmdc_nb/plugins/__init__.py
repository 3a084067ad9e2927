"""Built-in plugins for the agent kernel, and blueprints that combine them. Each plugin is a
`cmdc_nb.kernel.Plugin`: pass instances in `Agent(plugins=[...])`. docs/kernel.md lists their hooks.

| plugin | priority | hooks | does |
|---|---|---|---|
| EventLogger | 5 | session_start/end | every event as JSON Lines |
| SecurityGuard | 10 | before_tool | blocks secret paths and dangerous commands, audited |
| HumanApproval | 50 | before_tool | named tools wait for a person; safe shell commands do not |
| MemoryLoader | 60 | session_start | MEMORY.md / AGENTS.md into the system prompt |
| MemoryFlush | 70 | before_compact | facts appended to MEMORY.md, de-duplicated |
| Skills | 80 | session_start | SKILL.md discovery, `load_skill` tool |
| PatchToolCalls | 110 | before_request | results for dangling tool calls |
| CostGuard | 120 | before_request | token / cost limits and budgets |
| ModelRouter | 130 | before_request | the model by the seed's conditions |
| Recovery | 150 | on_tool_error | back off, fall back, escalate, give up |
| Planning | 200 | before_prompt, after_response | a plan in the system prompt, advanced step by step |
| OutputFilter | 300 | session_start, after_tool | secrets (and PII) redacted |
| LargeResultOffload | 320 | after_tool | huge tool results to a file |
| Reflection | 400 | before_finish, after_response | the answer reviewed before finishing |
"""

from __future__ import annotations

from cmdc_nb.plugins.blueprints import BASE, CODER, Blueprint
from cmdc_nb.plugins.guards import CostGuard, ModelRouter, Recovery
from cmdc_nb.plugins.hygiene import EventLogger, LargeResultOffload, OutputFilter, PatchToolCalls
from cmdc_nb.plugins.memory import MemoryFlush, MemoryLoader, extract_facts
from cmdc_nb.plugins.plan import Plan, PlanStep
from cmdc_nb.plugins.planning import Planning
from cmdc_nb.plugins.reflection import Reflection
from cmdc_nb.plugins.security import (
    DEFAULT_BLOCKED_COMMANDS,
    DEFAULT_BLOCKED_PATHS,
    DEFAULT_SAFE_COMMANDS,
    HumanApproval,
    SecurityGuard,
)
from cmdc_nb.plugins.skills import Skill, Skills, discover_skills, load_skill

__all__ = [
    "BASE",
    "CODER",
    "DEFAULT_BLOCKED_COMMANDS",
    "DEFAULT_BLOCKED_PATHS",
    "DEFAULT_SAFE_COMMANDS",
    "Blueprint",
    "CostGuard",
    "EventLogger",
    "HumanApproval",
    "LargeResultOffload",
    "MemoryFlush",
    "MemoryLoader",
    "ModelRouter",
    "OutputFilter",
    "PatchToolCalls",
    "Plan",
    "PlanStep",
    "Planning",
    "Recovery",
    "Reflection",
    "SecurityGuard",
    "Skill",
    "Skills",
    "discover_skills",
    "extract_facts",
    "load_skill",
]
