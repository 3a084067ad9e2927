"""The gateway's HTTP surface: a FastAPI app over a `GatewayRuntime`.

REST as in the seed's gateway (0.1 and 0.2), under `/v1`: sessions, prompt (202), events as SSE with
heartbeats and resumption from `Last-Event-ID`, messages, stats and status, approve / reject / respond,
steer, abort, switch model, attach and detach tools. Every route but `/healthz` and the agent card needs
a gateway key (`X-API-Key: cgw_…` or `Authorization: Bearer cgw_…`) and is rate-limited per key.

Errors are JSON `{"error": code, "detail": text}` with the status their type implies: a guardrail's
refusal 422, an unknown session 404, a rate limit 429 with `Retry-After`, never a 500 for bad input.
Nothing a response or a log line carries holds a key: keys are looked up by their hash only.
"""

import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from cmdc_nb import _version
from cmdc_nb.gateway.http import install_error_handlers, key_check
from cmdc_nb.gateway.ratelimit import RateLimiter
from cmdc_nb.gateway.routes import ROUTERS
from cmdc_nb.gateway.runtime import GatewayRuntime
from cmdc_nb.store.models import User

log = logging.getLogger("cmdc_nb.gateway")

__all__ = ["create_app"]


def create_app(
    runtime: GatewayRuntime,
    *,
    extra_routes: Callable[[FastAPI, Callable[..., Awaitable[User]]], None] | None = None,
) -> FastAPI:
    """The FastAPI app of one gateway. `extra_routes(app, authenticate)` mounts more (A2A does)."""
    config = runtime.config

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        yield
        await runtime.close()

    app = FastAPI(
        title="cmdc_nb gateway",
        version=_version.__version__,
        description=(
            "Run cmdc_nb agents over HTTP: sessions, prompts, live events (SSE), approvals, steering, "
            "and the A2A protocol. Authenticate with a gateway key (`X-API-Key` or `Authorization: Bearer`)."
        ),
        lifespan=lifespan,
    )
    if config.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=list(config.cors_origins),
            allow_methods=["GET", "POST", "DELETE"],
            allow_headers=["Authorization", "X-API-Key", "Content-Type", "Last-Event-ID"],
            expose_headers=["Retry-After"],
        )
    install_error_handlers(app)
    authenticate = key_check(
        runtime, RateLimiter(config.rate_limit_per_minute, burst=config.rate_limit_burst)
    )
    for routes in ROUTERS:
        app.include_router(routes(runtime, authenticate))
    if extra_routes is not None:
        extra_routes(app, authenticate)
    app.openapi = lambda: _openapi_with_links(app)  # type: ignore[method-assign]
    return app


def _openapi_with_links(app: FastAPI) -> dict[str, Any]:
    # OpenAPI links from "create a session" to every operation on one: clients and generators
    # (schemathesis's stateful phase) learn where the id goes.
    if app.openapi_schema is None:
        from fastapi.openapi.utils import get_openapi

        doc = get_openapi(
            title=app.title, version=app.version, description=app.description, routes=app.routes
        )
        links = {}
        for path, ops in doc["paths"].items():
            if "{session_id}" not in path:
                continue
            for method, op in ops.items():
                links[op["operationId"]] = {
                    "operationId": op["operationId"],
                    "parameters": {"session_id": "$response.body#/id"},
                    "description": f"{method.upper()} {path} on the new session",
                }
        created = doc["paths"]["/v1/sessions"]["post"]["responses"]["201"]
        created["links"] = links
        app.openapi_schema = doc
    return app.openapi_schema
