"""The gateway's routes, one router per resource; `create_app` includes them all.

Each factory takes the runtime and the key check (`http.key_check`), so every route but `/healthz` needs a
gateway key, and every router that takes a body runs all of its strings through the guardrails first
(`guarded_body`). Routes stay thin: they check access through the runtime, hand blocking work to a thread,
and let typed errors become JSON through the handlers in `http.py`.
"""

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response
from fastapi.params import Depends as Dependency
from sse_starlette import EventSourceResponse, ServerSentEvent
from starlette.concurrency import run_in_threadpool

from cmdc_nb import _version
from cmdc_nb._plumbing import access
from cmdc_nb._plumbing.service import jsonable
from cmdc_nb.errors import InvalidInputError, NotFoundError
from cmdc_nb.gateway.bodies import (
    Abort,
    AttachTool,
    AttachTools,
    CreateSession,
    Decision,
    Respond,
    SwitchModel,
    TextBody,
)
from cmdc_nb.gateway.guardrails import Guardrails
from cmdc_nb.gateway.runtime import GatewayRuntime, LiveSession, fire_and_forget
from cmdc_nb.services import sessions as sessions_service
from cmdc_nb.store.models import Session, User

__all__ = ["ROUTERS"]

KeyCheck = Callable[..., Awaitable[User]]
MAX_EVENT_INDEX = 10**18  # far beyond any agent's events; a bound both ways of resuming share


def _session_view(live: LiveSession) -> dict[str, Any]:
    return {
        "id": str(live.session_id),
        "model": live.agent.model,
        "state": live.agent.state.value,
        "tools": sorted(live.agent.tools),
        "agent_id": live.agent.id,
    }


def guarded_body(runtime: GatewayRuntime, authenticate: KeyCheck) -> Dependency:
    """The dependency that runs every string of a request's JSON body — values at any depth and the
    keys of objects — through the gateway's guardrails, after the key check and before the route.
    Routers with bodies take it whole, so a field added to a body is checked without a word here."""
    rails = runtime.config.guardrails

    # `user`: the key check runs first (once: FastAPI shares it with the route), so a request without
    # a valid key learns nothing of the guardrails
    async def guard(request: Request, user: Annotated[User, Depends(authenticate)]) -> None:
        if not rails.active:
            return
        raw = await request.body()  # FastAPI keeps it: the route's own body parsing reads it again
        if raw:
            await run_in_threadpool(_check_json_body, rails, raw)

    return Dependency(guard)


def _check_json_body(rails: Guardrails, raw: bytes) -> None:
    try:
        payload = json.loads(raw)
    except (ValueError, RecursionError):
        return  # not JSON: the route's validation refuses the body as malformed
    rails.check_json(payload)


def session_list_routes(runtime: GatewayRuntime, authenticate: KeyCheck) -> APIRouter:
    """The caller's sessions, a page at a time."""
    router = APIRouter()
    ws = runtime.ws
    Auth = Annotated[User, Depends(authenticate)]

    @router.get("/v1/sessions", tags=["sessions"])
    async def list_sessions(
        user: Auth,
        shared: bool = False,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
        after: Annotated[str | None, Query(max_length=500)] = None,
    ) -> dict[str, Any]:
        """The caller's sessions, newest activity first (`shared=true`: those shared with the caller);
        pass `next` back as `after` for the next page. `live` says whether this gateway runs it now."""

        def load() -> dict[str, Any]:
            with access.acting_as(user.id):
                page = sessions_service.list_sessions(user.id, shared=shared, limit=limit, after=after, ws=ws)
            return {
                "sessions": [
                    {
                        "id": str(s.id),
                        "name": s.name,
                        "status": s.status.value,
                        "message_count": s.message_count,
                        "updated_at": s.updated_at.isoformat() if s.updated_at else None,
                        "live": s.id in runtime.live,
                    }
                    for s in page.entries
                ],
                "next": page.next_cursor if page.has_next else None,
            }

        return await run_in_threadpool(load)

    return router


def session_routes(runtime: GatewayRuntime, authenticate: KeyCheck) -> APIRouter:
    """Sessions: create, read, delete, their stored messages and statistics; and the health check."""
    router = APIRouter(dependencies=[guarded_body(runtime, authenticate)])
    ws = runtime.ws
    Auth = Annotated[User, Depends(authenticate)]

    @router.post("/v1/sessions", status_code=201, tags=["sessions"])
    async def create_session(body: CreateSession, user: Auth) -> dict[str, Any]:
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

    @router.get("/v1/sessions/{session_id}", tags=["sessions"])
    async def get_session(session_id: str, user: Auth) -> dict[str, Any]:
        return _session_view(runtime.get(session_id, user))

    @router.delete("/v1/sessions/{session_id}", status_code=204, tags=["sessions"])
    async def delete_session(session_id: str, user: Auth) -> Response:
        await runtime.delete(runtime.get(session_id, user, "own"), user)
        return Response(status_code=204)

    @router.get("/v1/sessions/{session_id}/messages", tags=["sessions"])
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

    @router.get("/v1/sessions/{session_id}/stats", tags=["sessions"])
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

    return router


def agent_routes(runtime: GatewayRuntime, authenticate: KeyCheck) -> APIRouter:
    """The live agent: prompt (202), its events as SSE with resumption, status, steering, abort, model."""
    router = APIRouter(dependencies=[guarded_body(runtime, authenticate)])
    Auth = Annotated[User, Depends(authenticate)]

    @router.post("/v1/sessions/{session_id}/prompt", status_code=202, tags=["agent"])
    async def prompt(session_id: str, body: TextBody, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        with access.acting_as(user.id):
            handle = live.agent.prompt(body.text)
        fire_and_forget(handle)
        return {"accepted": True, "queued": handle.queued}

    @router.get("/v1/sessions/{session_id}/status", tags=["agent"])
    async def status(session_id: str, user: Auth) -> dict[str, Any]:
        return dict(jsonable(runtime.get(session_id, user).agent.status()))

    @router.post("/v1/sessions/{session_id}/steer", tags=["agent"])
    async def steer(session_id: str, body: TextBody, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        with access.acting_as(user.id):
            result = live.agent.steer(body.text)
        if result.handle is not None:
            fire_and_forget(result.handle)
        return {"accepted": result.accepted, "status": result.status}

    @router.post("/v1/sessions/{session_id}/abort", status_code=202, tags=["agent"])
    async def abort(session_id: str, body: Abort, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        reason = live.agent.abort(body.reason, kill_tools=body.kill_tools)
        return {"aborted": True, "reason": reason}

    @router.post("/v1/sessions/{session_id}/switch_model", status_code=202, tags=["agent"])
    async def switch_model(session_id: str, body: SwitchModel, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        model = runtime.check_model(body.model)
        live.agent.switch_model(model, reason="gateway")
        return {"model": live.agent.model}

    return router


def approval_routes(runtime: GatewayRuntime, authenticate: KeyCheck) -> APIRouter:
    """Deciding what the agent waits for: approve or reject a tool call, answer a question."""
    router = APIRouter(dependencies=[guarded_body(runtime, authenticate)])
    Auth = Annotated[User, Depends(authenticate)]

    @router.post("/v1/sessions/{session_id}/approve", tags=["approvals"])
    async def approve(session_id: str, body: Decision, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "decide")
        with access.acting_as(user.id):
            written = live.agent.approve(
                body.ref, args=body.args, note=body.note, remember=body.remember, by=user.id
            )
        if written is not None:
            await written  # stored in a worker thread; its errors are this request's
        return {"ref": body.ref, "decision": "approved"}

    @router.post("/v1/sessions/{session_id}/reject", tags=["approvals"])
    async def reject(session_id: str, body: Decision, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "decide")
        if body.args is not None or body.remember:
            raise InvalidInputError("a rejection takes only a ref and a note", field="args")
        with access.acting_as(user.id):
            written = live.agent.reject(body.ref, note=body.note, auto_resume=True, by=user.id)
        if written is not None:
            await written
        return {"ref": body.ref, "decision": "rejected"}

    @router.post("/v1/sessions/{session_id}/respond", tags=["approvals"])
    async def respond(session_id: str, body: Respond, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        live.agent.user_respond(body.ref, body.response)
        return {"ref": body.ref, "responded": True}

    return router


def tool_routes(runtime: GatewayRuntime, authenticate: KeyCheck) -> APIRouter:
    """Attaching and detaching the gateway's tools."""
    router = APIRouter(dependencies=[guarded_body(runtime, authenticate)])
    Auth = Annotated[User, Depends(authenticate)]

    @router.post("/v1/sessions/{session_id}/tools", tags=["tools"])
    async def attach_tools(session_id: str, body: AttachTools, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        tools = runtime.tools_named(body.names)
        fresh = [t for t in tools if t.name not in live.agent.tools]
        attached = live.agent.attach_tools(fresh) if fresh else []
        return {"attached": attached, "tools": sorted(live.agent.tools)}

    @router.post("/v1/sessions/{session_id}/attach_tool", tags=["tools"])
    async def attach_tool(session_id: str, body: AttachTool, user: Auth) -> dict[str, Any]:
        return await attach_tools(session_id, AttachTools(names=[body.name]), user)

    @router.delete("/v1/sessions/{session_id}/tools/{name}", tags=["tools"])
    async def detach_tool(session_id: str, name: str, user: Auth) -> dict[str, Any]:
        live = runtime.get(session_id, user, "write")
        if name not in live.agent.tools:
            raise NotFoundError("tool", name)
        live.agent.detach_tool(name)
        return {"detached": name, "tools": sorted(live.agent.tools)}

    return router


def health_routes(runtime: GatewayRuntime, authenticate: KeyCheck) -> APIRouter:
    """`/healthz`: up, its version, how many sessions are live. No key needed."""
    router = APIRouter()

    @router.get("/healthz", tags=["health"])
    async def healthz() -> dict[str, Any]:
        return {"status": "ok", "version": _version.__version__, "sessions": len(runtime.live)}

    return router


def event_routes(runtime: GatewayRuntime, authenticate: KeyCheck) -> APIRouter:
    """A session's agent events as server-sent events, resumable from `Last-Event-ID`."""
    router = APIRouter()
    config = runtime.config
    Auth = Annotated[User, Depends(authenticate)]

    @router.get("/v1/sessions/{session_id}/events", tags=["agent"], response_class=EventSourceResponse)
    async def events(
        session_id: str,
        request: Request,
        user: Auth,
        since: Annotated[
            int | None,
            Query(ge=0, le=MAX_EVENT_INDEX, description="replay events after this index (0: all kept)"),
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
        if last_event_id is not None:  # held to the same rule as ?since=: an index of 0 or more
            index = last_event_id.strip()
            if not (index.isascii() and index.isdigit() and len(index) <= 19) or int(index) > MAX_EVENT_INDEX:
                raise InvalidInputError("must be an event index (0 or more)", field="Last-Event-ID")
            after = int(index)
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

    return router


ROUTERS = (
    health_routes,
    session_list_routes,
    session_routes,
    event_routes,
    agent_routes,
    approval_routes,
    tool_routes,
)
