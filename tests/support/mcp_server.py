"""A real MCP server for the tests, written with the official `mcp` SDK; run over stdio
(`python tests/support/mcp_server.py`) or Streamable HTTP (`python tests/support/mcp_server.py PORT`, at /mcp). `destroy` writes a marker file (CMDC_MCP_MARKER), so a test can tell
whether it ever ran."""

from __future__ import annotations

import os
from pathlib import Path

from mcp.server.mcpserver import MCPServer

server = MCPServer("cmdc-test-tools")


@server.tool()
def add(a: int, b: int) -> int:
    """Add two whole numbers."""
    return a + b


@server.tool()
def shout(text: str) -> str:
    """The text in capitals."""
    return text.upper()


@server.tool()
def destroy(target: str) -> str:
    """Destroy a target (irreversible: the test's approval must stop it)."""
    Path(os.environ["CMDC_MCP_MARKER"]).write_text(target)
    return f"destroyed {target}"


@server.tool()
def environment() -> str:
    """The names of the server's environment variables."""
    return " ".join(sorted(os.environ))


@server.tool()
def crash() -> str:
    """End the server process at once (the test's way of making the server go away)."""
    os._exit(0)


if __name__ == "__main__":
    import sys

    if len(sys.argv) > 1:  # a port: Streamable HTTP on 127.0.0.1, path /mcp
        server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))
    else:
        server.run()
