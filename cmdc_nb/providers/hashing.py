"""A deterministic hashing vectorizer: words and character trigrams hashed (CRC-32, signed) into a
fixed number of dimensions, L2-normalised. Instant and reproducible across processes and machines, so
tests and offline demos can embed without a model; not a substitute for one in retrieval quality."""

from __future__ import annotations

import re
import zlib
from collections import Counter
from collections.abc import Sequence
from typing import Any

__all__ = ["hash_vectors"]

_WORD = re.compile(r"\w+", re.UNICODE)


def _features(text: str) -> Counter[str]:
    words = _WORD.findall(text.lower())
    feats: Counter[str] = Counter(words)
    for word in words:
        padded = f"<{word}>"
        for i in range(len(padded) - 2):
            feats["#" + padded[i : i + 3]] += 1
    return feats


def hash_vectors(texts: Sequence[str], dimensions: int = 256) -> Any:
    """A float32 array (len(texts) × dimensions), each row of length 1 (or 0 for text without words)."""
    import numpy as np

    out = np.zeros((len(texts), dimensions), dtype=np.float32)
    for row, text in enumerate(texts):
        for feat, count in _features(text).items():
            h = zlib.crc32(feat.encode("utf-8"))
            weight = (0.5 if feat[0] == "#" else 1.0) * (1.0 + np.log(count))
            out[row, h % dimensions] += weight if (h >> 31) & 1 else -weight
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return out / norms
