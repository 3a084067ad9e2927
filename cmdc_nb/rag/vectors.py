"""Bring your own vectors: documents and chunks stored with embeddings computed elsewhere, and search by a
vector (the seed's `create_context_document`, `create_context_chunk(…, embedding=…)`, `search_chunks`).

>>> doc = create_context_document(index, "notes/a.md", title="A")                  # doctest: +SKIP
>>> create_context_chunk(doc, "Refunds are issued within 5 days.", embedding=vec)  # doctest: +SKIP
>>> search_chunks(index, query_vec, k=10)                                          # doctest: +SKIP

Every vector is held to the index's `embedding_dimensions` (an `InvalidInputError` naming the field)
and stored like an ingested chunk's: float32 bytes on SQLite, pgvector on PostgreSQL, where the index's
partial HNSW index (cosine) is created with its first chunk. Each call is one transaction that also
moves the document's and the index's counters, so searches see the new chunk at once.

A chunk stored with its own vector is labelled `embedding_model="external"` unless told otherwise:
ingestion reuses a stored vector for identical text only when it came from the index's own model,
so an outside vector never stands in for one the index would compute.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.rag.chunking import default_tokenizer
from cmdc_nb.rag.embedders import get_embedder
from cmdc_nb.rag.indexes import IndexRef, publish_index, record_embedding_cost, resolve_index
from cmdc_nb.rag.ingest import EXTERNAL as EXTERNAL_MODEL
from cmdc_nb.rag.ingest import fts_rowid
from cmdc_nb.rag.search import SearchHit, ranked_hits, search_filters
from cmdc_nb.store.enums import DocumentSourceType, IndexStatus
from cmdc_nb.store.models import ContextChunk, ContextDocument, Index
from cmdc_nb.store.values import utcnow

__all__ = ["EXTERNAL_MODEL", "as_vector", "create_context_chunk", "create_context_document", "search_chunks"]

# A vector is a list or tuple of numbers or a 1-D numpy array; @checked cannot say "an array" without
# importing numpy, so the hint is Any and `as_vector` does the checking.
VectorLike = Any


def as_vector(value: VectorLike, dims: int, field: str) -> Any:
    """`value` as a float32 numpy vector of `dims` finite numbers, or an InvalidInputError naming `field`."""
    import numpy as np

    is_array = type(value).__name__ == "ndarray"
    if not is_array and not isinstance(value, list | tuple):
        raise InvalidInputError(
            f"expected a list of numbers or a 1-D numpy array, got {type(value).__name__}", field=field
        )
    if not is_array and not all(isinstance(x, int | float) and not isinstance(x, bool) for x in value):
        raise InvalidInputError("every element must be a number", field=field)
    try:
        vec = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError, OverflowError):
        raise InvalidInputError("every element must be a number", field=field) from None
    if vec.ndim != 1:
        raise InvalidInputError(f"expected a 1-D vector, got shape {vec.shape}", field=field)
    if vec.size != dims:
        raise InvalidInputError(
            f"the index holds {dims}-dimensional vectors, this one has {vec.size}", field=field
        )
    # float64 first, so a number too large for float32 is refused rather than stored as infinity
    if not np.all(np.isfinite(vec)) or np.any(np.abs(vec) > np.finfo(np.float32).max):
        raise InvalidInputError("every element must be a finite float32 number", field=field)
    out = vec.astype(np.float32)
    if not np.any(out):  # no direction: its cosine with anything is undefined (NaN in pgvector)
        raise InvalidInputError("a vector of zeros has no direction to compare", field=field)
    return out


def _hex_hash(value: str | None, field: str) -> str | None:
    if value is None:
        return None
    out = v.text(value, field, max_len=64).lower()
    if len(out) != 64 or any(c not in "0123456789abcdef" for c in out):
        raise InvalidInputError("must be a sha256 digest: 64 hexadecimal characters", field=field)
    return out


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _writable(tx: Tx, index: Any) -> Index:
    idx = fetch(tx.db, Index, index, "index", lock=True)
    if idx.status is IndexStatus.ARCHIVED:
        raise InvalidInputError("the index is archived", field="index")
    return idx


def _drop_fts(tx: Tx, chunk_ids: Sequence[uuid.UUID]) -> None:
    if chunk_ids:
        rowids = ",".join(str(fts_rowid(c)) for c in chunk_ids)
        tx.db.execute(sa.text(f"DELETE FROM chunks_fts WHERE rowid IN ({rowids})"))


@checked
def create_context_document(
    index: IndexRef,
    uri: str,
    *,
    title: str | None = None,
    source_type: DocumentSourceType | str = DocumentSourceType.API,
    content_hash: str | None = None,
    language: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    ws: Workspace | None = None,
) -> ContextDocument:
    """A document of `index` at `uri`, to hold chunks added with `create_context_chunk`.

    Run again with the same URI it updates that document (a cell can be re-run); when `content_hash`
    (a sha256 hex digest; default: the URI's) changes, the old chunks go in the same transaction, as
    they describe the old version. `metadata` becomes the chunks' filterable metadata. A later
    `ingest` from a source that lacks this URI removes it (`delete_missing=False` keeps it)."""
    uri = v.text(uri, "uri", max_len=2000, strip=False)
    title = v.text(title, "title", max_len=500) if title is not None else None
    stype = v.choice(DocumentSourceType, source_type, "source_type")
    digest = _hex_hash(content_hash, "content_hash") or _sha256(uri)
    lang = v.text(language, "language", max_len=32) if language is not None else None
    meta = v.mapping(metadata, "metadata")
    w = get_workspace(ws)
    with w.transaction() as tx:
        idx = _writable(tx, index)
        doc = upsert_document(
            tx, idx, uri, title=title, source_type=stype, content_hash=digest, language=lang, metadata=meta
        )
        tx.db.flush()
        publish_index(tx, idx, "index_progress", documents=1, chunks=0)
    return doc


def upsert_document(
    tx: Tx,
    idx: Index,
    uri: str,
    *,
    title: str | None,
    source_type: DocumentSourceType,
    content_hash: str,
    language: str | None,
    metadata: Mapping[str, Any],
) -> ContextDocument:
    """The document at `uri`, created or updated in `tx` (checked arguments); a new `content_hash`
    drops the old version's chunks, new `metadata` reaches the chunks that stay."""
    doc = tx.db.scalar(
        sa.select(ContextDocument).where(ContextDocument.index_id == idx.id, ContextDocument.uri == uri)
    )
    if doc is None:
        doc = ContextDocument(id=uuid.uuid4(), index_id=idx.id, uri=uri, chunk_count=0, total_tokens=0)
        tx.db.add(doc)
        idx.document_count = idx.document_count + 1
    elif doc.content_hash != content_hash:
        _drop_document_chunks(tx, idx, doc, tx.db.get_bind().dialect.name == "sqlite")
    elif dict((doc.meta or {}).get("metadata") or {}) != dict(metadata):
        tx.db.execute(
            sa.update(ContextChunk)
            .where(ContextChunk.document_id == doc.id)
            .values(source_metadata=dict(metadata) or None)
        )
    doc.title, doc.source_type, doc.content_hash, doc.language = title, source_type, content_hash, language
    doc.meta = {"metadata": dict(metadata)} if metadata else {}
    doc.chunked_at = utcnow()
    idx.updated_at = utcnow()  # the search cache's staleness stamp
    return doc


def _drop_document_chunks(tx: Tx, idx: Index, doc: ContextDocument, sqlite: bool) -> None:
    old = tx.db.execute(
        sa.select(ContextChunk.id, ContextChunk.token_count).where(ContextChunk.document_id == doc.id)
    ).all()
    if sqlite:
        _drop_fts(tx, [cid for cid, _ in old])
    tx.db.execute(sa.delete(ContextChunk).where(ContextChunk.document_id == doc.id))
    idx.chunk_count = max(0, idx.chunk_count - len(old))
    idx.total_tokens = max(0, idx.total_tokens - sum(t for _, t in old))
    doc.chunk_count, doc.total_tokens = 0, 0


@checked
def create_context_chunk(
    document: ContextDocument | uuid.UUID | str,
    content: str,
    *,
    embedding: VectorLike = None,
    chunk_index: int | None = None,
    token_count: int | None = None,
    language: str | None = None,
    embedding_model: str | None = None,
    ws: Workspace | None = None,
) -> ContextChunk:
    """A chunk of `document` holding `content` and its `embedding` (a list of floats or a 1-D numpy
    array of the index's `embedding_dimensions`, computed wherever you like).

    Without `embedding` the index's own embedder computes it (and its cost is recorded). `chunk_index`
    defaults to the next free position; a chunk already at that position is replaced. `token_count`
    defaults to the text's tiktoken count (cl100k_base, at least 1). `embedding_model` labels where the
    vector came from (default `"external"`, or the index's model when it computed the vector)."""
    if not isinstance(content, str) or (problem := v.text_problem(content)) is not None:
        raise InvalidInputError(problem if isinstance(content, str) else "expected text", field="content")
    if chunk_index is not None:
        v.count(chunk_index, "chunk_index", maximum=2**31 - 1)
    tokens = (
        v.count(token_count, "token_count", minimum=1, maximum=2**31 - 1)
        if token_count is not None
        else max(1, default_tokenizer().count(content))
    )
    lang = v.text(language, "language", max_len=32) if language is not None else None
    model = v.text(embedding_model, "embedding_model", max_len=200) if embedding_model is not None else None
    w = get_workspace(ws)
    with w.read() as db:
        doc = fetch(db, ContextDocument, document, "document")
        idx = fetch(db, Index, doc.index_id, "index")
    if embedding is not None:
        vec = as_vector(embedding, idx.embedding_dimensions, "embedding")
    else:
        vec, model = _embed_one(w, idx, content), model or idx.embedding_model
    with w.transaction() as tx:
        idx = _writable(tx, idx.id)
        doc = fetch(tx.db, ContextDocument, doc.id, "document", lock=True)
        row = _insert_chunk(tx, idx, doc, content, vec, chunk_index, tokens, lang, model or EXTERNAL_MODEL)
        if w.backend == "postgresql":
            _ensure_hnsw(tx, idx)
        tx.db.flush()
        publish_index(tx, idx, "index_progress", documents=0, chunks=1)
    return row


def store_vector(
    index: Index,
    uri: str,
    embedding: VectorLike,
    metadata: Mapping[str, Any] | None,
    *,
    content: str,
    ws: Workspace | None,
) -> ContextChunk:
    """A document at `uri` holding one chunk with `embedding`, in one transaction (the seed's
    Portfolio `store_embedding`); storing the same URI again replaces its vector, content and metadata."""
    uri = v.text(uri, "doc_id", max_len=2000, strip=False)
    if not isinstance(content, str) or (problem := v.text_problem(content)) is not None:
        raise InvalidInputError(problem if isinstance(content, str) else "expected text", field="content")
    meta = v.mapping(metadata, "metadata")
    vec = as_vector(embedding, index.embedding_dimensions, "embedding")
    digest = hashlib.sha256(content.encode("utf-8") + b"\0" + vec.astype("<f4").tobytes()).hexdigest()
    tokens = max(1, default_tokenizer().count(content))
    w = get_workspace(ws)
    with w.transaction() as tx:
        idx = _writable(tx, index.id)
        doc = upsert_document(
            tx,
            idx,
            uri,
            title=None,
            source_type=DocumentSourceType.API,
            content_hash=digest,
            language=None,
            metadata=meta,
        )
        tx.db.flush()
        row = _insert_chunk(tx, idx, doc, content, vec, 0, tokens, None, EXTERNAL_MODEL)
        if w.backend == "postgresql":
            _ensure_hnsw(tx, idx)
        tx.db.flush()
        publish_index(tx, idx, "index_progress", documents=1, chunks=1)
    return row


def _embed_one(w: Workspace, idx: Index, content: str) -> Any:
    import numpy as np

    emb = get_embedder(idx.embedding_provider, idx.embedding_model, idx.embedding_dimensions)
    out = emb.embed([content])
    record_embedding_cost(w, idx, emb, out.tokens, texts=1)
    return np.asarray(out.vectors[0], dtype=np.float32)


def _insert_chunk(
    tx: Tx,
    idx: Index,
    doc: ContextDocument,
    content: str,
    vec: Any,
    chunk_index: int | None,
    tokens: int,
    language: str | None,
    model: str,
) -> ContextChunk:
    """Insert (or replace at `chunk_index`) one chunk, its full-text row on SQLite, and the counts."""
    sqlite = tx.db.get_bind().dialect.name == "sqlite"
    if chunk_index is None:
        last = tx.db.scalar(
            sa.select(sa.func.max(ContextChunk.chunk_index)).where(ContextChunk.document_id == doc.id)
        )
        chunk_index = 0 if last is None else int(last) + 1
    old = tx.db.execute(
        sa.select(ContextChunk.id, ContextChunk.token_count).where(
            ContextChunk.document_id == doc.id, ContextChunk.chunk_index == chunk_index
        )
    ).first()
    if old is not None:
        if sqlite:
            _drop_fts(tx, [old.id])
        tx.db.execute(sa.delete(ContextChunk).where(ContextChunk.id == old.id))
    now = utcnow()
    lines = content.count("\n") + 1
    row = ContextChunk(
        id=uuid.uuid4(),
        index_id=idx.id,
        document_id=doc.id,
        source_uri=doc.uri,
        source_type=doc.source_type,
        source_metadata=dict((doc.meta or {}).get("metadata") or {}) or None,
        content=content,
        content_hash=_sha256(content),
        chunk_index=chunk_index,
        start_line=1 if doc.source_type is DocumentSourceType.FILE else None,
        end_line=lines if doc.source_type is DocumentSourceType.FILE else None,
        token_count=tokens,
        embedding=vec,
        embedding_model=model,
        embedded_at=now,
        language=language or doc.language,
    )
    tx.db.add(row)
    tx.db.flush()
    if sqlite:
        tx.db.execute(
            sa.text("INSERT INTO chunks_fts (rowid, content, chunk_id, index_id) VALUES (:r, :c, :id, :i)"),
            {"r": fts_rowid(row.id), "c": content, "id": row.id.hex, "i": idx.id.hex},
        )
    gone, gone_tokens = (1, old.token_count) if old is not None else (0, 0)
    doc.chunk_count = doc.chunk_count + 1 - gone
    doc.total_tokens = doc.total_tokens + tokens - gone_tokens
    idx.chunk_count = idx.chunk_count + 1 - gone
    idx.total_tokens = idx.total_tokens + tokens - gone_tokens
    idx.updated_at = now  # the search cache's staleness stamp
    return row


def _ensure_hnsw(tx: Tx, idx: Index) -> None:
    """The index's HNSW index, created with its first chunk. Looked up first: CREATE INDEX IF NOT EXISTS
    would take a lock on the whole table on every insert."""
    from cmdc_nb.store.vector import ensure_hnsw_index, hnsw_index_name

    if tx.db.scalar(sa.text("SELECT to_regclass(:n)"), {"n": hnsw_index_name(idx.id)}) is None:
        ensure_hnsw_index(tx.db, idx.id, idx.embedding_dimensions)


@checked
def search_chunks(
    index: IndexRef,
    vector: VectorLike,
    *,
    k: int = 10,
    language: str | Sequence[str] | None = None,
    path: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    exact: bool | None = None,
    ef_search: int | None = None,
    dedupe: bool = False,
    user: Any = None,
    ws: Workspace | None = None,
) -> list[SearchHit]:
    """The k chunks nearest to `vector` (cosine), best first: `search(mode="vector")` for a query
    vector computed elsewhere. The vector must have the index's `embedding_dimensions`.

    PostgreSQL goes through the index's HNSW index (`exact=True`, and SQLite always, compute it
    exactly with numpy); the filters are `search`'s. Unlike `search`, every chunk is its own hit
    (`dedupe=True` folds chunks of identical text into the best-ranked one)."""
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise InvalidInputError(f"must be an integer from 1 to 1000, got {k!r}", field="k")
    if ef_search is not None:
        v.count(ef_search, "ef_search", minimum=1, maximum=1000)
    f = search_filters(language, path, metadata)
    w = get_workspace(ws)
    idx = resolve_index(index, user=user, ws=w)
    qvec = as_vector(vector, idx.embedding_dimensions, "vector")
    return ranked_hits(
        w,
        idx,
        qvec=qvec,
        query=None,
        mode="vector",
        k=k,
        f=f,
        exact=exact,
        ef_search=ef_search,
        dedupe=dedupe,
    )
