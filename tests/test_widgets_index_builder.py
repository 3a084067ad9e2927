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
