"""llms.txt and llms-full.txt are generated from the code; they must match it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_llms_txt_files_match_the_public_api() -> None:
    result = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "gen_llms.py"), "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr


def test_the_quick_reference_names_every_public_module_and_points_to_the_full_one() -> None:
    quick = (ROOT / "llms.txt").read_text(encoding="utf-8")
    full = (ROOT / "llms-full.txt").read_text(encoding="utf-8")
    for module in (
        "cmdc_nb.sessions",
        "cmdc_nb.kernel",
        "cmdc_nb.workflows",
        "cmdc_nb.rag",
        "cmdc_nb.widgets",
    ):
        assert f"### {module}" in quick and f"## {module}" in full
    assert "llms-full.txt" in quick
    assert "### def run_workflow(" in full and "### def search(" in full
