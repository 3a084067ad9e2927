"""RAG indexes as stored rows: create, read, list, update, archive, delete; documents and chunks; stats.

An index records where its documents come from (`source_type`, `source_config`), how they are cut
(`chunk_strategy`, `chunk_config`) and embedded (`embedding_provider`, `embedding_model`,
`embedding_dimensions`). Its status moves creating → updating → ready | failed (and back to updating
on the next ingestion); archived is final. Counts are kept by the ingestion, in the transactions that
change documents, and recomputed exactly when an ingestion completes.
"""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import UNSET, Unset, check_transition, fetch, free_slug
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.rag.chunking import STRATEGIES
from cmdc_nb.services.sessions import slugify
from cmdc_nb.store.enums import ActivityAction, ChunkStrategy, IndexSourceType, IndexStatus
from cmdc_nb.store.models import ContextChunk, ContextDocument, Index, User

__all__ = [
    "INDEX_TRANSITIONS",
    "IndexStats",
    "archive_index",
    "create_index",
    "delete_index",
    "get_document",
    "get_index",
    "get_index_by_slug",
    "get_index_stats",
    "list_chunks",
    "list_documents",
    "list_indexes",
    "update_index",
]

IndexRef = Index | uuid.UUID | str
CHUNKER_VERSION = 1
KNOWN_DIMENSIONS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
    "embed-english-v3.0": 1024,
    "embed-multilingual-v3.0": 1024,
    "text-embedding-004": 768,
    "all-MiniLM-L6-v2": 384,
    "hashing-v1": 256,
}
INDEX_TRANSITIONS = {
    IndexStatus.CREATING: frozenset({IndexStatus.UPDATING, IndexStatus.ARCHIVED}),
    IndexStatus.UPDATING: frozenset(
        {IndexStatus.UPDATING, IndexStatus.READY, IndexStatus.FAILED, IndexStatus.ARCHIVED}
    ),
    IndexStatus.READY: frozenset({IndexStatus.UPDATING, IndexStatus.ARCHIVED}),
    IndexStatus.FAILED: frozenset({IndexStatus.UPDATING, IndexStatus.ARCHIVED}),
    IndexStatus.ARCHIVED: frozenset(),
}


def index_payload(idx: Index) -> dict[str, Any]:
    return {
        "index_id": str(idx.id),
        "user_id": str(idx.user_id),
        "name": idx.name,
        "slug": idx.slug,
        "status": idx.status.value,
        "document_count": idx.document_count,
        "chunk_count": idx.chunk_count,
    }


def publish_index(tx: Tx, idx: Index, type: str, **extra: Any) -> None:
    payload = {**index_payload(idx), **extra}
    tx.publish(topics.index(idx.id), type, payload)
    tx.publish(topics.user_indexes(idx.user_id), type, payload)


def fingerprint(idx: Index) -> str:
    """What a document's chunks depend on besides its text; a change re-chunks every document."""
    basis = {
        "v": CHUNKER_VERSION,
        "strategy": idx.chunk_strategy.value,
        "chunk": {k: idx.chunk_config.get(k) for k in ("max_tokens", "overlap_tokens", "tokenizer")},
        "embedding": [idx.embedding_provider, idx.embedding_model, idx.embedding_dimensions],
    }
    return hashlib.sha256(json.dumps(basis, sort_keys=True).encode()).hexdigest()[:16]


def _chunk_config(max_tokens: Any, overlap_tokens: Any) -> dict[str, Any]:
    v.count(max_tokens, "max_tokens", minimum=16)
    if max_tokens > 8192:
        raise InvalidInputError("must be at most 8192", field="max_tokens")
    v.count(overlap_tokens, "overlap_tokens")
    if overlap_tokens >= max_tokens // 2:
        raise InvalidInputError(
            f"must be under half of max_tokens ({max_tokens // 2})", field="overlap_tokens"
        )
    return {"max_tokens": max_tokens, "overlap_tokens": overlap_tokens, "tokenizer": "cl100k_base"}


def _source_config(source_type: IndexSourceType, config: Mapping[str, Any] | None) -> dict[str, Any]:
    cfg = dict(config or {})
    if source_type in (IndexSourceType.LOCAL_REPO, IndexSourceType.FILES):
        path = cfg.get("path") or cfg.get("root")
        if not path or not Path(str(path)).expanduser().is_dir():
            raise InvalidInputError(
                f"source_config.path must be an existing folder, got {path!r}", field="source_config"
            )
        cfg["path"] = str(Path(str(path)).expanduser().resolve())
        cfg.pop("root", None)
        for key in ("include", "exclude"):
            pats = cfg.get(key, [])
            if isinstance(pats, str) or not all(isinstance(p, str) for p in pats):
                raise InvalidInputError("must be a list of glob patterns", field=f"source_config.{key}")
            cfg[key] = list(pats)
    return cfg


@checked
def create_index(
    user: User | uuid.UUID | str,
    name: str,
    *,
    source_type: IndexSourceType | str = IndexSourceType.TEXTS,
    source_config: Mapping[str, Any] | None = None,
    chunk_strategy: ChunkStrategy | str = ChunkStrategy.RECURSIVE,
    max_tokens: int = 512,
    overlap_tokens: int = 50,
    embedding_provider: str = "hashing",
    embedding_model: str | None = None,
    embedding_dimensions: int | None = None,
    slug: str | None = None,
    description: str | None = None,
    tags: Sequence[str] = (),
    ws: Workspace | None = None,
) -> Index:
    """A new, empty index (status `creating`). Fill it with `cmdc_nb.rag.ingest`.

    >>> create_index(user, "stdlib", source_type="local_repo", source_config={"path": "Lib",
    ...     "include": ["*.py"]}, chunk_strategy="code_aware", embedding_provider="openai",
    ...     embedding_model="text-embedding-3-small")                           # doctest: +SKIP
    """
    uid = v.id_of(user, "user")
    name = v.text(name, "name", max_len=200)
    stype = v.choice(IndexSourceType, source_type, "source_type")
    strategy = v.choice(ChunkStrategy, chunk_strategy, "chunk_strategy")
    if strategy.value not in STRATEGIES:
        raise InvalidInputError(
            f"{strategy.value!r} chunking is not offered; use one of: {', '.join(STRATEGIES)}",
            field="chunk_strategy",
        )
    provider = v.text(embedding_provider, "embedding_provider", max_len=64)
    model = embedding_model or {"hashing": "hashing-v1", "local": "all-MiniLM-L6-v2"}.get(provider)
    if not model:
        raise InvalidInputError(f"name the {provider} embedding model", field="embedding_model")
    dims = embedding_dimensions or KNOWN_DIMENSIONS.get(model.rsplit("/", 1)[-1])
    if dims is None:
        raise InvalidInputError(f"give embedding_dimensions for {model!r}", field="embedding_dimensions")
    v.count(dims, "embedding_dimensions", minimum=1)
    with get_workspace(ws).transaction() as tx:
        if tx.db.get(User, uid) is None:
            raise NotFoundError("user", uid)
        idx = Index(
            id=uuid.uuid4(),
            user_id=uid,
            name=name,
            slug=v.text(slug, "slug", max_len=100) if slug else free_slug(tx.db, Index, uid, slugify(name)),
            description=description,
            status=IndexStatus.CREATING,
            source_type=stype,
            source_config=_source_config(stype, source_config),
            chunk_strategy=strategy,
            chunk_config=_chunk_config(max_tokens, overlap_tokens),
            embedding_provider=provider,
            embedding_model=model,
            embedding_dimensions=dims,
            tags=list(tags),
            meta={},
        )
        tx.db.add(idx)
        tx.db.flush()
        log_activity(
            tx,
            ActivityAction.INDEX_CREATE,
            resource_type="index",
            resource_id=idx.id,
            user_id=uid,
            details={"name": name, "source_type": stype.value, "embedding_model": model},
        )
        publish_index(tx, idx, "index_created")
    return idx


@checked
def get_index(index: IndexRef, *, ws: Workspace | None = None) -> Index:
    with get_workspace(ws).read() as db:
        return fetch(db, Index, index, "index")


@checked
def get_index_by_slug(user: User | uuid.UUID | str, slug: str, *, ws: Workspace | None = None) -> Index:
    user = access.scope_user(get_workspace(ws), user)
    uid = v.id_of(user, "user")
    with get_workspace(ws).read() as db:
        idx = db.scalar(sa.select(Index).where(Index.user_id == uid, Index.slug == slug))
        if idx is None:
            raise NotFoundError("index", slug)
        return idx


def resolve_index(index: IndexRef | Any, *, user: Any = None, ws: Workspace | None = None) -> Index:
    """An Index row, its id, or (with `user`) its slug."""
    if isinstance(index, Index):
        return get_index(index.id, ws=ws)
    try:
        return get_index(index, ws=ws)
    except InvalidInputError:
        if user is None or not isinstance(index, str):
            raise
        return get_index_by_slug(user, index, ws=ws)


@checked
def list_indexes(
    user: User | uuid.UUID | str,
    *,
    status: IndexStatus | str | None = None,
    source_type: IndexSourceType | str | None = None,
    limit: int = 100,
    ws: Workspace | None = None,
) -> list[Index]:
    user = access.scope_user(get_workspace(ws), user)
    uid = v.id_of(user, "user")
    v.count(limit, "limit", minimum=1)
    stmt = sa.select(Index).where(Index.user_id == uid)
    if status is not None:
        stmt = stmt.where(Index.status == v.choice(IndexStatus, status, "status"))
    if source_type is not None:
        stmt = stmt.where(Index.source_type == v.choice(IndexSourceType, source_type, "source_type"))
    with get_workspace(ws).read() as db:
        return list(db.scalars(stmt.order_by(Index.updated_at.desc(), Index.id.desc()).limit(limit)))


@checked
def update_index(
    index: IndexRef,
    *,
    name: str | Unset = UNSET,
    description: str | Unset | None = UNSET,
    source_config: Mapping[str, Any] | Unset = UNSET,
    chunk_strategy: ChunkStrategy | str | Unset = UNSET,
    max_tokens: int | Unset = UNSET,
    overlap_tokens: int | Unset = UNSET,
    tags: Sequence[str] | Unset = UNSET,
    ws: Workspace | None = None,
) -> Index:
    """Change an index's settings. A new chunking takes effect at the next ingestion, which re-chunks
    every document (the embedding settings are fixed: make a new index to change the model)."""
    with get_workspace(ws).transaction() as tx:
        idx = fetch(tx.db, Index, index, "index", lock=True)
        if idx.status is IndexStatus.ARCHIVED:
            raise InvalidInputError("the index is archived", field="index")
        changed: list[str] = []
        if not isinstance(name, Unset):
            idx.name = v.text(name, "name", max_len=200)
            changed.append("name")
        if not isinstance(description, Unset):
            idx.description = description
            changed.append("description")
        if not isinstance(source_config, Unset):
            idx.source_config = _source_config(idx.source_type, source_config)
            changed.append("source_config")
        if not isinstance(chunk_strategy, Unset):
            strategy = v.choice(ChunkStrategy, chunk_strategy, "chunk_strategy")
            if strategy.value not in STRATEGIES:
                raise InvalidInputError(f"{strategy.value!r} chunking is not offered", field="chunk_strategy")
            idx.chunk_strategy = strategy
            changed.append("chunk_strategy")
        if not isinstance(max_tokens, Unset) or not isinstance(overlap_tokens, Unset):
            idx.chunk_config = _chunk_config(
                idx.chunk_config["max_tokens"] if isinstance(max_tokens, Unset) else max_tokens,
                idx.chunk_config["overlap_tokens"] if isinstance(overlap_tokens, Unset) else overlap_tokens,
            )
            changed.append("chunk_config")
        if not isinstance(tags, Unset):
            idx.tags = list(tags)
            changed.append("tags")
        tx.db.flush()
        log_activity(
            tx,
            ActivityAction.INDEX_UPDATE,
            resource_type="index",
            resource_id=idx.id,
            user_id=idx.user_id,
            details={"changed": changed},
        )
        publish_index(tx, idx, "index_updated", changed=changed)
    return idx


def move(tx: Tx, idx: Index, target: IndexStatus) -> None:
    check_transition("index", INDEX_TRANSITIONS, idx.status, target)
    idx.status = target


@checked
def archive_index(index: IndexRef, *, ws: Workspace | None = None) -> Index:
    """Archived indexes keep their chunks and stay searchable, but are never ingested into again."""
    with get_workspace(ws).transaction() as tx:
        idx = fetch(tx.db, Index, index, "index", lock=True)
        move(tx, idx, IndexStatus.ARCHIVED)
        tx.db.flush()
        publish_index(tx, idx, "index_archived")
    return idx


@checked
def delete_index(index: IndexRef, *, ws: Workspace | None = None) -> None:
    """Delete the index, its documents and chunks (and its search structures), in one transaction."""
    w = get_workspace(ws)
    with w.transaction() as tx:
        idx = fetch(tx.db, Index, index, "index", lock=True)
        if w.backend == "sqlite":
            tx.db.execute(sa.text("DELETE FROM chunks_fts WHERE index_id = :i"), {"i": idx.id.hex})
        else:
            from cmdc_nb.store.vector import hnsw_index_name

            tx.db.execute(sa.text(f"DROP INDEX IF EXISTS {hnsw_index_name(idx.id)}"))
        log_activity(
            tx,
            ActivityAction.INDEX_DELETE,
            resource_type="index",
            resource_id=idx.id,
            user_id=idx.user_id,
            details={"name": idx.name, "documents": idx.document_count},
        )
        publish_index(tx, idx, "index_deleted")
        tx.db.delete(idx)


def record_embedding_cost(ws: Workspace, idx: Index, embedder: Any, tokens: int, **details: Any) -> Decimal:
    """Price `tokens` embedded for `idx` (the workspace's price table, else litellm's) and record the
    cost like any call's (service `embedding`). Local kinds (hashing, the MiniLM model) cost nothing."""
    from cmdc_nb.services import costs, pricing

    if not tokens or embedder.provider != "litellm":
        return Decimal(0)
    price = pricing.get_price(embedder.model, ws=ws)
    cost = price.cost(tokens_in=tokens) if price is not None else None
    costs.record_cost(
        idx.user_id,
        source_type="embedding",
        source_id=idx.id,
        provider=embedder.model.split("/", 1)[0],
        model=embedder.model,
        service="embedding",
        tokens_in=tokens,
        cost_usd=cost,
        metadata={"index": idx.slug, **details},
        ws=ws,
    )
    return cost or Decimal(0)


@checked
def list_documents(
    index: IndexRef, *, language: str | None = None, limit: int = 1000, ws: Workspace | None = None
) -> list[ContextDocument]:
    """The index's documents by URI."""
    iid = v.id_of(index, "index")
    stmt = sa.select(ContextDocument).where(ContextDocument.index_id == iid)
    if language is not None:
        stmt = stmt.where(ContextDocument.language == language)
    with get_workspace(ws).read() as db:
        return list(db.scalars(stmt.order_by(ContextDocument.uri).limit(limit)))


@checked
def get_document(index: IndexRef, uri: str, *, ws: Workspace | None = None) -> ContextDocument:
    iid = v.id_of(index, "index")
    with get_workspace(ws).read() as db:
        doc = db.scalar(
            sa.select(ContextDocument).where(ContextDocument.index_id == iid, ContextDocument.uri == uri)
        )
        if doc is None:
            raise NotFoundError("document", uri)
        return doc


@checked
def list_chunks(
    index: IndexRef, *, uri: str | None = None, limit: int = 1000, ws: Workspace | None = None
) -> list[ContextChunk]:
    """Chunks of the index (of one document with `uri`), in document order."""
    iid = v.id_of(index, "index")
    stmt = sa.select(ContextChunk).where(ContextChunk.index_id == iid)
    if uri is not None:
        stmt = stmt.where(ContextChunk.source_uri == uri)
    with get_workspace(ws).read() as db:
        return list(db.scalars(stmt.order_by(ContextChunk.source_uri, ContextChunk.chunk_index).limit(limit)))


class IndexStats(dict[str, Any]):
    """Counts read from the rows themselves (not the denormalised counters)."""


def stats_in(db: Any, iid: uuid.UUID) -> IndexStats:
    docs = db.scalar(sa.select(sa.func.count()).where(ContextDocument.index_id == iid))
    chunks, embedded, tokens = db.execute(
        sa.select(
            sa.func.count(),
            sa.func.count(ContextChunk.embedding),
            sa.func.coalesce(sa.func.sum(ContextChunk.token_count), 0),
        ).where(ContextChunk.index_id == iid)
    ).one()
    return IndexStats(
        document_count=int(docs),
        chunk_count=int(chunks),
        embedded_count=int(embedded),
        total_tokens=int(tokens),
        embedding_coverage=round(100.0 * embedded / chunks, 2) if chunks else 0.0,
    )


@checked
def get_index_stats(index: IndexRef, *, ws: Workspace | None = None) -> IndexStats:
    """Documents, chunks, embedded chunks, tokens and embedding coverage (%), counted from the rows,
    plus the index's embedding cost and last ingestion."""
    w = get_workspace(ws)
    with w.read() as db:
        idx = fetch(db, Index, index, "index")
        out = stats_in(db, idx.id)
        out.update(
            status=idx.status.value,
            embedding_cost_usd=idx.embedding_cost_usd,
            last_indexed_at=idx.last_indexed_at,
            indexing_duration_ms=idx.indexing_duration_ms,
            last_error=idx.last_error,
        )
        return out
