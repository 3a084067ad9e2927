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
"""

from __future__ import annotations

import anywidget
import traitlets

from cmdc_nb.widgets._assets import asset

__all__ = ["Follow"]


class Follow(anywidget.AnyWidget):
    """Keeps the enclosing ChatWidget's log at its newest item (see the module docstring)."""

    _esm = asset("chat_follow.js")  # widgets/chat_follow.js
    pins = traitlets.Int(0).tag(sync=True)  # each change brings the log to its newest item

    def pin(self) -> None:
        """Bring the log to its newest item and follow it again (the user sent something)."""
        self.pins += 1
