"""A `cmdc-nb worker` process for the tests that send workflow steps (and eval cases) to workers: it
imports `load` from tests/support, and its standard output is a pipe the test may read (START lines)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

SUPPORT = Path(__file__).resolve().parent


def start_worker(
    url: str, home: Path, stderr: Path, *, load: str, concurrency: int = 2
) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(SUPPORT), os.environ.get("PYTHONPATH", "")])}
    cmd = ["worker", "--concurrency", str(concurrency), "--no-scheduler", "--load", load]
    with stderr.open("a") as err:
        return subprocess.Popen(
            [sys.executable, "-m", "cmdc_nb", "--url", url, "--home", str(home), *cmd],
            env=env,
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
        )
