"""The gateway's HTTP layer below the routes: errors as JSON with the status their type implies, and
the key check with its per-key rate limit that every route but `/healthz` depends on."""

import logging
import math
from collections.abc import Awaitable, Callable
from typing import Annotated

from fastapi import FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from cmdc_nb.errors import (
    AbortedError,
    AccessDeniedError,
    AgentError,
    AgentNotAliveError,
    BudgetExceededError,
    CmdcError,
    ConflictError,
    GuardrailError,
    InvalidInputError,
    InvalidStateError,
    NotFoundError,
)
from cmdc_nb.gateway.keys import authenticate_gateway_key
from cmdc_nb.gateway.ratelimit import RateLimiter
from cmdc_nb.gateway.runtime import GatewayRuntime
from cmdc_nb.store.models import User

log = logging.getLogger("cmdc_nb.gateway")

__all__ = ["ApiError", "install_error_handlers", "key_check"]

# status and error code by error type; the first match (most specific first) wins
_STATUS: tuple[tuple[type[CmdcError], int, str], ...] = (
    (GuardrailError, 422, "guardrail"),
    (ConflictError, 409, "conflict"),
    (InvalidInputError, 422, "invalid_input"),
    (NotFoundError, 404, "not_found"),
    (AccessDeniedError, 403, "forbidden"),
    (AgentNotAliveError, 410, "agent_not_alive"),
    (InvalidStateError, 409, "invalid_state"),
    (AbortedError, 409, "aborted"),
    (BudgetExceededError, 402, "budget_exceeded"),
    (AgentError, 409, "agent_error"),
)


def _error(status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status, headers=headers)


class ApiError(Exception):
    """A refusal the HTTP layer itself makes (no key, a rate limit)."""

    def __init__(self, status: int, code: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail, self.headers = status, code, detail, headers


def install_error_handlers(app: FastAPI) -> None:
    """Typed errors become `{"error": code, "detail": text}` with their status; never a 500 for bad input."""

    @app.exception_handler(CmdcError)
    async def on_cmdc_error(request: Request, exc: CmdcError) -> JSONResponse:
        for kind, status, code in _STATUS:
            if isinstance(exc, kind):
                return _error(status, code, str(exc))
        log.warning("gateway: %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return _error(400, "refused", str(exc))

    @app.exception_handler(ApiError)
    async def on_api_error(request: Request, exc: ApiError) -> JSONResponse:
        return _error(exc.status, exc.code, exc.detail, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def on_validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            f"{'.'.join(str(p) for p in e.get('loc', ()) if p != 'body') or 'body'}: {e.get('msg')}"
            for e in exc.errors()
        ]
        return _error(422, "invalid_input", "; ".join(problems) or "malformed request")

    @app.exception_handler(Exception)
    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        # The detail stays in the server's log (type and place only: the message may carry input).
        log.error("gateway: unexpected %s on %s %s", type(exc).__name__, request.method, request.url.path)
        return _error(500, "internal", "the gateway failed on this request; its log says where")


def key_check(runtime: GatewayRuntime, limiter: RateLimiter) -> Callable[..., Awaitable[User]]:
    """The dependency that turns a request's gateway key into its user, or refuses it (401, 429).
    Refused keys are counted per client address: past `auth_failures_per_minute`, that address gets
    429 before any key of its is looked at."""
    ws = runtime.ws
    failures = RateLimiter(runtime.config.auth_failures_per_minute)

    async def authenticate(
        request: Request,
        x_api_key: Annotated[str | None, Header(description="a gateway key (cgw_…)")] = None,
        authorization: Annotated[str | None, Header(description="Bearer <gateway key>")] = None,
    ) -> User:
        address = request.client.host if request.client is not None else "unknown"
        _throttle(failures.waiting(address))
        token = x_api_key
        if token is None and authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                token = value.strip()
        if not token:
            raise ApiError(
                401,
                "unauthorized",
                "send a gateway key: X-API-Key or Authorization: Bearer",
                {"WWW-Authenticate": "Bearer"},
            )
        try:
            user = await run_in_threadpool(authenticate_gateway_key, token, ws=ws)
        except InvalidInputError:
            failures.take(address)
            raise ApiError(
                401, "unauthorized", "unknown, revoked or expired key", {"WWW-Authenticate": "Bearer"}
            ) from None
        _throttle(limiter.take(str(user.id) + ":" + token[-8:]))
        request.state.user = user
        return user

    return authenticate


def _throttle(wait: float) -> None:
    if wait > 0:
        seconds = max(1, math.ceil(wait))
        raise ApiError(
            429, "rate_limited", f"too many requests: try again in {seconds} s", {"Retry-After": str(seconds)}
        )
