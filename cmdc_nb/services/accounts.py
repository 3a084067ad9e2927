"""Users and their API credentials (encrypted at rest by the workspace vault).

>>> user = create_user("ada@example.com", name="Ada")                         # doctest: +SKIP
>>> cred = create_api_credential(user, name="default", provider="openai", api_key="sk-…")  # doctest: +SKIP
>>> cred                      # the key never shows: only its last four characters
<ApiCredential id=UUID('…') provider='openai' name='default' key_hint='…wxyz' status='active'>
>>> get_decrypted_key(cred)   # when you really need it, e.g. to hand to a provider  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import ConflictError, InvalidInputError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.store.enums import ActivityAction, AuthProvider, CredentialStatus, UserStatus
from cmdc_nb.store.models import ApiCredential, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import utcnow

__all__ = [
    "create_api_credential",
    "create_user",
    "get_api_credential",
    "get_api_credential_by_provider",
    "get_decrypted_key",
    "get_or_create_user",
    "get_user",
    "get_user_by_email",
    "list_api_credentials",
    "list_users",
    "record_credential_usage",
    "revoke_api_credential",
    "update_user_preferences",
    "update_user_profile",
    "update_user_status",
    "verify_password",
]

# The seed's rule (`^[^\s]+@[^\s]+$`, at most 254 characters), tightened to exactly one "@" and a dot-free
# check left out on purpose: "admin@localhost" is a real address on a team's own machine.
_EMAIL = re.compile(r"^[^\s@]+@[^\s@]+$")
_PROVIDER = re.compile(r"^[a-z0-9][a-z0-9_.-]{0,63}$")
_SCRYPT = {"n": 2**14, "r": 8, "p": 1}


def _email(value: Any) -> str:
    email = v.text(value, "email", max_len=254, min_len=3)
    if not _EMAIL.match(email):
        raise InvalidInputError("must look like name@domain", field="email")
    return email


def _hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, dklen=32, **_SCRYPT)
    return f"scrypt${_SCRYPT['n']}${_SCRYPT['r']}${_SCRYPT['p']}${salt.hex()}${digest.hex()}"


def _user_event(tx: Tx, user: User, type_: str, **extra: Any) -> None:
    tx.publish(topics.user(user.id), type_, {"user_id": str(user.id), "status": user.status.value, **extra})


# -- users ---------------------------------------------------------------------------------------------


@checked
def create_user(
    email: str,
    *,
    name: str | None = None,
    password: str | None = None,
    avatar_url: str | None = None,
    auth_provider: AuthProvider | str | None = None,
    auth_uid: str | None = None,
    preferences: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> User:
    """Create a user. E-mail addresses are unique regardless of case."""
    user = User(
        id=uuid.uuid4(),
        email=_email(email),
        name=v.text(name, "name", max_len=200) if name is not None else None,
        avatar_url=avatar_url,
        auth_provider=v.choice(AuthProvider, auth_provider, "auth_provider") if auth_provider else None,
        auth_uid=auth_uid,
        preferences=dict(preferences or {}),
        password_hash=_hash_password(v.text(password, "password", max_len=1024, min_len=8, strip=False))
        if password is not None
        else None,
    )
    with get_workspace(ws).transaction() as tx:
        if _find_by_email(tx.db, user.email) is not None:
            raise ConflictError(f"a user with e-mail {user.email!r} already exists", field="email")
        tx.db.add(user)
        tx.db.flush()
        _user_event(tx, user, "user_created")
    return user


def _find_by_email(db: orm.Session, email: str) -> User | None:
    # lower() on both sides: citext and NOCASE fold ASCII only, and an index is not needed at this size.
    return db.scalar(sa.select(User).where(sa.func.lower(User.email) == email.lower()))


@checked
def get_or_create_user(email: str, *, name: str | None = None, ws: Workspace | None = None) -> User:
    """The user with this e-mail address, created (with `name`) when there is none: the idiom for a
    notebook cell that is run again. An existing user is returned as stored — `name` is not applied to
    it (`update_user_profile` renames)."""
    try:
        return get_user_by_email(email, ws=ws)
    except NotFoundError:
        pass
    try:
        return create_user(email, name=name, ws=ws)
    except ConflictError:
        # Another process created it between the look-up and the insert (the unique index catches
        # that race, as a ConflictError): theirs is the user.
        return get_user_by_email(email, ws=ws)


@checked
def get_user(user_id: uuid.UUID | str, *, ws: Workspace | None = None) -> User:
    uid = v.uuid_of(user_id, "user_id")
    with get_workspace(ws).read() as db:
        user = db.get(User, uid)
    if user is None:
        raise NotFoundError("user", uid)
    return user


@checked
def get_user_by_email(email: str, *, ws: Workspace | None = None) -> User:
    """The user with this e-mail address, compared case-insensitively."""
    with get_workspace(ws).read() as db:
        user = _find_by_email(db, v.text(email, "email", max_len=254))
    if user is None:
        raise NotFoundError("user", email)
    return user


@checked
def list_users(
    *,
    status: UserStatus | str | None = None,
    limit: int = 50,
    after: str | None = None,
    before: str | None = None,
    ws: Workspace | None = None,
) -> Page[User]:
    """Users, newest first, one page at a time."""
    stmt = sa.select(User)
    if status is not None:
        stmt = stmt.where(User.status == v.choice(UserStatus, status, "status"))
    with get_workspace(ws).read() as db:
        return paginate(
            db, stmt, order_by=User.inserted_at, id_column=User.id, limit=limit, after=after, before=before
        )


def _update_user(user: User | uuid.UUID | str, ws: Workspace | None, changes: dict[str, Any]) -> User:
    uid = v.id_of(user, "user")
    with get_workspace(ws).transaction() as tx:
        row = tx.db.get(User, uid, with_for_update=True)
        if row is None:
            raise NotFoundError("user", uid)
        for key, value in changes.items():
            setattr(row, key, value)
        tx.db.flush()
        log_activity(
            tx,
            ActivityAction.USER_UPDATE,
            resource_type="user",
            resource_id=uid,
            user_id=uid,
            details={"fields": sorted(changes)},
        )
        _user_event(tx, row, "user_updated", fields=sorted(changes))
    return row


@checked
def update_user_profile(
    user: User | uuid.UUID | str,
    *,
    name: str | None = None,
    avatar_url: str | None = None,
    ws: Workspace | None = None,
) -> User:
    changes: dict[str, Any] = {}
    if name is not None:
        changes["name"] = v.text(name, "name", max_len=200)
    if avatar_url is not None:
        changes["avatar_url"] = v.text(avatar_url, "avatar_url", max_len=2048)
    if not changes:
        raise InvalidInputError("nothing to update: give name= or avatar_url=")
    return _update_user(user, ws, changes)


@checked
def update_user_preferences(
    user: User | uuid.UUID | str, preferences: Mapping[str, Any], *, ws: Workspace | None = None
) -> User:
    """Replace the user's preferences with `preferences`."""
    if not isinstance(preferences, Mapping):
        raise InvalidInputError("expected a mapping", field="preferences")
    return _update_user(user, ws, {"preferences": dict(preferences)})


@checked
def update_user_status(
    user: User | uuid.UUID | str, status: UserStatus | str, *, ws: Workspace | None = None
) -> User:
    return _update_user(user, ws, {"status": v.choice(UserStatus, status, "status")})


@checked
def verify_password(user: User, password: str) -> bool:
    """True when `password` matches the user's stored scrypt hash (compared in constant time)."""
    if not user.password_hash or not isinstance(password, str):
        return False
    try:
        _, n, r, p, salt, digest = user.password_hash.split("$")
        actual = hashlib.scrypt(
            password.encode(), salt=bytes.fromhex(salt), n=int(n), r=int(r), p=int(p), dklen=32
        )
    except ValueError:
        return False
    return hmac.compare_digest(actual.hex(), digest)


# -- API credentials -----------------------------------------------------------------------------------

_TABLE, _COLUMN = ApiCredential.__tablename__, "encrypted_key"


def _hint(api_key: str) -> str | None:
    # Four characters of a short key would give away too much of it.
    return f"…{api_key[-4:]}" if len(api_key) >= 12 else None


def _credential_event(tx: Tx, cred: ApiCredential, type_: str) -> None:
    tx.publish(
        topics.user(cred.user_id),
        type_,
        {
            "credential_id": str(cred.id),
            "provider": cred.provider,
            "name": cred.name,
            "key_hint": cred.key_hint,
            "status": cred.status.value,
        },
    )


@checked
def create_api_credential(
    user: User | uuid.UUID | str,
    *,
    name: str,
    provider: str,
    api_key: str,
    scopes: Sequence[str] | None = None,
    expires_at: dt.datetime | None = None,
    ws: Workspace | None = None,
) -> ApiCredential:
    """Store an API key, encrypted. Only its last four characters are kept in the clear."""
    uid = v.id_of(user, "user")
    provider = v.text(provider, "provider", max_len=64).lower()
    if not _PROVIDER.match(provider):
        raise InvalidInputError("use a provider name such as 'openai' or 'anthropic'", field="provider")
    if not isinstance(api_key, str) or not api_key.strip() or len(api_key) > 8192 or "\x00" in api_key:
        # Say nothing of the value itself: it is a secret, even when malformed.
        raise InvalidInputError("must be a non-empty string of at most 8192 characters", field="api_key")
    workspace = get_workspace(ws)
    cred = ApiCredential(
        id=uuid.uuid4(),
        user_id=uid,
        name=v.text(name, "name", max_len=100),
        provider=provider,
        key_hint=_hint(api_key),
        scopes=list(scopes or []),
        expires_at=v.aware(expires_at, "expires_at") if expires_at is not None else None,
    )
    cred.encrypted_key = workspace.vault.encrypt(api_key, table=_TABLE, column=_COLUMN, row_id=cred.id)
    with workspace.transaction() as tx:
        if tx.db.get(User, uid) is None:
            raise NotFoundError("user", uid)
        clash = tx.db.scalar(
            sa.select(ApiCredential.id).where(
                ApiCredential.user_id == uid,
                ApiCredential.provider == provider,
                ApiCredential.name == cred.name,
            )
        )
        if clash is not None:
            raise ConflictError(f"a {provider} credential named {cred.name!r} already exists", field="name")
        tx.db.add(cred)
        tx.db.flush()
        log_activity(
            tx,
            ActivityAction.CREDENTIAL_CREATE,
            resource_type="api_credential",
            resource_id=cred.id,
            user_id=uid,
            details={"provider": provider, "name": cred.name},
        )
        _credential_event(tx, cred, "credential_created")
    return cred


@checked
def get_api_credential(credential_id: uuid.UUID | str, *, ws: Workspace | None = None) -> ApiCredential:
    cid = v.uuid_of(credential_id, "credential_id")
    with get_workspace(ws).read() as db:
        cred = db.get(ApiCredential, cid)
    if cred is None:
        raise NotFoundError("api credential", cid)
    return cred


@checked
def get_api_credential_by_provider(
    user: User | uuid.UUID | str, provider: str, *, ws: Workspace | None = None
) -> ApiCredential:
    """The user's newest active, unexpired credential for `provider`."""
    uid = v.id_of(user, "user")
    now = utcnow()
    with get_workspace(ws).read() as db:
        cred = db.scalar(
            sa.select(ApiCredential)
            .where(
                ApiCredential.user_id == uid,
                ApiCredential.provider == provider.lower(),
                ApiCredential.status == CredentialStatus.ACTIVE,
                sa.or_(ApiCredential.expires_at.is_(None), ApiCredential.expires_at > now),
            )
            .order_by(ApiCredential.inserted_at.desc(), ApiCredential.id.desc())
            .limit(1)
        )
    if cred is None:
        raise NotFoundError(f"active {provider} credential for user", uid)
    return cred


@checked
def list_api_credentials(
    user: User | uuid.UUID | str,
    *,
    status: CredentialStatus | str | None = None,
    limit: int = 50,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[ApiCredential]:
    """The user's credentials, newest first."""
    user = access.scope_user(get_workspace(ws), user)
    stmt = sa.select(ApiCredential).where(ApiCredential.user_id == v.id_of(user, "user"))
    if status is not None:
        stmt = stmt.where(ApiCredential.status == v.choice(CredentialStatus, status, "status"))
    with get_workspace(ws).read() as db:
        return paginate(
            db, stmt, order_by=ApiCredential.inserted_at, id_column=ApiCredential.id, limit=limit, after=after
        )


@checked
def revoke_api_credential(
    credential: ApiCredential | uuid.UUID | str, *, ws: Workspace | None = None
) -> ApiCredential:
    """Mark a credential revoked and destroy its ciphertext: a revoked key cannot be decrypted again."""
    cid = v.id_of(credential, "credential")
    with get_workspace(ws).transaction() as tx:
        cred = tx.db.get(ApiCredential, cid, with_for_update=True)
        if cred is None:
            raise NotFoundError("api credential", cid)
        cred.status = CredentialStatus.REVOKED
        cred.encrypted_key = None
        tx.db.flush()
        log_activity(
            tx,
            ActivityAction.CREDENTIAL_REVOKE,
            resource_type="api_credential",
            resource_id=cid,
            user_id=cred.user_id,
            details={"provider": cred.provider, "name": cred.name},
        )
        _credential_event(tx, cred, "credential_revoked")
    return cred


@checked
def record_credential_usage(
    credential: ApiCredential | uuid.UUID | str, *, ws: Workspace | None = None
) -> None:
    """Count one use (atomically: concurrent callers never lose an increment)."""
    cid = v.id_of(credential, "credential")
    with get_workspace(ws).transaction() as tx:
        result = tx.db.execute(
            sa.update(ApiCredential)
            .where(ApiCredential.id == cid)
            .values(use_count=ApiCredential.use_count + 1, last_used_at=utcnow())
        )
        if result.rowcount == 0:  # type: ignore[attr-defined]
            raise NotFoundError("api credential", cid)


@checked
def get_decrypted_key(credential: ApiCredential | uuid.UUID | str, *, ws: Workspace | None = None) -> str:
    """The plaintext API key. Keep it out of prints and logs: it is the one place the secret leaves."""
    workspace = get_workspace(ws)
    cred = get_api_credential(v.id_of(credential, "credential"), ws=workspace)
    if cred.status != CredentialStatus.ACTIVE or cred.encrypted_key is None:
        raise InvalidInputError(
            f"the credential is {cred.status.value}; it has no usable key", field="credential"
        )
    return workspace.vault.decrypt(cred.encrypted_key, table=_TABLE, column=_COLUMN, row_id=cred.id).decode()
