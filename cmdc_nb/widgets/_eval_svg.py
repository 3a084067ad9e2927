"""The eval view's Pareto chart as static SVG: each model a marker at (cost per case, mean score) with its
95 % interval as a whisker, the front as a dotted line through the models on it, every label and axis in
the page's colour. Drawn from `EvalRun.summary()`, the frame `EvalRun.pareto_chart()` draws with plotly,
so the live view, the snapshot and the plotly figure show the same points."""

from __future__ import annotations

import math
from typing import Any

from cmdc_nb.widgets._cost_svg import PALETTE
from cmdc_nb.widgets._render import escape
from cmdc_nb.widgets._svg import ticks as round_ticks

__all__ = ["pareto_svg"]

WIDTH, HEIGHT = 420, 290
_LEFT, _RIGHT, _TOP, _BOTTOM = 56, 34, 34, 236  # the plot area


def _usd(v: float, step: float) -> str:
    places = max(0, min(10, -math.floor(math.log10(step)) if step > 0 else 0))
    return f"${v:,.{places}f}"


def _label_places(at: list[tuple[float, float]], names: list[str]) -> list[tuple[float, float, str]]:
    """Where each model's name goes: beside its marker (left of it near the right edge), moved down a
    line while it would overlap a name already placed."""
    placed: list[tuple[float, float, float]] = []  # left, right, baseline
    out = []
    for (x, y), name in zip(at, names, strict=True):
        width = 7.0 * len(name)
        right_side = x + 10 + width <= WIDTH - 4
        left, anchor, lx = (x + 10, "start", x + 10) if right_side else (x - 10 - width, "end", x - 10)
        ly = y + 4
        while any(a < left + width and left < b and abs(ly - base) < 14 for a, b, base in placed):
            ly += 14
        placed.append((left, left + width, ly))
        out.append((lx, min(ly, _BOTTOM - 4), anchor))
    return out


def pareto_svg(summary: Any, *, title: str = "Cost and quality") -> str:
    """The summary's models as an SVG scatter (see the module's docstring)."""
    rows = summary.reset_index().to_dict("records") if len(summary) else []
    points = [
        (r["model"], float(r["cost_per_case_usd"]), float(r["mean_score"]), float(r["ci_low"]), float(r["ci_high"]), bool(r["pareto"]))
        for r in rows
        if r.get("cost_per_case_usd") is not None and not math.isnan(float(r["mean_score"]))
    ]  # fmt: skip
    said = f"{title}: " + "; ".join(f"{m} ${c:.6f} a case, mean score {s:.2f}" for m, c, s, *_ in points)
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cmdc-chart-svg cmdc-pareto" width="{WIDTH}" '
        f'height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(said)}" '
        'fill="currentColor" font-family="var(--jp-ui-font-family, system-ui, sans-serif)" '
        f'style="max-width:100%;height:auto"><text x="12" y="20" font-size="14" font-weight="600">{escape(title)}</text>'
    )
    if not points:
        return (
            head
            + f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" font-size="12" text-anchor="middle">no case scored yet</text></svg>'
        )
    xt = round_ticks(max(c for _, c, *_ in points) * 1.1)
    step = xt[1] - xt[0] if len(xt) > 1 else 1.0

    def x_of(v: float) -> float:
        return _LEFT + (v / (xt[-1] or 1.0)) * (WIDTH - _RIGHT - _LEFT)

    def y_of(v: float) -> float:
        return _BOTTOM - max(0.0, min(1.0, v)) * (_BOTTOM - _TOP)

    parts = []
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        y = y_of(t)
        parts.append(
            f'<line x1="{_LEFT}" x2="{WIDTH - _RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor" stroke-opacity="{0.5 if t == 0 else 0.15}"/>'
            f'<text x="{_LEFT - 6}" y="{y + 4:.1f}" font-size="12" text-anchor="end">{t:g}</text>'
        )
    for n, t in enumerate(xt):
        x = x_of(t)
        anchor = "end" if n == len(xt) - 1 and n else "middle"  # the last label stays inside the picture
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP}" y2="{_BOTTOM}" stroke="currentColor" stroke-opacity="0.1"/>'
            f'<text x="{x + (8 if anchor == "end" else 0):.1f}" y="{_BOTTOM + 15}" font-size="12" '
            f'text-anchor="{anchor}">{escape(_usd(t, step))}</text>'
        )
    parts.append(
        f'<text x="{(_LEFT + WIDTH - _RIGHT) / 2}" y="{_BOTTOM + 34}" font-size="12" text-anchor="middle">cost per case (USD)</text>'
        f'<text transform="translate(14 {(_TOP + _BOTTOM) / 2}) rotate(-90)" font-size="12" text-anchor="middle">mean score</text>'
    )
    front = sorted((x_of(c), y_of(s)) for _, c, s, _, _, on in points if on)
    if len(front) > 1:
        path = " ".join(f"{'M' if i == 0 else 'L'}{x:.1f},{y:.1f}" for i, (x, y) in enumerate(front))
        parts.append(
            f'<path class="cmdc-pareto-front" d="{path}" fill="none" stroke="currentColor" stroke-opacity="0.6" stroke-dasharray="3 3"/>'
        )
    labels = _label_places([(x_of(c), y_of(s)) for _, c, s, *_ in points], [m for m, *_ in points])
    for n, (model, cost, score, lo, hi, on) in enumerate(points):
        x, y = x_of(cost), y_of(score)
        colour = PALETTE[n % len(PALETTE)]
        label_x, label_y, anchor = labels[n]
        parts.append(
            f'<g class="cmdc-pareto-point" data-model="{escape(model)}" data-cost="{cost:.10g}" data-score="{score:.6g}" data-front="{str(on).lower()}">'
            f"<title>{escape(model)}: ${cost:.6f} a case, mean score {score:.3f} (95 % {lo:.2f}–{hi:.2f}){' · on the front' if on else ''}</title>"
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{y_of(lo):.1f}" y2="{y_of(hi):.1f}" stroke="{colour}" stroke-width="2"/>'
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="{6 if on else 5}" fill="{colour}" stroke="currentColor" stroke-width="{1.5 if on else 0}"/>'
            f'<text x="{label_x:.1f}" y="{label_y:.1f}" font-size="12" text-anchor="{anchor}">{escape(model)}</text></g>'
        )
    return head + "".join(parts) + "</svg>"
