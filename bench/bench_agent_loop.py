"""Agent loop overhead: 100 rounds, each one trivial tool call, with a zero-latency offline model.

Run: `.venv/bin/python bench/bench_agent_loop.py [rounds]` (default 100). Each peer runs in its own
virtual environment under bench/.cache (created on first use, pinned versions), so none of them leaks
into the package's dependencies. Every system runs as a fresh process per measurement (after a 10-round
warm-up inside it); the systems alternate, 5 runs each, and the medians and their ratios to LangGraph
with its SQLite checkpointer go into bench/RESULTS.md (between the `agent-loop` markers).

Compared:
- cmdc_nb, stored: scripted model through litellm, session on SQLite — every call, tool use, message,
  cost record (with its daily summary) and audit entry stored, every event published;
- cmdc_nb, in memory: the same loop, nothing stored;
- LangGraph prebuilt tool-calling agent (fake chat model) with its SQLite checkpointer, and without one;
- pydantic-ai with a FunctionModel, the run's message history saved to SQLite after the run.
"""

from __future__ import annotations

import json
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
SYSTEMS = [
    ("cmdc_nb, stored to SQLite", None, "cmdc_loop.py", "sqlite"),
    ("cmdc_nb, in memory", None, "cmdc_loop.py", "memory"),
    ("LangGraph + SQLite checkpointer", "langgraph", "langgraph_loop.py", "sqlite"),
    ("LangGraph, no checkpointer", "langgraph", "langgraph_loop.py", "none"),
    ("pydantic-ai FunctionModel + history to SQLite", "pydantic-ai", "pydantic_ai_loop.py", ""),
]
BASELINE = "LangGraph + SQLite checkpointer"


def measure(peer: str | None, script: str, mode: str, rounds: int) -> float:
    args = [python_of(peer), str(HERE / "peers" / script), str(rounds)] + ([mode] if mode else [])
    out = subprocess.run(args, capture_output=True, text=True, check=True).stdout
    return float(json.loads(out.strip().splitlines()[-1])["ms_per_round"])


def versions() -> str:
    return (
        f"cmdc_nb {version_of(None, 'cmdc-nb')} (litellm {version_of(None, 'litellm')}), "
        f"LangGraph {version_of('langgraph', 'langgraph')}, pydantic-ai {version_of('pydantic-ai', 'pydantic-ai-slim')}"
    )


def main(rounds: int = 100) -> str:
    samples: dict[str, list[float]] = {name: [] for name, *_ in SYSTEMS}
    for _ in range(RUNS):  # alternate the systems, so machine noise hits them all alike
        for name, peer, script, mode in SYSTEMS:
            samples[name].append(measure(peer, script, mode, rounds))
    medians = {name: statistics.median(xs) for name, xs in samples.items()}
    base = medians[BASELINE]
    rows = "\n".join(f"| {name} | {m:.2f} | {m / base:.2f} |" for name, m in medians.items())
    table = (
        f"### Agent loop: {rounds} rounds of one trivial tool call, zero-latency model (median of {RUNS} runs)\n\n"
        "| system | ms per round | × LangGraph + SQLite |\n|---|---:|---:|\n"
        f"{rows}\n\n"
        f"Machine: {platform.system().lower()}, Python {platform.python_version()}, {platform.processor() or platform.machine()}; "
        f"{versions()}."
    )
    write_section("agent-loop", table)
    print(table)
    return table


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 100)
