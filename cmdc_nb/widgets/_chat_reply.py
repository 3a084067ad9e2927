"""Under each reply of a stored chat: Like / Dislike, a note saying what was wrong or good, and Re-run
(the prompt answered again in a new branch: `_chat_branches`).

A rating is the chat's `user`'s (`sessions.rate_message`): stored with the reply's message, listed by
`frames.feedback_frame`. Clicking the pressed button again takes the rating back. The reply's Copy
button is not here: the clipboard is the browser's, so the chat's script adds it (`chat_follow.js`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.widgets._render import escape

__all__ = ["ChatReplies", "ReplyBar", "stored_reply"]


def _assistant(row: Any) -> bool:
    return str(getattr(row.role, "value", row.role)) == "assistant"


def stored_reply(chat: Any, text: str, *, message_id: Any = None, call_id: Any = None) -> Any:
    """The stored message of a reply: the one with this id, else the one its agent call wrote, else
    (a reply known by its text alone) the newest with this text in the chat's session."""
    rec = chat.agent.recorder
    if not rec.enabled:
        raise InvalidInputError("rating a reply needs an agent that stores to a session", field="reply")
    if message_id is not None:
        from cmdc_nb.services import sessions

        return sessions.get_message(message_id, ws=rec.ws)
    for row in reversed(rec.history()):
        if not _assistant(row) or row.content != text:
            continue
        if call_id is None or str(row.agent_call_id) == str(call_id):
            return row
    raise InvalidInputError("that reply is not stored (yet): rate it again in a moment", field="reply")


def reply_rows(messages: Sequence[Mapping[str, Any]], rows: Sequence[Any]) -> dict[int, Any]:
    """For each text reply in `messages` (by the dict's identity), the id of its stored message: the
    two are aligned from the newest back, so a conversation compacted in memory still matches its
    stored rows, and two replies with the same text are told apart."""
    replies = [m for m in messages if m.get("role") == "assistant" and m.get("content")]
    stored = [r for r in rows if _assistant(r) and r.content]
    out: dict[int, Any] = {}
    for m, r in zip(reversed(replies), reversed(stored), strict=False):
        if r.content != m.get("content"):
            break  # from here back they no longer line up: those fall back to their text
        out[id(m)] = r.id
    return out


class ReplyBar:
    def __init__(self, chat: Any, text: str, *, message_id: Any = None, call_id: Any = None) -> None:
        self.chat, self.text = chat, text
        self.message_id, self.call_id = message_id, call_id
        self.rating: str | None = None
        small = w.Layout(width="auto", min_width="34px")
        self.like = w.Button(description="", icon="thumbs-o-up", tooltip="a good reply", layout=small)
        self.dislike = w.Button(description="", icon="thumbs-o-down", tooltip="a poor reply", layout=small)
        self.note = w.Text(
            placeholder="what was wrong, or good? (optional)",
            layout=w.Layout(width="240px", max_width="100%"),
        )
        self.save = w.Button(description="Save note", layout=w.Layout(width="auto"))
        self.said = w.HTML()
        wrap = w.Layout(flex_flow="row wrap", max_width="100%")  # a narrow window: the note goes below
        self.note_row = w.HBox([self.note, self.save], layout=w.Layout(display="none", flex_flow="row wrap"))
        self.again = w.Button(
            description="", icon="refresh", tooltip="answer again, in a new branch", layout=small
        )
        self.again.add_class("cmdc-rerun")
        self.again.on_click(lambda _: chat._safely("running the prompt again", self.rerun))
        self.like.add_class("cmdc-like")
        self.dislike.add_class("cmdc-dislike")
        self.like.on_click(lambda _: chat._safely("rating the reply", lambda: self.toggle("like")))
        self.dislike.on_click(lambda _: chat._safely("rating the reply", lambda: self.toggle("dislike")))
        self.save.on_click(lambda _: chat._safely("saving the note", self.save_note))
        self.box = w.HBox([self.like, self.dislike, self.again, self.note_row, self.said], layout=wrap)
        self.box.add_class("cmdc-reply-bar")

    def stored(self) -> Any:
        """The stored message of this reply (found once, then kept)."""
        row = stored_reply(self.chat, self.text, message_id=self.message_id, call_id=self.call_id)
        self.message_id = row.id
        return row

    def rerun(self) -> Any:
        """What Re-run does: this reply's prompt answered again, in a new branch."""
        rows = self.chat._history()  # refuses while the agent works, as `rerun` does
        mine = self.stored().id
        return self.chat._rerun_at(rows, next(r for r in rows if r.id == mine))

    def toggle(self, rating: str) -> None:
        """What a click does: rate, or take the rating back when that button is pressed already."""
        self.rate(None if self.rating == rating else rating)

    def save_note(self) -> None:
        self.rate(self.rating or "dislike", self.note.value.strip() or None)

    def rate(self, rating: str | None, note: str | None = None) -> Any:
        """Store the rating (and note) as the chat's user; the buttons show it. Returns the message."""
        from cmdc_nb.services import sessions

        row = self.stored()
        out = sessions.rate_message(row, rating, self.chat.user, note=note, ws=self.chat.agent.recorder.ws)
        self.rating = rating
        self.like.button_style = "success" if rating == "like" else ""
        self.dislike.button_style = "danger" if rating == "dislike" else ""
        self.note_row.layout.display = None if rating else "none"
        if rating is None:
            self.note.value = ""
        words = {"like": "liked", "dislike": "disliked"}.get(rating or "", "")
        kept = " · note saved" if note else ""
        self.said.value = f'<span class="cmdc-stats">{escape(words + kept)}</span>' if words else ""
        self.chat._snapshot_changed()
        return out


class ChatReplies:
    """The ChatWidget's replies' bars and `rate` (a mixin: the methods assume a `ChatWidget`)."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

    def _reply_bar(self, text: str, *, message_id: Any = None, call_id: Any = None) -> list[w.Widget]:
        """Like / Dislike / Re-run under a reply of a stored agent (nothing to rate otherwise): one bar
        per reply, even when two replies say the same."""
        if not self.agent.recorder.enabled:
            return []
        bar = ReplyBar(self, text, message_id=message_id, call_id=call_id)
        self._bars.append(bar)
        return [bar.box]

    def _map_replies(self, rows: Sequence[Any] | None = None) -> dict[int, Any]:
        """The stored message id of each text reply in the conversation (see `reply_rows`); `rows`: the
        session's stored messages when the caller has read them already."""
        rec = self.agent.recorder
        if not rec.enabled:
            return {}
        return reply_rows(self.agent.messages, rows if rows is not None else rec.history())

    def rate(self, reply: int | str = -1, rating: str | None = "like", *, note: str | None = None) -> Any:
        """Rate a reply as the chat's `user`, as its buttons do: `reply` is its text or its index among
        the conversation's replies (-1: the newest); `rating` "like", "dislike" or None (take it back).
        Returns the stored message (see `sessions.rate_message`, `frames.feedback_frame`)."""
        from cmdc_nb.widgets._chat_branches import which

        which(reply, "reply")
        replies = [m for m in self.agent.messages if m["role"] == "assistant" and m.get("content")]
        if isinstance(reply, int):
            if not -len(replies) <= reply < len(replies):
                raise InvalidInputError(f"there is no reply {reply}", field="reply")
            message_id = self._map_replies().get(id(replies[reply]))
            text = str(replies[reply]["content"])
        else:
            message_id, text = None, reply  # by its text: the newest reply that says it
        shown = [
            b for b in self._bars if b.text == text and (message_id is None or b.message_id == message_id)
        ]
        bar = shown[-1] if shown else ReplyBar(self, text, message_id=message_id)
        return bar.rate(rating, note)
