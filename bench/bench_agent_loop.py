"""Agent loop overhead: 100 rounds, each one trivial tool call, with a zero-latency offline model.

Run: `.venv/bin/python bench/bench_agent_loop.py [rounds] [--pg URL]` (default 100 rounds; the
PostgreSQL rows need a server: `--pg`, else CMDC_BENCH_PG_URL or CMDC_TEST_PG_URL). Each peer runs in its own
virtual environment under bench/.cache (created on first use, pinned versions), so none of them leaks
into the package's dependencies. Every system runs as a fresh process per measurement (after a 10-round
warm-up inside it); the systems alternate, 5 runs each, and the medians and their ratios to LangGraph
with its SQLite checkpointer go into bench/RESULTS.md (between the `agent-loop` markers).

Compared:
- cmdc_nb, stored: scripted model, session on SQLite or PostgreSQL — every call, tool use, message,
  cost record (with its daily summary) and audit entry stored, every event published;
- cmdc_nb, in memory: the same loop, nothing stored;
- LangGraph prebuilt tool-calling agent (fake chat model) with its SQLite or PostgreSQL checkpointer,
  and without one;
- pydantic-ai with a FunctionModel, the run's message history saved to SQLite after the run.

Then cmdc_nb's stored bytes at 10, 100 and 1,000 rounds (one run each per backend; 10, 20 and 50 when
fewer than 100 rounds are asked for, as `run_all.py --quick` does), and issue 26's goals from this run's
figures (`write_goals`: the Goals table of RESULTS.md). A peer whose venv cannot be had, or whose run
fails, is reported and its goals marked not measured.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import python_of, version_of
from _results import limit_goal, ratio_goal, write_goals, write_section

HERE = Path(__file__).resolve().parent
RUNS = 5
# (name, peer venv, script, mode, the system it is compared with: the goals are ratios)
SYSTEMS = [
    ("cmdc_nb, stored to SQLite", None, "cmdc_loop.py", "sqlite", "LangGraph + SQLite checkpointer"),
    (
        "cmdc_nb, stored to PostgreSQL",
        None,
        "cmdc_loop.py",
        "postgres",
        "LangGraph + PostgreSQL checkpointer",
    ),
    ("cmdc_nb, in memory", None, "cmdc_loop.py", "memory", "LangGraph, no checkpointer"),
    ("LangGraph + SQLite checkpointer", "langgraph", "langgraph_loop.py", "sqlite", None),
    ("LangGraph + PostgreSQL checkpointer", "langgraph", "langgraph_loop.py", "postgres", None),
    ("LangGraph, no checkpointer", "langgraph", "langgraph_loop.py", "none", None),
    ("pydantic-ai FunctionModel + history to SQLite", "pydantic-ai", "pydantic_ai_loop.py", "", None),
]
BASELINE = "LangGraph + SQLite checkpointer"
BACKENDS = {"sqlite": "SQLite", "postgres": "PostgreSQL"}
SIZES = (10, 100, 1_000)  # rounds at which cmdc_nb's stored bytes are measured (once each, per backend)
QUICK_SIZES = (10, 20, 50)  # when fewer than 100 rounds are asked for (run_all's --quick passes 10)
LINEAR = 0.25  # "linear": kB a round at the largest size within ±25 % of that at the middle one
_UNUSABLE: dict[str, str] = {}  # peer → why its venv could not be had (its systems are then skipped)
_FAILED: list[str] = []  # peer systems whose run failed (dropped from the rest of the runs)


def usable(peer: str | None) -> bool:
    """Whether `peer`'s venv exists or can be made; a peer that cannot be had is reported, not fatal."""
    if peer is None:
        return True
    if peer not in _UNUSABLE:
        try:
            python_of(peer)
            _UNUSABLE[peer] = ""
        except (subprocess.CalledProcessError, OSError) as e:
            _UNUSABLE[peer] = f"{peer} venv unavailable: {type(e).__name__}"
            print(f"warning: {_UNUSABLE[peer]}: its systems are not measured", file=sys.stderr)
    return not _UNUSABLE[peer]


def run_loop(peer: str | None, script: str, mode: str, rounds: int, pg: str | None) -> dict[str, float]:
    """One fresh process of `script`: its JSON line ({"ms_per_round", and "bytes" for cmdc_loop.py})."""
    args = [python_of(peer), str(HERE / "peers" / script), str(rounds)] + ([mode] if mode else [])
    env = {**os.environ, **({"CMDC_BENCH_PG_URL": pg} if pg else {})}
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout
    return json.loads(out.strip().splitlines()[-1])


def version(peer: str, package: str) -> str:
    return version_of(peer, package) if usable(peer) else "?"


def versions() -> str:
    return (
        f"cmdc_nb {version_of(None, 'cmdc-nb')} (litellm {version_of(None, 'litellm')}), "
        f"LangGraph {version('langgraph', 'langgraph')} (checkpointers: SQLite "
        f"{version('langgraph', 'langgraph-checkpoint-sqlite')}, PostgreSQL "
        f"{version('langgraph', 'langgraph-checkpoint-postgres')}), "
        f"pydantic-ai {version('pydantic-ai', 'pydantic-ai-slim')}"
    )


def measure_times(
    systems: list[tuple[str, str | None, str, str, str | None]], rounds: int, pg: str | None
) -> dict[str, float]:
    """Medians of ms per round; the systems alternate, so machine noise hits them all alike. A peer's
    failure drops that system (reported); cmdc_nb's own is fatal."""
    samples: dict[str, list[float]] = {s[0]: [] for s in systems if usable(s[1])}
    for _ in range(RUNS):
        for name, peer, script, mode, _goal in systems:
            if name not in samples:
                continue
            try:
                samples[name].append(run_loop(peer, script, mode, rounds, pg)["ms_per_round"])
            except subprocess.CalledProcessError as e:
                if peer is None:
                    raise
                print(f"warning: {name} failed, not measured:\n{e.stderr[-2000:]}", file=sys.stderr)
                del samples[name]
                _FAILED.append(name)
    return {name: statistics.median(xs) for name, xs in samples.items()}


def measure_bytes(sizes: tuple[int, ...], pg: str | None) -> dict[str, dict[int, int]]:
    """cmdc_nb's stored bytes for a session of each size, once each, per backend."""
    modes = ["sqlite", *(["postgres"] if pg else [])]
    return {m: {n: int(run_loop(None, "cmdc_loop.py", m, n, pg)["bytes"]) for n in sizes} for m in modes}


def bytes_table(stored: dict[str, dict[int, int]], sizes: tuple[int, ...], quick: bool) -> str:
    head = " / ".join(f"{n:,}" for n in sizes)
    lines = [
        f"**Bytes stored by cmdc_nb: {head} rounds** (one run each; what the run added to the database: the "
        "SQLite file after a WAL checkpoint, or the tables' `pg_total_relation_size` on PostgreSQL)"
        + (f" — quick mode: {head} rounds instead of 10 / 100 / 1,000." if quick else "."),
        "",
        "| backend | " + " | ".join(f"{n:,} rounds: MB (kB a round)" for n in sizes) + " |",
        "|---|" + "---:|" * len(sizes),
    ]
    for mode, by_size in stored.items():
        cells = " | ".join(f"{b / 1e6:.3f} ({b / n / 1e3:.1f})" for n, b in by_size.items())
        lines.append(f"| {BACKENDS[mode]} | {cells} |")
    return "\n".join(lines)


def byte_goals(mode: str, by_size: dict[int, int] | None, sizes: tuple[int, ...]) -> list[dict[str, Any]]:
    """≤ 0.5 MB per 100 rounds, and linear in rounds (kB a round at the largest size within ±25 % of that
    at the middle one)."""
    label = BACKENDS[mode]
    mid, top = sizes[1], sizes[-1]
    size_goal = f"{label}: bytes stored per 100 rounds"
    linear_goal = f"{label}: bytes linear in rounds — kB a round at {top:,} rounds within ±{LINEAR * 100:.0f} % of that at {mid:,}"
    target = f"{1 - LINEAR:g}–{1 + LINEAR:g}×"
    if by_size is None:
        why = "not measured (no PostgreSQL URL)"
        return [
            limit_goal(size_goal, 0.5, None, "MB", why=why),
            {"goal": linear_goal, "target": target, "measured": why, "met": None},
        ]
    if 100 in by_size:
        per100, how = by_size[100] / 1e6, "at 100 rounds"
    else:
        per100, how = by_size[top] / top * 100 / 1e6, f"extrapolated from {top:,} rounds (quick)"
    size = limit_goal(size_goal, 0.5, per100, "MB", fmt=".3f")
    size["measured"] += f", {how}"
    if 100 in by_size and top != 100:
        size["measured"] += f"; {by_size[top] / top * 100 / 1e6:.3f} MB per 100 at {top:,}"
    at_mid, at_top = by_size[mid] / mid / 1e3, by_size[top] / top / 1e3
    r = at_top / at_mid
    measured = f"{r:.2f}× ({at_top:.2f} / {at_mid:.2f} kB a round)"
    return [size, {"goal": linear_goal, "target": target, "measured": measured, "met": abs(r - 1) <= LINEAR}]


def goals(
    medians: dict[str, float], stored: dict[str, dict[int, int]], sizes: tuple[int, ...], rounds: int
) -> list[dict[str, Any]]:
    """Issue 26's agent-loop goals, from this run's figures."""

    def against(goal: str, limit: float, ours: str, theirs: str) -> dict[str, Any]:
        why = "not measured (no PostgreSQL URL)"  # cmdc_nb's own systems are missing only for that
        if ours in medians and theirs not in medians:
            peer = next(s[1] for s in SYSTEMS if s[0] == theirs) or ""
            why = f"not measured ({_UNUSABLE.get(peer) or theirs + ' failed'})"
        return ratio_goal(goal, limit, medians.get(ours), medians.get(theirs), "ms", why=why)

    rows = [
        against(
            f"SQLite: a stored round ({rounds:,} rounds), × LangGraph + SQLite checkpointer",
            0.5,
            "cmdc_nb, stored to SQLite",
            "LangGraph + SQLite checkpointer",
        ),
        against(
            f"PostgreSQL: a stored round ({rounds:,} rounds), × LangGraph + PostgreSQL checkpointer",
            0.5,
            "cmdc_nb, stored to PostgreSQL",
            "LangGraph + PostgreSQL checkpointer",
        ),
        against(
            f"In memory: a round ({rounds:,} rounds), × LangGraph without a checkpointer",
            1,
            "cmdc_nb, in memory",
            "LangGraph, no checkpointer",
        ),
    ]
    for mode in BACKENDS:
        rows += byte_goals(mode, stored.get(mode), sizes)
    return rows


def main(rounds: int = 100, pg: str | None = None) -> str:
    systems = [s for s in SYSTEMS if pg or s[3] != "postgres"]
    medians = measure_times(systems, rounds, pg)
    quick = rounds < 100
    sizes = QUICK_SIZES if quick else SIZES
    stored = measure_bytes(sizes, pg)
    base = medians.get(BASELINE)

    def cell(name: str) -> str:
        return f"{medians[name]:.2f}" if name in medians else "—"

    def against(name: str, peer: str | None) -> str:
        return f"{medians[name] / medians[peer]:.2f} × {peer}" if peer in medians and name in medians else ""

    rows = "\n".join(
        f"| {name} | {cell(name)} | {f'{medians[name] / base:.2f}' if base and name in medians else '—'} | "
        f"{against(name, goal)} |"
        for name, _p, _s, _m, goal in systems
    )
    missing = sorted({why for why in _UNUSABLE.values() if why}) + [f"{n} (its run failed)" for n in _FAILED]
    table = (
        f"### Agent loop: {rounds} rounds of one trivial tool call, zero-latency model (median of {RUNS} runs)\n\n"
        "| system | ms per round | × LangGraph + SQLite | against its like |\n|---|---:|---:|---|\n"
        f"{rows}\n\n"
        f"{bytes_table(stored, sizes, quick)}\n\n"
        f"Machine: {platform.system().lower()}, Python {platform.python_version()}, {platform.processor() or platform.machine()}; "
        f"{versions()}."
        + ("" if pg else " PostgreSQL not measured (no server URL given).")
        + "".join(f" Not measured: {why}." for why in missing)
    )
    write_section("agent-loop", table)
    write_goals("agent-loop", goals(medians, stored, sizes, rounds), quick=quick)
    print(table)
    return table


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rounds", nargs="?", type=int, default=100)
    ap.add_argument("--pg", default=os.environ.get("CMDC_BENCH_PG_URL") or os.environ.get("CMDC_TEST_PG_URL"))
    args = ap.parse_args()
    main(args.rounds, args.pg)
