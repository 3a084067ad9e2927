"""Users and API credentials, on both backends."""

from __future__ import annotations

import datetime as dt
import logging
import threading

import pytest
import sqlalchemy as sa

from cmdc_nb import accounts
from cmdc_nb.errors import ConflictError, InvalidInputError, NotFoundError
from cmdc_nb.events import Event
from cmdc_nb.store.enums import ActivityAction, CredentialStatus, UserStatus
from cmdc_nb.store.models import ActivityLog, User
from cmdc_nb.workspace import Workspace

SECRET = "sk-proj-SENTINEL-0123456789abcdefWXYZ"


def test_create_and_find_a_user_case_insensitively(ws: Workspace) -> None:
    user = accounts.create_user("Ada.Lovelace@Example.com", name="Ada", ws=ws)
    assert user.status is UserStatus.ACTIVE
    assert accounts.get_user_by_email("ada.lovelace@example.COM", ws=ws).id == user.id
    assert accounts.get_user(str(user.id), ws=ws).name == "Ada"
    with pytest.raises(ConflictError, match="already exists"):
        accounts.create_user("ADA.LOVELACE@example.com", ws=ws)


def test_get_or_create_user_creates_once_and_then_returns_the_stored_user(ws: Workspace) -> None:
    created: list[Event] = []
    ws.bus.subscribe("user:*", lambda e: created.append(e) if e.type == "user_created" else None)
    first = accounts.get_or_create_user("Grace@Example.com", name="Grace", ws=ws)
    again = accounts.get_or_create_user("grace@example.com", name="Someone else", ws=ws)
    assert again.id == first.id
    assert again.name == "Grace"  # the name is for creating; an existing user is returned as stored
    assert len(created) == 1
    with pytest.raises(InvalidInputError) as info:
        accounts.get_or_create_user("no-at-sign", ws=ws)
    assert info.value.field == "email"


def test_get_or_create_user_racing_threads_get_one_user(ws: Workspace) -> None:
    ids: list[object] = []
    errors: list[BaseException] = []
    start = threading.Barrier(4)

    def worker() -> None:
        start.wait()
        try:
            ids.append(accounts.get_or_create_user("race@example.com", ws=ws).id)
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert len(ids) == 4 and len(set(ids)) == 1
    assert [u.id for u in accounts.list_users(limit=50, ws=ws).entries] == ids[:1]


@pytest.mark.parametrize(
    "email", ["", "no-at-sign", "two@@example.com", "sp ace@example.com", "a@" + "x" * 260]
)
def test_bad_emails_are_rejected_with_the_field_named(ws: Workspace, email: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        accounts.create_user(email, ws=ws)
    assert info.value.field == "email"


def test_passwords_are_hashed_and_verified(ws: Workspace) -> None:
    user = accounts.create_user("p@example.com", password="correct horse battery", ws=ws)
    assert user.password_hash is not None and "correct" not in user.password_hash
    assert accounts.verify_password(user, "correct horse battery")
    assert not accounts.verify_password(user, "wrong horse battery")
    with pytest.raises(InvalidInputError, match="8"):
        accounts.create_user("q@example.com", password="short", ws=ws)


def test_unknown_ids_raise_not_found(ws: Workspace) -> None:
    with pytest.raises(NotFoundError):
        accounts.get_user("00000000-0000-0000-0000-000000000000", ws=ws)
    with pytest.raises(NotFoundError):
        accounts.get_user_by_email("nobody@example.com", ws=ws)
    with pytest.raises(InvalidInputError):
        accounts.get_user("not-a-uuid", ws=ws)


def test_profile_preferences_and_status_updates_are_audited(ws: Workspace, user: User) -> None:
    accounts.update_user_profile(user, name="Ada L.", ws=ws)
    accounts.update_user_preferences(user, {"theme": "dark"}, ws=ws)
    updated = accounts.update_user_status(user, "suspended", ws=ws)
    assert updated.status is UserStatus.SUSPENDED
    fresh = accounts.get_user(user.id, ws=ws)
    assert (fresh.name, fresh.preferences, fresh.status) == (
        "Ada L.",
        {"theme": "dark"},
        UserStatus.SUSPENDED,
    )
    with ws.read() as db:
        actions = db.scalars(sa.select(ActivityLog.action).where(ActivityLog.user_id == user.id)).all()
    assert actions.count(ActivityAction.USER_UPDATE) == 3
    with pytest.raises(InvalidInputError, match="active, inactive, suspended"):
        accounts.update_user_status(user, "banished", ws=ws)
    with pytest.raises(InvalidInputError, match="nothing to update"):
        accounts.update_user_profile(user, ws=ws)


def test_list_users_pages_without_gaps_or_repeats(ws: Workspace) -> None:
    made = {accounts.create_user(f"u{i}@example.com", ws=ws).id for i in range(23)}
    seen, cursor, pages = [], None, 0
    while True:
        page = accounts.list_users(limit=10, after=cursor, ws=ws)
        seen += [u.id for u in page]
        pages += 1
        if not page.has_next:
            break
        cursor = page.next_cursor
    assert pages == 3 and len(seen) == 23 and set(seen) == made
    # and backwards from the last page lands on the same rows
    back = accounts.list_users(limit=10, before=page.prev_cursor, ws=ws)
    assert [u.id for u in back] == seen[10:20]
    with pytest.raises(InvalidInputError):
        accounts.list_users(limit=0, ws=ws)
    with pytest.raises(InvalidInputError):
        accounts.list_users(after="garbage!", ws=ws)


def test_credentials_keep_the_key_secret_everywhere(
    ws: Workspace, user: User, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    events: list[Event] = []
    ws.bus.subscribe("*", events.append)
    cred = accounts.create_api_credential(user, name="default", provider="OpenAI", api_key=SECRET, ws=ws)
    assert cred.provider == "openai" and cred.key_hint == "…WXYZ"
    assert SECRET not in repr(cred) and SECRET not in str(cred.__dict__.get("encrypted_key"))
    assert all(SECRET not in repr(dict(e.payload)) for e in events)
    assert SECRET not in caplog.text
    with ws.read() as db:
        details = db.scalars(sa.select(ActivityLog.details)).all()
        raw = db.execute(sa.text("SELECT encrypted_key FROM api_credentials")).scalar()
    assert SECRET not in repr(details)
    assert SECRET.encode() not in raw
    assert accounts.get_decrypted_key(cred, ws=ws) == SECRET
    # a duplicate name is a conflict whose message does not echo the key
    with pytest.raises(ConflictError) as info:
        accounts.create_api_credential(user, name="default", provider="openai", api_key=SECRET, ws=ws)
    assert SECRET not in str(info.value)


def test_invalid_api_keys_are_rejected_without_echoing_them(ws: Workspace, user: User) -> None:
    for bad in ("", "   ", "sk-\x00nul"):
        with pytest.raises(InvalidInputError) as info:
            accounts.create_api_credential(user, name="x", provider="openai", api_key=bad, ws=ws)
        assert info.value.field == "api_key" and "nul" not in str(info.value)


def test_short_keys_get_no_hint(ws: Workspace, user: User) -> None:
    cred = accounts.create_api_credential(user, name="short", provider="local", api_key="abc12345", ws=ws)
    assert cred.key_hint is None


def test_newest_active_unexpired_credential_by_provider(ws: Workspace, user: User) -> None:
    past = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
    a = accounts.create_api_credential(user, name="a", provider="anthropic", api_key=SECRET + "a", ws=ws)
    b = accounts.create_api_credential(user, name="b", provider="anthropic", api_key=SECRET + "b", ws=ws)
    accounts.create_api_credential(
        user, name="c", provider="anthropic", api_key=SECRET + "c", expires_at=past, ws=ws
    )
    assert accounts.get_api_credential_by_provider(user, "anthropic", ws=ws).id == b.id
    revoked = accounts.revoke_api_credential(b, ws=ws)
    assert revoked.status is CredentialStatus.REVOKED and revoked.encrypted_key is None
    assert accounts.get_api_credential_by_provider(user, "anthropic", ws=ws).id == a.id
    with pytest.raises(InvalidInputError, match="revoked"):
        accounts.get_decrypted_key(b, ws=ws)
    with pytest.raises(NotFoundError):
        accounts.get_api_credential_by_provider(user, "cohere", ws=ws)
    page = accounts.list_api_credentials(user, ws=ws)
    assert [c.name for c in page] == ["c", "b", "a"]
    assert [c.name for c in accounts.list_api_credentials(user, status="revoked", ws=ws)] == ["b"]


def test_concurrent_usage_counts_are_never_lost(ws: Workspace, user: User) -> None:
    cred = accounts.create_api_credential(user, name="busy", provider="openai", api_key=SECRET, ws=ws)

    def hammer() -> None:
        for _ in range(25):
            accounts.record_credential_usage(cred, ws=ws)

    threads = [threading.Thread(target=hammer) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    fresh = accounts.get_api_credential(cred.id, ws=ws)
    assert fresh.use_count == 100 and fresh.last_used_at is not None
