"""Start-up: `import cmdc_nb`, `connect()` to an existing database, and the first
offline model call — each in a fresh interpreter, as a notebook kernel meets them.

Every measurement is a new process; the phases are timed inside it with `perf_counter` and the whole
process from outside. Medians of 7, the variants alternating. For scale: a bare interpreter, and the
import of the peers' agent modules (LangGraph's prebuilt agent, pydantic-ai) from their own venvs.

Run: `.venv/bin/python bench/bench_startup.py [--pg URL]`; writes the `startup` section of RESULTS.md.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _peers import python_of, version_of
from _results import write_section

RUNS = 7

PHASES = r"""
import json, sys, time
t0 = time.perf_counter()
import cmdc_nb
t1 = time.perf_counter()
ws = cmdc_nb.connect(sys.argv[1], home=sys.argv[2])
t2 = time.perf_counter()
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script
t3 = time.perf_counter()
reply = Agent(model=Script(["Hello."], name="startup").model).run("Hi")
t4 = time.perf_counter()
assert reply == "Hello.", reply
print(json.dumps({"import": t1 - t0, "connect": t2 - t1, "kernel_import": t3 - t2, "first_call": t4 - t3}))
"""

PEER_IMPORTS = {
    "LangGraph prebuilt agent": ("langgraph", "from langgraph.prebuilt import create_react_agent"),
    "pydantic-ai Agent": ("pydantic-ai", "from pydantic_ai import Agent"),
}


def wall(args: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t = time.perf_counter()
    out = subprocess.run(args, capture_output=True, text=True, check=True, env=env).stdout
    return time.perf_counter() - t, out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pg", default=os.environ.get("CMDC_TEST_PG_URL"))
    args = ap.parse_args()
    home = Path(tempfile.mkdtemp())
    targets = {"SQLite": f"sqlite:///{home / 'startup.db'}"}
    if args.pg:
        targets["PostgreSQL"] = args.pg
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    for url in targets.values():  # an existing, migrated database: what connect() meets after day one
        subprocess.run(
            [sys.executable, "-c", PHASES, url, str(home)], check=True, capture_output=True, env=env
        )

    bare: list[float] = []
    phases: dict[str, dict[str, list[float]]] = {label: {} for label in targets}
    process: dict[str, list[float]] = {label: [] for label in targets}
    peers: dict[str, list[float]] = {name: [] for name in PEER_IMPORTS}
    for _ in range(RUNS):  # alternate the variants, so machine noise hits each alike
        bare.append(wall([sys.executable, "-c", "pass"])[0])
        for label, url in targets.items():
            seconds, out = wall([sys.executable, "-c", PHASES, url, str(home)], env)
            process[label].append(seconds)
            for k, x in json.loads(out.strip().splitlines()[-1]).items():
                phases[label].setdefault(k, []).append(x)
        for name, (peer, code) in PEER_IMPORTS.items():
            py = python_of(peer)
            t0 = wall([py, "-c", "pass"])[0]
            peers[name].append(wall([py, "-c", code])[0] - t0)

    def ms(values: list[float]) -> str:
        return f"{statistics.median(values) * 1000:,.0f}"

    lines = [
        "## Start-up: a fresh interpreter to the first offline model call (`bench/bench_startup.py`)",
        "",
        f"Each a new process, phases timed inside it; milliseconds, median of {RUNS}. The database exists and is "
        "migrated (what `connect()` meets after the first day). The first call is a scripted model through "
        "litellm, on an agent with nothing stored.",
        "",
        "| backend | `import cmdc_nb` | `connect()` | import the kernel + providers | first offline call | whole process |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for label in targets:
        p = phases[label]
        lines.append(
            f"| {label} | {ms(p['import'])} | {ms(p['connect'])} | {ms(p['kernel_import'])} | "
            f"{ms(p['first_call'])} | {ms(process[label])} |"
        )
    lines += [
        "",
        f"For scale: a bare `python -c pass` takes {ms(bare)} ms; importing "
        + ", ".join(
            f"{name} ({version_of(PEER_IMPORTS[name][0], 'langgraph' if 'Lang' in name else 'pydantic-ai-slim')}) "
            f"{ms(v)} ms"
            for name, v in peers.items()
        )
        + " (beyond a bare interpreter, in their own venvs).",
    ]
    write_section("startup", "\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main()
