"""The built-in file and command tools: read_file, write_file, edit_file, ls, glob, grep, shell.

Each acts through the calling agent's sandbox (`ctx.sandbox`, a LocalSandbox on the working directory
unless the agent was given another), so every path is confined to the root. Output is capped; a shell
command's full output, when too long, is kept in a file under `.cmdc/output/` and its path returned.
"""

from __future__ import annotations

from typing import Any

from cmdc_nb.errors import SandboxError
from cmdc_nb.kernel.tools import Tool, ToolContext, ToolError, tool

__all__ = [
    "FILE_TOOLS",
    "MAX_LINES",
    "MAX_OUTPUT_BYTES",
    "edit_file",
    "glob",
    "grep",
    "ls",
    "read_file",
    "shell",
    "write_file",
]

MAX_LINES = 2000
MAX_OUTPUT_BYTES = 50_000


def _box(ctx: ToolContext) -> Any:
    if ctx.sandbox is None:
        raise ToolError("this tool needs a sandbox (run it from an agent)")
    return ctx.sandbox


async def _guard(coro: Any) -> Any:
    try:
        return await coro
    except SandboxError as exc:  # PathEscapeError included: the model gets the reason, no traceback
        raise ToolError(str(exc)) from None
    except OSError as exc:  # e.g. a name too long for the file system, a permission refused
        raise ToolError(f"{exc.strerror or type(exc).__name__}") from None


@tool
async def read_file(path: str, ctx: ToolContext, offset: int = 1, limit: int | None = None) -> str:
    """Read a text file of the working directory.

    Args:
        path: the file, relative to the working directory
        offset: the first line to show (1-based)
        limit: how many lines to show (at most 2000 are shown at once)
    """
    if offset < 1:
        raise ToolError("offset is 1-based: give 1 or more")
    text = await _guard(_box(ctx).read_file(path))
    lines = text.splitlines(keepends=True)
    want = min(limit or MAX_LINES, MAX_LINES)
    chunk = lines[offset - 1 : offset - 1 + want]
    out, size = [], 0
    for line in chunk:
        if size + len(line.encode()) > MAX_OUTPUT_BYTES:
            break
        out.append(line)
        size += len(line.encode())
    last = offset - 1 + len(out)
    body = "".join(out)
    if last < len(lines):
        body += f"\n… [showing lines {offset}–{last} of {len(lines)}; call read_file with offset={last + 1} to continue]"
    return body


@tool(side_effects=("filesystem",))
async def write_file(path: str, content: str, ctx: ToolContext) -> str:
    """Create or overwrite a text file (parent folders are created).

    Args:
        path: the file, relative to the working directory
        content: the whole new content
    """
    n = await _guard(_box(ctx).write_file(path, content))
    return f"wrote {n} bytes to {path}"


@tool(side_effects=("filesystem",))
async def edit_file(path: str, old_string: str, new_string: str, ctx: ToolContext) -> str:
    """Replace one exact occurrence of `old_string` in a file (it must occur exactly once).

    Args:
        path: the file, relative to the working directory
        old_string: the exact text to replace, with enough context to be unique
        new_string: the replacement ("" deletes)
    """
    await _guard(_box(ctx).edit_file(path, old_string, new_string))
    return f"edited {path}"


@tool
async def ls(ctx: ToolContext, path: str = ".") -> str:
    """List a folder of the working directory.

    Args:
        path: the folder, relative to the working directory
    """
    entries = await _guard(_box(ctx).list_dir(path))
    lines = [
        f"[dir]  {e.name}/" if e.type == "directory" else f"[file] {e.name} ({e.size} bytes)" for e in entries
    ]
    return "\n".join(lines) or "(empty)"


@tool
async def glob(pattern: str, ctx: ToolContext, path: str = ".") -> str:
    """Find files by name pattern (`*`, `**`, `?`, `{a,b}`), relative to the working directory.

    Args:
        pattern: e.g. `**/*.py` or `src/*.{ts,tsx}`
        path: the folder to search from
    """
    matches = await _guard(_box(ctx).glob(pattern, path))
    return "\n".join(m.path + ("/" if m.type == "directory" else "") for m in matches) or "(no matches)"


@tool
async def grep(
    pattern: str, ctx: ToolContext, path: str = ".", include: str | None = None, max_results: int = 50
) -> str:
    """Search file contents with a regular expression (skips VCS, build and cache folders).

    Args:
        pattern: a Python regular expression
        path: a file or folder, relative to the working directory
        include: only files whose name matches this glob, e.g. `*.py`
        max_results: at most this many matching lines (up to 500)
    """
    found = await _guard(_box(ctx).grep(pattern, path, include=include, limit=max(1, min(max_results, 500))))
    lines, size = [], 0
    for m in found:
        line = f"{m.file}:{m.line}|{m.content}"
        size += len(line) + 1
        if size > MAX_OUTPUT_BYTES:
            lines.append("… [output capped at 50 KB; narrow the search]")
            break
        lines.append(line)
    return "\n".join(lines) or "(no matches)"


@tool(approval_class="high", side_effects=("runs_commands",))
async def shell(command: str, ctx: ToolContext, timeout_s: float = 30.0) -> str:
    """Run a shell command in the working directory (it waits for approval unless a plugin says it is safe).

    Args:
        command: the command line, run with /bin/sh -c
        timeout_s: stop it after this many seconds (at most 600)
    """
    box = _box(ctx)
    result = await _guard(box.execute(command, timeout_s=max(0.1, min(timeout_s, 600.0))))
    if result.timed_out:
        raise ToolError(f"timed out after {timeout_s:g} s (the command was killed)")
    text = result.stdout + (f"\n[stderr]\n{result.stderr}" if result.stderr else "")
    lines = text.splitlines()
    if len(text.encode()) > MAX_OUTPUT_BYTES or len(lines) > MAX_LINES:
        saved = box.offload(text) if hasattr(box, "offload") else None
        head = "\n".join(lines[:200])[:20_000]
        tail = "\n".join(lines[-50:])[-5_000:]
        where = f"; the full output is in {saved} (read it with read_file)" if saved else ""
        text = f"{head}\n… [{len(lines)} lines, {len(text)} characters{where}] …\n{tail}"
    status = f"exit code {result.exit_code}"
    if result.exit_code:
        raise ToolError(f"{status}\n{text}".rstrip())
    return f"{text.rstrip()}\n[{status}]".lstrip()


FILE_TOOLS: tuple[Tool, ...] = (read_file, write_file, edit_file, ls, glob, grep, shell)
