"""What Binder builds, built here: a fresh virtual environment from binder/requirements.txt (as
repo2docker's `pip install -r` from the repository root), then binder/postBuild — with none of our
settings, no provider key and a HOME of its own, as on Binder's machine. A Jupyter kernel spec of its
own (`KERNEL`, under `jupyter_path`) runs notebooks in it."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from waiting import CEILING_S

from cmdc_nb.providers.choice import PROVIDER_DEFAULTS

ROOT = Path(__file__).resolve().parents[2]
KERNEL = "cmdc-binder"


def uv() -> str:
    found = shutil.which("uv") or str(ROOT / ".venv-tools" / "bin" / "uv")
    if not Path(found).exists():
        raise RuntimeError("uv is missing: scripts/bootstrap.sh installs it into .venv-tools")
    return found


@dataclass(frozen=True)
class BinderEnv:
    venv: Path
    home: Path  # the build's HOME: the image's, shared by every Binder user
    post_build: subprocess.CompletedProcess[str]

    @property
    def jupyter_path(self) -> str:
        """Where `KERNEL`'s spec is (for `JUPYTER_PATH`)."""
        return str(self.venv / "share" / "jupyter")


def build(folder: Path) -> BinderEnv:
    venv, home = folder / "binder-venv", folder / "home"
    keys = {var for var, _ in PROVIDER_DEFAULTS}
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VIRTUAL_ENV", "CMDC_", "PYTHONPATH", "XDG_", "JUPYTER")) and k not in keys
    }
    env["HOME"] = str(home)  # Jupyter's files (and a workspace, were postBuild to make one) go here
    subprocess.run(
        [uv(), "venv", "--quiet", "--python", "3.11", str(venv)], check=True, env=env, timeout=CEILING_S
    )
    subprocess.run(
        [
            uv(), "pip", "install", "--quiet",
            "--compile-bytecode",  # pip (repo2docker's installer) writes .pyc files by default
            "--python", str(venv / "bin" / "python"), "-r", "binder/requirements.txt",
        ],
        check=True, cwd=ROOT, env=env, timeout=900,
    )  # fmt: skip
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    post = subprocess.run(
        ["bash", str(ROOT / "binder" / "postBuild")],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    # the kernel spec goes into the venv, after postBuild (so the image's HOME is as Binder leaves it)
    subprocess.run(
        [str(venv / "bin" / "python"), "-m", "ipykernel", "install", "--prefix", str(venv), "--name", KERNEL],
        check=True, env=env, capture_output=True, timeout=CEILING_S,
    )  # fmt: skip
    return BinderEnv(venv, home, post)
