"""Pictures and tables for a report in a notebook that read without a kernel or JavaScript: charts drawn
as SVG (`image/svg+xml`, which JupyterLab, GitHub, nbviewer and nbconvert's HTML show as saved) and money
written for reading — `$1,234.57`, four decimals below a cent (`$0.0042`).

A chart is drawn from a tidy DataFrame (a row per point, a column naming the series) on a white card with
fixed colours, so it reads as a picture in a light or a dark theme alike. Each mark carries its series,
x and value (`data-*`) and says them in a tooltip (`<title>`); the chart's plain text (`repr`) says what
it shows, for readers of the text alone.

>>> daily = frames.by_day(df, by="model")                                                # doctest: +SKIP
>>> bar_chart(daily, x="day", y="cost_usd", color="model", title="Daily cost by model")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as dt
import html
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from typing import Any

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.widgets._svg import ticks as round_ticks

__all__ = ["PALETTE", "Chart", "bar_chart", "formatted", "line_chart", "timeline_chart", "usd"]

# Tableau 10's first eight: told apart by most readers, each ≥ 3:1 against the white card.
PALETTE = ("#4e79a7", "#f28e2b", "#59a14f", "#b07aa1", "#e15759", "#76b7b2", "#9c755f", "#7f7f7f")
_ALERT, _INK, _MUTED, _GRID = "#c62828", "#24292f", "#57606a", "#d0d7de"
_TOP, _BOTTOM, _RIGHT = 44, 64, 24  # the plot area's margins: title above; x labels and legend below

Fmt = Callable[[float], str]


# --- money and percentages for reading ---------------------------------------------------------------


def _decimal(value: Any) -> Decimal | None:
    try:
        d = Decimal(str(value))  # pandas' NA, None and NaN all fail here or are NaN
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def usd(amount: Any) -> str:
    """An amount of USD for reading: two decimals, four below a cent; "—" when it is missing.

    >>> usd(Decimal("3.678451450000")), usd(Decimal("0.000420000000")), usd(0), usd(-1234.5), usd(None)
    ('$3.68', '$0.0004', '$0.00', '-$1,234.50', '—')
    """
    d = _decimal(amount)
    if d is None:
        return "—"
    places = Decimal("0.0001") if 0 < abs(d) < Decimal("0.01") else Decimal("0.01")
    shown = abs(d).quantize(places, rounding=ROUND_HALF_UP)
    if shown == 0 and d != 0:
        return "<$0.0001" if d > 0 else "-<$0.0001"
    return f"{'-' if d < 0 else ''}${shown:,}"


def _percent(value: Any, *, signed: bool) -> str:
    d = _decimal(value)
    if d is None:
        return "—"
    return f"{float(d) * 100:{'+' if signed else ''}.1f} %"


def formatted(
    frame: Any, *, money: Sequence[str] = (), percent: Sequence[str] = (), change: Sequence[str] = ()
) -> Any:
    """A copy of `frame` to show: `money` columns as `usd` text, `percent` columns (fractions) as
    "42.0 %", `change` columns (fractions) with their sign, "+12.5 %". Missing values show "—".

    >>> formatted(frames.by_model(df), money=["cost_usd"])   # doctest: +SKIP
    """
    out = frame.copy()
    for names, write in (
        (money, usd),
        (percent, lambda v: _percent(v, signed=False)),
        (change, lambda v: _percent(v, signed=True)),
    ):
        for name in names:
            if name not in out.columns:
                raise InvalidInputError(f"no column {name!r}; columns are: {', '.join(out.columns)}")
            out[name] = [write(v) for v in out[name].astype(object)]
    return out


# --- charts -------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """An SVG picture. A notebook shows it as `image/svg+xml`; its `repr` is `description`."""

    svg: str
    description: str

    def _repr_svg_(self) -> str:
        return self.svg

    def __repr__(self) -> str:
        return f"<chart: {self.description}>"


def _float(value: Any) -> float:
    d = _decimal(value)
    return float(d) if d is not None else math.nan


def _is_time(value: Any) -> bool:
    return isinstance(value, dt.date) or hasattr(value, "to_pydatetime")


def _label(value: Any) -> str:
    """Days as "Mar 2"; anything else as its text."""
    if _is_time(value):
        return f"{value:%b} {value.day}"
    return str(value)


def _esc(text: Any) -> str:
    return html.escape(str(text), quote=True)


def _tick_format(ticks: list[float], money: bool) -> Fmt:
    exponent = Decimal(repr(ticks[1])).normalize().as_tuple().exponent
    places = max(0, -exponent) if isinstance(exponent, int) else 0
    if money:
        places = max(places, 2) if places else 0  # $2.50, not $2.5
        return lambda v: f"${v:,.{places}f}"
    return lambda v: f"{v:,.{places}f}"


def _svg(title: str, width: float, height: float, body: str) -> str:
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width:g}" height="{height:g}" '
        f'viewBox="0 0 {width:g} {height:g}" role="img" aria-label="{_esc(title)}" font-size="12" '
        f'font-family="system-ui, -apple-system, \'Segoe UI\', Helvetica, Arial, sans-serif" fill="{_INK}">'
        f'<rect width="100%" height="100%" fill="#ffffff" rx="4"/>'
        f'<text x="12" y="24" font-size="15" font-weight="600">{_esc(title)}</text>{body}</svg>'
    )


def _legend(items: Sequence[tuple[str, str, bool]], left: float, y: float, width: float) -> str:
    """Swatches in one row (wrapping) under the plot: (name, colour, dashed)."""
    parts, x = [], left
    for name, colour, dashed in items:
        size = 24 + 7 * len(name)
        if x > left and x + size > width - _RIGHT:
            x, y = left, y + 18
        swatch = (
            f'<line x1="{x:g}" y1="{y - 4:g}" x2="{x + 16:g}" y2="{y - 4:g}" stroke="{colour}" '
            f'stroke-width="2.5" stroke-dasharray="5 3"/>'
            if dashed
            else f'<rect x="{x:g}" y="{y - 10:g}" width="12" height="12" rx="2" fill="{colour}"/>'
        )
        parts.append(f'{swatch}<text x="{x + 20:g}" y="{y:g}">{_esc(name)}</text>')
        x += size
    return "".join(parts)


def _mark(shape: str, series: str, at: Any, value: float, said: str, **attrs: str) -> str:
    drawn = " ".join(f'{k.replace("_", "-")}="{v}"' for k, v in attrs.items())
    return (
        f'<{shape} data-series="{_esc(series)}" data-x="{_esc(at)}" data-value="{value:.10g}" {drawn}>'
        f"<title>{_esc(said)}</title></{shape}>"
    )


def _rows(frame: Any, x: str, y: str, color: str | None) -> list[tuple[str, Any, float]]:
    for name in (x, y, color):
        if name is not None and name not in frame.columns:
            raise InvalidInputError(f"no column {name!r}; columns are: {', '.join(map(str, frame.columns))}")
    series = frame[color].astype(object).tolist() if color is not None else [y] * len(frame)
    return [
        (str(s), at, _float(v))
        for s, at, v in zip(
            series, frame[x].astype(object).tolist(), frame[y].astype(object).tolist(), strict=True
        )
    ]


def _colours(rows: list[tuple[str, Any, float]], *, by_total: bool) -> dict[str, str]:
    """A colour per series, in the frame's order — or by their total, largest first (drawn at the
    bottom of a stack, and first in the legend)."""
    totals: dict[str, float] = {}
    for s, _, v in rows:
        totals[s] = totals.get(s, 0.0) + (v if v == v else 0.0)
    order = sorted(totals, key=lambda s: (-totals[s], s)) if by_total else list(totals)
    return {s: PALETTE[i % len(PALETTE)] for i, s in enumerate(order)}


def _value_axis(
    ticks: list[float], fmt: Fmt, left: float, bottom: float, width: float
) -> tuple[str, Callable[[float], float]]:
    """Grid lines with their labels at the left; returns them and value → y."""
    span = ticks[-1] or 1.0

    def y_of(v: float) -> float:
        return bottom - (v / span) * (bottom - _TOP)

    parts = [
        f'<line x1="{left:g}" x2="{width - _RIGHT:g}" y1="{y_of(t):.1f}" y2="{y_of(t):.1f}" '
        f'stroke="{_MUTED if t == 0 else _GRID}"/><text x="{left - 6:g}" y="{y_of(t) + 4:.1f}" '
        f'text-anchor="end" fill="{_MUTED}">{_esc(fmt(t))}</text>'
        for t in ticks
    ]
    return "".join(parts), lambda v: float(f"{y_of(v):.1f}")


def bar_chart(
    frame: Any,
    *,
    x: str,
    y: str,
    color: str | None = None,
    title: str = "",
    horizontal: bool = False,
    labels: bool = False,
    money: bool = True,
    width: int = 720,
    height: int = 320,
) -> Chart:
    """Bars of `y` per `x` (in the frame's order), stacked by the `color` column's series when given;
    `horizontal` lays them out as rows (the frame's first row on top); `labels` writes each bar's total
    on it. `money` formats the values as USD.

    >>> bar_chart(frames.by_week(df), x="week", y="cost_usd", labels=True, title="Weekly cost")  # doctest: +SKIP
    """
    rows = _rows(frame, x, y, color)
    colours = _colours(rows, by_total=True) if color is not None else {y: PALETTE[0]}
    xs = list(dict.fromkeys(at for _, at, _ in rows))
    totals = {at: 0.0 for at in xs}
    for _, at, v in rows:
        totals[at] += v if v == v and v > 0 else 0.0
    bars = _Bars(
        rows, xs, totals, colours, usd if money else (lambda v: f"{v:,.0f}"), labels, money, width, height,
        [(s, c, False) for s, c in colours.items()] if color is not None else [],
    )  # fmt: skip
    body, height = _hbars(bars) if horizontal else _vbars(bars)
    stacked = f", stacked by {color}: {', '.join(colours)}" if color is not None else ""
    shown = f"{len(xs)} bars ({_label(xs[0])} … {_label(xs[-1])}){stacked}" if xs else "no data"
    return Chart(_svg(title, width, height, body), f"bar chart {title!r}: {shown}")


@dataclass(frozen=True)
class _Bars:
    rows: list[tuple[str, Any, float]]  # (series, x, value)
    xs: list[Any]
    totals: dict[Any, float]
    colours: dict[str, str]
    fmt_value: Fmt
    labels: bool
    money: bool
    width: int
    height: int
    legend: list[tuple[str, str, bool]]


def _vbars(b: _Bars) -> tuple[str, int]:
    rows, xs, totals, colours, fmt_value, width, height = (
        b.rows,
        b.xs,
        b.totals,
        b.colours,
        b.fmt_value,
        b.width,
        b.height,
    )
    ticks = round_ticks(max(totals.values(), default=0.0) * (1.12 if b.labels else 1.0))
    fmt = _tick_format(ticks, b.money)
    left = 16 + 7 * max(len(fmt(t)) for t in ticks)
    bottom = height - _BOTTOM - (18 if len(b.legend) > 4 else 0)
    axis, y_of = _value_axis(ticks, fmt, left, bottom, width)
    band = (width - _RIGHT - left) / max(len(xs), 1)
    centre = {at: left + band * (i + 0.5) for i, at in enumerate(xs)}
    every = max(1, math.ceil(len(xs) / max(1, (width - left) // 64)))
    parts = [axis] + [
        f'<text x="{centre[at]:.1f}" y="{bottom + 16:g}" text-anchor="middle" fill="{_MUTED}">{_esc(_label(at))}</text>'
        for at in xs[::every]
    ]
    base = {at: 0.0 for at in xs}
    for s in colours:  # the largest series at the bottom of every stack
        for series, at, v in rows:
            if series != s or math.isnan(v) or v <= 0:
                continue
            top, low = y_of(base[at] + v), y_of(base[at])
            base[at] += v
            parts.append(
                _mark(
                    "rect", s, _label(at), v, f"{s} · {_label(at)}: {fmt_value(v)}",
                    x=f"{centre[at] - band * 0.36:.1f}", y=f"{top:.1f}", width=f"{band * 0.72:.1f}",
                    height=f"{max(low - top, 0.5):.1f}", fill=colours[s],
                )
            )  # fmt: skip
    if b.labels:
        parts += [
            f'<text x="{centre[at]:.1f}" y="{y_of(totals[at]) - 5:.1f}" text-anchor="middle" '
            f'font-weight="600">{_esc(fmt_value(totals[at]))}</text>'
            for at in xs
        ]
    parts.append(_legend(b.legend, left, bottom + 40, width))
    return "".join(parts), height


def _hbars(b: _Bars) -> tuple[str, int]:
    rows, xs, totals, colours, fmt_value, width = b.rows, b.xs, b.totals, b.colours, b.fmt_value, b.width
    names = [_label(at) if len(_label(at)) <= 44 else _label(at)[:43] + "…" for at in xs]
    left = 20 + 6.6 * max((len(n) for n in names), default=4)
    row_h = 28
    bottom = _TOP + row_h * len(xs)
    height = int(bottom + 34 + (22 if b.legend else 0))
    right = width - _RIGHT - (76 if b.labels else 0)
    ticks = round_ticks(max(totals.values(), default=0.0))
    fmt, span = _tick_format(ticks, b.money), ticks[-1] or 1.0

    def x_of(v: float) -> float:
        return left + v / span * (right - left)

    parts = [
        f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{_TOP:g}" y2="{bottom:g}" '
        f'stroke="{_MUTED if t == 0 else _GRID}"/><text x="{x_of(t):.1f}" y="{bottom + 16:g}" '
        f'text-anchor="middle" fill="{_MUTED}">{_esc(fmt(t))}</text>'
        for t in ticks
    ]
    base = {at: 0.0 for at in xs}
    for i, (at, name) in enumerate(zip(xs, names, strict=True)):
        y = _TOP + row_h * i
        parts.append(
            f'<text x="{left - 8:g}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">{_esc(name)}</text>'
        )
        for series, at2, v in rows:
            if at2 != at or math.isnan(v) or v <= 0:
                continue
            parts.append(
                _mark(
                    "rect", series, _label(at), v, f"{_label(at)} · {series}: {fmt_value(v)}",
                    x=f"{x_of(base[at]):.1f}", y=f"{y + row_h * 0.18:.1f}",
                    width=f"{max(x_of(base[at] + v) - x_of(base[at]), 0.5):.1f}",
                    height=f"{row_h * 0.64:.1f}", fill=colours[series],
                )
            )  # fmt: skip
            base[at] += v
        if b.labels:
            parts.append(
                f'<text x="{x_of(totals[at]) + 6:.1f}" y="{y + row_h / 2 + 4:.1f}" font-weight="600">'
                f"{_esc(fmt_value(totals[at]))}</text>"
            )
    parts.append(_legend(b.legend, left, bottom + 40, width))
    return "".join(parts), height


def _day_number(value: Any) -> float:
    """A date or time as days since 1970-01-01 (UTC), for a linear time axis."""
    if hasattr(value, "to_pydatetime"):
        value = value.to_pydatetime()
    if not isinstance(value, dt.datetime):
        value = dt.datetime.combine(value, dt.time())
    if value.tzinfo is not None:
        value = value.astimezone(dt.UTC).replace(tzinfo=None)
    return float((value - dt.datetime(1970, 1, 1)).total_seconds() / 86400)


def line_chart(
    frame: Any,
    *,
    x: str,
    y: str,
    color: str | None = None,
    title: str = "",
    dashed: Sequence[str] = (),
    rules: Mapping[str, Any] | None = None,
    marks: Sequence[tuple[Any, Any, str]] = (),
    x_range: tuple[Any, Any] | None = None,
    money: bool = True,
    width: int = 720,
    height: int = 340,
) -> Chart:
    """Lines of `y` over time (`x`: dates or datetimes), one per series of the `color` column; the
    series named in `dashed` drawn dashed (a projection, say). `rules` draws labelled horizontal lines
    (a budget: {"budget $500": 500}), `marks` labelled points ((x, y, label): where a threshold was
    crossed), `x_range` widens the time axis (to the end of a month).

    >>> line_chart(spend, x="day", y="usd", color="series", dashed=["projected"],
    ...            rules={"budget": 500}, x_range=(march_1, april_1))             # doctest: +SKIP
    """
    rows = _rows(frame, x, y, color)
    colours = _colours(rows, by_total=False) if color is not None else {y: PALETTE[0]}
    rules = {str(k): _float(v) for k, v in (rules or {}).items()}
    whens = [_day_number(at) for _, at, _ in rows] + [_day_number(at) for at, _, _ in marks]
    whens += [_day_number(at) for at in x_range or ()]
    first, last = (min(whens), max(whens)) if whens else (0.0, 1.0)
    values = [v for _, _, v in rows if v == v] + list(rules.values()) + [_float(v) for _, v, _ in marks]
    ticks = round_ticks(max(values, default=0.0) * 1.08)
    fmt = _tick_format(ticks, money)
    left = 16 + 7 * max(len(fmt(t)) for t in ticks)
    bottom = height - _BOTTOM
    axis, y_of = _value_axis(ticks, fmt, left, bottom, width)
    right = width - _RIGHT

    def x_of(at: Any) -> float:
        return float(f"{left + (_day_number(at) - first) / ((last - first) or 1.0) * (right - left):.1f}")

    parts = [axis, _time_labels(first, last, x_of, bottom, width - left)]
    for label, v in rules.items():
        parts.append(
            f'<line x1="{left:g}" x2="{right:g}" y1="{y_of(v)}" y2="{y_of(v)}" stroke="{_ALERT}" '
            f'stroke-width="1.5" stroke-dasharray="6 4"><title>{_esc(label)}</title></line>'
            f'<text x="{right - 4:g}" y="{y_of(v) - 5:.1f}" text-anchor="end" fill="{_ALERT}">{_esc(label)}</text>'
        )
    for s, colour in colours.items():
        points = [(at, v) for series, at, v in rows if series == s and v == v]
        line = " ".join(f"{x_of(at)},{y_of(v)}" for at, v in points)
        dash = ' stroke-dasharray="7 5"' if s in dashed else ""
        parts.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2.5"{dash}/>')
        parts += [
            _mark(
                "circle", s, _label(at), v, f"{s} · {_label(at)}: {usd(v) if money else v}",
                cx=f"{x_of(at)}", cy=f"{y_of(v)}", r="2.5" if s in dashed else "3.5", fill=colour,
            )
            for at, v in points
        ]  # fmt: skip
    for at, v, label in marks:
        cx, cy = x_of(at), y_of(_float(v))
        parts.append(
            _mark("circle", "mark", _label(at), _float(v), label, cx=f"{cx}", cy=f"{cy}", r="7", fill="none",
                  stroke=_ALERT, stroke_width="2")
            + f'<text x="{cx - 10:.1f}" y="{cy - 10:.1f}" text-anchor="end" fill="{_ALERT}" '
            f'font-weight="600">{_esc(label)}</text>'
        )  # fmt: skip
    parts.append(_legend([(s, c, s in dashed) for s, c in colours.items()], left, bottom + 40, width))
    said = ", ".join(f"{s} ({sum(1 for r in rows if r[0] == s)} points)" for s in colours)
    extra = (f"; lines at {', '.join(rules)}" if rules else "") + (
        f"; marked: {', '.join(label for _, _, label in marks)}" if marks else ""
    )
    return Chart(_svg(title, width, height, "".join(parts)), f"line chart {title!r}: {said}{extra}")


def _time_labels(first: float, last: float, x_of: Callable[[Any], float], bottom: float, room: float) -> str:
    """A tick and a label ("Mar 2") every few days from the first day to the last."""
    start = dt.date(1970, 1, 1) + dt.timedelta(days=math.ceil(first - 1e-9))
    count = math.floor(last + 1e-9) - math.ceil(first - 1e-9) + 1
    every = max(1, math.ceil(count / max(1, room // 70)))
    if every > 1:
        every = 7 * math.ceil(every / 7) if every > 4 else every  # weekly ticks once days are too many
    out = []
    for i in range(0, count, every):
        day = start + dt.timedelta(days=i)
        x = x_of(day)
        out.append(
            f'<line x1="{x}" x2="{x}" y1="{bottom:g}" y2="{bottom + 4:g}" stroke="{_MUTED}"/>'
            f'<text x="{x}" y="{bottom + 16:g}" text-anchor="middle" fill="{_MUTED}">{_label(day)}</text>'
        )
    return "".join(out)


def _seconds(value: Any) -> float | None:
    """A time as seconds since 1970-01-01 (UTC), a number as itself; None when it is missing (None, NaT, NaN)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, int | float | Decimal):
        return float(value)
    try:
        if value != value:  # NaT
            return None
    except TypeError:
        pass
    if not _is_time(value):
        raise InvalidInputError(f"a timeline needs times or numbers of seconds, got {value!r}")
    return _day_number(value) * 86400


def _overlaps(spans: list[tuple[str, float, float]]) -> list[tuple[str, str]]:
    """The pairs of spans that share some time (touching ends do not), in the frame's order."""
    return [
        (a, b) for i, (a, a0, a1) in enumerate(spans) for b, b0, b1 in spans[i + 1 :] if a0 < b1 and b0 < a1
    ]


def _timeline_columns(
    frame: Any, start: str, end: str, label: str, color: str | None
) -> tuple[list[str], list[str], list[float | None], list[float | None]]:
    """The timeline's labels, series, starts and ends (in seconds), read from the frame's columns."""
    for name in (start, end, label, color):
        if name is not None and name not in frame.columns:
            raise InvalidInputError(f"no column {name!r}; columns are: {', '.join(map(str, frame.columns))}")
    labels = [str(v) for v in frame[label].astype(object).tolist()]
    series = (
        [str(v) for v in frame[color].astype(object).tolist()] if color is not None else [label] * len(labels)
    )
    starts = [_seconds(v) for v in frame[start].astype(object).tolist()]
    ends = [_seconds(v) for v in frame[end].astype(object).tolist()]
    return labels, series, starts, ends


def _timeline_spans(
    labels: list[str], starts: list[float | None], ends: list[float | None]
) -> tuple[float, float, list[tuple[str, float, float]]]:
    """The earliest start, the last time known, and each started row's span in seconds from that start
    (a row without an end runs to the last time)."""
    known = [t for t in starts + ends if t is not None]
    origin = min((t for t in starts if t is not None), default=min(known, default=0.0))
    last = max(known, default=origin)
    spans = [
        (name, t0 - origin, (t1 if t1 is not None else last) - origin)
        for name, t0, t1 in zip(labels, starts, ends, strict=True)
        if t0 is not None
    ]
    return origin, last, spans


def timeline_chart(
    frame: Any,
    *,
    start: str,
    end: str,
    label: str,
    color: str | None = None,
    colors: Mapping[str, str] | None = None,
    title: str = "",
    width: int = 720,
) -> Chart:
    """A Gantt-like timeline: a row per row of `frame` (labelled by its `label` column, in the frame's
    order), with a bar from its `start` to its `end` (datetimes, or numbers of seconds) on an axis of
    seconds since the earliest start. Bars are coloured by the `color` column's series (`colors` maps a
    series to its colour; the rest take the palette's); a row without a start says "not started", one
    without an end runs to the last time shown. The chart's text names the rows that overlap in time —
    what ran in parallel.

    >>> timeline_chart(wf.steps_frame(run), start="started_at", end="completed_at", label="step_id",
    ...                color="status", colors={"failed": "#c62828"})                   # doctest: +SKIP
    """
    labels, series, starts, ends = _timeline_columns(frame, start, end, label, color)
    origin, last, spans = _timeline_spans(labels, starts, ends)
    named = dict.fromkeys(s for s, t in zip(series, starts, strict=True) if t is not None)  # drawn ones
    palette = iter(c for c in PALETTE if c not in (colors or {}).values())
    colours = {s: (colors or {}).get(s) or next(palette, PALETTE[-1]) for s in named}

    names = [n if len(n) <= 32 else n[:31] + "…" for n in labels]
    left = 20 + 6.6 * max((len(n) for n in names), default=4)
    row_h = 28
    bottom = _TOP + row_h * len(labels)
    height = int(bottom + 34 + (22 if color is not None else 0))
    right = width - _RIGHT
    ticks = round_ticks(max((t1 for _, _, t1 in spans), default=0.0))
    fmt, span = _tick_format(ticks, False), ticks[-1] or 1.0

    def x_of(t: float) -> float:
        return left + t / span * (right - left)

    parts = [
        f'<line x1="{x_of(t):.1f}" x2="{x_of(t):.1f}" y1="{_TOP:g}" y2="{bottom:g}" '
        f'stroke="{_MUTED if t == 0 else _GRID}"/><text x="{x_of(t):.1f}" y="{bottom + 16:g}" '
        f'text-anchor="middle" fill="{_MUTED}">+{_esc(fmt(t))} s</text>'
        for t in ticks
    ]
    for i, (name, shown, s) in enumerate(zip(labels, names, series, strict=True)):
        y = _TOP + row_h * i
        parts.append(
            f'<text x="{left - 8:g}" y="{y + row_h / 2 + 4:.1f}" text-anchor="end">{_esc(shown)}</text>'
        )
        begun, ended = starts[i], ends[i]
        if begun is None:
            said_status = f"{s} · " if color is not None else ""
            parts.append(
                f'<text x="{left + 6:g}" y="{y + row_h / 2 + 4:.1f}" fill="{_MUTED}" font-style="italic">'
                f"{_esc(said_status)}not started</text>"
            )
            continue
        t0, t1 = begun - origin, (ended if ended is not None else last) - origin
        parts.append(
            _mark(
                "rect", s, name, t1 - t0,
                f"{name}{f' · {s}' if color is not None else ''}: +{t0:.3f} s → +{t1:.3f} s ({t1 - t0:.3f} s)",
                x=f"{x_of(t0):.1f}", y=f"{y + row_h * 0.18:.1f}", width=f"{max(x_of(t1) - x_of(t0), 2.0):.1f}",
                height=f"{row_h * 0.64:.1f}", fill=colours[s], data_start=f"{t0:.6f}", data_end=f"{t1:.6f}",
            )
        )  # fmt: skip
    if color is not None:
        parts.append(_legend([(s, c, False) for s, c in colours.items()], left, bottom + 40, width))
    pairs = _overlaps(spans)
    unstarted = [n for n, t in zip(labels, starts, strict=True) if t is None]
    said = f"{len(labels)} rows ({', '.join(labels)})" if labels else "no data"
    said += f"; overlapping: {', '.join(f'{a} ∥ {b}' for a, b in pairs)}" if pairs else "; none overlap"
    said += f"; not started: {', '.join(unstarted)}" if unstarted else ""
    return Chart(_svg(title, width, height, "".join(parts)), f"timeline {title!r}: {said}")
