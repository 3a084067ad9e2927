"""A reply as a user reads, copies and rates it, in real JupyterLab and headless Chromium
(tests/support/seeing.py): a placeholder stands where the reply will be until its first words; its
LaTeX is typeset by JupyterLab's MathJax; its Copy button puts its Markdown on the clipboard; Like, and
Dislike with a note, change the buttons and the database. In Light and Dark at 760 and 1280 px (High
Contrast at 1280) every text reads, nothing overflows, and the page logs no error.
Screenshots: ci-artifacts/screenshots/chat-reply-<light|dark>-<width>.png."""

from __future__ import annotations

from typing import Any

import pytest
from browser import WAIT_MS
from seeing import LOOKS, look_name

pytestmark = pytest.mark.xdist_group("browser")

CHAT = ".chat-reply-box"
REPLY = "Euler: $e^{i\\\\pi} + 1 = 0$, and it costs $5 and $10.\\n\\n```python\\nprint(1)\\n```"

NOTEBOOK = f'''
import os, tempfile
os.environ["CMDC_NB_HOME"] = tempfile.mkdtemp()
import cmdc_nb
from cmdc_nb import accounts, frames, sessions
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script, Turn
from cmdc_nb.widgets import ChatWidget

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")
script = Script([Turn("{REPLY}", delay=2.0)])
agent = Agent(model=script.model, name="Maths", session=sessions.create_session(me, name="Maths"))
chat = ChatWidget(agent, height="360px")
chat.add_class("chat-reply-box")
chat
'''


def test_a_reply_is_awaited_typeset_copied_and_rated(lab: Any) -> None:
    lab.open("chat_reply", [NOTEBOOK], done=f"{CHAT} .cmdc-log")
    page = lab.page
    errors_before = len(lab.console_errors)
    page.locator(f"{CHAT} textarea").fill("What is Euler's identity?")
    page.locator(f"{CHAT} .cmdc-chat-footer button:has-text('Send')").click()

    # while the model has not answered: the placeholder, where the reply will be
    page.wait_for_selector(f"{CHAT} .cmdc-thinking", timeout=WAIT_MS)
    assert "thinking" in page.locator(f"{CHAT} .cmdc-thinking").inner_text()
    reply = page.locator(f"{CHAT} .cmdc-msg.cmdc-assistant:has-text('Euler')")
    reply.wait_for(timeout=WAIT_MS)
    page.wait_for_selector(f"{CHAT} .cmdc-thinking", state="detached", timeout=WAIT_MS)

    # the formula typeset by MathJax; the prices left as text
    page.wait_for_selector(f"{CHAT} .cmdc-assistant .cmdc-math mjx-container", timeout=WAIT_MS)
    assert "costs $5 and $10" in reply.inner_text()

    # Copy puts the reply as it was written on the clipboard (Markdown, not the drawn text)
    page.context.grant_permissions(["clipboard-read", "clipboard-write"])
    reply.hover()
    copy = reply.locator(":scope > .cmdc-copy-msg")
    copy.wait_for(timeout=WAIT_MS)
    copy.click()
    page.wait_for_function(
        f"() => document.querySelector('{CHAT} .cmdc-assistant > .cmdc-copy-msg').textContent === 'Copied'",
        timeout=WAIT_MS,
    )
    copied = page.evaluate("() => navigator.clipboard.readText()")
    assert copied.startswith("Euler: $e^{i\\pi} + 1 = 0$") and "```python\nprint(1)\n```" in copied

    # Like: the button shows it, and the database holds it as Ada's
    page.click(f"{CHAT} .cmdc-reply-bar .cmdc-like")
    page.wait_for_selector(f"{CHAT} .cmdc-reply-bar .cmdc-like.mod-success", timeout=WAIT_MS)
    assert lab.kernel("print(list(frames.feedback_frame(user=me)['rating']))") == "['like']"

    # Dislike with a note: the note box opens, Save note stores it
    page.click(f"{CHAT} .cmdc-reply-bar .cmdc-dislike")
    note = page.locator(f"{CHAT} .cmdc-reply-bar input[type=text]")
    note.wait_for(timeout=WAIT_MS)
    note.fill("say what i is")
    note.press("Tab")  # ipywidgets' Text syncs its value on change
    page.click(f"{CHAT} .cmdc-reply-bar button:has-text('Save note')")
    page.wait_for_selector(f"{CHAT} .cmdc-reply-bar :text('note saved')", timeout=WAIT_MS)
    stored = lab.kernel(
        "df = frames.feedback_frame(user=me); print(list(df['rating']), list(df['note']), list(df['model']))"
    )
    assert stored == "['dislike'] ['say what i is'] ['" + lab.kernel("print(script.model)") + "']"

    for theme, width in LOOKS:
        lab.view(theme, width)
        page.locator(CHAT).scroll_into_view_if_needed()
        page.wait_for_timeout(200)
        where = f"{theme} at {width}px"
        assert lab.low_contrast(CHAT) == [], where
        assert lab.overflow(CHAT) == [], where
        assert lab.in_view(CHAT, ".cmdc-reply-bar") is True, where
        lab.shot(f"chat-reply-{look_name(theme, width)}", CHAT)
    assert lab.console_errors[errors_before:] == []
