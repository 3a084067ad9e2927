"""What Binder does, done here: a fresh virtual environment from binder/requirements.txt, then
binder/postBuild (`tests/support/binder_env.py`); every notebook then runs in that environment's own
kernel in `test_notebooks_real_provider.py`, with a provider key as a Binder user may bring one. And two
quick checks of binder/ itself: its requirements are uv.lock's pins, and postBuild uses only the public
API."""

from __future__ import annotations

import ast
import re
import subprocess
from pathlib import Path

import pytest
from binder_env import BinderEnv, uv
from waiting import CEILING_S

from cmdc_nb._public import PUBLIC

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "binder" / "requirements.txt"
# binder/requirements.txt is this command's output (its header says so): regenerate it with
# `.venv-tools/bin/uv export --frozen --extra notebook --extra gateway --no-hashes --no-editable -o binder/requirements.txt`
# (the gateway extra: 08_serve_and_share serves an agent over HTTP)
EXPORT = ("export", "--frozen", "--extra", "notebook", "--extra", "gateway", "--no-hashes", "--no-editable")


def pins(text: str) -> dict[str, str]:
    """`name==version` of every requirement line (names normalised as pip does)."""
    found = {}
    for line in text.splitlines():
        if match := re.match(r"([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;]+)", line):
            found[re.sub(r"[-_.]+", "-", match[1]).lower()] = match[2]
    return found


def test_binder_requirements_are_uv_lock_pinned() -> None:
    text = REQUIREMENTS.read_text()
    assert text.splitlines()[1].split() == ["#", "uv", *EXPORT, "-o", "binder/requirements.txt"]
    # --frozen reads uv.lock as it is: no resolution, no network
    fresh = subprocess.run(
        [uv(), *EXPORT, "--no-header"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=CEILING_S,
    ).stdout
    # Compared as pins, not as text, so another uv version's layout of the same export still passes.
    assert pins(text) == pins(fresh), (
        "binder/requirements.txt differs from uv.lock: regenerate it (see EXPORT)"
    )
    assert {"litellm", "jupyterlab", "ipykernel"} <= set(pins(text)), "the notebook extra is exported too"
    assert {"fastapi", "a2a-sdk"} <= set(pins(text)), "and the gateway extra (notebook 08)"
    # the project itself comes from the repository (repo2docker installs from its root), not from an index
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    assert "." in lines and "cmdc-nb" not in pins(text)
    assert all("==" in line for line in lines if line != "."), "every other requirement is pinned"


def postbuild_python() -> str:
    text = (ROOT / "binder" / "postBuild").read_text()
    match = re.search(r"<<'PY'\n(.*?)\nPY\n", text, re.S)
    assert match, "postBuild runs its Python as a <<'PY' … PY heredoc"
    return match[1]


def test_binder_postbuild_uses_only_the_public_api() -> None:
    tree = ast.parse(postbuild_python())
    modules: dict[str, str] = {}  # local name -> public module it is bound to
    used: list[str] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("cmdc_nb"):
                    assert alias.name in PUBLIC, f"postBuild imports {alias.name}, which is not public"
                    modules[alias.asname or alias.name] = alias.name
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("cmdc_nb"):
            module = node.module or ""
            for alias in node.names:
                assert module in PUBLIC and alias.name in PUBLIC[module], (
                    f"{module}.{alias.name} is not public"
                )
                if f"{module}.{alias.name}" in PUBLIC:
                    modules[alias.asname or alias.name] = f"{module}.{alias.name}"
                used.append(f"{module}.{alias.name}")
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id in modules:
            module = modules[node.value.id]
            assert node.attr in PUBLIC[module], f"postBuild uses {module}.{node.attr}, which is not public"
            used.append(f"{module}.{node.attr}")
    # it warms through the providers (a scripted call) and pricing (tiktoken), and opens no workspace
    assert "cmdc_nb.providers.stream_completion" in used and "cmdc_nb.pricing.count_tokens" in used
    assert not any(name.endswith(".connect") for name in used)


@pytest.mark.xdist_group("binder")
def test_binder_environment_builds_warms_and_bakes_in_no_workspace(
    binder_env: BinderEnv, tmp_path: Path
) -> None:
    post = binder_env.post_build
    assert post.returncode == 0, post.stderr
    assert "binder: ready" in post.stdout
    # The image is shared by every Binder user: it must hold no workspace and no vault key of its own.
    home = binder_env.home
    baked = [p for p in home.rglob("*") if p.name in ("vault.key", "cmdc_nb.db")]
    assert not baked and not (home / ".local" / "share" / "cmdc_nb").exists(), baked
    # the package came from the repository (repo2docker installs "."), not from an index
    shown = subprocess.run(
        [str(binder_env.venv / "bin" / "python"), "-c", "import cmdc_nb, sys; print(cmdc_nb.__file__)"],
        cwd=tmp_path, capture_output=True, text=True, check=True, timeout=CEILING_S,
    ).stdout  # fmt: skip
    assert str(binder_env.venv) in shown
