"""Embeddings through litellm, in batches, with the same single retry layer as chat calls.

Every provider litellm knows (OpenAI, Cohere, Google, Voyage, Ollama, …) goes through
`litellm.embedding`; the offline `scripted/embed-<dims>` model is served in-process with the same
vectors, token counts and errors (through litellm too with `CMDC_NB_OFFLINE_VIA_LITELLM=1`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cmdc_nb.errors import InvalidInputError, ProviderError
from cmdc_nb.providers import _offline, scripted
from cmdc_nb.providers._litellm import classify, for_call
from cmdc_nb.providers._types import RetryPolicy

__all__ = ["EmbeddingResult", "embed_texts"]


@dataclass(frozen=True)
class EmbeddingResult:
    vectors: list[list[float]]
    tokens: int
    model: str


def embed_texts(
    model: str,
    texts: Sequence[str],
    *,
    dimensions: int | None = None,
    retry: RetryPolicy | None = None,
    timeout_s: float | None = None,
    extra: Mapping[str, Any] | None = None,
    on_retry: Callable[[int, float, ProviderError], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
) -> EmbeddingResult:
    """Embed one batch (sync: ingestion runs in a worker thread). Raises ProviderError when the retries
    are spent or the error is not worth retrying."""
    if not texts:
        return EmbeddingResult([], 0, model)
    if not all(isinstance(t, str) for t in texts):
        raise InvalidInputError("every text to embed must be a string", field="texts")
    retry = retry or RetryPolicy()
    kwargs: dict[str, Any] = {"model": model, "input": list(texts), "num_retries": 0, **dict(extra or {})}
    if dimensions is not None and not model.startswith("scripted/"):
        kwargs["dimensions"] = dimensions
    if timeout_s is not None:
        kwargs["timeout"] = timeout_s
    direct = _offline.served_directly(model)
    lm = None if direct else for_call()
    for attempt in range(1, retry.retries + 2):
        try:
            if lm is None:
                vectors, tokens = scripted.embed(model, list(texts))
                return EmbeddingResult(vectors, tokens, model)
            response = lm.embedding(**kwargs)
        except Exception as exc:
            err = classify(exc, model)
            if not err.retryable or attempt > retry.retries:
                raise err from None
            delay = retry.delay(attempt, err.retry_after)
            if on_retry is not None:
                on_retry(attempt, delay, err)
            sleep(delay)
            continue
        data = sorted(response.data, key=lambda d: d["index"] if isinstance(d, Mapping) else d.index)
        vectors = [list(d["embedding"] if isinstance(d, Mapping) else d.embedding) for d in data]
        usage = getattr(response, "usage", None)
        tokens = int(getattr(usage, "prompt_tokens", 0) or getattr(usage, "total_tokens", 0) or 0)
        return EmbeddingResult(vectors, tokens, model)
    raise AssertionError("unreachable")  # pragma: no cover
