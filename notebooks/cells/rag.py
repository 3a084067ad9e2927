"""The cells of 03_rag_index: a RAG index of a repository, searched and used by an agent.

A cell is a string: "md:" starts a Markdown cell, "hidden:" an exercise's folded check cell, and
`CHECK` marks a cell whose output nbval compares (see notebooks/build.py)."""

from __future__ import annotations

from _shared import CHECK, SETUP

CELLS = [
    """md:# RAG: build an index over a real folder, inspect it, compare the search modes, measure recall

The folder is this package's own source code — real Python, chunked by functions and classes.""",
    SETUP,
    """import pathlib
from cmdc_nb import rag

source = pathlib.Path(cmdc_nb.__file__).parent  # cmdc_nb/ itself
index = rag.create_index(me, "cmdc_nb source", source_type="local_repo",
                         source_config={"path": str(source), "include": ["*.py"]},
                         chunk_strategy="code_aware", max_tokens=400, overlap_tokens=0)
report = rag.ingest(index)  # a progress bar while it runs
report""",
    f"""again = rag.ingest(index, progress=False)
print("second run:", again.unchanged == report.added, "unchanged, nothing re-embedded:", again.chunks_written == 0)
{CHECK}""",
    """md:## Inspect the chunks

Code-aware chunks follow the grammar: each records the functions and classes it holds, and its lines.""",
    """chunks = rag.list_chunks(index, uri="rag/search.py")
[(c.start_line, c.end_line, (c.code_context or {}).get("symbols")) for c in chunks][:8]""",
    """md:## Three ways to search

*vector* (by meaning — here the hashing embedder, which mostly matches words), *text* (full text,
BM25 on SQLite / `ts_rank_cd` on PostgreSQL) and *hybrid* (both, fused by reciprocal rank).""",
    """import pandas as pd
query = "reciprocal rank fusion of two result lists"
pd.concat({mode: rag.search_frame(index, query, k=3, mode=mode)[["citation", "score"]] for mode in ("vector", "text", "hybrid")}, axis=1)""",
    """md:## Filters and citations""",
    """hits = rag.search(index, "claim a step under a lease", k=3, path="workflows/*")
for h in hits:
    print(h.rank, h.citation, (h.code_context or {}).get("symbols"))""",
    """md:## Measure recall

A small labelled set: for each question, the file that answers it.""",
    """labelled = {
    "reciprocal rank fusion hybrid search": "rag/search.py",
    "split python code into chunks by functions and classes": "rag/chunking.py",
    "honour gitignore files when listing a folder": "rag/sources.py",
    "retry a failed workflow run from the failed step": "workflows/engine.py",
    "render templates in a sandbox": "workflows/templates.py",
    "encrypt api keys at rest": "*vault*.py",
}
evaluation = rag.recall_at_k(index, labelled, ks=(1, 3, 10))
evaluation""",
    "evaluation.frame()",
    """md:## An agent that cites its sources

`rag.retrieve_tool(index)` is a tool any agent can call; it returns numbered passages with their
sources.""",
    """from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script, Turn, call, choose_model

script = Script([Turn(tool_calls=[call("retrieve", query="how are exact vector searches ordered")]),
                 "Exact search orders by similarity, then URI and chunk number [1]."], name="rag-agent")
agent = Agent(model=choose_model(script), tools=[rag.retrieve_tool(index, k=2)])
print(await agent.prompt("How are exact searches ordered? Look it up before answering."))
tool_results = [m["content"] for m in agent.messages if m["role"] == "tool"]
print(tool_results[0][:400] if tool_results else "(the model answered without looking anything up)")""",
]
