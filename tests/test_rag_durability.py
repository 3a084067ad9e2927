"""RAG durability and parity: an ingestion killed in the middle leaves every document at its old or
its new version (never between, never missing) and the next run repairs the rest; exact search gives
the same chunks in the same order on SQLite and PostgreSQL."""

from __future__ import annotations

import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import rag_children as children  # tests/ is on sys.path; registers the slow embedder here too
import sqlalchemy as sa
from conftest import drop_pg_database, fresh_pg_database

import cmdc_nb
from cmdc_nb import accounts, rag
from cmdc_nb.rag.chunking import chunk_text
from cmdc_nb.rag.sources import sha256
from cmdc_nb.store.models import ContextChunk, ContextDocument, User
from cmdc_nb.workspace import Workspace

FILES = 120
LIVENESS = 120


def write_version(root: Path, version: int, files: range) -> None:
    for i in files:
        (root / f"m{i:03d}.py").write_text(children.file_text(i, version))


def check_consistent(
    ws: Workspace, idx: rag.Index, root: Path, versions: dict[int, set[int]]
) -> dict[str, int]:
    """Every stored document is exactly one version of its file, chunks and all. Returns uri → version."""
    found: dict[str, int] = {}
    with ws.read() as db:
        docs = db.scalars(sa.select(ContextDocument).where(ContextDocument.index_id == idx.id)).all()
        for doc in docs:
            i = int(doc.uri[1:4])
            match = [v for v in versions[i] if sha256(children.file_text(i, v).encode()) == doc.content_hash]
            assert len(match) == 1, doc.uri
            text = children.file_text(i, match[0])
            expected = [
                c.text
                for c in chunk_text(
                    text, strategy="code_aware", max_tokens=64, overlap_tokens=0, language="python"
                )
            ]
            stored = db.scalars(
                sa.select(ContextChunk.content)
                .where(ContextChunk.document_id == doc.id)
                .order_by(ContextChunk.chunk_index)
            ).all()
            assert list(stored) == expected, doc.uri
            assert doc.chunk_count == len(expected)
            found[doc.uri] = match[0]
    return found


def test_an_ingestion_killed_midway_loses_nothing_and_the_next_run_repairs(
    ws: Workspace, user: User, db_url: str, home_dir: Path, tmp_path: Path
) -> None:
    root = tmp_path / "src"
    root.mkdir()
    write_version(root, 1, range(FILES))
    idx = rag.create_index(
        user,
        "kill",
        source_type="local_repo",
        source_config={"path": str(root)},
        chunk_strategy="code_aware",
        max_tokens=64,
        overlap_tokens=0,
        embedding_provider="slowhash",
        embedding_model="hashing-v1",
        embedding_dimensions=64,
        ws=ws,
    )
    rag.ingest(idx, progress=False, ws=ws)
    versions = {i: {1} for i in range(FILES)}
    rnd = random.Random(11)
    for round_no in range(3):
        new = round_no + 2
        changed = range(round_no * 30, round_no * 30 + 60)  # a different half each time
        write_version(root, new, changed)
        for i in changed:
            versions[i].add(new)
        proc = subprocess.Popen(
            [sys.executable, str(Path(children.__file__)), db_url, str(home_dir), str(idx.id)],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        assert proc.stdout is not None
        kill_at = rnd.randint(2, 25)
        for line in proc.stdout:
            if line.startswith("EMBED") and int(line.split()[1]) >= kill_at:
                proc.send_signal(signal.SIGKILL)
                break
        proc.wait(timeout=LIVENESS)
        assert proc.returncode == -signal.SIGKILL
        at_kill = check_consistent(ws, idx, root, versions)
        assert len(at_kill) == FILES  # no document missing, whatever the moment
        assert rag.get_index(idx, ws=ws).status == "updating"
        # a document the kill did not reach is still searchable at its old version
        stale = next(uri for uri, v in at_kill.items() if v < max(versions[int(uri[1:4])]))
        i, v = int(stale[1:4]), at_kill[stale]
        assert rag.search(idx, f"f{i}_0_v{v}", mode="text", k=1, ws=ws)[0].uri == stale
        report = rag.ingest(idx, progress=False, ws=ws)
        assert report.updated >= 1 and report.added == 0 and report.deleted == 0
        after = check_consistent(ws, idx, root, versions)
        assert after == {f"m{i:03d}.py": max(versions[i]) for i in range(FILES)}
        stats = rag.get_index_stats(idx, ws=ws)
        row = rag.get_index(idx, ws=ws)
        assert row.status == "ready" and (row.document_count, row.chunk_count) == (
            FILES,
            stats["chunk_count"],
        )


@pytest.mark.postgres
def test_exact_search_gives_the_same_chunks_in_the_same_order_on_both_backends(
    tmp_path: Path, sqlite_template: Path, pg_template: str, home_dir: Path
) -> None:
    import shutil

    shutil.copy(sqlite_template, tmp_path / "parity.db")
    pg_url, admin = fresh_pg_database(pg_template)
    texts = [{"uri": f"doc{i:03d}", "text": children.file_text(i, 1)} for i in range(80)]
    texts += [
        {"uri": "dup-a", "text": "the very same paragraph"},
        {"uri": "dup-b", "text": "the very same paragraph"},
    ]
    queries = ["step 3 of file 12", "module version", "return x + 5", "the very same paragraph", "f7_2_v1"]
    results = {}
    try:
        for name, url in (("sqlite", f"sqlite:///{tmp_path / 'parity.db'}"), ("postgresql", pg_url)):
            ws = cmdc_nb.connect(url, home=home_dir, make_default=False)
            me = accounts.create_user("p@example.com", ws=ws)
            idx = rag.create_index(
                me, "parity", chunk_strategy="code_aware", max_tokens=64, overlap_tokens=0, ws=ws
            )
            rag.ingest(idx, texts=texts, progress=False, ws=ws)
            results[name] = [
                [
                    (h.uri, h.chunk_index, round(h.score, 5))
                    for h in rag.search(idx, q, k=12, mode="vector", exact=True, dedupe=False, ws=ws)
                ]
                for q in queries
            ]
            ws.close()
    finally:
        drop_pg_database(pg_url, admin)
    assert results["sqlite"] == results["postgresql"]
    assert results["sqlite"][3][:2] == [("dup-a", 0, 1.0), ("dup-b", 0, 1.0)]  # exact ties: by URI
