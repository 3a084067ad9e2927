"""Versioned artifacts with content-addressed storage, computed diffs, restore and clean-up.

Contents are addressed by their SHA-256. Up to `INLINE_LIMIT` bytes are kept in the row itself;
larger ones are written once to `<workspace home>/artifacts/<aa>/<sha256>` (the same bytes stored
twice take the space once). Every read verifies the checksum.

All versions of an artifact share a `lineage_id` and exactly one of them is the latest (a unique
partial index guarantees it). A new version copies whatever it does not change.

>>> a = create_artifact(user, name="parser.py", content=source, artifact_type="code")   # doctest: +SKIP
>>> b = create_artifact_version(a, content=new_source)                                 # doctest: +SKIP
>>> d = create_diff(user, a, b)          # unified diff, additions and deletions computed  # doctest: +SKIP
"""

from __future__ import annotations

import codecs
import datetime as dt
import difflib
import hashlib
import os
import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import UNSET, Unset, fetch
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError, InvalidStateError, StorageError
from cmdc_nb.events import topics
from cmdc_nb.store.arrays import overlaps
from cmdc_nb.store.enums import (
    ActivityAction,
    ArtifactSourceType,
    ArtifactType,
    RetentionPolicy,
    StorageBackend,
)
from cmdc_nb.store.models import Artifact, Session, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.store.values import utcnow

__all__ = [
    "INLINE_LIMIT",
    "CleanupReport",
    "collect_garbage",
    "create_artifact",
    "create_artifact_version",
    "create_diff",
    "delete_artifact",
    "delete_expired_artifacts",
    "get_artifact",
    "get_latest_version",
    "get_version_history",
    "list_artifacts",
    "read_artifact",
    "read_artifact_text",
    "restore_artifact_version",
]

INLINE_LIMIT = 64 * 1024
GC_GRACE = dt.timedelta(hours=1)  # a blob younger than this may belong to a transaction in flight
ArtifactRef = Artifact | uuid.UUID | str


@dataclass(frozen=True)
class CleanupReport:
    deleted_artifacts: int
    deleted_blobs: int
    freed_bytes: int


def _blob_root(ws: Workspace) -> Path:
    return ws.home / "artifacts"


def _blob_path(ws: Workspace, digest: str) -> Path:
    return _blob_root(ws) / digest[:2] / digest


def _as_bytes(content: Any) -> bytes:
    if isinstance(content, bytes | bytearray | memoryview):
        return bytes(content)
    if isinstance(content, str):
        return content.encode("utf-8")
    raise InvalidInputError(f"expected bytes or text, got {type(content).__name__}", field="content")


def _store(ws: Workspace, data: bytes) -> dict[str, Any]:
    """Column values for `data`: inline when small, else a content-addressed file (written atomically)."""
    digest = hashlib.sha256(data).hexdigest()
    common = {"checksum": digest, "size_bytes": len(data), "line_count": _lines(data)}
    if len(data) <= INLINE_LIMIT:
        return {**common, "storage_backend": StorageBackend.INLINE, "inline_content": data}
    path = _blob_path(ws, digest)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, path)  # atomic: readers see all of it or none
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    else:
        os.utime(path)  # fresh again, so a concurrent clean-up's grace period protects it
    rel = str(path.relative_to(ws.home))
    return {
        **common,
        "storage_backend": StorageBackend.LOCAL,
        "storage_path": rel,
        "storage_key": digest,
        "inline_content": None,
    }


def _lines(data: bytes) -> int | None:
    if b"\x00" in data[:8192]:
        return None  # binary
    return data.count(b"\n") + (0 if not data or data.endswith(b"\n") else 1)


def _load(ws: Workspace, a: Artifact) -> bytes:
    if a.storage_backend is StorageBackend.INLINE:
        data = a.inline_content or b""
    elif a.storage_backend is StorageBackend.LOCAL and a.storage_path:
        try:
            data = (ws.home / a.storage_path).read_bytes()
        except OSError as exc:
            raise StorageError(f"artifact {a.id}: its content file is missing ({exc.strerror})") from None
    else:
        raise StorageError(f"artifact {a.id}: {a.storage_backend.value} storage is not readable here")
    if a.checksum and hashlib.sha256(data).hexdigest() != a.checksum:
        raise StorageError(f"artifact {a.id}: content does not match its checksum (corrupted or altered)")
    return data


def _payload(a: Artifact) -> dict[str, Any]:
    return {
        "artifact_id": str(a.id),
        "lineage_id": str(a.lineage_id),
        "user_id": str(a.user_id),
        "name": a.name,
        "version": a.version,
        "artifact_type": a.artifact_type.value,
        "checksum": a.checksum,
        "size_bytes": a.size_bytes,
    }


def _publish(tx: Tx, a: Artifact, type: str) -> None:
    tx.publish(topics.user(a.user_id), type, _payload(a))
    if a.session_id is not None:
        tx.publish(topics.session(a.session_id), type, _payload(a))


def _log(tx: Tx, a: Artifact, action: ActivityAction, details: dict[str, Any]) -> None:
    log_activity(
        tx,
        action,
        resource_type="artifact",
        resource_id=a.id,
        user_id=a.user_id,
        session_id=a.session_id,
        details=details,
    )


@checked
def create_artifact(
    user: User | uuid.UUID | str,
    *,
    name: str,
    content: bytes | str,
    artifact_type: ArtifactType | str = ArtifactType.FILE,
    session: Session | uuid.UUID | str | None = None,
    description: str | None = None,
    mime_type: str | None = None,
    language: str | None = None,
    original_filename: str | None = None,
    source_type: ArtifactSourceType | str | None = None,
    source_id: uuid.UUID | str | None = None,
    tags: Sequence[str] = (),
    expires_at: dt.datetime | None = None,
    retention_policy: RetentionPolicy | str | None = None,
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> Artifact:
    """Store `content` as version 1 of a new artifact."""
    workspace = get_workspace(ws)
    fields = {
        "user_id": v.id_of(user, "user"),
        "name": v.text(name, "name", max_len=300),
        "artifact_type": v.choice(ArtifactType, artifact_type, "artifact_type"),
        "session_id": v.id_of(session, "session") if session is not None else None,
        "description": description,
        "mime_type": mime_type,
        "language": language,
        "original_filename": original_filename,
        "source_type": v.choice(ArtifactSourceType, source_type, "source_type") if source_type else None,
        "source_id": v.uuid_of(source_id, "source_id") if source_id is not None else None,
        "tags": [v.text(t, "tags", max_len=64) for t in tags],
        "expires_at": v.aware(expires_at, "expires_at") if expires_at is not None else None,
        "retention_policy": v.choice(RetentionPolicy, retention_policy, "retention_policy")
        if retention_policy
        else None,
        "meta": dict(metadata or {}),
    }
    stored = _store(workspace, _as_bytes(content))
    with workspace.transaction() as tx:
        return _insert(tx, uuid.uuid4(), fields, stored)


def insert_artifact_in(tx: Tx, aid: uuid.UUID, fields: Mapping[str, Any], content: bytes) -> Artifact:
    """Version 1 of a new artifact, in `tx` (a sibling service's transaction), with its audit entry and
    event. `fields` are checked by the caller; a large content's file is written before the commit
    (GC_GRACE keeps it from a concurrent clean-up)."""
    return _insert(tx, aid, fields, _store(tx.ws, content))


def _insert(tx: Tx, aid: uuid.UUID, fields: Mapping[str, Any], stored: Mapping[str, Any]) -> Artifact:
    a = Artifact(id=aid, lineage_id=aid, version=1, is_latest=True, **fields, **stored)
    tx.db.add(a)
    tx.db.flush()
    _log(tx, a, ActivityAction.ARTIFACT_CREATE, {"name": a.name, "checksum": a.checksum})
    _publish(tx, a, "artifact_created")
    return a


# Where and what the content is: what a new version replaces when its content changes.
_CONTENT_FIELDS = (
    "storage_backend",
    "storage_path",
    "storage_key",
    "inline_content",
    "size_bytes",
    "checksum",
    "line_count",
)
_COPIED = (
    "user_id",
    "session_id",
    "name",
    "description",
    "artifact_type",
    "mime_type",
    "language",
    "original_filename",
    "source_type",
    "source_id",
    "tags",
    "visibility",
    "shared_with_user_ids",
    "expires_at",
    "retention_policy",
    "git_commit",
    "git_repo",
    "git_path",
    *_CONTENT_FIELDS,
    "meta",
)


def _new_version(tx: Tx, prev: Artifact, changes: dict[str, Any], action_details: dict[str, Any]) -> Artifact:
    latest = tx.db.scalar(
        sa.select(Artifact)
        .where(Artifact.lineage_id == prev.lineage_id, Artifact.is_latest)
        .with_for_update()
    )
    if latest is None or latest.id != prev.id:
        raise InvalidStateError(
            "artifact",
            f"version {prev.version} (not the latest)",
            "new version",
            allowed=None,
        )
    prev.is_latest = False
    tx.db.flush()  # the unique "one latest" index must see this before the new row arrives
    fields = {k: getattr(prev, k) for k in _COPIED}
    fields.update(changes)
    new = Artifact(
        id=uuid.uuid4(),
        lineage_id=prev.lineage_id,
        version=prev.version + 1,
        previous_version_id=prev.id,
        is_latest=True,
        **fields,
    )
    tx.db.add(new)
    tx.db.flush()
    _log(tx, new, ActivityAction.ARTIFACT_UPDATE, {"version": new.version, **action_details})
    _publish(tx, new, "artifact_version_created")
    return new


@checked
def create_artifact_version(
    artifact: ArtifactRef,
    *,
    content: bytes | str | Unset = UNSET,
    name: str | Unset = UNSET,
    description: str | Unset | None = UNSET,
    tags: Sequence[str] | Unset = UNSET,
    metadata: Mapping[str, Any] | Unset = UNSET,
    ws: Workspace | None = None,
) -> Artifact:
    """A new latest version of `artifact` (which must be the latest). What is not given is copied."""
    workspace = get_workspace(ws)
    changes: dict[str, Any] = {}
    if not isinstance(content, Unset):
        changes.update(_store(workspace, _as_bytes(content)))
    if not isinstance(name, Unset):
        changes["name"] = v.text(name, "name", max_len=300)
    if not isinstance(description, Unset):
        changes["description"] = description
    if not isinstance(tags, Unset):
        changes["tags"] = [v.text(t, "tags", max_len=64) for t in tags]
    if not isinstance(metadata, Unset):
        changes["meta"] = dict(metadata)
    with workspace.transaction() as tx:
        prev = fetch(tx.db, Artifact, artifact, "artifact", lock=True)
        return _new_version(tx, prev, changes, {"changed": sorted(changes)})


@checked
def restore_artifact_version(artifact: ArtifactRef, *, ws: Workspace | None = None) -> Artifact:
    """Make an old version's content the latest again, as a new version (history is never rewritten)."""
    workspace = get_workspace(ws)
    with workspace.transaction() as tx:
        old = fetch(tx.db, Artifact, artifact, "artifact")
        _load(workspace, old)  # refuse to restore corrupted content
        latest = tx.db.scalar(
            sa.select(Artifact)
            .where(Artifact.lineage_id == old.lineage_id, Artifact.is_latest)
            .with_for_update()
        )
        if latest is None:
            raise StorageError(f"artifact lineage {old.lineage_id} has no latest version")
        changes = {k: getattr(old, k) for k in ("name", *_CONTENT_FIELDS)}
        return _new_version(tx, latest, changes, {"restored_from_version": old.version})


@checked
def get_artifact(artifact: ArtifactRef, *, ws: Workspace | None = None) -> Artifact:
    with get_workspace(ws).read() as db:
        return fetch(db, Artifact, artifact, "artifact")


@checked
def get_latest_version(artifact: ArtifactRef, *, ws: Workspace | None = None) -> Artifact:
    with get_workspace(ws).read() as db:
        a = fetch(db, Artifact, artifact, "artifact")
        latest = db.scalar(sa.select(Artifact).where(Artifact.lineage_id == a.lineage_id, Artifact.is_latest))
    return latest or a


@checked
def read_artifact(artifact: ArtifactRef, *, ws: Workspace | None = None) -> bytes:
    """The artifact's bytes, checksum verified (StorageError if they do not match)."""
    workspace = get_workspace(ws)
    return _load(workspace, get_artifact(artifact, ws=workspace))


@checked
def read_artifact_text(artifact: ArtifactRef, *, encoding: str = "utf-8", ws: Workspace | None = None) -> str:
    try:
        codecs.lookup(encoding)
    except LookupError:
        raise InvalidInputError(f"no such text encoding: {encoding[:40]!r}", field="encoding") from None
    try:
        return read_artifact(artifact, ws=ws).decode(encoding)
    except UnicodeDecodeError as exc:
        raise InvalidInputError(
            f"the content is not {encoding} text ({exc.reason} at byte {exc.start}): read it with "
            "read_artifact",
            field="encoding",
        ) from None


@checked
def get_version_history(artifact: ArtifactRef, *, ws: Workspace | None = None) -> list[Artifact]:
    """Every version of the artifact's lineage, oldest first."""
    with get_workspace(ws).read() as db:
        a = fetch(db, Artifact, artifact, "artifact")
        return list(
            db.scalars(
                sa.select(Artifact).where(Artifact.lineage_id == a.lineage_id).order_by(Artifact.version)
            )
        )


@checked
def create_diff(
    user: User | uuid.UUID | str,
    base: ArtifactRef,
    other: ArtifactRef | str | bytes,
    *,
    name: str | None = None,
    context_lines: int = 3,
    ws: Workspace | None = None,
) -> Artifact:
    """A `diff` artifact holding the unified diff from `base` to `other` (an artifact, or new text),
    with its additions and deletions counted here (the seed took them from the caller)."""
    workspace = get_workspace(ws)
    base_a = get_artifact(base, ws=workspace)
    before = _load(workspace, base_a).decode("utf-8", errors="replace")
    if isinstance(other, str | bytes):
        after, other_name = _as_bytes(other).decode("utf-8", errors="replace"), f"{base_a.name} (new)"
    else:
        other_a = get_artifact(other, ws=workspace)
        after, other_name = _load(workspace, other_a).decode("utf-8", errors="replace"), other_a.name
        if other_a.lineage_id == base_a.lineage_id:
            other_name = f"{other_a.name}@v{other_a.version}"
    lines = list(
        difflib.unified_diff(
            before.splitlines(keepends=True),
            after.splitlines(keepends=True),
            fromfile=f"{base_a.name}@v{base_a.version}",
            tofile=other_name,
            n=context_lines,
        )
    )
    text = "".join(
        line if line.endswith("\n") else line + "\n\\ No newline at end of file\n" for line in lines
    )
    additions = sum(1 for line in lines if line.startswith("+") and not line.startswith("+++"))
    deletions = sum(1 for line in lines if line.startswith("-") and not line.startswith("---"))
    stored = _store(workspace, text.encode("utf-8"))
    with workspace.transaction() as tx:
        aid = uuid.uuid4()
        a = Artifact(
            id=aid,
            lineage_id=aid,
            user_id=v.id_of(user, "user"),
            session_id=base_a.session_id,
            name=name or f"{base_a.name} → {other_name}",
            artifact_type=ArtifactType.DIFF,
            mime_type="text/x-diff",
            diff_base_artifact_id=base_a.id,
            diff_content=text,
            additions=additions,
            deletions=deletions,
            **stored,
        )
        tx.db.add(a)
        tx.db.flush()
        _log(
            tx, a, ActivityAction.ARTIFACT_CREATE, {"diff_of": str(base_a.id), "+": additions, "-": deletions}
        )
        _publish(tx, a, "artifact_created")
    return a


@checked
def list_artifacts(
    user: User | uuid.UUID | str,
    *,
    artifact_type: ArtifactType | str | None = None,
    session: Session | uuid.UUID | str | None = None,
    tags: Sequence[str] | None = None,
    latest_only: bool = True,
    limit: int = 50,
    after: str | None = None,
    ws: Workspace | None = None,
) -> Page[Artifact]:
    """The user's artifacts, newest first (only the latest version of each, unless told otherwise)."""
    user = access.scope_user(get_workspace(ws), user)
    stmt = sa.select(Artifact).where(Artifact.user_id == v.id_of(user, "user"))
    if latest_only:
        stmt = stmt.where(Artifact.is_latest)
    if artifact_type is not None:
        stmt = stmt.where(Artifact.artifact_type == v.choice(ArtifactType, artifact_type, "artifact_type"))
    if session is not None:
        stmt = stmt.where(Artifact.session_id == v.id_of(session, "session"))
    with get_workspace(ws).read() as db:
        if tags:
            stmt = stmt.where(overlaps(db, Artifact.tags, list(tags)))
        return paginate(
            db, stmt, order_by=Artifact.inserted_at, id_column=Artifact.id, limit=limit, after=after
        )


@checked
def delete_artifact(artifact: ArtifactRef, *, ws: Workspace | None = None) -> int:
    """Delete the artifact with all its versions; returns how many rows. Blobs go at the next
    `collect_garbage` (another artifact may share them)."""
    with get_workspace(ws).transaction() as tx:
        a = fetch(tx.db, Artifact, artifact, "artifact", lock=True)
        rows = list(tx.db.scalars(sa.select(Artifact).where(Artifact.lineage_id == a.lineage_id)))
        _log(tx, a, ActivityAction.ARTIFACT_DELETE, {"versions": len(rows), "name": a.name})
        _publish(tx, a, "artifact_deleted")
        tx.db.execute(
            sa.update(Artifact).where(Artifact.lineage_id == a.lineage_id).values(previous_version_id=None)
        )
        tx.db.execute(sa.delete(Artifact).where(Artifact.lineage_id == a.lineage_id))
    return len(rows)


@checked
def delete_expired_artifacts(*, now: dt.datetime | None = None, ws: Workspace | None = None) -> CleanupReport:
    """Delete every artifact version past its `expires_at`, then collect unreferenced blobs."""
    workspace = get_workspace(ws)
    at = v.aware(now, "now") if now is not None else utcnow()
    with workspace.transaction() as tx:
        expired = list(tx.db.scalars(sa.select(Artifact).where(Artifact.expires_at < at)))
        for a in expired:
            _log(tx, a, ActivityAction.ARTIFACT_DELETE, {"reason": "expired", "version": a.version})
        ids = [a.id for a in expired]
        if ids:
            tx.db.execute(
                sa.update(Artifact)
                .where(Artifact.previous_version_id.in_(ids))
                .values(previous_version_id=None)
            )
            tx.db.execute(sa.delete(Artifact).where(Artifact.id.in_(ids)))
            # a lineage whose latest expired but older versions did not: promote the newest survivor
            for lineage in {a.lineage_id for a in expired if a.is_latest}:
                survivor = tx.db.scalar(
                    sa.select(Artifact)
                    .where(Artifact.lineage_id == lineage)
                    .order_by(Artifact.version.desc())
                )
                if survivor is not None:
                    survivor.is_latest = True
            tx.db.flush()
    blobs, freed = _sweep(workspace, grace=GC_GRACE)
    return CleanupReport(len(expired), blobs, freed)


@checked
def collect_garbage(*, grace: dt.timedelta = GC_GRACE, ws: Workspace | None = None) -> CleanupReport:
    """Remove content files no artifact refers to (and only those). Files younger than `grace` are
    kept: they may belong to a transaction that has not committed yet."""
    blobs, freed = _sweep(get_workspace(ws), grace=grace)
    return CleanupReport(0, blobs, freed)


def _sweep(ws: Workspace, *, grace: dt.timedelta) -> tuple[int, int]:
    root = _blob_root(ws)
    if not root.exists():
        return 0, 0
    with ws.read() as db:
        referenced = set(db.scalars(sa.select(Artifact.storage_key).where(Artifact.storage_key.is_not(None))))
    cutoff = time.time() - grace.total_seconds()
    count = freed = 0
    for path in root.glob("??/*"):
        if path.name in referenced or not path.is_file():
            continue
        stat = path.stat()
        if stat.st_mtime > cutoff:
            continue
        path.unlink(missing_ok=True)
        count += 1
        freed += stat.st_size
    return count, freed
