"""The seed's `Command.Indexes`, by its name: the index functions of `cmdc_nb.rag`, the same objects.

>>> from cmdc_nb import indexes
>>> idx = indexes.create_index(user, "my-codebase", embedding_dimensions=1536)     # doctest: +SKIP
>>> doc = indexes.create_context_document(idx, "lib/my_app/core.ex", title="Core")  # doctest: +SKIP
>>> indexes.create_context_chunk(doc, "defmodule MyApp.Core do…", embedding=vec)    # doctest: +SKIP
>>> indexes.search_chunks(idx, query_vec, k=10)                                    # doctest: +SKIP

Nothing is defined here: `indexes.search_chunks is rag.search_chunks`, so a patch, a registry or a
docstring is the one in `cmdc_nb.rag`. Chunking, embedders, sources and evaluation stay in `cmdc_nb.rag`.
"""

from __future__ import annotations

from cmdc_nb.rag import (
    archive_index,
    create_context_chunk,
    create_context_document,
    create_index,
    delete_index,
    get_document,
    get_index,
    get_index_by_slug,
    get_index_stats,
    ingest,
    list_chunks,
    list_documents,
    list_indexes,
    search,
    search_chunks,
    update_index,
)

__all__ = [
    "archive_index",
    "create_context_chunk",
    "create_context_document",
    "create_index",
    "delete_index",
    "get_document",
    "get_index",
    "get_index_by_slug",
    "get_index_stats",
    "ingest",
    "list_chunks",
    "list_documents",
    "list_indexes",
    "search",
    "search_chunks",
    "update_index",
]
