"""Where an agent's file and command tools act: the seed's eight sandbox operations, confined to a root.

`LocalSandbox(root)` works on this machine. Every path is checked before it is touched: NUL bytes, `~`,
any `..` segment, an absolute path outside the root, and a symlink (anywhere on the way) that resolves
outside the root are refused with `PathEscapeError` — the check is done on the fully resolved path, so
`link/../../etc` and `inside-link-to-/etc/passwd` are caught too. Another sandbox (a container, a remote
machine) plugs in by implementing the `Sandbox` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol, runtime_checkable

import pathspec

from cmdc_nb.errors import PathEscapeError, SandboxError

__all__ = [
    "SKIP_DIRS",
    "DirEntry",
    "ExecResult",
    "GlobMatch",
    "GrepMatch",
    "LocalSandbox",
    "Sandbox",
]

# Version control, build and cache folders: never searched, never listed by glob.
SKIP_DIRS = frozenset(
    {".git", ".hg", ".svn", "_build", "deps", "node_modules", ".elixir_ls", ".vscode", ".idea", "__pycache__",
     ".mypy_cache", ".pytest_cache", ".ruff_cache", "vendor", ".bundle", "tmp", ".venv", "venv", ".tox",
     "dist", "build", ".cmdc"}
)  # fmt: skip


@dataclass(frozen=True)
class DirEntry:
    name: str
    type: Literal["file", "directory"]
    size: int | None


@dataclass(frozen=True)
class GlobMatch:
    path: str
    type: Literal["file", "directory"]


@dataclass(frozen=True)
class GrepMatch:
    file: str
    line: int
    content: str


@dataclass(frozen=True)
class ExecResult:
    exit_code: int | None
    stdout: str
    stderr: str
    timed_out: bool = False


@runtime_checkable
class Sandbox(Protocol):
    """The eight operations the built-in tools use. Paths are relative to `root` (or absolute inside it)."""

    root: Path

    def resolve(self, path: str) -> Path: ...
    async def read_file(self, path: str) -> str: ...
    async def write_file(self, path: str, content: str) -> int: ...
    async def edit_file(self, path: str, old: str, new: str) -> int: ...
    async def execute(self, command: str, *, timeout_s: float = 30.0) -> ExecResult: ...
    async def file_exists(self, path: str) -> bool: ...
    async def glob(self, pattern: str, path: str = ".", *, limit: int = 500) -> list[GlobMatch]: ...
    async def grep(
        self, pattern: str, path: str = ".", *, include: str | None = None, limit: int = 100
    ) -> list[GrepMatch]: ...
    async def list_dir(self, path: str = ".") -> list[DirEntry]: ...


# Environment variables a command never sees unless given explicitly: keys, tokens, passwords, and the
# database URL (it may carry a password). The model reads what a command prints.
_SECRET_ENV = re.compile(r"(?i)(key|token|secret|passw|credential|auth|cookie|session|database_url|dsn)")


def scrubbed_env() -> dict[str, str]:
    """This process's environment without anything that looks like a secret."""
    return {k: v for k, v in os.environ.items() if not _SECRET_ENV.search(k)}


class LocalSandbox:
    """The local file system under `root`, and `/bin/sh` started in it (with `env`, by default this
    process's environment minus secrets)."""

    def __init__(self, root: str | os.PathLike[str], *, env: dict[str, str] | None = None) -> None:
        real = Path(root).expanduser().resolve()
        if not real.is_dir():
            raise SandboxError(f"sandbox root {str(root)!r} is not a directory")
        self.root = real
        self.env = env

    def __repr__(self) -> str:
        return f"<LocalSandbox {str(self.root)!r}>"

    # -- paths ------------------------------------------------------------------------------------------
    def resolve(self, path: str) -> Path:
        """The real path of `path` inside the root, or PathEscapeError."""
        if not isinstance(path, str):
            raise PathEscapeError(path, "not a text path")
        if "\x00" in path:
            raise PathEscapeError(path, "it contains a NUL byte")
        try:
            path.encode("utf-8")
        except UnicodeEncodeError:
            raise PathEscapeError(path, "it is not valid text (unpaired surrogates)") from None
        if not path.strip():
            path = "."
        if path.startswith("~"):
            raise PathEscapeError(path, "home-relative paths are outside the sandbox")
        if any(part == ".." for part in re.split(r"[\\/]+", path)):
            raise PathEscapeError(path, "'..' segments are not allowed")
        candidate = Path(path) if os.path.isabs(path) else self.root / path
        real = Path(os.path.realpath(candidate))
        if real != self.root and not real.is_relative_to(self.root):
            raise PathEscapeError(path, "it resolves outside the working directory")
        return real

    def relative(self, real: Path) -> str:
        rel = real.relative_to(self.root).as_posix()
        return rel or "."

    # -- files ------------------------------------------------------------------------------------------
    async def read_file(self, path: str) -> str:
        real = self.resolve(path)
        return await asyncio.to_thread(_read_text, real, path)

    async def write_file(self, path: str, content: str) -> int:
        real = self.resolve(path)
        return await asyncio.to_thread(_write_text, real, content, self)

    async def edit_file(self, path: str, old: str, new: str) -> int:
        real = self.resolve(path)
        text = await asyncio.to_thread(_read_text, real, path)
        if old == "":
            raise SandboxError("old_string is empty: give the exact text to replace")
        count = text.count(old)
        if count == 0:
            raise SandboxError(f"old_string not found in {path}")
        if count > 1:
            raise SandboxError(
                f"old_string occurs {count} times in {path}; include more context so it is unique"
            )
        return await asyncio.to_thread(_write_text, real, text.replace(old, new, 1), self)

    async def file_exists(self, path: str) -> bool:
        try:
            return self.resolve(path).exists()
        except PathEscapeError:
            return False

    async def list_dir(self, path: str = ".") -> list[DirEntry]:
        real = self.resolve(path)
        if not real.is_dir():
            raise SandboxError(f"{path} is not a directory")

        def entries() -> list[DirEntry]:
            out = []
            for child in sorted(real.iterdir(), key=lambda p: p.name):
                if child.is_symlink() and not _inside(child, self.root):
                    continue  # never show what points outside
                try:
                    is_dir = child.is_dir()
                    size = None if is_dir else child.stat().st_size
                except OSError:
                    continue  # a symlink loop, or gone meanwhile
                out.append(DirEntry(child.name, "directory" if is_dir else "file", size))
            return sorted(out, key=lambda e: (e.type != "directory", e.name))

        return await asyncio.to_thread(entries)

    async def glob(self, pattern: str, path: str = ".", *, limit: int = 500) -> list[GlobMatch]:
        base = self.resolve(path)
        if any(part == ".." for part in re.split(r"[\\/]+", pattern)) or pattern.startswith(("/", "~")):
            raise PathEscapeError(
                pattern, "glob patterns are relative to the working directory, without '..'"
            )
        spec = pathspec.PathSpec.from_lines("gitignore", _expand_braces(pattern))

        def walk() -> list[GlobMatch]:
            out: list[GlobMatch] = []
            for rel, is_dir in _walk(base, self.root):
                if spec.match_file(rel + ("/" if is_dir else "")) or spec.match_file(rel):
                    out.append(GlobMatch(self.relative(base / rel), "directory" if is_dir else "file"))
                    if len(out) >= limit:
                        break
            return out

        return await asyncio.to_thread(walk)

    async def grep(
        self, pattern: str, path: str = ".", *, include: str | None = None, limit: int = 100
    ) -> list[GrepMatch]:
        base = self.resolve(path)
        try:
            rx = re.compile(pattern)
        except re.error as exc:
            raise SandboxError(f"not a valid regular expression: {exc}") from None

        def search() -> list[GrepMatch]:
            out: list[GrepMatch] = []
            files = [(base, False)] if base.is_file() else _walk(base, self.root)
            for rel_or_path, is_dir in files:
                if is_dir:
                    continue
                real = rel_or_path if isinstance(rel_or_path, Path) else base / rel_or_path
                if include and not fnmatch.fnmatch(real.name, include):
                    continue
                try:
                    with real.open("r", encoding="utf-8", errors="strict") as f:
                        for n, line in enumerate(f, 1):
                            if rx.search(line):
                                out.append(GrepMatch(self.relative(real), n, line.rstrip("\n")[:500]))
                                if len(out) >= limit:
                                    return out
                except (UnicodeDecodeError, OSError):
                    continue  # binary or unreadable: skipped
            return out

        return await asyncio.to_thread(search)

    # -- commands ---------------------------------------------------------------------------------------
    async def execute(self, command: str, *, timeout_s: float = 30.0) -> ExecResult:
        if "\x00" in command:
            raise SandboxError("the command contains a NUL byte")
        proc = await asyncio.create_subprocess_exec(
            "/bin/sh",
            "-c",
            command,
            cwd=self.root,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=self.env if self.env is not None else scrubbed_env(),
            start_new_session=True,  # its own process group: a timeout kills the whole tree
        )
        try:
            out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
        except (TimeoutError, asyncio.CancelledError) as exc:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.wait(), 5)
            if isinstance(exc, asyncio.CancelledError):
                raise
            return ExecResult(None, "", f"timed out after {timeout_s:g} s", timed_out=True)
        return ExecResult(proc.returncode, out.decode("utf-8", "replace"), err.decode("utf-8", "replace"))

    def offload(self, text: str, folder: str = ".cmdc/output") -> str:
        """Write `text` to a new file under `folder` (inside the root); returns its relative path."""
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%S%f")
        target = self.resolve(f"{folder}/{stamp}.txt")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text, encoding="utf-8")
        return self.relative(target)


def _inside(p: Path, root: Path) -> bool:
    real = Path(os.path.realpath(p))
    return real == root or real.is_relative_to(root)


def _read_text(real: Path, shown: str) -> str:
    if not real.exists():
        raise SandboxError(f"file not found: {shown}")
    if real.is_dir():
        raise SandboxError(f"{shown} is a directory")
    try:
        return real.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SandboxError(f"{shown} is not a UTF-8 text file") from None


def _write_text(real: Path, content: str, box: LocalSandbox) -> int:
    shown = box.relative(real)
    # The root itself (path ".") or a folder: its temporary sibling would land outside the sandbox,
    # and the replace would fail anyway.
    if real == box.root or real.is_dir():
        raise SandboxError(f"{shown} is a directory")
    try:
        data = content.encode("utf-8")
    except UnicodeEncodeError:
        raise SandboxError("the content has characters UTF-8 cannot hold (unpaired surrogates)") from None
    real.parent.mkdir(parents=True, exist_ok=True)
    # mkdir may have followed a symlinked parent created meanwhile: check the final place again.
    box.resolve(str(real))
    tmp = real.with_name(f".{real.name}.cmdc-tmp")
    try:
        tmp.write_bytes(data)
        os.replace(tmp, real)
    except OSError as exc:
        raise SandboxError(f"cannot write {shown}: {exc.strerror or type(exc).__name__}") from None
    finally:
        tmp.unlink(missing_ok=True)
    return len(data)


def _walk(base: Path, root: Path, max_depth: int = 25) -> list[tuple[str, bool]]:
    """(relative path, is_dir) under `base`, skipping SKIP_DIRS and symlinks that leave the root."""
    out: list[tuple[str, bool]] = []
    base_depth = len(base.parts)
    for dirpath, dirnames, filenames in os.walk(base, followlinks=False):
        here = Path(dirpath)
        if len(here.parts) - base_depth >= max_depth:
            dirnames[:] = []
        dirnames[:] = sorted(d for d in dirnames if d not in SKIP_DIRS and _inside(here / d, root))
        for d in dirnames:
            out.append(((here / d).relative_to(base).as_posix(), True))
        for f in sorted(filenames):
            if _inside(here / f, root):
                out.append(((here / f).relative_to(base).as_posix(), False))
    return out


def _expand_braces(pattern: str) -> Sequence[str]:
    """`*.{py,md}` → `*.py`, `*.md` (one level, as the seed's glob tool allows)."""
    m = re.search(r"\{([^{}]*)\}", pattern)
    if not m:
        return [pattern]
    return [
        p
        for alt in m.group(1).split(",")
        for p in _expand_braces(pattern[: m.start()] + alt + pattern[m.end() :])
    ]
