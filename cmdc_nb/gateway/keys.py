"""Gateway keys: what a program shows the gateway to act as a cmdc_nb user.

A key is `cgw_` + 32 random bytes (URL-safe base64). It is shown once, when made; the database keeps
its SHA-256 (a fast hash suffices for 256 random bits: there is nothing to guess) and its first twelve
characters, to tell keys apart in listings. Revoked or expired keys, and keys of users who are not
active, authenticate no one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.service import fetch
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.events import topics
from cmdc_nb.store.enums import UserStatus
from cmdc_nb.store.models import GatewayKey, User
from cmdc_nb.store.values import utcnow

__all__ = [
    "IssuedKey",
    "authenticate_gateway_key",
    "create_gateway_key",
    "list_gateway_keys",
    "revoke_gateway_key",
]

PREFIX = "cgw_"
_SHOWN = 12


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


@dataclass(frozen=True)
class IssuedKey:
    """A new key: `key` is the secret, shown this once; `record` is what the database keeps."""

    record: GatewayKey
    key: str

    def __repr__(self) -> str:  # never the secret
        return f"<IssuedKey {self.record.name!r} {self.record.key_prefix}…>"

    __str__ = __repr__


def create_gateway_key(
    user: User | uuid.UUID | str,
    *,
    name: str,
    expires_at: dt.datetime | None = None,
    ws: Workspace | None = None,
) -> IssuedKey:
    """Make a key that calls the gateway as `user`. Keep `.key`: it cannot be shown again."""
    uid = v.id_of(user, "user")
    name = v.text(name, "name", max_len=100)
    if expires_at is not None:
        expires_at = v.aware(expires_at, "expires_at")
    token = PREFIX + secrets.token_urlsafe(32)
    workspace = get_workspace(ws)
    with workspace.transaction() as tx:
        fetch(tx.db, User, uid, "user")
        row = GatewayKey(
            id=uuid.uuid4(),
            user_id=uid,
            name=name,
            key_hash=_digest(token),
            key_prefix=token[:_SHOWN],
            expires_at=expires_at,
        )
        tx.db.add(row)
        tx.db.flush()
        tx.publish(topics.user(uid), "gateway_key_created", {"key_id": str(row.id), "name": name})
    return IssuedKey(row, token)


def list_gateway_keys(user: User | uuid.UUID | str, *, ws: Workspace | None = None) -> list[GatewayKey]:
    """A user's keys, newest first (hashes and prefixes only)."""
    uid = v.id_of(user, "user")
    with get_workspace(ws).read() as db:
        rows = db.scalars(
            sa.select(GatewayKey)
            .where(GatewayKey.user_id == uid)
            .order_by(GatewayKey.inserted_at.desc(), GatewayKey.id)
        ).all()
        db.expunge_all()
    return list(rows)


def revoke_gateway_key(key: GatewayKey | uuid.UUID | str, *, ws: Workspace | None = None) -> GatewayKey:
    """Revoke a key at once: the next request that shows it is refused."""
    with get_workspace(ws).transaction() as tx:
        row = fetch(tx.db, GatewayKey, key, "gateway_key", lock=True)
        if row.revoked_at is None:
            row.revoked_at = utcnow()
            tx.publish(topics.user(row.user_id), "gateway_key_revoked", {"key_id": str(row.id)})
        tx.db.flush()
    return row


def authenticate_gateway_key(token: Any, *, ws: Workspace | None = None) -> User:
    """The active user a key belongs to; `InvalidInputError` (saying nothing of the key) otherwise."""
    refused = InvalidInputError("unknown, revoked or expired key", field="api_key")
    if not isinstance(token, str) or not token.startswith(PREFIX) or len(token) > 200:
        raise refused
    digest = _digest(token)
    now = utcnow()
    with get_workspace(ws).transaction() as tx:
        # Looked up by its hash: timing says nothing about a key, only about its SHA-256.
        row = tx.db.scalar(sa.select(GatewayKey).where(GatewayKey.key_hash == digest))
        if row is None:
            raise refused
        if row.revoked_at is not None or (row.expires_at is not None and row.expires_at <= now):
            raise refused
        user = tx.db.get(User, row.user_id)
        if user is None or user.status != UserStatus.ACTIVE:
            raise refused
        tx.db.execute(
            sa.update(GatewayKey)
            .where(GatewayKey.id == row.id)
            .values(last_used_at=now, use_count=GatewayKey.use_count + 1)
        )
        tx.db.expunge(user)
    return user
