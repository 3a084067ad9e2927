"""Built-in tools, safe by default: file tools and a shell confined to the agent's sandbox, and tools
that act on the agent (sub-agents, questions, to-dos, compaction).

>>> from cmdc_nb.toolkit import builtin_tools
>>> [t.name for t in builtin_tools()]   # doctest: +NORMALIZE_WHITESPACE
['read_file', 'write_file', 'edit_file', 'ls', 'glob', 'grep', 'shell', 'task', 'ask_user', 'write_todos',
 'compact_conversation']

`shell` waits for approval unless a plugin (HumanApproval's safe list) or an approval rule says
otherwise. Writes are confined to the sandbox but not approved one by one unless HumanApproval (or a
tool option) asks for it: `HumanApproval(require_approval_for=["shell", "write_file", "edit_file"])`.
"""

from __future__ import annotations

from collections.abc import Iterable

from cmdc_nb.kernel.sandbox import DirEntry, ExecResult, GlobMatch, GrepMatch, LocalSandbox, Sandbox
from cmdc_nb.kernel.tools import Tool
from cmdc_nb.toolkit.agentic import (
    AGENT_TOOLS,
    Todo,
    ask_user,
    compact_conversation,
    run_subagent,
    task,
    write_todos,
)
from cmdc_nb.toolkit.files import FILE_TOOLS, edit_file, glob, grep, ls, read_file, shell, write_file
from cmdc_nb.toolkit.mcp import MCPAttachment, attach_mcp_server

__all__ = [
    "AGENT_TOOLS",
    "FILE_TOOLS",
    "DirEntry",
    "ExecResult",
    "GlobMatch",
    "GrepMatch",
    "LocalSandbox",
    "MCPAttachment",
    "Sandbox",
    "Todo",
    "ask_user",
    "attach_mcp_server",
    "builtin_tools",
    "compact_conversation",
    "edit_file",
    "glob",
    "grep",
    "ls",
    "read_file",
    "run_subagent",
    "shell",
    "task",
    "write_file",
    "write_todos",
]


def builtin_tools(*, include: Iterable[str] | None = None, exclude: Iterable[str] = ()) -> list[Tool]:
    """The eleven built-in tools (or those named in `include`), minus `exclude`."""
    every = [*FILE_TOOLS, *AGENT_TOOLS]
    names = {t.name for t in every}
    wanted = set(include) if include is not None else names
    unknown = (wanted | set(exclude)) - names
    if unknown:
        from cmdc_nb.errors import InvalidInputError

        raise InvalidInputError(
            f"no built-in tool named {sorted(unknown)[0]!r}; there are: {', '.join(t.name for t in every)}",
            field="include",
        )
    return [t for t in every if t.name in wanted and t.name not in set(exclude)]
