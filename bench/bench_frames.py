"""1M cost records → a daily-by-model frame, side by side with pandas itself.

Run: `.venv/bin/python bench/bench_frames.py [rows]` (default 1,000,000). Writes the medians of
5 runs, and their ratios to pandas' own groupby, into bench/RESULTS.md (the section between the
`frames` markers).

What is compared, on the same SQLite workspace:
- pandas groupby: `df.groupby(["day", "model"])["cost_usd"].sum()` on a frame already in memory (the
  floor: what pandas itself needs for the cut), with float dollars and with exact decimals;
- peer (plain pandas): `pd.read_sql` of the table, then that groupby — what one does without cmdc_nb;
- cmdc_nb `costs_frame` + `by_day(by="model")`: load typed, exact columns, then the same cut;
- cmdc_nb `daily_costs(by="model")`: the grouping done by the database.
"""

from __future__ import annotations

import datetime as dt
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import pandas as pd

import cmdc_nb
from cmdc_nb import accounts, frames

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import write_section

RUNS = 5
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-pro", "llama-3.3-70b"]


def populate(path: Path, rows: int) -> str:
    ws = cmdc_nb.connect(f"sqlite:///{path}", home=path.parent, make_default=False)
    user = accounts.create_user("bench@example.com", ws=ws)
    ws.close()
    rng = random.Random(7)
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    con = sqlite3.connect(path)
    batch = []
    for i in range(rows):
        at = start + dt.timedelta(seconds=rng.randrange(0, 30 * 86400))
        stamp = at.strftime("%Y-%m-%d %H:%M:%S.%f")
        batch.append(
            (
                uuid.uuid4().hex,
                user.id.hex,
                "agent_call",
                uuid.uuid4().hex,
                "openai",
                "chat",
                MODELS[i % len(MODELS)],
                rng.randrange(10, 5000),
                rng.randrange(1, 1000),
                rng.randrange(1, 10**9),
                stamp,
                at.date().isoformat(),
                stamp,
                stamp,
            )
        )
        if len(batch) == 50_000:
            con.executemany(INSERT, batch)
            batch.clear()
    if batch:
        con.executemany(INSERT, batch)
    con.commit()
    con.close()
    return f"sqlite:///{path}"


INSERT = (
    "INSERT INTO cost_records (id, user_id, source_type, source_id, provider, service, model, tokens_in, "
    "tokens_out, cost_usd, incurred_at, day, inserted_at, updated_at) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)"
)


def median_seconds(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main(rows: int) -> str:
    with tempfile.TemporaryDirectory() as tmp:
        url = populate(Path(tmp) / "bench.db", rows)
        ws = cmdc_nb.connect(url, home=tmp, make_default=False)
        loaded = frames.costs_frame(ws=ws)
        assert len(loaded) == rows
        as_float = loaded.assign(cost_usd=loaded["cost_usd"].astype("float64"))
        results = {
            "pandas groupby, float (in memory)": median_seconds(
                lambda: as_float.groupby(["day", "model"], observed=True)["cost_usd"].sum()
            ),
            "pandas groupby, exact decimal (in memory)": median_seconds(
                lambda: loaded.groupby(["day", "model"], observed=True)["cost_usd"].sum()
            ),
            "peer: pd.read_sql + groupby": median_seconds(
                lambda: (
                    pd.read_sql("SELECT day, model, cost_usd FROM cost_records", ws.engine)
                    .groupby(["day", "model"])["cost_usd"]
                    .sum()
                )
            ),
            "cmdc_nb costs_frame + by_day(by='model')": median_seconds(
                lambda: frames.by_day(frames.costs_frame(ws=ws), by="model")
            ),
            "cmdc_nb costs_frame(columns=day, model, cost_usd) + by_day": median_seconds(
                lambda: frames.by_day(
                    frames.costs_frame(columns=["day", "model", "cost_usd"], ws=ws), by="model"
                )
            ),
            "cmdc_nb by_day(by='model') on a loaded frame": median_seconds(
                lambda: frames.by_day(loaded, by="model")
            ),
            "cmdc_nb daily_costs(by='model') (grouped in SQLite)": median_seconds(
                lambda: frames.daily_costs(by="model", ws=ws)
            ),
        }
        check = frames.daily_costs(by="model", ws=ws)["cost_usd"].sum() == loaded["cost_usd"].sum()
        ws.close()
    floor = results["pandas groupby, exact decimal (in memory)"]
    lines = [
        "<!-- frames:start -->",
        f"### Frames: {rows:,} cost records → daily cost by model (SQLite, median of {RUNS})",
        "",
        "| what | median (s) | × pandas exact groupby |",
        "|---|---:|---:|",
        *(f"| {name} | {sec:.3f} | {sec / floor:.2f} |" for name, sec in results.items()),
        "",
        f"Exact totals agree between the SQL and pandas paths: {check}. Machine: {sys.platform}, "
        f"Python {sys.version.split()[0]}, pandas {pd.__version__}.",
        "<!-- frames:end -->",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    section = main(int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000)
    body = section.split("\n", 1)[1].rsplit("\n", 1)[0]  # without its own markers
    write_section("frames", body)
    print(section)
