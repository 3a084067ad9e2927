"""The README's reliability table is made from the figures the reliability tests record."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))

import reliability_table


def test_the_table_is_written_between_the_markers_from_the_recorded_figures(tmp_path: Path) -> None:
    figures = tmp_path / "figures"
    figures.mkdir()
    (figures / "provider_faults.json").write_text(
        json.dumps({"sequences": 9, "primary": 5, "fallback": 3, "failed": 1, "full": True})
    )
    (figures / "concurrency.json").write_text(
        json.dumps(
            {
                "sqlite": {
                    "processes": 8, "messages": 1600, "cost_records": 800, "approval_items": 200,
                    "lost_decision_races": 7, "presence_clients": 32, "seconds": 1.5, "lost_writes": 0,
                    "duplicate_sequences": 0, "full": False,
                }
            }
        )
    )  # fmt: skip
    readme = tmp_path / "README.md"
    readme.write_text("# x\n\n<!-- reliability:start -->\nold table\n<!-- reliability:end -->\n\nafter\n")
    assert reliability_table.main(["--figures", str(figures), "--write", str(readme)]) == 0
    text = readme.read_text()
    assert "old table" not in text and text.endswith("\n\nafter\n")
    rows = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "9 random fault sequences: 5 answered by the primary" in rows["7. provider faults"]
    assert "| full |" in rows["7. provider faults"]
    assert "sqlite: 8 processes, 1,600 messages" in rows["2. concurrent writers"]
    assert "| CI size |" in rows["2. concurrent writers"]
    assert "not run" in rows["1. crash and resume"]  # no figures, no claim


def test_a_file_without_markers_is_left_alone(tmp_path: Path) -> None:
    readme = tmp_path / "README.md"
    readme.write_text("no markers\n")
    assert reliability_table.main(["--figures", str(tmp_path), "--write", str(readme)]) == 1
    assert readme.read_text() == "no markers\n"
