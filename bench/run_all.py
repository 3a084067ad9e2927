"""Every benchmark scenario, one after another, then bench/RESULTS.md written anew.

    .venv/bin/python bench/run_all.py [--pg URL] [--quick] [--only agent-loop,frames,...]

`bash scripts/bench.sh` does this from nothing (the environment, a throw-away PostgreSQL with pgvector,
the peers' own venvs under bench/.cache). Each scenario is its own script, run in its own process, and
writes its own section; this script runs them in order, then assembles RESULTS.md: the machine, date
and versions, a table of what ran and how long it took, each section followed by its reading note
(`bench/notes/<key>.md`, written by people: what the figures mean, why cmdc_nb is slower where it is,
and what would close the gap). `--quick` runs every scenario at a small size (to check the harness,
not to quote); a scenario that fails is reported in the table and the others still run.

Right after the status table, the Goals table (issue 26: every goal as a ratio, from one run): each
scenario that states goals computes them from the figures it just measured and stores them as a hidden
block (`_results.write_goals`), tagged with this run's id (`$CMDC_BENCH_RUN`); goals of scenarios not run
now are kept from the earlier run's block and marked so.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.metadata as md
import os
import platform
import re
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _results import QUICK_ENV, RUN_ENV, goal_block, read_goal_blocks, results_path

HERE = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Scenario:
    key: str
    title: str
    script: str
    full: tuple[str, ...]
    quick: tuple[str, ...]
    goals: bool = False  # states issue 26 goals (writes a goal block)


SCENARIOS = (
    Scenario("agent-loop", "1. Agent loop overhead", "bench_agent_loop.py", ("100",), ("10",), goals=True),
    Scenario("retrieval", "2. Retrieval", "bench_retrieval.py", ("--n", "100000"), ("--n", "5000")),
    Scenario("rag", "3. Ingestion (and query latency)", "bench_rag.py", (), ("--quick",)),
    Scenario("frames", "4. Cost analytics", "bench_frames.py", ("1000000",), ("20000",), goals=True),
    Scenario("chat-stream", "5. Streaming to the chat widget", "bench_chat_stream.py", ("10000",), ("300",)),
    Scenario(
        "workflows", "6. Workflows", "bench_workflows.py", ("--steps", "1000"), ("--steps", "100"), goals=True
    ),
    Scenario("startup", "7. Start-up", "bench_startup.py", (), (), goals=True),
)
MET = {True: "✓", False: "✗", None: "—"}


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _memory_gb() -> str:
    try:
        kb = int(re.findall(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())[0])
        return f"{kb / 1024 / 1024:.0f} GB"
    except (OSError, IndexError):
        return "?"


def _pg_version(url: str | None) -> str:
    if not url:
        return "not run (no URL)"
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    try:
        with engine.connect() as c:
            server = c.execute(sa.text("SHOW server_version")).scalar()
            # installed in the server (the bench's databases create it): not necessarily in this one
            vector = c.execute(
                sa.text("SELECT default_version FROM pg_available_extensions WHERE name = 'vector'")
            ).scalar()
        return f"PostgreSQL {server}, pgvector {vector or '?'}"
    finally:
        engine.dispose()


def _version(package: str) -> str:
    try:
        return md.version(package)
    except md.PackageNotFoundError:
        return "?"


def _sections(text: str) -> dict[str, str]:
    return {
        m.group(1): m.group(0) for m in re.finditer(r"<!-- ([\w-]+):start -->.*?<!-- \1:end -->", text, re.S)
    }


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def goals_table(blocks: dict[str, dict[str, Any]], run: str | None, quick: bool) -> list[str]:
    """The Goals section: every goal row of every scenario, then the blocks themselves (hidden), so that
    the next partial run keeps the goals of the scenarios it does not run."""
    lines = [
        "## Goals (issue 26)",
        "",
        "Each goal as a ratio, computed by its scenario from the figures it measured in the same run (its "
        "section below has them): ✓ met, ✗ not met, — not measurable in that run (the reason is given). Rows "
        "marked *earlier run* come from a run of that scenario before this one (its goals kept, not measured "
        "again)." + (" **Quick mode: small sizes, not the goals' sizes — do not quote.**" if quick else ""),
        "",
        "| scenario | goal | target | this run | met |",
        "|---|---|---|---|:-:|",
    ]
    for s in SCENARIOS:
        record = blocks.get(s.key)
        if record is None:
            if s.goals:
                lines.append(f"| [{s.title}](#{s.key}) | *(its goals: not measured yet)* | — | not run | — |")
            continue
        where = f"[{s.title}](#{s.key})"
        if not run or record.get("run") != run:
            kind = "earlier quick run" if record.get("quick") else "earlier run"
            where += f" ({kind}, {record.get('at') or 'date unknown'})"
        for g in record["goals"]:
            lines.append(
                f"| {where} | {_cell(g['goal'])} | {_cell(g['target'])} | {_cell(g['measured'])} | "
                f"{MET[g['met']]} |"
            )
    return [*lines, "", *(goal_block(key, blocks[key]) for key in blocks)]


def assemble(
    ran: list[tuple[Scenario, str, float]], pg: str | None, quick: bool, command: str, run: str | None = None
) -> str:
    """RESULTS.md from the sections and goal blocks the scripts wrote (kept from earlier runs for the
    scenarios not run now); `run` is this run's id, as the scripts tagged their goal blocks."""
    path = results_path()
    text = path.read_text(encoding="utf-8") if path.exists() else ""
    sections = _sections(text)
    blocks = read_goal_blocks(text)
    status = {s.key: (outcome, seconds) for s, outcome, seconds in ran}
    lines = [
        "# Benchmarks",
        "",
        f"Written by `{command}` on {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC"
        + (
            " — **quick mode: small sizes, to check the harness; do not quote these figures**"
            if quick
            else ""
        )
        + ". No test asserts a time: these figures are measured, medians of several runs, and every "
        "comparison is a ratio measured in the same run with the variants alternating.",
        "",
        f"Machine: {platform.system()} {platform.release()}, {_cpu()}, {os.cpu_count()} CPUs, {_memory_gb()} RAM "
        "(shared, and noisy: figures move by tens of percent between runs; ratios move less).",
        f"Software: Python {platform.python_version()}; cmdc_nb {_version('cmdc-nb')}, litellm {_version('litellm')}, "
        f"SQLAlchemy {_version('sqlalchemy')}, pandas {_version('pandas')}, numpy {_version('numpy')}, "
        f"SQLite {__import__('sqlite3').sqlite_version}; {_pg_version(pg)}. Peers run in their own venvs under "
        "bench/.cache; each section names their versions.",
        "",
        "| scenario | this run | wall time |",
        "|---|---|---:|",
    ]
    for s in SCENARIOS:
        outcome, seconds = status.get(
            s.key, ("kept from an earlier run" if s.key in sections else "never run", 0.0)
        )
        lines.append(f"| [{s.title}](#{s.key}) | {outcome} | {f'{seconds:,.0f} s' if seconds else '—'} |")
    lines += ["", *goals_table(blocks, run, quick)]
    for s in SCENARIOS:
        lines += ["", f'<a id="{s.key}"></a>', ""]
        lines.append(
            sections.get(s.key, f"<!-- {s.key}:start -->\n*(not measured yet)*\n<!-- {s.key}:end -->")
        )
        note = HERE / "notes" / f"{s.key}.md"
        if note.exists():
            lines += ["", note.read_text(encoding="utf-8").strip()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default=os.environ.get("CMDC_BENCH_PG_URL") or os.environ.get("CMDC_TEST_PG_URL"))
    ap.add_argument(
        "--quick", action="store_true", help="small sizes: checks the harness, figures not quotable"
    )
    ap.add_argument(
        "--only", default="", help="comma-separated scenario keys: " + ", ".join(s.key for s in SCENARIOS)
    )
    args = ap.parse_args()
    only = {k.strip() for k in args.only.split(",") if k.strip()}
    unknown = only - {s.key for s in SCENARIOS}
    if unknown:
        ap.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}  # offline, always
    if args.pg:
        env["CMDC_TEST_PG_URL"] = args.pg
    else:
        env.pop("CMDC_TEST_PG_URL", None)
    run = env[RUN_ENV] = f"{dt.datetime.now(dt.UTC):%Y%m%dT%H%M%S}-{os.getpid()}"
    env[QUICK_ENV] = "1" if args.quick else "0"
    ran: list[tuple[Scenario, str, float]] = []
    for s in SCENARIOS:
        if only and s.key not in only:
            continue
        cmd = [sys.executable, str(HERE / s.script), *(s.quick if args.quick else s.full)]
        print(f"== {s.title}: {' '.join(cmd[1:])}", flush=True)
        t = time.perf_counter()
        # Steady state: importing the kernel would start loading litellm in a background thread that
        # holds the GIL through a scenario's first seconds; the start-up scenario measures that load.
        scenario_env = env if s.key == "startup" else {"CMDC_NB_PRELOAD": "0", **env}
        proc = subprocess.run(cmd, env=scenario_env, cwd=HERE.parent)
        seconds = time.perf_counter() - t
        outcome = (
            "measured" if proc.returncode == 0 else f"**failed** (exit {proc.returncode}; see the run's log)"
        )
        ran.append((s, outcome, seconds))
        print(f"   {outcome} in {seconds:,.0f} s", flush=True)
    command = (
        "bash scripts/bench.sh"
        + (" --quick" if args.quick else "")
        + (f" --only {args.only}" if only else "")
    )
    results_path().write_text(assemble(ran, args.pg, args.quick, command, run), encoding="utf-8")
    print(f"wrote {results_path()}")
    return 0 if all(o == "measured" for _, o, _ in ran) else 1


if __name__ == "__main__":
    sys.exit(main())
