"""`Gateway`: the HTTP gateway as an object — served by uvicorn from the command line, or in the
background of a notebook, on the notebook's own event loop (so its agents and widgets share it).

    gw = Gateway(models=["openai/gpt-4.1-mini"], tools=[search], port=8765)
    await gw.start()              # in a notebook cell: returns once it listens; the cell is free
    key = create_gateway_key(me, name="ci")   # give key.key to the other program
    ...
    await gw.stop()

`cmdc-nb serve` does the same in the foreground.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterator
from typing import Any

from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import ConfigurationError, InvalidInputError
from cmdc_nb.gateway.runtime import GatewayConfig, GatewayRuntime

log = logging.getLogger("cmdc_nb.gateway")

__all__ = ["Gateway"]


class Gateway:
    """An HTTP gateway over a workspace. Keyword settings are `GatewayConfig`'s."""

    def __init__(
        self,
        config: GatewayConfig | None = None,
        /,
        *,
        ws: Workspace | None = None,
        host: str = "127.0.0.1",
        port: int = 8765,
        **settings: Any,
    ) -> None:
        if config is not None and settings:
            raise InvalidInputError("give a GatewayConfig or keyword settings, not both", field="config")
        self.config = config or GatewayConfig.build(**settings)
        if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
            raise InvalidInputError("must be a TCP port (0 picks a free one)", field="port")
        self.host, self.port = host, port
        self.ws = get_workspace(ws)
        self.runtime = GatewayRuntime(self.config, self.ws)
        try:  # the web stack is the gateway extra's: a notebook that never serves does not install it
            from cmdc_nb.gateway.a2a import mount_a2a
            from cmdc_nb.gateway.app import create_app
        except ImportError as exc:
            raise ConfigurationError(
                f"the gateway needs its extra ({exc.name or 'fastapi'} is not installed): "
                "pip install 'cmdc-nb[gateway]'"
            ) from None
        from cmdc_nb.gateway.webhooks import WebhookDispatcher

        self.webhooks = WebhookDispatcher(
            self.config.webhooks,
            self.ws,
            max_attempts=self.config.webhook_max_attempts,
            base_delay_s=self.config.webhook_base_delay_s,
        )
        self.runtime.on_event = self.webhooks.notify
        self.app = create_app(self.runtime, extra_routes=lambda app, auth: mount_a2a(app, auth, self))
        self._server: Any = None
        self._task: asyncio.Task[None] | None = None

    def __repr__(self) -> str:
        state = "listening" if self.running else "stopped"
        return f"<Gateway {self.url if self.running else f'{self.host}:{self.port}'} {state}>"

    @property
    def running(self) -> bool:
        return bool(self._server is not None and self._server.started and not self._server.should_exit)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def _uvicorn(self, *, foreground: bool = False) -> Any:
        import uvicorn

        cfg = uvicorn.Config(
            self.app,
            host=self.host,
            port=self.port,
            log_level="info" if foreground else "warning",
            lifespan="on",
            access_log=foreground,
        )
        if foreground:
            access = logging.getLogger("uvicorn.access")
            if not any(isinstance(f, RedactQuery) for f in access.filters):
                access.addFilter(RedactQuery())
            return uvicorn.Server(cfg)

        class _Server(uvicorn.Server):
            # A notebook's (or a test's) loop keeps its own signal handlers: Ctrl-C stays the kernel's.
            @contextlib.contextmanager
            def capture_signals(self) -> Iterator[None]:
                yield

        return _Server(cfg)

    async def start(self, *, timeout: float = 30.0) -> str:
        """Listen on this event loop, in the background; returns the URL once the socket is bound."""
        if self._server is not None:
            raise ConfigurationError("this gateway is already started")
        self._server = self._uvicorn()
        self.webhooks.start()
        self._task = asyncio.get_running_loop().create_task(self._server.serve(), name="cmdc-gateway")
        deadline = asyncio.get_running_loop().time() + timeout
        while not self._server.started:
            if self._task.done():
                self._server = None
                exc = self._task.exception()
                raise ConfigurationError(f"the gateway could not start on {self.host}:{self.port}: {exc}")
            if asyncio.get_running_loop().time() > deadline:
                raise ConfigurationError(f"the gateway did not start within {timeout} s")
            await asyncio.sleep(0.02)
        self.port = self._server.servers[0].sockets[0].getsockname()[1]
        log.info("gateway listening on %s", self.url)
        return self.url

    async def stop(self) -> None:
        """Stop listening, end every live session's agent and the webhook deliveries in flight."""
        if self._server is None:
            return
        self._server.should_exit = True
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.webhooks.stop()
        self._server = None
        self._task = None

    def expose(self, agent: Any) -> str:
        """Serve an agent you built (its tools, plugins and conversation) at
        `/v1/sessions/<id>`; returns the id. Its session's owner, and the users it is shared with
        (`sessions.share_session`), prompt it, follow its events and decide its approvals with their
        keys — a teammate can approve from elsewhere."""
        return str(self.runtime.expose(agent).session_id)

    def serve_forever(self) -> None:
        """Serve in the foreground until interrupted (what `cmdc-nb serve` does)."""

        async def main() -> None:
            self.webhooks.start()
            self._server = self._uvicorn(foreground=True)
            try:
                await self._server.serve()
            finally:
                await self.webhooks.stop()

        asyncio.run(main())


class RedactQuery(logging.Filter):
    """Query values out of the access log: a client may put a key in the URL (it is refused, but the
    request line would still be logged). Every value is replaced, whatever its parameter's name."""

    _VALUE = re.compile(r"=[^&\s]*")

    def filter(self, record: logging.LogRecord) -> bool:
        args = record.args
        if isinstance(args, tuple) and len(args) >= 3 and isinstance(args[2], str) and "?" in args[2]:
            path, _, query = args[2].partition("?")
            record.args = (*args[:2], f"{path}?{self._VALUE.sub('=[redacted]', query)}", *args[3:])
        return True
