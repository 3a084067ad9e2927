"""Bring your own vectors, on both backends: chunks stored with vectors computed elsewhere (one by one,
or a DataFrame's embedding column) and searched by a vector rank exactly as numpy's cosine similarity
over the same vectors; dimensions are held to the index's; re-running a cell updates rather than
duplicates; `cmdc_nb.indexes` is the same functions under the seed's name."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from cmdc_nb import rag, sessions
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.providers import Script
from cmdc_nb.store.models import AgentCall, ContextChunk, ContextDocument, Index, User
from cmdc_nb.workspace import Workspace

DIMS = 32
N = 200


def vectors(seed: int = 27, n: int = N) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, DIMS)).astype(np.float32)


def numpy_top(matrix: np.ndarray, query: np.ndarray, k: int = 10) -> tuple[list[int], np.ndarray]:
    """The rows nearest to `query` by cosine similarity, best first, and every row's similarity."""
    m = matrix.astype(np.float64)
    q = query.astype(np.float64)
    sims = (m @ q) / (np.linalg.norm(m, axis=1) * np.linalg.norm(q))
    return [int(i) for i in np.argsort(-sims)[:k]], sims


def count_rows(ws: Workspace, model: Any) -> int:
    with ws.read() as db:
        return int(db.scalar(sa.select(sa.func.count()).select_from(model)))


def hnsw_calls(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Counts the searches that went through pgvector's HNSW index (PostgreSQL's default path)."""
    from cmdc_nb.store import vector

    calls: list[int] = []
    real = vector.hnsw_search

    def spy(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(vector, "hnsw_search", spy)
    return calls


def assert_same_top10(
    ws: Workspace, idx: Index, matrix: np.ndarray, row_of: dict[Any, int], calls: list[int]
) -> None:
    for seed in range(5):
        query = np.random.default_rng(1000 + seed).normal(size=DIMS).astype(np.float32)
        expected, sims = numpy_top(matrix, query)
        variants = {"exact": {"exact": True}, "default": {"ef_search": N}}
        for name, options in variants.items():
            before = len(calls)
            hits = rag.search_chunks(idx, query.tolist(), k=10, ws=ws, **options)
            assert [row_of[h.chunk_id] for h in hits] == expected, (name, seed)
            assert [h.rank for h in hits] == list(range(1, 11))
            assert np.allclose([h.score for h in hits], sims[expected], atol=1e-5)
            # PostgreSQL's default path is the HNSW index; exact (and SQLite) is numpy's product
            went_hnsw = len(calls) > before
            assert went_hnsw == (ws.backend == "postgresql" and name == "default")


def test_vectors_stored_one_by_one_rank_as_numpy_does(
    ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = hnsw_calls(monkeypatch)
    idx = rag.create_index(user, "outside", embedding_dimensions=DIMS, ws=ws)
    matrix = vectors()
    row_of: dict[Any, int] = {}
    for d in range(N // 10):
        doc = rag.create_context_document(idx, f"doc-{d:02d}", title=f"D{d}", ws=ws)
        for c in range(10):
            i = d * 10 + c
            vec = matrix[i] if i % 2 else matrix[i].tolist()  # an array or a list of floats
            chunk = rag.create_context_chunk(doc, f"chunk number {i}", embedding=vec, ws=ws)
            assert chunk.chunk_index == c and chunk.embedding_model == "external"
            row_of[chunk.id] = i
    stats = rag.get_index_stats(idx, ws=ws)
    assert (stats["document_count"], stats["chunk_count"], stats["embedded_count"]) == (20, N, N)
    row = rag.get_index(idx, ws=ws)
    assert (row.document_count, row.chunk_count) == (20, N)  # the counters moved with the rows
    if ws.backend == "postgresql":
        from cmdc_nb.store.vector import hnsw_index_name

        with ws.read() as db:
            assert db.scalar(sa.text("SELECT to_regclass(:n)"), {"n": hnsw_index_name(idx.id)}) is not None
    assert_same_top10(ws, idx, matrix, row_of, calls)


def test_a_dataframe_with_an_embedding_column_ranks_as_numpy_does(
    ws: Workspace, user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = hnsw_calls(monkeypatch)
    idx = rag.create_index(user, "frame", source_type="dataframe", embedding_dimensions=DIMS, ws=ws)
    matrix = vectors(seed=28)
    frame = pd.DataFrame(
        {
            "id": [f"r{i:03d}" for i in range(N)],
            "body": [f"row {i} " + "words " * (i % 7) for i in range(N)],
            "vec": list(matrix),
            "team": ["a" if i % 2 else "b" for i in range(N)],
        }
    )
    options: dict[str, Any] = {
        "text_column": "body",
        "id_column": "id",
        "metadata_columns": ["team"],
        "embedding_column": "vec",
        "progress": False,
        "ws": ws,
    }
    report = rag.ingest(idx, frame=frame, **options)
    assert (report.added, report.chunks_written, report.embeddings_computed) == (N, N, 0)
    with ws.read() as db:
        models = set(
            db.scalars(sa.select(ContextChunk.embedding_model).where(ContextChunk.index_id == idx.id))
        )
    assert models == {"external"}
    row_of = {c.id: int(c.source_uri[1:]) for c in rag.list_chunks(idx, ws=ws)}
    assert len(row_of) == N  # one chunk per row
    assert_same_top10(ws, idx, matrix, row_of, calls)
    # filters apply to vector searches too
    query = matrix[0] + 0.01
    only_a = rag.search_chunks(idx, query, k=5, metadata={"team": "a"}, exact=True, ws=ws)
    assert only_a and all(h.metadata == {"team": "a"} for h in only_a)
    # the same frame again changes nothing; a changed vector rewrites its row only
    assert rag.ingest(idx, frame=frame, **options).unchanged == N
    frame.at[5, "vec"] = -matrix[5]
    again = rag.ingest(idx, frame=frame, **options)
    assert (again.updated, again.unchanged) == (1, N - 1)
    top = rag.search_chunks(idx, -matrix[5], k=1, exact=True, ws=ws)
    assert top[0].uri == "r005" and top[0].score == pytest.approx(1.0, abs=1e-5)


def test_dimensions_and_values_are_checked_before_anything_is_written(ws: Workspace, user: User) -> None:
    idx = rag.create_index(user, "dims", embedding_dimensions=DIMS, ws=ws)
    doc = rag.create_context_document(idx, "a", ws=ws)
    chunks_before = count_rows(ws, ContextChunk)
    bad: list[tuple[Any, str]] = [
        ([0.5] * (DIMS + 1), "33"),
        (np.ones((2, DIMS)), "1-D"),
        ([0.0] * DIMS, "zeros"),
        ([float("nan")] + [1.0] * (DIMS - 1), "finite"),
        ([1e39] + [1.0] * (DIMS - 1), "finite"),
        ("0.5" * DIMS, "list of numbers"),
        ([True] * DIMS, "number"),
    ]
    for value, words in bad:
        with pytest.raises(InvalidInputError, match=words) as err:
            rag.create_context_chunk(doc, "x", embedding=value, ws=ws)
        assert err.value.field == "embedding"
    with pytest.raises(InvalidInputError) as err:
        rag.search_chunks(idx, [1.0] * (DIMS - 1), ws=ws)
    assert err.value.field == "vector"
    assert count_rows(ws, ContextChunk) == chunks_before
    # a DataFrame's wrong-sized vector is refused before the index even moves to updating
    frame = pd.DataFrame({"text": ["a", "b"], "vec": [[1.0] * DIMS, [1.0] * (DIMS - 2)]})
    with pytest.raises(InvalidInputError, match="row 1") as err:
        rag.ingest(idx, frame=frame, embedding_column="vec", progress=False, ws=ws)
    assert err.value.field == "embedding_column"
    with pytest.raises(InvalidInputError) as err:
        rag.ingest(idx, texts=["a"], embedding_column="vec", progress=False, ws=ws)
    assert err.value.field == "embedding_column"
    assert rag.get_index(idx, ws=ws).status.value == "creating"
    assert count_rows(ws, ContextChunk) == chunks_before
    with pytest.raises(InvalidInputError) as err:
        rag.create_context_document(idx, "b", content_hash="not-a-digest", ws=ws)
    assert err.value.field == "content_hash"


def test_rerunning_updates_and_replaces_instead_of_duplicating(ws: Workspace, user: User) -> None:
    idx = rag.create_index(user, "rerun", embedding_dimensions=DIMS, ws=ws)
    m = vectors(seed=3, n=4)
    doc = rag.create_context_document(idx, "notes/a.md", source_type="file", metadata={"team": "x"}, ws=ws)
    again = rag.create_context_document(idx, "notes/a.md", source_type="file", metadata={"team": "x"}, ws=ws)
    assert again.id == doc.id and count_rows(ws, ContextDocument) == 1
    first = rag.create_context_chunk(doc, "refunds take five days", embedding=m[0], ws=ws)
    rag.create_context_chunk(doc, "second line\nthird line", embedding=m[1], language="markdown", ws=ws)
    # the same position again replaces the chunk (its full-text entry too)
    replaced = rag.create_context_chunk(doc, "refunds take ten days", embedding=m[2], chunk_index=0, ws=ws)
    assert replaced.id != first.id and len(rag.list_chunks(idx, ws=ws)) == 2
    text_hits = rag.search(idx, "refunds", mode="text", k=5, ws=ws)
    assert [h.content for h in text_hits] == ["refunds take ten days"]
    hit = rag.search_chunks(idx, m[1], k=1, ws=ws)[0]
    assert (hit.citation, hit.language, hit.metadata) == ("notes/a.md:1-2", "markdown", {"team": "x"})
    # without an embedding, the index's own embedder computes it
    own = rag.create_context_chunk(doc, "computed here", ws=ws)
    assert own.embedding_model == "hashing-v1" and own.token_count > 0
    row = rag.get_index(idx, ws=ws)
    stats = rag.get_index_stats(idx, ws=ws)
    assert row.chunk_count == stats["chunk_count"] == 3 and row.total_tokens == stats["total_tokens"]
    # a new version of the document drops the chunks of the old one, in the same transaction
    rag.create_context_document(idx, "notes/a.md", content_hash="ab" * 32, ws=ws)
    assert rag.list_chunks(idx, ws=ws) == [] and rag.get_index(idx, ws=ws).chunk_count == 0
    assert rag.search(idx, "refunds", mode="text", ws=ws) == []
    # an archived index takes no more chunks
    rag.archive_index(idx, ws=ws)
    with pytest.raises(InvalidInputError) as err:
        rag.create_context_chunk(doc, "late", embedding=m[3], ws=ws)
    assert err.value.field == "index" and rag.list_chunks(idx, ws=ws) == []


def test_indexes_is_the_seeds_name_for_the_same_functions() -> None:
    import cmdc_nb
    import cmdc_nb.indexes
    from cmdc_nb import indexes

    assert cmdc_nb.indexes is indexes
    for name in indexes.__all__:
        assert getattr(indexes, name) is getattr(rag, name), name
    assert indexes.search_chunks is rag.search_chunks


async def test_the_seeds_portfolio_operations(ws: Workspace, user: User) -> None:
    idx = rag.create_index(user, "My Index", slug="my-index", embedding_dimensions=DIMS, ws=ws)
    script = Script(["Hello back."])
    p = rag.Portfolio(user, index="my-index", model=script.model, ws=ws)
    m = vectors(seed=5, n=3)
    first = p.store_embedding("my-index", "doc-1", m[0], {"source": "file.ex"}, content="refund policy")
    p.store_embedding("my-index", "doc-2", m[1].tolist(), {"source": "other.ex"})
    hits = p.search_vectors("my-index", m[0], 10)
    assert [h.uri for h in hits] == ["doc-1", "doc-2"] and hits[0].metadata == {"source": "file.ex"}
    # the same doc_id again replaces its vector, in place
    again = p.store_embedding("my-index", "doc-1", m[2], {"source": "file.ex"}, content="refund policy")
    assert again.id != first.id and count_rows(ws, ContextChunk) == 2 and count_rows(ws, ContextDocument) == 2
    assert p.search_vectors("my-index", m[2], 1)[0].score == pytest.approx(1.0, abs=1e-5)
    assert rag.get_index(idx, ws=ws).chunk_count == 2
    found = p.retrieve("refund", {"source": "file.ex"}, k=5, mode="text")
    assert [h.uri for h in found] == ["doc-1"]
    assert p.retrieve("refund", {"source": "other.ex"}, k=5, mode="text") == []
    vec = p.embed("text to embed")
    assert len(vec) == DIMS and vec == pytest.approx(
        rag.HashingEmbedder(DIMS).embed(["text to embed"]).vectors[0]
    )
    reply = await p.complete(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Hi"},
            {"role": "assistant", "content": "Hi."},
            {"role": "user", "content": "Hello"},
        ]
    )
    sent = script.requests[0]
    assert reply == "Hello back." and sent[0] == {"role": "system", "content": "Be brief."}
    assert [(x["role"], x["content"]) for x in sent[1:]] == [
        ("user", "Hi"),
        ("assistant", "Hi."),
        ("user", "Hello"),
    ]
    # with a session, the completion is recorded like any agent's call
    recorded = Script(["Noted."])
    session = sessions.create_session(user, name="portfolio", ws=ws)
    s = rag.Portfolio(user, model=recorded.model, session=session, ws=ws)
    assert await s.complete([{"role": "user", "content": "Log this"}]) == "Noted."
    assert count_rows(ws, AgentCall) == 1
    with pytest.raises(InvalidInputError) as err:
        p.store_embedding("my-index", "doc-3", [1.0] * (DIMS + 1))
    assert err.value.field == "embedding" and count_rows(ws, ContextDocument) == 2
    with pytest.raises(InvalidInputError) as err:
        rag.Portfolio(user, ws=ws).embed("x")
    assert err.value.field == "index"
    with pytest.raises(InvalidInputError) as err:
        await rag.Portfolio(user, ws=ws).complete([{"role": "user", "content": "x"}])
    assert err.value.field == "model"
