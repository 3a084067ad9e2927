"""A slow embedder and a child-process ingestion, for the kill-in-the-middle test.

`python tests/support/rag_children.py <db-url> <home> <index-id>` ingests the index and prints `EMBED n` after
each embedding batch, so the parent can kill it at a chosen moment."""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from typing import Any

import cmdc_nb
from cmdc_nb import rag


class SlowHash(rag.HashingEmbedder):
    provider = "slowhash"
    calls = 0

    def __init__(self, dimensions: int) -> None:
        super().__init__(dimensions)
        self.batch_size = 8

    def embed(self, texts: Sequence[str]) -> Any:
        out = super().embed(texts)
        SlowHash.calls += 1
        sys.stdout.write(f"EMBED {SlowHash.calls}\n")  # one write: never split by another thread
        sys.stdout.flush()
        time.sleep(0.005)
        return out


rag.register_embedder("slowhash", lambda model, dims: SlowHash(dims))


def file_text(i: int, version: int) -> str:
    body = "\n\n".join(
        f'def f{i}_{j}_v{version}(x):\n    """Step {j} of file {i}, version {version}."""\n    return x + {j}'
        for j in range(6)
    )
    return f'"""Module {i} (version {version})."""\n\n{body}\n'


if __name__ == "__main__":
    url, home, index_id = sys.argv[1:4]
    ws = cmdc_nb.connect(url, home=home, migrate=False)
    report = rag.ingest(index_id, progress=False, ws=ws)
    print(f"DONE {report!r}", flush=True)
