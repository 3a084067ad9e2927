"""The benchmark harness (bench/run_all.py) in quick mode: it runs the scenarios it is asked for, each in
its own process, and assembles a results file with the machine, the versions, a status table and every
section — here into a temporary file, and for the scenarios that need no peer venv."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from waiting import CEILING_S

ROOT = Path(__file__).resolve().parents[1]


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
    # every scenario has its anchor and a section, measured or not
    for key in ("agent-loop", "retrieval", "rag", "frames", "chat-stream", "workflows", "startup"):
        assert f'<a id="{key}"></a>' in text and f"<!-- {key}:start -->" in text


def test_an_unknown_scenario_is_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "bench/run_all.py", "--only", "frames,warp-drive"],
        cwd=ROOT, capture_output=True, text=True, timeout=CEILING_S,
    )  # fmt: skip
    assert proc.returncode == 2 and "unknown scenario(s): warp-drive" in proc.stderr
