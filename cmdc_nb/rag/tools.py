"""`retrieve`: a tool that lets an agent search an index and cite what it found."""

from __future__ import annotations

from typing import Any

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.kernel.tools import Tool
from cmdc_nb.rag.indexes import resolve_index
from cmdc_nb.rag.search import Mode, search

__all__ = ["retrieve_tool"]


@checked
def retrieve_tool(
    index: Any,
    *,
    k: int = 5,
    mode: Mode = "hybrid",
    name: str = "retrieve",
    max_chars: int = 1500,
    user: Any = None,
    ws: Any = None,
) -> Tool:
    """A tool `retrieve(query, language=None, path=None)` over `index`. It returns numbered passages,
    each with its source (`path:lines`), and asks the model to cite them as [1], [2], …"""
    idx = resolve_index(index, user=user, ws=ws)

    def retrieve(query: str, language: str | None = None, path: str | None = None) -> str:
        hits = search(idx, query, k=k, mode=mode, language=language, path=path, ws=ws)
        if not hits:
            return f"No passages in {idx.name!r} match {query!r}."
        parts = [f"Passages from {idx.name!r} for {query!r}. Cite them as [n] with their source."]
        for h in hits:
            text = h.content if len(h.content) <= max_chars else h.content[:max_chars] + " …"
            parts.append(f"[{h.rank}] {h.citation} (score {h.score:.3f})\n{text}")
        return "\n\n".join(parts)

    retrieve.__doc__ = (
        f"Search the index {idx.name!r} ({idx.document_count} documents) for passages relevant to `query`. "
        "Optionally narrow by `language` (e.g. python) or `path` (a glob such as 'src/*'). "
        "Returns numbered passages with their sources; cite them."
    )
    return Tool.from_function(retrieve, name=name)
