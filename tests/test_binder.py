"""What Binder does, done here: a fresh virtual environment from binder/requirements.txt, binder/postBuild,
then every notebook executed in that environment's own kernel. And two quick checks of binder/ itself:
its requirements are uv.lock's pins, and postBuild uses only the public API."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from waiting import CEILING_S

from cmdc_nb._public import PUBLIC
from cmdc_nb.providers.choice import PROVIDER_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent
REQUIREMENTS = ROOT / "binder" / "requirements.txt"
# binder/requirements.txt is this command's output (its header says so): regenerate it with
# `.venv-tools/bin/uv export --frozen --extra notebook --extra gateway --no-hashes --no-editable -o binder/requirements.txt`
# (the gateway extra: 08_serve_and_share serves an agent over HTTP)
EXPORT = ("export", "--frozen", "--extra", "notebook", "--extra", "gateway", "--no-hashes", "--no-editable")


def uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".venv-tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is missing: scripts/bootstrap.sh installs it into .venv-tools")
    return found


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


def test_binder_environment_runs_every_notebook(tmp_path: Path) -> None:
    venv = tmp_path / "binder-venv"
    # Binder's machine has none of our settings and no provider key: the notebooks run offline there.
    keys = {var for var, _ in PROVIDER_DEFAULTS}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "CMDC_", "PYTHONPATH", "XDG_")) and k not in keys
    }
    home = tmp_path / "home"  # Jupyter's files (and a workspace, were postBuild to make one) go here
    env["HOME"] = str(home)
    subprocess.run(
        [uv(), "venv", "--quiet", "--python", "3.11", str(venv)], check=True, env=env, timeout=CEILING_S
    )
    # repo2docker runs `pip install -r binder/requirements.txt` from the repository root
    subprocess.run(
        [
            uv(),
            "pip",
            "install",
            "--quiet",
            "--compile-bytecode",  # pip (repo2docker's installer) writes .pyc files by default
            "--python",
            str(venv / "bin" / "python"),
            "-r",
            "binder/requirements.txt",
        ],
        check=True,
        cwd=ROOT,
        env=env,
        timeout=900,
    )
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    post = subprocess.run(
        ["bash", str(ROOT / "binder" / "postBuild")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert post.returncode == 0, post.stderr
    assert "binder: ready" in post.stdout
    # The image is shared by every Binder user: it must hold no workspace and no vault key of its own.
    baked = [p for p in home.rglob("*") if p.name in ("vault.key", "cmdc_nb.db")]
    assert not baked and not (home / ".local" / "share" / "cmdc_nb").exists(), baked
    # One nbconvert for all of them (each still in a kernel of its own): its start-up, paid once, was
    # ≈2 s a notebook of this test's ≈2½ minutes.
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    out = tmp_path / "executed"
    run = subprocess.run(
        [
            str(venv / "bin" / "jupyter"),
            "nbconvert",
            "--to",
            "notebook",
            "--execute",
            *[str(n) for n in notebooks],
            "--output-dir",
            str(out),
            "--ExecutePreprocessor.timeout=600",
        ],
        cwd=ROOT / "notebooks",
        env=env,
        capture_output=True,
        text=True,
        timeout=900 + 120 * len(notebooks),
    )
    assert run.returncode == 0, run.stderr[-3000:]
    for notebook in notebooks:
        done = out / notebook.name
        assert done.exists(), f"{notebook.name} was not executed: {run.stderr[-2000:]}"
        assert '"output_type": "error"' not in done.read_text(), notebook.name
