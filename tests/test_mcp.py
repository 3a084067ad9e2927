"""MCP servers' tools attached in one call, against a real MCP server written with the
official `mcp` SDK (`tests/support/mcp_server.py`, run over stdio as a subprocess)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from pathlib import Path

import pytest
from waiting import CEILING_S

from cmdc_nb.errors import ConfigurationError, InvalidInputError
from cmdc_nb.kernel import Agent
from cmdc_nb.plugins import HumanApproval
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.toolkit import attach_mcp_server

SERVER = [sys.executable, str(Path(__file__).parent.joinpath("support", "mcp_server.py"))]


async def test_an_mcp_servers_tools_attach_at_once_and_go_through_the_approval_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "destroyed"
    monkeypatch.setenv("OPENAI_API_KEY", "sk-mcp-sentinel-0987654321")
    script = Script(
        [
            Turn(tool_calls=[call("add", a=2, b=40), call("shout", text="hi")]),
            Turn(tool_calls=[call("destroy", target="prod")]),
            Turn(tool_calls=[call("add", a="two", b=1)]),
            Turn(tool_calls=[call("environment")]),
            "done",
        ],
        name="mcp-user",
    )
    agent = Agent(model=script.model, plugins=[HumanApproval(require_approval_for=["destroy"])])
    env = {"PATH": "/usr/bin:/bin", "CMDC_MCP_MARKER": str(marker)}
    attached = await attach_mcp_server(agent, SERVER, env=env)
    assert sorted(attached.tools) == ["add", "crash", "destroy", "environment", "shout"]
    assert set(attached.tools) <= set(agent.tools)
    assert agent.tools["add"].parameters["properties"].keys() == {"a", "b"}

    results: dict[str, list[str]] = {}
    seen = agent.events.subscribe(
        lambda env: (
            results.setdefault(env.event.name, []).append(env.event.result)
            if env.type == "tool_execution_end"
            else (
                agent.reject(env.event.ref, note="not today", auto_resume=True)
                if env.type == "approval_required"
                else None
            )
        )
    )
    handle = agent.prompt("use the tools")
    assert await asyncio.wait_for(handle.future, CEILING_S) == "done"
    seen.close()
    assert results["add"][0] == "42" and results["shout"] == ["HI"]
    assert not marker.exists()  # rejected: the server never ran it
    assert (
        "destroy" not in results
        or "denied" in results["destroy"][0].lower()
        or "reject" in results["destroy"][0].lower()
    )
    assert "invalid arguments" in results["add"][1]  # checked against the schema before it left
    assert "OPENAI_API_KEY" not in results["environment"][0]  # the server got only what we gave it

    # the same names again: refused as a whole, nothing half-attached
    with pytest.raises(InvalidInputError, match="already attached"):
        await attach_mcp_server(agent, SERVER, env=env)
    second = await attach_mcp_server(agent, SERVER, env=env, prefix="two")
    assert sorted(second.tools) == ["two_add", "two_crash", "two_destroy", "two_environment", "two_shout"]
    await second.close()
    assert not any(n.startswith("two_") for n in agent.tools)

    # the server goes away: all of its tools are detached
    proc_gone = asyncio.Event()
    agent.events.subscribe(
        lambda env: (
            proc_gone.set() if env.type == "plugin_event" and env.event.name == "server_detached" else None
        )
    )
    with contextlib.suppress(Exception):
        await agent.tools["crash"].fn()  # the server process exits
    await asyncio.wait_for(proc_gone.wait(), CEILING_S)
    assert not set(attached.tools) & set(agent.tools)
    assert attached.detached_reason is not None and "went away" in attached.detached_reason
    await agent.stop()


async def test_a_server_that_cannot_start_is_a_clear_error_and_attaches_nothing(tmp_path: Path) -> None:
    agent = Agent(model=Script(["x"], name="mcp-none").model)
    with pytest.raises(ConfigurationError, match="could not reach the MCP server"):
        await attach_mcp_server(agent, [sys.executable, "-c", "import sys; sys.exit(3)"], timeout_s=20)
    with pytest.raises(InvalidInputError):
        await attach_mcp_server(agent, "")
    assert agent.tools == {}
    await agent.stop()


async def test_an_mcp_server_over_streamable_http(tmp_path: Path) -> None:
    import socket
    import subprocess

    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([*SERVER, str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        url = f"http://127.0.0.1:{port}/mcp"
        for _ in range(200):
            try:
                httpx.get(url, timeout=1)
                break
            except httpx.HTTPError:
                await asyncio.sleep(0.05)
        script = Script([Turn(tool_calls=[call("add", a=20, b=22)]), "forty-two"], name="mcp-http")
        agent = Agent(model=script.model)
        attached = await attach_mcp_server(agent, url, ping_every_s=0.5)
        assert "add" in attached.tools and attached.server == url
        ends: list[str] = []
        agent.events.subscribe(
            lambda env: ends.append(env.event.result) if env.type == "tool_execution_end" else None
        )
        assert await asyncio.wait_for(agent.prompt("add").future, CEILING_S) == "forty-two"
        assert ends == ["42"]
        proc.kill()  # the server goes away: its tools go with it
        for _ in range(200):
            if attached.detached_reason is not None:
                break
            await asyncio.sleep(0.05)
        assert "add" not in agent.tools and "went away" in (attached.detached_reason or "")
        await agent.stop()
    finally:
        proc.kill()
        proc.wait(10)
