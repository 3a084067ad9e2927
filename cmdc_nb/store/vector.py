"""Vector search over `context_chunks.embedding`, one RAG index at a time.

- Exact search, on both backends: PostgreSQL orders by pgvector's cosine distance (`<=>`); SQLite reads the
  index's float32 blobs into one numpy matrix and takes the top k of a single matrix-vector product.
- Approximate search on PostgreSQL: one partial HNSW index per RAG index, over `embedding::vector(n)`
  (a `vector` column without a fixed dimension cannot carry an HNSW index itself; this is pgvector's
  documented way to index mixed dimensions). Queries must use the same cast and predicate to hit it.

Scores are cosine similarities (1 = same direction).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.models import ContextChunk

__all__ = [
    "VectorHit",
    "ensure_hnsw_index",
    "exact_search",
    "hnsw_index_name",
    "hnsw_params",
    "hnsw_search",
    "hnsw_sql",
]


@dataclass(frozen=True, slots=True)
class VectorHit:
    chunk_id: uuid.UUID
    score: float


def _as_vector(query: Sequence[float] | Any) -> Any:
    import numpy as np

    vec = np.asarray(query, dtype=np.float32).reshape(-1)
    if vec.size == 0 or not np.all(np.isfinite(vec)):
        raise InvalidInputError("the query vector must be non-empty and finite", field="query")
    return vec


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 10_000:
        raise InvalidInputError(f"k must be an integer from 1 to 10000, got {k!r}", field="k")


def exact_search(
    db: orm.Session, index_id: uuid.UUID, query: Sequence[float] | Any, *, k: int = 10
) -> list[VectorHit]:
    """The k chunks of `index_id` nearest to `query` by cosine similarity, best first, exactly."""
    _check_k(k)
    vec = _as_vector(query)
    if db.get_bind().dialect.name == "postgresql":
        distance = ContextChunk.embedding.op("<=>", return_type=sa.Float())(
            sa.bindparam("query_vector", vec.tolist(), type_=ContextChunk.embedding.type)
        )
        rows = db.execute(
            sa.select(ContextChunk.id, distance.label("d"))
            .where(ContextChunk.index_id == index_id, ContextChunk.embedding.is_not(None))
            .order_by(distance, ContextChunk.id)
            .limit(k)
        ).all()
        return [VectorHit(cid, 1.0 - float(d)) for cid, d in rows]
    return _numpy_search(db, index_id, vec, k)


def _numpy_search(db: orm.Session, index_id: uuid.UUID, vec: Any, k: int) -> list[VectorHit]:
    import numpy as np

    rows = db.execute(
        sa.select(ContextChunk.id, sa.type_coerce(ContextChunk.embedding, sa.LargeBinary())).where(
            ContextChunk.index_id == index_id, ContextChunk.embedding.is_not(None)
        )
    ).all()
    if not rows:
        return []
    dims = len(rows[0][1]) // 4
    if dims != vec.size:
        raise InvalidInputError(
            f"the index holds {dims}-dimensional vectors, the query has {vec.size}", field="query"
        )
    matrix = np.frombuffer(b"".join(blob for _, blob in rows), dtype="<f4").reshape(len(rows), dims)
    norms = np.linalg.norm(matrix, axis=1)
    norms[norms == 0] = 1.0
    qnorm = float(np.linalg.norm(vec)) or 1.0
    sims = (matrix @ vec) / (norms * qnorm)
    top = min(k, len(rows))
    idx = np.argpartition(-sims, top - 1)[:top]
    idx = idx[np.lexsort((np.array([rows[i][0].hex for i in idx]), -sims[idx]))]
    return [VectorHit(rows[i][0], float(sims[i])) for i in idx]


def hnsw_index_name(index_id: uuid.UUID) -> str:
    return f"ix_context_chunks_hnsw_{index_id.hex}"


def _literal_id(index_id: uuid.UUID) -> str:
    # Safe to inline: a UUID's text has no quotes. Inlined so the planner can match the partial index.
    return str(uuid.UUID(str(index_id)))


def ensure_hnsw_index(
    db: orm.Session, index_id: uuid.UUID, dims: int, *, m: int = 16, ef_construction: int = 64
) -> str:
    """Create (if missing) the HNSW index for one RAG index's vectors. PostgreSQL only."""
    if not isinstance(dims, int) or not 1 <= dims <= 16000:
        raise InvalidInputError("dimensions must be an integer from 1 to 16000", field="dims")
    name = hnsw_index_name(index_id)
    db.execute(
        sa.text(
            f"CREATE INDEX IF NOT EXISTS {name} ON context_chunks USING hnsw "
            f"((embedding::vector({dims})) vector_cosine_ops) WITH (m = {int(m)}, ef_construction = {int(ef_construction)}) "
            f"WHERE index_id = '{_literal_id(index_id)}'"
        )
    )
    return name


def hnsw_sql(index_id: uuid.UUID, dims: int, where: str = "") -> str:
    """The query that uses the index's HNSW index; `where` adds conditions (` AND …`, bound parameters
    only) — iterative scans keep a filtered query returning k rows."""
    return (
        f"SELECT id, (embedding::vector({dims})) <=> CAST(:q AS vector({dims})) AS d FROM context_chunks "
        f"WHERE index_id = '{_literal_id(index_id)}'{where} "
        f"ORDER BY (embedding::vector({dims})) <=> CAST(:q AS vector({dims})) LIMIT :k"
    )


def hnsw_params(index_id: uuid.UUID, query: Sequence[float] | Any, k: int) -> dict[str, Any]:
    vec = _as_vector(query)
    return {"q": "[" + ",".join(repr(float(x)) for x in vec) + "]", "k": k}


def hnsw_search(
    db: orm.Session,
    index_id: uuid.UUID,
    dims: int,
    query: Sequence[float] | Any,
    *,
    k: int = 10,
    ef_search: int | None = None,
    where: str = "",
    params: dict[str, Any] | None = None,
) -> list[VectorHit]:
    """Approximate nearest neighbours through the index's HNSW index (PostgreSQL only), optionally
    filtered by `where` (see `hnsw_sql`) with its `params`."""
    _check_k(k)
    # ef_search below k would cap the result count; iterative scans keep filtered queries complete.
    ef = min(max(int(ef_search or 40), k), 1000)
    db.execute(sa.text(f"SET LOCAL hnsw.ef_search = {ef}"))
    db.execute(sa.text("SET LOCAL hnsw.iterative_scan = relaxed_order"))
    bound = {**(params or {}), **hnsw_params(index_id, query, k)}
    rows = db.execute(sa.text(hnsw_sql(index_id, dims, where)), bound).all()
    return [VectorHit(row[0], 1.0 - float(row[1])) for row in rows]
