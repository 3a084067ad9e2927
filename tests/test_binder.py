"""What Binder does, done here: a fresh virtual environment from binder/requirements.txt, binder/postBuild,
then every notebook executed in that environment's own kernel."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from waiting import CEILING_S

from cmdc_nb.providers.choice import PROVIDER_DEFAULTS

ROOT = Path(__file__).resolve().parent.parent


def uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".venv-tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is missing: scripts/bootstrap.sh installs it into .venv-tools")
    return found


def test_binder_environment_runs_every_notebook(tmp_path: Path) -> None:
    venv = tmp_path / "binder-venv"
    # Binder's machine has none of our settings and no provider key: the notebooks run offline there.
    keys = {var for var, _ in PROVIDER_DEFAULTS}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "CMDC_", "PYTHONPATH")) and k not in keys
    }
    env["HOME"] = str(
        tmp_path / "home"
    )  # postBuild's workspace and Jupyter's files go here, not the real HOME
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
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        out = tmp_path / notebook.name
        run = subprocess.run(
            [
                str(venv / "bin" / "jupyter"),
                "nbconvert",
                "--to",
                "notebook",
                "--execute",
                str(notebook),
                "--output",
                str(out),
                "--ExecutePreprocessor.timeout=600",
            ],
            cwd=ROOT / "notebooks",
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert run.returncode == 0, f"{notebook.name}: {run.stderr[-2000:]}"
        assert out.exists() and '"output_type": "error"' not in out.read_text()
