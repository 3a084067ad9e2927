"""Recall@k on a labelled set: how often the chunks you expect come back in the top k."""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from cmdc_nb._plumbing.checked import checked
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.rag.search import Mode, search

__all__ = ["EvalReport", "recall_at_k"]


@dataclass
class EvalReport:
    """`recall[k]`: the mean, over queries, of the share of a query's relevant sources found in its top k.
    `hit_rate[k]`: the share of queries with at least one relevant source in the top k. `mrr`: mean
    reciprocal rank of the first relevant hit."""

    recall: dict[int, float]
    hit_rate: dict[int, float]
    mrr: float
    queries: list[dict[str, Any]] = field(default_factory=list)

    def __repr__(self) -> str:
        r = ", ".join(f"@{k}={v:.3f}" for k, v in sorted(self.recall.items()))
        return f"<EvalReport recall {r} mrr={self.mrr:.3f} over {len(self.queries)} queries>"

    def frame(self) -> Any:
        import pandas as pd

        return pd.DataFrame(self.queries)


def _relevant(expected: Any) -> list[str]:
    if isinstance(expected, str):
        return [expected]
    if isinstance(expected, Iterable):
        out = [str(x) for x in expected]
        if out:
            return out
    raise InvalidInputError("each query needs one or more expected URIs (or URI globs)", field="labelled")


@checked
def recall_at_k(
    index: Any,
    labelled: Mapping[str, Any] | Sequence[tuple[str, Any]],
    *,
    ks: Sequence[int] = (1, 5, 10),
    mode: Mode = "hybrid",
    ws: Any = None,
    **search_options: Any,
) -> EvalReport:
    """Evaluate retrieval on `labelled`: `{query: expected}` (or pairs), where expected is a URI, a glob
    over URIs (`"json/*.py"`), or a list of them."""
    pairs = list(labelled.items()) if isinstance(labelled, Mapping) else list(labelled)
    if not pairs:
        raise InvalidInputError("give at least one labelled query", field="labelled")
    top = max(ks)
    recall = {k: 0.0 for k in ks}
    hits_at = {k: 0 for k in ks}
    mrr = 0.0
    rows: list[dict[str, Any]] = []
    for query, expected in pairs:
        wanted = _relevant(expected)
        got = search(index, query, k=top, mode=mode, ws=ws, **search_options)
        uris = [h.uri for h in got]

        first = next(
            (i + 1 for i, u in enumerate(uris) if any(fnmatch.fnmatchcase(u, w) for w in wanted)), None
        )
        mrr += 1.0 / first if first else 0.0
        row: dict[str, Any] = {"query": query, "expected": wanted, "first_relevant_rank": first}
        for k in ks:
            found = {w for w in wanted if any(fnmatch.fnmatchcase(u, w) for u in uris[:k])}
            recall[k] += len(found) / len(wanted)
            hits_at[k] += 1 if found else 0
            row[f"recall@{k}"] = len(found) / len(wanted)
        rows.append(row)
    n = len(pairs)
    return EvalReport({k: recall[k] / n for k in ks}, {k: hits_at[k] / n for k in ks}, mrr / n, rows)
