"""RAG benchmarks: ingesting the Python standard library's Lib/ end to end, and query latency.

1. Ingest every `*.py` file of this interpreter's `Lib/` (site-packages excluded) with the hashing
   embedder, code-aware chunks of 512 tokens: time, documents, chunks; then a second, unchanged run.
2. Exact vector search against numpy brute force over the same float32 matrix (the physical limit of
   one matrix-vector product), on SQLite and PostgreSQL; HNSW on PostgreSQL with its recall@10 against
   exact; full-text and hybrid queries.

Run: `.venv/bin/python bench/bench_rag.py [--pg URL] [--quick]`; writes the `rag` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section

import cmdc_nb
from cmdc_nb import accounts, rag

QUERIES = [
    "parse a JSON document into Python objects",
    "open a TCP socket and connect to a server",
    "compute the SHA-256 digest of bytes",
    "format a date as ISO 8601",
    "read a CSV file row by row",
    "walk a directory tree recursively",
    "compress data with zlib",
    "send an email over SMTP",
    "parse command line arguments",
    "spawn a subprocess and capture its output",
    "thread-safe queue between producer and consumer",
    "decode base64 text",
    "HTTP request headers",
    "regular expression match groups",
    "temporary file that is deleted on close",
    "pretty print nested data structures",
    "deep copy of an object",
    "abstract base class with abstract methods",
    "asyncio event loop run until complete",
    "XML element tree parse",
]


def median_ms(fn, n: int) -> float:
    times = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def run(url: str, label: str, lib: Path, home: Path, limit: int | None) -> dict[str, object]:
    import importlib

    import numpy as np

    search_mod = importlib.import_module("cmdc_nb.rag.search")  # the module (rag.search is the function)

    ws = cmdc_nb.connect(url, home=home, make_default=False)
    me = accounts.create_user(f"bench-{time.time_ns()}@example.com", ws=ws)
    include = ["*.py"]
    exclude = ["site-packages/", "__pycache__/"]
    idx = rag.create_index(
        me,
        f"stdlib {label}",
        source_type="local_repo",
        source_config={"path": str(lib), "include": include, "exclude": exclude},
        chunk_strategy="code_aware",
        max_tokens=512,
        overlap_tokens=32,
        ws=ws,
    )
    if limit:
        src = rag.FolderSource(lib, include=include, exclude=exclude)
        files = src._paths()[:limit]
        src._listing = files
    else:
        src = None
    t = time.perf_counter()
    first = rag.ingest(idx, source=src, progress=False, ws=ws)
    ingest_s = time.perf_counter() - t
    t = time.perf_counter()
    second = rag.ingest(idx, source=src, progress=False, ws=ws)
    rerun_s = time.perf_counter() - t
    stats = rag.get_index_stats(idx, ws=ws)

    emb = rag.get_embedder(idx.embedding_provider, idx.embedding_model, idx.embedding_dimensions)
    qvecs = [np.asarray(emb.embed([q]).vectors[0], dtype=np.float32) for q in QUERIES]
    # warm the cache once (the first query of a process loads the matrix)
    rag.search(idx, QUERIES[0], k=10, mode="vector", exact=True, ws=ws)
    with ws.read() as db:
        mat = search_mod._matrix(db, ws, rag.get_index(idx, ws=ws))
    assert mat is not None
    rows = mat.rows

    def brute() -> None:
        for q in qvecs:
            sims = rows @ (q / np.linalg.norm(q))
            np.argpartition(-sims, 10)[:10]

    def exact() -> None:
        for q in QUERIES:
            rag.search(idx, q, k=10, mode="vector", exact=True, dedupe=False, ws=ws)

    def text() -> None:
        for q in QUERIES:
            rag.search(idx, q, k=10, mode="text", ws=ws)

    def hybrid() -> None:
        for q in QUERIES:
            rag.search(idx, q, k=10, mode="hybrid", ws=ws)

    n = len(QUERIES)
    out: dict[str, object] = {
        "label": label,
        "documents": stats["document_count"],
        "chunks": stats["chunk_count"],
        "tokens": stats["total_tokens"],
        "ingest_s": ingest_s,
        "rerun_s": rerun_s,
        "skipped": len(first.skipped),
        "unchanged": second.unchanged,
        "brute_ms": median_ms(brute, 5) / n,
        "exact_ms": median_ms(exact, 5) / n,
        "text_ms": median_ms(text, 5) / n,
        "hybrid_ms": median_ms(hybrid, 5) / n,
    }
    if ws.backend == "postgresql":

        def hnsw() -> None:
            for q in QUERIES:
                rag.search(idx, q, k=10, mode="vector", dedupe=False, ws=ws)

        out["hnsw_ms"] = median_ms(hnsw, 5) / n
        recall = []
        for q in QUERIES:
            truth = {
                h.chunk_id for h in rag.search(idx, q, k=10, mode="vector", exact=True, dedupe=False, ws=ws)
            }
            approx = {h.chunk_id for h in rag.search(idx, q, k=10, mode="vector", dedupe=False, ws=ws)}
            recall.append(len(truth & approx) / len(truth))
        out["hnsw_recall"] = statistics.mean(recall)
        # a filtered HNSW query still returns k rows (iterative scans): a folder holding ~2% of the chunks
        folder = _small_folder(ws, idx)
        got = [
            len(rag.search(idx, q, k=10, mode="vector", path=f"{folder}/*", dedupe=False, ws=ws))
            for q in QUERIES[:10]
        ]
        matching = sum(
            d.chunk_count
            for d in rag.list_documents(idx, limit=100_000, ws=ws)
            if d.uri.startswith(folder + "/")
        )
        out["filtered"] = (folder, statistics.mean(got), matching)
    ws.close()
    return out


def _small_folder(ws: object, idx: object) -> str:
    from collections import Counter

    docs = rag.list_documents(idx, limit=100_000, ws=ws)
    dirs = Counter(d.uri.split("/")[0] for d in docs if "/" in d.uri)
    total = sum(d.chunk_count for d in docs)
    by_chunks = {k: sum(d.chunk_count for d in docs if d.uri.startswith(k + "/")) for k in dirs}
    return min(by_chunks, key=lambda k: abs(by_chunks[k] - 0.02 * total))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default=os.environ.get("CMDC_TEST_PG_URL"))
    ap.add_argument("--quick", action="store_true", help="the first 200 files only")
    args = ap.parse_args()
    lib = Path(sysconfig.get_paths()["stdlib"])
    limit = 200 if args.quick else None
    home = Path(tempfile.mkdtemp())
    results = [run(f"sqlite:///{home / 'bench.db'}", "SQLite", lib, home, limit)]
    if args.pg:
        results.append(run(args.pg, "PostgreSQL", lib, home, limit))
    for r in results:
        print(r)
    lines = [
        "## RAG: ingesting the standard library, and query latency (`bench/bench_rag.py`)",
        "",
        f"Source: every `*.py` under `{lib.name}/` of Python {sys.version.split()[0]} (site-packages excluded"
        f"{', first 200 files' if limit else ''}); code-aware chunks ≤ 512 tokens (tiktoken cl100k), overlap 32; "
        "the hashing embedder (256 dimensions). Query times are medians over 5 rounds of 20 queries, per query, "
        "k = 10, on this 2-core machine.",
        "",
        "| backend | documents | chunks | tokens | first ingest | unchanged re-run | numpy brute force | exact search | HNSW (recall@10) | full text | hybrid |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        hnsw = f"{r['hnsw_ms']:.1f} ms ({r['hnsw_recall']:.2f})" if "hnsw_ms" in r else "—"
        lines.append(
            f"| {r['label']} | {r['documents']:,} | {r['chunks']:,} | {r['tokens']:,} | {r['ingest_s']:.1f} s | "
            f"{r['rerun_s']:.1f} s | {r['brute_ms']:.2f} ms | {r['exact_ms']:.2f} ms "
            f"({r['exact_ms'] / r['brute_ms']:.1f}×) | {hnsw} | {r['text_ms']:.1f} ms | {r['hybrid_ms']:.1f} ms |"
        )
    for r in results:
        if "filtered" in r:
            folder, rows, matching = r["filtered"]
            lines += [
                "",
                f"Filtered HNSW on PostgreSQL (`path='{folder}/*'`, {matching} of {r['chunks']:,} chunks "
                f"match): {rows:.1f} of min(10, {matching}) rows returned on average (iterative scan).",
            ]
    lines += [
        "",
        "\"exact search\" is `rag.search(mode='vector', exact=True)` end to end — query embedding, the cached "
        "matrix product, loading the hit rows — against the bare numpy product over the same matrix (the ratio "
        "in brackets). The matrix is read once per process and again only when the index changes. The "
        "difference is a fixed cost of about 2 ms per query (resolving the index, embedding the query, reading "
        "the hit rows), not the product: it does not grow with the index, so the ratio falls as the index grows.",
    ]
    write_section("rag", "\n".join(lines))


if __name__ == "__main__":
    main()
