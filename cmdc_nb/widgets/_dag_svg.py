"""The DagView's graph as inline SVG, for the static snapshot: the layout the kernel computed (the
view's `graph`), drawn as the view's canvas draws it — a box per step with its name, its type and its
status said in words with a mark, a stripe and border in the status's colour, curved edges with arrows.

Colours: presentation attributes that read on a light and a dark page alike (the text takes the page's
colour, the status shades sit between both), overridden where a stylesheet is kept by JupyterLab's
`--jp-*` variables, as the live canvas uses them.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from cmdc_nb.widgets._render import escape
from cmdc_nb.widgets._snapshot import Snapshot, static_html

__all__ = ["DAG_SVG_CSS", "DagSnapshot", "dag_svg"]

# A mark beside the status word, so a state reads without relying on colour (as the live canvas does).
MARK = {
    "completed": "✓", "failed": "✕", "timeout": "✕", "running": "▶", "waiting_approval": "‖", "paused": "‖",
    "waiting_input": "…", "cancelled": "–", "skipped": "↷", "pending": "○", "planned": "○",
}  # fmt: skip
# Shades that keep 3:1 against white and against JupyterLab Dark's surface (non-text contrast).
_STATUS_COLOUR = {
    "completed": "#59a14f",
    "running": "#4e79a7",
    "waiting_approval": "#d97706",
    "waiting_input": "#d97706",
    "paused": "#d97706",
    "failed": "#e15759",
    "timeout": "#e15759",
}
_NEUTRAL = "#7f7f7f"
_STATUS_VAR = {
    "completed": "--jp-success-color1",
    "running": "--jp-brand-color1",
    "waiting_approval": "--jp-warn-color1",
    "waiting_input": "--jp-warn-color1",
    "paused": "--jp-warn-color1",
    "failed": "--jp-error-color1",
    "timeout": "--jp-error-color1",
}

DAG_SVG_CSS = (
    "<style>"
    ".cmdc-snapshot .cmdc-dag { max-width: 100%; overflow-x: auto; padding: 2px 0 4px 0; }"
    ".cmdc-snapshot .cmdc-dag-box { fill: var(--jp-layout-color1, #fff); }"
    ".cmdc-snapshot .cmdc-dag-node text { fill: var(--jp-ui-font-color1, #1f2328);"
    " font-family: var(--jp-ui-font-family, system-ui, sans-serif); }"
    ".cmdc-snapshot .cmdc-dag-edge { stroke: var(--jp-border-color1, #8c959f); }"
    ".cmdc-snapshot .cmdc-dag-arrow { fill: var(--jp-border-color1, #8c959f); }"
    ".cmdc-snapshot .cmdc-dag-node rect.cmdc-dag-box { stroke: var(--jp-border-color1, #8c959f); }"
    ".cmdc-snapshot .cmdc-dag-node .cmdc-dag-status { fill: var(--jp-border-color1, #8c959f); }"
    + "".join(
        f'.cmdc-snapshot .cmdc-dag-node[data-status="{status}"] .cmdc-dag-status'
        f" {{ stroke: var({var}, {_STATUS_COLOUR[status]}); fill: var({var}, {_STATUS_COLOUR[status]}); }}"
        f'.cmdc-snapshot .cmdc-dag-node[data-status="{status}"] rect.cmdc-dag-box'
        f" {{ stroke: var({var}, {_STATUS_COLOUR[status]}); }}"
        for status, var in _STATUS_VAR.items()
    )
    + "</style>"
)


def _node(n: Mapping[str, Any], selected: bool) -> str:
    x, y, width, height = (float(n[k]) for k in ("x", "y", "w", "h"))
    status = str(n.get("status", "planned"))
    colour = _STATUS_COLOUR.get(status, _NEUTRAL)
    state = f"{MARK.get(status, '○')} {status.replace('_', ' ')}"
    note = f" · {n['note']}" if n.get("note") else ""
    line = f"{n.get('type', '')} · {state}{note}"
    return (
        f'<g class="cmdc-dag-node" data-step="{escape(n["id"])}" data-status="{escape(status)}">'
        f'<rect class="cmdc-dag-box" x="{x:g}" y="{y:g}" width="{width:g}" height="{height:g}" rx="8" '
        f'fill="none" stroke="{colour}" stroke-width="{3 if selected else 1.5}"/>'
        f'<text class="cmdc-dag-label" x="{x + 14:g}" y="{y + 19:g}" font-size="13" font-weight="600" '
        f'fill="currentColor">{escape(n.get("label", n["id"]))}</text>'
        f'<text class="cmdc-dag-state" x="{x + 14:g}" y="{y + 36:g}" font-size="11" fill="currentColor">'
        f"{escape(line)}</text>"
        f'<rect class="cmdc-dag-stripe cmdc-dag-status" x="{x + 1:g}" y="{y + 6:g}" width="5" '
        f'height="{max(height - 12, 1):g}" rx="2" fill="{colour}" stroke="none"/>'
        f"<title>{escape(n['id'])}: {escape(status.replace('_', ' '))}</title></g>"
    )


def dag_svg(graph: Mapping[str, Any], *, selected: str = "") -> str:
    """The graph (`nodes` with x, y, w, h, label, type, status, note; `edges` as id pairs; `width`,
    `height`) as an SVG element at its natural size, in a box that scrolls sideways when too wide."""
    nodes = list(graph.get("nodes") or [])
    width, height = graph.get("width") or 200, graph.get("height") or 80
    by_id = {n["id"]: n for n in nodes}
    arrow = f"cmdc-arrow-{uuid.uuid4().hex[:8]}"  # its own: a hidden copy's marker would hide the arrows
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cmdc-dag-svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" role="img" aria-label="workflow graph, {len(nodes)} steps">',
        f'<defs><marker id="{arrow}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="7" markerHeight="7" '
        f'orient="auto-start-reverse"><path class="cmdc-dag-arrow" d="M 0 0 L 10 5 L 0 10 z" '
        f'fill="{_NEUTRAL}"/></marker></defs>',
    ]
    for source, target in graph.get("edges") or []:
        a, b = by_id.get(source), by_id.get(target)
        if a is None or b is None:
            continue
        x1, y1 = a["x"] + a["w"], a["y"] + a["h"] / 2
        x2, y2 = b["x"], b["y"] + b["h"] / 2
        mid = (x1 + x2) / 2
        parts.append(
            f'<path class="cmdc-dag-edge" d="M {x1:g} {y1:g} C {mid:g} {y1:g}, {mid:g} {y2:g}, {x2:g} {y2:g}" '
            f'fill="none" stroke="{_NEUTRAL}" stroke-width="1.5" marker-end="url(#{arrow})"/>'
        )
    parts.extend(_node(n, n["id"] == selected) for n in nodes)
    parts.append("</svg>")
    return f'{DAG_SVG_CSS}<div class="cmdc-dag">{"".join(parts)}</div>'


class DagSnapshot(Snapshot):
    """The DagView's snapshot (mixed into it): its heading, the graph, what the view says, and the
    selected step's details; the start box and the buttons are left out."""

    def _snapshot_html(self) -> str:
        canvas = self.canvas  # type: ignore[attr-defined]
        return static_html(self, {id(canvas): dag_svg(canvas.graph, selected=canvas.selected)})
