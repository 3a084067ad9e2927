"""IndexBuilder: configure a RAG index, run its ingestion with a progress bar and live statistics, and
search it — ranked results with scores and sources — from one widget."""

from __future__ import annotations

import asyncio
from typing import Any

import ipywidgets as w

from cmdc_nb import rag
from cmdc_nb.errors import CmdcError
from cmdc_nb.events import topics
from cmdc_nb.widgets._common import Refresher, on_loop
from cmdc_nb.widgets._hits import hit_cards
from cmdc_nb.widgets._render import escape
from cmdc_nb.widgets._snapshot import Snapshot, static_html
from cmdc_nb.widgets._theme import PANEL_CSS

__all__ = ["IndexBuilder"]

_STATUS_BADGE = {"ready": "ok", "updating": "running", "failed": "error", "creating": "", "archived": ""}


def _row(*children: w.Widget) -> w.HBox:
    """A row of controls that wraps onto the next line when the output area is narrow."""
    row = w.HBox(list(children))
    row.add_class("cmdc-row")
    return row


class IndexBuilder(Snapshot, w.VBox):  # type: ignore[misc]
    """An index (or, with none, a form that creates one for `user`). Methods do what the buttons do:
    `create(**settings)`, `ingest()` (in the background in a notebook; returns the report or a task),
    `search(query, **options)`; `.hits` and `.results_frame` hold the last results."""

    def __init__(self, index: Any = None, *, user: Any = None, ws: Any = None, texts: Any = None) -> None:
        from cmdc_nb._plumbing.workspace import get_workspace

        super().__init__([])
        self.ws = get_workspace(ws)
        self.user = user
        self.texts = texts  # for texts / dataframe indexes: what ingest() feeds
        self.index = rag.get_index(index, ws=self.ws) if index is not None else None
        if self.index is None and user is None:
            raise ValueError("give an index, or the user to create one for")
        self.hits: list[rag.SearchHit] = []
        self.report: rag.IngestReport | None = None
        self.task: Any = None
        self._refresher = Refresher(self.refresh)
        self._loop = self._refresher.loop
        # form
        self.name = w.Text(description="name", placeholder="my-repo")
        self.path = w.Text(description="folder", placeholder="/path/to/repo")
        self.include = w.Text(description="include", placeholder="*.py, *.md")
        self.exclude = w.Text(description="exclude", placeholder="tests/, *.min.js")
        self.strategy = w.Dropdown(
            options=["code_aware", "recursive", "fixed"], value="code_aware", description="chunks"
        )
        self.max_tokens = w.BoundedIntText(value=512, min=16, max=8192, description="max tokens")
        self.overlap = w.BoundedIntText(value=50, min=0, max=4000, description="overlap")
        self.embedding = w.Text(
            value="hashing",
            description="embedder",
            placeholder="hashing | local | openai/text-embedding-3-small",
        )
        self.create_button = w.Button(description="Create index", button_style="primary", icon="plus")
        self.create_button.on_click(lambda _: self._create_from_form())
        # index
        self.heading = w.HTML()
        self.stats = w.HTML()
        self.progress = w.IntProgress(min=0, max=1, value=0, layout=w.Layout(width="320px", max_width="100%"))
        self.progress_label = w.HTML()
        self.ingest_button = w.Button(description="Ingest now", button_style="primary", icon="refresh")
        self.ingest_button.on_click(lambda _: self.ingest())
        # search
        # Enter (or leaving the box) searches: the value only syncs then, not on every keystroke.
        self.query = w.Text(
            placeholder="Search the index…",
            continuous_update=False,
            layout=w.Layout(width="50%", min_width="220px"),
        )
        self.mode = w.Dropdown(
            options=["hybrid", "vector", "text"], value="hybrid", layout=w.Layout(width="110px")
        )
        self.k = w.BoundedIntText(value=5, min=1, max=100, layout=w.Layout(width="70px"))
        self.search_button = w.Button(description="Search", icon="search", layout=w.Layout(width="100px"))
        self.search_button.on_click(lambda _: self.search(self.query.value))
        self.query.observe(
            lambda change: self.search(change["new"]) if change["new"].strip() else None, names="value"
        )
        self.results = w.HTML()
        self.message = w.HTML()
        self.add_class("cmdc-panel")
        self.add_class("cmdc-index-builder")
        self._sub: Any = None
        self._query: str | None = None  # the last query searched: the results shown are its
        self._snapshot_follow(self, self.heading, self.stats, self.progress, self.progress_label)
        self._snapshot_follow(self.message, self.results)
        self._layout()

    def __repr__(self) -> str:
        return f"<IndexBuilder {self.index.slug if self.index else 'new'}>"

    def _snapshot_html(self) -> str:
        """The index, its statistics and progress, and the last search with its results (the boxes of
        the form are left out: what a person types stays in the kernel, but for the query searched)."""
        query = (
            f'<span class="cmdc-snap-field">search <b>{escape(self._query)}</b></span>' if self._query else ""
        )
        return static_html(self, {id(self.query): query})

    # -- layout -----------------------------------------------------------------------------------
    def _layout(self) -> None:
        if self.index is None:
            form = w.VBox(
                [
                    self.name,
                    self.path,
                    self.include,
                    self.exclude,
                    _row(self.strategy, self.max_tokens, self.overlap),
                    self.embedding,
                    self.create_button,
                ]
            )
            self.children = [
                w.HTML(PANEL_CSS),
                w.HTML('<span class="cmdc-title">New RAG index</span>'),
                form,
                self.message,
                self._view_probe(),
            ]
            return
        if self._sub is None:
            self._sub = self.ws.bus.subscribe(topics.index(self.index.id), self._refresher)
        self.children = [
            w.HTML(PANEL_CSS),
            self.heading,
            self.stats,
            _row(self.ingest_button, self.progress, self.progress_label),
            _row(self.query, self.mode, self.k, self.search_button),
            self.message,
            self.results,
            self._view_probe(),
        ]
        self.refresh()

    def refresh(self) -> None:
        if self.index is None:
            return
        self.index = rag.get_index(self.index.id, ws=self.ws)
        s = rag.get_index_stats(self.index, ws=self.ws)
        idx = self.index
        badge = _STATUS_BADGE.get(idx.status.value, "")
        source = idx.source_config.get("path") or idx.source_type.value
        self.heading.value = (
            f'<span class="cmdc-title">{escape(idx.name)}</span>'
            f'<span class="cmdc-badge {badge}">{escape(idx.status.value)}</span> '
            f'<span class="cmdc-stats">{escape(source)} · {escape(idx.chunk_strategy.value)} ≤ '
            f"{idx.chunk_config.get('max_tokens')} tokens · {escape(idx.embedding_model)} ({idx.embedding_dimensions}d)</span>"
        )
        last = (
            f" · last indexed {idx.last_indexed_at:%Y-%m-%d %H:%M} in {idx.indexing_duration_ms or 0} ms"
            if idx.last_indexed_at
            else ""
        )
        error = (
            f'<div class="cmdc-notice">last error: {escape(idx.last_error)}</div>' if idx.last_error else ""
        )
        self.stats.value = (
            f'<span class="cmdc-stats"><b>{s["document_count"]:,}</b> documents · <b>{s["chunk_count"]:,}</b> chunks · '
            f"{s['total_tokens']:,} tokens · {s['embedding_coverage']:.0f}% embedded · "
            f"embedding cost ${idx.embedding_cost_usd:.6f}{last}</span>{error}"
        )

    # -- actions ----------------------------------------------------------------------------------
    def _create_from_form(self) -> None:
        def split(text: str) -> list[str]:
            return [p.strip() for p in text.split(",") if p.strip()]

        embedding = self.embedding.value.strip() or "hashing"
        provider, _, model = embedding.partition("/")
        settings: dict[str, Any] = {
            "name": self.name.value.strip() or "index",
            "chunk_strategy": self.strategy.value,
            "max_tokens": int(self.max_tokens.value),
            "overlap_tokens": int(self.overlap.value),
            "embedding_provider": provider,
        }
        if model:
            settings["embedding_model"] = model
        if self.path.value.strip():
            settings.update(
                source_type="local_repo",
                source_config={
                    "path": self.path.value.strip(),
                    "include": split(self.include.value),
                    "exclude": split(self.exclude.value),
                },
            )
        self.create(**settings)

    def create(self, **settings: Any) -> Any:
        """Create the index (settings as in `rag.create_index`); errors show under the form."""
        try:
            self.index = rag.create_index(self.user, ws=self.ws, **settings)
        except CmdcError as exc:
            self.message.value = f'<div class="cmdc-notice">{escape(exc)}</div>'
            return None
        self.message.value = ""
        self._layout()
        return self.index

    def _on_progress(self, done: int, total: int | None, report: rag.IngestReport) -> None:
        def show() -> None:
            self.progress.max = max(total or done, 1)
            self.progress.value = done
            self.progress_label.value = (
                f'<span class="cmdc-stats">{done:,}/{total or "?"} documents · {report.chunks_written:,} chunks '
                f"written · {report.unchanged:,} unchanged</span>"
            )

        on_loop(self._loop, show)

    def _finish(self, report: rag.IngestReport | None, error: BaseException | None) -> None:
        self.ingest_button.disabled = False
        if error is not None:
            self.message.value = f'<div class="cmdc-notice">Ingestion failed: {escape(error)}</div>'
        elif report is not None:
            self.report = report
            self.message.value = (
                f'<div class="cmdc-stats">{report.added} added · {report.updated} updated · {report.unchanged} '
                f"unchanged · {report.deleted} deleted · {len(report.skipped)} skipped · {report.chunks_written} "
                f"chunks · {report.embeddings_reused} embeddings reused · {report.duration_s:.1f} s</div>"
            )
        self.refresh()

    def ingest(self) -> Any:
        """Run an ingestion. In a notebook it runs in a worker thread (the kernel stays free) and this
        returns an asyncio task; in a script it blocks and returns the report."""
        if self.index is None:
            raise ValueError("create the index first")
        self.ingest_button.disabled = True
        self.message.value = ""
        kwargs: dict[str, Any] = {"progress": False, "on_progress": self._on_progress, "ws": self.ws}
        if self.texts is not None:
            key = "frame" if hasattr(self.texts, "columns") else "texts"
            kwargs[key] = self.texts
        index = self.index

        def work() -> rag.IngestReport:
            return rag.ingest(index, **kwargs)

        if self._loop is None or self._loop.is_closed():
            try:
                report = work()
            except CmdcError as exc:
                self._finish(None, exc)
                raise
            self._finish(report, None)
            return report

        async def background() -> rag.IngestReport | None:
            try:
                report = await asyncio.to_thread(work)
            except Exception as exc:
                self._finish(None, exc)
                return None
            self._finish(report, None)
            return report

        self.task = self._loop.create_task(background())
        return self.task

    def search(self, query: str, **options: Any) -> list[rag.SearchHit]:
        """Search and show ranked results: rank, source, relevance (the best is 100%, the exact score in
        its tooltip) and the passage around the first match with the query's words marked."""
        if self.index is None:
            raise ValueError("create the index first")
        options.setdefault("k", int(self.k.value))
        options.setdefault("mode", self.mode.value)
        if (
            options["mode"] in self.mode.options
            and isinstance(options["k"], int)
            and 1 <= options["k"] <= 100
        ):
            # the controls say what was searched, in the widget and in its snapshot
            self.mode.value, self.k.value = options["mode"], options["k"]
        self._query = query
        try:
            self.hits = rag.search(self.index, query, ws=self.ws, **options)
        except CmdcError as exc:
            self.message.value = f'<div class="cmdc-notice">{escape(exc)}</div>'
            self.hits = []
            self.results.value = ""
            return []
        self.message.value = ""
        if not self.hits:
            self.results.value = '<div class="cmdc-notice">No results.</div>'
            return self.hits
        self.results.value = hit_cards(self.hits, query, options["mode"])
        return self.hits

    @property
    def results_frame(self) -> Any:
        return rag.hits_frame(self.hits)

    def close(self) -> None:
        if self._sub is not None:
            self._sub.close()
            self._sub = None
        super().close()
