"""Where DagView draws each step: a left-to-right layered layout computed in the kernel (networkx),
and the example values its input and output boxes start with."""

from __future__ import annotations

from typing import Any

import networkx as nx

__all__ = ["GAP_X", "GAP_Y", "NODE_H", "NODE_W", "PAD", "duration", "example_value", "layout"]

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 190, 46, 48, 18, 12
# What an input field starts as when its schema gives no default or example: a value of its type.
_EMPTY: dict[str, Any] = {
    "integer": 0,
    "number": 0,
    "boolean": False,
    "array": [],
    "object": {},
    "null": None,
}


def layout(steps: list[dict[str, Any]]) -> dict[str, Any]:
    """Positions for a left-to-right layered drawing: one column per topological generation, nodes in
    the order they were written, each column centred. `steps` need `id` and `depends_on`."""
    g: nx.DiGraph = nx.DiGraph()
    order = {s["id"]: i for i, s in enumerate(steps)}
    for s in steps:
        g.add_node(s["id"])
        for d in s.get("depends_on", []):
            g.add_edge(d, s["id"])
    columns = [sorted(gen, key=order.__getitem__) for gen in nx.topological_generations(g)]
    tallest = max((len(c) for c in columns), default=1)
    height = PAD * 2 + tallest * NODE_H + (tallest - 1) * GAP_Y
    pos: dict[str, tuple[int, int]] = {}
    for ci, col in enumerate(columns):
        top = (height - (len(col) * NODE_H + (len(col) - 1) * GAP_Y)) // 2
        for ri, sid in enumerate(col):
            pos[sid] = (PAD + ci * (NODE_W + GAP_X), top + ri * (NODE_H + GAP_Y))
    width = PAD * 2 + len(columns) * NODE_W + max(len(columns) - 1, 0) * GAP_X
    return {"positions": pos, "edges": [list(e) for e in g.edges], "width": width, "height": height}


def example_value(prop: Any) -> Any:
    """What a Start-run box shows for one input field: its default, else its first example, enum value
    or const, else an empty value of its type (0 for an integer, not "")."""
    if not isinstance(prop, dict):
        return ""
    for key in ("default", "const"):
        if key in prop:
            return prop[key]
    for key in ("examples", "enum"):
        if isinstance(prop.get(key), list) and prop[key]:
            return prop[key][0]
    kind = prop.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind == "object" and isinstance(prop.get("properties"), dict):
        return {k: example_value(p) for k, p in prop["properties"].items()}
    return _EMPTY.get(kind, "") if isinstance(kind, str) else ""


def duration(ms: int | None) -> str:
    if ms is None:
        return ""
    return f"{ms} ms" if ms < 1000 else f"{ms / 1000:.1f} s"
