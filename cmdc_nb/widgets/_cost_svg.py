"""The cost dashboard's four charts as static SVG, for its snapshot: drawn from the same frames the
live plotly charts draw (`CostDashboard.frames`), with no JavaScript (plotly needs its library, and its
image export needs a browser).

Each chart has its title, axis titles, ticks and a legend, and one mark per data point: a bar per row
of the daily frame (stacked by model or provider), a marker per day of the cumulative spend (and the
budget as a dashed line), an "in" and an "out" bar per day of the tokens frame, a bar per session and
per notebook cell of the costliest. A mark carries its series, its x and its value (`data-*`) and says
them in a tooltip (`<title>`). Days run continuously from the first to the last with data, as plotly's
date axis does. Texts and axes take the page's colour; the series' shades keep 3:1 against a light and
a dark page alike.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from cmdc_nb.widgets._render import escape
from cmdc_nb.widgets._svg import ticks as round_ticks

__all__ = ["PALETTE", "cost_charts"]

# Each ≥ 3:1 against white and against JupyterLab Dark's surfaces (#111111, #212121): WCAG's
# non-text contrast, so a bar reads in both themes without a stylesheet.
PALETTE = ("#4e79a7", "#e15759", "#59a14f", "#b07aa1", "#d97706", "#0891b2", "#9c755f", "#7f7f7f")
WIDTH = 480
_TOP, _PLOT_H = 34, 170  # the plot area's top and height
_RIGHT = 12

Fmt = Callable[[float], str]


def _usd_ticks(step: float) -> Fmt:
    places = max(0, -int(Decimal(str(step)).normalize().as_tuple().exponent))
    return lambda v: f"${v:,.{places}f}"


def _count(v: float) -> str:
    for size, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= size:
            return f"{v / size:.3g}{unit}"
    return f"{v:.3g}"


def _money(v: float) -> str:
    return f"${v:,.4f}"


def _day(value: Any) -> dt.date:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if hasattr(value, "date"):  # a pandas Timestamp
        return value.date()  # type: ignore[no-any-return]
    return dt.date.fromisoformat(str(value)[:10])


def _floats(values: Any) -> list[float]:
    out = []
    for x in values:
        try:
            f = float(x)
        except (TypeError, ValueError):
            f = 0.0
        out.append(0.0 if f != f else f)  # NaN (unpriced) counts 0, as the live chart draws it
    return out


def _label(day: dt.date) -> str:
    return day.strftime("%b %d")


def _mark(shape: str, series: str, at: str, value: float, said: str, /, **attrs: Any) -> str:
    drawn = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return (
        f'<{shape} class="cmdc-mark" data-series="{escape(series)}" data-x="{escape(at)}" '
        f'data-value="{value:.10g}" {drawn}><title>{escape(said)}</title></{shape}>'
    )


def _legend(items: Sequence[tuple[str, str, bool]], top: float) -> tuple[str, float]:
    """Legend swatches in rows under the plot; returns the SVG and the height it takes."""
    parts, x, y = [], 12.0, top
    for name, colour, dashed in items:
        shown = name if len(name) <= 40 else name[:39] + "…"
        width = 22 + 6.5 * len(shown) + 14
        if x > 12 and x + width > WIDTH - _RIGHT:
            x, y = 12.0, y + 16
        swatch = (
            f'<line x1="{x:g}" y1="{y - 4:g}" x2="{x + 14:g}" y2="{y - 4:g}" stroke="{colour}" '
            f'stroke-width="2.5" stroke-dasharray="4 3"/>'
            if dashed
            else f'<rect x="{x:g}" y="{y - 10:g}" width="12" height="12" rx="2" fill="{colour}"/>'
        )
        parts.append(
            f'<g class="cmdc-legend-item">{swatch}<text x="{x + 18:g}" y="{y:g}" font-size="11">'
            f"{escape(shown)}</text></g>"
        )
        x += width
    return "".join(parts), (y - top + 16 if items else 0)


def _svg(name: str, title: str, body: str, height: float, said: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="cmdc-chart-svg" data-chart="{name}" width="{WIDTH}" '
        f'height="{height:g}" viewBox="0 0 {WIDTH} {height:g}" role="img" aria-label="{escape(said)}" '
        f'fill="currentColor" font-family="var(--jp-ui-font-family, system-ui, sans-serif)" '
        f'style="max-width:100%;height:auto">'
        f'<text x="12" y="20" font-size="14" font-weight="600">{escape(title)}</text>{body}</svg>'
    )


def _empty(name: str, title: str) -> str:
    body = (
        f'<text x="{WIDTH / 2:g}" y="{_TOP + _PLOT_H / 2:g}" font-size="12" text-anchor="middle">'
        "no data in this range</text>"
    )
    return _svg(name, title, body, _TOP + _PLOT_H + 20, f"{title}: no data")


def _value_axis(
    ticks: list[float], fmt: Fmt, left: float, y_title: str
) -> tuple[str, Callable[[float], float]]:
    """Horizontal grid lines with their labels on the left; returns them and value → y."""
    top, bottom = _TOP, _TOP + _PLOT_H
    span = ticks[-1] or 1.0

    def y_of(v: float) -> float:
        return bottom - (v / span) * (bottom - top)

    parts = []
    for t in ticks:
        y = y_of(t)
        parts.append(
            f'<line x1="{left:g}" x2="{WIDTH - _RIGHT:g}" y1="{y:.1f}" y2="{y:.1f}" stroke="currentColor" '
            f'stroke-opacity="{0.5 if t == 0 else 0.15}"/>'
            f'<text x="{left - 6:g}" y="{y + 4:.1f}" font-size="11" text-anchor="end">{escape(fmt(t))}</text>'
        )
    parts.append(
        f'<text transform="translate(13 {(top + bottom) / 2:g}) rotate(-90)" font-size="11" '
        f'text-anchor="middle">{escape(y_title)}</text>'
    )
    return "".join(parts), y_of


def _day_axis(days: list[dt.date], left: float) -> tuple[str, Callable[[dt.date], float], float]:
    """Every day from the first to the last, labelled (thinned to about eight labels); returns them, a
    day's centre x, and a day's band width."""
    first, last = min(days), max(days)
    count = (last - first).days + 1
    band = (WIDTH - _RIGHT - left) / count
    every = math.ceil(count / 8)

    def x_of(day: dt.date) -> float:
        return left + band * ((day - first).days + 0.5)

    bottom = _TOP + _PLOT_H
    labels = "".join(
        f'<text x="{x_of(first + dt.timedelta(days=i)):.1f}" y="{bottom + 14:g}" font-size="11" '
        f'text-anchor="middle">{_label(first + dt.timedelta(days=i))}</text>'
        for i in range(0, count, every)
    )
    title = f'<text x="{(left + WIDTH - _RIGHT) / 2:g}" y="{bottom + 30:g}" font-size="11" text-anchor="middle">day</text>'
    return labels + title, x_of, band


def stacked_bars(
    name: str, title: str, y_title: str, points: Sequence[tuple[str, dt.date, float]], fmt: Fmt
) -> str:
    """Bars per day stacked by series; `points` are (series, day, value), one bar each."""
    if not points:
        return _empty(name, title)
    series = list(dict.fromkeys(s for s, _, _ in points))
    colour = {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(series)}
    totals: dict[dt.date, float] = {}
    for _, day, value in points:
        totals[day] = totals.get(day, 0.0) + max(value, 0.0)
    ticks = round_ticks(max(totals.values()))
    left = 64
    axis, y_of = _value_axis(ticks, _usd_ticks(ticks[1]) if fmt is _money else _count, left, y_title)
    days, x_of, band = _day_axis(list(totals), left)
    stacked: dict[dt.date, float] = {}
    bars = []
    for s, day, value in points:
        base = stacked.get(day, 0.0)
        stacked[day] = base + max(value, 0.0)
        y_top, y_base = y_of(stacked[day]), y_of(base)
        bars.append(
            _mark(
                "rect", s, day.isoformat(), value, f"{s} · {_label(day)}: {fmt(value)}",
                x=f"{x_of(day) - band * 0.35:.1f}", y=f"{y_top:.1f}", width=f"{band * 0.7:.1f}",
                height=f"{max(y_base - y_top, 0):.1f}", fill=colour[s],
            )
        )  # fmt: skip
    legend, legend_h = _legend([(s, colour[s], False) for s in series], _TOP + _PLOT_H + 50)
    height = _TOP + _PLOT_H + 40 + legend_h + 4
    return _svg(name, title, axis + days + "".join(bars) + legend, height, f"{title}: {len(bars)} bars")


def spend_line(name: str, title: str, points: Sequence[tuple[dt.date, float]], budget: float | None) -> str:
    """The running total per day with a marker each, and the budget as a dashed line."""
    if not points:
        return _empty(name, title)
    ticks = round_ticks(max([v for _, v in points] + ([budget] if budget is not None else [])))
    left = 64
    axis, y_of = _value_axis(ticks, _usd_ticks(ticks[1]), left, "USD")
    days, x_of, _ = _day_axis([d for d, _ in points], left)
    line = " ".join(f"{x_of(d):.1f},{y_of(v):.1f}" for d, v in points)
    parts = [f'<polyline points="{line}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>']
    parts += [
        _mark(
            "circle", "spent", d.isoformat(), v, f"spent by {_label(d)}: {_money(v)}",
            cx=f"{x_of(d):.1f}", cy=f"{y_of(v):.1f}", r="3.5", fill=PALETTE[0],
        )
        for d, v in points
    ]  # fmt: skip
    items = [("spent", PALETTE[0], False)]
    if budget is not None:
        y = y_of(budget)
        parts.append(
            f'<line class="cmdc-budget" data-value="{budget:.10g}" x1="{x_of(points[0][0]):.1f}" '
            f'x2="{x_of(points[-1][0]):.1f}" y1="{y:.1f}" y2="{y:.1f}" stroke="{PALETTE[1]}" '
            f'stroke-width="2" stroke-dasharray="6 4"><title>budget {_money(budget)}</title></line>'
        )
        items.append(("budget", PALETTE[1], True))
    legend, legend_h = _legend(items, _TOP + _PLOT_H + 50)
    height = _TOP + _PLOT_H + 40 + legend_h + 4
    return _svg(name, title, axis + days + "".join(parts) + legend, height, f"{title}: {len(points)} days")


def ranked_bars(name: str, title: str, groups: Sequence[tuple[str, Sequence[tuple[str, float]]]]) -> str:
    """Horizontal bars, largest first within each group (sessions, then cells), one per row."""
    rows = [(g, label, value) for g, members in groups for label, value in members]
    if not rows:
        return _empty(name, title)
    shown = [label if len(label) <= 24 else label[:23] + "…" for _, label, _ in rows]
    left = 16 + 6.2 * max(len(s) for s in shown)
    ticks = round_ticks(max(max(v for _, _, v in rows), 0.0))
    span, right = ticks[-1] or 1.0, WIDTH - _RIGHT - 16  # room for the last tick's label
    band = _PLOT_H / len(rows)
    colour = {g: PALETTE[i % len(PALETTE)] for i, (g, _) in enumerate(groups)}
    fmt = _usd_ticks(ticks[1])
    parts = []
    for t in ticks:
        x = left + (t / span) * (right - left)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{_TOP:g}" y2="{_TOP + _PLOT_H:g}" stroke="currentColor" '
            f'stroke-opacity="{0.5 if t == 0 else 0.15}"/><text x="{x:.1f}" y="{_TOP + _PLOT_H + 14:g}" '
            f'font-size="11" text-anchor="middle">{escape(fmt(t))}</text>'
        )
    parts.append(
        f'<text x="{(left + right) / 2:g}" y="{_TOP + _PLOT_H + 30:g}" font-size="11" text-anchor="middle">USD</text>'
    )
    for i, ((group, label, value), text) in enumerate(zip(rows, shown, strict=True)):
        y = _TOP + band * i
        parts.append(
            f'<text x="{left - 6:g}" y="{y + band / 2 + 4:.1f}" font-size="11" text-anchor="end">{escape(text)}</text>'
        )
        parts.append(
            _mark(
                "rect", group, label, value, f"{label}: {_money(value)}",
                x=f"{left:g}", y=f"{y + band * 0.15:.1f}", width=f"{max(value, 0) / span * (right - left):.1f}",
                height=f"{band * 0.7:.1f}", fill=colour[group],
            )
        )  # fmt: skip
    legend, legend_h = _legend([(g, colour[g], False) for g, _ in groups], _TOP + _PLOT_H + 50)
    height = _TOP + _PLOT_H + 40 + legend_h + 4
    return _svg(name, title, "".join(parts) + legend, height, f"{title}: {len(rows)} bars")


def cost_charts(
    frames: Mapping[str, Any], *, by: str, budget: Decimal | float | None, names: Mapping[str, str]
) -> dict[str, str]:
    """The four charts (daily, cumulative, tokens, top) as SVG, from the dashboard's frames."""
    daily = frames.get("daily")
    points = []
    if daily is not None and len(daily):
        for key, part in daily.groupby(by, observed=True, sort=True):
            points += [
                (str(key), _day(d), v) for d, v in zip(part["day"], _floats(part["cost_usd"]), strict=True)
            ]
    per_day = frames.get("cumulative")
    running: list[tuple[dt.date, float]] = []
    if per_day is not None and len(per_day):
        total = 0.0
        for d, v in zip(per_day["day"], _floats(per_day["cost_usd"]), strict=True):
            total += v
            running.append((_day(d), total))
    tokens = frames.get("tokens")
    token_points = []
    if tokens is not None and len(tokens):
        for column, series in (("tokens_in", "in"), ("tokens_out", "out")):
            token_points += [
                (series, _day(d), v) for d, v in zip(tokens["day"], _floats(tokens[column]), strict=True)
            ]
    groups = []
    for key, column, label in (
        ("top_sessions", "session_id", "sessions"),
        ("top_cells", "notebook_cell", "cells"),
    ):
        frame = frames.get(key)
        if frame is not None and len(frame):
            members = [
                (names.get(str(k), str(k)[:8]) if column == "session_id" else str(k), v)
                for k, v in zip(frame[column], _floats(frame["cost_usd"]), strict=True)
            ]
            groups.append((label, members))
    return {
        "daily": stacked_bars("daily", "Daily cost (USD)", "USD", points, _money),
        "cumulative": spend_line(
            "cumulative", "Cumulative spend (USD)", running, float(budget) if budget is not None else None
        ),
        "tokens": stacked_bars("tokens", "Tokens per day", "tokens", token_points, _count),
        "top": ranked_bars("top", "Costliest sessions and cells (USD)", groups),
    }
