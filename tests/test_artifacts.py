"""Artifacts: content addressing, versions, computed diffs, restore, checksums and clean-up."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest

from cmdc_nb import activity, artifacts, sessions
from cmdc_nb.errors import InvalidStateError, StorageError
from cmdc_nb.store.models import User
from cmdc_nb.workspace import Workspace

BIG = ("line\n" * 20_000).encode()  # 100 KB: above the inline limit


def test_small_contents_are_inline_and_large_ones_shared_files(ws: Workspace, user: User) -> None:
    small = artifacts.create_artifact(user, name="a.txt", content="hello\n", ws=ws)
    assert (small.storage_backend, small.size_bytes, small.line_count) == ("inline", 6, 1)
    big1 = artifacts.create_artifact(user, name="big", content=BIG, ws=ws)
    big2 = artifacts.create_artifact(user, name="same bytes", content=BIG, ws=ws)
    assert big1.storage_backend == "local" and big1.storage_path == big2.storage_path
    assert len(list((ws.home / "artifacts").glob("??/*"))) == 1  # stored once
    assert artifacts.read_artifact(big2, ws=ws) == BIG
    assert artifacts.read_artifact_text(small, ws=ws) == "hello\n"


def test_versions_copy_what_they_do_not_change_and_one_is_latest(ws: Workspace, user: User) -> None:
    s = sessions.create_session(user, name="s", ws=ws)
    v1 = artifacts.create_artifact(
        user,
        name="p.py",
        content="a = 1\n",
        artifact_type="code",
        language="python",
        session=s,
        tags=["x"],
        ws=ws,
    )
    v2 = artifacts.create_artifact_version(v1, content="a = 2\n", ws=ws)
    v3 = artifacts.create_artifact_version(v2, name="parser.py", ws=ws)
    assert (v2.version, v2.language, v2.tags, v2.session_id, v2.previous_version_id) == (
        2,
        "python",
        ["x"],
        s.id,
        v1.id,
    )
    assert (v3.name, artifacts.read_artifact_text(v3, ws=ws)) == ("parser.py", "a = 2\n")
    history = artifacts.get_version_history(v1, ws=ws)
    assert [(a.version, a.is_latest) for a in history] == [(1, False), (2, False), (3, True)]
    assert artifacts.get_latest_version(v1, ws=ws).id == v3.id
    with pytest.raises(InvalidStateError):
        artifacts.create_artifact_version(v1, content="fork attempt", ws=ws)
    assert [a.id for a in artifacts.list_artifacts(user, ws=ws)] == [v3.id]
    assert len(artifacts.list_artifacts(user, latest_only=False, tags=["x"], ws=ws)) == 3
    assert len(artifacts.list_artifacts(user, tags=["nope"], ws=ws)) == 0


def test_restore_makes_an_old_version_the_new_latest(ws: Workspace, user: User) -> None:
    v1 = artifacts.create_artifact(user, name="f", content="one\n", ws=ws)
    artifacts.create_artifact_version(v1, content="two\n", ws=ws)
    v3 = artifacts.restore_artifact_version(v1, ws=ws)
    assert (v3.version, v3.is_latest, artifacts.read_artifact_text(v3, ws=ws)) == (3, True, "one\n")
    assert [
        e.details.get("restored_from_version")
        for e in activity.list_resource_activity("artifact", v3.id, ws=ws)
    ] == [1]


def test_diffs_are_computed_with_their_counts(ws: Workspace, user: User) -> None:
    v1 = artifacts.create_artifact(user, name="f.py", content="a\nb\nc\n", ws=ws)
    v2 = artifacts.create_artifact_version(v1, content="a\nB\nc\nd\n", ws=ws)
    d = artifacts.create_diff(user, v1, v2, ws=ws)
    assert (d.artifact_type, d.additions, d.deletions, d.diff_base_artifact_id) == ("diff", 2, 1, v1.id)
    assert "-b\n+B\n" in d.diff_content and d.diff_content.startswith("--- f.py@v1\n+++ f.py@v2\n")
    text = artifacts.create_diff(user, v1, "a\nb\n", ws=ws)
    assert (text.additions, text.deletions) == (0, 1)


def test_a_tampered_blob_is_detected_on_read(ws: Workspace, user: User) -> None:
    a = artifacts.create_artifact(user, name="big", content=BIG, ws=ws)
    path = ws.home / a.storage_path
    path.write_bytes(BIG[:-1] + b"X")
    with pytest.raises(StorageError, match="checksum"):
        artifacts.read_artifact(a, ws=ws)
    path.unlink()
    with pytest.raises(StorageError, match="missing"):
        artifacts.read_artifact(a, ws=ws)


def _age(path: Path, hours: float) -> None:
    t = path.stat().st_mtime - hours * 3600
    os.utime(path, (t, t))


def test_clean_up_removes_unreferenced_blobs_and_nothing_else(ws: Workspace, user: User) -> None:
    keep = artifacts.create_artifact(user, name="keep", content=BIG, ws=ws)
    gone = artifacts.create_artifact(user, name="gone", content=BIG + b"2", ws=ws)
    young_orphan = artifacts.create_artifact(user, name="young", content=BIG + b"3", ws=ws)
    for a in (keep, gone, young_orphan):
        _age(ws.home / a.storage_path, 2)
    artifacts.delete_artifact(gone, ws=ws)
    artifacts.delete_artifact(young_orphan, ws=ws)
    os.utime(ws.home / young_orphan.storage_path)  # as if written a moment ago
    report = artifacts.collect_garbage(ws=ws)
    assert (report.deleted_blobs, report.freed_bytes) == (1, len(BIG) + 1)
    assert not (ws.home / gone.storage_path).exists()
    assert (ws.home / young_orphan.storage_path).exists()  # within the grace period
    assert artifacts.read_artifact(keep, ws=ws) == BIG


def test_expiry_deletes_rows_and_promotes_a_surviving_version(ws: Workspace, user: User) -> None:
    soon = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    v1 = artifacts.create_artifact(user, name="f", content="one\n", ws=ws)
    v2 = artifacts.create_artifact_version(v1, content="two\n", ws=ws)
    with ws.transaction() as tx:
        tx.db.get(type(v2), v2.id).expires_at = soon
    other = artifacts.create_artifact(user, name="tmp", content="x", expires_at=soon, ws=ws)
    report = artifacts.delete_expired_artifacts(now=soon + dt.timedelta(seconds=1), ws=ws)
    assert report.deleted_artifacts == 2
    assert artifacts.get_latest_version(v1, ws=ws).id == v1.id and artifacts.get_artifact(v1, ws=ws).is_latest
    assert [a.id for a in artifacts.list_artifacts(user, ws=ws)] == [v1.id]
    assert other.id not in {a.id for a in artifacts.list_artifacts(user, latest_only=False, ws=ws)}
