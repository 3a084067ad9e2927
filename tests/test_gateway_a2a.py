"""A2A against the official `a2a-sdk` client as a real peer, over loopback HTTP.

The client resolves the agent card, sends messages (blocking and streaming), follows a conversation in
one context, gets and lists tasks; tasks are rows in the workspace's database, owned by the key's user.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
import sqlalchemy as sa
from a2a.client import ClientConfig, create_client
from a2a.helpers import get_artifact_text, new_text_message
from a2a.types import a2a_pb2 as pb
from waiting import CEILING_S

import cmdc_nb
from cmdc_nb.gateway import Gateway, Guardrails, create_gateway_key
from cmdc_nb.providers import Script
from cmdc_nb.store.models import A2ATask
from cmdc_nb.workspace import Workspace


def _reply(messages: list[dict[str, Any]]) -> str:
    users = [m["content"] for m in messages if m["role"] == "user"]
    return f"heard {len(users)}: {users[-1]}"


A2A_MODEL = Script(_reply, name="a2a-peer").model


@pytest.fixture
async def peer(ws: Workspace) -> AsyncIterator[tuple[Gateway, str, Workspace]]:
    user = cmdc_nb.accounts.create_user("ada@example.com", ws=ws)
    key = create_gateway_key(user, name="a2a", ws=ws).key
    gw = Gateway(ws=ws, port=0, models=[A2A_MODEL], guardrails=Guardrails(deny_keywords=["forbidden"]))
    await gw.start()
    yield gw, key, ws
    await gw.stop()


def user_message(
    text: str, *, context_id: str | None = None, message_id: str | None = None
) -> pb.SendMessageRequest:
    msg = new_text_message(text, context_id=context_id, role=pb.Role.ROLE_USER)
    if message_id:
        msg.message_id = message_id
    return pb.SendMessageRequest(message=msg)


async def final_task(client: Any, request: pb.SendMessageRequest) -> pb.Task:
    task = None
    async for response in client.send_message(request):
        if response.HasField("task"):
            task = response.task
        elif response.HasField("status_update") and task is not None:
            task.status.CopyFrom(response.status_update.status)
        elif response.HasField("artifact_update") and task is not None:
            task.artifacts.append(response.artifact_update.artifact)
    assert task is not None
    return task


async def test_the_a2a_sdk_client_talks_to_the_gateway(peer: tuple[Gateway, str, Workspace]) -> None:
    gw, key, ws = peer
    async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=CEILING_S) as http:
        card = (await http.get(f"{gw.url}/.well-known/agent-card.json")).json()
        assert card["supportedInterfaces"][0]["url"] == f"{gw.url}/v1/a2a"
        assert card["capabilities"]["streaming"] is True and "apiKey" in card["securitySchemes"]
        assert (await http.get(f"{gw.url}/.well-known/agent.json")).json() == card  # the seed's path too

        for streaming in (False, True):
            client = await create_client(
                gw.url, client_config=ClientConfig(streaming=streaming, httpx_client=http)
            )
            first = await final_task(client, user_message("hello"))
            assert first.status.state == pb.TaskState.TASK_STATE_COMPLETED, first
            assert get_artifact_text(first.artifacts[-1]) == "heard 1: hello"
            # a follow-up in the same context continues the conversation
            second = await final_task(client, user_message("again", context_id=first.context_id))
            assert second.context_id == first.context_id and second.id != first.id
            assert get_artifact_text(second.artifacts[-1]) == "heard 2: again"
            got = await client.get_task(pb.GetTaskRequest(id=first.id))
            assert got.status.state == pb.TaskState.TASK_STATE_COMPLETED
            assert get_artifact_text(got.artifacts[-1]) == "heard 1: hello"

        listed = await client.list_tasks(pb.ListTasksRequest())
        assert len(listed.tasks) == 4

    # stored, not only in memory: every task is a row owned by the key's user
    with ws.read() as db:
        rows = db.execute(sa.select(A2ATask.task_id, A2ATask.state, A2ATask.session_id)).all()
    assert len(rows) == 4 and {r.state for r in rows} == {"TASK_STATE_COMPLETED"}
    assert all(r.session_id is not None for r in rows)

    # another user's key does not see them
    grace = cmdc_nb.accounts.create_user("grace@example.com", ws=ws)
    other = create_gateway_key(grace, name="g", ws=ws).key
    async with httpx.AsyncClient(headers={"X-API-Key": other}, timeout=CEILING_S) as http:
        client = await create_client(gw.url, client_config=ClientConfig(streaming=False, httpx_client=http))
        assert len((await client.list_tasks(pb.ListTasksRequest())).tasks) == 0
        with pytest.raises(Exception, match=r"(?i)not found"):
            await client.get_task(pb.GetTaskRequest(id=rows[0].task_id))


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_a2a_needs_a_key_and_passes_the_guardrails(peer: tuple[Gateway, str, Workspace]) -> None:
    gw, key, _ = peer
    body = {
        "jsonrpc": "2.0",
        "id": 1,
        "method": "SendMessage",
        "params": {
            "message": {
                "messageId": str(uuid.uuid4()),
                "role": "ROLE_USER",
                "parts": [{"text": "a forbidden word"}],
            }
        },
    }
    async with httpx.AsyncClient(timeout=CEILING_S) as http:
        r = await http.post(f"{gw.url}/v1/a2a", json=body, headers={"A2A-Version": "1.0"})
        assert r.status_code == 401
        r = await http.post(f"{gw.url}/v1/a2a", json=body, headers={"A2A-Version": "1.0", "X-API-Key": key})
        assert r.status_code == 422 and r.json()["error"]["data"]["rule"] == "keyword 'forbidden'"
        assert "a forbidden word" not in r.text
        r = await http.post(f"{gw.url}/v1/a2a", content=b"{broken", headers={"X-API-Key": key})
        assert r.status_code < 500 and json.loads(r.text)["error"]["code"] == -32700


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_the_seeds_tasks_send_is_idempotent_and_sendsubscribe_streams(
    peer: tuple[Gateway, str, Workspace],
) -> None:
    gw, key, ws = peer

    def rpc(method: str, tid: str, text: str, session: str | None = None) -> dict[str, Any]:
        params: dict[str, Any] = {
            "id": tid,
            "message": {"role": "user", "parts": [{"type": "text", "text": text}]},
        }
        if session:
            params["sessionId"] = session
        return {"jsonrpc": "2.0", "id": 7, "method": method, "params": params}

    async with httpx.AsyncClient(base_url=gw.url, headers={"X-API-Key": key}, timeout=CEILING_S) as http:
        first = (await http.post("/v1/a2a", json=rpc("tasks/send", "task-1", "hi", "ctx-1"))).json()["result"]
        assert first["status"]["state"] == "completed" and first["sessionId"] == "ctx-1"
        assert first["artifacts"][0]["parts"] == [{"type": "text", "text": "heard 1: hi"}]
        # the same task id again: the stored result, nothing run again (the agent heard one message)
        again = (await http.post("/v1/a2a", json=rpc("tasks/send", "task-1", "hi", "ctx-1"))).json()["result"]
        assert again == first
        # two sends of a new id at once run it once
        both = await asyncio.gather(
            *(http.post("/v1/a2a", json=rpc("tasks/send", "task-2", "twice?", "ctx-1")) for _ in range(2))
        )
        texts = {r.json()["result"]["artifacts"][0]["parts"][0]["text"] for r in both}
        assert texts == {"heard 2: twice?"}

        frames = []
        async with http.stream(
            "POST", "/v1/a2a", json=rpc("tasks/sendSubscribe", "task-3", "stream", "ctx-1")
        ) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    frames.append(json.loads(line[5:])["result"])
                    if frames[-1].get("final"):
                        break
        assert frames[0]["status"]["state"] == "working" and frames[0]["final"] is False
        assert frames[1]["artifact"]["parts"][0]["text"] == "heard 3: stream"
        assert frames[-1]["status"]["state"] == "completed" and frames[-1]["final"] is True

        # a subscriber that hangs up after the first frame does not stop the task: it is stored done
        async with http.stream(
            "POST", "/v1/a2a", json=rpc("tasks/sendSubscribe", "task-4", "bye", "ctx-1")
        ) as r:
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    break
        for _ in range(200):
            got4 = (
                await http.post(
                    "/v1/a2a",
                    json={"jsonrpc": "2.0", "id": 5, "method": "tasks/get", "params": {"id": "task-4"}},
                )
            ).json()
            if got4["result"]["status"]["state"] == "completed":
                break
            await asyncio.sleep(0.05)
        assert got4["result"]["status"]["state"] == "completed"

        # tasks/get (0.3 names, served by the SDK) finds a task sent with the 0.1 method
        got = (
            await http.post(
                "/v1/a2a", json={"jsonrpc": "2.0", "id": 9, "method": "tasks/get", "params": {"id": "task-1"}}
            )
        ).json()
        assert got["result"]["id"] == "task-1" and got["result"]["status"]["state"] == "completed"
        bad = (
            await http.post(
                "/v1/a2a", json={"jsonrpc": "2.0", "id": 3, "method": "tasks/send", "params": {"id": ""}}
            )
        ).json()
        assert bad["error"]["code"] == -32602
    with ws.read() as db:
        assert db.scalar(sa.select(sa.func.count()).select_from(A2ATask)) == 4


async def test_a_client_written_against_the_seed_posts_to_the_method_paths(
    peer: tuple[Gateway, str, Workspace],
) -> None:
    """The CMDC gateway serves POST /v1/a2a/tasks/send and /v1/a2a/tasks/sendSubscribe as paths: the same
    JSON-RPC envelope, "method" optional, with the same key check, guardrails and task store."""
    gw, key, ws = peer
    params = {"id": "by-path-1", "sessionId": "ctx-p", "message": {"role": "user", "parts": [{"text": "hi"}]}}
    envelope = {"jsonrpc": "2.0", "id": 1, "params": params}
    async with httpx.AsyncClient(base_url=gw.url, timeout=CEILING_S) as http:
        assert (await http.post("/v1/a2a/tasks/send", json=envelope)).status_code == 401
        http.headers["X-API-Key"] = key
        sent = (await http.post("/v1/a2a/tasks/send", json=envelope)).json()
        assert sent["id"] == 1 and sent["result"]["status"]["state"] == "completed"
        assert sent["result"]["artifacts"][0]["parts"] == [{"type": "text", "text": "heard 1: hi"}]
        # the same task by the JSON-RPC endpoint: the one stored task, nothing run again
        again = (await http.post("/v1/a2a", json={**envelope, "method": "tasks/send"})).json()["result"]
        assert again == sent["result"]

        streamed = {**envelope, "method": "tasks/sendSubscribe", "params": {**params, "id": "by-path-2"}}
        frames = []
        async with http.stream("POST", "/v1/a2a/tasks/sendSubscribe", json=streamed) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    frames.append(json.loads(line[5:])["result"])
                    if frames[-1].get("final"):
                        break
        assert frames[-1]["status"]["state"] == "completed" and frames[-1]["id"] == "by-path-2"

        # another method at a method's path, a body that is no request, the guardrails: refused, typed
        wrong = (await http.post("/v1/a2a/tasks/send", json={**envelope, "method": "tasks/get"})).json()
        assert wrong["error"]["code"] == -32600 and "/v1/a2a" in wrong["error"]["message"]
        listed = await http.post("/v1/a2a/tasks/send", json=[envelope])
        assert listed.status_code < 500 and listed.json()["error"]["code"] == -32600
        broken = await http.post("/v1/a2a/tasks/send", content=b"{broken")
        assert broken.status_code < 500 and broken.json()["error"]["code"] == -32700
        forbidden = {
            **envelope,
            "params": {**params, "id": "by-path-3", "message": {"parts": [{"text": "a forbidden word"}]}},
        }
        refused = await http.post("/v1/a2a/tasks/send", json=forbidden)
        assert refused.status_code == 422 and refused.json()["error"]["data"]["rule"] == "keyword 'forbidden'"
        assert "a forbidden word" not in refused.text
    with ws.read() as db:
        ids = set(db.scalars(sa.select(A2ATask.task_id)))
    assert {"by-path-1", "by-path-2"} <= ids and "by-path-3" not in ids


async def test_conversations_survive_a_gateway_restart(ws: Workspace) -> None:
    user = cmdc_nb.accounts.create_user("ada@example.com", ws=ws)
    key = create_gateway_key(user, name="a2a", ws=ws).key
    headers = {"X-API-Key": key}

    async def send(http: httpx.AsyncClient, tid: str, text: str) -> dict[str, Any]:
        body = {
            "jsonrpc": "2.0",
            "id": 1,
            "method": "tasks/send",
            "params": {
                "id": tid,
                "sessionId": "ctx-r",
                "message": {"role": "user", "parts": [{"type": "text", "text": text}]},
            },
        }
        return dict((await http.post("/v1/a2a", json=body)).json()["result"])

    gw = Gateway(ws=ws, port=0, models=[A2A_MODEL])
    url = await gw.start()
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=CEILING_S) as http:
        sid = (await http.post("/v1/sessions", json={})).json()["id"]
        await http.post(f"/v1/sessions/{sid}/prompt", json={"text": "first"})
        await gw.runtime.live[uuid.UUID(sid)].agent.collect_reply(10)
        assert (await send(http, "r-1", "one"))["artifacts"][0]["parts"][0]["text"] == "heard 1: one"
        gone = (await http.post("/v1/sessions", json={})).json()["id"]
        assert (await http.delete(f"/v1/sessions/{gone}")).status_code == 204
    await gw.stop()

    gw = Gateway(ws=ws, port=0, models=[A2A_MODEL])  # a new gateway process would see the same
    url = await gw.start()
    try:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=CEILING_S) as http:
            # the REST session comes back with its conversation
            assert (await http.get(f"/v1/sessions/{sid}")).status_code == 200
            await http.post(f"/v1/sessions/{sid}/prompt", json={"text": "second"})
            assert await gw.runtime.live[uuid.UUID(sid)].agent.collect_reply(10) == "heard 2: second"
            # the A2A context too: the agent remembers the first message
            assert (await send(http, "r-2", "two"))["artifacts"][0]["parts"][0]["text"] == "heard 2: two"
            # a deleted (archived) session stays closed
            assert (await http.get(f"/v1/sessions/{gone}")).status_code == 404
    finally:
        await gw.stop()
