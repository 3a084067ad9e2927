"""Webhook deliveries: task and approval events POSTed to configured URLs, signed, retried, kept.

Each event a hook subscribes to (glob patterns over types such as `task.completed`,
`approval.required`) becomes a `webhook_deliveries` row, then a POST of JSON
`{"id", "type", "created_at", "data"}` with headers

    X-Cmdc-Event: <type>
    X-Cmdc-Delivery: <delivery id>          (the same on every retry: receivers can de-duplicate)
    X-Cmdc-Timestamp: <unix seconds>
    X-Cmdc-Signature: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>" with the hook's secret>

A 2xx answer marks it delivered. Anything else (an error status, a timeout, a refused connection) is
retried with exponential backoff and jitter, up to `max_attempts`; then it is marked failed and stays
in the table, and `replay()` sends failed deliveries again. The secret is never stored or logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import fnmatch
import hashlib
import hmac
import json
import logging
import random
import time
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.gateway.runtime import Webhook
from cmdc_nb.store.enums import WebhookDeliveryStatus
from cmdc_nb.store.models import WebhookDelivery
from cmdc_nb.store.values import utcnow

log = logging.getLogger("cmdc_nb.gateway.webhooks")

__all__ = ["WebhookDispatcher", "list_webhook_deliveries", "sign", "verify"]


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The `X-Cmdc-Signature` value of `body` sent at `timestamp`."""
    if not isinstance(secret, str) or not isinstance(timestamp, str) or not isinstance(body, bytes):
        raise InvalidInputError(
            "sign takes a text secret, a text timestamp and the body as bytes", field="secret"
        )
    # Checked, not caught: a UnicodeEncodeError's args hold the whole secret, and even a suppressed one
    # stays on the new error as its __context__.
    if not _encodable(secret):
        raise InvalidInputError("the secret is not valid text (unpaired surrogates)", field="secret")
    if not _encodable(timestamp):
        raise InvalidInputError("the timestamp is not valid text", field="timestamp")
    key, stamp = secret.encode(), timestamp.encode()
    mac = hmac.new(key, stamp + b"." + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def _encodable(text: str) -> bool:
    return not any("\ud800" <= ch <= "\udfff" for ch in text)


def verify(secret: str, timestamp: str, body: bytes, signature: str, *, tolerance_s: float = 300) -> bool:
    """What a receiver does: the signature matches, and the timestamp is recent (no replays)."""
    if not isinstance(secret, str) or not _encodable(secret):
        raise InvalidInputError("the secret must be valid text", field="secret")
    if not all(isinstance(v, str) for v in (signature, timestamp)):
        return False  # a request's headers are text; anything else is not a signed request
    try:
        fresh = abs(time.time() - float(timestamp)) <= tolerance_s
    except ValueError:
        return False
    return fresh and hmac.compare_digest(sign(secret, timestamp, body), signature)


def list_webhook_deliveries(
    *, status: str | None = None, limit: int = 100, ws: Workspace | None = None
) -> list[WebhookDelivery]:
    """Deliveries, newest first; `status` = pending, delivered or failed."""
    stmt = sa.select(WebhookDelivery).order_by(WebhookDelivery.inserted_at.desc()).limit(limit)
    if status is not None:
        stmt = stmt.where(WebhookDelivery.status == WebhookDeliveryStatus(status))
    with get_workspace(ws).read() as db:
        rows = list(db.scalars(stmt))
        db.expunge_all()
    return rows


class WebhookDispatcher:
    """Sends one gateway's webhooks from its event loop."""

    def __init__(
        self,
        hooks: Sequence[Webhook],
        ws: Workspace,
        *,
        max_attempts: int = 5,
        base_delay_s: float = 0.5,
        max_delay_s: float = 60.0,
        timeout_s: float = 10.0,
    ) -> None:
        self.hooks = tuple(hooks)
        self.ws = ws
        self.max_attempts = max_attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.timeout_s = timeout_s
        self._loop: asyncio.AbstractEventLoop | None = None
        self._client: Any = None
        self._inflight: set[asyncio.Task[Any]] = set()

    def start(self) -> None:
        if not self.hooks:
            return
        import httpx

        self._loop = asyncio.get_running_loop()
        self._client = httpx.AsyncClient(timeout=self.timeout_s, follow_redirects=False)

    async def stop(self) -> None:
        for task in list(self._inflight):
            task.cancel()
        for task in list(self._inflight):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def notify(self, event_type: str, data: dict[str, Any]) -> None:
        """Queue `event_type` for every hook that wants it. Safe from any thread."""
        wanted = [h for h in self.hooks if any(fnmatch.fnmatchcase(event_type, p) for p in h.events)]
        loop = self._loop
        if not wanted or loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            self._spawn(self._enqueue(wanted, event_type, data))
        else:
            loop.call_soon_threadsafe(self._spawn, self._enqueue(wanted, event_type, data))

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)

    async def _enqueue(self, hooks: Sequence[Webhook], event_type: str, data: dict[str, Any]) -> None:
        for hook in hooks:
            row = await asyncio.to_thread(self._insert, hook.url, event_type, data)
            self._spawn(self._deliver(hook, row))

    def _insert(self, url: str, event_type: str, data: dict[str, Any]) -> WebhookDelivery:
        row = WebhookDelivery(id=uuid.uuid4(), url=url, event_type=event_type, payload=data)
        with self.ws.transaction() as tx:
            tx.db.add(row)
            tx.db.flush()
            tx.db.expunge(row)
        return row

    def _body(self, row: WebhookDelivery) -> bytes:
        doc = {
            "id": str(row.id),
            "type": row.event_type,
            "created_at": row.inserted_at.isoformat(),
            "data": row.payload,
        }
        return json.dumps(doc, separators=(",", ":"), sort_keys=True, default=str).encode()

    def _record(
        self, delivery_id: uuid.UUID, *, ok: bool, code: int | None, error: str | None, final: bool
    ) -> None:
        values: dict[str, Any] = {
            "attempts": WebhookDelivery.attempts + 1,
            "last_status_code": code,
            "last_error": error,
            "updated_at": utcnow(),
        }
        if ok:
            values.update(status=WebhookDeliveryStatus.DELIVERED, delivered_at=utcnow())
        elif final:
            values["status"] = WebhookDeliveryStatus.FAILED
        with self.ws.transaction() as tx:
            tx.db.execute(
                sa.update(WebhookDelivery).where(WebhookDelivery.id == delivery_id).values(**values)
            )

    async def _deliver(self, hook: Webhook, row: WebhookDelivery) -> bool:
        delivery_id = row.id
        body = self._body(row)
        for attempt in range(1, self.max_attempts + 1):
            stamp = str(int(time.time()))
            headers = {
                "Content-Type": "application/json",
                "User-Agent": "cmdc_nb-gateway",
                "X-Cmdc-Event": row.event_type,
                "X-Cmdc-Delivery": str(row.id),
                "X-Cmdc-Timestamp": stamp,
                "X-Cmdc-Signature": sign(hook.secret, stamp, body),
            }
            code: int | None = None
            error: str | None = None
            try:
                response = await self._client.post(hook.url, content=body, headers=headers)
                code = response.status_code
                ok = 200 <= code < 300
                if not ok:
                    error = f"HTTP {code}"
            except Exception as exc:  # a refused connection, a timeout, a TLS failure: retried alike
                ok = False
                error = type(exc).__name__
            final = ok or attempt == self.max_attempts
            await asyncio.to_thread(self._record, delivery_id, ok=ok, code=code, error=error, final=final)
            if ok:
                return True
            if not final:
                delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
                await asyncio.sleep(delay * (0.5 + random.random() / 2))
        log.warning(
            "webhook delivery %s to a configured hook failed after %d attempts",
            delivery_id,
            self.max_attempts,
        )
        return False

    async def replay(self, *, since: dt.datetime | None = None) -> int:
        """Send failed deliveries again (each gets a fresh set of attempts). Returns how many were
        delivered this time; those whose URL is no longer configured stay failed."""
        by_url = {h.url: h for h in self.hooks}

        def failed() -> list[WebhookDelivery]:
            stmt = sa.select(WebhookDelivery).where(WebhookDelivery.status == WebhookDeliveryStatus.FAILED)
            if since is not None:
                stmt = stmt.where(WebhookDelivery.inserted_at >= since)
            with self.ws.transaction() as tx:
                rows = [r for r in tx.db.scalars(stmt) if r.url in by_url]
                if rows:
                    tx.db.execute(
                        sa.update(WebhookDelivery)
                        .where(WebhookDelivery.id.in_([r.id for r in rows]))
                        .values(status=WebhookDeliveryStatus.PENDING)
                    )
                tx.db.expunge_all()
            return rows

        rows = await asyncio.to_thread(failed)
        results = await asyncio.gather(*(self._deliver(by_url[r.url], r) for r in rows))
        return sum(1 for ok in results if ok)
