"""Shared by the reliability tests: the size switch and where their figures go.

CI runs every reliability test at a reduced size; `CMDC_RELIABILITY_FULL=1` (set by
`scripts/reliability.sh`) runs the full sizes. Each test records what it measured — counts, times,
outcomes — as JSON under `ci-artifacts/reliability/`, and `scripts/reliability_table.py` turns those
files into the README's reliability table. Figures are recorded, never asserted as timings."""

from __future__ import annotations

import fcntl
import json
import os
from pathlib import Path
from typing import Any

FULL = os.environ.get("CMDC_RELIABILITY_FULL") == "1"
OUT = Path(
    os.environ.get("CMDC_RELIABILITY_OUT")
    or Path(__file__).resolve().parents[2] / "ci-artifacts" / "reliability"
)


def sized(ci: int, full: int) -> int:
    """`full` in the full run, `ci` otherwise."""
    return full if FULL else ci


def record(file: str, key: str | None, figures: dict[str, Any]) -> None:
    """Merge `figures` into `OUT/<file>.json` (under `key` when given, e.g. a backend), marked with the
    size they were measured at."""
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"{file}.json"
    # Parallel test workers record into the same file: one at a time, or a merge loses the other's entry.
    with (OUT / f"{file}.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            data = json.loads(path.read_text()) if path.exists() else {}
        except json.JSONDecodeError:
            data = {}
        entry = {**figures, "full": FULL}
        if key is None:
            data = entry
        else:
            data[key] = entry
        path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
