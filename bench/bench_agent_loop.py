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

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import python_of, version_of
from _results import write_section

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


def measure(peer: str | None, script: str, mode: str, rounds: int, pg: str | None) -> float:
    args = [python_of(peer), str(HERE / "peers" / script), str(rounds)] + ([mode] if mode else [])
    env = {**os.environ, **({"CMDC_BENCH_PG_URL": pg} if pg else {})}
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout
    return float(json.loads(out.strip().splitlines()[-1])["ms_per_round"])


def versions() -> str:
    return (
        f"cmdc_nb {version_of(None, 'cmdc-nb')} (litellm {version_of(None, 'litellm')}), "
        f"LangGraph {version_of('langgraph', 'langgraph')} (checkpointers: SQLite "
        f"{version_of('langgraph', 'langgraph-checkpoint-sqlite')}, PostgreSQL "
        f"{version_of('langgraph', 'langgraph-checkpoint-postgres')}), "
        f"pydantic-ai {version_of('pydantic-ai', 'pydantic-ai-slim')}"
    )


def main(rounds: int = 100, pg: str | None = None) -> str:
    systems = [s for s in SYSTEMS if pg or s[3] != "postgres"]
    samples: dict[str, list[float]] = {s[0]: [] for s in systems}
    for _ in range(RUNS):  # alternate the systems, so machine noise hits them all alike
        for name, peer, script, mode, _goal in systems:
            samples[name].append(measure(peer, script, mode, rounds, pg))
    medians = {name: statistics.median(xs) for name, xs in samples.items()}
    base = medians[BASELINE]

    def against(name: str, peer: str | None) -> str:
        return f"{medians[name] / medians[peer]:.2f} × {peer}" if peer and peer in medians else ""

    rows = "\n".join(
        f"| {name} | {medians[name]:.2f} | {medians[name] / base:.2f} | {against(name, goal)} |"
        for name, _p, _s, _m, goal in systems
    )
    table = (
        f"### Agent loop: {rounds} rounds of one trivial tool call, zero-latency model (median of {RUNS} runs)\n\n"
        "| system | ms per round | × LangGraph + SQLite | against its like |\n|---|---:|---:|---|\n"
        f"{rows}\n\n"
        f"Machine: {platform.system().lower()}, Python {platform.python_version()}, {platform.processor() or platform.machine()}; "
        f"{versions()}." + ("" if pg else " PostgreSQL not measured (no server URL given).")
    )
    write_section("agent-loop", table)
    print(table)
    return table


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("rounds", nargs="?", type=int, default=100)
    ap.add_argument("--pg", default=os.environ.get("CMDC_BENCH_PG_URL") or os.environ.get("CMDC_TEST_PG_URL"))
    args = ap.parse_args()
    main(args.rounds, args.pg)
