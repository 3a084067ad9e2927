"""Search an index: by meaning (vectors), by words (full text), or both fused (hybrid, the default).

- **Vector**: on PostgreSQL through the index's HNSW index (`hnsw.ef_search` set from k, iterative scans
  so filtered queries still return k rows); exactly (`exact=True`, and always on SQLite) with numpy over
  the index's vectors, held in memory between queries and re-read only when the index changed — one
  matrix-vector product per query, whichever database holds the vectors.
- **Full text**: `to_tsvector` / `ts_rank_cd` on PostgreSQL, FTS5 / BM25 on SQLite; any word may match,
  the more the better.
- **Hybrid**: reciprocal-rank fusion (`1 / (60 + rank)` summed over both lists).
- **Filters**: `language` (one or several), `path` (a glob over the URI: `*` matches across folders, as
  in `fnmatch`), `metadata` (equality on keys of the document's metadata).

Exact search is the same arithmetic on both backends (float32 vectors, one product), ordered by
similarity rounded to 6 decimals, then URI and chunk number: the same data gives the same chunks in
the same order on SQLite and PostgreSQL.
"""

from __future__ import annotations

import fnmatch
import json
import re
import threading
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import sqlalchemy as sa

from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.rag.embedders import Embedder, get_embedder
from cmdc_nb.rag.indexes import record_embedding_cost, resolve_index
from cmdc_nb.store.models import ContextChunk, Index

__all__ = ["RRF_K", "SearchHit", "hits_frame", "search", "search_frame"]

Mode = Literal["hybrid", "vector", "text"]
RRF_K = 60
_WORD = re.compile(r"\w+", re.UNICODE)
# Words too common to rank by (PostgreSQL's english configuration drops these itself; FTS5 does not).
_STOPWORDS = frozenset(
    [
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "but",
        "by",
        "for",
        "from",
        "has",
        "have",
        "how",
        "i",
        "in",
        "into",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "then",
        "there",
        "these",
        "this",
        "to",
        "was",
        "we",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "why",
        "will",
        "with",
        "you",
        "your",
    ]
)


@dataclass(frozen=True)
class SearchHit:
    """One ranked chunk. `score` is the fused score in hybrid mode, else the vector (cosine) or text
    score; `vector_score` and `text_score` say how each list ranked it."""

    chunk_id: uuid.UUID
    uri: str
    content: str
    score: float
    rank: int
    chunk_index: int
    start_line: int | None = None
    end_line: int | None = None
    language: str | None = None
    vector_score: float | None = None
    text_score: float | None = None
    metadata: Mapping[str, Any] | None = None
    code_context: Mapping[str, Any] | None = None
    document_id: uuid.UUID | None = None
    also_in: tuple[str, ...] = field(default=())

    @property
    def citation(self) -> str:
        """`path:12-40` (or the URI alone when lines do not apply)."""
        if self.start_line is None:
            return self.uri
        end = f"-{self.end_line}" if self.end_line and self.end_line != self.start_line else ""
        return f"{self.uri}:{self.start_line}{end}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "score": round(self.score, 6),
            "citation": self.citation,
            "uri": self.uri,
            "chunk_index": self.chunk_index,
            "start_line": self.start_line,
            "end_line": self.end_line,
            "language": self.language,
            "vector_score": self.vector_score,
            "text_score": self.text_score,
            "content": self.content,
            "metadata": dict(self.metadata or {}),
            "chunk_id": str(self.chunk_id),
            "also_in": list(self.also_in),
        }


@dataclass
class SearchFilters:
    languages: tuple[str, ...] = ()
    path: str | None = None
    metadata: Mapping[str, Any] | None = None

    def __bool__(self) -> bool:
        return bool(self.languages or self.path or self.metadata)

    def matches(self, uri: str, language: str | None, meta: Mapping[str, Any] | None) -> bool:
        if self.languages and language not in self.languages:
            return False
        if self.path and not fnmatch.fnmatchcase(uri, self.path):
            return False
        if self.metadata:
            have = meta or {}
            return all(have.get(k) == x for k, x in self.metadata.items())
        return True


def search_filters(
    language: str | Sequence[str] | None, path: str | None, metadata: Mapping[str, Any] | None
) -> SearchFilters:
    langs: tuple[str, ...] = ()
    if language is not None:
        langs = (language,) if isinstance(language, str) else tuple(language)
        if not all(isinstance(x, str) for x in langs):
            raise InvalidInputError("give a language or a list of languages", field="language")
    if path is not None and (not isinstance(path, str) or not path):
        raise InvalidInputError("give a glob pattern such as 'src/**/*.py'", field="path")
    if metadata is not None and not isinstance(metadata, Mapping):
        raise InvalidInputError("give a mapping of metadata keys to values", field="metadata")
    return SearchFilters(langs, path, dict(metadata) if metadata else None)


def _glob_regex(pattern: str) -> str:
    """fnmatch semantics as a POSIX regular expression (PostgreSQL `~`)."""
    out, i = ["^"], 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "*":
            out.append(".*")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            j = pattern.find("]", i + 1)
            if j == -1:
                out.append(r"\[")
            else:
                body = pattern[i + 1 : j].replace("\\", "\\\\")
                out.append("[" + ("^" + body[1:] if body.startswith("!") else body) + "]")
                i = j
        else:
            out.append(re.escape(ch))
        i += 1
    return "".join(out) + "$"


# -- the SQLite vector cache ------------------------------------------------------------------------
@dataclass
class _Matrix:
    stamp: tuple[Any, ...]
    rows: Any  # float32, unit rows
    uris: list[str]
    chunk_index: Any  # int array
    languages: list[str | None]
    metas: list[Any]
    ids: list[uuid.UUID]
    order_key: Any  # rank of (uri, chunk_index) for tie-breaking


_cache: dict[tuple[str, uuid.UUID], _Matrix] = {}
_cache_lock = threading.Lock()


def _matrix(db: Any, ws: Workspace, idx: Index) -> _Matrix | None:
    import numpy as np

    stamp = (idx.updated_at, idx.chunk_count, idx.document_count)
    key = (ws.url_display, idx.id)
    with _cache_lock:
        hit = _cache.get(key)
    if hit is not None and hit.stamp == stamp:
        return hit
    pg = ws.backend == "postgresql"
    vector_col = ContextChunk.embedding if pg else sa.type_coerce(ContextChunk.embedding, sa.LargeBinary())
    rows = db.execute(
        sa.select(
            ContextChunk.id,
            vector_col,
            ContextChunk.source_uri,
            ContextChunk.chunk_index,
            ContextChunk.language,
            ContextChunk.source_metadata,
        ).where(ContextChunk.index_id == idx.id, ContextChunk.embedding.is_not(None))
    ).all()
    if not rows:
        return None
    if pg:
        m = np.vstack([np.asarray(r[1], dtype=np.float32) for r in rows])
    else:
        dims = len(rows[0][1]) // 4
        m = (
            np.frombuffer(b"".join(r[1] for r in rows), dtype="<f4")
            .reshape(len(rows), dims)
            .astype(np.float32)
        )
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    m = m / norms
    uris = [r[2] for r in rows]
    cidx = np.array([r[3] for r in rows], dtype=np.int64)
    order = sorted(range(len(rows)), key=lambda i: (uris[i], int(cidx[i])))
    order_key = np.empty(len(rows), dtype=np.int64)
    order_key[order] = np.arange(len(rows))
    built = _Matrix(
        stamp, m, uris, cidx, [r[4] for r in rows], [r[5] for r in rows], [r[0] for r in rows], order_key
    )
    with _cache_lock:
        _cache[key] = built
    return built


def _numpy_vector(
    db: Any, ws: Workspace, idx: Index, qvec: Any, k: int, f: SearchFilters
) -> list[tuple[uuid.UUID, float]]:
    import numpy as np

    mat = _matrix(db, ws, idx)
    if mat is None:
        return []
    if mat.rows.shape[1] != qvec.size:
        raise InvalidInputError(
            f"the index holds {mat.rows.shape[1]}-dimensional vectors, the query has {qvec.size}",
            field="query",
        )
    q = qvec / (float(np.linalg.norm(qvec)) or 1.0)
    sims = mat.rows @ q
    candidates = np.arange(len(sims))
    if f:
        keep = [i for i in range(len(sims)) if f.matches(mat.uris[i], mat.languages[i], mat.metas[i])]
        candidates = np.asarray(keep, dtype=np.int64)
        if candidates.size == 0:
            return []
    sub = np.round(sims[candidates].astype(np.float64), 6)
    top = min(k, candidates.size)
    part = np.argpartition(-sub, top - 1)[:top] if top < candidates.size else np.arange(candidates.size)
    # Exact ties (the same text) are broken by URI and chunk number, as PostgreSQL does below.
    chosen = part[np.lexsort((mat.order_key[candidates[part]], -sub[part]))]
    return [(mat.ids[int(candidates[i])], float(sub[i])) for i in chosen]


# -- PostgreSQL -------------------------------------------------------------------------------------
def _pg_filters(f: SearchFilters, params: dict[str, Any], prefix: str = "") -> str:
    sql = ""
    if f.languages:
        sql += f" AND {prefix}language = ANY(:langs)"
        params["langs"] = list(f.languages)
    if f.path:
        sql += f" AND {prefix}source_uri ~ :path_re"
        params["path_re"] = _glob_regex(f.path)
    if f.metadata:
        sql += f" AND {prefix}source_metadata @> CAST(:meta AS jsonb)"
        params["meta"] = json.dumps(f.metadata)
    return sql


def _pg_hnsw(
    db: Any, idx: Index, qvec: Any, k: int, f: SearchFilters, *, ef_search: int | None
) -> list[tuple[uuid.UUID, float]]:
    from cmdc_nb.store.vector import hnsw_search

    params: dict[str, Any] = {}
    where = " AND embedding IS NOT NULL" + _pg_filters(f, params)
    # An explicit ef_search is used as given (never below k); by default max(4k, 64), which
    # bench/bench_retrieval.py measures against exact search.
    ef = ef_search or max(4 * k, 64)
    hits = hnsw_search(
        db, idx.id, idx.embedding_dimensions, qvec, k=k, ef_search=ef, where=where, params=params
    )
    return [(h.chunk_id, h.score) for h in hits]


def _text(
    db: Any, ws: Workspace, idx: Index, query: str, k: int, f: SearchFilters
) -> list[tuple[uuid.UUID, float]]:
    words = list(dict.fromkeys(w.lower() for w in _WORD.findall(query or "")))[:64]
    words = [w for w in words if w not in _STOPWORDS] or words
    if not words:
        return []
    if ws.backend == "postgresql":
        params: dict[str, Any] = {"q": " | ".join(f"'{w}'" for w in words), "iid": idx.id, "k": k}
        sql = (
            "SELECT c.id, ts_rank_cd(c.content_tsv, q) AS r "
            "FROM context_chunks c, to_tsquery('english', :q) q "
            "WHERE c.index_id = :iid AND c.content_tsv @@ q"
            + _pg_filters(f, params, "c.")
            + ' ORDER BY r DESC, c.source_uri COLLATE "C", c.chunk_index LIMIT :k'
        )
        return [(r[0], float(r[1])) for r in db.execute(sa.text(sql), params).all()]
    params = {"q": " OR ".join('"' + w.replace('"', '""') + '"' for w in words), "iid": idx.id.hex, "k": k}
    extra = ""
    if f.languages:
        marks = ", ".join(f":l{i}" for i in range(len(f.languages)))
        extra += f" AND c.language IN ({marks})"
        params.update({f"l{i}": x for i, x in enumerate(f.languages)})
    if f.path:
        extra += " AND c.source_uri GLOB :path"
        params["path"] = f.path
    for i, (key, value) in enumerate((f.metadata or {}).items()):
        extra += f" AND json_extract(c.source_metadata, :mk{i}) = :mv{i}"
        params[f"mk{i}"] = "$." + json.dumps(str(key))
        params[f"mv{i}"] = value if not isinstance(value, bool) else int(value)
    sql = (
        "SELECT c.id, -bm25(chunks_fts) AS r FROM chunks_fts JOIN context_chunks c ON c.id = chunks_fts.chunk_id "
        f"WHERE chunks_fts MATCH :q AND chunks_fts.index_id = :iid{extra} "
        "ORDER BY bm25(chunks_fts), c.source_uri, c.chunk_index LIMIT :k"
    )
    return [(uuid.UUID(str(r[0])), float(r[1])) for r in db.execute(sa.text(sql), params).all()]


def _embed_query(idx: Index, query: str, embedder: Embedder | None, ws: Workspace) -> Any:
    import numpy as np

    emb = embedder or get_embedder(idx.embedding_provider, idx.embedding_model, idx.embedding_dimensions)
    out = emb.embed([query])
    record_embedding_cost(ws, idx, emb, out.tokens, query=True)
    return np.asarray(out.vectors[0], dtype=np.float32)


@checked
def search(
    index: Index | uuid.UUID | str,
    query: str,
    *,
    k: int = 10,
    mode: Mode = "hybrid",
    language: str | Sequence[str] | None = None,
    path: str | None = None,
    metadata: Mapping[str, Any] | None = None,
    exact: bool | None = None,
    ef_search: int | None = None,
    dedupe: bool = True,
    embedder: Embedder | None = None,
    user: Any = None,
    ws: Workspace | None = None,
) -> list[SearchHit]:
    """The k best chunks for `query`, best first (see the module docstring for modes and filters).

    `index` is an Index, its id, or its slug (with `user`). With `dedupe`, a chunk whose exact text was
    already ranked higher is folded into that hit (`also_in` lists its other URIs)."""
    w = get_workspace(ws)
    if not isinstance(query, str) or not query.strip():
        raise InvalidInputError("a search needs some text", field="query")
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 1000:
        raise InvalidInputError(f"must be an integer from 1 to 1000, got {k!r}", field="k")
    if mode not in ("hybrid", "vector", "text"):
        raise InvalidInputError(f"{mode!r} is not one of: hybrid, vector, text", field="mode")
    f = search_filters(language, path, metadata)
    idx = resolve_index(index, user=user, ws=w)
    qvec = _embed_query(idx, query, embedder, w) if mode in ("hybrid", "vector") else None
    return ranked_hits(
        w, idx, qvec=qvec, query=query, mode=mode, k=k, f=f, exact=exact, ef_search=ef_search, dedupe=dedupe
    )


def ranked_hits(
    w: Workspace,
    idx: Index,
    *,
    qvec: Any,
    query: str | None,
    mode: Mode,
    k: int,
    f: SearchFilters,
    exact: bool | None,
    ef_search: int | None,
    dedupe: bool,
) -> list[SearchHit]:
    """The k best hits for a query vector (`qvec`) and/or text (`query`): `search` and
    `vectors.search_chunks` (a vector from elsewhere) share it, so both rank the same way."""
    fetch_k = k * 3 + 10 if (mode == "hybrid" or dedupe) else k
    vec_hits: list[tuple[uuid.UUID, float]] = []
    txt_hits: list[tuple[uuid.UUID, float]] = []
    with w.read() as db:
        if qvec is not None:
            if w.backend == "postgresql" and not exact and _has_hnsw(db, idx):
                vec_hits = _pg_hnsw(db, idx, qvec, fetch_k, f, ef_search=ef_search)
            else:
                vec_hits = _numpy_vector(db, w, idx, qvec, fetch_k, f)
        if mode in ("hybrid", "text") and query is not None:
            txt_hits = _text(db, w, idx, query, fetch_k, f)
        ranked = _fuse(vec_hits, txt_hits, mode)
        rows = _load(db, [cid for cid, *_ in ranked])
    return _hits(ranked, rows, k, dedupe)


def _hits(
    ranked: list[tuple[uuid.UUID, float, float | None, float | None]],
    rows: Mapping[uuid.UUID, Any],
    k: int,
    dedupe: bool,
) -> list[SearchHit]:
    hits: list[SearchHit] = []
    seen: dict[str, int] = {}
    for cid, score, vs, ts in ranked:
        row = rows.get(cid)
        if row is None:
            continue
        if dedupe and row.content_hash in seen:
            j = seen[row.content_hash]
            if row.source_uri != hits[j].uri and row.source_uri not in hits[j].also_in:
                hits[j] = _replace(hits[j], also_in=(*hits[j].also_in, row.source_uri))
            continue
        if len(hits) == k:
            continue
        seen[row.content_hash] = len(hits)
        hits.append(
            SearchHit(
                chunk_id=cid,
                uri=row.source_uri,
                content=row.content,
                score=score,
                rank=len(hits) + 1,
                chunk_index=row.chunk_index,
                start_line=row.start_line if row.source_type.value == "file" else None,
                end_line=row.end_line if row.source_type.value == "file" else None,
                language=row.language,
                vector_score=vs,
                text_score=ts,
                metadata=row.source_metadata,
                code_context=row.code_context,
                document_id=row.document_id,
            )
        )
    return hits


def _replace(hit: SearchHit, **changes: Any) -> SearchHit:
    from dataclasses import replace

    return replace(hit, **changes)


def _has_hnsw(db: Any, idx: Index) -> bool:
    from cmdc_nb.store.vector import hnsw_index_name

    return db.scalar(sa.text("SELECT to_regclass(:n)"), {"n": hnsw_index_name(idx.id)}) is not None


def _fuse(
    vec: list[tuple[uuid.UUID, float]], txt: list[tuple[uuid.UUID, float]], mode: Mode
) -> list[tuple[uuid.UUID, float, float | None, float | None]]:
    if mode == "vector":
        return [(cid, s, s, None) for cid, s in vec]
    if mode == "text":
        return [(cid, s, None, s) for cid, s in txt]
    vs = dict(vec)
    ts = dict(txt)
    fused: dict[uuid.UUID, float] = {}
    order: dict[uuid.UUID, int] = {}
    for ranking in (vec, txt):
        for rank, (cid, _) in enumerate(ranking, start=1):
            fused[cid] = fused.get(cid, 0.0) + 1.0 / (RRF_K + rank)
            order.setdefault(cid, len(order))
    ranked = sorted(fused, key=lambda c: (-round(fused[c], 12), order[c]))
    return [(cid, fused[cid], vs.get(cid), ts.get(cid)) for cid in ranked]


_HIT_COLUMNS = (
    ContextChunk.id,
    ContextChunk.document_id,
    ContextChunk.source_uri,
    ContextChunk.source_type,
    ContextChunk.source_metadata,
    ContextChunk.content,
    ContextChunk.content_hash,
    ContextChunk.chunk_index,
    ContextChunk.start_line,
    ContextChunk.end_line,
    ContextChunk.language,
    ContextChunk.code_context,
)


def _load(db: Any, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, Any]:
    """The columns a hit shows (not the embedding: decoding vectors nobody reads was most of the cost)."""
    out: dict[uuid.UUID, Any] = {}
    for i in range(0, len(ids), 500):
        for row in db.execute(sa.select(*_HIT_COLUMNS).where(ContextChunk.id.in_(list(ids[i : i + 500])))):
            out[row.id] = row
    return out


@checked
def hits_frame(hits: Sequence[SearchHit]) -> Any:
    """Hits as a DataFrame (rank, score, citation, scores per list, language, content)."""
    import pandas as pd

    cols = [
        "rank",
        "score",
        "citation",
        "vector_score",
        "text_score",
        "language",
        "uri",
        "chunk_index",
        "content",
    ]
    return pd.DataFrame([{c: h.as_dict()[c] for c in cols} for h in hits], columns=cols)


@checked
def search_frame(index: Index | uuid.UUID | str, query: str, **options: Any) -> Any:
    """`search(...)` as a DataFrame."""
    return hits_frame(search(index, query, **options))
