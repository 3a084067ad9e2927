"""Markdown to safe HTML for the widgets: markdown-it (raw HTML off), Pygments for fenced code, then
nh3 (Ammonia) keeps only harmless tags and attributes — a model's reply can never inject script."""

from __future__ import annotations

import html
import json
from functools import lru_cache
from typing import Any

__all__ = ["CSS", "escape", "markdown_html", "pretty_json"]

_ALLOWED_TAGS = {
    "p", "br", "hr", "em", "strong", "del", "code", "pre", "span", "div", "blockquote", "ul", "ol", "li",
    "h1", "h2", "h3", "h4", "h5", "h6", "table", "thead", "tbody", "tr", "th", "td", "a", "details", "summary",
}  # fmt: skip
_ALLOWED_ATTRS = {
    "span": {"class"},
    "div": {"class"},
    "code": {"class"},
    "pre": {"class"},
    "a": {"href", "title"},
    "td": {"align"},
    "th": {"align"},
}


@lru_cache(maxsize=1)
def _md() -> Any:
    from markdown_it import MarkdownIt

    return (
        MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
        .enable("table")
        .enable("strikethrough")
    )


def _highlight(code: str, lang: str, attrs: str) -> str:
    from pygments import highlight
    from pygments.formatters import HtmlFormatter
    from pygments.lexers import get_lexer_by_name
    from pygments.util import ClassNotFound

    try:
        lexer = get_lexer_by_name(lang or "text")
    except ClassNotFound:
        lexer = get_lexer_by_name("text")
    return str(highlight(code, lexer, HtmlFormatter(nowrap=True)))


def markdown_html(text: str) -> str:
    """Rendered, sanitised HTML of a Markdown text."""
    import nh3

    raw = _md().render(text or "")
    return str(
        nh3.clean(
            raw,
            tags=_ALLOWED_TAGS,
            attributes=_ALLOWED_ATTRS,
            link_rel="noopener noreferrer",
            url_schemes={"http", "https", "mailto"},
        )
    )


def escape(text: Any) -> str:
    return html.escape(str(text), quote=True)


def pretty_json(value: Any, limit: int = 4000) -> str:
    try:
        text = json.dumps(value, indent=2, ensure_ascii=False, default=str)
    except (TypeError, ValueError):
        text = str(value)
    return text if len(text) <= limit else text[:limit] + "\n…"


CSS = """
<style>
.cmdc-chat { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px; color: var(--jp-ui-font-color1, #1f2328);
  border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 10px; padding: 8px; background: var(--jp-layout-color1, #fff); }
.cmdc-chat .cmdc-header { display: flex; gap: 10px; align-items: center; }
.cmdc-chat .cmdc-title { font-weight: 600; font-size: 14px; }
.cmdc-chat .cmdc-stats { color: var(--jp-ui-font-color2, #57606a); font-size: 12px; }
.cmdc-chat .cmdc-scroll { border-top: 1px solid var(--jp-border-color2, #d0d7de); border-bottom: 1px solid var(--jp-border-color2, #d0d7de); padding: 6px 2px; }
.cmdc-msg { margin: 6px 0; padding: 8px 12px; border-radius: 10px; max-width: 92%; line-height: 1.45; overflow-wrap: anywhere; }
.cmdc-msg p { margin: 4px 0; }
.cmdc-msg pre { background: var(--jp-layout-color0, #fff); border: 1px solid var(--jp-border-color2, #d0d7de); padding: 8px; border-radius: 6px; overflow-x: auto; }
.cmdc-msg code { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.cmdc-msg :not(pre) > code { background: rgba(175, 184, 193, 0.25); padding: 1px 4px; border-radius: 4px; }
.cmdc-scroll { display: flex; flex-direction: column-reverse; overflow-y: auto; }
.cmdc-log > *, .cmdc-log .widget-vbox > * { flex-shrink: 0 !important; }
.cmdc-user { background: #ddf4ff; margin-left: auto; }
.cmdc-assistant { background: var(--jp-layout-color2, #f6f8fa); }
.cmdc-meta { font-size: 11px; color: var(--jp-ui-font-color2, #57606a); margin-top: 2px; }
.cmdc-tool { border: 1px solid var(--jp-border-color2, #d0d7de); border-left: 4px solid #8c959f; border-radius: 8px; padding: 6px 10px; margin: 6px 0 6px 14px; font-size: 12px; }
.cmdc-tool.running { border-left-color: #0969da; } .cmdc-tool.ok { border-left-color: #1a7f37; }
.cmdc-tool.error { border-left-color: #cf222e; } .cmdc-tool.waiting { border-left-color: #bf8700; background: #fff8c5; }
.cmdc-tool .cmdc-tool-name { font-weight: 600; font-family: var(--jp-code-font-family, monospace); }
.cmdc-tool pre { margin: 4px 0; max-height: 220px; overflow: auto; background: var(--jp-layout-color2, #f6f8fa); padding: 6px; border-radius: 6px; }
.cmdc-badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 11px; background: #eaeef2; margin-left: 6px; }
.cmdc-badge.waiting { background: #fff8c5; } .cmdc-badge.ok { background: #dafbe1; } .cmdc-badge.error { background: #ffebe9; } .cmdc-badge.running { background: #ddf4ff; }
.cmdc-notice { font-size: 12px; color: var(--jp-ui-font-color2, #57606a); font-style: italic; margin: 4px 0; }
.cmdc-queue-item { border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 8px; padding: 6px 10px; margin: 4px 0; }
.cmdc-risk-critical { color: #cf222e; font-weight: 600; } .cmdc-risk-high { color: #bc4c00; font-weight: 600; }
.cmdc-risk-medium { color: #9a6700; } .cmdc-risk-low { color: #57606a; }
</style>
"""
