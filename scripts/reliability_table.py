"""The README's reliability table, from the figures the reliability tests write.

Each reliability test under `tests/` records what it measured as JSON in
`ci-artifacts/reliability/` (see `tests/support/reliability.py`). This turns those files into one Markdown
table — a row per check, each figure with the size it was measured at — and, with `--write README.md`,
replaces the table between the `<!-- reliability:start -->` and `<!-- reliability:end -->` markers.
`bash scripts/reliability.sh` runs the tests at full size and then this.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
START, END = "<!-- reliability:start -->", "<!-- reliability:end -->"
BACKENDS = ("sqlite", "postgresql")


def load(folder: Path, name: str) -> dict[str, Any]:
    path = folder / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else {}


def size(entries: list[dict[str, Any]]) -> str:
    flags = {bool(e.get("full")) for e in entries if e}
    return "full" if flags == {True} else "CI size" if flags == {False} else "mixed sizes" if flags else ""


def per_backend(
    data: dict[str, Any], fmt: Callable[[dict[str, Any]], str], key: Callable[[str], str] = str
) -> str:
    parts = [f"{b}: {fmt(data[key(b)])}" for b in BACKENDS if key(b) in data]
    return "; ".join(parts) if parts else "not run"


def crash(folder: Path) -> tuple[str, str]:
    d = load(folder, "crash_resume")

    def fmt(e: dict[str, Any]) -> str:
        return (
            f"{e['trials']} trials, {e['rows_committed_before_kill']:,} rows committed before the kills, "
            f"{e['lost']} lost; {e['repeated_tool_executions']} tool executions repeated; "
            f"{e['pending_approvals_kept']} pending approvals kept and resumed; "
            f"{e['job_runs_abandoned']} killed job runs closed as abandoned"
        )

    return per_backend(d, fmt), size([d.get(b, {}) for b in BACKENDS])


def concurrency(folder: Path) -> tuple[str, str]:
    d = load(folder, "concurrency")

    def fmt(e: dict[str, Any]) -> str:
        return (
            f"{e['processes']} processes, {e['messages']:,} messages, {e['cost_records']:,} costs, "
            f"{e['approval_items']} approvals ({e['lost_decision_races']} lost decision races), "
            f"{e['presence_clients']} presence clients in {e['seconds']} s: {e['lost_writes']} lost, "
            f"{e['duplicate_sequences']} duplicate sequences, sums equal"
        )

    return per_backend(d, fmt), size([d.get(b, {}) for b in BACKENDS])


def migrations(folder: Path) -> tuple[str, str]:
    d = load(folder, "migrations")
    parts = []
    for b in BACKENDS:
        revs = sorted(k.rsplit("_", 1)[1] for k in d if k.startswith(f"upgrade_{b}_from_"))
        kill = d.get(f"kill_{b}", {})
        if revs or kill:
            parts.append(
                f"{b}: upgraded with data from {', '.join(revs)}; {kill.get('trials', 0)} kills inside a "
                "migration left the old revision intact and the re-run completed"
            )
    return "; ".join(parts) or "not run", size(list(d.values()))


def fuzz(folder: Path) -> tuple[str, str]:
    d = load(folder, "fuzz")
    if not d:
        return "not run", ""
    functions = sorted({k.split("[")[0] for k in d})
    examples = sum(e["examples"] for e in d.values())
    rejected = sum(n for e in d.values() for k, n in e["outcomes"].items() if k != "ok")
    text = (
        f"{examples:,} generated inputs over {len(functions)} entry points ({', '.join(functions)}) on both "
        f"backends: {rejected:,} typed errors, 0 other exceptions, 0 partial writes"
    )
    typed = load(folder, "typed_input")

    def fmt(e: dict[str, Any]) -> str:
        return (
            f"{e['inputs']:,} wrong-typed arguments to {e['functions']} public functions, {e['typed_errors']:,} "
            f"typed errors, {e['untyped_errors']} other exceptions, {e['garbage_stored']} garbage stored, "
            f"{e['partial_writes']} partial writes"
        )

    if typed:
        text += "; strict types: " + per_backend(typed, fmt)
    return text, size(list(d.values()) + list(typed.values()))


def tool_safety(folder: Path) -> tuple[str, str]:
    d = load(folder, "tool_safety")
    parts = []
    if "path_traversal" in d:
        parts.append(
            f"{d['path_traversal']['paths']} traversal paths: {d['path_traversal']['escapes']} escapes"
        )
    if "command_injection" in d:
        e = d["command_injection"]
        parts.append(f"{e['commands']} injected commands: {e['ran_without_approval']} ran without approval")
    if "prompt_injection" in d:
        e = d["prompt_injection"]
        parts.append(
            f"{e['injections']} prompt injections obeyed by the model: {e['ran_without_approval']} tool executions "
            f"without approval, {e['secrets_revealed']} secrets revealed"
        )
    races = load(folder, "tool_races")
    tools = {k: e for k, e in races.items() if k != "agent_read_file"}
    if tools:
        attempts = {e["attempts"] for e in tools.values()}
        parts.append(
            f"symlink races (another process swapping a folder and a file for links to outside twins): "
            f"{'/'.join(f'{a:,}' for a in sorted(attempts))} calls × {len(tools)} file tools "
            f"({', '.join(sorted(tools))}): {sum(e['escapes'] for e in tools.values())} escapes, "
            f"{sum(e.get('untyped_errors', 0) for e in tools.values())} untyped errors"
        )
    if "agent_read_file" in races:
        e = races["agent_read_file"]
        parts.append(f"{e['attempts']} racing reads by an agent with its guards on: {e['escapes']} escapes")
    armed = load(folder, "armed_commands")
    if armed:
        kinds: dict[str, int] = {}
        for e in armed.values():
            kinds[e["kind"]] = kinds.get(e["kind"], 0) + 1
        parts.append(
            f"{len(armed)} attempts to arm a safe-listed command from the working tree "
            f"({', '.join(f'{n} {k}' for k, n in sorted(kinds.items(), key=lambda kv: -kv[1]))}): "
            f"{sum(e['ran'] for e in armed.values())} payloads ran"
        )
    everything = list(d.values()) + list(races.values()) + list(armed.values())
    return "; ".join(parts) or "not run", size(everything)


def guardrails(folder: Path) -> tuple[str, str]:
    d = load(folder, "guardrails")
    if not d:
        return "not run", ""
    return (
        f"{d['disguises']:,} disguised denied keywords (invisible and format characters, look-alikes, "
        f"combining marks, spacing, word forms): {d['passed']} passed; {d['benign']:,} ordinary texts: "
        f"{d['false_refusals']} refused; {d['fields_checked']} gateway text fields checked",
        size([d]),
    )


def steps(folder: Path) -> tuple[str, str]:
    d = load(folder, "workflow_idempotency")

    def fmt(e: dict[str, Any]) -> str:
        return (
            f"{e['kills']} kills mid-step: {e['steps_rerun_after_kill']} running steps ran again (at-least-once), "
            f"{e['reruns_with_same_key']} of them with the same idempotency key; {e['keyed_side_effects']} "
            f"keyed side effects, {e['duplicate_keyed_effects']} applied twice"
        )

    text = per_backend(d, fmt)
    if "postgresql_workers" in d:
        text += f"; postgresql, a killed `cmdc-nb worker`: {fmt(d['postgresql_workers'])}"
    return text, size([d.get(b, {}) for b in (*BACKENDS, "postgresql_workers")])


def secrets(folder: Path) -> tuple[str, str]:
    d = load(folder, "secrets")

    def fmt(e: dict[str, Any]) -> str:
        return f"{e['secrets']:,} secrets rotated in {e['seconds']} s, {e['failures']} failures"

    text = per_backend(d, fmt, key=lambda b: f"rotation_{b}")
    text += "; tampered ciphertexts and wrong keys are typed errors"
    notebooks = {k: e for k, e in d.items() if k.startswith("notebook_")}
    if notebooks:
        text += (
            f"; sentinel keys: {len(notebooks)} notebooks run against a provider on loopback "
            f"({sum(e['requests_with_key'] for e in notebooks.values())} requests carried the key), their outputs, "
            "`.ipynb` and HTML exports, DEBUG logs (with litellm's), "
            f"{sum(e['event_lines'] for e in notebooks.values()):,} events and "
            f"{sum(e['files'] for e in notebooks.values())} files searched: "
            f"{sum(e['occurrences'] for e in notebooks.values())} occurrences"
        )
    echo = load(folder, "secret_echo")
    if echo:
        points = {k.split("[")[0] for k in echo}
        text += (
            f"; {len(points)} secret-taking entry points × {max(e['secrets'] for e in echo.values())} hostile "
            f"secrets (lone surrogates, NUL, wrong types, huge) on both backends: "
            f"{sum(e['echoed'] for e in echo.values())} echoed by an error, a repr or a log"
        )
    if "suite" in d:
        e = d["suite"]
        text += (
            f"; the whole test suite with sentinel keys: {e['files']:,} files ({e['bytes'] / 1e6:,.0f} MB), "
            f"{e['pg_databases']:,} PostgreSQL test databases, {e['log_lines']:,} log lines and "
            f"{e['event_lines']:,} events searched: {e['occurrences']} occurrences"
        )
    return text, size(list(d.values()) + list(echo.values()))


def provider_faults(folder: Path) -> tuple[str, str]:
    d = load(folder, "provider_faults")
    if not d:
        return "not run", ""
    return (
        f"{d['sequences']} random fault sequences: {d['primary']} answered by the primary, {d['fallback']} by "
        f"the fallback, {d['failed']} failed cleanly; each success booked once, every attempt on record",
        size([d]),
    )


def load_check(folder: Path) -> tuple[str, str]:
    d = load(folder, "load")
    parts = []
    if "agents" in d:
        e = d["agents"]
        parts.append(
            f"{e['agents']} agents × {e['rounds']} rounds in one kernel in {e['seconds']} s, worst event-loop "
            f"stall {e['worst_loop_stall_ms']:.0f} ms, no event dropped"
        )
    if "chat_stream" in d:
        e = d["chat_stream"]
        parts.append(
            f"{e['tokens']:,} tokens streamed to the chat widget: {e['deltas']:,} deltas, worst stall "
            f"{e['worst_loop_stall_ms']:.0f} ms"
        )
    return "; ".join(parts) or "not run", size(list(d.values()))


ROWS: list[tuple[str, str, Callable[[Path], tuple[str, str]]]] = [
    ("1. crash and resume", "tests/test_crash_resume.py", crash),
    ("2. concurrent writers", "tests/test_concurrency.py", concurrency),
    ("3. migrations", "tests/test_migrations.py", migrations),
    ("4. hostile input", "tests/test_fuzz.py, tests/test_fuzz_types.py", fuzz),
    (
        "5. tool safety",
        "tests/test_toolkit.py, tests/test_prompt_injection.py, tests/test_tool_safety_races.py, "
        "tests/test_tool_safety_vcs.py",
        tool_safety,
    ),
    (
        "6. secrets",
        "tests/test_vault.py, tests/test_vault_scale.py, tests/test_notebooks_real_provider.py, "
        "tests/support/secret_scan.py",
        secrets,
    ),
    ("7. provider faults", "tests/test_provider_faults.py", provider_faults),
    ("8. load", "tests/test_load.py", load_check),
    ("9. guardrails", "tests/test_gateway_guardrails.py", guardrails),
    ("10. steps after a kill", "tests/test_workflows_durability.py", steps),
]


def table(folder: Path) -> str:
    lines = ["| check | measured | size | test |", "|---|---|---|---|"]
    for name, test, fn in ROWS:
        text, sz = fn(folder)
        lines.append(f"| {name} | {text} | {sz} | `{test}` |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--figures", type=Path, default=ROOT / "ci-artifacts" / "reliability")
    ap.add_argument("--write", type=Path, help="a Markdown file whose marked table to replace")
    args = ap.parse_args(argv)
    out = table(args.figures)
    if args.write is None:
        print(out)
        return 0
    text = args.write.read_text(encoding="utf-8")
    if START not in text or END not in text:
        print(f"{args.write}: no {START} … {END} markers", file=sys.stderr)
        return 1
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    args.write.write_text(f"{head}{START}\n{out}\n{END}{tail}", encoding="utf-8")
    print(f"wrote the reliability table into {args.write}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
