"""Built-in plugins for the agent kernel. Each is a `cmdc_nb.kernel.Plugin`; pass instances in
`Agent(plugins=[...])`. See docs/kernel.md for the hooks and actions they use."""

from __future__ import annotations

from cmdc_nb.plugins.security import (
    DEFAULT_BLOCKED_COMMANDS,
    DEFAULT_BLOCKED_PATHS,
    DEFAULT_SAFE_COMMANDS,
    HumanApproval,
    SecurityGuard,
)

__all__ = [
    "DEFAULT_BLOCKED_COMMANDS",
    "DEFAULT_BLOCKED_PATHS",
    "DEFAULT_SAFE_COMMANDS",
    "HumanApproval",
    "SecurityGuard",
]
