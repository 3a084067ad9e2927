"""Files in the chat, on both backends: picked with Attach or dropped on the chat, shown as chips until
Send, sent to the model with the prompt, stored as artifacts, and drawn as thumbnails in the prompt's
bubble — live and when the chat is rebuilt. A model that cannot see them is named before Send, and a
refused file is explained, with nothing sent or stored.
(What a user sees in JupyterLab: tests/test_widgets_seen_files.py.)"""

from __future__ import annotations

import base64
import datetime as dt
import io
from typing import Any

from PIL import Image

from cmdc_nb import artifacts, sessions
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script
from cmdc_nb.widgets import ChatWidget


def png(colour: tuple[int, int, int] = (220, 40, 40)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (120, 80), colour).save(out, format="PNG")
    return out.getvalue()


def upload(name: str, data: bytes, kind: str = "image/png") -> dict[str, Any]:
    """One file as ipywidgets' FileUpload reports it after the browser's picker."""
    return {
        "name": name,
        "type": kind,
        "size": len(data),
        "content": memoryview(data),
        "last_modified": dt.datetime.now(dt.UTC),
    }


def bubbles(chat: ChatWidget) -> str:
    return "".join(_html(c) for c in chat.messages_box.children)


def _html(widget: Any) -> str:
    own = getattr(widget, "value", "")
    return (own if isinstance(own, str) else "") + "".join(_html(c) for c in getattr(widget, "children", ()))


def sent_images(script: Script, n: int = -1) -> list[bytes]:
    parts = script.requests[n][-1]["content"]
    return [
        base64.b64decode(p["image_url"]["url"].split(",", 1)[1]) for p in parts if p["type"] == "image_url"
    ]


async def test_a_picked_image_waits_as_a_chip_goes_with_send_and_shows_as_a_thumbnail(
    ws: Any, session: Any
) -> None:
    picture = png()
    script = Script(["A red box."], accepts=["image"])
    chat = ChatWidget(Agent(model=script.model, session=session, ws=ws))
    chat.attach_button.value = (upload("chart.png", picture),)
    assert [f.name for f in chat.pending_files] == ["chart.png"] and chat.attach_button.value == ()
    assert chat.files_box.layout.display == "flex" and 'alt="chart.png"' in _html(chat.files_box)
    assert chat.files_note.value == ""  # this model sees images: nothing to warn about

    chat.input.value = "What is this?"
    chat.send_button.click()
    assert await chat.last_handle == "A red box."
    assert sent_images(script) == [picture]
    assert chat.pending_files == [] and chat.files_box.layout.display == "none"
    shown = bubbles(chat)
    assert 'class="cmdc-thumb" src="data:image/jpeg;base64,' in shown and 'alt="chart.png"' in shown
    # stored: the message names the file, the artifact holds its bytes
    user = next(m for m in sessions.list_messages(session, ws=ws).entries if m.role.value == "user")
    assert artifacts.read_artifact(user.attachments[0]["artifact_id"], ws=ws) == picture

    # a chat opened later on the session draws the same thumbnail from what is stored
    again = ChatWidget(Agent.from_session(session, model=script.model, ws=ws))
    assert 'alt="chart.png"' in bubbles(again) and "cmdc-thumb" in bubbles(again)
    assert "(attached: chart.png)" in again.export_markdown()


async def test_a_model_that_cannot_see_is_named_before_send_and_nothing_goes(ws: Any, session: Any) -> None:
    blind = Script(["text only"])
    seeing = Script(["I see green."], accepts=["image"])
    chat = ChatWidget(Agent(model=blind.model, session=session, ws=ws), models=[blind.model, seeing.model])
    chat.attach(png((0, 160, 0)))
    assert "cannot take images" in chat.files_note.value
    chat.input.value = "Colour?"
    chat.send_button.click()
    assert "cannot take images" in bubbles(chat)  # the refusal, said in the log
    assert blind.served == 0 and sessions.count_messages(session, ws=ws) == 0
    assert len(chat.pending_files) == 1  # kept: the user picks another model and sends again
    chat.model_picker.value = seeing.model
    assert chat.files_note.value == ""
    chat.input.value = "Colour?"
    chat.send_button.click()
    assert await chat.last_handle == "I see green."
    assert len(sent_images(seeing)) == 1


async def test_dropped_and_refused_files_are_explained_and_the_rest_kept(ws: Any, session: Any) -> None:
    chat = ChatWidget(Agent(model=Script(["ok"], accepts=["image"]).model, session=session, ws=ws))
    # what the chat's script sends when files are dropped: names, their bytes as buffers, and the
    # names of those over the size limit (not sent over)
    chat.follow._message(
        chat.follow,
        {"kind": "files", "names": ["a.png", "evil.png", "notes.md"], "too_big": ["film.mov"]},
        [memoryview(png()), memoryview(b"<script>alert(1)</script>"), memoryview(b"# Notes\n")],
    )
    assert [f.name for f in chat.pending_files] == ["a.png", "notes.md"]
    note = chat.files_note.value
    assert (
        "evil.png is named as image/png but its bytes are text" in note and "film.mov is over 20 MB" in note
    )
    assert "&lt;script" not in note and "<script" not in note  # the file's bytes are never echoed
    # a message the script would never send is ignored, not trusted
    chat.follow._message(chat.follow, {"kind": "files", "names": "a.png", "too_big": []}, [memoryview(png())])
    assert len(chat.pending_files) == 2
    # × takes one back
    chip = chat.files_box.children[0]
    chip.children[1].click()
    assert [f.name for f in chat.pending_files] == ["notes.md"]


async def test_undo_puts_the_files_back_and_edit_resends_them(ws: Any, session: Any) -> None:
    picture = png((10, 10, 200))
    script = Script(["Blue.", "Still blue."], accepts=["image"])
    chat = ChatWidget(Agent(model=script.model, session=session, ws=ws))
    chat.attach(picture)
    await chat.send("Colour?")
    assert await chat.edit("What colour exactly?") == "Still blue."
    assert sent_images(script) == [picture]  # the edited prompt went with its file
    edited = chat.agent.recorder.session_id
    user = next(m for m in sessions.list_messages(edited, ws=ws).entries if m.role.value == "user")
    assert user.content == "What colour exactly?" and len(user.attachments) == 1
    chat.undo()
    assert chat.input.value == "What colour exactly?" and [f.data for f in chat.pending_files] == [picture]
