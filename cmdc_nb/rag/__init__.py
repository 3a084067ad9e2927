"""RAG indexes: transactional, incremental ingestion and hybrid search, on SQLite and PostgreSQL.

>>> from cmdc_nb import rag
>>> idx = rag.create_index(user, "stdlib", source_type="local_repo",                  # doctest: +SKIP
...                        source_config={"path": "Lib", "include": ["*.py"]}, chunk_strategy="code_aware")
>>> rag.ingest(idx)                                                                  # doctest: +SKIP
<IngestReport added=1843 updated=0 unchanged=0 deleted=0 chunks=21544 in 52.0 s>
>>> rag.search(idx, "parse a JSON document", k=5, language="python")                 # doctest: +SKIP

Layers: `chunking`, `sources`, `embedders` (no database) below `indexes` (rows), `ingest` and `search`;
`vectors` (your own vectors: `create_context_document`, `create_context_chunk(…, embedding=…)`,
`search_chunks(index, vector)`), `tools` (the agents' retrieve tool) and `evaluate` (recall@k) on top.
`portfolio` is the seed's Portfolio operations over all that. `cmdc_nb.indexes` is the same index
functions under the seed's name. See docs/rag.md.
"""

from __future__ import annotations

from cmdc_nb.rag.chunking import Chunk, chunk_text
from cmdc_nb.rag.embedders import (
    Embedded,
    Embedder,
    HashingEmbedder,
    LiteLLMEmbedder,
    LocalEmbedder,
    get_embedder,
    register_embedder,
)
from cmdc_nb.rag.evaluate import EvalReport, recall_at_k
from cmdc_nb.rag.indexes import (
    archive_index,
    create_index,
    delete_index,
    get_document,
    get_index,
    get_index_by_slug,
    get_index_stats,
    list_chunks,
    list_documents,
    list_indexes,
    update_index,
)
from cmdc_nb.rag.ingest import IngestReport, ingest
from cmdc_nb.rag.portfolio import Portfolio
from cmdc_nb.rag.search import SearchHit, hits_frame, search, search_frame
from cmdc_nb.rag.sources import DataFrameSource, FolderSource, Source, SourceDocument, TextsSource
from cmdc_nb.rag.tools import retrieve_tool
from cmdc_nb.rag.vectors import create_context_chunk, create_context_document, search_chunks

__all__ = [
    "Chunk",
    "DataFrameSource",
    "Embedded",
    "Embedder",
    "EvalReport",
    "FolderSource",
    "HashingEmbedder",
    "IngestReport",
    "LiteLLMEmbedder",
    "LocalEmbedder",
    "Portfolio",
    "SearchHit",
    "Source",
    "SourceDocument",
    "TextsSource",
    "archive_index",
    "chunk_text",
    "create_context_chunk",
    "create_context_document",
    "create_index",
    "delete_index",
    "get_document",
    "get_embedder",
    "get_index",
    "get_index_by_slug",
    "get_index_stats",
    "hits_frame",
    "ingest",
    "list_chunks",
    "list_documents",
    "list_indexes",
    "recall_at_k",
    "register_embedder",
    "retrieve_tool",
    "search",
    "search_chunks",
    "search_frame",
    "update_index",
]
