"""1M cost records → a typed frame and a daily-by-model frame, side by side with pandas itself.

Run: `.venv/bin/python bench/bench_frames.py [rows] [--pg URL]` (default 1,000,000). Writes the medians of
5 runs, and their ratios, into bench/RESULTS.md (the section between the `frames` markers; set
`CMDC_BENCH_RESULTS` to write elsewhere), for SQLite and, given a URL, PostgreSQL.

Loading (the issue's goal: a typed frame ≤ 1× `pd.read_sql` of the same columns), run in turns, the
order rotating each round, medians of 5:
- peer: `pd.read_sql` of the 14 stored columns `costs_frame` types (untyped: object ids, float or
  Decimal money, strings);
- cmdc_nb `costs_frame()` through Arrow (the `fast-frames` extra), and row by row (as without it);
- the first frame on a workspace just opened, which pays for opening the Arrow driver's connection.

Cutting, on the same workspace:
- pandas groupby: `df.groupby(["day", "model"])["cost_usd"].sum()` on a frame already in memory (the
  floor: what pandas itself needs for the cut), with float dollars and with exact decimals;
- peer (plain pandas): `pd.read_sql` of the table, then that groupby — what one does without cmdc_nb;
- cmdc_nb `costs_frame` + `by_day(by="model")`: load typed, exact columns, then the same cut;
- cmdc_nb grouping the records in the database (what `daily_costs` does for other cuts);
- cmdc_nb `daily_costs(by="model")`: reading the rollups that `record_cost` maintains.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import random
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import accounts, costs, frames

try:
    from cmdc_nb.services.frames.adbc import forced_fallback
except ImportError:  # a checkout from before the Arrow path: only the row-by-row frame is measured
    forced_fallback = None  # type: ignore[assignment]

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import ratio_goal, write_goals, write_section

RUNS = 5
MODELS = ["gpt-4o-mini", "gpt-4o", "claude-sonnet-4-5", "claude-haiku-4-5", "gemini-2.5-pro", "llama-3.3-70b"]


def _records(user_id: uuid.UUID, rows: int) -> Iterator[tuple[Any, ...]]:
    rng = random.Random(7)
    start = dt.datetime(2026, 10, 1, tzinfo=dt.UTC)
    for i in range(rows):
        at = start + dt.timedelta(seconds=rng.randrange(0, 30 * 86400))
        yield (
            uuid.uuid4(), user_id, "agent_call", uuid.uuid4(), "openai", "chat", MODELS[i % len(MODELS)],
            rng.randrange(10, 5000), rng.randrange(1, 1000), rng.randrange(1, 10**9), at, at.date(),
        )  # fmt: skip


COLUMNS = (
    "id, user_id, source_type, source_id, provider, service, model, tokens_in, tokens_out, cost_usd, "
    "incurred_at, day, inserted_at, updated_at"
)


def populate(url: str, home: Path, rows: int) -> cmdc_nb.Workspace:
    """`rows` cost records over 30 days, written in bulk (COPY on PostgreSQL), then the day summaries
    and rollups rebuilt from them with `regenerate_daily_summary` — as after an import."""
    ws = cmdc_nb.connect(url, home=home, make_default=False)
    user = accounts.create_user(f"bench-{time.time_ns()}@example.com", ws=ws)
    if ws.backend == "sqlite":
        con = sqlite3.connect(ws.url.database or "")
        batch = []
        for r in _records(user.id, rows):
            stamp = r[10].strftime("%Y-%m-%d %H:%M:%S.%f")
            # cost in picodollars, as the Money type stores it on SQLite
            batch.append(
                (r[0].hex, r[1].hex, *r[2:3], r[3].hex, *r[4:9], r[9], stamp, r[11].isoformat(), stamp, stamp)
            )
            if len(batch) == 50_000:
                con.executemany(f"INSERT INTO cost_records ({COLUMNS}) VALUES ({','.join('?' * 14)})", batch)
                batch.clear()
        if batch:
            con.executemany(f"INSERT INTO cost_records ({COLUMNS}) VALUES ({','.join('?' * 14)})", batch)
        con.commit()
        con.close()
    else:
        import psycopg

        with psycopg.connect(
            ws.url.set(drivername="postgresql").render_as_string(hide_password=False)
        ) as con:
            with con.cursor().copy(f"COPY cost_records ({COLUMNS}) FROM STDIN") as copy:
                for r in _records(user.id, rows):
                    copy.write_row((*r[:9], Decimal(r[9]).scaleb(-12), r[10], r[11], r[10], r[10]))
            con.execute("ANALYZE cost_records")
    start = dt.date(2026, 10, 1)
    for d in range(31):
        costs.regenerate_daily_summary(user, start + dt.timedelta(days=d), ws=ws)
    return ws


def median_seconds(fn: Callable[[], object]) -> float:
    times = []
    for _ in range(RUNS):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


SAME_COLUMNS = (
    "incurred_at, day, user_id, session_id, provider, model, service, source_type, notebook_cell, "
    "tokens_in, tokens_out, cache_tokens_read, cache_tokens_write, cost_usd"
)


PEER = "peer: pd.read_sql of the same 14 columns"
ARROW = "cmdc_nb costs_frame() through Arrow (fast-frames)"
FALLBACK = "cmdc_nb costs_frame() row by row (without the extra)"


def in_turns(variants: dict[str, Callable[[], object]]) -> dict[str, float]:
    """Each variant once per round, the order rotating, RUNS rounds; medians."""
    times: dict[str, list[float]] = {name: [] for name in variants}
    names = list(variants)
    for i in range(RUNS):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t = time.perf_counter()
            variants[name]()
            times[name].append(time.perf_counter() - t)
    return {name: statistics.median(ts) for name, ts in times.items()}


def row_by_row() -> Any:
    return forced_fallback() if forced_fallback is not None else contextlib.nullcontext()


def first_frame(url: str, home: Path, fallback: bool) -> float:
    """Seconds for the first costs_frame on a workspace just opened (its connections not yet made)."""
    ws = cmdc_nb.connect(url, home=home, make_default=False)
    try:
        with row_by_row() if fallback else contextlib.nullcontext():
            t = time.perf_counter()
            frames.costs_frame(ws=ws)
            return time.perf_counter() - t
    finally:
        ws.close()


def measure_load(ws: cmdc_nb.Workspace, url: str, home: Path) -> dict[str, float]:
    def typed_rows() -> object:
        with row_by_row():
            return frames.costs_frame(ws=ws)

    variants: dict[str, Callable[[], object]] = {
        PEER: lambda: pd.read_sql(f"SELECT {SAME_COLUMNS} FROM cost_records", ws.engine),
        FALLBACK: typed_rows,
    }
    if forced_fallback is not None:
        variants[ARROW] = lambda: frames.costs_frame(ws=ws)
    results = in_turns(variants)
    firsts = {"arrow": [], "rows": []}  # type: dict[str, list[float]]
    for _ in range(3 if forced_fallback is not None else 0):
        firsts["arrow"].append(first_frame(url, home, fallback=False))
        firsts["rows"].append(first_frame(url, home, fallback=True))
    if firsts["arrow"]:
        results["first costs_frame() on a new workspace, through Arrow"] = statistics.median(firsts["arrow"])
        results["first costs_frame() on a new workspace, row by row"] = statistics.median(firsts["rows"])
    return results


def measure(ws: cmdc_nb.Workspace, rows: int) -> tuple[dict[str, float], bool]:
    loaded = frames.costs_frame(ws=ws)
    assert len(loaded) == rows
    as_float = loaded.assign(cost_usd=loaded["cost_usd"].astype("float64"))
    from cmdc_nb.services.frames.cuts import _daily_from_records

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
            lambda: frames.by_day(frames.costs_frame(columns=["day", "model", "cost_usd"], ws=ws), by="model")
        ),
        "cmdc_nb by_day(by='model') on a loaded frame": median_seconds(
            lambda: frames.by_day(loaded, by="model")
        ),
        "cmdc_nb daily_costs, grouping the records in the database": median_seconds(
            lambda: _daily_from_records(user=None, by="model", since=None, until=None, ws=ws)
        ),
        "cmdc_nb daily_costs(by='model') (the rollups)": median_seconds(
            lambda: frames.daily_costs(by="model", ws=ws)
        ),
    }
    rolled = frames.daily_costs(by="model", ws=ws)
    grouped = _daily_from_records(user=None, by="model", since=None, until=None, ws=ws)
    check = (
        rolled["cost_usd"].sum() == loaded["cost_usd"].sum()
        and rolled.astype(str).values.tolist() == grouped.astype(str).values.tolist()
    )
    return results, bool(check)


def goals(rows: int, loads: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    """Issue 26: a typed frame of the records in at most the time pd.read_sql takes for the same 14
    columns, per backend. costs_frame() as installed (through Arrow when the extra is there); the
    row-by-row figure is context."""
    out = []
    for label in ("SQLite", "PostgreSQL"):
        load = loads.get(label)
        goal = f"{label}: {rows:,} cost records → typed frame (`costs_frame()`), × `pd.read_sql` of the same 14 columns"
        if load is None:
            out.append(ratio_goal(goal, 1, None, None, "s", why="not measured (no PostgreSQL URL)"))
            continue
        typed = load.get(ARROW, load[FALLBACK])
        row = ratio_goal(goal, 1, typed, load[PEER], "s", fmt=".3f")
        path = "through Arrow" if ARROW in load else "row by row: no Arrow path in this checkout"
        context = f"; row by row {load[FALLBACK] / load[PEER]:.2f}×" if ARROW in load else ""
        row["measured"] += f", {path}{context}"
        out.append(row)
    return out


def main(rows: int, pg: str | None) -> tuple[str, list[dict[str, Any]]]:
    tables = []
    checks = []
    loads: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        targets = [("SQLite", f"sqlite:///{Path(tmp) / 'bench.db'}")] + ([("PostgreSQL", pg)] if pg else [])
        for label, url in targets:
            ws = populate(url, Path(tmp), rows)
            load = loads[label] = measure_load(ws, url, Path(tmp))
            results, check = measure(ws, rows)
            if label == "PostgreSQL":  # leave the shared server as we found it
                with ws.transaction() as tx:
                    tx.db.execute(sa.text("DELETE FROM cost_records"))
                    tx.db.execute(sa.text("DELETE FROM cost_rollups"))
                    tx.db.execute(sa.text("DELETE FROM cost_daily_summaries"))
            ws.close()
            checks.append(f"{label}: {check}")
            floor = results["pandas groupby, exact decimal (in memory)"]
            peer = load[PEER]
            tables += [
                "",
                f"**{label}: loading {rows:,} records into a typed frame** (in turns, median of {RUNS})",
                "",
                "| what | median (s) | × pd.read_sql of the same columns |",
                "|---|---:|---:|",
                *(f"| {name} | {sec:.3f} | {sec / peer:.2f} |" for name, sec in load.items()),
                "",
                f"**{label}: cutting**",
                "",
                "| what | median (s) | × pandas exact groupby |",
                "|---|---:|---:|",
                *(f"| {name} | {sec:.3f} | {sec / floor:.2f} |" for name, sec in results.items()),
            ]
    lines = [
        f"### Frames: {rows:,} cost records → a typed frame, and daily cost by model (median of {RUNS})",
        *tables,
        "",
        f"The rollups, the grouped records and pandas agree exactly (costs, requests, tokens): {', '.join(checks)}. "
        f"Machine: {sys.platform}, Python {sys.version.split()[0]}, pandas {pd.__version__}.",
    ]
    return "\n".join(lines), goals(rows, loads)


if __name__ == "__main__":
    import argparse
    import os

    ap = argparse.ArgumentParser()
    ap.add_argument("rows", nargs="?", type=int, default=1_000_000)
    ap.add_argument("--pg", default=os.environ.get("CMDC_TEST_PG_URL"))
    args = ap.parse_args()
    section, goal_rows = main(args.rows, args.pg)
    write_section("frames", section)
    write_goals("frames", goal_rows, quick=args.rows < 1_000_000)
    print(section)
