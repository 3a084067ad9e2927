"""The A2A protocol on the gateway, through the official `a2a-sdk` (protocol 1.0, with 0.3 compatibility).

- The agent card at `/.well-known/agent-card.json` (and the seed's `/.well-known/agent.json`), no key
  needed: it says where to call and that a gateway key goes in `X-API-Key` or `Authorization: Bearer`.
- JSON-RPC at `/v1/a2a`: SendMessage, SendStreamingMessage (SSE status and artifact updates),
  GetTask, ListTasks, CancelTask, SubscribeToTask — and the 0.3 names (message/send, message/stream,
  tasks/get, …). Behind the same key check, rate limit and guardrails as the REST routes: every string
  of a request's params (message parts, metadata, ids) is checked before the SDK sees it.
- Tasks are rows of `a2a_tasks` (the SDK's `TaskStore` kept in the workspace's database), owned by
  the key's user: another user's task is not found. An A2A context is one chat session with a live
  agent, so follow-up messages in a context continue the same conversation.
- A message whose `message_id` was already answered in that context returns the task it made,
  without running again (retries are safe).
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from cmdc_nb._plumbing import access
from cmdc_nb.errors import AbortedError, CmdcError, GuardrailError
from cmdc_nb.events import topics
from cmdc_nb.gateway.a2a_legacy import LEGACY_METHODS, LegacyTasks, rpc_error
from cmdc_nb.store.models import A2ATask, User

if TYPE_CHECKING:
    from cmdc_nb.gateway.guardrails import Guardrails
    from cmdc_nb.gateway.runtime import LiveSession
    from cmdc_nb.gateway.server import Gateway

log = logging.getLogger("cmdc_nb.gateway.a2a")

__all__ = ["DatabaseTaskStore", "GatewayAgentExecutor", "agent_card", "mount_a2a"]

RPC_PATH = "/v1/a2a"


def agent_card(gateway: Gateway) -> Any:
    from a2a.types import a2a_pb2 as pb

    cfg = gateway.config
    base = (cfg.public_url or gateway.url).rstrip("/")
    return pb.AgentCard(
        name=cfg.agent_name,
        description=cfg.agent_description,
        version="1.0.0",
        supported_interfaces=[
            pb.AgentInterface(url=base + RPC_PATH, protocol_binding="JSONRPC", protocol_version="1.0")
        ],
        capabilities=pb.AgentCapabilities(streaming=True, push_notifications=False),
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain"],
        security_schemes={
            "apiKey": pb.SecurityScheme(
                api_key_security_scheme=pb.APIKeySecurityScheme(
                    name="X-API-Key", location="header", description="a cmdc_nb gateway key (cgw_…)"
                )
            ),
            "bearer": pb.SecurityScheme(
                http_auth_security_scheme=pb.HTTPAuthSecurityScheme(scheme="bearer", bearer_format="cgw_…")
            ),
        },
        skills=[
            pb.AgentSkill(
                id="chat",
                name="Chat",
                description=cfg.agent_description,
                tags=["chat", "tools"],
                examples=["Summarise this text", "What can you do?"],
            )
        ],
    )


def _task_owner(context: Any) -> str:
    return str(context.user.user_name)


class DatabaseTaskStore:
    """The SDK's `TaskStore`, kept in `a2a_tasks`: tasks survive the server, and each is its owner's."""

    def __init__(self, gateway: Gateway) -> None:
        self.ws = gateway.ws
        self.notify = gateway.webhooks.notify

    @staticmethod
    def _doc(task: Any) -> dict[str, Any]:
        from google.protobuf.json_format import MessageToDict

        return dict(MessageToDict(task, preserving_proto_field_name=False))

    @staticmethod
    def _task(doc: dict[str, Any]) -> Any:
        from a2a.types import a2a_pb2 as pb
        from google.protobuf.json_format import ParseDict

        return ParseDict(doc, pb.Task(), ignore_unknown_fields=True)

    async def save(self, task: Any, context: Any) -> None:
        from a2a.types import a2a_pb2 as pb

        owner = _task_owner(context)
        doc = self._doc(task)
        state = pb.TaskState.Name(task.status.state)

        def write() -> str | None:
            with self.ws.transaction() as tx:
                row = tx.db.scalar(
                    sa.select(A2ATask)
                    .where(A2ATask.owner == owner, A2ATask.task_id == task.id)
                    .with_for_update()
                )
                before = row.state if row is not None else None
                if row is None:
                    session_id = dict(task.metadata.items()).get("cmdc_session_id")  # a protobuf Struct
                    row = A2ATask(
                        id=uuid.uuid4(),
                        task_id=task.id,
                        owner=owner,
                        context_id=task.context_id or None,
                        state=state,
                        session_id=uuid.UUID(session_id) if session_id else None,
                        document=doc,
                    )
                    tx.db.add(row)
                else:
                    row.state, row.document = state, doc
                tx.db.flush()
                tx.publish(topics.a2a_tasks(owner), "a2a_task_saved", {"task_id": task.id, "state": state})
                return before

        before = await asyncio.to_thread(write)
        if before != state:
            self.notify(
                "task." + state.removeprefix("TASK_STATE_").lower(),
                {"task_id": task.id, "context_id": task.context_id, "state": state, "owner": owner},
            )

    async def get(self, task_id: str, context: Any) -> Any:
        owner = _task_owner(context)

        def read() -> dict[str, Any] | None:
            with self.ws.read() as db:
                return db.scalar(
                    sa.select(A2ATask.document).where(A2ATask.owner == owner, A2ATask.task_id == task_id)
                )

        doc = await asyncio.to_thread(read)
        return None if doc is None else self._task(doc)

    async def list(self, params: Any, context: Any) -> Any:
        from a2a.types import a2a_pb2 as pb

        owner = _task_owner(context)
        size = params.page_size or 50
        offset = int(params.page_token) if params.page_token.isdigit() else 0

        def read() -> tuple[list[dict[str, Any]], int]:
            stmt = sa.select(A2ATask.document).where(A2ATask.owner == owner)
            count = sa.select(sa.func.count()).select_from(A2ATask).where(A2ATask.owner == owner)
            if params.context_id:
                stmt = stmt.where(A2ATask.context_id == params.context_id)
                count = count.where(A2ATask.context_id == params.context_id)
            if params.status:
                name = pb.TaskState.Name(params.status)
                stmt, count = stmt.where(A2ATask.state == name), count.where(A2ATask.state == name)
            stmt = stmt.order_by(A2ATask.updated_at.desc(), A2ATask.id).offset(offset).limit(size)
            with self.ws.read() as db:
                return list(db.scalars(stmt)), int(db.scalar(count) or 0)

        docs, total = await asyncio.to_thread(read)
        following = str(offset + size) if offset + size < total else ""
        return pb.ListTasksResponse(
            tasks=[self._task(d) for d in docs], next_page_token=following, total_size=total, page_size=size
        )

    async def delete(self, task_id: str, context: Any) -> None:
        owner = _task_owner(context)

        def write() -> None:
            with self.ws.transaction() as tx:
                tx.db.execute(sa.delete(A2ATask).where(A2ATask.owner == owner, A2ATask.task_id == task_id))

        await asyncio.to_thread(write)


class GatewayAgentExecutor:
    """Runs a message through the context's agent and reports the task's progress and reply."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.contexts: dict[tuple[str, str], uuid.UUID] = {}  # (owner, context id) -> session id

    def live_for(self, user: User, context_id: str) -> LiveSession:
        """The live session of an A2A context: made on its first message, then reused."""
        runtime = self.gateway.runtime
        key = (str(user.id), context_id)
        sid = self.contexts.get(key)
        if sid is None:  # a context begun before this gateway started: its tasks know the session
            with self.gateway.ws.read() as db:
                sid = db.scalar(
                    sa.select(A2ATask.session_id)
                    .where(A2ATask.owner == str(user.id), A2ATask.context_id == context_id)
                    .where(A2ATask.session_id.is_not(None))
                    .order_by(A2ATask.inserted_at.desc())
                    .limit(1)
                )
        if sid is not None:
            try:
                live = runtime.get(sid, user, "write")
            except CmdcError:  # archived or gone: the context starts a new conversation
                pass
            else:
                self.contexts[key] = live.session_id
                return live
        live = runtime.create(user, name=f"a2a {context_id[:8]}")
        self.contexts[key] = live.session_id
        return live

    def _user(self, context: Any) -> User:
        return context.call_context.state["cmdc_user"]  # type: ignore[no-any-return]

    async def execute(self, context: Any, event_queue: Any) -> None:
        from a2a.helpers import get_message_text, new_task, new_text_message, new_text_part
        from a2a.server.tasks import TaskUpdater
        from a2a.types import a2a_pb2 as pb

        user = self._user(context)
        text = get_message_text(context.message) if context.message is not None else ""
        live = self.live_for(user, context.context_id)
        task = context.current_task
        if task is None:
            task = new_task(
                context.task_id,
                context.context_id,
                pb.TaskState.TASK_STATE_SUBMITTED,
                history=[context.message],
            )
            task.metadata.update({"cmdc_session_id": str(live.session_id)})
            await event_queue.enqueue_event(task)
        updater = TaskUpdater(event_queue, task.id, task.context_id)
        await updater.start_work()
        if not text.strip():
            await updater.reject(
                new_text_message("send some text", context_id=task.context_id, task_id=task.id)
            )
            return
        try:
            with access.acting_as(user.id):
                handle = live.agent.prompt(text)
            reply = await handle.future
        except AbortedError as exc:
            await updater.cancel(
                new_text_message(f"aborted: {exc.reason}", context_id=task.context_id, task_id=task.id)
            )
            return
        except Exception as exc:  # the task fails; the caller learns the kind, not internals
            log.warning("a2a task %s failed: %s", task.id, type(exc).__name__)
            await updater.failed(
                new_text_message(
                    f"the agent failed ({type(exc).__name__})", context_id=task.context_id, task_id=task.id
                )
            )
            return
        await updater.add_artifact([new_text_part(reply)], name="reply")
        await updater.complete()

    async def cancel(self, context: Any, event_queue: Any) -> None:
        from a2a.server.tasks import TaskUpdater

        user = self._user(context)
        sid = self.contexts.get((str(user.id), context.context_id))
        live = self.gateway.runtime.live.get(sid) if sid is not None else None
        if live is not None and live.agent.busy:
            live.agent.abort("user_cancelled")
        task = context.current_task
        if task is not None:
            await TaskUpdater(event_queue, task.id, task.context_id).cancel()


def _guard(guardrails: Guardrails, payload: Any) -> JSONResponse | None:
    """Every string of a JSON-RPC request's params (a batch's too) through the guardrails: message parts
    of any kind, metadata at any depth, ids, keys. A refusal is the JSON-RPC error of the request."""
    for request in payload if isinstance(payload, list) else [payload]:
        if not isinstance(request, dict):
            continue
        try:
            guardrails.check_json(request.get("params"), field="params")
        except GuardrailError as exc:
            return rpc_error(request.get("id"), -32602, str(exc), status=422, data={"rule": exc.rule})
    return None


def _context_builder() -> Any:
    """What the a2a-sdk learns of a request: the user the gateway key belongs to (checked before)."""
    from a2a.auth.user import User as A2AUser
    from a2a.server.context import ServerCallContext
    from a2a.server.routes import ServerCallContextBuilder

    class _Caller(A2AUser):
        def __init__(self, user: User) -> None:
            self.user = user

        @property
        def is_authenticated(self) -> bool:
            return True

        @property
        def user_name(self) -> str:
            return str(self.user.id)

    class _Context(ServerCallContextBuilder):
        def build(self, request: Request) -> ServerCallContext:
            user: User = request.state.user
            return ServerCallContext(
                user=_Caller(user),
                state={"cmdc_user": user, "headers": {"a2a-version": request.headers.get("a2a-version", "")}},
            )

    return _Context()


def mount_a2a(app: FastAPI, authenticate: Callable[..., Awaitable[User]], gateway: Gateway) -> None:
    """Add the agent card and the JSON-RPC endpoint to the gateway's app."""
    from a2a.server.request_handlers import DefaultRequestHandler
    from a2a.server.routes.jsonrpc_dispatcher import JsonRpcDispatcher
    from a2a.utils.constants import AGENT_CARD_WELL_KNOWN_PATH
    from google.protobuf.json_format import MessageToDict

    executor = GatewayAgentExecutor(gateway)
    store = DatabaseTaskStore(gateway)
    handler = DefaultRequestHandler(
        agent_executor=executor,  # type: ignore[arg-type]
        task_store=store,  # type: ignore[arg-type]
        agent_card=agent_card(gateway),
    )
    legacy = LegacyTasks(gateway, executor, store)
    dispatcher = JsonRpcDispatcher(
        request_handler=handler, context_builder=_context_builder(), enable_v0_3_compat=True
    )

    async def card() -> JSONResponse:
        # made per request: the URL in it is known only once the server is bound (port 0 picks one)
        return JSONResponse(MessageToDict(agent_card(gateway)))

    app.add_api_route(
        AGENT_CARD_WELL_KNOWN_PATH, card, methods=["GET"], tags=["a2a"], summary="A2A agent card"
    )
    app.add_api_route(
        "/.well-known/agent.json", card, methods=["GET"], tags=["a2a"], summary="A2A agent card (seed path)"
    )

    async def read(request: Request) -> Any:
        """The caller authenticated, the body parsed (None when it is not JSON) and guarded: the payload,
        or the response that refuses it."""
        await authenticate(
            request,
            x_api_key=request.headers.get("x-api-key"),
            authorization=request.headers.get("authorization"),
        )
        try:
            payload = json.loads(await request.body() or b"null")
        except ValueError:
            payload = None
        if gateway.config.guardrails.active:
            refused = await asyncio.to_thread(_guard, gateway.config.guardrails, payload)
            if refused is not None:
                return refused
        return payload

    async def rpc(request: Request) -> Response:
        payload = await read(request)
        if isinstance(payload, Response):
            return payload
        method = payload.get("method") if isinstance(payload, dict) else None
        if method in LEGACY_METHODS:
            return await legacy.handle(request.state.user, payload)
        return await dispatcher.handle_requests(request)

    _mount_seed_paths(app, read, legacy)

    app.add_api_route(
        RPC_PATH,
        rpc,
        methods=["POST"],
        tags=["a2a"],
        summary="A2A JSON-RPC 2.0 (SendMessage, SendStreamingMessage, GetTask, … and the 0.3 names)",
        include_in_schema=True,
    )


def _mount_seed_paths(app: FastAPI, read: Callable[[Request], Awaitable[Any]], legacy: LegacyTasks) -> None:
    """The 0.1 methods by their own paths, beside the JSON-RPC endpoint."""

    def by_path(method: str) -> Callable[[Request], Awaitable[Response]]:
        # The CMDC gateway's changelog serves the 0.1 methods as paths (POST /v1/a2a/tasks/send): a
        # client written against it posts the same JSON-RPC envelope there, with or without "method".
        async def route(request: Request) -> Response:
            payload = await read(request)
            if isinstance(payload, Response):
                return payload
            if payload is None:
                return rpc_error(None, -32700, "the body is not JSON (a JSON-RPC 2.0 request object)")
            if not isinstance(payload, dict):
                return rpc_error(None, -32600, "the body must be a JSON-RPC 2.0 request object")
            named = payload.get("method", method)
            if named != method:
                return rpc_error(
                    payload.get("id"), -32600, f"this path serves {method}; post other methods to {RPC_PATH}"
                )
            return await legacy.handle(request.state.user, {**payload, "method": method})

        return route

    for method in sorted(LEGACY_METHODS):
        app.add_api_route(
            f"{RPC_PATH}/{method}",
            by_path(method),
            methods=["POST"],
            tags=["a2a"],
            summary=f"A2A {method} (protocol 0.1) by its path, as the seed's gateway serves it",
        )
