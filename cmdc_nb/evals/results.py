"""An eval's results as frames and a chart: one row per case and model, a summary per model (mean score
with a bootstrap confidence interval, pass rate, cost per case and per correct answer, p50/p95
latency), the cost–quality Pareto front, and that front drawn with plotly."""

from __future__ import annotations

import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb.store.models import WorkflowStep

__all__ = ["pareto_figure", "results_frame", "summary_frame"]

BOOTSTRAP_SAMPLES = 2000


def result_rows(
    ws: Any, run_id: Any, scorer_names: Sequence[str], cases: Sequence[dict[str, Any]], models: Sequence[str]
) -> list[dict[str, Any]]:
    """One dict per step of the run, in case-then-model order; cases not yet run have status only."""
    with ws.read() as db:
        steps = db.execute(
            sa.select(
                WorkflowStep.step_id, WorkflowStep.status, WorkflowStep.output, WorkflowStep.error_message
            )
            .where(WorkflowStep.workflow_run_id == run_id)
            .order_by(WorkflowStep.sequence)
        ).all()
    expected = {c["id"]: c.get("expected") for c in cases}
    inputs = {c["id"]: c.get("inputs") for c in cases}
    out = []
    for (i, j), status, output, error in sorted((_position(r[0]), *r[1:]) for r in steps):
        case_id, model = cases[i]["id"], models[j]
        o = output if isinstance(output, dict) else {}
        row: dict[str, Any] = {
            "case": case_id,
            "model": model,
            "status": status.value,
            "passed": bool(o.get("passed", False)) if o else None,
            "score": o.get("score"),
        }
        scores = o.get("scores") or {}
        for name in scorer_names:
            row[f"score_{name}"] = (scores.get(name) or {}).get("value")
        for name in scorer_names:
            row[f"reason_{name}"] = (scores.get(name) or {}).get("reason")
        row.update(
            inputs=inputs.get(case_id),
            output=o.get("output"),
            expected=expected.get(case_id),
            error=o.get("error") or (error if status.value == "failed" else None),
            cost_usd=Decimal(o["cost_usd"]) if o.get("cost_usd") is not None else None,
            judge_cost_usd=Decimal(o["judge_cost_usd"]) if o.get("judge_cost_usd") is not None else None,
            tokens_in=o.get("tokens_in"),
            tokens_out=o.get("tokens_out"),
            latency_s=o.get("latency_s"),
            session_id=o.get("session_id"),
            replayed=bool(o.get("replayed", False)) if o else None,
        )
        out.append(row)
    return out


def _position(step_id: str) -> tuple[int, int]:
    """(case, model) of a step id `c00012-m1`."""
    case, model = step_id.split("-")
    return int(case[1:]), int(model[1:])


def results_frame(rows: list[dict[str, Any]], scorer_names: Sequence[str]) -> Any:
    """The rows as a typed frame. Costs stay exact Decimals (object columns); sum them exactly."""
    import pandas as pd

    cols = [
        "case", "model", "status", "passed", "score",
        *[f"score_{n}" for n in scorer_names], *[f"reason_{n}" for n in scorer_names],
        "inputs", "output", "expected", "error", "cost_usd", "judge_cost_usd",
        "tokens_in", "tokens_out", "latency_s", "session_id", "replayed",
    ]  # fmt: skip
    frame = pd.DataFrame(rows, columns=cols)
    for c in ["score", *[f"score_{n}" for n in scorer_names], "latency_s"]:
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("float64")
    for c in ("tokens_in", "tokens_out"):
        frame[c] = pd.to_numeric(frame[c], errors="coerce").astype("Int64")
    frame["passed"] = frame["passed"].astype("boolean")
    frame["replayed"] = frame["replayed"].astype("boolean")
    for c in ("case", "model", "status"):
        frame[c] = frame[c].astype("string")
    return frame


def bootstrap_ci(
    values: Sequence[float], *, level: float = 0.95, samples: int = BOOTSTRAP_SAMPLES, seed: int = 0
) -> tuple[float, float]:
    """A percentile bootstrap interval for the mean (seeded: the same numbers every time)."""
    import numpy as np

    data = np.asarray(list(values), dtype="float64")
    if data.size == 0:
        return (math.nan, math.nan)
    if data.size == 1:
        return (float(data[0]), float(data[0]))
    rng = np.random.default_rng(seed)
    means = data[rng.integers(0, data.size, size=(samples, data.size))].mean(axis=1)
    lo, hi = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return (float(lo), float(hi))


def summary_frame(frame: Any) -> Any:
    """Per model: cases scored, errors, mean score and its 95 % bootstrap interval, pass rate, exact
    cost (task, judge), cost per case and per correct answer, p50/p95 latency, and whether the model is
    on the cost–quality Pareto front (no other model both cheaper per case and better on mean score)."""
    import pandas as pd

    out = []
    for model, g in frame.groupby("model", sort=False):
        done = g[g["status"] == "completed"]
        scores = done["score"].dropna().tolist()
        lo, hi = bootstrap_ci(scores)
        cost = sum((c for c in done["cost_usd"] if c is not None), Decimal(0))
        judge = sum((c for c in done["judge_cost_usd"] if c is not None), Decimal(0))
        correct = int(done["passed"].fillna(False).sum())
        n = len(done)
        lat = done["latency_s"].dropna()
        out.append(
            {
                "model": model,
                "cases": n,
                "errors": int(done["error"].notna().sum()),
                "mean_score": sum(scores) / len(scores) if scores else math.nan,
                "ci_low": lo,
                "ci_high": hi,
                "pass_rate": correct / n if n else math.nan,
                "correct": correct,
                "cost_usd": cost,
                "judge_cost_usd": judge,
                "cost_per_case_usd": _money(cost / n) if n else None,
                "cost_per_correct_usd": _money(cost / correct) if correct else None,
                "latency_p50_s": float(lat.quantile(0.5)) if len(lat) else math.nan,
                "latency_p95_s": float(lat.quantile(0.95)) if len(lat) else math.nan,
            }
        )
    summary = pd.DataFrame(out)
    if len(summary):
        summary["pareto"] = _front(summary)
        summary = summary.set_index("model")
    return summary


def _money(value: Decimal) -> Decimal:
    """A quotient at the stored money's precision (12 places), not Decimal's 28 digits."""
    return value.quantize(Decimal("1e-12"))


def _front(summary: Any) -> list[bool]:
    points = [
        (float(c) if c is not None else math.inf, s)
        for c, s in zip(summary["cost_per_case_usd"], summary["mean_score"], strict=True)
    ]
    front = []
    for i, (c, s) in enumerate(points):
        dominated = any(
            (c2 <= c and s2 >= s) and (c2 < c or s2 > s) for j, (c2, s2) in enumerate(points) if j != i
        )
        front.append(not dominated and not math.isnan(s))
    return front


def pareto_figure(summary: Any, *, title: str = "Cost and quality") -> Any:
    """Each model at (cost per case, mean score) with its 95 % interval; the Pareto front as a line."""
    import plotly.graph_objects as go

    s = summary.reset_index()
    x = [float(c) if c is not None else None for c in s["cost_per_case_usd"]]
    y = s["mean_score"].tolist()
    fig = go.Figure()
    fig.add_trace(
        go.Scatter(
            x=x,
            y=y,
            mode="markers+text",
            text=s["model"].tolist(),
            textposition="top center",
            name="models",
            marker={"size": 12, "color": ["#1f77b4" if p else "#9aa0a6" for p in s["pareto"]]},
            error_y={
                "type": "data",
                "symmetric": False,
                "array": [h - m for h, m in zip(s["ci_high"], y, strict=True)],
                "arrayminus": [m - lo for lo, m in zip(s["ci_low"], y, strict=True)],
            },
            customdata=list(zip(s["pass_rate"], s["cases"], strict=True)),
            hovertemplate="%{text}<br>$%{x:.6f} a case<br>mean score %{y:.3f}<br>pass rate %{customdata[0]:.0%} "
            "of %{customdata[1]}<extra></extra>",
        )
    )
    front = sorted((xi, yi) for xi, yi, p in zip(x, y, s["pareto"], strict=True) if p and xi is not None)
    if len(front) > 1:
        fig.add_trace(
            go.Scatter(
                x=[p[0] for p in front],
                y=[p[1] for p in front],
                mode="lines",
                name="Pareto front",
                line={"dash": "dot", "color": "#1f77b4"},
                hoverinfo="skip",
            )
        )
    fig.update_layout(
        title=title,
        xaxis_title="cost per case (USD)",
        yaxis_title="mean score",
        yaxis={"range": [-0.05, 1.1]},
        showlegend=False,
        margin={"l": 60, "r": 20, "t": 50, "b": 50},
    )
    return fig
