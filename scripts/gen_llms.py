"""Write llms.txt (a quick reference) and llms-full.txt (every public name, signature and docstring) from
the code itself, for people who code with AI assistants. `tests/test_llms_txt.py` fails when they drift.

    .venv/bin/python scripts/gen_llms.py            # rewrite both files
    .venv/bin/python scripts/gen_llms.py --check    # exit 1 if either is out of date
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import re
import sys
from pathlib import Path

from cmdc_nb._public import PUBLIC

ROOT = Path(__file__).resolve().parent.parent

# The public modules, in the order a newcomer meets them: the one list, cmdc_nb._public.PUBLIC.
MODULES = list(PUBLIC)

_ADDRESS = re.compile(r" at 0x[0-9a-f]+")


def _first_line(doc: str | None) -> str:
    return (inspect.cleandoc(doc).split("\n\n")[0].replace("\n", " ").strip()) if doc else ""


class _Shown:
    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _signature(obj: object) -> str:
    try:
        sig = inspect.signature(obj)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return ""
    params = [
        p.replace(default=_Shown(_value(p.default))) if p.default is not inspect.Parameter.empty else p
        for p in sig.parameters.values()
    ]
    return _ADDRESS.sub("", str(sig.replace(parameters=params)))


def _plain(obj: object) -> object:
    """Constants made printable the same way in every process: enums by value, sets sorted (their order
    follows the hash seed), mappings and sequences recursively."""
    from enum import Enum

    if isinstance(obj, Enum):
        return obj.value
    if isinstance(obj, dict):
        return {_plain(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, set | frozenset):
        return sorted((_plain(x) for x in obj), key=repr)
    if isinstance(obj, list | tuple):
        return [_plain(x) for x in obj]
    return obj


def _value(obj: object) -> str:
    return _ADDRESS.sub("", repr(_plain(obj)))[:300]


def _public(name: str) -> list[str]:
    return sorted(PUBLIC[name])


def _kind(obj: object) -> str:
    if inspect.isclass(obj):
        return "class"
    if inspect.iscoroutinefunction(obj):
        return "async def"
    if callable(obj):
        return "def"
    if inspect.ismodule(obj):
        return "module"
    return "value"


def quick() -> str:
    lines = [
        "# cmdc_nb",
        "",
        "> A Jupyter-first toolkit and widget set for running, watching and studying AI agents from a notebook:",
        "> persistent chat sessions, every LLM call with exact cost, tool uses with human approval, an asyncio",
        "> agent loop over litellm, DAG workflows, RAG indexes, budgets, and ipywidgets for all of it. SQLite by",
        "> default, PostgreSQL + pgvector for teams. Offline models (scripted, record/replay) stand in for real",
        "> providers through the same litellm path.",
        "",
        "Start: `ws = cmdc_nb.connect()` (SQLite in ~/.local/share/cmdc_nb) or",
        '`cmdc_nb.connect("postgresql+psycopg://…")`. Every function takes `ws=` (default: the last connected',
        "workspace). Every state change is one transaction and an event on `ws.bus`. Errors come from",
        "`cmdc_nb.errors` (base `CmdcError`).",
        "",
        "## Docs",
        "",
        "- [README](README.md): setup, configuration, usage",
        "- [Agent kernel](docs/kernel.md): events, hooks × actions, options, built-in tools and plugins",
        "- [Workflows](docs/workflows.md): specs, step types, gates, durability, workers",
        "- [Evaluations](docs/evals.md): datasets, tasks, scorers, budgets, resuming, results",
        "- [RAG](docs/rag.md): sources, chunking, embedders, ingestion, search",
        "- [Architecture](docs/architecture.md): layers and decisions",
        "- [Full API reference](llms-full.txt): every public name with its signature and docstring",
        "",
        "## Modules",
        "",
    ]
    for name in MODULES:
        mod = importlib.import_module(name)
        summary = _first_line(mod.__doc__)
        lines.append(f"### {name}")
        lines.append("")
        if summary:
            lines.append(summary)
            lines.append("")
        for attr in _public(name):
            obj = getattr(mod, attr)
            if inspect.ismodule(obj):
                continue
            doc = (
                _first_line(getattr(obj, "__doc__", None)) if (callable(obj) or inspect.isclass(obj)) else ""
            )
            if inspect.isclass(obj) and obj.__doc__ == type.__doc__:
                doc = ""
            lines.append(f"- `{attr}`" + (f": {doc}" if doc else ""))
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def full() -> str:
    lines = ["# cmdc_nb — full API reference", "", "Generated from the code by scripts/gen_llms.py.", ""]
    for name in MODULES:
        mod = importlib.import_module(name)
        lines += [f"## {name}", ""]
        if mod.__doc__:
            lines += [inspect.cleandoc(mod.__doc__), ""]
        for attr in _public(name):
            obj = getattr(mod, attr)
            if inspect.ismodule(obj):
                lines += [f"### {name}.{attr} (module)", ""]
                continue
            kind = _kind(obj)
            sig = _signature(obj) if kind in ("def", "async def", "class") else ""
            head = f"### {kind} {attr}{sig}" if kind != "value" else f"### {attr} = {_value(obj)}"
            lines += [head, ""]
            doc = inspect.getdoc(obj) if kind != "value" else None
            if doc and not (inspect.isclass(obj) and obj.__doc__ in (None, type.__doc__)):
                lines += [doc, ""]
            if inspect.isclass(obj):
                for meth_name, meth in sorted(vars(obj).items()):
                    if meth_name.startswith("_") or not callable(meth):
                        continue
                    mdoc = _first_line(getattr(meth, "__doc__", None))
                    lines.append(f"- `{meth_name}{_signature(meth)}`" + (f": {mdoc}" if mdoc else ""))
                lines.append("")
    return "\n".join(lines).rstrip() + "\n"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--check", action="store_true")
    args = ap.parse_args()
    outputs = {ROOT / "llms.txt": quick(), ROOT / "llms-full.txt": full()}
    stale = [p.name for p, text in outputs.items() if not p.exists() or p.read_text(encoding="utf-8") != text]
    if args.check:
        if stale:
            print(
                f"out of date: {', '.join(stale)}; run .venv/bin/python scripts/gen_llms.py", file=sys.stderr
            )
            return 1
        return 0
    for p, text in outputs.items():
        p.write_text(text, encoding="utf-8")
    print(f"wrote {', '.join(p.name for p in outputs)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
