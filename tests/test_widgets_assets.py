"""The widgets' front end lives in the top-level widgets/ folder and ships inside the wheel, and so does
the tour notebook, so `cmdc-nb tour` works from a pip install."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from cmdc_nb.widgets import _assets

REPO = Path(__file__).resolve().parents[1]
FRONT_END = sorted(p.name for p in (REPO / "widgets").iterdir() if p.suffix in {".js", ".css"})


def _uv() -> str:
    found = shutil.which("uv") or str(REPO / ".venv-tools" / "bin" / "uv")
    if not Path(found).exists():
        pytest.fail("uv is missing: scripts/bootstrap.sh installs it")
    return found


def test_a_checkout_reads_the_front_end_from_the_top_level_folder() -> None:
    assert {"dag.js", "dag.css", "chat_follow.js"} <= set(FRONT_END)
    for name in FRONT_END:
        assert _assets.asset(name) == REPO / "widgets" / name
    with pytest.raises(FileNotFoundError, match=r"nothing\.js"):
        _assets.asset("nothing.js")


def test_a_checkout_runs_its_own_tour_notebook() -> None:
    from cmdc_nb.demo import tour_notebook

    assert tour_notebook() == REPO / "notebooks" / "00_tour.ipynb"  # the copy its author edits


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    # `uv build` makes the sdist, then the wheel from the sdist: both must carry what the wheel ships
    out = tmp_path_factory.mktemp("dist")
    subprocess.run([_uv(), "build", "--quiet", "-o", str(out), str(REPO)], check=True, timeout=600)
    (built,) = out.glob("*.whl")
    return built


def test_the_wheel_built_from_the_sdist_carries_every_front_end_file(wheel: Path, tmp_path: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        for name in FRONT_END:
            packaged = f"cmdc_nb/widgets/static/{name}"
            assert packaged in names
            assert zf.read(packaged) == (REPO / "widgets" / name).read_bytes()
        zf.extractall(tmp_path / "site")
    # installed from the wheel (no checkout beside it), the widgets find their front end in the package
    found = subprocess.run(
        [sys.executable, "-c", "from cmdc_nb.widgets._assets import asset; print(asset('dag.js'))"],
        cwd=tmp_path,
        env={"PYTHONPATH": str(tmp_path / "site"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert found == str(tmp_path / "site" / "cmdc_nb" / "widgets" / "static" / "dag.js")


def test_cmdc_nb_tour_runs_the_packaged_notebook_from_an_installed_wheel(wheel: Path, tmp_path: Path) -> None:
    tour = REPO / "notebooks" / "00_tour.ipynb"
    site = tmp_path / "site"
    with zipfile.ZipFile(wheel) as zf:
        assert zf.read("cmdc_nb/notebooks/00_tour.ipynb") == tour.read_bytes()
        zf.extractall(site)
    assert not (site / "notebooks").exists()  # installed: no clone beside the package
    work = tmp_path / "work"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CMDC_NB_", "XDG_"))}
    env["PYTHONPATH"] = str(site)  # the wheel's cmdc_nb, not this checkout's (the kernel inherits it)
    done = subprocess.run(
        [sys.executable, "-m", "cmdc_nb", "tour"],
        cwd=work,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    packaged = site / "cmdc_nb" / "notebooks" / "00_tour.ipynb"
    assert f"the notebook: {packaged}" in done.stderr.splitlines()
    # its agents are offline, served without litellm: no model client to load, and none announced
    assert "  loading the model client (first call only)…" not in done.stderr.splitlines()
    html = work / "cmdc_nb-tour.html"  # in the current directory, and the command says so
    assert done.stdout.splitlines()[-1] == f"the tour, executed, is in {html}"
    assert "A chat with a tool that needs your approval" in html.read_text(encoding="utf-8")
    # the run left nothing inside the installed package but what the wheel put there
    with zipfile.ZipFile(wheel) as zf:
        shipped = {n for n in zf.namelist() if n.startswith("cmdc_nb/")}
    left = {
        p.relative_to(site).as_posix()
        for p in (site / "cmdc_nb").rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert left == shipped
