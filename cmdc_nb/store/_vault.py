"""Secrets at rest: AES-256-GCM with a key ring, so keys can rotate.

A ciphertext is `b"CV1" | len(kid) | kid | nonce (12 bytes) | ciphertext and tag`. The key id travels with
the ciphertext, so a ring holding the old and new keys decrypts both during a rotation. Associated data
binds each ciphertext to its table, column and row: a value copied into another row or column does not
decrypt there, even with the right key.

Keys come from `CMDC_NB_VAULT_KEY` (one or more url-safe base64 32-byte keys, comma-separated, the first
encrypting) or, for the embedded default, from a key file created on first use with mode 0600.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import hashlib
import json
import os
import secrets
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from cmdc_nb.errors import DecryptionError, InvalidInputError, VaultKeyError

if (
    TYPE_CHECKING
):  # cryptography is imported by the first cipher (≈10 ms a process that holds no secret skips)
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

__all__ = ["KEY_ENV", "KeyRing", "Vault", "generate_key", "key_id"]

KEY_ENV = "CMDC_NB_VAULT_KEY"
_MAGIC = b"CV1"
_NONCE_LEN = 12


def generate_key() -> str:
    """A fresh 256-bit key, url-safe base64 encoded (the form `CMDC_NB_VAULT_KEY` takes)."""
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).decode()


def key_id(key: bytes) -> str:
    """A short, stable name for a key: a prefix of its SHA-256, which reveals nothing usable of it."""
    return hashlib.sha256(b"cmdc_nb vault key id\x00" + key).hexdigest()[:12]


def _decode_key(text: str) -> bytes:
    if not isinstance(text, str) or not text.isascii():
        # checked before decoding: the codec's error would hold the whole key (in its args)
        raise VaultKeyError("a vault key must be url-safe base64 (see cmdc_nb.vault.generate_key())")
    try:
        raw = base64.urlsafe_b64decode(text.strip() + "=" * (-len(text.strip()) % 4))
    except (binascii.Error, ValueError):
        raise VaultKeyError(
            "a vault key must be url-safe base64 (see cmdc_nb.vault.generate_key())"
        ) from None
    if len(raw) != 32:
        raise VaultKeyError(f"a vault key must be 32 bytes (AES-256), this one decodes to {len(raw)} bytes")
    return raw


@dataclass
class KeyRing:
    """The keys a vault can decrypt with; `primary` is the one it encrypts with."""

    keys: dict[str, bytes]
    primary: str
    source: Literal["env", "file", "memory"] = "memory"
    path: Path | None = None

    def __repr__(self) -> str:  # never the key bytes
        return f"<KeyRing primary={self.primary} keys={sorted(self.keys)} source={self.source}>"

    @classmethod
    def from_text(cls, text: str, *, source: Literal["env", "memory"] = "memory") -> KeyRing:
        if not isinstance(text, str):
            raise VaultKeyError(f"vault keys are text (comma-separated), got {type(text).__name__}")
        parts = [p for p in (s.strip() for s in text.split(",")) if p]
        if not parts:
            raise VaultKeyError(f"{KEY_ENV} is set but empty")
        keys = {key_id(k): k for k in map(_decode_key, parts)}
        return cls(keys=keys, primary=key_id(_decode_key(parts[0])), source=source)

    @classmethod
    def load_or_create(cls, path: Path) -> KeyRing:
        """Read the key file, creating it (mode 0600, never overwriting) when it does not exist."""
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            key = _decode_key(generate_key())
            ring = cls(keys={key_id(key): key}, primary=key_id(key), source="file", path=path)
            try:
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:  # another process made it first: use theirs
                return cls.load_or_create(path)
            with os.fdopen(fd, "w") as fh:
                fh.write(ring._to_json())
                fh.flush()
                os.fsync(fh.fileno())
            return ring
        try:
            doc = json.loads(path.read_text())
            keys = {kid: _decode_key(text) for kid, text in doc["keys"].items()}
            primary = doc["primary"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise VaultKeyError(
                f"the vault key file {path} is unreadable or malformed ({type(exc).__name__})"
            ) from None
        for kid, key in keys.items():
            if key_id(key) != kid:
                raise VaultKeyError(f"the vault key file {path} is corrupt: key {kid} does not match its id")
        if primary not in keys:
            raise VaultKeyError(f"the vault key file {path} names a primary key it does not hold")
        return cls(keys=keys, primary=primary, source="file", path=path)

    def save(self) -> None:
        """Replace the key file atomically (write, fsync, rename), keeping mode 0600."""
        if self.path is None:
            raise VaultKeyError("this key ring has no file to save to")
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=".vault-", suffix=".tmp")
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(self._to_json())
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise

    def _to_json(self) -> str:
        keys = {kid: base64.urlsafe_b64encode(k).decode() for kid, k in self.keys.items()}
        return json.dumps({"version": 1, "primary": self.primary, "keys": keys}, indent=1)


@dataclass
class Vault:
    """Encrypts and decrypts values bound to a (table, column, row)."""

    ring: KeyRing
    _ciphers: dict[str, AESGCM] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"<Vault {self.ring!r}>"

    @property
    def primary_key_id(self) -> str:
        return self.ring.primary

    def _cipher(self, kid: str) -> AESGCM:
        if kid not in self._ciphers:
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM

            try:
                self._ciphers[kid] = AESGCM(self.ring.keys[kid])
            except KeyError:
                raise VaultKeyError(
                    f"this value was encrypted with vault key {kid}, which is not in the key ring "
                    f"(ring holds {sorted(self.ring.keys)}); set {KEY_ENV} to include it"
                ) from None
        return self._ciphers[kid]

    @staticmethod
    def _aad(table: str, column: str, row_id: object) -> bytes:
        return f"cmdc_nb:{table}:{column}:{row_id}".encode()

    def encrypt(self, plaintext: str | bytes, *, table: str, column: str, row_id: object) -> bytes:
        data = _secret_bytes(plaintext)
        kid = self.ring.primary.encode()
        nonce = secrets.token_bytes(_NONCE_LEN)
        sealed = self._cipher(self.ring.primary).encrypt(nonce, data, self._aad(table, column, row_id))
        return _MAGIC + bytes([len(kid)]) + kid + nonce + sealed

    def key_id_of(self, ciphertext: bytes) -> str:
        if not ciphertext.startswith(_MAGIC) or len(ciphertext) < len(_MAGIC) + 1:
            raise DecryptionError("not a cmdc_nb vault ciphertext (bad header)")
        n = ciphertext[len(_MAGIC)]
        return ciphertext[len(_MAGIC) + 1 : len(_MAGIC) + 1 + n].decode("ascii", errors="replace")

    def decrypt(self, ciphertext: bytes, *, table: str, column: str, row_id: object) -> bytes:
        kid = self.key_id_of(ciphertext)
        start = len(_MAGIC) + 1 + len(kid.encode())
        nonce, sealed = ciphertext[start : start + _NONCE_LEN], ciphertext[start + _NONCE_LEN :]
        if len(nonce) != _NONCE_LEN or len(sealed) < 16:
            raise DecryptionError(f"{table}.{column} of row {row_id}: ciphertext is truncated")
        cipher = self._cipher(kid)
        from cryptography.exceptions import InvalidTag

        try:
            return cipher.decrypt(nonce, sealed, self._aad(table, column, row_id))
        except InvalidTag:
            raise DecryptionError(
                f"{table}.{column} of row {row_id} did not decrypt: the key is wrong, or the value "
                "was tampered with or moved from another row"
            ) from None


def _secret_bytes(plaintext: object) -> bytes:
    """The secret as bytes. Text UTF-8 cannot hold is refused *outside* the `except`: a
    UnicodeEncodeError carries the whole secret in its repr, and an exception raised while handling it
    would keep it as its `__context__`."""
    if isinstance(plaintext, bytes):
        return plaintext
    if isinstance(plaintext, str):
        try:
            return plaintext.encode()
        except UnicodeEncodeError:
            pass
    raise InvalidInputError(
        "a secret must be text UTF-8 can hold (no unpaired surrogates) or bytes", field="secret"
    )
