"""A deterministic hashing vectorizer: each word and its character trigrams hashed (CRC-32, signed) into
a fixed number of dimensions, words weighted by 1 + log(count), rows L2-normalised. Instant and
reproducible across processes and machines, so tests and offline demos can embed without a model; not
a substitute for one in retrieval quality."""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

__all__ = ["hash_vectors"]

_WORD = re.compile(r"\w+", re.UNICODE)


@lru_cache(maxsize=262_144)
def _word_vector(word: str, dimensions: int) -> tuple[Any, Any]:
    """The sparse vector of one word: (indices, signed weights) — the word itself at weight 1, each
    trigram of `<word>` at 0.5. Cached: code and prose repeat their words endlessly."""
    import numpy as np

    padded = f"<{word}>"
    feats = [word, *("#" + padded[i : i + 3] for i in range(len(padded) - 2))]
    hashes = np.array([zlib.crc32(f.encode("utf-8")) for f in feats], dtype=np.uint64)
    weights = np.full(len(feats), 0.5)
    weights[0] = 1.0
    signs = np.where((hashes >> np.uint64(31)) & np.uint64(1), 1.0, -1.0)
    return (hashes % np.uint64(dimensions)).astype(np.int64), signs * weights


def hash_vectors(texts: Sequence[str], dimensions: int = 256) -> Any:
    """A float32 array (len(texts) × dimensions), each row of length 1 (or 0 for text without words)."""
    import numpy as np

    out = np.zeros((len(texts), dimensions), dtype=np.float32)
    for row, text in enumerate(texts):
        words = Counter(_WORD.findall(text.lower()))
        if not words:
            continue
        parts = [_word_vector(w, dimensions) for w in words]
        scale = 1.0 + np.log(np.fromiter(words.values(), dtype=np.float64, count=len(words)))
        idx = np.concatenate([p[0] for p in parts])
        vals = np.concatenate([p[1] * s for p, s in zip(parts, scale, strict=True)])
        out[row] = np.bincount(idx, vals, dimensions)
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return out / norms
