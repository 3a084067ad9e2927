"""IndexBuilder: create an index from the form, ingest with live progress without blocking the kernel,
and search with ranked results; errors show in the widget."""

from __future__ import annotations

import asyncio
from pathlib import Path

from cmdc_nb import rag
from cmdc_nb.store.models import User
from cmdc_nb.widgets import IndexBuilder
from cmdc_nb.workspace import Workspace

LIVENESS = 60.0


def repo(root: Path) -> Path:
    root.mkdir()
    for i in range(30):
        (root / f"mod{i:02d}.py").write_text(
            f'def handler_{i}(event):\n    """Handle event kind {i}."""\n    return {i}\n'
        )
    (root / "README.md").write_text("# Demo\n\nThe handlers route events by kind.\n")
    return root


async def test_create_from_the_form_ingest_in_the_background_and_search(
    ws: Workspace, user: User, tmp_path: Path
) -> None:
    builder = IndexBuilder(user=user, ws=ws)
    assert builder.index is None and "New RAG index" in builder.children[1].value
    builder.name.value = "demo"
    builder.path.value = str(repo(tmp_path / "repo"))
    builder.include.value = "*.py, *.md"
    builder.create_button.click()
    assert builder.index is not None and builder.index.status == "creating"
    assert builder.index.source_config["include"] == ["*.py", "*.md"]
    task = builder.ingest()
    assert isinstance(task, asyncio.Task) and builder.ingest_button.disabled  # the kernel is free meanwhile
    report = await asyncio.wait_for(task, LIVENESS)
    assert report is not None and report.added == 31
    await asyncio.sleep(0)  # the last progress update is scheduled on the loop
    assert builder.progress.value == builder.progress.max == 31
    assert "31/31 documents" in builder.progress_label.value and not builder.ingest_button.disabled
    assert "<b>31</b> documents" in builder.stats.value and "ready" in builder.heading.value
    assert "31 added" in builder.message.value
    hits = builder.search("handle event kind 7")
    assert hits[0].uri == "mod07.py" and "1. mod07.py:1-3" in builder.results.value
    assert builder.results_frame["citation"].iloc[0] == "mod07.py:1-3"
    builder.query.value = "route events"
    builder.mode.value = "text"
    builder.search_button.click()
    assert builder.hits[0].uri == "README.md"
    builder.close()


async def test_errors_show_in_the_widget(ws: Workspace, user: User, tmp_path: Path) -> None:
    builder = IndexBuilder(user=user, ws=ws)
    builder.path.value = str(tmp_path / "missing")
    builder.create_button.click()
    assert builder.index is None and "existing folder" in builder.message.value
    texts = IndexBuilder(rag.create_index(user, "notes", ws=ws), ws=ws, texts=["alpha beta", "gamma"])
    report = await asyncio.wait_for(texts.ingest(), LIVENESS)
    assert report.added == 2
    assert texts.search("   ") == [] and "needs some text" in texts.message.value
    assert texts.search("zzz-nothing", mode="text") == [] and "No results" in texts.results.value


def test_in_a_script_ingest_blocks_and_returns_the_report(ws: Workspace, user: User) -> None:
    builder = IndexBuilder(rag.create_index(user, "s", ws=ws), ws=ws, texts=["one", "two"])
    report = builder.ingest()
    assert isinstance(report, rag.IngestReport) and report.added == 2
    assert builder.progress.value == 2


def _text_of(html: str) -> str:
    """What a reader sees of some HTML: no tags, no attributes (a tooltip is not on the page)."""
    import html as h
    import re

    return h.unescape(re.sub(r"<[^>]+>", "", html))


def test_a_hit_shows_the_passage_around_its_match_marked_and_a_relevance_a_person_reads(
    ws: Workspace, user: User
) -> None:
    import re

    before = " ".join(f"early{i}" for i in range(120))
    after = " ".join(f"late{i}" for i in range(120))
    long = f"{before} The NEEDLE & <b>haystack</b> are here. {after}"
    builder = IndexBuilder(
        rag.create_index(user, "long", max_tokens=2000, ws=ws),
        ws=ws,
        texts=[long, "a haystack of hay", "nothing to see"],
    )
    builder.ingest()
    hits = builder.search("needle Haystack")
    html = builder.results.value
    card = next(c for c in html.split('<div class="cmdc-queue-item cmdc-hit">') if "NEEDLE" in c)
    passage = re.search(r"<pre>(.*)</pre>", card, re.S).group(1)  # type: ignore[union-attr]
    # the match is in the passage, marked whatever its case, and the content's HTML stays text
    assert "The <mark>NEEDLE</mark> &amp; &lt;b&gt;<mark>haystack</mark>&lt;/b&gt; are here." in passage
    assert "<b>" not in html
    # centred on the match, cut between words, and it says where text was left out
    seen = _text_of(passage)
    assert seen.startswith("… ") and seen.endswith(" …") and len(seen) <= 604
    words = seen.removeprefix("… ").removesuffix(" …").split()
    assert words[0] in long.split() and words[-1] in long.split()  # whole words at both ends
    assert words[0].startswith("early") and words[-1].startswith("late")
    # relevance relative to the best hit; the exact fused score only in the tooltip
    top = html.split('<div class="cmdc-queue-item cmdc-hit">')[1]
    assert (
        '<span class="cmdc-badge cmdc-relevance" title="fused score ' in top
        and ">relevance 100%</span>" in top
    )
    assert f"{hits[0].score:.6f}" in top and f"{hits[0].score:.4f}" not in _text_of(html)
    cards = html.split('<div class="cmdc-queue-item cmdc-hit">')[1:]
    shown = [re.search(r"relevance \d+%", _text_of(c)).group() for c in cards]  # type: ignore[union-attr]
    assert shown == [f"relevance {h.score / hits[0].score:.0%}" for h in hits]
    assert len(hits) == 3 and shown[-1] != "relevance 100%"


def test_a_score_a_list_did_not_give_is_not_shown() -> None:
    import uuid

    from cmdc_nb.rag import SearchHit
    from cmdc_nb.widgets._hits import hit_cards

    def hit(rank: int, score: float, vector: float | None, text: float | None) -> SearchHit:
        return SearchHit(
            uuid.uuid4(), f"doc{rank}.md", "some words", score, rank, 0, None, None, None, vector, text
        )

    shown = _text_of(hit_cards([hit(1, 0.0328, 0.91, 2.5), hit(2, 0.0164, 0.42, 0.0)], "words", "hybrid"))
    assert "vector 0.910 · text 2.500" in shown and "vector 0.420" in shown
    assert "text 0.000" not in shown and "0.0164" not in shown and "relevance 50%" in shown
    # in one list's mode the relevance alone is shown: its own score would say the same twice
    vector_only = _text_of(hit_cards([hit(1, 0.8, 0.8, None)], "words", "vector"))
    assert "relevance 100%" in vector_only and "vector 0.8" not in vector_only


def test_the_query_s_words_are_marked_where_words_start_and_short_ones_only_whole() -> None:
    from cmdc_nb.widgets._hits import mark, query_pattern

    shown = mark(
        "The pager fires when an alert stays red. Handover, and alerts, days_in_month.",
        query_pattern("who is paged when an alert stays red in month"),
    )
    assert shown == (
        "The pager fires <mark>when</mark> <mark>an</mark> <mark>alert</mark> <mark>stays</mark> "
        "<mark>red</mark>. Handover, and <mark>alert</mark>s, days_<mark>in</mark>_<mark>month</mark>."
    )


def test_a_search_from_code_sets_the_controls_to_what_it_searched(ws: Workspace, user: User) -> None:
    builder = IndexBuilder(rag.create_index(user, "modes", ws=ws), ws=ws, texts=["red alert", "blue sky"])
    builder.ingest()
    builder.search("alert", mode="text", k=3)
    assert (builder.mode.value, builder.k.value) == ("text", 3)
    assert [(h.uri, h.vector_score) for h in builder.hits] == [("text:0", None)]  # full text only
    assert "<b>text</b>" in builder._snapshot_html()  # the picture says the mode searched
