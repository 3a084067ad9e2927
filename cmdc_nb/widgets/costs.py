"""CostDashboard: the costs of a user or a workspace in four charts — daily cost stacked by model or
provider, cumulative spend against a budget, tokens per day, the costliest sessions and notebook cells —
with filters for the date range, the user and the session. `.frames` holds the DataFrame behind each
chart; `.daily`, `.cumulative`, `.tokens` and `.top` give each chart as a plotly figure, to zoom and hover
(`dash.daily.show()`) or export.

The panel draws its charts as inline SVG (widgets/_cost_svg.py), the same picture its static snapshot
carries, coloured from the theme. Not as plotly outputs: plotly.js is 5 MB per page (and per chart in a
saved widget state), `go.FigureWidget` loses its data when anywidget's 2 s start-up budget runs out on a
busy page, and JupyterLab's plotly renderer keeps replaced charts alive off the page, each of which then
fails at every resize of the window. An SVG redraw is a string replaced, whatever the order of loading,
re-running and refreshing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import ipywidgets as w

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.services import accounts, frames, sessions
from cmdc_nb.widgets._cost_plotly import CHARTS, plotly_figure
from cmdc_nb.widgets._cost_svg import cost_charts
from cmdc_nb.widgets._snapshot import Snapshot, static_html
from cmdc_nb.widgets._theme import PANEL_CSS

__all__ = ["CostDashboard"]

_COLUMNS = [
    "day",
    "session_id",
    "provider",
    "model",
    "notebook_cell",
    "tokens_in",
    "tokens_out",
    "cache_tokens_read",
    "cost_usd",
]


class CostDashboard(Snapshot, w.VBox):  # type: ignore[misc]
    """Costs of `user` (None: everyone in the workspace) over the last `days` days. `refresh()` re-reads;
    `budget_usd` draws a line on the cumulative chart (default: the user's first monthly budget). It fits
    the output area (two charts a row where they fit, else one); `width` caps it, in pixels.

        CostDashboard(me, days=30, by="provider")"""

    def __init__(
        self,
        user: Any = None,
        *,
        session: Any = None,
        days: int = 30,
        by: str = "model",
        budget_usd: Decimal | float | str | None = None,
        ws: Any = None,
        width: int | None = None,
    ) -> None:
        """Long because it builds the filters, the four chart slots and the grid in one pass."""
        from cmdc_nb._plumbing.workspace import get_workspace

        super().__init__([])
        self.ws = get_workspace(ws)
        self.frames: dict[str, Any] = {}
        today = dt.datetime.now(dt.UTC).date()
        self.since = w.DatePicker(
            description="From", value=today - dt.timedelta(days=days - 1), layout=w.Layout(width="220px")
        )
        self.until = w.DatePicker(description="To", value=today, layout=w.Layout(width="220px"))
        self.by = w.ToggleButtons(options=["model", "provider"], value=by, style={"button_width": "80px"})
        users = accounts.list_users(limit=200, ws=self.ws).entries
        self.user = w.Dropdown(
            description="User", options=[("everyone", "")] + [(u.email, str(u.id)) for u in users],
            value=str(getattr(user, "id", user)) if user is not None else "", layout=w.Layout(width="280px"),
        )  # fmt: skip
        # "" means all (a Dropdown shows None as an empty choice)
        self.session = w.Dropdown(
            description="Session", options=[("all", "")], value="", layout=w.Layout(width="320px")
        )
        self._fill_sessions(session)
        self.budget_usd = Decimal(str(budget_usd)) if budget_usd is not None else self._default_budget()
        self.summary = w.HTML()
        # No width: a chart takes its grid cell's, which the output area bounds (see _theme.PANEL_CSS).
        self.charts: dict[str, w.HTML] = {}
        for name in CHARTS:
            self.charts[name] = w.HTML()
            self.charts[name].add_class("cmdc-chart")
            self.charts[name].add_class(f"cmdc-chart-{name}")
        refresh = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="100px"))
        refresh.on_click(lambda _: self.refresh())
        for control in (self.since, self.until, self.by, self.session):
            control.observe(lambda _: self.refresh(), names="value")
        self.user.observe(self._user_changed, names="value")
        rows = [
            w.HBox([w.HTML('<span class="cmdc-title">Costs</span>'), self.summary]),
            w.HBox([self.since, self.until, self.by, refresh]),
            w.HBox([self.user, self.session]),
        ]
        for row in rows:
            row.add_class("cmdc-row")
        self.grid = w.Box(list(self.charts.values()))
        self.grid.add_class("cmdc-charts")
        self.children = [w.HTML(PANEL_CSS), *rows, self.grid, self._view_probe()]
        if width is not None:
            self.layout.max_width = f"{width}px"
        self.add_class("cmdc-panel")
        self.add_class("cmdc-costs")
        self.refresh()

    def __repr__(self) -> str:
        since, until = self.since.value, self.until.value
        days = (until - since).days + 1 if since and until else "all"
        return f"<CostDashboard requests={len(self.frames.get('costs', []))} days={days}>"

    def _snapshot_html(self) -> str:
        """The filters as set, the summary, and each chart as the panel draws it."""
        return static_html(
            self,
            {
                id(out): f'<div class="cmdc-chart cmdc-chart-{n}">{out.value}</div>'
                for n, out in self.charts.items()
            },
        )

    @property
    def user_id(self) -> str | None:
        return self.user.value or None

    @property
    def session_id(self) -> str | None:
        return self.session.value or None

    def _fill_sessions(self, selected: Any = None) -> None:
        uid = self.user_id
        options: list[tuple[str, str]] = [("all", "")]
        if uid is not None:
            options += [
                (s.name, str(s.id)) for s in sessions.list_sessions(uid, limit=200, ws=self.ws).entries
            ]
        self.session.options = options
        sid = str(getattr(selected, "id", selected)) if selected is not None else ""
        self.session.value = sid if any(v == sid for _, v in options) else ""

    def _user_changed(self, _: Any) -> None:
        self._fill_sessions()
        self.budget_usd = self._default_budget()
        self.refresh()

    def _default_budget(self) -> Decimal | None:
        from cmdc_nb.services import budgets

        if self.user_id is None:
            return None
        found = [
            b
            for b in budgets.list_budgets(user=self.user_id, ws=self.ws).entries
            if str(getattr(b.period, "value", b.period)) == "monthly"
        ]
        return found[0].limit_usd if found else None

    def refresh(self) -> dict[str, Any]:
        """Re-read the costs for the current filters and redraw every chart."""
        import pandas as pd

        since = dt.datetime.combine(self.since.value, dt.time(), dt.UTC) if self.since.value else None
        until = (
            dt.datetime.combine(self.until.value + dt.timedelta(days=1), dt.time(), dt.UTC)
            if self.until.value
            else None
        )
        df = frames.costs_frame(
            user=self.user_id,
            session=self.session_id,
            since=since,
            until=until,
            columns=_COLUMNS,
            ws=self.ws,
        )
        by = self.by.value
        daily = frames.by_day(df, by=by) if len(df) else pd.DataFrame({"day": [], by: [], "cost_usd": []})
        per_day = frames.by_day(df) if len(df) else pd.DataFrame({"day": [], "cost_usd": []})
        tokens = (
            df.assign(tokens_in=df["tokens_in"] + df["cache_tokens_read"]).groupby("day", sort=True)[["tokens_in", "tokens_out"]].sum().reset_index()
            if len(df) else pd.DataFrame({"day": [], "tokens_in": [], "tokens_out": []})
        )  # fmt: skip
        top_sessions = frames.top_n(df, "session_id", n=8) if len(df) else pd.DataFrame()
        top_cells = (
            frames.top_n(df.dropna(subset=["notebook_cell"]), "notebook_cell", n=5)
            if len(df) and df["notebook_cell"].notna().any()
            else pd.DataFrame()
        )
        self.frames = {
            "costs": df,
            "daily": daily,
            "cumulative": per_day,
            "tokens": tokens,
            "top_sessions": top_sessions,
            "top_cells": top_cells,
        }
        self._draw(by)
        total = sum((Decimal(str(x)) for x in df["cost_usd"].dropna()), Decimal(0)) if len(df) else Decimal(0)
        unpriced = int(df["cost_usd"].isna().sum()) if len(df) else 0
        budget = f" · budget ${self.budget_usd}" if self.budget_usd is not None else ""
        self.summary.value = (
            f'<span class="cmdc-stats">&nbsp;{len(df):,} requests · ${total:.4f}{budget}'
            + (f" · {unpriced} unpriced" if unpriced else "") + "</span>"
        )  # fmt: skip
        self._snapshot_changed()
        return self.frames

    def _draw(self, by: str) -> None:
        svgs = cost_charts(self.frames, by=by, budget=self.budget_usd, names=self._session_names())
        for name, chart in self.charts.items():
            chart.value = svgs[name]

    def figure(self, name: str) -> Any:
        """Chart `name` ("daily", "cumulative", "tokens" or "top") as a plotly figure, from the frames of
        the last refresh: `dash.figure("daily").show()` to zoom and hover, `.write_html(…)` to share."""
        if name not in CHARTS:
            raise InvalidInputError(f"must be one of {', '.join(CHARTS)}", field="name")
        return plotly_figure(
            name, self.frames, by=self.by.value, budget=self.budget_usd, names=self._session_names()
        )

    @property
    def daily(self) -> Any:
        """The daily cost, stacked by model or provider, as a plotly figure."""
        return self.figure("daily")

    @property
    def cumulative(self) -> Any:
        """The cumulative spend (and the budget) as a plotly figure."""
        return self.figure("cumulative")

    @property
    def tokens(self) -> Any:
        """The tokens in and out per day as a plotly figure."""
        return self.figure("tokens")

    @property
    def top(self) -> Any:
        """The costliest sessions and notebook cells as a plotly figure."""
        return self.figure("top")

    def _session_names(self) -> dict[str, str]:
        return {v: label for label, v in self.session.options if v}
