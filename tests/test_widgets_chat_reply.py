"""Under each reply of a stored chat, Like / Dislike with a note, stored as the chat's user and listed by
`frames.feedback_frame`; every message carries its Markdown for its Copy button; LaTeX in a reply is
kept whole for MathJax; and a placeholder stands where the reply will be until its first words.
(What a user sees of these in JupyterLab: tests/test_widgets_seen_chat.py.)"""

from __future__ import annotations

import asyncio
import html
from typing import Any

import ipywidgets as w
import pandas as pd
import pytest

from cmdc_nb import frames
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script, Turn
from cmdc_nb.widgets import ChatWidget
from cmdc_nb.widgets._chat_reply import ReplyBar


def bars(chat: ChatWidget) -> list[ReplyBar]:
    return list(chat._bars)


async def test_like_dislike_and_a_note_from_the_buttons_are_stored_as_the_chats_user(
    ws: Any, user: Any, session: Any
) -> None:
    script = Script(["Use a set.", "Sorted lists bisect in O(log n)."])
    chat = ChatWidget(Agent(model=script.model, session=session, ws=ws))
    await chat.send("how do I dedupe?")
    await chat.send("and search?")
    first, second = bars(chat)
    assert (first.text, second.text) == ("Use a set.", "Sorted lists bisect in O(log n).")
    first.like.click()
    assert first.like.button_style == "success" and "liked" in first.said.value
    second.dislike.click()
    assert second.note_row.layout.display is None  # the note box opens with a rating
    second.note.value = "bisect needs a sorted list: say so"
    second.save.click()
    df = frames.feedback_frame(session=session, ws=ws)
    got = {r.reply: (r.rating, None if pd.isna(r.note) else r.note, r.rated_by) for r in df.itertuples()}
    assert got == {
        "Use a set.": ("like", None, str(user.id)),
        "Sorted lists bisect in O(log n).": ("dislike", "bisect needs a sorted list: say so", str(user.id)),
    }
    first.like.click()  # pressed again: taken back
    assert first.like.button_style == "" and first.said.value == ""
    assert list(frames.feedback_frame(session=session, ws=ws)["rating"]) == ["dislike"]
    # the method does what the buttons do
    chat.rate(0, "dislike", note="too short")
    assert first.dislike.button_style == "danger"
    assert "too short" in set(frames.feedback_frame(session=session, ws=ws)["note"])


async def test_a_chat_that_stores_nothing_offers_no_rating_and_says_why_when_asked() -> None:
    script = Script(["ok"])
    chat = ChatWidget(Agent(model=script.model))
    await chat.send("hi")
    assert bars(chat) == []
    with pytest.raises(InvalidInputError, match="needs an agent that stores to a session"):
        chat.rate(-1, "like")


async def test_every_message_carries_its_markdown_for_copy_and_math_is_kept_for_mathjax() -> None:
    reply = "Euler: $e^{i\\pi} + 1 = 0$, for $5 and $10.\n\n$$\n\\int_0^1 x\\,dx = \\tfrac12\n$$"
    script = Script([reply])
    chat = ChatWidget(Agent(model=script.model))
    await chat.send("a <b>bold</b> question")
    user_bubble, reply_box = chat.messages_box.children[0], chat.messages_box.children[-1]
    assert f'data-md="{html.escape("a <b>bold</b> question")}"' in user_bubble.value
    assert isinstance(reply_box, w.HTMLMath)  # typeset by JupyterLab's MathJax
    assert f'data-md="{html.escape(reply)}"' in reply_box.value
    assert (
        '<span class="cmdc-math tex2jax_process mathjax_process">\\(e^{i\\pi} + 1 = 0\\)</span>'
        in reply_box.value
    )
    assert "for $5 and $10." in reply_box.value  # prices are not math …
    assert "tex2jax_ignore mathjax_ignore" in reply_box.value  # … and MathJax typesets only the math spans
    assert (
        '<div class="cmdc-math tex2jax_process mathjax_process">\\[\n\\int_0^1 x\\,dx = \\tfrac12\n\\]</div>'
        in reply_box.value
    )


async def test_a_placeholder_stands_where_the_reply_will_be_until_its_first_words() -> None:
    script = Script([Turn("Here it is.", delay=0.5)])
    chat = ChatWidget(Agent(model=script.model))
    handle = chat.send("take your time")
    for _ in range(500):
        await asyncio.sleep(0.005)
        if "cmdc-thinking" in getattr(chat.messages_box.children[-1], "value", ""):
            break
    placeholder = chat.messages_box.children[-1]
    assert "cmdc-thinking" in placeholder.value and "thinking" in placeholder.value
    assert await handle == "Here it is."
    assert chat.messages_box.children[-1] is placeholder  # the reply took its place
    assert "Here it is." in placeholder.value and "cmdc-thinking" not in placeholder.value


async def test_a_collaborator_opens_a_shared_chat_and_rates_as_themselves(
    ws: Any, user: Any, session: Any
) -> None:
    """Team mode: the chat of a session shared with Bob opens for Bob (it joined presence as the owner and
    was refused), shows him as present, and his rating is his."""
    from cmdc_nb import accounts, sessions

    script = Script(["Shared answer."])
    await ChatWidget(Agent(model=script.model, session=session, ws=ws)).send("question")
    bob = accounts.create_user("bob@example.com", name="Bob", ws=ws)
    sessions.share_session(session, with_users=[bob], ws=ws)
    ws.act_as(bob)
    try:
        chat = ChatWidget(Agent.from_session(session.id, model=script.model, ws=ws))
        assert chat.user == bob.id and "Bob" in chat.refresh_presence()
        chat.rate(-1, "like")
        df = frames.feedback_frame(session=session, ws=ws)
        assert list(df["rated_by"]) == [str(bob.id)]
        chat.close()
    finally:
        ws.act_as(None)


async def test_two_replies_that_say_the_same_are_rated_and_rerun_apart(
    ws: Any, user: Any, session: Any
) -> None:
    """The same words twice: each reply has its own bar, and each bar rates (and re-runs) its own
    stored message, live and in a chat rebuilt from the session."""
    from cmdc_nb import sessions

    script = Script(["Yes.", "Yes.", "No."])
    chat = ChatWidget(Agent(model=script.model, session=session, ws=ws))
    await chat.send("Is it on?")
    await chat.send("Still on?")
    first, second = bars(chat)
    assert first is not second and first.box is not second.box
    first.like.click()
    replies = [m for m in sessions.list_messages(session, ws=ws).entries if m.role.value == "assistant"]
    assert [bool(m.meta.get("feedback")) for m in replies] == [True, False]  # the first, not the newest
    assert second.like.button_style == ""

    again = ChatWidget(Agent.from_session(session, model=script.model, ws=ws))
    old_first, old_second = bars(again)
    old_second.dislike.click()
    replies = [m for m in sessions.list_messages(session, ws=ws).entries if m.role.value == "assistant"]
    assert [next(iter(m.meta.get("feedback", {}).values()), {}).get("rating") for m in replies] == [
        "like",
        "dislike",
    ]
    assert again.rate(0, None).id == replies[0].id  # by index: the first "Yes.", taken back

    # Re-run under the first "Yes.": the fork is made at its own prompt, not at the newest one's
    assert await old_first.rerun() == "No."
    fork = again.agent.recorder.session_id
    assert [m.content for m in sessions.list_messages(fork, ws=ws).entries] == ["Is it on?", "No."]
