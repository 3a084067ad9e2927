"""The command line and the demo it runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from cmdc_nb.cli import main


def test_demo_prints_a_summary_and_is_repeatable(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--home", str(tmp_path), "demo"]) == 0
    first = capsys.readouterr().out
    assert "demo@example.com" in first and "slug=explore-cmdc-nb " in first and "session_created" in first
    assert main(["--home", str(tmp_path), "demo"]) == 0
    second = capsys.readouterr().out
    assert "slug=explore-cmdc-nb-2" in second and "sessions    6 for this user" in second  # fork + agent
    assert (
        "agent       2 turns, 4 messages stored" in second and "reply 'The sentence has 4 words.'" in second
    )
    assert "'git diff src': approved by rule; 'git diff src; rm -rf /': denied" in second
    assert "messages    2 (fork 'ask-differently-2' kept 1)" in second


def test_errors_are_one_line_not_a_traceback(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "cmdc_nb", "--url", "mysql://nope/db", "migrate"],
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 1
    assert proc.stderr.startswith("cmdc-nb: ConfigurationError") and "Traceback" not in proc.stderr


def test_the_scheduler_command_runs_due_jobs(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    import datetime as dt

    import cmdc_nb
    from cmdc_nb import accounts, scheduling

    ws = cmdc_nb.connect(home=tmp_path)
    user = accounts.create_user("ops@example.com", ws=ws)
    job = scheduling.create_scheduled_job(user, job_type="cleanup", run_at=dt.datetime.now(dt.UTC), ws=ws)
    ws.close()
    assert main(["--home", str(tmp_path), "scheduler", "--once"]) == 0
    assert f"{job.id}=success" in capsys.readouterr().out


def test_the_tour_command_writes_the_executed_tour_as_html(tmp_path: Path) -> None:
    out = tmp_path / "tour.html"
    env = {k: v for k, v in os.environ.items() if not k.startswith("CMDC_")}
    run = subprocess.run(
        [sys.executable, "-m", "cmdc_nb", "tour", "--out", str(out)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stderr[-2000:]
    assert f"the tour, executed, is in {out}" in run.stdout
    html = out.read_text(encoding="utf-8")
    assert "cmdc_nb in ten minutes" in html and "application/vnd.jupyter.widget-state+json" in html
    assert "Saved. Anything else for the list?" in html  # the approved turn finished
    assert 'class="ename"' not in html and "Traceback" not in html
