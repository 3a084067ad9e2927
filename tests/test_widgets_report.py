"""Report pictures and tables: money written for reading, and charts whose drawn marks are the data —
a bar per value stacked to its day's total, a point per value on a line, the rules and marks where asked
— as SVG that parses, escapes what it writes and shows as `image/svg+xml`."""

from __future__ import annotations

import datetime as dt
import xml.etree.ElementTree as ET
from decimal import Decimal

import pandas as pd
import pytest

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.widgets.report import PALETTE, bar_chart, formatted, line_chart, timeline_chart, usd

SVG = "{http://www.w3.org/2000/svg}"


def drawn(svg: str, shape: str) -> list[dict[str, str]]:
    """The data marks of one shape: their attributes and the tooltip they say."""
    root = ET.fromstring(svg)
    return [
        {**el.attrib, "said": el.findtext(f"{SVG}title") or ""}
        for el in root.iter(f"{SVG}{shape}")
        if "data-series" in el.attrib
    ]


def texts(svg: str) -> list[str]:
    return [el.text or "" for el in ET.fromstring(svg).iter(f"{SVG}text")]


def test_money_reads_in_cents_or_four_decimals_below_a_cent() -> None:
    assert [usd(x) for x in (Decimal("3.678451450000"), Decimal("0E-12"), "1234.5", -0.5)] == [
        "$3.68",
        "$0.00",
        "$1,234.50",
        "-$0.50",
    ]
    assert [usd(x) for x in (Decimal("0.000420"), Decimal("0.00995"), Decimal("0.00001"))] == [
        "$0.0004",
        "$0.0100",  # rounds up to a cent, still shown as a sub-cent amount
        "<$0.0001",
    ]
    assert [usd(x) for x in (None, pd.NA, float("nan"))] == ["—", "—", "—"]


def test_formatted_writes_money_and_percentages_and_leaves_the_rest() -> None:
    frame = pd.DataFrame(
        {
            "model": ["a", "b"],
            "cost": [Decimal("12.345"), None],
            "share": [0.4567, 0.0],
            "change": [0.125, -0.5],
        }
    )
    out = formatted(frame, money=["cost"], percent=["share"], change=["change"])
    assert out.values.tolist() == [["a", "$12.35", "45.7 %", "+12.5 %"], ["b", "—", "0.0 %", "-50.0 %"]]
    assert frame["cost"].tolist()[0] == Decimal("12.345")  # the frame itself is untouched
    with pytest.raises(InvalidInputError, match="columns are"):
        formatted(frame, money=["price"])


def daily_frame() -> pd.DataFrame:
    days = pd.to_datetime(["2026-03-02", "2026-03-02", "2026-03-03", "2026-03-04"]).astype("datetime64[s]")
    return pd.DataFrame(
        {
            "day": days,
            "model": ["big <&> model", "small", "small", "big <&> model"],
            "cost_usd": [Decimal("3"), Decimal("1"), Decimal("2"), Decimal("0")],
        }
    )


def test_stacked_bars_draw_one_bar_per_value_stacked_to_the_day_total() -> None:
    chart = bar_chart(daily_frame(), x="day", y="cost_usd", color="model", title="Daily <cost>")
    bars = drawn(chart.svg, "rect")
    # the $0 value draws nothing; the largest series (by total) is the first colour and the bottom of a stack
    assert [(b["data-series"], b["data-x"], float(b["data-value"])) for b in bars] == [
        ("big <&> model", "Mar 2", 3.0),
        ("small", "Mar 2", 1.0),
        ("small", "Mar 3", 2.0),
    ]
    assert [b["fill"] for b in bars] == [PALETTE[0], PALETTE[1], PALETTE[1]]
    big, small_on_top = bars[0], bars[1]
    assert float(small_on_top["y"]) + float(small_on_top["height"]) == pytest.approx(float(big["y"]), abs=0.2)
    assert float(big["height"]) == pytest.approx(3 * float(small_on_top["height"]), abs=0.3)
    assert bars[0]["said"] == "big <&> model · Mar 2: $3.00"
    assert {"Daily <cost>", "Mar 2", "Mar 3", "Mar 4", "big <&> model", "small", "$0", "$4"} <= set(
        texts(chart.svg)
    )
    assert repr(chart) == (
        "<chart: bar chart 'Daily <cost>': 3 bars (Mar 2 … Mar 4), stacked by model: big <&> model, small>"
    )
    assert chart._repr_svg_() == chart.svg


def test_horizontal_bars_keep_the_frames_order_and_label_their_totals() -> None:
    frame = pd.DataFrame({"project": ["Parser", "Docs"], "cost_usd": [Decimal("219.56"), Decimal("0.004")]})
    chart = bar_chart(frame, x="project", y="cost_usd", horizontal=True, labels=True, title="By project")
    bars = drawn(chart.svg, "rect")
    assert [(b["data-x"], float(b["y"])) for b in bars] == [("Parser", 49.0), ("Docs", 77.0)]  # first on top
    assert float(bars[0]["width"]) > 100 * float(bars[1]["width"])
    assert {"Parser", "Docs", "$219.56", "$0.0040"} <= set(texts(chart.svg))


def test_a_line_per_series_with_rules_marks_and_a_wider_time_axis() -> None:
    start = dt.datetime(2026, 3, 1, tzinfo=dt.UTC)
    frame = pd.DataFrame(
        {
            "at": [start, start + dt.timedelta(days=1), start + dt.timedelta(days=2), start + dt.timedelta(days=2),
                   start + dt.timedelta(days=30)],
            "usd": [0.0, 40.0, 90.0, 90.0, 300.0],
            "series": ["spent", "spent", "spent", "projected", "projected"],
        }
    )  # fmt: skip
    chart = line_chart(
        frame,
        x="at",
        y="usd",
        color="series",
        dashed=["projected"],
        rules={"budget $140.00": Decimal(140)},
        marks=[(start + dt.timedelta(days=1, hours=12), "70", "50 %")],
        x_range=(start, start + dt.timedelta(days=31)),
        title="March",
    )
    root = ET.fromstring(chart.svg)
    lines = {el.get("stroke"): el for el in root.iter(f"{SVG}polyline")}
    spent, projected = lines[PALETTE[0]], lines[PALETTE[1]]  # colours in the frame's order
    assert spent.get("stroke-dasharray") is None and projected.get("stroke-dasharray") == "7 5"
    xs = [float(point.split(",")[0]) for point in spent.get("points", "").split()]
    assert len(xs) == 3 and xs == sorted(xs)
    assert xs[1] - xs[0] == pytest.approx(xs[2] - xs[1], abs=0.2)  # a day is a day
    assert float(projected.get("points", "").split()[-1].split(",")[0]) < 720 - 24  # room for 31 March
    points = drawn(chart.svg, "circle")
    assert [(p["data-series"], float(p["data-value"])) for p in points][-1] == ("mark", 70.0)
    assert points[-1]["said"] == "50 %"
    assert {"budget $140.00", "50 %", "Mar 1", "spent", "projected"} <= set(texts(chart.svg))
    assert repr(chart) == (
        "<chart: line chart 'March': spent (3 points), projected (2 points); lines at budget $140.00; marked: 50 %>"
    )


def test_a_chart_of_nothing_still_draws_and_says_so() -> None:
    empty = pd.DataFrame({"day": [], "cost_usd": []})
    chart = bar_chart(empty, x="day", y="cost_usd", title="Nothing yet")
    assert repr(chart) == "<chart: bar chart 'Nothing yet': no data>"
    assert drawn(chart.svg, "rect") == [] and "Nothing yet" in texts(chart.svg)
    with pytest.raises(InvalidInputError, match="columns are"):
        bar_chart(empty, x="week", y="cost_usd")


def test_a_timeline_draws_each_started_row_from_its_start_to_its_end() -> None:
    t = pd.Timestamp("2026-03-02 09:00", tz="UTC")
    steps = pd.DataFrame(
        {
            "step_id": ["fetch", "lint", "tests", "review <b>"],
            "status": ["completed", "completed", "failed", "cancelled"],
            "started_at": [t, t + pd.Timedelta("1s"), t + pd.Timedelta("1.5s"), pd.NaT],
            "completed_at": [t + pd.Timedelta("1s"), t + pd.Timedelta("4s"), t + pd.Timedelta("2s"), t],
        }
    )
    chart = timeline_chart(
        steps, start="started_at", end="completed_at", label="step_id", color="status",
        colors={"failed": "#c62828"}, title="A run",
    )  # fmt: skip
    bars = drawn(chart.svg, "rect")
    assert [(b["data-x"], float(b["data-start"]), float(b["data-end"])) for b in bars] == [
        ("fetch", 0.0, 1.0),
        ("lint", 1.0, 4.0),
        ("tests", 1.5, 2.0),
    ]
    # x grows with time, and a bar's width is its duration on the axis
    xs = [float(b["x"]) for b in bars]
    assert xs[0] < xs[1] < xs[2]
    scale = float(bars[1]["width"]) / 3.0
    assert float(bars[0]["width"]) == pytest.approx(scale, abs=0.2)
    assert [b["fill"] for b in bars] == [PALETTE[0], PALETTE[0], "#c62828"]
    assert bars[2]["said"] == "tests · failed: +1.500 s → +2.000 s (0.500 s)"
    shown = texts(chart.svg)
    assert "cancelled · not started" in shown and "review <b>" in shown  # escaped, and said
    assert "+0 s" in shown and "cancelled" not in shown  # the legend names only what is drawn
    # the text says what ran in parallel: touching ends (fetch → lint) do not overlap
    assert repr(chart) == (
        "<chart: timeline 'A run': 4 rows (fetch, lint, tests, review <b>); overlapping: lint ∥ tests; "
        "not started: review <b>>"
    )
    assert chart._repr_svg_() == chart.svg


def test_a_timeline_takes_seconds_and_runs_an_unfinished_row_to_the_last_time() -> None:
    frame = pd.DataFrame({"job": ["a", "b"], "t0": [10.0, 12.0], "t1": [14.0, None]})
    chart = timeline_chart(frame, start="t0", end="t1", label="job")
    assert [(float(b["data-start"]), float(b["data-end"])) for b in drawn(chart.svg, "rect")] == [
        (0.0, 4.0),
        (2.0, 4.0),
    ]
    assert "overlapping: a ∥ b" in repr(chart)
    with pytest.raises(InvalidInputError, match="no column 'start'"):
        timeline_chart(frame, start="start", end="t1", label="job")
    with pytest.raises(InvalidInputError, match="times or numbers of seconds"):
        timeline_chart(frame.assign(t0=["soon", "later"]), start="t0", end="t1", label="job")
