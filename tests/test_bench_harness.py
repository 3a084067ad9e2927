"""The benchmark harness (bench/run_all.py) in quick mode: it runs the scenarios it is asked for, each in
its own process, and assembles a results file with the machine, the versions, a status table, the Goals
table (issue 26) and every section — here into a temporary file, and for the scenarios that need no peer
venv."""

from __future__ import annotations

import importlib
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from waiting import CEILING_S

ROOT = Path(__file__).resolve().parents[1]


def goal_rows(text: str) -> list[list[str]]:
    """The Goals table's rows: scenario, goal, target, this run, met."""
    part = text.split("## Goals (issue 26)", 1)[1].split('<a id="', 1)[0]
    return [
        [cell.strip() for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        for line in part.splitlines()
        if line.startswith("| [")
    ]


def test_run_all_quick_assembles_the_results(tmp_path: Path) -> None:
    out = tmp_path / "RESULTS.md"
    env = {**os.environ, "CMDC_BENCH_RESULTS": str(out)}
    env.pop("CMDC_TEST_PG_URL", None)  # SQLite only here; the PostgreSQL halves are the same code
    env.pop("CMDC_BENCH_PG_URL", None)
    proc = subprocess.run(
        [sys.executable, "bench/run_all.py", "--quick", "--only", "frames,workflows"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    text = out.read_text()
    assert "quick mode" in text and "Machine:" in text and "litellm" in text
    assert "| [4. Cost analytics](#frames) | measured |" in text
    assert "| [6. Workflows](#workflows) | measured |" in text
    assert "| [1. Agent loop overhead](#agent-loop) | never run |" in text
    assert (
        "20,000 cost records" in text and "The rollups, the grouped records and pandas agree exactly" in text
    )
    assert "SQLite: True" in text
    assert "100-step DAG" in text
    # the Goals table, right after the status table, from this run's figures
    assert (
        text.index("| [7. Start-up](#startup) |") < text.index("## Goals (issue 26)") < text.index('<a id="')
    )
    rows = goal_rows(text)
    for key in ("frames", "workflows"):
        ours = [r for r in rows if r[0].startswith("[") and f"](#{key})" in r[0]]
        assert ours and not any("earlier" in r[0] for r in ours), rows
        sqlite = [r for r in ours if r[1].startswith("SQLite")]
        assert sqlite and all(r[4] in ("✓", "✗") for r in sqlite), sqlite
        assert all(r[4] == "—" and "no PostgreSQL URL" in r[3] for r in ours if r[1].startswith("PostgreSQL"))
        assert f"<!-- goals:{key} {{" in text  # kept for the next partial run
    assert all(r[4] == "—" and "not run" in r[3] for r in rows if "](#agent-loop)" in r[0])
    assert "<!-- goals:agent-loop" not in text
    # every scenario has its anchor and a section, measured or not
    for key in ("agent-loop", "retrieval", "rag", "frames", "chat-stream", "workflows", "startup"):
        assert f'<a id="{key}"></a>' in text and f"<!-- {key}:start -->" in text


def test_an_unknown_scenario_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/run_all.py", "--only", "frames,warp-drive"],
        cwd=ROOT, capture_output=True, text=True, timeout=CEILING_S,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown scenario(s): warp-drive" in proc.stderr


def test_goals_of_scenarios_not_run_are_kept_and_marked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A partial run rewrites its scenarios' goal blocks and keeps the others, marked as earlier."""
    monkeypatch.setenv("CMDC_BENCH_RESULTS", str(tmp_path / "RESULTS.md"))
    monkeypatch.syspath_prepend(str(ROOT / "bench"))
    results = importlib.import_module("_results")
    run_all = importlib.import_module("run_all")
    row = {
        "goal": "SQLite: a step | in-process",
        "target": "≤ 3×",
        "measured": "2.00× (2 / 1 ms)",
        "met": True,
    }
    monkeypatch.setenv("CMDC_BENCH_RUN", "old")
    results.write_goals("workflows", [row])
    results.write_goals("frames", [{**row, "goal": "SQLite: an old frame", "met": False}])
    monkeypatch.setenv("CMDC_BENCH_RUN", "new")
    results.write_goals("frames", [{**row, "goal": "SQLite: a frame -->", "met": None}])
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.count("<!-- goals:frames ") == 1 and '-->"' not in text
    assert results.read_goals(text)["frames"][0]["goal"] == "SQLite: a frame -->"

    page = run_all.assemble([], None, False, "test", run="new")
    rows = goal_rows(page)
    assert ["[4. Cost analytics](#frames)", "SQLite: a frame -->", "≤ 3×", "2.00× (2 / 1 ms)", "—"] in rows
    (workflows,) = [r for r in rows if "](#workflows)" in r[0]]
    assert "(earlier run, " in workflows[0] and workflows[1:] == [
        "SQLite: a step \\| in-process",
        "≤ 3×",
        "2.00× (2 / 1 ms)",
        "✓",
    ]
    assert results.read_goals(page) == results.read_goals(text)  # the blocks survive assembling
