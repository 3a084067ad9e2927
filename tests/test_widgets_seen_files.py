"""Files in the chat as a user attaches them, in real JupyterLab and headless Chromium
(tests/support/seeing.py): a picture picked with Attach and another dropped on the chat wait as chips
with their thumbnails; Send takes them to the model (the scripted model's request carries the same
bytes) and into the session's artifacts; the prompt's bubble shows them as drawn pictures. With a model
that cannot see, the sentence saying so appears before Send. In Light and Dark at 760 and 1280 px
(High Contrast at 1280) every text reads, nothing overflows, and the page logs no error.
Screenshots: ci-artifacts/screenshots/chat-files-<light|dark>-<width>.png."""

from __future__ import annotations

import base64
import hashlib
import io
from pathlib import Path
from typing import Any

import pytest
from browser import WAIT_MS
from PIL import Image
from seeing import LOOKS, look_name

pytestmark = pytest.mark.xdist_group("browser")

CHAT = ".chat-files-box"

NOTEBOOK = """
import os, tempfile
os.environ["CMDC_NB_HOME"] = tempfile.mkdtemp()
import cmdc_nb
from cmdc_nb import accounts, artifacts, sessions
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script
from cmdc_nb.widgets import ChatWidget

ws = cmdc_nb.connect()
me = accounts.create_user("ada@example.com", name="Ada")
seeing = Script(["Two pictures: a red one and a blue one."], name="sees", accepts=["image"])
blind = Script(["I read text only."], name="reads")
session = sessions.create_session(me, name="Pictures")
chat = ChatWidget(Agent(model=seeing.model, session=session), models=[seeing.model, blind.model], height="360px")
chat.add_class("chat-files-box")
chat
"""

# What a browser does when a file is dropped: a DataTransfer holding a File, dragover then drop.
DROP_JS = """
([selector, name, b64, type]) => {
  const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
  const data = new DataTransfer();
  data.items.add(new File([bytes], name, { type }));
  const target = document.querySelector(selector + " .cmdc-scroll");
  for (const type of ["dragenter", "dragover", "drop"]) {
    target.dispatchEvent(new DragEvent(type, { bubbles: true, cancelable: true, dataTransfer: data }));
  }
}
"""

DRAWN_JS = """
(selector) => Array.from(document.querySelectorAll(selector)).map(
  (img) => [img.alt, img.complete && img.naturalWidth > 0 && img.getBoundingClientRect().width > 0])
"""


SIZES_JS = """
(selector) => Array.from(document.querySelectorAll(selector)).map((img) => {
  const box = img.getBoundingClientRect();
  return [Math.round(box.width), Math.round(box.height)];
})
"""


TOPS_JS = """
(selector) => Array.from(document.querySelectorAll(selector)).map((img) => Math.round(img.getBoundingClientRect().top))
"""


INSIDE_JS = """
(chat) => {
  const outer = document.querySelector(chat).getBoundingClientRect();
  const out = [];
  for (const img of document.querySelectorAll(chat + " .cmdc-msg.cmdc-user img.cmdc-thumb")) {
    const box = img.getBoundingClientRect(), bubble = img.closest(".cmdc-msg").getBoundingClientRect();
    const within = (a, b) => a.left >= b.left - 0.5 && a.right <= b.right + 0.5;
    if (!within(box, bubble) || !within(bubble, outer)) out.push([img.alt, box.left, bubble.left, outer.left]);
  }
  return out;
}
"""


def pick(page: Any, path: Path) -> None:
    """Attach: click the button, choose the file in the browser's file picker (on the browser's thread:
    the chooser is a context manager, which the page's cross-thread wrapper does not carry)."""

    def on_thread() -> None:
        raw = page._target
        with raw.expect_file_chooser(timeout=WAIT_MS) as chooser:
            raw.locator(f"{CHAT} .cmdc-attach").click()
        chooser.value.set_files(str(path))

    page._run(on_thread)


def png(colour: tuple[int, int, int]) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (240, 160), colour).save(out, format="PNG")
    return out.getvalue()


def test_pictures_attached_and_dropped_reach_the_model_and_show_as_thumbnails(
    lab: Any, tmp_path: Path
) -> None:
    red, blue = png((210, 30, 30)), png((30, 60, 210))
    (tmp_path / "red.png").write_bytes(red)
    lab.open("chat_files", [NOTEBOOK], done=f"{CHAT} .cmdc-log")
    page = lab.page
    errors_before = len(lab.console_errors)

    # Attach: the browser's file picker (ipywidgets' FileUpload input)
    pick(page, tmp_path / "red.png")
    page.wait_for_function(
        f"() => document.querySelectorAll('{CHAT} .cmdc-pending img.cmdc-thumb').length === 1",
        timeout=WAIT_MS,
    )
    # dropped on the chat
    page.evaluate(DROP_JS, [CHAT, "blue.png", base64.b64encode(blue).decode(), "image/png"])
    page.evaluate(
        DROP_JS, [CHAT, "notes.md", base64.b64encode(b"# Colours\nred, blue\n").decode(), "text/markdown"]
    )
    page.wait_for_selector(f"{CHAT} .cmdc-pending .cmdc-file-badge:text('TXT')", timeout=WAIT_MS)
    page.wait_for_function(
        f"() => document.querySelectorAll('{CHAT} .cmdc-pending img.cmdc-thumb').length === 2",
        timeout=WAIT_MS,
    )
    assert page.evaluate(DRAWN_JS, f"{CHAT} .cmdc-pending img.cmdc-thumb") == [
        ["red.png", True],
        ["blue.png", True],
    ]
    assert page.locator(f"{CHAT} .cmdc-files-note").inner_text().strip() == ""

    page.locator(f"{CHAT} textarea").fill("What colours are these?")
    page.locator(f"{CHAT} .cmdc-chat-footer button:has-text('Send')").click()
    page.locator(f"{CHAT} .cmdc-msg.cmdc-assistant:has-text('a red one')").wait_for(timeout=WAIT_MS)
    page.wait_for_selector(f"{CHAT} .cmdc-pending img", state="detached", timeout=WAIT_MS)
    bubble = f"{CHAT} .cmdc-msg.cmdc-user img.cmdc-thumb"
    page.wait_for_function(f"() => document.querySelectorAll('{bubble}').length === 2", timeout=WAIT_MS)
    assert page.evaluate(DRAWN_JS, bubble) == [["red.png", True], ["blue.png", True]]
    assert (
        "notes.md"
        in page.locator(f"{CHAT} .cmdc-msg.cmdc-user .cmdc-file:has(.cmdc-file-badge)").inner_text()
    )

    # the model's request carried both pictures, byte for byte; the session stores them as artifacts
    sent = lab.kernel(
        "import base64, hashlib\n"
        "parts = seeing.requests[-1][-1]['content']\n"
        "print([hashlib.sha256(base64.b64decode(p['image_url']['url'].split(',')[1])).hexdigest()"
        " for p in parts if p['type'] == 'image_url'])"
    )
    assert sent == str([hashlib.sha256(red).hexdigest(), hashlib.sha256(blue).hexdigest()])
    text_part = lab.kernel("print(seeing.requests[-1][-1]['content'][3]['text'])")
    assert text_part == '<file name="notes.md">\n# Colours\nred, blue\n\n</file>'
    kept = lab.kernel("print(sorted(a.name for a in artifacts.list_artifacts(me, session=session).entries))")
    assert kept == "['blue.png', 'notes.md', 'red.png']"

    # a model that cannot see: the sentence shows before Send
    page.locator(f"{CHAT} .cmdc-chat-header select").select_option(
        label=lab.kernel("print(chat._model_options()[1][0])")
    )
    pick(page, tmp_path / "red.png")
    page.wait_for_selector(f"{CHAT} .cmdc-files-note :text('cannot take images')", timeout=WAIT_MS)

    for theme, width in LOOKS:
        lab.view(theme, width)
        page.locator(CHAT).scroll_into_view_if_needed()
        page.wait_for_timeout(200)
        where = f"{theme} at {width}px"
        assert lab.low_contrast(CHAT) == [], where
        assert lab.overflow(CHAT) == [], where
        assert "{" not in page.locator(CHAT).inner_text(), where  # no style sheet drawn as text
        sizes = page.evaluate(SIZES_JS, f"{CHAT} img.cmdc-thumb")
        assert sizes and all(w <= 98 and h <= 74 for w, h in sizes), (where, sizes)  # small, border included
        assert page.evaluate(INSIDE_JS, CHAT) == [], (
            where
        )  # every picture whole, within its bubble and the chat
        tops = page.evaluate(TOPS_JS, f"{CHAT} .cmdc-msg.cmdc-user img.cmdc-thumb")
        if width >= 1280:
            assert len(set(tops)) == 1, (where, tops)  # side by side where there is room
        assert lab.in_view(CHAT, ".cmdc-msg.cmdc-user img.cmdc-thumb") is True, where
        lab.shot(f"chat-files-{look_name(theme, width)}", CHAT)
    assert lab.console_errors[errors_before:] == []
