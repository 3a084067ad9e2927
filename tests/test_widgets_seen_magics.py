"""The notebook magics as a user sees them, in real JupyterLab and headless Chromium
(tests/support/seeing.py): `%cmdc status` is a table that follows the agents while they run — the cell is
never run again —, and `%%chat` cells talk to one chat: the second cell sends to it and says where it is
instead of drawing a second live view. Readable (≥ 4.5:1) and inside its output area in every look.
Screenshots: ci-artifacts/screenshots/status-<light|dark|contrast>-<width>.png."""

from __future__ import annotations

from typing import Any

import pytest
from browser import WAIT_MS
from seeing import LOOKS, look_name

pytestmark = pytest.mark.xdist_group("browser")

SETUP = """
import os, tempfile
os.environ.setdefault("CMDC_NB_HOME", tempfile.mkdtemp())
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script, Turn
%load_ext cmdc_nb
script = Script([Turn("Two and two make **4**.", chunk_delay=0.01), Turn("And three and three make **6**.", chunk_delay=0.01)])
helper = Agent(model=script.model, name="Helper")
"""
STATUS = "%cmdc status"
FIRST = "%%chat\nWhat are two and two?"
SECOND = "%%chat\nAnd three and three?"


def test_status_follows_the_agent_and_two_chat_cells_share_one_chat(lab: Any) -> None:
    lab.console_errors.clear()
    lab.open("magics", [SETUP, STATUS, FIRST, SECOND], done=".cmdc-msg:has-text('make 6')")
    page = lab.page
    # one live chat, with both turns; the second cell says where the chat is
    assert page.locator(".cmdc-chat").count() == 1
    assert page.locator(".cmdc-chat .cmdc-msg:has-text('make 4')").count() == 1
    said = page.locator(".jp-Cell").nth(3).locator(".jp-OutputArea-output").inner_text()
    prompts = page.evaluate("() => [...document.querySelectorAll('.jp-InputPrompt')].map(e => e.textContent)")
    assert said.strip() == "sent to helper (Helper) — the chat is in cell [3]", (said, prompts)
    # the status table above, drawn before either turn, now shows both (its cell never ran again)
    row = page.locator(".cmdc-status-table tbody tr").first
    page.wait_for_function(
        "() => { const r = document.querySelector('.cmdc-status-table tbody tr');"
        " return r && r.children[1].textContent === 'idle' && r.children[3].textContent === '2'; }",
        timeout=WAIT_MS,
    )
    cells = [c.strip() for c in row.inner_text().split("\t")]
    assert cells[:4] == ["helper (Helper)", "idle", script_model(lab), "2"], cells
    assert cells[4] == "4"  # two questions, two answers
    assert lab.kernel("print(len(helper.messages), helper.turns)") == "4 2"
    for theme, width in LOOKS:
        lab.view(theme, width)
        name = f"status-{look_name(theme, width)}"
        lab.shot(name, ".cmdc-status-table")
        assert lab.low_contrast(".cmdc-status-table") == [], name
        assert lab.overflow(".cmdc-status-table") == [], name
    assert lab.console_errors == []


def script_model(lab: Any) -> str:
    return lab.kernel("print(helper.model)")
