"""Rotating the vault key over many stored secrets: every secret re-encrypted under
the new key in one transaction, every one still reads back, none under the old key; the time is
recorded (`ci-artifacts/reliability/secrets.json`), not asserted. 2,000 secrets in CI, 100,000 with
`CMDC_RELIABILITY_FULL=1`."""

from __future__ import annotations

import time
import uuid

import pytest
import sqlalchemy as sa
from cmdc_nb.vault import rotate_vault_key
from reliability import FULL, record

from cmdc_nb import accounts
from cmdc_nb.errors import VaultKeyError
from cmdc_nb.store._vault import KeyRing, Vault
from cmdc_nb.store.models import ApiCredential
from cmdc_nb.store.values import utcnow
from cmdc_nb.workspace import Workspace


def test_rotating_many_secrets_loses_none(ws: Workspace) -> None:
    n = 100_000 if FULL else 2_000
    user = accounts.create_user("keys@example.com", ws=ws)
    now = utcnow()
    plain: dict[uuid.UUID, str] = {}
    rows = []
    for i in range(n):
        cid, key = uuid.uuid4(), f"sk-test-{i:06d}-{uuid.uuid4().hex}"
        plain[cid] = key
        rows.append(
            {"id": cid, "user_id": user.id, "name": f"k{i}", "provider": "openai", "key_hint": key[-4:],
             "encrypted_key": ws.vault.encrypt(key, table="api_credentials", column="encrypted_key", row_id=cid),
             "status": "active", "scopes": [], "use_count": 0, "inserted_at": now, "updated_at": now}
        )  # fmt: skip
    with ws.transaction() as tx:
        for start in range(0, n, 5_000):
            tx.db.execute(sa.insert(ApiCredential), rows[start : start + 5_000])
    old_ring = KeyRing(dict(ws.vault.ring.keys), ws.vault.ring.primary)

    started = time.perf_counter()
    report = rotate_vault_key(ws=ws)
    seconds = time.perf_counter() - started

    assert report.secrets_rotated == n
    old = Vault(old_ring)
    failures = 0
    with ws.read() as db:
        stored = db.execute(sa.select(ApiCredential.id, ApiCredential.encrypted_key)).all()
    assert len(stored) == n
    for cid, blob in stored:
        ok = ws.vault.key_id_of(blob) == report.new_key_id and (
            ws.vault.decrypt(blob, table="api_credentials", column="encrypted_key", row_id=cid).decode()
            == plain[cid]
        )
        failures += not ok
    assert failures == 0
    with pytest.raises(VaultKeyError):  # the retired key opens none of them
        old.decrypt(stored[0][1], table="api_credentials", column="encrypted_key", row_id=stored[0][0])
    record(
        "secrets",
        f"rotation_{ws.backend}",
        {"secrets": n, "seconds": round(seconds, 2), "failures": failures},
    )
    print(f"rotated {n:,} secrets on {ws.backend} in {seconds:.2f} s, {failures} failures")
