"""Every notebook with sentinel keys set: the chats go to a real provider, and the key leaks nowhere —
each run in the kernel of Binder's environment (`tests/support/binder_env.py`: binder/requirements.txt
and postBuild), so this is also the test that every notebook runs where Binder serves it. (nbval runs
them offline, in the project's own environment, and compares their outputs.)

The provider is an OpenAI-compatible server on loopback (`tests/support/fake_openai.py`) reached by litellm
through `OPENAI_BASE_URL` and `OPENAI_API_KEY`, as a real one would be; every other provider variable
holds a sentinel key as well. A first cell (taken out again before the export) sends the kernel's
`cmdc_nb` and litellm logs, at DEBUG with litellm's own debug logging on, to a file and taps every
event. Each notebook must run to the end, the model requests must reach the server with the key —
and then the sentinel is searched for in the cell outputs, the exported notebook
(`.ipynb` and HTML), the logs, the events, and every file the run left: workspaces with their WAL,
artifacts, sandboxes.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import nbclient
import nbconvert
import nbformat
import pytest
import secret_scan
from binder_env import KERNEL, BinderEnv
from fake_openai import FakeOpenAI
from reliability import record
from waiting import CEILING_S

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
CHATTY = {"00_tour", "01_chat_and_approvals", "02_workflows", "03_rag_index", "05_inside_the_agent_loop"}


def instrumentation(folder: Path) -> nbformat.NotebookNode:
    return nbformat.v4.new_code_cell(
        "import sys\n"
        f"__import__('pathlib').Path({str(folder / 'kernel-python.txt')!r}).write_text(sys.executable)\n"
        f"sys.path.insert(0, {str(ROOT / 'tests' / 'support')!r})\n"
        "import secret_scan\n"
        f"secret_scan.install_log_file(__import__('pathlib').Path({str(folder / 'log-kernel.txt')!r}), litellm_debug=True)\n"
        f"secret_scan.install_event_tap(__import__('pathlib').Path({str(folder / 'events-kernel.txt')!r}))"
    )


@pytest.mark.xdist_group("binder")
@pytest.mark.parametrize("name", sorted(p.stem for p in NOTEBOOKS.glob("*.ipynb")))
def test_a_notebook_uses_the_real_provider_and_leaks_no_key(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, binder_env: BinderEnv
) -> None:
    token = secrets.token_hex(12)
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    nb.cells.insert(0, instrumentation(tmp_path))
    (tmp_path / "tmp").mkdir()
    with FakeOpenAI() as provider:
        monkeypatch.delenv("CMDC_NB_OFFLINE", raising=False)
        monkeypatch.delenv("CMDC_NB_MODEL", raising=False)
        for var, value in secret_scan.sentinel_keys(token).items():
            monkeypatch.setenv(var, value)
        monkeypatch.setenv("OPENAI_BASE_URL", provider.base_url)
        monkeypatch.setenv("LITELLM_LOG", "DEBUG")
        monkeypatch.setenv("CMDC_NB_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))  # the notebooks' own workspaces land here
        # the kernel is Binder's environment's: its Python and packages, none of this one's
        monkeypatch.setenv("JUPYTER_PATH", binder_env.jupyter_path)
        monkeypatch.delenv("PYTHONPATH", raising=False)
        monkeypatch.delenv("VIRTUAL_ENV", raising=False)
        if name == "06_team_mode" and os.environ.get("CMDC_TEST_PG_URL"):
            # the team notebook runs only on a PostgreSQL server (without one each cell says it skips)
            monkeypatch.setenv("CMDC_NB_TEAM_URL", os.environ["CMDC_TEST_PG_URL"])
        nbclient.NotebookClient(
            nb,
            timeout=CEILING_S,
            kernel_name=KERNEL,
            store_widget_state=True,
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()  # raises CellExecutionError on any failing cell
    key = secret_scan.sentinel_keys(token)["OPENAI_API_KEY"]
    assert (tmp_path / "kernel-python.txt").read_text() == str(binder_env.venv / "bin" / "python")

    if name in CHATTY:
        assert provider.requests, "no request reached the provider"
        assert {r["model"] for r in provider.requests} == {"gpt-4.1-mini"}
        assert set(provider.authorizations) == {f"Bearer {key}"}
        # The fake provider's words reached the notebook's outputs, not the offline script's.
        assert "says the fake provider" in json.dumps([c.get("outputs", []) for c in nb.cells])

    # Export as a user would share it: the notebook (with its widget state) and HTML.
    del nb.cells[0]
    nbformat.write(nb, tmp_path / f"{name}.ipynb")
    html, _ = nbconvert.HTMLExporter().from_notebook_node(nb)
    (tmp_path / f"{name}.html").write_text(html, encoding="utf-8")

    outputs = secret_scan.scan_text(json.dumps([c.get("outputs", []) for c in nb.cells]), token)
    found = secret_scan.scan_tree(tmp_path, token)
    log_lines = len((tmp_path / "log-kernel.txt").read_text(errors="replace").splitlines())
    events = len((tmp_path / "events-kernel.txt").read_text(errors="replace").splitlines())
    record(
        "secrets",
        f"notebook_{name}",
        {
            "files": found["files"],
            "bytes": found["bytes"],
            "log_lines": log_lines,
            "event_lines": events,
            "requests_with_key": len(provider.authorizations),
            "occurrences": outputs + found["occurrences"],
        },
    )
    assert outputs == 0
    assert found["hits"] == {}
    # the scan looked at real material: the instrumentation wrote, and the exports exist
    assert log_lines > 0 and (events > 0 or name == "06_team_mode")
    if name in CHATTY:  # litellm's debug lines (requests as curl commands, headers masked) were searched
        assert "POST Request Sent from LiteLLM" in (tmp_path / "log-kernel.txt").read_text(errors="replace")
    assert found["files"] >= 4


def test_choose_model_precedence() -> None:
    from cmdc_nb.providers import Script, choose_model, describe_model_choice

    script = Script(["hi"], name="precedence")
    assert choose_model(script, env={}) == "scripted/precedence"
    assert choose_model(script, env={"OPENAI_API_KEY": "k"}) == "openai/gpt-4.1-mini"
    # the first provider in PROVIDER_DEFAULTS wins; an explicit model wins over keys; offline over all
    keys = {"ANTHROPIC_API_KEY": "k", "GEMINI_API_KEY": "k"}
    assert choose_model(script, env=keys) == "anthropic/claude-haiku-4-5"
    assert choose_model(script, env={**keys, "CMDC_NB_MODEL": "ollama/llama3.2"}) == "ollama/llama3.2"
    choice = describe_model_choice(script, env={**keys, "CMDC_NB_OFFLINE": "1"})
    assert (choice.model, choice.offline) == ("scripted/precedence", True)
    # blank variables count as unset, and the reason never carries the key
    blank = describe_model_choice("scripted/x", env={"OPENAI_API_KEY": "  "})
    assert blank.model == "scripted/x"
    shown = describe_model_choice(script, env={"OPENAI_API_KEY": "sk-secret-123"})
    assert "sk-secret-123" not in f"{shown} {shown!r}"
