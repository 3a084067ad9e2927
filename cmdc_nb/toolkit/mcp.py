"""MCP servers' tools on an agent, in one call: `await attach_mcp_server(agent, "npx -y some-server")`.

Through the official `mcp` SDK: a command (run as a subprocess over stdio), a `StdioServerParameters`,
or an `http(s)://` URL (Streamable HTTP). The server's tools are listed and attached all at once — if
any name is taken, none is attached — as ordinary kernel tools, so every plugin sees them as it sees
a built-in tool (HumanApproval, SecurityGuard, OutputFilter, the approval rules). Arguments are checked
against each tool's JSON schema before the call leaves. When the server goes away (it exits, the
connection drops), all of its tools are detached and a `plugin_event` says why; `close()` detaches
them and stops the server.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cmdc_nb.errors import ConfigurationError, InvalidInputError
from cmdc_nb.kernel.events import PluginEvent
from cmdc_nb.kernel.tools import Tool, ToolError

log = logging.getLogger("cmdc_nb.toolkit.mcp")

__all__ = ["MCPAttachment", "attach_mcp_server"]

_NAME = re.compile(r"[^A-Za-z0-9_-]")


@dataclass
class MCPAttachment:
    """The tools one MCP server gave an agent. `close()` detaches them and ends the connection."""

    server: str
    tools: list[str]
    agent: Any = field(repr=False)
    _stop: asyncio.Event = field(repr=False, default_factory=asyncio.Event)
    _task: asyncio.Task[None] | None = field(repr=False, default=None)
    detached_reason: str | None = None
    wake: asyncio.Event | None = field(repr=False, default=None)

    @property
    def connected(self) -> bool:
        return self._task is not None and not self._task.done()

    def _detach(self, reason: str) -> None:
        if self.detached_reason is not None:
            return
        self.detached_reason = reason
        present = [n for n in self.tools if n in self.agent.tools]
        if present:
            self.agent.detach_tools(present)
        with contextlib.suppress(Exception):
            self.agent.emit(
                PluginEvent(
                    "mcp",
                    "server_detached",
                    {"server": self.server, "tools": list(self.tools), "reason": reason},
                )
            )

    async def close(self) -> None:
        self._stop.set()
        if self.wake is not None:
            self.wake.set()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
        self._detach("closed")


def _describe(server: Any) -> str:
    if isinstance(server, str):
        return server if server.startswith(("http://", "https://")) else shlex.split(server)[0]
    command = getattr(server, "command", None)
    return str(command or type(server).__name__)


def _target(server: Any, env: Mapping[str, str] | None, cwd: str | None) -> Any:
    from mcp import StdioServerParameters

    if isinstance(server, str):
        if server.startswith(("http://", "https://")):
            return server
        parts = shlex.split(server)
        if not parts:
            raise InvalidInputError("give a command or an http(s) URL", field="server")
        return StdioServerParameters(
            command=parts[0], args=parts[1:], env=dict(env) if env else None, cwd=cwd
        )
    if isinstance(server, Sequence) and server and all(isinstance(p, str) for p in server):
        return StdioServerParameters(
            command=server[0], args=list(server[1:]), env=dict(env) if env else None, cwd=cwd
        )
    if isinstance(server, StdioServerParameters):
        return server
    raise InvalidInputError(
        "give a command, an argument list, StdioServerParameters or an http(s) URL", field="server"
    )


def _text_of(result: Any) -> str:
    parts = []
    for block in getattr(result, "content", None) or []:
        text = getattr(block, "text", None)
        dump = getattr(block, "model_dump", None)
        parts.append(text if isinstance(text, str) else str(dump() if callable(dump) else block))
    structured = getattr(result, "structured_content", None) or getattr(result, "structuredContent", None)
    if not parts and structured is not None:
        import json

        parts.append(json.dumps(structured, ensure_ascii=False, default=str))
    return "\n".join(parts)


class _Connection:
    """One live connection to an MCP server, run as a task: it lists the tools, then watches the server
    (a probe every few seconds, and at once after a failed call — MCP dropped ping, and the SDK does not
    say when a server goes), detaching the tools when it is gone."""

    def __init__(self, target: Any, label: str, *, timeout_s: float, tool_timeout_s: float | None) -> None:
        self.target, self.label = target, label
        self.timeout_s, self.tool_timeout_s = timeout_s, tool_timeout_s
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[list[Any]] = loop.create_future()
        self.stop = asyncio.Event()
        self.wake = asyncio.Event()  # set by a failed call, or by close(): check the server now
        self.client: Any = None
        self.attachment: MCPAttachment | None = None
        self.task = loop.create_task(self._run(), name=f"cmdc-mcp-{label}")

    async def _run(self) -> None:
        from mcp import Client

        try:
            async with Client(self.target, read_timeout_seconds=self.tool_timeout_s) as client:
                self.client = client
                listed = await client.list_tools()
                if not self.ready.done():
                    self.ready.set_result(list(listed.tools))
                await self._watch(client)
        except BaseException as exc:
            if not self.ready.done():
                self.ready.set_exception(exc)
            elif self.attachment is not None and not isinstance(exc, asyncio.CancelledError):
                self.attachment._detach(f"the server went away ({type(exc).__name__})")
            if isinstance(exc, asyncio.CancelledError):
                raise
        else:
            if self.attachment is not None:
                self.attachment._detach("closed")

    async def _watch(self, client: Any) -> None:
        while not self.stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.wake.wait(), self.ping_every_s)
            self.wake.clear()
            if self.stop.is_set():
                break
            await asyncio.wait_for(client.list_tools(), min(10.0, self.timeout_s))

    ping_every_s = 5.0

    async def listed(self) -> list[Any]:
        """The server's tools, or ConfigurationError when it cannot be reached in time."""
        try:
            return await asyncio.wait_for(asyncio.shield(self.ready), self.timeout_s)
        except Exception as exc:
            await self.close(cancel=True)
            raise ConfigurationError(
                f"could not reach the MCP server {self.label!r}: {type(exc).__name__}: {exc}"
            ) from None

    async def close(self, *, cancel: bool = False) -> None:
        self.stop.set()
        if cancel:
            self.task.cancel()
        with contextlib.suppress(BaseException):
            await self.task

    async def call(self, remote: str, schema: Mapping[str, Any], args: dict[str, Any]) -> str:
        import jsonschema

        try:
            jsonschema.validate(args, dict(schema))
        except jsonschema.ValidationError as exc:
            raise ToolError(f"invalid arguments for {remote}: {exc.message}") from None
        if self.client is None or self.task.done():
            raise ToolError(f"the MCP server {self.label!r} is gone")
        try:
            result = await self.client.call_tool(remote, args)
        except Exception as exc:
            self.wake.set()  # maybe the server is gone: the watcher looks now
            raise ToolError(
                f"the MCP server {self.label!r} failed on {remote}: {type(exc).__name__}"
            ) from None
        text = _text_of(result)
        if getattr(result, "is_error", None) or getattr(result, "isError", None):
            raise ToolError(text or f"{remote} failed")
        return text

    def tool(self, spec: Any, *, prefix: str | None, requires_approval: bool) -> Tool:
        """One of the server's tools as an agent's tool, its calls checked against its schema."""
        schema = dict(
            getattr(spec, "input_schema", None) or getattr(spec, "inputSchema", None) or {"type": "object"}
        )
        remote = spec.name

        async def call(**args: Any) -> str:
            return await self.call(remote, schema, args)

        return Tool(
            name=_NAME.sub("_", f"{prefix}_{remote}" if prefix else remote)[:64],
            description=(spec.description or f"{remote} (from MCP server {self.label})")[:4000],
            parameters=schema,
            fn=call,
            timeout_s=self.tool_timeout_s,
            approval_class="dangerous" if requires_approval else "none",
            side_effects=("mcp",),
        )


async def attach_mcp_server(
    agent: Any,
    server: Any,
    *,
    prefix: str | None = None,
    requires_approval: bool = False,
    env: Mapping[str, str] | None = None,
    cwd: str | None = None,
    timeout_s: float = 30.0,
    tool_timeout_s: float | None = 120.0,
    ping_every_s: float = 5.0,
) -> MCPAttachment:
    """Connect to an MCP server and attach all of its tools to `agent` at once.

    `prefix` is put before each tool's name (`prefix="gh"` → `gh_create_issue`) when servers' names
    would clash; `requires_approval=True` makes every call of these tools wait for a decision.
    `env` is the server's whole environment when given (the SDK otherwise passes only a safe
    default set — never your API keys)."""
    target = _target(server, env, cwd)  # checks `server` first: a bad one is an InvalidInputError
    label = _describe(server)
    conn = _Connection(target, label, timeout_s=timeout_s, tool_timeout_s=tool_timeout_s)
    conn.ping_every_s = ping_every_s
    tools = [
        conn.tool(spec, prefix=prefix, requires_approval=requires_approval) for spec in await conn.listed()
    ]
    attachment = MCPAttachment(label, [t.name for t in tools], agent, conn.stop, conn.task, wake=conn.wake)
    try:
        agent.attach_tools(tools)  # all or nothing: a taken name refuses the lot
    except Exception:
        await conn.close()
        raise
    conn.attachment = attachment
    if conn.task.done():  # the server died between listing and attaching
        attachment._detach("the server went away")
    return attachment
