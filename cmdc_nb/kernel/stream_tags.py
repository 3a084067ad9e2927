"""`<status>…</status>` and `<title>…</title>` taken out of a streamed reply (the CMDC kernel's
`Agent.Stream`): a model asked to narrate what it is doing, or to name the conversation, writes them
inline; the agent turns each into an event (`status_update`, `title_generated`) and keeps them out of
the text the user reads and the message that is stored.

Chunks split tags anywhere (`<sta` | `tus>Rea` | `ding</status>`), so text that may still become a
tag is held back until it can be decided; a `<` that cannot start one is passed on at once. Inside a
fenced code block nothing is taken: a reply that shows HTML keeps its `<title>`. An unclosed tag longer
than `MAX_TAG_CHARS` is not a tag, and is passed on as text.
"""

from __future__ import annotations

import re

__all__ = ["MAX_TAG_CHARS", "MAX_TITLE_CHARS", "TagExtractor", "strip_tags"]

MAX_TAG_CHARS = 400  # longer than this without its closing tag: not a status, not a title
MAX_TITLE_CHARS = 60  # the seed's limit for a generated title
_TAGS = ("status", "title")
_OPENERS = tuple(f"<{t}>" for t in _TAGS)
_CLOSED = re.compile(r"<(status|title)>(.*?)</\1>", re.S)
_FENCE = "```"


def _held_suffix(text: str, token: str) -> int:
    """How many characters at the end of `text` could be the start of `token` (kept until the next
    chunk tells)."""
    for n in range(min(len(token) - 1, len(text)), 0, -1):
        if token.startswith(text[-n:]):
            return n
    return 0


class TagExtractor:
    """Feed it a reply's text chunks; it returns what to show and the tags found (see the module)."""

    def __init__(self) -> None:
        self._buf = ""
        self._in_fence = False

    def feed(self, text: str, *, final: bool = False) -> tuple[str, list[tuple[str, str]]]:
        """The text that can be shown now and the (tag, content) pairs completed by this chunk. With
        `final`, nothing is held back: the reply has ended."""
        self._buf += text
        shown: list[str] = []
        found: list[tuple[str, str]] = []
        while self._buf:
            buf = self._buf
            if self._in_fence:
                end = buf.find(_FENCE)
                if end == -1:
                    keep = 0 if final else _held_suffix(buf, _FENCE)
                    shown.append(buf[: len(buf) - keep])
                    self._buf = buf[len(buf) - keep :]
                    break
                shown.append(buf[: end + 3])
                self._buf, self._in_fence = buf[end + 3 :], False
                continue
            fence, lt = buf.find(_FENCE), buf.find("<")
            if lt != -1 and (fence == -1 or lt < fence):
                shown.append(buf[:lt])
                rest = buf[lt:]
                match = _CLOSED.match(rest)
                if match and len(match[0]) <= MAX_TAG_CHARS:
                    found.append((match[1], " ".join(match[2].split())))
                    self._buf = rest[match.end() :]
                    continue
                if not final and self._may_become_tag(rest):
                    self._buf = rest
                    break
                shown.append("<")
                self._buf = rest[1:]
                continue
            if fence != -1:
                shown.append(buf[: fence + 3])
                self._buf, self._in_fence = buf[fence + 3 :], True
                continue
            keep = 0 if final else max(_held_suffix(buf, _FENCE), 0)
            shown.append(buf[: len(buf) - keep])
            self._buf = buf[len(buf) - keep :]
            break
        return "".join(shown), found

    @staticmethod
    def _may_become_tag(rest: str) -> bool:
        if len(rest) > MAX_TAG_CHARS:
            return False
        if any(op.startswith(rest) for op in _OPENERS):  # "<", "<sta", "<title"
            return True
        return rest.startswith(_OPENERS)  # opened, not closed yet


def strip_tags(text: str) -> tuple[str, list[tuple[str, str]]]:
    """A whole reply's text without its status and title tags, and the tags (a reply that was not
    streamed, or one read back)."""
    return TagExtractor().feed(text, final=True)
