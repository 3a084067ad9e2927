"""The chat log follows the conversation: a tiny front-end helper placed in the ChatWidget.

ipywidgets cannot scroll an element, so this anywidget's script does, in the browser: it keeps the
chat's scrolling log at its newest item while the user is at the bottom (as Panel's ChatInterface and
jupyter-ai do), and when the user has scrolled up to read, it leaves them there and shows a
"new messages ↓" button instead (it says "approval waiting ↓" when a tool card waits for a decision). A
long history opens at its newest message. Older messages paged in above the view keep the view still
(the browser's scroll anchoring). `pin()` from Python brings the log to its newest item, as a user's
own Send does.
"""

from __future__ import annotations

import anywidget
import traitlets

__all__ = ["Follow"]

_ESM = """
function render({ model, el }) {
  el.classList.add("cmdc-follow");
  const more = document.createElement("button");
  more.type = "button";
  more.className = "cmdc-follow-more";
  more.hidden = true;
  el.appendChild(more);
  let log = null;
  let pinned = true;
  const watchers = [];
  const atBottom = () => log.scrollHeight - log.scrollTop - log.clientHeight < 24;
  const toBottom = () => {
    if (!log) return;
    pinned = true;
    more.hidden = true;
    log.scrollTop = log.scrollHeight;
  };
  const changed = () => {
    if (!log) return;
    if (pinned) { toBottom(); return; }
    if (atBottom()) return;
    more.textContent = log.querySelector(".cmdc-tool.waiting") ? "approval waiting \\u2193" : "new messages \\u2193";
    more.hidden = false;
  };
  const attach = () => {
    const chat = el.closest(".cmdc-chatwidget");
    log = chat && chat.querySelector(".cmdc-scroll");
    if (!log || !log.firstElementChild) { log = null; return false; }
    log.addEventListener("scroll", () => { pinned = atBottom(); if (pinned) more.hidden = true; }, { passive: true });
    const mutations = new MutationObserver(changed);
    mutations.observe(log, { childList: true, subtree: true, characterData: true });
    const sizes = new ResizeObserver(changed);
    sizes.observe(log);
    sizes.observe(log.firstElementChild);
    watchers.push(mutations, sizes);
    toBottom();
    return true;
  };
  // The element is drawn before it is placed in the chat: wait (a few frames) until it is.
  let tries = 0;
  const tryAttach = () => { if (!attach() && tries++ < 600) requestAnimationFrame(tryAttach); };
  requestAnimationFrame(tryAttach);
  more.addEventListener("click", toBottom);
  model.on("change:pins", toBottom);
  return () => watchers.forEach((w) => w.disconnect());
}
export default { render };
"""


class Follow(anywidget.AnyWidget):
    """Keeps the enclosing ChatWidget's log at its newest item (see the module docstring)."""

    _esm = _ESM
    pins = traitlets.Int(0).tag(sync=True)  # each change brings the log to its newest item

    def pin(self) -> None:
        """Bring the log to its newest item and follow it again (the user sent something)."""
        self.pins += 1
