"""simonw/llm's collection search, run in its own environment: `python llm_similar.py matrix.npy queries.npy N`.

Loads the matrix into an llm collection (its own SQLite schema, its own float32 encoding; rows written
directly, since the vectors are given and no embedding model is to be called), then times
`Collection.similar_by_vector(vector, number=10)` for the first N queries. Prints one JSON line.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import llm
import numpy as np
import sqlite_utils


class BenchModel(llm.EmbeddingModel):
    model_id = "bench-384"

    def embed_batch(self, items):  # never called: the vectors are written directly
        raise NotImplementedError


def main() -> None:
    matrix = np.load(sys.argv[1])
    queries = np.load(sys.argv[2])
    n = int(sys.argv[3])
    db = sqlite_utils.Database(Path(tempfile.mkdtemp()) / "llm.db")
    t = time.perf_counter()
    collection = llm.Collection("bench", db, model=BenchModel())
    rows = (
        {"collection_id": collection.id, "id": f"chunk{i}", "embedding": llm.encode(matrix[i].tolist()),
         "content": f"chunk {i}", "content_hash": llm.Collection.content_hash(f"chunk {i}")}
        for i in range(len(matrix))
    )  # fmt: skip
    db["embeddings"].insert_all(rows, batch_size=5000)
    load_s = time.perf_counter() - t
    ms, hits = [], []
    for q in queries[:n]:
        t = time.perf_counter()
        found = collection.similar_by_vector(q.tolist(), number=10)
        ms.append((time.perf_counter() - t) * 1000)
        hits.append([int(e.id.removeprefix("chunk")) for e in found])
    print(json.dumps({"load_s": load_s, "p50_ms": statistics.median(ms), "ms": ms, "hits": hits}))


if __name__ == "__main__":
    main()
