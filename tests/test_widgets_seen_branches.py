"""Branches as a user makes them, in real JupyterLab and headless Chromium (tests/support/seeing.py):
Re-run on a reply answers again in a fork, "‹ 2/2 ›" appears under it and ‹ shows the first answer
again; edit on a prompt opens a box, Resend answers the edited prompt in another fork; Undo takes the
last prompt back into the input box. After each, the screen and the database agree. In Light and Dark at
760 and 1280 px (High Contrast at 1280) every text reads, nothing overflows, and the page logs no error.
Screenshots: ci-artifacts/screenshots/chat-branches-<light|dark>-<width>.png."""

from __future__ import annotations

from typing import Any

import pytest
from browser import WAIT_MS
from seeing import LOOKS, look_name

pytestmark = pytest.mark.xdist_group("browser")

CHAT = ".chat-branch-box"

NOTEBOOK = """
import os, tempfile
os.environ["CMDC_NB_HOME"] = tempfile.mkdtemp()
import cmdc_nb
from cmdc_nb import accounts, sessions
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script
from cmdc_nb.widgets import ChatWidget

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")
script = Script(["Use a set.", "Use dict.fromkeys to keep the order.", "Sort it, then walk it once."])
first = sessions.create_session(me, name="Dedupe")
agent = Agent(model=script.model, name="Helper", session=first)
chat = ChatWidget(agent, height="360px")
chat.add_class("chat-branch-box")
chat
"""


def text_of_log(page: Any) -> str:
    return page.locator(f"{CHAT} .cmdc-log").inner_text()


def test_rerun_edit_and_undo_make_branches_the_screen_and_the_database_agree_on(lab: Any) -> None:
    lab.open("chat_branches", [NOTEBOOK], done=f"{CHAT} .cmdc-log")
    page = lab.page
    errors_before = len(lab.console_errors)
    page.locator(f"{CHAT} textarea").first.fill("How do I dedupe a list?")
    page.locator(f"{CHAT} .cmdc-chat-footer button:has-text('Send')").click()
    page.wait_for_selector(f"{CHAT} .cmdc-msg:has-text('Use a set.')", timeout=WAIT_MS)

    # Re-run: a second answer in a fork; the switcher says 2/2; ‹ shows the first answer again
    page.click(f"{CHAT} .cmdc-reply-bar .cmdc-rerun")
    page.wait_for_selector(f"{CHAT} .cmdc-msg:has-text('dict.fromkeys')", timeout=WAIT_MS)
    switcher = page.locator(f"{CHAT} .cmdc-branches")
    switcher.wait_for(timeout=WAIT_MS)
    assert "2/2" in switcher.inner_text()
    assert "Use a set." not in text_of_log(page)
    switcher.locator("button:has-text('‹')").click()
    page.wait_for_selector(f"{CHAT} .cmdc-branches:has-text('1/2')", timeout=WAIT_MS)
    assert "Use a set." in text_of_log(page) and "dict.fromkeys" not in text_of_log(page)
    both = lab.kernel(
        "print(sorted(m.content for s in sessions.branches(first, 2) for m in sessions.list_messages(s).entries"
        " if m.role.value == 'assistant'))"
    )
    assert both == "['Use a set.', 'Use dict.fromkeys to keep the order.']"  # both answers kept

    # edit the prompt: a box under it, Resend answers the edited prompt in a new branch
    page.click(f"{CHAT} button:has-text('edit')")
    box = page.locator(f"{CHAT} .cmdc-edit-box textarea")
    box.wait_for(timeout=WAIT_MS)
    box.fill("How do I dedupe a sorted list?")
    page.click(f"{CHAT} button:has-text('Resend')")
    page.wait_for_selector(f"{CHAT} .cmdc-msg:has-text('Sort it, then walk it once.')", timeout=WAIT_MS)
    page.wait_for_selector(f"{CHAT} .cmdc-branches:has-text('2/2')", timeout=WAIT_MS)
    assert "How do I dedupe a sorted list?" in text_of_log(page)
    stored = lab.kernel(
        "print([m.content for m in sessions.list_messages(chat.agent.recorder.session_id).entries])"
    )
    assert stored == "['How do I dedupe a sorted list?', 'Sort it, then walk it once.']"

    for theme, width in LOOKS:
        lab.view(theme, width)
        page.locator(CHAT).scroll_into_view_if_needed()
        page.wait_for_timeout(200)
        where = f"{theme} at {width}px"
        assert lab.low_contrast(CHAT) == [], where
        assert lab.overflow(CHAT) == [], where
        lab.shot(f"chat-branches-{look_name(theme, width)}", CHAT)

    # Undo: the last prompt back in the box, a branch without it, nothing deleted
    page.click(f"{CHAT} .cmdc-chat-footer button:has-text('Undo')")
    page.wait_for_function(
        f"() => document.querySelector('{CHAT} .cmdc-chat-footer ~ * textarea, {CHAT} textarea')"
        ".value === 'How do I dedupe a sorted list?'",
        timeout=WAIT_MS,
    )
    assert "Sort it, then walk it once." not in text_of_log(page)
    assert lab.kernel("print(sessions.count_messages(chat.agent.recorder.session_id))") == "0"
    assert lab.console_errors[errors_before:] == []
