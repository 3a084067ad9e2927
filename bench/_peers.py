"""Peers in their own virtual environments under bench/.cache, created on first use with pinned versions,
so that none of them leaks into the package's dependencies."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CACHE = HERE / ".cache"
PEERS: dict[str, list[str]] = {
    "langgraph": [
        "langgraph==1.2.22",
        "langgraph-checkpoint-sqlite==3.1.2",
        "langgraph-checkpoint-postgres==3.2.0",
        "psycopg[binary]==3.3.9",
        "langchain-core==1.7.2",
    ],
    "pydantic-ai": ["pydantic-ai-slim==2.68.0"],
    "llm": ["llm==0.36", "numpy"],
}


def python_of(peer: str | None) -> str:
    """The interpreter of `peer`'s environment (this one for None), creating the environment if needed."""
    if peer is None:
        return sys.executable
    venv = CACHE / peer
    py = venv / "bin" / "python"
    stamp = venv / "cmdc-bench-pins.txt"  # the pins it was made with: a changed list remakes it
    pins = "\n".join(PEERS[peer])
    if py.exists() and (not stamp.exists() or stamp.read_text() != pins):
        shutil.rmtree(venv)
    if not py.exists():
        uv = shutil.which("uv") or str(HERE.parent / ".venv-tools" / "bin" / "uv")
        if Path(uv).exists():
            subprocess.run([uv, "venv", "-q", "--python", sys.executable, str(venv)], check=True)
            subprocess.run([uv, "pip", "install", "-q", "--python", str(py), *PEERS[peer]], check=True)
        else:
            subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
            subprocess.run([str(py), "-m", "pip", "install", "-q", *PEERS[peer]], check=True)
        stamp.write_text(pins)
    return str(py)


def version_of(peer: str | None, package: str) -> str:
    code = f"import importlib.metadata as m; print(m.version({package!r}))"
    return subprocess.run([python_of(peer), "-c", code], capture_output=True, text=True).stdout.strip()
