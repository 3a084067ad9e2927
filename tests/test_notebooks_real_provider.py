"""The notebooks with a key present: `choose_model` switches their chats to the real provider.

The provider is an OpenAI-compatible server on loopback (`tests/fake_openai.py`) reached by litellm
through `OPENAI_BASE_URL` and `OPENAI_API_KEY`, as a real one would be. Each notebook must run to the
end, the model requests must reach that server with the key, and the key must appear in no output.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbclient
import nbformat
import pytest

from tests.fake_openai import FakeOpenAI

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"
SENTINEL = "sk-cmdc-sentinel-7f3a9c0d2e"


@pytest.mark.parametrize(
    "name",
    ["00_tour", "01_chat_and_approvals", "02_workflows", "03_rag_index", "05_inside_the_agent_loop"],
)
def test_a_notebook_uses_the_real_provider_when_a_key_is_set(
    name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    with FakeOpenAI() as provider:
        monkeypatch.delenv("CMDC_NB_OFFLINE", raising=False)
        monkeypatch.delenv("CMDC_NB_MODEL", raising=False)
        monkeypatch.setenv("OPENAI_API_KEY", SENTINEL)
        monkeypatch.setenv("OPENAI_BASE_URL", provider.base_url)
        monkeypatch.setenv("CMDC_NB_HOME", str(tmp_path / "home"))
        nbclient.NotebookClient(
            nb,
            timeout=240,
            kernel_name="python3",
            store_widget_state=False,
            resources={"metadata": {"path": str(tmp_path)}},
        ).execute()  # raises CellExecutionError on any failing cell

    assert provider.requests, "no request reached the provider"
    assert {r["model"] for r in provider.requests} == {"gpt-4.1-mini"}
    assert set(provider.authorizations) == {f"Bearer {SENTINEL}"}
    # The fake provider's words reached the notebook's outputs (not the offline script's) ...
    text = json.dumps([cell.get("outputs", []) for cell in nb.cells])
    assert "says the fake provider" in text
    # ... and the key never did.
    assert SENTINEL not in text
    assert SENTINEL[-10:] not in text


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
