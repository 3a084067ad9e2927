"""Where an agent's file and command tools act: the seed's eight sandbox operations, confined to a root.

`LocalSandbox(root)` works on this machine. Every path is refused as written if it holds a NUL byte,
starts with `~`, has a `..` segment or is absolute outside the root; then it is walked through directory
descriptors (`kernel/beneath.py`): a symlink on the way is followed only while it stays inside the root,
and the file itself is opened or replaced relative to its folder's descriptor with `O_NOFOLLOW`. No
check is separate from its use, so a link swapped in meanwhile cannot lead a read or a write outside.
Another sandbox (a container, a remote machine) plugs in by implementing the `Sandbox` protocol.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import functools
import os
import re
import signal
import stat as statmod
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Concatenate, Literal, ParamSpec, Protocol, TypeVar, runtime_checkable

import pathspec
import regex

from cmdc_nb.errors import PathEscapeError, SandboxError
from cmdc_nb.kernel.beneath import (
    DIR_FLAGS,
    FILE_FLAGS,
    Located,
    follows_link,
    locate,
    opened_root,
    read_fd,
    replace_in,
    shown_path,
)

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


P = ParamSpec("P")
T = TypeVar("T")


def _typed(fn: Callable[Concatenate[Any, P], T]) -> Callable[Concatenate[Any, P], T]:
    """Every failure of a file operation as a SandboxError: a name too long, a socket, the root gone,
    a permission refused — never a raw OSError."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except SandboxError:
            raise
        except OSError as exc:
            path = next((a for a in args if isinstance(a, str)), "")
            raise SandboxError(
                f"cannot use {shown_path(path)!r}: {exc.strerror or type(exc).__name__}"
            ) from None
        except MemoryError:
            raise SandboxError("not enough memory for that file") from None

    return wrapper


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


# Variables every process (the shell included) obeys before any command runs: the dynamic loader's
# preloads and library paths, and the scripts a shell sources. One that names a place in the working
# tree, where the model writes, would load the model's code into every command, approved or safe-listed.
_LOADER_ENV = re.compile(r"^(LD_PRELOAD|LD_AUDIT|LD_LIBRARY_PATH|DYLD_.*|BASH_ENV|ENV)$")


def _without_tree_loaders(env: dict[str, str], root: Path) -> dict[str, str]:
    """`env` without loader variables any of whose entries is relative or inside `root`."""

    def in_tree(value: str) -> bool:
        # The loader reads an empty entry (`/x:`, `::`) as the current folder — the root — and splits on
        # `;` as well as `:` and spaces.
        entries = re.split(r"[:;\s]", value)
        return any(
            not e or not os.path.isabs(e) or Path(os.path.realpath(e)).is_relative_to(root) for e in entries
        )

    return {k: v for k, v in env.items() if not (_LOADER_ENV.match(k) and in_tree(v))}


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
        self._given_root = Path(root).expanduser().absolute()
        self.env = env

    def __repr__(self) -> str:
        return f"<LocalSandbox {str(self.root)!r}>"

    # -- paths ------------------------------------------------------------------------------------------
    def _parts(self, path: str) -> list[str]:
        """The components of `path` from the root, checked as written: text, no NUL, no `~`, no `..`, an
        absolute path only inside the root. Links are followed later, by `locate`."""
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
        parts = [p for p in re.split(r"[\\/]+", path) if p not in ("", ".")]
        if ".." in parts:
            raise PathEscapeError(path, "'..' segments are not allowed")
        if os.path.isabs(path):
            for root in (self.root, self._given_root):
                if Path(path) == root or Path(path).is_relative_to(root):
                    return list(Path(path).relative_to(root).parts)
            raise PathEscapeError(path, "it resolves outside the working directory")
        return parts

    def _locate(self, path: str, *, make_dirs: bool = False, lenient: bool = False) -> Located:
        parts = self._parts(path)
        with opened_root(str(self.root)) as root_fd:
            return locate(root_fd, str(self.root), parts, shown=path, make_dirs=make_dirs, lenient=lenient)

    @_typed
    def resolve(self, path: str) -> Path:
        """The real path of `path` inside the root (links followed), or PathEscapeError. For showing and
        checking a path; the file operations never open what this returns (see `beneath`)."""
        loc = self._locate(path, lenient=True)
        loc.close()
        return self.root.joinpath(*loc.parts)

    def relative(self, real: Path) -> str:
        rel = real.relative_to(self.root).as_posix()
        return rel or "."

    # -- files ------------------------------------------------------------------------------------------
    @_typed
    def read_bytes(self, path: str) -> bytes:
        """The bytes of a regular file beneath the root (at most MAX_READ_BYTES), opened with no window
        for a link swap."""
        return self._read(path)[0]

    def _read(self, path: str) -> tuple[bytes, os.stat_result]:
        for _ in range(_ATTEMPTS):
            loc = self._locate(path)
            try:
                if loc.name is None:
                    raise SandboxError(f"{path} is a directory")
                try:
                    fd = os.open(loc.name, FILE_FLAGS, dir_fd=loc.dir_fd)
                except FileNotFoundError:
                    raise SandboxError(f"file not found: {path}") from None
                except OSError as exc:
                    if follows_link(exc):
                        continue  # became a link after the walk: walk again
                    raise
                return read_fd(fd, path)
            finally:
                loc.close()
        raise SandboxError(f"{shown_path(path)} kept changing while it was opened")

    @_typed
    def write_bytes(self, path: str, data: bytes) -> int:
        """Create or replace a file beneath the root (parents created), atomically: a temporary sibling
        made with O_EXCL | O_NOFOLLOW in the folder's descriptor, then renamed over the name there."""
        self._write(path, data, None)
        return len(data)

    def _write(self, path: str, data: bytes, expect: os.stat_result | None) -> bool:
        """Write `data` as `path`; with `expect`, only if the file is still the one read (False if not)."""
        for _ in range(_ATTEMPTS):
            loc = self._locate(path, make_dirs=True)
            try:
                if loc.name is None:
                    # The root itself: its temporary sibling would land outside the sandbox.
                    raise SandboxError(f"{shown_path(path)} is a directory")
                done = replace_in(loc.dir_fd, loc.name, data, path, expect)
                if done is not None:
                    return done
            finally:
                loc.close()
        raise SandboxError(f"{shown_path(path)} kept changing while it was written")

    async def read_file(self, path: str) -> str:
        return _decoded(await asyncio.to_thread(self.read_bytes, path), path)

    async def write_file(self, path: str, content: str) -> int:
        return await asyncio.to_thread(self.write_bytes, path, _encoded(content))

    async def edit_file(self, path: str, old: str, new: str) -> int:
        if old == "":
            raise SandboxError("old_string is empty: give the exact text to replace")

        @_typed
        def edit(path: str) -> int:
            # Replaced only if the file is still the one read; else read again (another writer's change
            # is kept, not overwritten by an edit of the old text).
            for _ in range(_ATTEMPTS):
                data, st = self._read(path)
                text = _decoded(data, path)
                count = text.count(old)
                if count == 0:
                    raise SandboxError(f"old_string not found in {shown_path(path)}")
                if count > 1:
                    raise SandboxError(
                        f"old_string occurs {count} times in {shown_path(path)}; include more context so it is unique"
                    )
                out = _encoded(text.replace(old, new, 1))
                if self._write(path, out, st):
                    return len(out)
            raise SandboxError(f"{shown_path(path)} kept changing while it was edited")

        return await asyncio.to_thread(edit, path)

    async def file_exists(self, path: str) -> bool:
        try:
            loc = self._locate(path, lenient=True)
        except (SandboxError, OSError):  # PathEscapeError included; a name too long, the root gone
            return False
        loc.close()
        return loc.exists

    async def list_dir(self, path: str = ".") -> list[DirEntry]:
        @_typed
        def entries(path: str) -> list[DirEntry]:
            out = []
            for name, kind, size in self._scan(path):
                if kind is not None:
                    out.append(DirEntry(name, kind, None if kind == "directory" else size))
            return sorted(out, key=lambda e: (e.type != "directory", e.name))

        return await asyncio.to_thread(entries, path)

    async def glob(self, pattern: str, path: str = ".", *, limit: int = 500) -> list[GlobMatch]:
        if any(part == ".." for part in re.split(r"[\\/]+", pattern)) or pattern.startswith(("/", "~")):
            raise PathEscapeError(
                pattern, "glob patterns are relative to the working directory, without '..'"
            )
        spec = pathspec.PathSpec.from_lines("gitignore", _expand_braces(pattern))

        @_typed
        def walk(path: str) -> list[GlobMatch]:
            base = self._folder_parts(path)
            out: list[GlobMatch] = []
            for rel, is_dir in self._walk(base):
                if spec.match_file(rel + ("/" if is_dir else "")) or spec.match_file(rel):
                    out.append(GlobMatch("/".join((*base, rel)), "directory" if is_dir else "file"))
                    if len(out) >= limit:
                        break
            return out

        return await asyncio.to_thread(walk, path)

    async def grep(
        self, pattern: str, path: str = ".", *, include: str | None = None, limit: int = 100
    ) -> list[GrepMatch]:
        try:
            rx = regex.compile(pattern)
        except (regex.error, ValueError, TypeError) as exc:
            raise SandboxError(f"not a valid regular expression: {exc}") from None

        @_typed
        def search(path: str) -> list[GrepMatch]:
            # One time budget for the whole search: a pattern that backtracks without end, e.g.
            # `(a|aa)+$`, is stopped instead of holding a thread nobody can cancel.
            deadline = time.monotonic() + GREP_SECONDS
            loc = self._locate(path)
            loc.close()
            if loc.exists and loc.name is not None and not self._is_dir(loc.parts):
                files = ["/".join(loc.parts)]  # one file
            else:
                base = list(loc.parts)
                files = ["/".join((*base, rel)) for rel, is_dir in self._walk(base) if not is_dir]
            out: list[GrepMatch] = []
            for rel in files:
                if include and not fnmatch.fnmatch(rel.rsplit("/", 1)[-1], include):
                    continue
                try:
                    text = self.read_bytes(rel).decode("utf-8")
                except (UnicodeDecodeError, SandboxError, OSError):
                    continue  # binary, unreadable, too large, or gone: skipped
                for n, line in enumerate(text.splitlines(), 1):
                    try:
                        found = rx.search(line, timeout=max(0.0, deadline - time.monotonic()))
                    except TimeoutError:
                        raise SandboxError(
                            f"the pattern took over {GREP_SECONDS:g} s; simplify it (nested repeats "
                            "or overlapping alternatives like (a|aa)+ backtrack without end)"
                        ) from None
                    if found:
                        out.append(GrepMatch(rel or ".", n, line[:500]))
                        if len(out) >= limit:
                            return out
            return out

        return await asyncio.to_thread(search, path)

    # -- walking folders through descriptors ------------------------------------------------------------
    def _folder_parts(self, path: str) -> list[str]:
        loc = self._locate(path)
        loc.close()
        if not loc.exists or not self._is_dir(loc.parts):
            raise SandboxError(f"{path} is not a directory")
        return list(loc.parts)

    def _is_dir(self, parts: tuple[str, ...] | list[str]) -> bool:
        try:
            with self._opened_dir("/".join(parts) or "."):
                return True
        except SandboxError:
            return False

    @contextlib.contextmanager
    def _opened_dir(self, path: str) -> Iterator[int]:
        """A descriptor of the folder `path` leads to, opened beneath the root."""
        for _ in range(_ATTEMPTS):
            loc = self._locate(path)
            try:
                if loc.name is None:
                    fd = os.dup(loc.dir_fd)
                else:
                    try:
                        fd = os.open(loc.name, DIR_FLAGS, dir_fd=loc.dir_fd)
                    except OSError as exc:
                        if follows_link(exc):
                            continue
                        raise SandboxError(f"{path} is not a directory") from None
            finally:
                loc.close()
            try:
                yield fd
            finally:
                os.close(fd)
            return
        raise SandboxError(f"{path} kept changing while it was opened")

    def _scan(self, path: str) -> list[tuple[str, Literal["file", "directory"] | None, int]]:
        """(name, kind, size) of each entry of a folder; a link's kind is what it leads to beneath the
        root, None when it leads outside, nowhere or in a loop (never shown)."""
        prefix = "" if path in ("", ".") else path.rstrip("/\\") + "/"
        out: list[tuple[str, Literal["file", "directory"] | None, int]] = []
        with self._opened_dir(path) as fd, os.scandir(fd) as it:
            for entry in it:
                if not _addressable(entry.name):
                    continue  # not UTF-8: no tool could name it, so it is not shown
                try:
                    if entry.is_symlink():
                        out.append((entry.name, *self._kind(prefix + entry.name)))
                    elif entry.is_dir(follow_symlinks=False):
                        out.append((entry.name, "directory", 0))
                    else:
                        out.append((entry.name, "file", entry.stat(follow_symlinks=False).st_size))
                except OSError:
                    continue  # gone meanwhile
        return out

    def _kind(self, path: str) -> tuple[Literal["file", "directory"] | None, int]:
        try:
            loc = self._locate(path)
        except SandboxError:
            return None, 0
        try:
            if not loc.exists:
                return None, 0
            if loc.name is None:
                return "directory", 0
            st = os.stat(loc.name, dir_fd=loc.dir_fd, follow_symlinks=False)
            return ("directory", 0) if statmod.S_ISDIR(st.st_mode) else ("file", st.st_size)
        except OSError:
            return None, 0
        finally:
            loc.close()

    def _walk(self, base: list[str], max_depth: int = 25) -> list[tuple[str, bool]]:
        """(path relative to `base`, is_dir) of everything under the folder `base` (components from the
        root), skipping SKIP_DIRS and links that leave the root; links to folders are not entered (a
        folder reached twice would be listed twice)."""
        out: list[tuple[str, bool]] = []
        pending: list[tuple[str, int]] = [("", 0)]
        while pending:
            rel, depth = pending.pop(0)
            folder = "/".join((*base, rel)) if rel else "/".join(base)
            try:
                entries = sorted(self._scan(folder or "."))
            except SandboxError:
                continue  # replaced by a file or a link meanwhile
            for name, kind, _ in entries:
                child = f"{rel}/{name}" if rel else name
                if kind == "directory" and name not in SKIP_DIRS:
                    out.append((child, True))
                    if depth + 1 < max_depth and self._is_real_dir(folder, name):
                        pending.append((child, depth + 1))
                elif kind == "file":
                    out.append((child, False))
        return out

    def _is_real_dir(self, folder: str, name: str) -> bool:
        with self._opened_dir(folder or ".") as fd:
            try:
                return statmod.S_ISDIR(os.stat(name, dir_fd=fd, follow_symlinks=False).st_mode)
            except OSError:
                return False

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
            env=_without_tree_loaders(self.env if self.env is not None else scrubbed_env(), self.root),
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
        return self.save(f"{folder}/{stamp}.txt", text)

    def save(self, path: str, text: str) -> str:
        """Write `text` to `path` beneath the root now (for plugins, which are not async); returns the
        path relative to the root, links followed."""
        self.write_bytes(path, _encoded(text))
        return self.relative(self.resolve(path))  # typed errors: both are @_typed


# A walk that meets a link swapped in after it (ELOOP on the final open) walks again, this many times.
_ATTEMPTS = 8
# A grep's whole search, in seconds of regular-expression matching.
GREP_SECONDS = 10.0


def _decoded(data: bytes, shown: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise SandboxError(f"{shown} is not a UTF-8 text file") from None


def _encoded(content: str) -> bytes:
    try:
        return content.encode("utf-8")
    except UnicodeEncodeError:
        raise SandboxError("the content has characters UTF-8 cannot hold (unpaired surrogates)") from None


def _addressable(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


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
