"""The seed's A2A methods (protocol 0.1): `tasks/send` and `tasks/sendSubscribe`, on the same endpoint
as the SDK's methods (`POST /v1/a2a`) and by their own paths (`POST /v1/a2a/tasks/send`, as the seed's
gateway serves them).

The client names the task (`params.id`), so `tasks/send` is idempotent on that id: sending a task
that already ran returns it as stored and runs nothing; one still running is waited for. Tasks are
kept in `a2a_tasks` like every other A2A task, so `tasks/get` (served by the SDK's 0.3 compatibility)
finds them too. `sessionId` is the A2A context: one chat session with a live agent.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from types import SimpleNamespace
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse, Response
from sse_starlette import EventSourceResponse, ServerSentEvent

from cmdc_nb._plumbing import access
from cmdc_nb.errors import AbortedError
from cmdc_nb.store.models import User

if TYPE_CHECKING:
    from cmdc_nb.gateway.a2a import DatabaseTaskStore, GatewayAgentExecutor
    from cmdc_nb.gateway.server import Gateway

__all__ = ["LEGACY_METHODS", "LegacyTasks", "rpc_error"]

LEGACY_METHODS = frozenset({"tasks/send", "tasks/sendSubscribe"})
_FINAL = {"TASK_STATE_COMPLETED", "TASK_STATE_FAILED", "TASK_STATE_CANCELED", "TASK_STATE_REJECTED"}


def rpc_error(rid: Any, code: int, message: str, *, status: int = 200, data: Any = None) -> JSONResponse:
    """A JSON-RPC 2.0 error response."""
    error: dict[str, Any] = {"code": code, "message": message}
    if data is not None:
        error["data"] = data
    return JSONResponse({"jsonrpc": "2.0", "id": rid, "error": error}, status_code=status)


def legacy_view(task: Any) -> dict[str, Any]:
    """An A2A 1.0 `Task` in the 0.1 shape the seed's clients read."""
    from a2a.helpers import get_text_parts
    from a2a.types import a2a_pb2 as pb

    state = pb.TaskState.Name(task.status.state).removeprefix("TASK_STATE_").lower().replace("_", "-")
    status: dict[str, Any] = {"state": state}
    if task.status.HasField("timestamp"):
        status["timestamp"] = task.status.timestamp.ToJsonString()
    if task.status.HasField("message"):
        status["message"] = {
            "role": "agent",
            "parts": [{"type": "text", "text": t} for t in get_text_parts(task.status.message.parts)],
        }
    return {
        "id": task.id,
        "sessionId": task.context_id,
        "status": status,
        "artifacts": [
            {
                "name": a.name,
                "index": i,
                "parts": [{"type": "text", "text": t} for t in get_text_parts(a.parts)],
            }
            for i, a in enumerate(task.artifacts)
        ],
    }


class LegacyTasks:
    def __init__(self, gateway: Gateway, executor: GatewayAgentExecutor, store: DatabaseTaskStore) -> None:
        self.gateway, self.executor, self.store = gateway, executor, store
        self._locks: dict[tuple[str, str], asyncio.Lock] = {}
        self._running: set[asyncio.Future[None]] = set()  # streamed tasks still working (kept referenced)

    async def handle(self, user: User, payload: dict[str, Any]) -> Response:
        rid = payload.get("id")
        params = payload.get("params")
        if not isinstance(params, dict):
            return rpc_error(rid, -32602, "params must be an object")
        tid = params.get("id")
        if not isinstance(tid, str) or not tid.strip() or len(tid) > 200:
            return rpc_error(rid, -32602, "params.id (the task id) must be text of at most 200 characters")
        message = params.get("message")
        parts = message.get("parts") if isinstance(message, dict) else None
        texts = [p["text"] for p in parts or [] if isinstance(p, dict) and isinstance(p.get("text"), str)]
        if not texts or not "".join(texts).strip():
            return rpc_error(rid, -32602, "params.message needs a text part")
        session = params.get("sessionId")
        if session is not None and (not isinstance(session, str) or len(session) > 200):
            return rpc_error(rid, -32602, "params.sessionId must be text of at most 200 characters")
        text = "\n".join(texts)
        if payload.get("method") == "tasks/send":
            task = await self._run(user, tid, session, text, None)
            return JSONResponse({"jsonrpc": "2.0", "id": rid, "result": legacy_view(task)})

        queue: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

        async def produce() -> None:
            try:
                await self._run(user, tid, session, text, queue)
            finally:
                queue.put_nowait(None)

        self._running.add(runner := asyncio.ensure_future(produce()))
        runner.add_done_callback(self._running.discard)

        async def stream() -> AsyncIterator[ServerSentEvent]:
            # A client that goes away does not stop the task: it finishes and is stored, for tasks/get.
            while (item := await queue.get()) is not None:
                yield ServerSentEvent(data=json.dumps({"jsonrpc": "2.0", "id": rid, "result": item}))

        return EventSourceResponse(stream(), ping=self.gateway.config.heartbeat_s)

    async def _run(
        self,
        user: User,
        tid: str,
        session: str | None,
        text: str,
        events: asyncio.Queue[dict[str, Any] | None] | None,
    ) -> Any:
        from a2a.helpers import new_task, new_text_artifact, new_text_message
        from a2a.types import a2a_pb2 as pb

        ctx = SimpleNamespace(user=SimpleNamespace(user_name=str(user.id)))
        lock = self._locks.setdefault((str(user.id), tid), asyncio.Lock())

        def status_event(task: Any, final: bool) -> dict[str, Any]:
            view = legacy_view(task)
            return {"id": task.id, "status": view["status"], "final": final}

        async with lock:  # a second send of the same id waits for the first, then sees its result
            task = await self.store.get(tid, ctx)
            if task is not None and pb.TaskState.Name(task.status.state) in _FINAL:
                if events is not None:
                    for i, artifact in enumerate(legacy_view(task)["artifacts"]):
                        events.put_nowait({"id": tid, "artifact": artifact | {"index": i}})
                    events.put_nowait(status_event(task, True))
                return task
            context_id = session or str(uuid.uuid4())
            live = self.executor.live_for(user, context_id)
            message = new_text_message(text, context_id=context_id, task_id=tid, role=pb.Role.ROLE_USER)
            task = new_task(tid, context_id, pb.TaskState.TASK_STATE_WORKING, history=[message])
            task.metadata.update({"cmdc_session_id": str(live.session_id)})
            task.status.timestamp.GetCurrentTime()
            await self.store.save(task, ctx)
            if events is not None:
                events.put_nowait(status_event(task, False))
            try:
                with access.acting_as(user.id):
                    handle = live.agent.prompt(text)
                reply = await handle.future
            except AbortedError as exc:
                task.status.state = pb.TaskState.TASK_STATE_CANCELED
                task.status.message.CopyFrom(new_text_message(f"aborted: {exc.reason}"))
            except Exception as exc:  # the task fails; the caller learns the kind, not internals
                task.status.state = pb.TaskState.TASK_STATE_FAILED
                task.status.message.CopyFrom(new_text_message(f"the agent failed ({type(exc).__name__})"))
            else:
                artifact = new_text_artifact("reply", reply)
                task.artifacts.append(artifact)
                if events is not None:
                    events.put_nowait({"id": tid, "artifact": legacy_view(task)["artifacts"][-1]})
                task.status.state = pb.TaskState.TASK_STATE_COMPLETED
            task.status.timestamp.GetCurrentTime()
            await self.store.save(task, ctx)
            if events is not None:
                events.put_nowait(status_event(task, True))
            return task
