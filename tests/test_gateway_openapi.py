"""Schemathesis against the gateway's OpenAPI document: requests generated from the
schema, valid and not, sent to a real server on loopback — none may get a server error."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from pathlib import Path

import pytest

import cmdc_nb
from cmdc_nb.gateway import Gateway, create_gateway_key
from cmdc_nb.workspace import Workspace


@pytest.mark.parametrize("backend", ["sqlite"])
def test_schemathesis_finds_no_server_error(ws: Workspace, tmp_path: Path) -> None:
    user = cmdc_nb.accounts.create_user("ada@example.com", ws=ws)
    key = create_gateway_key(user, name="schemathesis", ws=ws).key
    gw = Gateway(ws=ws, port=0, rate_limit_per_minute=1_000_000)
    started = threading.Event()
    loop = asyncio.new_event_loop()

    def serve() -> None:
        asyncio.set_event_loop(loop)
        loop.run_until_complete(gw.start())
        started.set()
        loop.run_forever()

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    assert started.wait(60)
    try:
        run = subprocess.run(
            [
                str(Path(sys.executable).with_name("st")),
                "run",
                f"{gw.url}/openapi.json",
                "--checks",
                "not_a_server_error",
                "-H",
                f"X-API-Key: {key}",
                "--exclude-path-regex",
                "/events$",  # a live stream never ends: it has its own tests
                "--max-examples",
                "25",
                "--seed",
                "11",
                "--request-timeout",
                "20",
                "--report",
                "junit",
                "--report-dir",
                str(tmp_path),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            cwd=tmp_path,  # schemathesis keeps a cache in its working directory: not in the repository
        )
    finally:
        asyncio.run_coroutine_threadsafe(gw.stop(), loop).result(60)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(30)
    report = run.stdout[-4000:]
    assert run.returncode == 0, report
    assert key not in run.stdout + run.stderr
    junit = next(tmp_path.rglob("*.xml")).read_text()
    assert junit.count("<testcase") >= 15  # every operation (but the stream) was exercised
