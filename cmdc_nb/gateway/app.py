"""The gateway's HTTP surface: a FastAPI app over a `GatewayRuntime`.

REST as in the seed's gateway (0.1 and 0.2), under `/v1`: sessions, prompt (202), events as SSE with
heartbeats and resumption from `Last-Event-ID`, messages, stats and status, approve / reject / respond,
steer, abort, switch model, attach and detach tools. Every route but `/healthz` and the agent card needs
a gateway key (`X-API-Key: cgw_…` or `Authorization: Bearer cgw_…`) and is rate-limited per key.

Errors are JSON `{"error": code, "detail": text}` with the status their type implies: a guardrail's
refusal 422, an unknown session 404, a rate limit 429 with `Retry-After`, never a 500 for bad input.
Nothing a response or a log line carries holds a key: keys are looked up by their hash only.
"""

import json
import logging
import math
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Header, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from cmdc_nb import _version
from cmdc_nb._plumbing import access
from cmdc_nb._plumbing.service import jsonable
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
from cmdc_nb.gateway.runtime import GatewayRuntime, LiveSession, fire_and_forget
from cmdc_nb.services import sessions as sessions_service
from cmdc_nb.store.models import Session, User

log = logging.getLogger("cmdc_nb.gateway")

__all__ = ["create_app"]

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


# -- request bodies ----------------------------------------------------------------------------------
class CreateSession(BaseModel):
    model: str | None = Field(None, description="one of the gateway's models; its first by default")
    system_prompt: str | None = Field(None, alias="systemPrompt", max_length=100_000)
    name: str | None = Field(None, max_length=200)
    tools: list[str] = Field(default_factory=list, description="names of the gateway's tools to attach")
    user_data: dict[str, Any] = Field(default_factory=dict, alias="userData")
    prompt_mode: Literal["full", "minimal", "none"] = Field("full", alias="promptMode")

    model_config = {"populate_by_name": True, "extra": "forbid"}


class TextBody(BaseModel):
    text: str = Field(..., min_length=1, max_length=1_000_000)
    model_config = {"extra": "forbid"}


class Decision(BaseModel):
    ref: str = Field(..., min_length=1, max_length=200, description="from the approval_required event")
    note: str | None = Field(None, max_length=10_000)
    args: dict[str, Any] | None = Field(None, description="approve with edited arguments")
    remember: bool = False
    model_config = {"extra": "forbid"}


class Respond(BaseModel):
    ref: str = Field(..., min_length=1, max_length=200)
    response: str = Field(..., max_length=1_000_000)
    model_config = {"extra": "forbid"}


class Abort(BaseModel):
    reason: str | None = Field(None, max_length=1000)
    kill_tools: Literal["running", "all", "none"] = "running"
    model_config = {"extra": "forbid"}


class SwitchModel(BaseModel):
    model: str = Field(..., min_length=1, max_length=200)
    model_config = {"extra": "forbid"}


class AttachTools(BaseModel):
    names: list[str] = Field(..., min_length=1, max_length=100)
    model_config = {"extra": "forbid"}


class AttachTool(BaseModel):
    name: str = Field(..., min_length=1, max_length=200)
    model_config = {"extra": "forbid"}


def _session_view(live: LiveSession) -> dict[str, Any]:
    return {
        "id": str(live.session_id),
        "model": live.agent.model,
        "state": live.agent.state.value,
        "tools": sorted(live.agent.tools),
        "agent_id": live.agent.id,
    }


def create_app(
    runtime: GatewayRuntime,
    *,
    extra_routes: Callable[[FastAPI, Callable[..., Awaitable[User]]], None] | None = None,
) -> FastAPI:
    """The FastAPI app of one gateway. `extra_routes(app, authenticate)` mounts more (A2A does)."""
    config = runtime.config
    limiter = RateLimiter(config.rate_limit_per_minute, burst=config.rate_limit_burst)
    ws = runtime.ws

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

    async def authenticate(
        request: Request,
        x_api_key: Annotated[str | None, Header(description="a gateway key (cgw_…)")] = None,
        authorization: Annotated[str | None, Header(description="Bearer <gateway key>")] = None,
    ) -> User:
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
            raise ApiError(
                401, "unauthorized", "unknown, revoked or expired key", {"WWW-Authenticate": "Bearer"}
            ) from None
        wait = limiter.take(str(user.id) + ":" + token[-8:])
        if wait > 0:
            seconds = max(1, math.ceil(wait))
            raise ApiError(
                429,
                "rate_limited",
                f"too many requests: try again in {seconds} s",
                {"Retry-After": str(seconds)},
            )
        request.state.user = user
        return user

    Auth = Annotated[User, Depends(authenticate)]

    # -- health -----------------------------------------------------------------------------------------
    @app.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": _version.__version__, "sessions": len(runtime.live)}

    # -- sessions ---------------------------------------------------------------------------------------
    @app.post("/v1/sessions", status_code=201, tags=["sessions"])
    async def create_session(body: CreateSession, user: Auth) -> dict[str, Any]:
        if body.system_prompt is not None:
            config.guardrails.check(body.system_prompt, field="systemPrompt")
        live = runtime.create(
            user,
            model=body.model,
            system_prompt=body.system_prompt,
            name=body.name,
            tools=body.tools,
            user_data=body.user_data,
            prompt_mode=body.prompt_mode,
        )
        return _session_view(live)

    @app.get("/v1/sessions/{session_id}", tags=["sessions"])
    async def get_session(session_id: str, user: Auth) -> dict[str, Any]:
        return _session_view(runtime.get(session_id, user))

    @app.delete("/v1/sessions/{session_id}", status_code=204, tags=["sessions"])
    async def delete_session(session_id: str, user: Auth) -> Response:
        await runtime.delete(runtime.get(session_id, user, "own"), user)
        return Response(status_code=204)

    @app.post("/v1/sessions/{session_id}/prompt", status_code=202, tags=["agent"])
    async def prompt(session_id: str, body: TextBody, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        config.guardrails.check(body.text)
        with access.acting_as(user.id):
            handle = live.agent.prompt(body.text)
        fire_and_forget(handle)
        return {"accepted": True, "queued": handle.queued}

    @app.get("/v1/sessions/{session_id}/events", tags=["agent"], response_class=EventSourceResponse)
    async def events(
        session_id: str,
        request: Request,
        user: Auth,
        since: Annotated[
            int | None, Query(ge=0, description="replay events after this index (0: all kept)")
        ] = None,
        types: Annotated[
            str | None, Query(max_length=2000, description="comma-separated event types")
        ] = None,
        last_event_id: Annotated[str | None, Header(alias="Last-Event-ID")] = None,
    ) -> EventSourceResponse:
        """Server-sent events: `id` is the event's index, `event` its type, `data` its JSON. A client
        that reconnects with `Last-Event-ID` (or `?since=`) gets exactly the events after it; if the
        gateway no longer keeps some of them, an `event: gap` says which before the stream goes on."""
        live = runtime.get(session_id, user)
        after = since
        if last_event_id is not None:
            try:
                after = max(0, int(last_event_id))
            except ValueError:
                raise InvalidInputError("must be an event index", field="Last-Event-ID") from None
        wanted = {t.strip() for t in types.split(",") if t.strip()} if types else None
        log_ = live.agent.events

        async def stream() -> AsyncIterator[ServerSentEvent]:
            if after is not None:
                kept = log_.replay(since=after)  # what the subscription below replays, unfiltered
                first = kept[0].index if kept else (log_.last_index or 0) + 1
                if first > after + 1:
                    yield ServerSentEvent(
                        data=json.dumps({"missed_after": after, "resumes_at": first}), event="gap"
                    )
            sub = log_.subscribe(since=after, types=wanted)
            try:
                async for env in sub:
                    if wanted is not None and env.type not in wanted:
                        continue
                    yield ServerSentEvent(
                        data=json.dumps(jsonable(env.to_dict()), default=str),
                        event=env.type,
                        id=str(env.index),
                    )
            finally:
                sub.close()

        return EventSourceResponse(stream(), ping=config.heartbeat_s, send_timeout=30)

    @app.get("/v1/sessions/{session_id}/messages", tags=["sessions"])
    async def messages(
        session_id: str,
        user: Auth,
        after_sequence: Annotated[int | None, Query(ge=0, le=2**31)] = None,
        limit: Annotated[int, Query(ge=1, le=500)] = 100,
    ) -> dict[str, Any]:
        live = runtime.get(session_id, user)

        def load() -> list[dict[str, Any]]:
            with access.acting_as(user.id):
                page = sessions_service.list_messages(
                    live.session_id, after_sequence=after_sequence, limit=limit, ws=ws
                )
            return [
                {
                    "id": str(m.id),
                    "sequence": m.sequence,
                    "role": m.role.value,
                    "content": m.content,
                    "content_blocks": jsonable(m.content_blocks),
                    "inserted_at": m.inserted_at.isoformat(),
                }
                for m in page.entries
            ]

        return {"messages": await run_in_threadpool(load)}

    @app.get("/v1/sessions/{session_id}/stats", tags=["sessions"])
    async def stats(session_id: str, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user)

        def load() -> dict[str, Any]:
            with ws.read() as db:
                row = db.get(Session, live.session_id)
                assert row is not None
                return {
                    "message_count": row.message_count,
                    "tokens_in": row.total_tokens_in,
                    "tokens_out": row.total_tokens_out,
                    "cost_usd": str(row.total_cost_usd),
                    "duration_ms": row.total_duration_ms,
                }

        stored = await run_in_threadpool(load)
        return {**stored, "turns": live.agent.turns, "usage": jsonable(live.agent.usage.as_dict())}

    @app.get("/v1/sessions/{session_id}/status", tags=["agent"])
    async def status(session_id: str, user: Auth) -> dict[str, Any]:
        return dict(jsonable(runtime.get(session_id, user).agent.status()))

    # -- decisions --------------------------------------------------------------------------------------
    @app.post("/v1/sessions/{session_id}/approve", tags=["approvals"])
    async def approve(session_id: str, body: Decision, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "decide")
        with access.acting_as(user.id):
            written = live.agent.approve(
                body.ref, args=body.args, note=body.note, remember=body.remember, by=user.id
            )
        if written is not None:
            await written  # stored in a worker thread; its errors are this request's
        return {"ref": body.ref, "decision": "approved"}

    @app.post("/v1/sessions/{session_id}/reject", tags=["approvals"])
    async def reject(session_id: str, body: Decision, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "decide")
        if body.args is not None or body.remember:
            raise InvalidInputError("a rejection takes only a ref and a note", field="args")
        with access.acting_as(user.id):
            written = live.agent.reject(body.ref, note=body.note, auto_resume=True, by=user.id)
        if written is not None:
            await written
        return {"ref": body.ref, "decision": "rejected"}

    @app.post("/v1/sessions/{session_id}/respond", tags=["approvals"])
    async def respond(session_id: str, body: Respond, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        config.guardrails.check(body.response, field="response")
        live.agent.user_respond(body.ref, body.response)
        return {"ref": body.ref, "responded": True}

    # -- steering and control ---------------------------------------------------------------------------
    @app.post("/v1/sessions/{session_id}/steer", tags=["agent"])
    async def steer(session_id: str, body: TextBody, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        config.guardrails.check(body.text)
        with access.acting_as(user.id):
            result = live.agent.steer(body.text)
        if result.handle is not None:
            fire_and_forget(result.handle)
        return {"accepted": result.accepted, "status": result.status}

    @app.post("/v1/sessions/{session_id}/abort", status_code=202, tags=["agent"])
    async def abort(session_id: str, body: Abort, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        reason = live.agent.abort(body.reason, kill_tools=body.kill_tools)
        return {"aborted": True, "reason": reason}

    @app.post("/v1/sessions/{session_id}/switch_model", status_code=202, tags=["agent"])
    async def switch_model(session_id: str, body: SwitchModel, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        model = runtime.check_model(body.model)
        live.agent.switch_model(model, reason="gateway")
        return {"model": live.agent.model}

    @app.post("/v1/sessions/{session_id}/tools", tags=["tools"])
    async def attach_tools(session_id: str, body: AttachTools, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        tools = runtime.tools_named(body.names)
        fresh = [t for t in tools if t.name not in live.agent.tools]
        attached = live.agent.attach_tools(fresh) if fresh else []
        return {"attached": attached, "tools": sorted(live.agent.tools)}

    @app.post("/v1/sessions/{session_id}/attach_tool", tags=["tools"])
    async def attach_tool(session_id: str, body: AttachTool, user: Auth) -> dict[str, Any]:
        return await attach_tools(session_id, AttachTools(names=[body.name]), user)

    @app.delete("/v1/sessions/{session_id}/tools/{name}", tags=["tools"])
    async def detach_tool(session_id: str, name: str, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        if name not in live.agent.tools:
            raise NotFoundError("tool", name)
        live.agent.detach_tool(name)
        return {"detached": name, "tools": sorted(live.agent.tools)}

    if extra_routes is not None:
        extra_routes(app, authenticate)

    def openapi() -> dict[str, Any]:
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

    app.openapi = openapi  # type: ignore[method-assign]
    return app
