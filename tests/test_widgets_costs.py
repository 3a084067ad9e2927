"""CostDashboard: the frames behind the charts are exact, the filters refilter, the budget is drawn."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

from cmdc_nb import accounts, budgets, costs, sessions
from cmdc_nb.store.models import User
from cmdc_nb.widgets import CostDashboard
from cmdc_nb.workspace import Workspace


def _spend(ws: Workspace, user: User) -> tuple[object, object]:
    today = dt.datetime.now(dt.UTC).replace(hour=12, minute=0, second=0, microsecond=0)
    a = sessions.create_session(user, name="Refactor", ws=ws)
    b = sessions.create_session(user, name="Docs", ws=ws)
    plan = [
        (2, a, "openai", "openai/gpt-4o-mini", "0.10", "cell:x1"),
        (2, a, "anthropic", "anthropic/claude-sonnet-4-5", "0.30", "cell:x1"),
        (1, b, "openai", "openai/gpt-4o-mini", "0.05", "cell:x2"),
        (0, b, "openai", "openai/gpt-4o", "0.50", None),
        (0, a, "anthropic", "anthropic/claude-imaginary", None, None),  # no price anywhere: unpriced
    ]
    for days_ago, s, provider, model, cost, cell in plan:
        costs.record_cost(
            user, source_type="agent_call", source_id=uuid.uuid4(), provider=provider, model=model, tokens_in=1000,
            tokens_out=100, cost_usd=cost, session=s, incurred_at=today - dt.timedelta(days=days_ago),
            notebook_cell=cell, ws=ws,
        )  # fmt: skip
    return a, b


def test_the_charts_show_exact_frames_and_follow_the_filters(ws: Workspace, user: User) -> None:
    a, b = _spend(ws, user)
    budgets.create_budget(name="monthly", limit_usd="2", period="monthly", user=user, hard_limit=False, ws=ws)
    dash = CostDashboard(user, days=7, ws=ws)
    daily = dash.frames["daily"]
    assert len(daily) == 5  # 2 days ago: 2 models; yesterday: 1; today: gpt-4o and the unpriced one
    assert sum(Decimal(str(x)) for x in daily["cost_usd"].dropna()) == Decimal("0.95")
    assert {t.name for t in dash.daily.data} == {
        "openai/gpt-4o-mini",
        "anthropic/claude-sonnet-4-5",
        "openai/gpt-4o",
        "anthropic/claude-imaginary",
    }
    assert dash.cumulative.data[0].y[-1] == 0.95 and dash.cumulative.data[1].name == "budget"
    assert dash.cumulative.data[1].y[0] == 2.0
    assert "5 requests · $0.9500 · budget $2" in dash.summary.value and "1 unpriced" in dash.summary.value
    assert [int(x) for x in dash.frames["tokens"]["tokens_in"]] == [2000, 1000, 2000]
    top = dash.frames["top_sessions"]
    assert [str(x) for x in top["session_id"]][:2] == [str(b.id), str(a.id)]  # Docs 0.55 > Refactor 0.40
    assert {t.name for t in dash.top.data} == {"sessions", "cells"}
    dash.by.value = "provider"  # toggling redraws by provider
    assert {t.name for t in dash.daily.data} == {"openai", "anthropic"}
    dash.session.value = str(a.id)  # as picked in the browser
    assert sum(Decimal(str(x)) for x in dash.frames["daily"]["cost_usd"].dropna()) == Decimal("0.40")
    dash.since.value = dash.until.value  # today only
    assert len(dash.frames["costs"]) == 1


def test_everyone_and_an_empty_range(ws: Workspace, user: User) -> None:
    _spend(ws, user)
    other = accounts.create_user("bob@example.com", ws=ws)
    costs.record_cost(
        other,
        source_type="agent_call",
        source_id=uuid.uuid4(),
        provider="openai",
        model="openai/gpt-4o",
        cost_usd="1",
        ws=ws,
    )
    dash = CostDashboard(None, days=7, ws=ws)
    assert sum(Decimal(str(x)) for x in dash.frames["costs"]["cost_usd"].dropna()) == Decimal("1.95")
    assert dash.budget_usd is None and len(dash.cumulative.data) == 1
    dash.since.value = dash.until.value = dt.date(2020, 1, 1)
    assert len(dash.frames["costs"]) == 0 and dash.daily.data == ()
    assert "0 requests" in dash.summary.value


def _marks(dash: CostDashboard, chart: str) -> list[str]:
    """The series of each mark the panel draws in `chart`, as the page receives it."""
    import re

    return re.findall(r'class="cmdc-mark" data-series="([^"]*)"', dash.charts[chart].value)


def test_the_panel_draws_a_mark_per_point_of_each_frame_and_redraws_on_a_filter(
    ws: Workspace, user: User
) -> None:
    a, _ = _spend(ws, user)
    budgets.create_budget(name="monthly", limit_usd="2", period="monthly", user=user, hard_limit=False, ws=ws)
    dash = CostDashboard(user, days=7, ws=ws)
    f = dash.frames
    assert len(_marks(dash, "daily")) == len(f["daily"]) == 5
    assert set(_marks(dash, "daily")) == {m for m in f["daily"]["model"]}
    assert len(_marks(dash, "cumulative")) == len(f["cumulative"]) == 3
    assert 'class="cmdc-budget" data-value="2"' in dash.charts["cumulative"].value
    assert len(_marks(dash, "tokens")) == 2 * len(f["tokens"])
    assert len(_marks(dash, "top")) == len(f["top_sessions"]) + len(f["top_cells"])
    dash.by.value = "provider"
    assert set(_marks(dash, "daily")) == {"openai", "anthropic"}
    dash.session.value = str(a.id)
    assert len(_marks(dash, "daily")) == len(dash.frames["daily"]) == 3  # the unpriced call counts $0
    # the plotly figure of a chart holds the same points, to zoom and hover
    assert sum(len(t.x) for t in dash.figure("daily").data) == 3


def test_a_chart_that_does_not_exist_is_refused_by_name(ws: Workspace, user: User) -> None:
    import pytest

    from cmdc_nb.errors import InvalidInputError

    dash = CostDashboard(user, days=7, ws=ws)
    with pytest.raises(InvalidInputError, match="must be one of daily, cumulative, tokens, top"):
        dash.figure("weekly")
    assert "no data in this range" in dash.charts["daily"].value
