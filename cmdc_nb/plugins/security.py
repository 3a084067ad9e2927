"""SecurityGuard (blocked paths and commands, audited) and HumanApproval (which calls wait for a person).

Both run at `before_tool`. SecurityGuard runs first (priority 10): a blocked call never reaches approval.
"""

from __future__ import annotations

import asyncio
import os
import re
import shlex
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.plugins import Action, BlockTool, HookEvent, Plugin, ReplaceToolArgs, RequireApproval
from cmdc_nb.kernel.sandbox import scrubbed_env
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
# Where version control keeps what it reads as configuration — hooks, config (core.fsmonitor,
# core.pager, diff drivers), attributes (filters, textconv), a `.git` *file* pointing at another git
# dir. A model that writes any of them can make a read-only, safe-listed `git status` run its code, so
# no file tool may write them, however the path is spelled (`./.git//config`, `a/../.GIT/config`, a
# symlink into `.git`). `WRITE_TOOLS` are the file tools that write.
VCS_DIRS = frozenset({".git", ".hg", ".svn", ".bzr", "_darcs", ".jj"})
VCS_FILES = frozenset({".gitattributes", ".gitmodules", ".gitconfig", ".hgrc", ".hgignore"})
WRITE_TOOLS = frozenset({"write_file", "edit_file"})
# What a safe-listed git command runs with: no system or global configuration, and the settings a
# repository's own configuration could use to run a program forced off (repository configuration the
# model cannot write, see VCS_DIRS; `safe.bareRepository=explicit` refuses a working tree dressed up as
# a bare repository).
GIT_NEUTRAL_CONFIG = (
    ("safe.bareRepository", "explicit"),
    ("core.fsmonitor", "false"),
    ("core.hooksPath", "/dev/null"),
    ("core.pager", "cat"),
    ("core.sshCommand", "false"),
    ("log.showSignature", "false"),
    ("gpg.program", "false"),
    ("diff.external", "false"),
)
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
    inherited_by_subagents = True

    @checked
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
        found = self._rule_for(event.name, event.args, getattr(ctx, "sandbox", None))
        if found is None:
            return None
        rule, what = found
        reason = f"{what} is blocked by the security policy ({rule})"
        if self.audit and ctx.agent is not None:
            ctx.agent.emit(SecurityAudit(event.name, event.call_id, reason, rule))
        return BlockTool(reason)

    def _rule_for(self, name: str, args: Mapping[str, Any], sandbox: Any) -> tuple[str, str] | None:
        """The rule a call breaks and what broke it, or None."""
        if name in WRITE_TOOLS:
            rule = _vcs_rule(args.get("path"), sandbox)
            if rule is not None:
                return rule, f"path {args.get('path')!r}"
        if name in self.shell_tools and isinstance(args.get("command"), str):
            rule = self._command_rule(args["command"])
            return (rule, f"command {args['command']!r}") if rule else None
        for key in ("path", "file_path", "pattern", "include"):
            value = args.get(key)
            if isinstance(value, str) and (name in PATH_TOOLS or key in ("path", "file_path")):
                rule = self._path_rule(value)
                if rule:
                    return rule, f"{key} {value!r}"
        return None


def _vcs_parts(parts: Sequence[str]) -> str | None:
    for part in parts:
        folded = part.strip().rstrip(". ").casefold()  # how case-insensitive file systems see names
        if folded in VCS_DIRS:
            return f"version-control metadata ({folded})"
        if folded in VCS_FILES:
            return f"version-control configuration ({folded})"
    return None


def _vcs_rule(path: Any, sandbox: Any) -> str | None:
    """Why writing `path` is refused, or None. Checked as written and as the sandbox resolves it
    (symlinks followed, `..` applied), so no spelling reaches a VCS location."""
    if not isinstance(path, str):
        return None
    rule = _vcs_parts(re.split(r"[\\/]+", path))
    if rule is None and sandbox is not None and callable(getattr(sandbox, "resolve", None)):
        try:
            real = Path(sandbox.resolve(path))
            rule = _vcs_parts(real.relative_to(Path(sandbox.root)).parts)
        except Exception:  # outside the root or unreadable: the tool itself refuses it
            return None
    return rule


# Settings whose value is a program git runs, under a name the repository chooses, that the flags of
# `git_neutralised` cannot turn off: filter drivers (`--no-ext-diff` and `--no-textconv` cover diff
# drivers; the safe list runs no merge).
_GIT_DRIVERS = r"^filter\..+\.(clean|smudge|process)$"


def _git_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GIT_")}
    return {**env, "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": "/dev/null"}


def git_configured_programs(root: str, git: str = "git") -> list[str]:
    """The filter drivers (`filter.<name>.clean`, `.smudge`, `.process`) the repository at `root`
    configures, read by git itself (includes followed) without running any of them."""
    try:
        found = subprocess.run(
            [git, "-c", "safe.bareRepository=explicit", "-C", root, "config", "--get-regexp", _GIT_DRIVERS],
            capture_output=True, text=True, env=_git_env(), timeout=30, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return ["(git could not be asked)"]  # unknown is not safe
    return [line.split(" ", 1)[0] for line in found.stdout.splitlines()] if found.returncode == 0 else []


# Commands /bin/sh runs itself, whatever PATH says: nothing in the working tree can stand in for them.
SHELL_BUILTINS = frozenset({"echo", "pwd", "printf", "true", "false", "test", "["})
# What a safe-listed command keeps of the environment: locale and time zone (how it prints), the home
# folder (only if it is outside the working tree) and user. PYTHONPATH, PIP_CONFIG_FILE, GIT_*,
# LD_PRELOAD and the like could all point into the working tree, where the model writes.
KEPT_ENV = ("HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "LC_MESSAGES", "TZ")
# What every safe-listed command gets besides: Python reads no user site-packages (a `.pth` file there
# runs code at start-up, and the home folder may be the working tree — Jupyter's default), pip reads no
# configuration file (`python = …` in a pip.conf makes pip run that program) and asks no index.
NEUTRAL_ENV = (
    ("PYTHONNOUSERSITE", "1"),
    ("PIP_CONFIG_FILE", os.devnull),
    ("PIP_DISABLE_PIP_VERSION_CHECK", "1"),
    ("PIP_NO_INPUT", "1"),
)


def _inside(path: str, root: str) -> bool:
    real, real_root = os.path.realpath(path), os.path.realpath(root)
    return real == real_root or real.startswith(real_root.rstrip("/") + "/")


def outside_path(path: str, root: str) -> list[str]:
    """The entries of a PATH value a model cannot write: absolute and outside the working directory (an
    empty or relative entry is the working directory itself; `.venv/bin` inside it is the model's)."""
    real_root = os.path.realpath(root)
    kept = []
    for entry in path.split(os.pathsep):
        if not entry or not os.path.isabs(entry):
            continue
        real = os.path.realpath(entry)
        if real == real_root or real.startswith(real_root.rstrip("/") + "/"):
            continue
        kept.append(entry)
    return kept


def trusted_program(name: str, path: str, root: str) -> str | None:
    """The absolute path of `name` from the PATH entries outside the working directory (and not a link
    back into it), or None."""
    real_root = os.path.realpath(root).rstrip("/") + "/"
    for entry in outside_path(path, root):
        candidate = os.path.join(entry, name)
        real = os.path.realpath(candidate)
        if os.path.isfile(real) and os.access(real, os.X_OK) and not real.startswith(real_root):
            return real
    return None


def neutralised(command: str, *, root: str, env: Mapping[str, str]) -> str | None:
    """A safe-listed command as it is run, or None when it cannot be run safely: the program (and `env`)
    by absolute path from PATH entries outside the working directory, in a clean environment (KEPT_ENV
    and that PATH); for git, also GIT_NEUTRAL_CONFIG, no pager, and for diff and log no external diff
    or textconv program. A shell builtin is run as it is."""
    words = shlex.split(command)
    if words[0] in SHELL_BUILTINS:
        return command
    path = env.get("PATH", os.defpath)
    program, env_program = trusted_program(words[0], path, root), trusted_program("env", path, root)
    if program is None or env_program is None:
        return None
    clean = [f"{k}={env[k]}" for k in KEPT_ENV if k in env and (k != "HOME" or not _inside(env[k], root))]
    clean += [f"{k}={v}" for k, v in NEUTRAL_ENV]
    clean.append("PATH=" + os.pathsep.join(outside_path(path, root)))
    args = words[1:]
    if words[0] == "git":
        clean += ["GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_PAGER=cat", "PAGER=cat"]
        clean.append(f"GIT_CONFIG_COUNT={len(GIT_NEUTRAL_CONFIG)}")
        for i, (key, value) in enumerate(GIT_NEUTRAL_CONFIG):
            clean += [f"GIT_CONFIG_KEY_{i}={key}", f"GIT_CONFIG_VALUE_{i}={value}"]
        sub, rest = args[0], args[1:]
        extra = ["--no-ext-diff", "--no-textconv"] if sub in ("diff", "log", "show") else []
        args = ["--no-pager", sub, *extra, *rest]
    return shlex.join([env_program, "-i", *clean, program, *args])


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
    inherited_by_subagents = True

    @checked
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

    async def on_before_tool(self, event: HookEvent, ctx: ToolContext) -> Action | list[Action] | None:
        if event.name not in self.require:
            return None
        command = event.args.get("command")
        if event.name in self.shell_tools and self.is_safe(command):
            assert isinstance(command, str)  # command_matches accepts only text
            box = getattr(ctx, "sandbox", None)
            root = str(getattr(box, "root", None) or ctx.working_dir)
            env = getattr(box, "env", None) or scrubbed_env()
            rewritten = neutralised(command, root=root, env=env)
            if rewritten is None:
                program = shlex.split(command)[0]
                return RequireApproval(True, f"{program} is found only inside the working directory")
            if shlex.split(command)[0] == "git":
                # Safe to run unasked only when nothing in the repository can make git run a program:
                # drivers have names of the repository's choosing, so they cannot be switched off by key.
                git = trusted_program("git", env.get("PATH", os.defpath), root) or "git"
                programs = await asyncio.to_thread(git_configured_programs, root, git)
                if programs:
                    return RequireApproval(
                        True, f"this repository configures programs git would run ({', '.join(programs[:3])})"
                    )
            if rewritten == command:
                return RequireApproval(False)
            return [RequireApproval(False), ReplaceToolArgs({**event.args, "command": rewritten})]
        return RequireApproval(True, self.hint or f"{event.name} needs your approval")
