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
    "td": {"align", "style"},
    "th": {"align", "style"},
}
# a table column's alignment is the one style a reply may set (markdown-it writes it as a style)
_ALLOWED_STYLES = {"text-align"}


@lru_cache(maxsize=1)
def _md() -> Any:
    from markdown_it import MarkdownIt
    from mdit_py_plugins.dollarmath import dollarmath_plugin
    from mdit_py_plugins.texmath import texmath_plugin

    md = (
        MarkdownIt("commonmark", {"html": False, "linkify": False, "highlight": _highlight})
        .enable("table")
        .enable("strikethrough")
    )
    # LaTeX kept whole, in the delimiters MathJax reads (the chat's replies are typeset by JupyterLab's
    # MathJax, as Markdown cells are): $…$ and $$…$$ — not "$5 and $10", a price — and \(…\), \[…\].
    # Only these are typeset: a reply's bubble is `tex2jax_ignore`, its math `tex2jax_process mathjax_process` (the
    # classes JupyterLab's MathJax honours), so a "$" in ordinary text never starts a formula there.
    dollarmath_plugin(md, allow_labels=False, allow_space=False, allow_digits=False, double_inline=True)
    texmath_plugin(md, delimiters="brackets")
    for name in ("math_inline", "math_inline_double"):
        md.add_render_rule(name, _math_inline)
    for name in ("math_block", "math_block_eqno", "math_block_label"):
        md.add_render_rule(name, _math_block)
    return md


def _math_inline(_self: Any, tokens: Any, idx: int, _options: Any, _env: Any) -> str:
    tex = html.escape(tokens[idx].content)
    if tokens[idx].type == "math_inline_double":  # $$…$$ inside a line: displayed
        return f'<span class="cmdc-math tex2jax_process mathjax_process">\\[{tex}\\]</span>'
    return f'<span class="cmdc-math tex2jax_process mathjax_process">\\({tex}\\)</span>'


def _math_block(_self: Any, tokens: Any, idx: int, _options: Any, _env: Any) -> str:
    return f'<div class="cmdc-math tex2jax_process mathjax_process">\\[{html.escape(tokens[idx].content)}\\]</div>\n'


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
            filter_style_properties=_ALLOWED_STYLES,
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


# Pygments' token classes in JupyterLab's own editor colours (`--jp-mirror-editor-*`), so code in a
# reply is coloured as in a cell and follows Light, Dark and High Contrast; the fallbacks are JupyterLab
# Light's, for a page shown outside JupyterLab. Colour name → (token classes, fallback, extra style).
_TOKEN_COLOURS = {
    "keyword": ("k kc kd kn kp kr ow", "#008000", "font-weight: bold;"),
    "def": ("nf fm nc", "#00f", ""),
    "variable-2": ("nv vc vg vi vm", "#05a", ""),
    "variable-3": ("kt", "#085", ""),
    "builtin": ("nb bp ne", "#008000", ""),
    "meta": ("nd cp cpf", "#a2f", ""),
    "attribute": ("na", "#00c", ""),
    "tag": ("nt", "#170", ""),
    "atom": ("no ss", "#88f", ""),
    "number": ("m mb mf mh mi mo il", "#080", ""),
    "string": ("s sa sb sc dl sd s2 sh s1 sx", "#ba2121", ""),
    "string-2": ("se si sr", "#708", ""),
    "operator": ("o", "#a2f", "font-weight: bold;"),
    "punctuation": ("p pm", "#05a", ""),
    "comment": ("c ch cm c1 cs", "#408080", "font-style: italic;"),
    "header": ("gh gu", "blue", "font-weight: bold;"),
    "quote": ("gi", "#090", ""),
    "error": ("err gr gt gd", "#f00", ""),
}


def _token_css() -> str:
    rules = []
    for name, (classes, fallback, extra) in _TOKEN_COLOURS.items():
        selectors = ", ".join(f".cmdc-msg pre .{c}" for c in classes.split())
        style = " ".join(filter(None, [f"color: var(--jp-mirror-editor-{name}-color, {fallback});", extra]))
        rules.append(f"{selectors} {{ {style} }}")
    rules.append(".cmdc-msg pre .ge { font-style: italic; } .cmdc-msg pre .gs { font-weight: bold; }")
    return "\n".join(rules)


CSS = (
    """
<style>
.cmdc-chat { font-family: var(--jp-ui-font-family, system-ui, sans-serif); font-size: 13px; color: var(--jp-ui-font-color1, #1f2328);
  border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 10px; padding: 8px; background: var(--jp-layout-color1, #fff); }
.cmdc-chat .cmdc-header { display: flex; gap: 10px; align-items: center; }
.cmdc-chat .cmdc-title { font-weight: 600; font-size: 14px; }
.cmdc-chat .cmdc-stats { color: var(--jp-ui-font-color1, #1f2328); font-size: 12px; }
.cmdc-chat .cmdc-scroll { border-top: 1px solid var(--jp-border-color2, #d0d7de); border-bottom: 1px solid var(--jp-border-color2, #d0d7de); padding: 6px 2px; }
/* the chat: a header that wraps (never squeezes), a log that scrolls, a footer whose buttons keep their size */
.cmdc-chatwidget { box-sizing: border-box; max-width: 100%; }
.cmdc-chatwidget .cmdc-chat-header { flex-wrap: wrap; align-items: center; column-gap: 6px; }
.cmdc-chatwidget .cmdc-chat-header .cmdc-stats { white-space: nowrap; }
.cmdc-chatwidget .cmdc-chat-footer { flex-wrap: wrap; align-items: center; }
.cmdc-chatwidget .cmdc-chat-footer > .jupyter-button { flex-shrink: 0; }
.cmdc-chatwidget .cmdc-status { flex: 1 1 120px; min-width: 0; overflow-wrap: anywhere; padding-left: 4px; }
.cmdc-chatwidget .widget-textarea { box-sizing: border-box; }
.cmdc-chatwidget .cmdc-tool .widget-hbox { flex-wrap: wrap; }
.cmdc-chatwidget .cmdc-tool .jupyter-button { flex-shrink: 0; }
.cmdc-chatwidget .jupyter-button.mod-primary { background: var(--jp-brand-color0, #0d47a1); color: #fff; }
.cmdc-chatwidget .jupyter-button.mod-success { background: var(--jp-brand-color0, #0d47a1); color: #fff; }
.cmdc-chatwidget .jupyter-button.mod-danger { background: var(--jp-error-color0, #b71c1c); color: #fff; }
.cmdc-chatwidget .jupyter-button.cmdc-stop { box-shadow: inset 0 0 0 1px var(--jp-error-color1, #d32f2f); }
.cmdc-scroll { display: block !important; overflow-y: auto !important; overflow-x: hidden !important; overflow-anchor: auto; }
.cmdc-log { overflow: visible !important; padding: 4px 4px 14px 4px; }
.cmdc-log > *, .cmdc-log .widget-vbox > * { flex-shrink: 0 !important; }
.cmdc-follow { position: relative; overflow: visible !important; margin: 0 !important; }
.cmdc-follow-more { position: absolute; bottom: 10px; left: 50%; transform: translateX(-50%); z-index: 2; cursor: pointer;
  padding: 3px 12px; border-radius: 12px; font-size: 12px; border: 1px solid var(--jp-brand-color1, #1976d2);
  background: var(--jp-layout-color1, #fff); color: var(--jp-ui-font-color1, #1f2328); box-shadow: var(--jp-elevation-z4, 0 2px 6px rgba(0,0,0,.3)); }
.cmdc-follow-more[hidden] { display: none; }
.cmdc-msg { margin: 6px 0; padding: 8px 12px; border-radius: 10px; max-width: 92%; line-height: 1.45; overflow-wrap: anywhere; box-sizing: border-box; }
.cmdc-msg p { margin: 4px 0; }
/* code on the page's own background, not the cell editor's grey: the editor's number green (#080) on
   that grey is 4.26:1, short of 4.5; on white it is 4.64:1 (the colours are JupyterLab's, by theme) */
.cmdc-msg pre { background: var(--jp-layout-color0, #fff); color: var(--jp-content-font-color1, #1f2328);
  border: 1px solid var(--jp-border-color2, #d0d7de); padding: 8px; border-radius: 6px; overflow-x: auto; }
/* a code block carries a Copy button under it, on its right (added in the browser by chat_follow.js;
   always shown, as jupyter-ai's code toolbar is, so it covers no code and needs no hover) */
.cmdc-msg .cmdc-code { display: flex; flex-direction: column; margin: 4px 0; }
.cmdc-msg .cmdc-code pre { margin: 0; }
.cmdc-msg .cmdc-copy { align-self: flex-end; margin-top: 2px; padding: 1px 8px; font-size: 11px; border-radius: 4px; cursor: pointer;
  font-family: var(--jp-ui-font-family, system-ui, sans-serif); color: var(--jp-ui-font-color1, #1f2328);
  background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color1, #bdbdbd); }
.cmdc-msg .cmdc-copy:hover { background: var(--jp-layout-color2, #eee); }
/* a whole message's Copy: a tab on its top border (over no text), shown when the pointer or the
   keyboard is on the message */
.cmdc-msg[data-md] { position: relative; }
.cmdc-msg .cmdc-copy.cmdc-copy-msg { position: absolute; top: -10px; right: 10px; margin: 0; opacity: 0; line-height: 16px; }
.cmdc-msg:hover .cmdc-copy-msg, .cmdc-msg .cmdc-copy-msg:focus, .cmdc-msg .cmdc-copy-msg.cmdc-copied { opacity: 1; }
/* the reply's placeholder while the model has not answered: three pulsing dots */
.cmdc-thinking { color: var(--jp-ui-font-color1, #1f2328); font-style: italic; }
.cmdc-thinking-dots span { animation: cmdc-pulse 1.2s infinite ease-in-out; font-style: normal; margin-right: 2px; }
.cmdc-thinking-dots span:nth-child(2) { animation-delay: .2s; } .cmdc-thinking-dots span:nth-child(3) { animation-delay: .4s; }
@keyframes cmdc-pulse { 0%, 80%, 100% { opacity: .25; } 40% { opacity: 1; } }
@media (prefers-reduced-motion: reduce) { .cmdc-thinking-dots span { animation: none; opacity: .7; } }
.cmdc-math { overflow-x: auto; max-width: 100%; }
div.cmdc-math { display: block; margin: 6px 0; }
.cmdc-reply-bar { margin: -2px 0 4px 0; align-items: center; }
.cmdc-reply-bar .jupyter-button { height: 24px; line-height: 22px; padding: 0 8px; }
/* Markdown tables: ruled cells, a shaded header, sideways scrolling when wider than the bubble */
.cmdc-msg table { border-collapse: collapse; margin: 6px 0; display: block; max-width: 100%; overflow-x: auto; }
.cmdc-msg th, .cmdc-msg td { border: 1px solid var(--jp-border-color2, #d0d7de); padding: 4px 8px; text-align: left; vertical-align: top; }
.cmdc-msg th { background: var(--jp-layout-color2, #eee); font-weight: 600; }
.cmdc-msg code { font-family: var(--jp-code-font-family, monospace); font-size: 12px; }
.cmdc-msg :not(pre) > code { background: var(--jp-layout-color2, #eee); padding: 1px 4px; border-radius: 4px; }
.cmdc-user { background: var(--jp-layout-color2, #eee); margin-left: auto; border-right: 3px solid var(--jp-brand-color1, #1976d2); }
.cmdc-steer { border-right-style: dashed; font-style: italic; }
.cmdc-assistant { background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-border-color2, #d0d7de); }
.cmdc-error { background: var(--jp-layout-color1, #fff); border: 1px solid var(--jp-error-color1, #d32f2f); border-left-width: 4px; }
.cmdc-error summary { cursor: pointer; font-size: 12px; }
.cmdc-meta { font-size: 11px; color: var(--jp-ui-font-color1, #1f2328); margin-top: 2px; }
.cmdc-tool { border: 1px solid var(--jp-border-color2, #d0d7de); border-left: 4px solid var(--jp-layout-color4, #757575); border-radius: 8px; padding: 6px 10px; margin: 6px 0 6px 14px; font-size: 12px; box-sizing: border-box; }
.cmdc-tool.running { border-left-color: var(--jp-brand-color1, #1976d2); } .cmdc-tool.ok { border-left-color: var(--jp-success-color1, #388e3c); }
.cmdc-tool.error { border-left-color: var(--jp-error-color1, #d32f2f); }
.cmdc-tool.denied { border-left-color: var(--jp-warn-color1, #f57c00); border-left-style: dashed; } .cmdc-badge.denied { border-color: var(--jp-warn-color1, #f57c00); }
.cmdc-tool.waiting { border-color: var(--jp-warn-color1, #f57c00); border-width: 2px 2px 2px 6px; background: var(--jp-layout-color2, #eee); }
.cmdc-tool .cmdc-tool-name { font-weight: 600; font-family: var(--jp-code-font-family, monospace); }
.cmdc-tool pre { margin: 4px 0; max-height: 220px; overflow: auto; background: var(--jp-layout-color0, #fff); color: var(--jp-content-font-color1, #1f2328); padding: 6px; border-radius: 6px; }
.cmdc-badge { display: inline-block; padding: 0 6px; border-radius: 10px; font-size: 11px; margin-left: 6px; color: var(--jp-ui-font-color1, #1f2328);
  background: transparent; border: 1px solid var(--jp-border-color1, #bdbdbd); }
.cmdc-badge.waiting { border-color: var(--jp-warn-color1, #f57c00); font-weight: 600; } .cmdc-badge.ok { border-color: var(--jp-success-color1, #388e3c); }
.cmdc-badge.error { border-color: var(--jp-error-color1, #d32f2f); } .cmdc-badge.running { border-color: var(--jp-brand-color1, #1976d2); }
.cmdc-notice { font-size: 12px; color: var(--jp-ui-font-color1, #1f2328); font-style: italic; margin: 4px 0; }
.cmdc-queue-item { border: 1px solid var(--jp-border-color2, #d0d7de); border-radius: 8px; padding: 6px 10px; margin: 4px 0; }
.cmdc-risk-critical { color: #cf222e; font-weight: 600; } .cmdc-risk-high { color: #bc4c00; font-weight: 600; }
.cmdc-risk-medium { color: #9a6700; } .cmdc-risk-low { color: #57606a; }
"""
    + _token_css()
    + """
</style>
"""
)
