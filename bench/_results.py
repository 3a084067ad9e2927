"""Writing one benchmark's section of bench/RESULTS.md (between `<!-- key:start -->` and `<!-- key:end -->`).

`$CMDC_BENCH_RESULTS` names another file (the harness's test writes to a temporary one)."""

from __future__ import annotations

import os
import re
from pathlib import Path

RESULTS = Path(__file__).resolve().with_name("RESULTS.md")


def results_path() -> Path:
    return Path(os.environ.get("CMDC_BENCH_RESULTS") or RESULTS)


def write_section(key: str, body: str) -> None:
    """Replace (or append) the section `key` of the results file with `body`."""
    path = results_path()
    text = path.read_text(encoding="utf-8") if path.exists() else "# Benchmarks\n"
    block = f"<!-- {key}:start -->\n{body.strip()}\n<!-- {key}:end -->"
    pattern = re.compile(rf"<!-- {re.escape(key)}:start -->.*?<!-- {re.escape(key)}:end -->", re.S)
    text = (
        pattern.sub(lambda _: block, text) if pattern.search(text) else text.rstrip() + "\n\n" + block + "\n"
    )
    path.write_text(text, encoding="utf-8")
