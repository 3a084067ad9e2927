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


def test_migrate_says_what_it_did(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    from cmdc_nb.store.migrate import head_revision

    assert main(["--home", str(tmp_path), "migrate"]) == 0
    first = capsys.readouterr().out.splitlines()
    assert first[0].endswith("migrating a new database …")
    assert first[1].endswith(f"created the schema (revision {head_revision()})")
    assert main(["--home", str(tmp_path), "migrate"]) == 0
    assert capsys.readouterr().out.strip().endswith(f"schema up to date (revision {head_revision()})")


def test_a_newcomer_creates_a_user_then_a_gateway_key(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    home = ["--home", str(tmp_path)]
    assert main([*home, "key", "create", "--user", "ada@example.com"]) == 1
    assert "create one with `cmdc-nb user create ada@example.com`" in capsys.readouterr().err
    assert main([*home, "user", "list"]) == 0
    assert "no users yet" in capsys.readouterr().err
    assert main([*home, "user", "create", "ada@example.com", "--name", "Ada"]) == 0
    assert capsys.readouterr().out.startswith("created ada@example.com (id ")
    assert main([*home, "user", "list"]) == 0
    assert capsys.readouterr().out.rstrip().endswith("ada@example.com  Ada")
    assert main([*home, "key", "create", "--user", "ada@example.com"]) == 0
    assert capsys.readouterr().out.startswith("cgw_")
    assert main([*home, "user", "create", "ada@example.com"]) == 1  # one line, no traceback
    assert capsys.readouterr().err.startswith("cmdc-nb: ConflictError")


def test_the_scheduler_says_when_nothing_was_due(tmp_path: Path, capsys) -> None:  # type: ignore[no-untyped-def]
    assert main(["--home", str(tmp_path), "scheduler", "--once"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ran 0 job(s) (none was due)"


def test_a_worker_on_sqlite_is_refused_before_anything_is_printed_or_opened(
    tmp_path: Path,
    capsys,  # type: ignore[no-untyped-def]
    monkeypatch,  # type: ignore[no-untyped-def]
) -> None:
    monkeypatch.delenv("CMDC_NB_DATABASE_URL", raising=False)
    assert main(["--home", str(tmp_path), "worker", "--once"]) == 2
    out = capsys.readouterr()
    assert out.out == "" and "PostgreSQL queue" in out.err
    assert not (tmp_path / "cmdc_nb.db").exists()


async def test_a_scheduler_started_in_a_script_says_what_to_do_instead(tmp_path: Path) -> None:
    import pytest

    import cmdc_nb
    from cmdc_nb import scheduling
    from cmdc_nb.errors import ConfigurationError

    ws = cmdc_nb.connect(home=tmp_path)
    runner = scheduling.Scheduler(ws)

    def outside_a_loop() -> None:
        runner.start()

    import asyncio

    with pytest.raises(ConfigurationError, match="run_forever"):
        await asyncio.to_thread(outside_a_loop)  # a thread has no running loop, like a plain script
    ws.close()
