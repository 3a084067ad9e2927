"""Writing one benchmark's section of bench/RESULTS.md (between `<!-- key:start -->` and `<!-- key:end -->`),
and its goal rows (issue 26's goals, each a ratio measured in the same run) as a hidden block
`<!-- goals:key {json} -->` that bench/run_all.py turns into the Goals table.

`$CMDC_BENCH_RESULTS` names another file (the harness's test writes to a temporary one);
`$CMDC_BENCH_RUN` (set by run_all.py) names the run a goal block belongs to, and `$CMDC_BENCH_QUICK=1`
marks it as a quick run's."""

from __future__ import annotations

import datetime as dt
import json
import os
import re
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")
RUN_ENV = "CMDC_BENCH_RUN"
QUICK_ENV = "CMDC_BENCH_QUICK"
_GOALS = re.compile(r"<!-- goals:([\w-]+) (\{.*?\}) -->")


def results_path() -> Path:
    return Path(os.environ.get("CMDC_BENCH_RESULTS") or RESULTS)


def _replace_or_append(pattern: re.Pattern[str], block: str) -> None:
    path = results_path()
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    text = (
        pattern.sub(lambda _: block, text, count=1)
        if pattern.search(text)
        else text.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(text, encoding="utf-8")


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section `key` of the results file with `body`."""
    block = f"<!-- {key}:start -->\n{body.strip()}\n<!-- {key}:end -->"
    _replace_or_append(
        re.compile(rf"<!-- {re.escape(key)}:start -->.*?<!-- {re.escape(key)}:end -->", re.S), block
    )


def goal_block(key: str, record: dict[str, Any]) -> str:
    """One line, hidden when rendered; `>` escaped so no string can close the comment."""
    data = json.dumps(record, ensure_ascii=False, separators=(",", ":")).replace(">", "\\u003e")
    return f"<!-- goals:{key} {data} -->"


def write_goals(key: str, goals: list[dict[str, Any]], quick: bool = False) -> None:
    """Replace (or append) scenario `key`'s goal rows: dicts of goal, target, measured (text) and met
    (True, False, or None when this run could not measure it). `quick`: measured at a small size (so
    is every goal of a `run_all.py --quick` run)."""
    for g in goals:
        assert set(g) == {"goal", "target", "measured", "met"}, g
    record = {
        "run": os.environ.get(RUN_ENV),
        "quick": quick or os.environ.get(QUICK_ENV) == "1",
        "at": f"{dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC",
        "goals": goals,
    }
    _replace_or_append(re.compile(rf"<!-- goals:{re.escape(key)} \{{.*?\}} -->"), goal_block(key, record))


def read_goal_blocks(text: str) -> dict[str, dict[str, Any]]:
    """Every scenario's goal record in `text`: {"run", "at", "goals"}."""
    return {m.group(1): json.loads(m.group(2)) for m in _GOALS.finditer(text)}


def read_goals(text: str) -> dict[str, list[dict[str, Any]]]:
    """Every scenario's goal rows in `text`."""
    return {key: record["goals"] for key, record in read_goal_blocks(text).items()}


def _ratio_text(r: float, limit: float) -> str:
    text = f"{r:.2f}"
    return f"{r:.3f}" if float(text) == limit and r != limit else text  # never "0.50×" beside ✗ for ≤ 0.5×


def ratio_goal(
    goal: str,
    limit: float,
    value: float | None,
    base: float | None,
    unit: str,
    why: str = "",
    fmt: str = ".2f",
) -> dict[str, Any]:
    """A goal `value ≤ limit × base`, measured as the ratio (None values: not measured, `why`)."""
    target = f"≤ {limit:g}×"
    if value is None or base is None or base <= 0:
        return {"goal": goal, "target": target, "measured": why or "not measured", "met": None}
    r = value / base
    measured = f"{_ratio_text(r, limit)}× ({value:,{fmt}} / {base:,{fmt}} {unit})"
    return {"goal": goal, "target": target, "measured": measured, "met": r <= limit}


def limit_goal(
    goal: str, limit: float, value: float | None, unit: str, why: str = "", fmt: str = ".2f"
) -> dict[str, Any]:
    """A goal `value ≤ limit` (in `unit`), measured also as the ratio to the limit."""
    target = f"≤ {limit:g} {unit}"
    if value is None:
        return {"goal": goal, "target": target, "measured": why or "not measured", "met": None}
    r = value / limit
    measured = f"{value:,{fmt}} {unit} ({_ratio_text(r, 1.0)}× the goal)"
    return {"goal": goal, "target": target, "measured": measured, "met": value <= limit}
