"""The seed's `Command.Portfolio` operations, as a small facade over what exists: `embed` (the index's
embedder), `complete` (a one-shot `Agent`), `retrieve` (`search`), `store_embedding` and
`search_vectors` (your own vectors, `cmdc_nb.rag.vectors`).

>>> p = Portfolio(user, index="my-index", model="openai/gpt-4o-mini")                  # doctest: +SKIP
>>> vec = p.embed("text to embed")                                                   # doctest: +SKIP
>>> await p.complete([{"role": "user", "content": "Hello"}])                         # doctest: +SKIP
>>> p.retrieve("search query", {}, k=10)                                             # doctest: +SKIP
>>> p.store_embedding("my-index", "doc-1", vec, {"source": "file.ex"})               # doctest: +SKIP
>>> p.search_vectors("my-index", query_vec, 10)                                      # doctest: +SKIP

Indexes are named by id or, with the Portfolio's `user`, by slug (the seed's `"my-index"`). The seed
registers one embedder and one model for the whole application; here they are the index's embedder
and the Portfolio's `model`. Nothing is implemented twice: each method is one call of a public
function, whose checks, transactions and costs apply.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.rag.indexes import record_embedding_cost, resolve_index
from cmdc_nb.rag.search import Mode, SearchHit, search
from cmdc_nb.rag.vectors import VectorLike, search_chunks, store_vector
from cmdc_nb.store.models import ContextChunk, Index, User

__all__ = ["Portfolio"]


class Portfolio:
    """The seed's RAG/LLM operations for one user: `embed`, `complete`, `retrieve`, `store_embedding`,
    `search_vectors`. `index` is the default index (an Index, its id or slug), `model` the model
    `complete` uses, `session` where its call is recorded (and priced) like any agent's."""

    @checked
    def __init__(
        self,
        user: User | uuid.UUID | str | None = None,
        *,
        index: Index | uuid.UUID | str | None = None,
        model: str | None = None,
        session: Any = None,
        ws: Workspace | None = None,
    ) -> None:
        self.user, self.index, self.session, self.ws = user, index, session, ws
        self.model = v.text(model, "model", max_len=200) if model is not None else None

    def _index(self, index: Index | uuid.UUID | str | None) -> Index:
        chosen = index if index is not None else self.index
        if chosen is None:
            raise InvalidInputError("name an index, here or as Portfolio(index=...)", field="index")
        return resolve_index(chosen, user=self.user, ws=get_workspace(self.ws))

    @checked
    def embed(self, text: str, *, index: Index | uuid.UUID | str | None = None) -> list[float]:
        """`text`'s vector from the index's embedder (its cost recorded against the index)."""
        from cmdc_nb.rag.embedders import get_embedder

        text = v.text(text, "text", max_len=1_000_000, strip=False)
        idx = self._index(index)
        emb = get_embedder(idx.embedding_provider, idx.embedding_model, idx.embedding_dimensions)
        out = emb.embed([text])
        record_embedding_cost(get_workspace(self.ws), idx, emb, out.tokens, texts=1)
        return [float(x) for x in out.vectors[0]]

    @checked
    async def complete(self, messages: Sequence[Mapping[str, Any]], *, model: str | None = None) -> str:
        """The model's reply to `messages` (role/content mappings, the last one the user's): system
        messages become the whole system prompt, the others the conversation so far. One `Agent` turn,
        no tools; with the Portfolio's `session` the call is recorded and priced."""
        from cmdc_nb.kernel.agent import Agent

        chosen = model if model is not None else self.model
        if chosen is None:
            raise InvalidInputError("name a model, here or as Portfolio(model=...)", field="model")
        turns = [dict(m) for m in messages]
        if not turns or turns[-1].get("role") != "user" or not isinstance(turns[-1].get("content"), str):
            raise InvalidInputError(
                "the last message must be the user's, with text content", field="messages"
            )
        if any(m.get("role") not in ("system", "user", "assistant") for m in turns):
            raise InvalidInputError("roles are system, user or assistant", field="messages")
        system = "\n\n".join(str(m.get("content") or "") for m in turns if m["role"] == "system") or None
        history = [
            {"role": m["role"], "content": m.get("content")} for m in turns[:-1] if m["role"] != "system"
        ]
        # prompt_mode "none": the system prompt is the caller's alone (no agent preamble, no working dir)
        options: dict[str, Any] = {"model": chosen, "messages": history, "prompt_mode": "none", "ws": self.ws}
        if system is not None:
            options["system_prompt"] = system
        if self.session is not None:
            options["session"] = self.session
        agent = Agent(**options)
        try:
            return str(await agent.prompt(turns[-1]["content"]))
        finally:
            await agent.stop()

    @checked
    def retrieve(
        self,
        query: str,
        filters: Mapping[str, Any] | None = None,
        *,
        k: int = 10,
        mode: Mode = "hybrid",
        index: Index | uuid.UUID | str | None = None,
    ) -> list[SearchHit]:
        """`search` over the index: `filters` are metadata equalities (the seed's second argument)."""
        idx = self._index(index)
        return search(idx, query, k=k, mode=mode, metadata=filters or None, ws=self.ws)

    @checked
    def store_embedding(
        self,
        index: Index | uuid.UUID | str,
        doc_id: str,
        embedding: VectorLike,
        metadata: Mapping[str, Any] | None = None,
        *,
        content: str = "",
    ) -> ContextChunk:
        """Store `embedding` as document `doc_id`'s one chunk (with `content`, if any), `metadata` as
        its filterable metadata — one transaction; storing the same `doc_id` again replaces it."""
        return store_vector(self._index(index), doc_id, embedding, metadata, content=content, ws=self.ws)

    @checked
    def search_vectors(
        self, index: Index | uuid.UUID | str, vector: VectorLike, k: int = 10
    ) -> list[SearchHit]:
        """The k chunks nearest to `vector` (cosine), best first: `search_chunks`."""
        return search_chunks(self._index(index), vector, k=k, ws=self.ws)
