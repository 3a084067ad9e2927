"""A search hit as a person reads it: the passage around the first match, cut between words, the
query's words marked, and a relevance that means something (the best result is 100%), with the exact
score kept in the tooltip for whoever wants it.

Text from the index is escaped piece by piece around the marks: an indexed document can never add
HTML to the page.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from cmdc_nb.rag.search import RRF_K
from cmdc_nb.widgets._render import escape

__all__ = ["hit_cards", "mark", "query_pattern", "snippet"]

SNIPPET_CHARS = 600


def query_pattern(query: str) -> re.Pattern[str] | None:
    """The query's words (two characters or more), longest first, matched case-insensitively at the start
    of a word (`alert` marks `alerts`), and words under four characters only whole (`an` marks neither
    `handover` nor `and`). An underscore separates words, as in `days_in_month`."""
    words = sorted({w.lower() for w in re.findall(r"\w+", query) if len(w) >= 2}, key=lambda w: (-len(w), w))
    start, end = r"(?<![^\W_])", r"(?![^\W_])"  # no letter or digit before (or after)
    alternatives = [start + re.escape(w) + (end if len(w) < 4 else "") for w in words]
    return re.compile("|".join(alternatives), re.IGNORECASE) if words else None


def snippet(content: str, pattern: re.Pattern[str] | None, width: int = SNIPPET_CHARS) -> str:
    """About `width` characters of `content` around its first match (the start without one), cut at
    whitespace so no word is split, with "…" where text was left out."""
    if len(content) <= width:
        return content
    found = pattern.search(content) if pattern is not None else None
    centre = found.start() if found else 0
    start = max(0, min(centre - width // 2, len(content) - width))
    end = start + width
    if start > 0:  # begin after the first space of the window, unless that would pass the match
        space = re.search(r"\s", content[start:centre])
        start = start + space.end() if space else start
    if end < len(content):  # end before the last space, unless that would cut into the match
        keep = found.end() if found else start
        spaces = [m.start() for m in re.finditer(r"\s", content[keep:end])]
        end = keep + spaces[-1] if spaces else end
    text = content[start:end].strip()
    return f"{'… ' if start > 0 else ''}{text}{' …' if end < len(content) else ''}"


def mark(text: str, pattern: re.Pattern[str] | None) -> str:
    """`text` escaped, with each match of `pattern` in `<mark>` (the marks are ours, the text never is)."""
    if pattern is None:
        return escape(text)
    out, last = [], 0
    for m in pattern.finditer(text):
        out.append(f"{escape(text[last : m.start()])}<mark>{escape(m.group())}</mark>")
        last = m.end()
    out.append(escape(text[last:]))
    return "".join(out)


_WHAT_THE_SCORE_IS = {
    "hybrid": f"fused score {{score:.6f}} (reciprocal-rank fusion: 1/({RRF_K} + rank) summed over the "
    "vector and text lists)",
    "vector": "cosine similarity {score:.6f}",
    "text": "text score {score:.6f} (BM25 on SQLite, ts_rank_cd on PostgreSQL)",
}


def _components(hit: Any) -> str:
    """The lists' own scores, where they found the hit (a zero or missing one says nothing)."""
    parts = [
        f"{label} {value:.3f}"
        for label, value in (("vector", hit.vector_score), ("text", hit.text_score))
        if value is not None and round(value, 3) != 0
    ]
    return " · ".join(parts)


def hit_cards(hits: Sequence[Any], query: str, mode: str) -> str:
    """The HTML of ranked hits: rank and citation, relevance relative to the best hit, the lists'
    scores (in hybrid mode), and the marked snippet."""
    pattern = query_pattern(query)
    best = hits[0].score if hits else 0.0
    cards = []
    for h in hits:
        relative = max(0.0, h.score / best) if best > 0 else None
        exact = _WHAT_THE_SCORE_IS.get(mode, "score {score:.6f}").format(score=h.score)
        components = _components(h) if mode == "hybrid" else ""
        title = f"{exact}{' · ' + components if components else ''} · the best result is 100%"
        relevance = f"relevance {relative:.0%}" if relative is not None else f"score {h.score:.4f}"
        also = f" · also in {', '.join(h.also_in)}" if h.also_in else ""
        stats = f"{components}{also}".removeprefix(" · ")
        cards.append(
            f'<div class="cmdc-queue-item cmdc-hit"><span class="cmdc-title">{h.rank}. {escape(h.citation)}</span> '
            f'<span class="cmdc-badge cmdc-relevance" title="{escape(title)}">{relevance}</span> '
            f'<span class="cmdc-stats">{escape(stats)}</span>'
            f"<pre>{mark(snippet(h.content, pattern), pattern)}</pre></div>"
        )
    return "".join(cards)
