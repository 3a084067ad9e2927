"""Real JupyterLab driven by headless Chromium (Debian's `chromium`; Playwright's Python driver only —
no browser download). Used by the widget tests; screenshots go to ci-artifacts/screenshots/."""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import nbformat
from waiting import CEILING_S

# How long a page is watched for what a user should see (Playwright counts milliseconds).
WAIT_MS = int(CEILING_S * 1000)
RETRY_MS = 10_000  # one try of something that is retried (the Run menu), not a wait for a signal
SCREENSHOTS = Path(__file__).resolve().parents[2] / "ci-artifacts" / "screenshots"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run", "--disable-quic", "--disable-dev-shm-usage",
]  # fmt: skip


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        raise RuntimeError(
            "no chromium: install Debian's package (scripts/test.sh does: apt-get install -y chromium)"
        )
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def jupyterlab(root: Path, *, expose_app: bool = False) -> Iterator[str]:
    """A JupyterLab server on loopback serving `root`; yields its base URL. With `expose_app`, the page
    has `window.jupyterapp` (its commands: a theme switch as a user's click makes it)."""
    port = free_port()
    # A private config dir, with the news toast (which can swallow the first clicks) turned off.
    labconfig = root / ".jupyter-config" / "labconfig"
    labconfig.mkdir(parents=True, exist_ok=True)
    (labconfig / "page_config.json").write_text(
        '{"disabledExtensions": {"@jupyterlab/apputils-extension:announcements": true}}'
    )
    env = {
        **os.environ,
        "JUPYTER_CONFIG_DIR": str(root / ".jupyter-config"),
        "JUPYTER_RUNTIME_DIR": str(root / ".jupyter-runtime"),
    }
    log = (root / "jupyterlab.log").open("w")
    proc = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.token=", "--ServerApp.password=",
         "--ServerApp.ip=127.0.0.1", f"--port={port}", "--allow-root", f"--ServerApp.root_dir={root}",
         *(["--LabApp.expose_app_in_browser=True"] if expose_app else [])],
        stdout=log, stderr=subprocess.STDOUT, env=env,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + CEILING_S
        while True:
            try:
                urllib.request.urlopen(f"{url}/api/status", timeout=2)
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise RuntimeError(
                        f"JupyterLab did not start: {(root / 'jupyterlab.log').read_text()[-2000:]}"
                    ) from None
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


def write_notebook(path: Path, cells: list[str]) -> None:
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "python3",
        "display_name": "Python 3 (ipykernel)",
        "language": "python",
    }
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    nbformat.write(nb, path)


@contextlib.contextmanager
def browser_page(width: int = 1200, height: int = 1000) -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium(), headless=True, args=CHROMIUM_ARGS)
        try:
            yield browser.new_page(viewport={"width": width, "height": height})
        finally:
            browser.close()


def run_all(page: Any, url: str) -> None:
    """Open the notebook and run all its cells (retrying the menu until a cell has started)."""
    page.goto(url)
    page.wait_for_selector("text=Kernel status: Idle", state="attached", timeout=WAIT_MS)
    page.wait_for_selector(".jp-Notebook .jp-Cell", timeout=WAIT_MS)
    for _ in range(5):
        page.click("li.lm-MenuBar-item:has-text('Run')")
        item = page.wait_for_selector(
            "li.lm-Menu-item[data-command='runmenu:run-all']", state="visible", timeout=RETRY_MS
        )
        item.click()
        try:
            page.wait_for_function(
                "() => [...document.querySelectorAll('.jp-InputPrompt')].some(e => /\\[(\\*|\\d+)\\]/.test(e.textContent))",
                timeout=RETRY_MS,
            )
            return
        except Exception:  # the menu opened before the notebook was ready: try again
            page.keyboard.press("Escape")
    raise RuntimeError("could not start the notebook's cells")


def screenshot(page: Any, name: str) -> Path:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / name
    page.screenshot(path=str(path))
    return path
