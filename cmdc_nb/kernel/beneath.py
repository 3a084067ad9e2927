"""Finding a file beneath a directory with no gap between the check and the use.

Checking a path (`os.path.realpath`, then "is it inside the root?") and then opening it by name leaves a
window in which another process swaps a folder for a symlink, and the open follows it out of the root.
`locate` closes that window the way OpenSSH's sftp-server and Chromium's sandbox do: it walks the path
one component at a time, each opened relative to the directory descriptor of the one before with
`O_NOFOLLOW`, so the kernel never follows a link on our behalf. A symlink met on the way is read
(`readlink` relative to its directory's descriptor) and its target walked by the same rules: a relative
target from where the link is, an absolute one only if it lies under the root (then from the root's
descriptor), `..` by going back to the descriptor already held for the parent — never by asking the
kernel for `..`. A target that leaves the root is a `PathEscapeError`.

What `locate` returns is the descriptor of the folder the final name lives in, and that name: callers
open or replace the name relative to that descriptor with `O_NOFOLLOW`, so a link swapped in after
`locate` makes the open fail (`ELOOP`) instead of leaving the root, and they walk again.

Linux's `openat2(RESOLVE_BENEATH)` gives the same guarantee in one call, but refuses every absolute
symlink, while the sandbox has always allowed links that point inside the root by absolute path; one
walk that runs the same on every kernel (and macOS) is what is tested, so it is what is used.
"""

from __future__ import annotations

import contextlib
import errno
import os
import secrets
import stat
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from cmdc_nb.errors import PathEscapeError, SandboxError

__all__ = [
    "DIR_FLAGS",
    "FILE_FLAGS",
    "MAX_LINKS",
    "MAX_READ_BYTES",
    "Located",
    "follows_link",
    "locate",
    "opened_root",
    "read_fd",
    "replace_in",
    "shown_path",
]

# Linux's limit on symlinks followed in one lookup; more is a loop.
MAX_LINKS = 40
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
# O_NONBLOCK: opening a FIFO for reading would otherwise wait for a writer; it is refused afterwards.
FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
# read_file reads a file whole: past this, it refuses (grep skips the file) rather than fill the memory.
MAX_READ_BYTES = 32 << 20


def follows_link(exc: OSError) -> bool:
    """The error an `O_NOFOLLOW` open gives when the name is (now) a symlink: ELOOP on Linux and macOS,
    EMLINK on FreeBSD."""
    return exc.errno in (errno.ELOOP, errno.EMLINK)


@dataclass
class Located:
    """Where a path leads: the open folder `dir_fd` holding `name` (None: the path is the root itself),
    and the path's components from the root once every link is followed. `exists` is False when the
    final name is not there (yet); `missing` is True when a folder on the way is not there (then
    `dir_fd` is -1 and `parts` are the lexical rest)."""

    dir_fd: int
    name: str | None
    parts: tuple[str, ...]
    exists: bool
    missing: bool = False

    def close(self) -> None:
        if self.dir_fd >= 0:
            os.close(self.dir_fd)
            self.dir_fd = -1


@contextmanager
def opened_root(root: str) -> Iterator[int]:
    fd = os.open(root, DIR_FLAGS)
    try:
        yield fd
    finally:
        os.close(fd)


def locate(
    root_fd: int,
    root: str,
    parts: list[str],
    *,
    shown: str,
    make_dirs: bool = False,
    lenient: bool = False,
) -> Located:
    """Walk `parts` (already free of `..`, see `LocalSandbox`) beneath the folder open as `root_fd`
    (whose real path is `root`), following links by the module's rules, and return where it leads.

    `make_dirs` creates missing folders on the way (each with `mkdirat` in the folder just opened);
    `lenient` returns `missing=True` instead of raising when one is missing. Raises `PathEscapeError`
    for a link leading outside the root or a loop, `SandboxError` for a file used as a folder."""
    stack: list[tuple[int, str | None]] = [(os.dup(root_fd), None)]
    todo = deque(p for p in parts if p not in ("", "."))
    links = 0
    try:
        while todo:
            comp = todo.popleft()
            if comp == "..":  # only from a link's target: back to the folder already held
                if len(stack) == 1:
                    raise PathEscapeError(shown, "a symlink on the way leads outside the working directory")
                os.close(stack.pop()[0])
                continue
            here = stack[-1][0]
            try:
                st = os.stat(comp, dir_fd=here, follow_symlinks=False)
            except FileNotFoundError:
                if not todo:
                    return _located(stack, comp, exists=False)
                if make_dirs:
                    _mkdir(comp, here)
                    todo.appendleft(comp)
                    continue
                if lenient:
                    return _missing(stack, comp, todo, shown)
                raise SandboxError(f"folder not found on the way to {shown}: {comp}") from None
            if stat.S_ISLNK(st.st_mode):
                links += 1
                if links > MAX_LINKS:
                    raise PathEscapeError(shown, "too many symlinks (a loop)")
                try:
                    target = os.readlink(comp, dir_fd=here)
                except OSError as exc:  # gone, or no longer a link, since the stat: look again
                    if exc.errno not in (errno.ENOENT, errno.EINVAL):
                        raise
                    todo.appendleft(comp)
                    continue
                if os.path.isabs(target):
                    rel = _under(os.path.normpath(target), root, shown)
                    while len(stack) > 1:  # an absolute link inside the root: walk on from the root
                        os.close(stack.pop()[0])
                    todo.extendleft(reversed(rel))
                else:
                    todo.extendleft(reversed([p for p in target.split("/") if p not in ("", ".")]))
                continue
            if not todo:
                return _located(stack, comp, exists=True)
            try:
                fd = os.open(comp, DIR_FLAGS, dir_fd=here)
            except OSError as exc:
                if follows_link(exc) or exc.errno == errno.ENOENT:
                    todo.appendleft(comp)  # swapped or removed since the stat: look again
                    links += 1
                    if links > MAX_LINKS:
                        raise PathEscapeError(shown, "it kept changing while being opened") from None
                    continue
                if exc.errno == errno.ENOTDIR:
                    raise SandboxError(f"{comp} is not a folder (on the way to {shown})") from None
                raise
            stack.append((fd, comp))
        return _located(stack, None, exists=True)
    except BaseException:
        for fd, _ in stack:
            os.close(fd)
        raise


def _located(stack: list[tuple[int, str | None]], name: str | None, *, exists: bool) -> Located:
    """Keep the innermost folder's descriptor; close the others."""
    for fd, _ in stack[:-1]:
        os.close(fd)
    names = tuple(n for _, n in stack if n is not None)
    return Located(stack[-1][0], name, names + ((name,) if name else ()), exists)


def _missing(stack: list[tuple[int, str | None]], comp: str, todo: deque[str], shown: str) -> Located:
    """A folder on the way is missing: the rest of the path is taken as written (it may still hold a
    link target's `..`)."""
    names = [n for _, n in stack if n is not None]
    for part in (comp, *todo):
        if part == "..":
            if not names:
                raise PathEscapeError(shown, "a symlink on the way leads outside the working directory")
            names.pop()
        else:
            names.append(part)
    for fd, _ in stack:
        os.close(fd)
    return Located(-1, names[-1] if names else None, tuple(names), exists=False, missing=True)


def _under(target: str, root: str, shown: str) -> list[str]:
    if target == root:
        return []
    if not target.startswith(root.rstrip("/") + "/"):
        raise PathEscapeError(shown, "a symlink on the way leads outside the working directory")
    return [p for p in target[len(root) :].split("/") if p]


def _mkdir(name: str, dir_fd: int) -> None:
    # made meanwhile (perhaps as a link): the walk looks at it again
    with contextlib.suppress(FileExistsError):
        os.mkdir(name, 0o777, dir_fd=dir_fd)


# -- using what `locate` found -------------------------------------------------------------------------
def shown_path(path: object) -> str:
    """A path as an error shows it: never more than 200 characters of it."""
    text = str(path)
    return text if len(text) <= 200 else text[:200] + "…"


def read_fd(fd: int, shown: str) -> tuple[bytes, os.stat_result]:
    try:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise SandboxError(f"{shown_path(shown)} is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise SandboxError(f"{shown_path(shown)} is not a regular file")
        if st.st_size > MAX_READ_BYTES:
            raise SandboxError(
                f"{shown_path(shown)} is {st.st_size:,} bytes; files over {MAX_READ_BYTES >> 20} MiB are not read "
                "whole (use grep, or the shell with head/tail)"
            )
    except BaseException:
        os.close(fd)
        raise
    with os.fdopen(fd, "rb") as f:
        return f.read(MAX_READ_BYTES + 1)[:MAX_READ_BYTES], st


def replace_in(dir_fd: int, name: str, data: bytes, shown: str, expect: os.stat_result | None) -> bool | None:
    """Write `data` as `name` in the folder `dir_fd`, via a temporary sibling renamed over it: True.
    None when `name` became a link since the walk (the caller walks again); False when `expect` is given
    and `name` is no longer that file, unchanged (the caller reads again)."""
    try:
        st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except FileNotFoundError:
        st = None
    if st is not None and stat.S_ISLNK(st.st_mode):
        return None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise SandboxError(f"{shown_path(shown)} is a directory")
    if expect is not None and (st is None or _identity(st) != _identity(expect)):
        return False
    # A short, byte-counted prefix: a legal 255-byte name must still leave room for the suffix.
    tmp = f".{name.encode()[:100].decode('utf-8', 'ignore')}.{secrets.token_hex(4)}.cmdc-tmp"
    try:
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666, dir_fd=dir_fd
        )
        try:
            with os.fdopen(fd, "wb") as f:
                if st is not None:
                    # keep the file's permissions, but never set-user/group-ID bits on new content
                    os.fchmod(f.fileno(), stat.S_IMODE(st.st_mode) & 0o777)
                f.write(data)
            if expect is not None and not _still(dir_fd, name, expect):
                return False  # changed while the new content was written: read it again
            os.replace(tmp, name, src_dir_fd=dir_fd, dst_dir_fd=dir_fd)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=dir_fd)
    except OSError as exc:
        raise SandboxError(
            f"cannot write {shown_path(shown)}: {exc.strerror or type(exc).__name__}"
        ) from None
    return True


def _still(dir_fd: int, name: str, expect: os.stat_result) -> bool:
    try:
        return _identity(os.stat(name, dir_fd=dir_fd, follow_symlinks=False)) == _identity(expect)
    except FileNotFoundError:
        return False


def _identity(st: os.stat_result) -> tuple[int, int, int, int]:
    return st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns
