"""The cost dashboard's charts as plotly figures, built on demand from its frames: to zoom, hover and
export (`CostDashboard.figure(name)`). The panel itself draws SVG (_cost_svg.py); both read the same
frames, so they show the same points."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

__all__ = ["CHARTS", "plotly_figure"]

CHARTS = ("daily", "cumulative", "tokens", "top")
_TITLES = {
    "daily": "Daily cost (USD)",
    "cumulative": "Cumulative spend (USD)",
    "tokens": "Tokens per day",
    "top": "Costliest sessions and cells (USD)",
}


def _floats(series: Any) -> list[float]:
    return [
        float(x) if x is not None and x == x else 0.0
        for x in series.astype("object").where(series.notna(), None)
    ]


def _layout(name: str) -> dict[str, Any]:
    layout: dict[str, Any] = {
        "title": _TITLES[name],
        "height": 320,
        "margin": {"l": 50, "r": 10, "t": 40, "b": 40},
        "legend": {"orientation": "h"},
    }
    if name in ("daily", "tokens"):
        layout["barmode"] = "stack"
    if name == "top":
        layout["yaxis"] = {"automargin": True}
    else:  # "Nov 15", without plotly's second line for the year, which the legend would cover
        layout["xaxis"] = {"tickformat": "%b %d"}
    return layout


def plotly_figure(
    name: str, frames: Mapping[str, Any], *, by: str, budget: Decimal | None, names: Mapping[str, str]
) -> Any:
    """Chart `name` of the dashboard as a `go.Figure`, one trace per series of its frame."""
    import plotly.graph_objects as go

    fig = go.Figure(layout=_layout(name))
    if name == "daily" and len(frames.get("daily", ())):
        for key, part in frames["daily"].groupby(by, observed=True, sort=True):
            fig.add_trace(go.Bar(x=list(part["day"]), y=_floats(part["cost_usd"]), name=str(key)))
    elif name == "cumulative":
        per_day = frames.get("cumulative")
        days = list(per_day["day"]) if per_day is not None else []
        running, total = [], 0.0
        for x in _floats(per_day["cost_usd"]) if per_day is not None else []:
            total += x
            running.append(total)
        fig.add_trace(go.Scatter(x=days, y=running, mode="lines+markers", name="spent"))
        if budget is not None and days:
            line = {"dash": "dash", "color": "#cf222e"}
            fig.add_trace(
                go.Scatter(
                    x=[days[0], days[-1]], y=[float(budget)] * 2, mode="lines", name="budget", line=line
                )
            )
    elif name == "tokens" and frames.get("tokens") is not None:
        t = frames["tokens"]
        fig.add_trace(go.Bar(x=list(t["day"]), y=[int(v) for v in t["tokens_in"]], name="in"))
        fig.add_trace(go.Bar(x=list(t["day"]), y=[int(v) for v in t["tokens_out"]], name="out"))
    elif name == "top":
        for key, column, label in (
            ("top_sessions", "session_id", "sessions"),
            ("top_cells", "notebook_cell", "cells"),
        ):
            frame = frames.get(key)
            if frame is None or not len(frame):
                continue
            shown = [
                names.get(str(k), str(k)[:8]) if column == "session_id" else str(k) for k in frame[column]
            ]
            fig.add_trace(
                go.Bar(y=shown[::-1], x=_floats(frame["cost_usd"])[::-1], orientation="h", name=label)
            )
    return fig
