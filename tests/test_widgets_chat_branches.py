"""Re-run, undo and edit-and-resend in a stored chat, on both backends: each a fork of the session, so
nothing stored is lost; the chat follows the fork, "‹ i/n ›" under the message pages between the
versions, and what the widget shows is what each session stores.
(What a user sees in JupyterLab: tests/test_widgets_seen_branches.py.)"""

from __future__ import annotations

from typing import Any

import pytest

from cmdc_nb import sessions
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.kernel import Agent
from cmdc_nb.providers import Script
from cmdc_nb.widgets import ChatWidget


def stored(ws: Any, session: Any) -> list[tuple[str, str]]:
    return [(m.role.value, m.content or "") for m in sessions.list_messages(session, ws=ws).entries]


def shown(chat: ChatWidget) -> list[tuple[str, str]]:
    return [(m["role"], m.get("content") or "") for m in chat.agent.messages]


def switchers(chat: ChatWidget) -> list[str]:
    return [c.children[1].value for c in chat.messages_box.children if "cmdc-branches" in c._dom_classes]


async def test_rerun_keeps_both_replies_and_the_switcher_pages_between_them(ws: Any, session: Any) -> None:
    script = Script(["Paris.", "Use a set.", "A set, or dict.fromkeys to keep order."])
    chat = ChatWidget(Agent(model=script.model, session=session, ws=ws))
    await chat.send("Capital of France?")
    await chat.send("How do I dedupe a list?")
    original = chat.agent.recorder.session_id
    assert await chat.rerun() == "A set, or dict.fromkeys to keep order."
    fork = chat.agent.recorder.session_id
    assert fork != original
    # nothing lost: the original keeps its reply, the fork has the new one; the chat shows the fork
    assert stored(ws, original)[-1] == ("assistant", "Use a set.")
    assert stored(ws, fork)[-1] == ("assistant", "A set, or dict.fromkeys to keep order.")
    assert shown(chat) == stored(ws, fork)
    assert [s.id for s in sessions.branches(fork, 4, ws=ws)] == [original, fork]
    assert len(switchers(chat)) == 1 and "2/2" in switchers(chat)[0]
    # ‹ goes back to the first version: the chat is rebuilt from the original session
    [bar] = [c for c in chat.messages_box.children if "cmdc-branches" in c._dom_classes]
    bar.children[0].click()
    assert chat.agent.recorder.session_id == original and shown(chat) == stored(ws, original)
    assert "1/2" in switchers(chat)[0]


async def test_edit_and_resend_and_undo_fork_before_the_prompt(ws: Any, session: Any) -> None:
    script = Script(["4", "5", "six"])
    chat = ChatWidget(Agent(model=script.model, session=session, ws=ws))
    await chat.send("2+2?")
    original = chat.agent.recorder.session_id
    assert await chat.edit("2+3?") == "5"  # the only prompt, edited: a fork with no history before it
    edited = chat.agent.recorder.session_id
    assert stored(ws, edited) == [("user", "2+3?"), ("assistant", "5")]
    assert stored(ws, original) == [("user", "2+2?"), ("assistant", "4")]
    assert [s.id for s in sessions.branches(edited, 1, ws=ws)] == [original, edited]
    assert "2/2" in switchers(chat)[0]

    await chat.send("and 3+3?")
    undone = chat.undo()
    assert chat.input.value == "and 3+3?"  # back in the box
    assert stored(ws, undone.id) == [("user", "2+3?"), ("assistant", "5")]
    assert shown(chat) == stored(ws, undone.id)
    assert stored(ws, edited)[-2:] == [("user", "and 3+3?"), ("assistant", "six")]  # still there


async def test_branching_is_refused_clearly_without_a_session_or_while_the_agent_works(
    ws: Any, session: Any
) -> None:
    plain = ChatWidget(Agent(model=Script(["ok"]).model))
    await plain.send("hi")
    with pytest.raises(InvalidInputError, match="needs an agent that stores to a session"):
        plain.rerun()
    chat = ChatWidget(Agent(model=Script(["ok"]).model, session=session, ws=ws))
    with pytest.raises(InvalidInputError, match="there is no prompt"):
        chat.undo()
    await chat.send("hi")
    with pytest.raises(InvalidInputError, match="edited prompt must be text"):
        chat.edit("   ")
    with pytest.raises(InvalidInputError, match="no stored reply has that text"):
        chat.rerun("never said")


async def test_the_buttons_do_what_the_methods_do(ws: Any, session: Any) -> None:
    import asyncio

    script = Script(["one", "uno", "un"])
    chat = ChatWidget(Agent(model=script.model, session=session, ws=ws))
    await chat.send("say one")
    [bar] = list(chat._bars)
    bar.again.click()  # Re-run: a fork answers again
    for _ in range(400):
        if chat.agent.messages[-1].get("content") == "uno" and not chat.agent.busy:
            break
        await asyncio.sleep(0.01)
    assert shown(chat) == [("user", "say one"), ("assistant", "uno")]
    # edit on the prompt: a box under it, Resend sends the edited text in a new branch
    [prompt_box] = [
        c for c in chat.messages_box.children if 'data-md="say one"' in _html(c) and hasattr(c, "children")
    ]
    prompt_box.children[0].children[1].click()  # edit
    editor = prompt_box.children[1]
    editor.children[0].value = "say one, in French"
    editor.children[1].children[0].click()  # Resend
    for _ in range(400):
        if chat.agent.messages and chat.agent.messages[-1].get("content") == "un" and not chat.agent.busy:
            break
        await asyncio.sleep(0.01)
    assert shown(chat) == [("user", "say one, in French"), ("assistant", "un")]
    sid = chat.agent.recorder.session_id
    assert [s for s in sessions.branches(sid, 1, ws=ws)][-1].id == sid and len(
        sessions.branches(sid, 1, ws=ws)
    ) == 2


def _html(widget: Any) -> str:
    if hasattr(widget, "children"):
        return "".join(_html(c) for c in widget.children)
    return str(getattr(widget, "value", ""))


async def test_wrong_arguments_are_typed_errors_not_tracebacks(ws: Any, session: Any) -> None:
    chat = ChatWidget(Agent(model=Script(["a", "b"]).model, session=session, ws=ws))
    await chat.send("one")
    for call in (
        lambda: chat.rate(99),
        lambda: chat.rate(None),  # type: ignore[arg-type]
        lambda: chat.rate(0.5),  # type: ignore[arg-type]
        lambda: chat.rate([0]),  # type: ignore[arg-type]
        lambda: chat.rate(True),  # a bool is not an index
        lambda: chat.rerun(None),  # type: ignore[arg-type]
        lambda: chat.rerun(1.0),  # type: ignore[arg-type]
        lambda: chat.edit("x", prompt=None),  # type: ignore[arg-type]
        lambda: chat.edit("bad\x00text"),
        lambda: chat.switch_branch(None),
    ):
        with pytest.raises(InvalidInputError):
            call()
    assert shown(chat) == [("user", "one"), ("assistant", "a")]  # nothing moved


async def test_a_fork_checks_its_slug_as_a_new_session_does(ws: Any, session: Any) -> None:
    chat = ChatWidget(Agent(model=Script(["a"]).model, session=session, ws=ws))
    await chat.send("one")
    first = sessions.list_messages(session, ws=ws).entries[0]
    for bad in ("Bad Slug!", "x" * 5000, ["a"]):
        with pytest.raises(InvalidInputError, match="slug"):
            sessions.fork_session(session, first, slug=bad, ws=ws)  # type: ignore[arg-type]
    assert sessions.fork_session(session, first, slug="good-one", ws=ws).slug == "good-one"


async def test_a_collaborator_branches_a_shared_chat_into_forks_of_their_own(
    ws: Any, user: Any, session: Any
) -> None:
    from cmdc_nb import accounts

    script = Script(["first", "again"])
    await ChatWidget(Agent(model=script.model, session=session, ws=ws)).send("q")
    bob = accounts.create_user("bob@example.com", name="Bob", ws=ws)
    sessions.share_session(session, with_users=[bob], ws=ws)
    ws.act_as(bob)
    try:
        chat = ChatWidget(Agent.from_session(session.id, model=script.model, ws=ws))
        assert await chat.rerun() == "again"
        fork = sessions.get_session(chat.agent.recorder.session_id, ws=ws)
        assert fork.user_id == bob.id  # the fork is its maker's: Bob can read and continue it
        assert [s.id for s in sessions.branches(fork, 2, ws=ws)] == [session.id, fork.id]
        chat.close()
    finally:
        ws.act_as(None)
    assert stored(ws, session)[-1] == ("assistant", "first")  # Ada's session is as it was
