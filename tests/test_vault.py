"""Secrets at rest: AES-256-GCM, key rotation, tamper detection."""

from __future__ import annotations

import os
import stat
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa
from cmdc_nb.vault import ENCRYPTED_COLUMNS, generate_key, rotate_vault_key

import cmdc_nb
from cmdc_nb import accounts
from cmdc_nb.errors import DecryptionError, VaultKeyError
from cmdc_nb.store._vault import KeyRing, Vault
from cmdc_nb.store.models import ApiCredential, Base
from cmdc_nb.workspace import Workspace

ROW = uuid.uuid4()


def _vault(*keys: str) -> Vault:
    return Vault(KeyRing.from_text(",".join(keys)))


def test_round_trip_is_bound_to_table_column_and_row() -> None:
    v = _vault(generate_key())
    blob = v.encrypt("sk-secret", table="api_credentials", column="encrypted_key", row_id=ROW)
    assert b"sk-secret" not in blob
    assert v.decrypt(blob, table="api_credentials", column="encrypted_key", row_id=ROW) == b"sk-secret"
    with pytest.raises(DecryptionError):  # copied into another row
        v.decrypt(blob, table="api_credentials", column="encrypted_key", row_id=uuid.uuid4())
    with pytest.raises(DecryptionError):  # or another column
        v.decrypt(blob, table="api_credentials", column="other", row_id=ROW)


@pytest.mark.parametrize("position", [0, 10, 20, -1])
def test_a_tampered_ciphertext_is_refused(position: int) -> None:
    v = _vault(generate_key())
    blob = bytearray(v.encrypt("sk-secret", table="t", column="c", row_id=ROW))
    blob[position] ^= 0x01
    with pytest.raises((DecryptionError, VaultKeyError)):
        v.decrypt(bytes(blob), table="t", column="c", row_id=ROW)


def test_truncated_and_garbage_ciphertexts_are_refused() -> None:
    v = _vault(generate_key())
    blob = v.encrypt("x", table="t", column="c", row_id=ROW)
    for bad in (b"", b"garbage", blob[:20]):
        with pytest.raises(DecryptionError):
            v.decrypt(bad, table="t", column="c", row_id=ROW)


def test_the_wrong_key_is_refused_and_a_missing_key_named() -> None:
    a, b = generate_key(), generate_key()
    blob = _vault(a).encrypt("x", table="t", column="c", row_id=ROW)
    with pytest.raises(VaultKeyError, match="not in the key ring"):
        _vault(b).decrypt(blob, table="t", column="c", row_id=ROW)
    # a ring holding both keys decrypts what either encrypted
    assert _vault(b, a).decrypt(blob, table="t", column="c", row_id=ROW) == b"x"


@pytest.mark.parametrize("bad", ["", "not base64!!", "c2hvcnQ="])
def test_malformed_keys_are_typed_errors(bad: str) -> None:
    with pytest.raises(VaultKeyError):
        KeyRing.from_text(bad)


def test_reprs_never_show_key_material() -> None:
    key = generate_key()
    v = _vault(key)
    assert key not in repr(v) and key not in repr(v.ring)


def test_key_file_is_created_once_with_owner_only_permissions(tmp_path: Path) -> None:
    path = tmp_path / "home" / "vault.key"
    ring = KeyRing.load_or_create(path)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    again = KeyRing.load_or_create(path)
    assert again.keys == ring.keys and again.primary == ring.primary


def test_a_corrupt_key_file_is_a_typed_error(tmp_path: Path) -> None:
    path = tmp_path / "vault.key"
    path.write_text("{not json")
    with pytest.raises(VaultKeyError, match="malformed"):
        KeyRing.load_or_create(path)


def test_every_binary_column_holding_secrets_is_registered_for_rotation() -> None:
    # A new secret column must be added to ENCRYPTED_COLUMNS, or rotation would leave it on the old key.
    registered = {(m.__tablename__, c) for m, c in ENCRYPTED_COLUMNS}
    binary = {
        (t.name, c.name)
        for t in Base.metadata.sorted_tables
        for c in t.columns
        if isinstance(c.type, sa.LargeBinary) and c.name.startswith("encrypted_")
    }
    assert binary == registered


def _store_keys(ws: Workspace, n: int) -> dict[uuid.UUID, str]:
    user = accounts.create_user("owner@example.com", ws=ws)
    keys = {}
    for i in range(n):
        key = f"sk-test-{i:04d}-{uuid.uuid4().hex}"
        cred = accounts.create_api_credential(user, name=f"k{i}", provider="openai", api_key=key, ws=ws)
        keys[cred.id] = key
    return keys


def test_rotation_re_encrypts_every_stored_secret(ws: Workspace) -> None:
    keys = _store_keys(ws, 25)
    old_ring = KeyRing(dict(ws.vault.ring.keys), ws.vault.ring.primary)
    report = rotate_vault_key(ws=ws)
    assert report.secrets_rotated == 25
    assert report.retired_key_ids == [old_ring.primary]
    assert set(ws.vault.ring.keys) == {report.new_key_id}
    # every secret still reads back, through a workspace reopened from the rewritten key file
    reopened = cmdc_nb.connect(ws.url, home=ws.home, make_default=False)
    for cid, key in keys.items():
        assert accounts.get_decrypted_key(cid, ws=reopened) == key
    # and every ciphertext is now under the new key, which the old ring cannot open
    old = Vault(old_ring)
    with reopened.read() as db:
        rows = db.execute(sa.select(ApiCredential.id, ApiCredential.encrypted_key)).all()
    for cid, blob in rows:
        assert reopened.vault.key_id_of(blob) == report.new_key_id
        with pytest.raises(VaultKeyError):
            old.decrypt(blob, table="api_credentials", column="encrypted_key", row_id=cid)
    reopened.close()


def test_rotation_with_an_environment_key_needs_the_new_key(
    db_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = generate_key()
    monkeypatch.setenv("CMDC_NB_VAULT_KEY", first)
    ws = cmdc_nb.connect(db_url, home=tmp_path)
    keys = _store_keys(ws, 3)
    with pytest.raises(VaultKeyError, match="pass new_key"):
        rotate_vault_key(ws=ws)
    second = generate_key()
    report = rotate_vault_key(new_key=second, ws=ws)
    assert report.secrets_rotated == 3
    ws.close()
    monkeypatch.setenv("CMDC_NB_VAULT_KEY", second)
    ws2 = cmdc_nb.connect(db_url, home=tmp_path)
    assert {cid: accounts.get_decrypted_key(cid, ws=ws2) for cid in keys} == keys
    ws2.close()


def test_a_tampered_stored_credential_is_refused(ws: Workspace) -> None:
    keys = _store_keys(ws, 1)
    (cid,) = keys
    with ws.transaction() as tx:
        cred = tx.db.get(ApiCredential, cid)
        assert cred is not None and cred.encrypted_key is not None
        blob = bytearray(cred.encrypted_key)
        blob[-5] ^= 0xFF
        cred.encrypted_key = bytes(blob)
    with pytest.raises(DecryptionError) as info:
        accounts.get_decrypted_key(cid, ws=ws)
    assert keys[cid] not in str(info.value)


def test_a_missing_key_file_is_never_replaced_while_secrets_need_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("CMDC_NB_VAULT_KEY", raising=False)
    url = f"sqlite:///{tmp_path / 'w.db'}"
    ws = cmdc_nb.connect(url, home=tmp_path, make_default=False)
    user = accounts.create_user("ada@example.com", ws=ws)
    accounts.create_api_credential(user, name="main", provider="openai", api_key="sk-keep-me-1234", ws=ws)
    ws.close()
    (tmp_path / "vault.key").unlink()  # lost: a new key could open none of the stored secrets
    with pytest.raises(VaultKeyError) as err:
        cmdc_nb.connect(url, home=tmp_path, make_default=False)
    assert "vault.key" in str(err.value) and "CMDC_NB_VAULT_KEY" in str(err.value)
    assert "1 secret" in str(err.value) and "sk-keep" not in str(err.value)
    assert not (tmp_path / "vault.key").exists()  # nothing was created in its place
    # the way out it names: open once with a new key, revoke, and the next default open makes a key
    ws = cmdc_nb.connect(url, home=tmp_path, vault_key=generate_key(), make_default=False)
    [cred] = accounts.list_api_credentials(user, ws=ws).entries
    accounts.revoke_api_credential(cred, ws=ws)
    ws.close()
    cmdc_nb.connect(url, home=tmp_path, make_default=False).close()
    assert (tmp_path / "vault.key").exists()


@pytest.mark.parametrize(
    ("secret", "refused"),
    [
        ("sk-\ud800-lone-surrogate-secret", True),
        ("\udfffsk-surrogate-first-secret", True),
        ("sk-ÿþ-fine-as-text-secret", False),
    ],
)
def test_a_secret_that_cannot_be_stored_is_refused_without_echoing_it(
    ws: Workspace, secret: str, refused: bool
) -> None:
    user = accounts.create_user("ada@example.com", ws=ws)
    if not refused:  # text UTF-8 can hold is stored, encrypted
        accounts.create_api_credential(user, name="main", provider="openai", api_key=secret, ws=ws)
        [cred] = accounts.list_api_credentials(user, ws=ws).entries
        assert secret.encode() not in bytes(cred.encrypted_key)
        return
    with pytest.raises(cmdc_nb.errors.InvalidInputError) as err:
        accounts.create_api_credential(user, name="main", provider="openai", api_key=secret, ws=ws)
    exc = err.value
    told = [str(exc), repr(exc), repr(exc.args), repr(exc.__cause__), repr(exc.__context__)]
    assert not any(secret[4:14] in t for t in told), told
    assert accounts.list_api_credentials(user, ws=ws).entries == []  # nothing half-written
