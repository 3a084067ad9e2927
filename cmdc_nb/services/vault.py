"""The workspace vault: keys for secrets at rest, and their rotation.

>>> key = cmdc_nb.vault.generate_key()           # 32 random bytes, url-safe base64
>>> report = rotate_vault_key()                   # doctest: +SKIP  (key-file workspaces: a fresh key)
>>> report = rotate_vault_key(new_key=key)        # doctest: +SKIP  (then set CMDC_NB_VAULT_KEY to it)
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import sqlalchemy as sa

from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import VaultKeyError
from cmdc_nb.events import topics
from cmdc_nb.store import _vault
from cmdc_nb.store._vault import KEY_ENV, KeyRing, Vault, _decode_key, generate_key
from cmdc_nb.store.enums import ActivityAction
from cmdc_nb.store.models import ENCRYPTED_COLUMNS

key_id = checked(_vault.key_id)  # held to its hint (bytes) like every public function here

__all__ = [
    "ENCRYPTED_COLUMNS",
    "KeyRing",
    "RotationReport",
    "Vault",
    "generate_key",
    "key_id",
    "rotate_vault_key",
]

# Every encrypted column in the schema. Rotation re-encrypts each; a test checks no other column holds
# vault ciphertext, so a new secret column cannot be forgotten here.

_BATCH = 2000

# The audit log wants a resource id; the workspace itself is one fixed, well-known resource.
_WORKSPACE_ID = uuid.UUID(int=0)


@dataclass(frozen=True)
class RotationReport:
    new_key_id: str
    retired_key_ids: list[str]
    secrets_rotated: int
    seconds: float


@checked
def rotate_vault_key(
    *, new_key: str | None = None, retire_old: bool = True, ws: Workspace | None = None
) -> RotationReport:
    """Re-encrypt every stored secret under a new key, in one transaction.

    Key-file workspaces get a fresh key when `new_key` is not given; the file is rewritten (atomically)
    with old and new keys before any row changes and pruned of the old ones after the commit, so a crash
    at any point leaves every secret decryptable. Workspaces keyed by `$CMDC_NB_VAULT_KEY` must pass
    `new_key` and then set the variable to it.
    """
    workspace = get_workspace(ws)
    ring = workspace.vault.ring
    if new_key is None:
        if ring.source != "file":
            raise VaultKeyError(
                f"the vault key comes from {KEY_ENV}: pass new_key=cmdc_nb.vault.generate_key(), "
                "then set the variable to that key"
            )
        new_key = generate_key()
    raw = _decode_key(new_key)
    kid = key_id(raw)
    old = Vault(KeyRing(dict(ring.keys), ring.primary, ring.source, ring.path))
    ring.keys[kid] = raw
    ring.primary = kid
    _ring_changed(workspace.vault)
    start = time.perf_counter()
    count = 0
    try:
        with workspace.transaction() as tx:
            for model, column in ENCRYPTED_COLUMNS:
                col = getattr(model, column)
                last = None
                while True:
                    stmt = sa.select(model.id, col).where(col.is_not(None)).order_by(model.id).limit(_BATCH)
                    if last is not None:
                        stmt = stmt.where(model.id > last)
                    rows = tx.db.execute(stmt).all()
                    if not rows:
                        break
                    table = model.__tablename__
                    # ORM bulk UPDATE by primary key: one executemany per batch.
                    tx.db.execute(
                        sa.update(model),
                        [
                            {
                                "id": row_id,
                                column: workspace.vault.encrypt(
                                    old.decrypt(blob, table=table, column=column, row_id=row_id),
                                    table=table,
                                    column=column,
                                    row_id=row_id,
                                ),
                            }
                            for row_id, blob in rows
                        ],
                    )
                    count += len(rows)
                    last = rows[-1][0]
            retired = sorted(k for k in ring.keys if k != kid) if retire_old else []
            log_activity(
                tx,
                ActivityAction.VAULT_ROTATE,
                resource_type="workspace",
                resource_id=_WORKSPACE_ID,
                user_id=None,
                details={"new_key_id": kid, "secrets_rotated": count},
            )
            tx.publish(topics.workspace(), "vault_rotated", {"new_key_id": kid, "secrets_rotated": count})
    except BaseException:
        # Nothing was re-encrypted; keep decrypting with the ring as it was (plus the new key, harmless).
        ring.primary = old.ring.primary
        _ring_changed(workspace.vault)
        raise
    if retire_old:
        for k in retired:
            ring.keys.pop(k, None)
        _ring_changed(workspace.vault)
    return RotationReport(kid, retired, count, time.perf_counter() - start)


def _ring_changed(vault: Vault) -> None:
    """After editing the ring: drop cached ciphers, and persist it when it lives in a key file."""
    vault._ciphers.clear()
    if vault.ring.source == "file":
        vault.ring.save()
