"""The widgets' front end lives in the top-level widgets/ folder and ships inside the wheel."""

from __future__ import annotations

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


def test_the_wheel_built_from_the_sdist_carries_every_front_end_file(tmp_path: Path) -> None:
    # `uv build` makes the sdist, then the wheel from the sdist: both must carry the folder
    subprocess.run([_uv(), "build", "--quiet", "-o", str(tmp_path), str(REPO)], check=True, timeout=600)
    (wheel,) = tmp_path.glob("*.whl")
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
