"""Ingestion that cannot lose documents.

Documents are keyed by URI and content hash. A run lists the source, skips the documents whose hash
(and chunking settings) did not change, chunks the rest, embeds only the chunk texts it has never
embedded for this index (identical text is embedded once: its vector is reused from any chunk that
has it), and writes each group of documents in one transaction: a changed document's old chunks are
deleted and its new ones inserted together with its row. A failure or a kill at any point therefore
leaves every document either at its previous version (still searchable) or at its new one, never
between; the next run picks up what is left. Documents no longer in the source are removed. The
index's counts move in the same transactions and are recomputed from the rows when the run completes.

>>> report = ingest(index)                                   # doctest: +SKIP
>>> report
<IngestReport added=2041 updated=0 unchanged=0 deleted=0 chunks=19822 in 41.2 s>
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch
from cmdc_nb._plumbing.workspace import Tx, Workspace, get_workspace
from cmdc_nb.errors import CmdcError, InvalidInputError
from cmdc_nb.rag.chunking import Chunk, chunk_text
from cmdc_nb.rag.embedders import Embedder, get_embedder
from cmdc_nb.rag.indexes import IndexRef, fingerprint, move, publish_index, record_embedding_cost, stats_in
from cmdc_nb.rag.sources import (
    DataFrameSource,
    SkippedDocument,
    Source,
    SourceDocument,
    TextsSource,
    source_from_config,
)
from cmdc_nb.store.enums import DocumentSourceType, IndexStatus
from cmdc_nb.store.models import ContextChunk, ContextDocument, Index
from cmdc_nb.store.values import utcnow

__all__ = ["IngestReport", "fts_rowid", "ingest"]

EXTERNAL = "external"  # the embedding_model of a vector that came with the document (see rag.vectors)
_DOCS_PER_WRITE = 64  # documents per transaction (each document is still all-or-nothing)
_IN_CHUNK = 500  # ids per IN (...) list


def fts_rowid(chunk_id: uuid.UUID) -> int:
    """The SQLite FTS5 rowid of a chunk: 63 bits of its id (stable, positive, collision-free in practice)."""
    return chunk_id.int >> 65


@dataclass
class IngestReport:
    index_id: uuid.UUID
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks_written: int = 0
    embeddings_computed: int = 0
    embeddings_reused: int = 0
    tokens_embedded: int = 0
    cost_usd: Decimal = Decimal(0)
    duration_s: float = 0.0

    def __repr__(self) -> str:
        return (
            f"<IngestReport added={self.added} updated={self.updated} unchanged={self.unchanged} "
            f"deleted={self.deleted} chunks={self.chunks_written} in {self.duration_s:.1f} s>"
        )

    def as_dict(self) -> dict[str, Any]:
        return {
            "index_id": str(self.index_id),
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "skipped": len(self.skipped),
            "failed": len(self.failed),
            "chunks_written": self.chunks_written,
            "embeddings_computed": self.embeddings_computed,
            "embeddings_reused": self.embeddings_reused,
            "tokens_embedded": self.tokens_embedded,
            "cost_usd": str(self.cost_usd),
            "duration_s": round(self.duration_s, 3),
        }


@dataclass
class _Pending:
    doc: SourceDocument
    chunks: list[Chunk]
    existed: bool


def _source(
    idx: Index,
    source: Source | None,
    texts: Iterable[str | Mapping[str, Any]] | None,
    frame: Any,
    frame_options: Mapping[str, Any],
) -> Source:
    given = [x is not None for x in (source, texts, frame)]
    if sum(given) > 1:
        raise InvalidInputError("give one of source=, texts= or frame=", field="source")
    if source is not None:
        return source
    if texts is not None:
        return TextsSource(texts)
    if frame is not None:
        return DataFrameSource(frame, **frame_options)
    return source_from_config(idx.source_type.value, idx.source_config)


@checked
def ingest(
    index: IndexRef,
    *,
    source: Source | None = None,
    texts: Iterable[str | Mapping[str, Any]] | None = None,
    frame: Any = None,
    text_column: str = "text",
    id_column: str | None = None,
    title_column: str | None = None,
    metadata_columns: Sequence[str] = (),
    embedding_column: str | None = None,
    delete_missing: bool | None = None,
    embedder: Embedder | None = None,
    progress: bool = True,
    on_progress: Callable[[int, int | None, IngestReport], None] | None = None,
    ws: Workspace | None = None,
) -> IngestReport:
    """Bring the index up to date with its source (its folder, or the `texts` / `frame` given).

    `delete_missing` (default: whether the source lists everything, true for all built-in sources)
    removes documents the source no longer has. Shows a progress bar (tqdm; a widget in notebooks);
    `on_progress(done, total, report)` is called after each written group of documents (and at the end).
    With `frame=` and `embedding_column=`, each row's vector (computed elsewhere, of the index's
    `embedding_dimensions`) is stored as the row's one chunk instead of chunking and embedding it."""
    if frame is not None:
        v.dataframe(frame, "frame")
    w = get_workspace(ws)
    started = time.monotonic()
    iid = v.id_of(index, "index")
    with w.read() as db:
        current = fetch(db, Index, iid, "index")
    # The source and the embedder are made before the index is marked as updating, so an argument
    # either refuses leaves the index as it was.
    src = _source(
        current,
        source,
        texts,
        frame,
        {
            "text_column": text_column,
            "id_column": id_column,
            "title_column": title_column,
            "metadata_columns": metadata_columns,
            "embedding_column": embedding_column,
        },
    )
    if embedding_column is not None and frame is None:
        raise InvalidInputError(
            "an embedding column belongs to a DataFrame: give frame=", field="embedding_column"
        )
    _check_dimensions(src, current.embedding_dimensions)
    emb = embedder or get_embedder(
        current.embedding_provider, current.embedding_model, current.embedding_dimensions
    )
    idx = _begin(w, iid)
    report = IngestReport(idx.id)
    try:
        seen = _run(w, idx, src, emb, report, progress, on_progress)
        if delete_missing if delete_missing is not None else src.complete:
            _delete_missing(w, idx, seen, report)
    except BaseException as exc:
        report.duration_s = time.monotonic() - started
        _fail(w, idx.id, exc)
        raise
    report.duration_s = time.monotonic() - started
    _complete(w, idx.id, report)
    return report


def _check_dimensions(src: Source, dims: int) -> None:
    """Vectors that came with the source (a DataFrame's embedding column) fit the index, checked before
    anything is written."""
    for i, doc in enumerate(getattr(src, "items", ())):
        vec = getattr(doc, "embedding", None)
        if vec is not None and vec.size != dims:
            raise InvalidInputError(
                f"row {i}: the index holds {dims}-dimensional vectors, this one has {vec.size}",
                field="embedding_column",
            )


def _whole(text: str) -> Chunk:
    """A document that brought its own vector, as its one chunk (at least one token: the column's rule)."""
    from cmdc_nb.rag.chunking import default_tokenizer

    lines = text.count("\n") + 1
    return Chunk(text, 0, 0, len(text), 1, lines, max(1, default_tokenizer().count(text)))


def _begin(w: Workspace, iid: uuid.UUID) -> Index:
    with w.transaction() as tx:
        idx = fetch(tx.db, Index, iid, "index", lock=True)
        move(tx, idx, IndexStatus.UPDATING)
        idx.indexing_started_at = utcnow()
        idx.last_error = None
        tx.db.flush()
        publish_index(tx, idx, "indexing_started")
        return idx


def _fail(w: Workspace, iid: uuid.UUID, exc: BaseException) -> None:
    msg = str(exc) if isinstance(exc, CmdcError) else f"{type(exc).__name__}: {exc}"
    try:
        with w.transaction() as tx:
            idx = fetch(tx.db, Index, iid, "index", lock=True)
            if idx.status is IndexStatus.UPDATING:
                move(tx, idx, IndexStatus.FAILED)
                idx.last_error = msg[:2000]
                _recount(tx, idx)
                tx.db.flush()
                publish_index(tx, idx, "indexing_failed", error=msg[:500])
    except Exception:  # the database itself may be what failed; the next run repairs the status
        pass


def _complete(w: Workspace, iid: uuid.UUID, report: IngestReport) -> None:
    with w.transaction() as tx:
        idx = fetch(tx.db, Index, iid, "index", lock=True)
        move(tx, idx, IndexStatus.READY)
        now = utcnow()
        idx.last_indexed_at = now
        idx.indexing_duration_ms = int(report.duration_s * 1000)
        idx.embedding_cost_usd = idx.embedding_cost_usd + report.cost_usd
        _recount(tx, idx)
        if w.backend == "postgresql" and idx.chunk_count:
            from cmdc_nb.store.vector import ensure_hnsw_index

            ensure_hnsw_index(tx.db, idx.id, idx.embedding_dimensions)
        tx.db.flush()
        publish_index(tx, idx, "indexing_completed", report=report.as_dict())


def _recount(tx: Tx, idx: Index) -> None:
    stats = stats_in(tx.db, idx.id)
    idx.document_count = stats["document_count"]
    idx.chunk_count = stats["chunk_count"]
    idx.total_tokens = stats["total_tokens"]


def _existing(w: Workspace, iid: uuid.UUID) -> dict[str, tuple[str, str | None]]:
    with w.read() as db:
        rows = db.execute(
            sa.select(ContextDocument.uri, ContextDocument.content_hash, ContextDocument.meta).where(
                ContextDocument.index_id == iid
            )
        ).all()
    return {uri: (h, (meta or {}).get("fingerprint")) for uri, h, meta in rows}


def _run(
    w: Workspace,
    idx: Index,
    src: Source,
    emb: Embedder,
    report: IngestReport,
    progress: bool,
    on_progress: Callable[[int, int | None, IngestReport], None] | None = None,
) -> set[str]:
    """Write what changed; returns every URI the source listed."""
    from tqdm.auto import tqdm

    existing = _existing(w, idx.id)
    fp = fingerprint(idx)
    strategy = idx.chunk_strategy.value
    max_tokens = int(idx.chunk_config.get("max_tokens", 512))
    overlap = int(idx.chunk_config.get("overlap_tokens", 50))
    seen: set[str] = set()
    pending: list[_Pending] = []
    pending_chunks = 0
    total = src.count()
    bar = tqdm(total=total, desc=f"indexing {idx.slug}", unit="doc", disable=not progress, leave=True)
    done = 0

    def tell() -> None:
        if on_progress is not None:
            on_progress(done, total, report)

    try:
        for item in src.documents():
            bar.update(1)
            done += 1
            seen.add(item.uri)
            if isinstance(item, SkippedDocument):
                report.skipped.append((item.uri, item.reason))
                continue
            old = existing.get(item.uri)
            if old is not None and old == (item.content_hash, fp):
                report.unchanged += 1
                continue
            try:
                chunks = (
                    [_whole(item.text)]
                    if item.embedding is not None
                    else chunk_text(
                        item.text,
                        strategy=strategy,
                        max_tokens=max_tokens,
                        overlap_tokens=overlap,
                        language=item.language,
                    )
                )
            except Exception as exc:  # a pathological document must not stop the run
                report.failed.append((item.uri, f"{type(exc).__name__}: {exc}"[:500]))
                continue
            pending.append(_Pending(item, chunks, old is not None))
            pending_chunks += len(chunks)
            if len(pending) >= _DOCS_PER_WRITE or pending_chunks >= emb.batch_size * 4:
                _flush(w, idx, emb, pending, report, fp)
                bar.set_postfix(chunks=report.chunks_written, refresh=False)
                pending, pending_chunks = [], 0
                tell()
        if pending:
            _flush(w, idx, emb, pending, report, fp)
        tell()
    finally:
        bar.close()
    return seen


def _reusable(w: Workspace, iid: uuid.UUID, model: str, hashes: Sequence[str]) -> dict[str, Any]:
    """Vectors already computed by this index's model for these chunk texts (by content hash)."""
    import numpy as np

    found: dict[str, Any] = {}
    with w.read() as db:
        for i in range(0, len(hashes), _IN_CHUNK):
            part = hashes[i : i + _IN_CHUNK]
            rows = db.execute(
                sa.select(ContextChunk.content_hash, ContextChunk.embedding).where(
                    ContextChunk.index_id == iid,
                    ContextChunk.content_hash.in_(part),
                    ContextChunk.embedding_model == model,
                    ContextChunk.embedding.is_not(None),
                )
            ).all()
            for h, vec in rows:
                found.setdefault(h, np.asarray(vec, dtype=np.float32))
    return found


def _flush(
    w: Workspace, idx: Index, emb: Embedder, pending: list[_Pending], report: IngestReport, fp: str
) -> None:
    import hashlib

    import numpy as np

    hashes = {c.text: hashlib.sha256(c.text.encode("utf-8")).hexdigest() for p in pending for c in p.chunks}
    # Documents that brought their own vector need none from the embedder (nor a reused one).
    need = [c.text for p in pending if p.doc.embedding is None for c in p.chunks]
    vectors = _reusable(w, idx.id, emb.model, sorted({hashes[t] for t in need})) if need else {}
    todo = [t for t in dict.fromkeys(need) if hashes[t] not in vectors]
    report.embeddings_reused += len(need) - len(todo)
    tokens = 0
    for i in range(0, len(todo), emb.batch_size):
        batch = todo[i : i + emb.batch_size]
        out = emb.embed(batch)
        for text, vec in zip(batch, out.vectors, strict=True):
            vectors[hashes[text]] = np.asarray(vec, dtype=np.float32)
        tokens += out.tokens
    report.embeddings_computed += len(todo)
    report.tokens_embedded += tokens
    report.cost_usd += record_embedding_cost(w, idx, emb, tokens, texts=len(todo))
    _write(w, idx, emb, pending, vectors, hashes, report, fp)


def _write(
    w: Workspace,
    idx: Index,
    emb: Embedder,
    pending: list[_Pending],
    vectors: Mapping[str, Any],
    hashes: Mapping[str, str],
    report: IngestReport,
    fp: str,
) -> None:
    sqlite = w.backend == "sqlite"
    now = utcnow()
    with w.transaction() as tx:
        index_row = fetch(tx.db, Index, idx.id, "index", lock=True)
        uris = [p.doc.uri for p in pending]
        docs = {
            d.uri: d
            for d in tx.db.scalars(
                sa.select(ContextDocument).where(
                    ContextDocument.index_id == idx.id, ContextDocument.uri.in_(uris)
                )
            )
        }
        if docs:
            _drop_chunks(tx, [d.id for d in docs.values()], sqlite)
        chunk_rows: list[dict[str, Any]] = []
        fts_rows: list[dict[str, Any]] = []
        new_docs = 0
        for p in pending:
            doc = docs.get(p.doc.uri)
            if doc is None:
                doc = ContextDocument(id=uuid.uuid4(), index_id=idx.id, uri=p.doc.uri, meta={})
                tx.db.add(doc)
                new_docs += 1
                report.added += 1
            else:
                report.updated += 1
            _fill_document(doc, p, fp, now)
            own = p.doc.embedding is not None
            for c in p.chunks:
                vec = p.doc.embedding if own else vectors[hashes[c.text]]
                row = _chunk_row(idx, doc, p.doc, c, hashes[c.text], vec, EXTERNAL if own else emb.model, now)
                chunk_rows.append(row)
                if sqlite:
                    fts_rows.append(
                        {"r": fts_rowid(row["id"]), "c": c.text, "id": row["id"].hex, "i": idx.id.hex}
                    )
        tx.db.flush()
        if chunk_rows:
            tx.db.execute(sa.insert(ContextChunk), chunk_rows)
        if fts_rows:
            tx.db.execute(
                sa.text(
                    "INSERT INTO chunks_fts (rowid, content, chunk_id, index_id) VALUES (:r, :c, :id, :i)"
                ),
                fts_rows,
            )
        report.chunks_written += len(chunk_rows)
        index_row.document_count = index_row.document_count + new_docs
        index_row.updated_at = now  # the search cache's staleness stamp
        tx.db.flush()
        publish_index(tx, index_row, "index_progress", documents=len(pending), chunks=len(chunk_rows))


def _fill_document(doc: ContextDocument, p: _Pending, fp: str, now: Any) -> None:
    """A document row as this version of the source describes it (fingerprint: how it was chunked)."""
    d = p.doc
    doc.title = d.title
    doc.source_type = DocumentSourceType(d.source_type)
    doc.content_hash = d.content_hash
    doc.size_bytes = d.size_bytes
    doc.mime_type = d.mime_type
    doc.language = d.language
    doc.encoding = d.encoding
    doc.chunked_at = now
    doc.chunk_count = len(p.chunks)
    doc.total_tokens = sum(c.tokens for c in p.chunks)
    doc.processing_error = None
    doc.meta = {"fingerprint": fp, **({"metadata": dict(d.metadata)} if d.metadata else {})}


def _chunk_row(
    idx: Index, doc: ContextDocument, d: Any, c: Any, content_hash: str, vector: Any, model: str, now: Any
) -> dict[str, Any]:
    """One chunk's row, for a bulk insert."""
    return {
        "id": uuid.uuid4(),
        "index_id": idx.id,
        "document_id": doc.id,
        "source_uri": d.uri,
        "source_type": DocumentSourceType(d.source_type),
        "source_metadata": dict(d.metadata) or None,
        "content": c.text,
        "content_hash": content_hash,
        "chunk_index": c.index,
        "start_offset": c.start,
        "end_offset": c.end,
        "start_line": c.start_line,
        "end_line": c.end_line,
        "token_count": c.tokens,
        "embedding": vector,
        "embedding_model": model,
        "embedded_at": now,
        "language": d.language,
        "code_context": c.context,
        "inserted_at": now,
        "updated_at": now,
    }


def _drop_chunks(tx: Tx, doc_ids: Sequence[uuid.UUID], sqlite: bool) -> None:
    for i in range(0, len(doc_ids), _IN_CHUNK):
        part = list(doc_ids[i : i + _IN_CHUNK])
        if sqlite:
            ids = list(tx.db.scalars(sa.select(ContextChunk.id).where(ContextChunk.document_id.in_(part))))
            for j in range(0, len(ids), _IN_CHUNK):
                rowids = ",".join(str(fts_rowid(c)) for c in ids[j : j + _IN_CHUNK])
                tx.db.execute(sa.text(f"DELETE FROM chunks_fts WHERE rowid IN ({rowids})"))
        tx.db.execute(sa.delete(ContextChunk).where(ContextChunk.document_id.in_(part)))


def _delete_missing(w: Workspace, idx: Index, seen: set[str], report: IngestReport) -> None:
    gone = [uri for uri in _existing(w, idx.id) if uri not in seen]
    sqlite = w.backend == "sqlite"
    for i in range(0, len(gone), _IN_CHUNK):
        part = gone[i : i + _IN_CHUNK]
        with w.transaction() as tx:
            fetch(tx.db, Index, idx.id, "index", lock=True)
            ids = list(
                tx.db.scalars(
                    sa.select(ContextDocument.id).where(
                        ContextDocument.index_id == idx.id, ContextDocument.uri.in_(part)
                    )
                )
            )
            _drop_chunks(tx, ids, sqlite)
            tx.db.execute(sa.delete(ContextDocument).where(ContextDocument.id.in_(ids)))
            tx.db.execute(sa.update(Index).where(Index.id == idx.id).values(updated_at=utcnow()))
        report.deleted += len(ids)
