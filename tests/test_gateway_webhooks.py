"""Webhooks: task and approval events POSTed, signed with HMAC, retried with backoff, and
kept when they fail, for replay. The receiver is a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest
from waiting import CEILING_S

import cmdc_nb
from cmdc_nb.gateway import Gateway, Webhook, create_gateway_key, list_webhook_deliveries, verify
from cmdc_nb.plugins import HumanApproval
from cmdc_nb.providers import Script, Turn, call
from cmdc_nb.workspace import Workspace
from tests.test_gateway import deploy

SECRET = "whsec-test-0123456789abcdef"


class Receiver:
    """Answers the POSTs of event `flaky` with the next status of `statuses` (then 200), every other
    POST with 200, recording what came."""

    def __init__(self, statuses: list[int], flaky: str = "approval.required") -> None:
        self.statuses = list(statuses)
        self.flaky = flaky
        self.got: list[dict[str, Any]] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                outer.got.append({"headers": dict(self.headers), "body": body})
                flaky = self.headers.get("X-Cmdc-Event") == outer.flaky
                code = outer.statuses.pop(0) if flaky and outer.statuses else 200
                self.send_response(code)
                self.end_headers()

            def log_message(self, *a: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver([500, 503])  # the first delivery fails twice, then succeeds
    yield r
    r.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_for(cond: Any, timeout: float = 20, what: Any = None) -> None:
    for _ in range(int(timeout / 0.05)):
        if cond():
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"timed out; {what() if what else ''}")


@pytest.mark.parametrize("backend", ["sqlite"])
async def test_webhooks_are_signed_retried_and_failed_ones_replayed(
    receiver: Receiver, ws: Workspace
) -> None:
    user = cmdc_nb.accounts.create_user("ada@example.com", ws=ws)
    key = create_gateway_key(user, name="t", ws=ws).key
    dead = f"http://127.0.0.1:{closed_port()}/hook"
    model = Script(
        [Turn(tool_calls=[call("deploy", target="prod")]), "done"], name="webhook-deploy", repeat_last=True
    ).model
    gw = Gateway(
        ws=ws,
        port=0,
        models=[model],
        tools=[deploy],
        plugins=lambda: [HumanApproval(require_approval_for=["deploy"])],
        webhooks=[
            Webhook(receiver.url, SECRET, events=("approval.*", "task.*")),
            Webhook(dead, SECRET, events=("approval.required",)),
        ],
        webhook_max_attempts=3,
        webhook_base_delay_s=0.05,
    )
    url = await gw.start()
    try:
        async with httpx.AsyncClient(base_url=url, headers={"X-API-Key": key}, timeout=CEILING_S) as client:
            sid = (await client.post("/v1/sessions", json={"tools": ["deploy"]})).json()["id"]
            await client.post(f"/v1/sessions/{sid}/prompt", json={"text": "deploy"})
            agent = gw.runtime.live[uuid.UUID(sid)].agent
            await wait_for(
                lambda: agent.status()["pending_approvals"],
                what=lambda: [e.to_dict() for e in agent.events.replay(since=0)][-5:],
            )
            ref = gw.runtime.live[uuid.UUID(sid)].agent.status()["pending_approvals"][0]["ref"]
            assert (await client.post(f"/v1/sessions/{sid}/approve", json={"ref": ref})).status_code == 200
            await wait_for(
                lambda: (
                    len({g["headers"]["X-Cmdc-Event"] for g in receiver.got if g["headers"]}) >= 2
                    and len(receiver.got) >= 4
                ),
                what=lambda: [g["headers"]["X-Cmdc-Event"] for g in receiver.got],
            )
            await wait_for(
                lambda: len(list_webhook_deliveries(status="failed", ws=ws)) == 1,
                what=lambda: [
                    (d.url, d.event_type, d.status, d.attempts) for d in list_webhook_deliveries(ws=ws)
                ],
            )
            # an A2A task's changes of state go out too
            body = {
                "jsonrpc": "2.0",
                "id": 1,
                "method": "tasks/send",
                "params": {
                    "id": "t-1",
                    "message": {"role": "user", "parts": [{"type": "text", "text": "hi"}]},
                },
            }
            sent = await client.post("/v1/a2a", json=body)
            assert sent.status_code == 200 and sent.json()["result"]["status"]["state"] == "completed", (
                sent.text
            )
            await wait_for(
                lambda: any(g["headers"]["X-Cmdc-Event"] == "task.completed" for g in receiver.got),
                what=lambda: [
                    (d.url, d.event_type, d.status, d.attempts) for d in list_webhook_deliveries(ws=ws)
                ],
            )
            states = [
                json.loads(g["body"])["data"]["state"]
                for g in receiver.got
                if g["headers"]["X-Cmdc-Event"].startswith("task.")
            ]
            assert states == ["TASK_STATE_WORKING", "TASK_STATE_COMPLETED"]

        # approval.required failed twice (500, 503) and arrived on the third try, same delivery id;
        # approval.approved arrived at once
        by_event: dict[str, list[dict[str, Any]]] = {}
        for g in receiver.got:
            by_event.setdefault(g["headers"]["X-Cmdc-Event"], []).append(g)
        assert len(by_event["approval.required"]) == 3 and len(by_event["approval.approved"]) == 1
        assert len({g["headers"]["X-Cmdc-Delivery"] for g in by_event["approval.required"]}) == 1
        for g in receiver.got:
            h = g["headers"]
            assert verify(SECRET, h["X-Cmdc-Timestamp"], g["body"], h["X-Cmdc-Signature"])
            assert not verify(
                "another-secret-0123456789", h["X-Cmdc-Timestamp"], g["body"], h["X-Cmdc-Signature"]
            )
            assert SECRET not in json.dumps(h) and SECRET.encode() not in g["body"]
        doc = json.loads(by_event["approval.required"][0]["body"])
        assert (
            doc["type"] == "approval.required"
            and doc["data"]["tool"] == "deploy"
            and doc["data"]["session_id"] == sid
        )
        delivered = list_webhook_deliveries(status="delivered", ws=ws)
        assert sorted(d.attempts for d in delivered) == [1, 1, 1, 3]
        (failed,) = list_webhook_deliveries(status="failed", ws=ws)
        assert failed.url == dead and failed.attempts == 3 and failed.last_error

        # the receiver comes up where the dead one was: replay delivers the failed one
        revived = Receiver([])
        gw.webhooks.hooks = (Webhook(revived.url, SECRET),)
        with ws.transaction() as tx:
            tx.db.get(type(failed), failed.id).url = revived.url
        try:
            assert await gw.webhooks.replay() == 1
            assert len(revived.got) == 1 and revived.got[0]["headers"]["X-Cmdc-Delivery"] == str(failed.id)
        finally:
            revived.close()
        assert list_webhook_deliveries(status="failed", ws=ws) == []
    finally:
        await gw.stop()


def test_a_webhook_needs_a_real_url_and_a_long_secret() -> None:
    from cmdc_nb.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="url"):
        Webhook("ftp://x", SECRET)
    with pytest.raises(InvalidInputError, match="secret"):
        Webhook("https://example.com/h", "short")
    assert SECRET not in repr(Webhook("https://example.com/h", SECRET))
