"""The chat log follows the conversation: a tiny front-end helper placed in the ChatWidget.

ipywidgets cannot scroll an element, so this anywidget's script does, in the browser: it keeps the
chat's scrolling log at its newest item while the user is at the bottom (as Panel's ChatInterface and
jupyter-ai do), and when the user has scrolled up to read, it leaves them there and shows a
"new messages ↓" button instead (it says "approval waiting ↓" when a tool card waits for a decision). A
long history opens at its newest message. Older messages paged in above the view keep the view still
(the browser's scroll anchoring). `pin()` from Python brings the log to its newest item, as a user's
own Send does.

It also gives each code block of a reply a Copy button (the clipboard API, or the older copy command
where the page is not a secure context): the replies are ipywidgets HTML, which runs no script, so
the one script already inside the chat adds the buttons, again whenever a reply is redrawn.

And it takes files dropped on the chat: their bytes come to Python as the message's buffers, and the
chat attaches them as if picked with its Attach button (`_chat_files`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import anywidget
import traitlets

from cmdc_nb.providers.attachments import MAX_FILE_BYTES
from cmdc_nb.widgets._assets import asset

__all__ = ["Follow"]

Dropped = Callable[[list[str], list[bytes], list[str]], None]


class Follow(anywidget.AnyWidget):
    """Keeps the enclosing ChatWidget's log at its newest item (see the module docstring)."""

    _esm = asset("chat_follow.js")  # widgets/chat_follow.js
    pins = traitlets.Int(0).tag(sync=True)  # each change brings the log to its newest item

    max_bytes = traitlets.Int(MAX_FILE_BYTES).tag(sync=True)  # a larger dropped file is not sent over

    def __init__(self, **kw: Any) -> None:
        super().__init__(**kw)
        self._on_dropped: Dropped | None = None
        self.on_msg(self._message)

    def on_dropped(self, callback: Dropped) -> None:
        """Call `callback(names, contents, too_big)` with the files a user drops on the chat (`too_big`:
        the names of those the page did not send, being over `max_bytes`)."""
        self._on_dropped = callback

    def _message(self, _widget: Any, content: Any, buffers: Sequence[Any]) -> None:
        if not isinstance(content, dict) or content.get("kind") != "files" or self._on_dropped is None:
            return
        names, too_big = content.get("names"), content.get("too_big")
        if not isinstance(names, list) or len(names) != len(buffers) or not isinstance(too_big, list):
            return  # not what this widget's script sends
        self._on_dropped([str(n) for n in names], [bytes(b) for b in buffers], [str(n) for n in too_big])

    def pin(self) -> None:
        """Bring the log to its newest item and follow it again (the user sent something)."""
        self.pins += 1
