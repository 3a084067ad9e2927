"""SecurityGuard (blocked paths and commands, audited) and HumanApproval (which calls wait for a person).

Both run at `before_tool`. SecurityGuard runs first (priority 10): a blocked call never reaches approval.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.plugins import Action, BlockTool, HookEvent, Plugin, RequireApproval
from cmdc_nb.kernel.tools import ToolContext
from cmdc_nb.services import matching

__all__ = [
    "DEFAULT_BLOCKED_COMMANDS",
    "DEFAULT_BLOCKED_PATHS",
    "DEFAULT_SAFE_COMMANDS",
    "HumanApproval",
    "SecurityAudit",
    "SecurityGuard",
]


@ev.register_event_type
@dataclass(frozen=True, slots=True)
class SecurityAudit(ev.AgentEvent):
    """SecurityGuard refused a call: what, why, and the rule that matched."""

    type: ClassVar[str] = "security_audit"
    tool: str
    call_id: str
    reason: str
    rule: str


DEFAULT_BLOCKED_PATHS = (
    ".env", ".env.*", "**/.env", "**/.env.*", "**/*.key", "**/*.pem", "**/*.p12", "**/*.pfx",
    "**/id_rsa*", "**/id_ed25519*", "**/.ssh/**", "**/.aws/**", "**/.netrc", "**/credentials*",
    "**/secrets.*", "**/.git/config", "**/.pgpass", "**/.npmrc", "**/.pypirc", "**/vault.key",
)  # fmt: skip
DEFAULT_BLOCKED_COMMANDS = (
    "rm -rf /", "rm -fr /", "rm -rf ~", "rm -rf *", "mkfs", "dd if=", ":(){", "shutdown", "reboot",
    "halt", "poweroff", "kill -9 1", "killall", "pkill", "chmod -R 777 /", "chown -R", "> /dev/sd",
    "of=/dev/", "format c:", "curl | sh", "wget | sh", "| sh", "| bash",
)  # fmt: skip
# Read-only commands that cannot name a file outside the working directory by themselves (no `cat **`:
# `cat /etc/shadow` would match it). Wildcards never admit options they do not spell, nor `..`.
DEFAULT_SAFE_COMMANDS = (
    "ls", "ls -la", "pwd", "whoami", "date", "echo **",
    "git status", "git diff", "git diff --stat", "git log --oneline", "git branch",
    "python --version", "python3 --version", "pip list",
)  # fmt: skip
PATH_TOOLS = {
    "read_file": "path",
    "write_file": "path",
    "edit_file": "path",
    "ls": "path",
    "glob": "path",
    "grep": "path",
}


class SecurityGuard(Plugin):
    """Blocks file tools on sensitive paths and shell commands containing blocked text; audits each."""

    name = "security_guard"
    priority = 10

    def __init__(
        self,
        *,
        blocked_paths: Iterable[str] = (),
        blocked_commands: Iterable[str] = (),
        default_blocked_paths: bool = True,
        default_blocked_commands: bool = True,
        shell_tools: Iterable[str] = ("shell",),
        audit: bool = True,
    ) -> None:
        super().__init__()
        self.blocked_paths = tuple(blocked_paths) + (DEFAULT_BLOCKED_PATHS if default_blocked_paths else ())
        self.blocked_commands = tuple(blocked_commands) + (
            DEFAULT_BLOCKED_COMMANDS if default_blocked_commands else ()
        )
        self.shell_tools = frozenset(shell_tools)
        self.audit = audit
        self._pattern_globs = [re.compile(_glob_regex(p)) for p in self.blocked_paths]

    def _path_rule(self, path: str) -> str | None:
        parts = [p for p in re.split(r"[\\/]+", path.strip()) if p not in ("", ".")]
        candidates = {"/".join(parts), *("/".join(parts[i:]) for i in range(len(parts)))}
        for rule, rx in zip(self.blocked_paths, self._pattern_globs, strict=True):
            if any(rx.fullmatch(c) for c in candidates):
                return rule
        return None

    def _command_rule(self, command: str) -> str | None:
        squashed = " ".join(command.split()).lower()
        for rule in self.blocked_commands:
            if " ".join(rule.split()).lower() in squashed:
                return rule
        return None

    def on_before_tool(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        name, args = event.name, event.args
        rule: str | None = None
        what = ""
        if name in self.shell_tools and isinstance(args.get("command"), str):
            rule = self._command_rule(args["command"])
            what = f"command {args['command']!r}"
        else:
            for key in ("path", "file_path", "pattern", "include"):
                value = args.get(key)
                if isinstance(value, str) and (name in PATH_TOOLS or key in ("path", "file_path")):
                    rule = self._path_rule(value)
                    if rule:
                        what = f"{key} {value!r}"
                        break
        if rule is None:
            return None
        reason = f"{what} is blocked by the security policy ({rule})"
        if self.audit and ctx.agent is not None:
            ctx.agent.emit(SecurityAudit(name, event.call_id, reason, rule))
        return BlockTool(reason)


def _glob_regex(pattern: str) -> str:
    """A path glob as a regex over '/'-joined relative paths: `**` spans folders, `*` does not."""
    out, i = [], 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out.append("(?:.*/)?")
            i += 3
        elif pattern.startswith("**", i):
            out.append(".*")
            i += 2
        elif pattern[i] == "*":
            out.append("[^/]*")
            i += 1
        elif pattern[i] == "?":
            out.append("[^/]")
            i += 1
        else:
            out.append(re.escape(pattern[i]))
            i += 1
    return "".join(out)


class HumanApproval(Plugin):
    """Calls of the named tools wait for a person — except shell commands whose whole argument vector
    matches the safe list (`ls **`, `git status`, …; any shell operator, substitution, redirection or glob
    makes a command unsafe, whatever it starts with). Tools not named keep their own approval class."""

    name = "human_approval"
    priority = 50

    def __init__(
        self,
        *,
        require_approval_for: Sequence[str] = ("shell",),
        safe_commands: Sequence[str] = DEFAULT_SAFE_COMMANDS,
        shell_tools: Iterable[str] = ("shell",),
        hint: str | None = None,
    ) -> None:
        super().__init__()
        self.require = frozenset(require_approval_for)
        self.safe = tuple(safe_commands)
        self.shell_tools = frozenset(shell_tools)
        self.hint = hint

    def is_safe(self, command: Any) -> bool:
        return any(matching.command_matches(p, command) for p in self.safe)

    def on_before_tool(self, event: HookEvent, ctx: ToolContext) -> Action | None:
        if event.name not in self.require:
            return None
        if event.name in self.shell_tools and self.is_safe(event.args.get("command")):
            return RequireApproval(False)
        return RequireApproval(True, self.hint or f"{event.name} needs your approval")
