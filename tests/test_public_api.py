"""The public API is explicit and frozen: changing it should be a deliberate act."""

from __future__ import annotations

import importlib

import pytest

import cmdc_nb

PUBLIC = {
    "cmdc_nb": [
        "Workspace",
        "__version__",
        "accounts",
        "connect",
        "errors",
        "events",
        "get_workspace",
        "sessions",
        "store",
        "vault",
    ],
    "cmdc_nb.accounts": [
        "create_api_credential",
        "create_user",
        "get_api_credential",
        "get_api_credential_by_provider",
        "get_decrypted_key",
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
    ],
    "cmdc_nb.sessions": ["create_session", "get_session", "get_session_by_slug", "list_sessions", "slugify"],
    "cmdc_nb.vault": [
        "ENCRYPTED_COLUMNS",
        "KeyRing",
        "RotationReport",
        "Vault",
        "generate_key",
        "key_id",
        "rotate_vault_key",
    ],
    "cmdc_nb.events": ["Event", "EventBus", "EventStream", "Subscription", "topics"],
}


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_are_exactly_these(module: str) -> None:
    mod = importlib.import_module(module)
    assert sorted(mod.__all__) == sorted(PUBLIC[module])
    for name in mod.__all__:
        assert getattr(mod, name) is not None


def test_every_error_derives_from_the_one_base() -> None:
    from cmdc_nb import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.CmdcError)
    # and the tree in the docstring names every class
    for name in errors.__all__:
        assert name in (errors.__doc__ or "")


def test_version_is_a_string() -> None:
    assert isinstance(cmdc_nb.__version__, str) and cmdc_nb.__version__.count(".") == 2
