"""Re-run, undo and edit-and-resend in a stored chat, each as a fork of its session — nothing stored is
ever lost — and a switcher, "‹ 1/2 ›", under each message that has alternatives.

- **Re-run** (on a reply): the session is forked at the prompt that reply answered and the fork answers
  it anew; the chat follows the fork, and the previous reply stays in the original session.
- **Edit** (on a prompt): the text opens in a box under the prompt; Resend forks the session just before
  that prompt and sends the edited text there.
- **Undo** (footer): the chat follows a fork without the last prompt (and what answered it); the prompt
  goes back into the input box.
- **‹ ›** pages through the alternatives of a message: the sessions that share the history before it
  and go their own way from it (`sessions.branches`). Switching rebuilds the chat from that session.
"""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import ipywidgets as w

from cmdc_nb._plumbing import validate as v
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.widgets._chat_files import files_html
from cmdc_nb.widgets._render import escape

if TYPE_CHECKING:
    from cmdc_nb.kernel.agent import Agent, PromptHandle

__all__ = ["ChatBranches", "which"]

_SMALL = w.Layout(width="auto", min_width="34px")


class ChatBranches:
    """The branch actions of a ChatWidget (a mixin: the methods assume a `ChatWidget`)."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

        _sub: Any

    # -- what the buttons do ----------------------------------------------------------------------------
    def rerun(self, reply: int | str = -1) -> PromptHandle:
        """Answer a prompt again, in a fork of the session made at that prompt; the chat follows the
        fork (‹ › pages back to the previous reply). `reply`: the reply's text, or its index among the
        conversation's replies (-1: the newest). Returns the new answer's handle."""
        rows = self._history()
        return self._rerun_at(rows, self._reply_row(rows, reply))

    def _rerun_at(self, rows: list[Any], target: Any) -> PromptHandle:
        prompt = next(
            (r for r in reversed(rows) if r.sequence < target.sequence and _role(r) == "user"), None
        )
        if prompt is None:
            raise InvalidInputError("that reply answers no prompt of this session", field="reply")
        self._follow_fork(prompt)
        return self._then_switchers(self.agent.resume())

    def edit(self, text: str, *, prompt: int | str = -1) -> PromptHandle:
        """Send `text` in place of a prompt: the session is forked just before that prompt and `text`
        is sent there (the original prompt and its answers stay in the original session). `prompt`: the
        prompt's text, or its index among the conversation's prompts (-1: the newest)."""
        if not isinstance(text, str) or not text.strip():
            raise InvalidInputError("the edited prompt must be text", field="text")
        v.text(text, "text", max_len=1_000_000)  # NUL or a lone surrogate: refused, as a message is
        rows = self._history()
        row = self._prompt_row(rows, prompt)
        self._follow_fork(_before(rows, row))
        files = self.agent.recorder.files_of(row) if row.attachments else ()  # resent with the prompt
        return self._then_switchers(self.send(text, files=files))

    def undo(self) -> Any:
        """Go back to before the newest prompt: the chat follows a fork without it (nothing is deleted),
        and the prompt's text is put back in the input box. Returns the fork's session."""
        rows = self._history()
        row = self._prompt_row(rows, -1)
        session = self._follow_fork(_before(rows, row))
        self.input.value = row.content or ""
        if row.attachments:  # its files wait under the box again, as its text waits in it
            self.pending_files = self.agent.recorder.files_of(row)
            self._show_pending()
        self._phase(f"undone: back to before “{(row.content or '')[:40]}”", timed=False)
        return session

    def switch_branch(self, session: Any) -> None:
        """Show (and continue) another branch of this conversation: the chat is rebuilt from `session`."""
        if session is None:
            raise InvalidInputError("name the session to switch to", field="session")
        self._history()  # refuses without a session, or while the agent works
        self._use(self._agent_for(session))

    def _then_switchers(self, handle: PromptHandle) -> PromptHandle:
        """Draw the switchers again once the new version is stored (it is the one that differs)."""
        handle.future.add_done_callback(lambda _f: self._safely("drawing the branches", self._add_switchers))
        return handle

    # -- forks and agents -------------------------------------------------------------------------------
    def _history(self) -> list[Any]:
        rec = self.agent.recorder
        if not rec.enabled:
            raise InvalidInputError("branching needs an agent that stores to a session", field="agent")
        if self.agent.busy:
            raise InvalidInputError("the agent is working: stop it, or wait, before branching", field="agent")
        return list(rec.history())

    def _reply_row(self, rows: list[Any], reply: int | str) -> Any:
        which(reply, "reply")
        replies = [r for r in rows if _role(r) == "assistant" and r.content]
        if isinstance(reply, str):
            found = [r for r in replies if r.content == reply]
            if not found:
                raise InvalidInputError("no stored reply has that text", field="reply")
            return found[-1]
        if not replies or not -len(replies) <= reply < len(replies):
            raise InvalidInputError(f"there is no reply {reply}", field="reply")
        return replies[reply]

    def _prompt_row(self, rows: list[Any], prompt: int | str) -> Any:
        which(prompt, "prompt")
        prompts = [r for r in rows if _role(r) == "user"]
        if isinstance(prompt, str):
            found = [r for r in prompts if r.content == prompt]
            if not found:
                raise InvalidInputError("no stored prompt has that text", field="prompt")
            return found[-1]
        if not prompts or not -len(prompts) <= prompt < len(prompts):
            raise InvalidInputError(f"there is no prompt {prompt}", field="prompt")
        return prompts[prompt]

    def _follow_fork(self, at: Any) -> Any:
        """Fork the session at message `at` (None: before the first) and make the chat follow it."""
        from cmdc_nb.services import sessions

        rec = self.agent.recorder
        assert rec.session_id is not None  # checked by `_history`
        fork = sessions.fork_session(rec.session_id, at, ws=rec.ws)
        self._use(self._agent_for(fork))
        return fork

    def _agent_for(self, session: Any) -> Agent:
        from cmdc_nb.kernel.agent import Agent
        from cmdc_nb.kernel.options import AgentOptions

        opts = self.agent.options
        kept = {f.name: getattr(opts, f.name) for f in dataclasses.fields(AgentOptions)}
        for name in ("session", "messages", "agent_id"):
            kept.pop(name)
        kept["model"] = self.agent.model  # as switched to, not as first given
        return Agent.from_session(session, **kept)

    def _use(self, agent: Agent) -> None:
        """Make the chat show and drive `agent`: events, presence, history, model, stats."""
        self._sub.close()
        self._leave_presence()
        self.agent = agent
        self._cards.clear()
        self._bars.clear()
        self._reply_ids = dict[int, Any]()
        self._bubble = None
        self._sub = agent.events.subscribe(self._on_event)
        self._render_history()
        self._refresh_stats()
        self._show_model(agent.model)
        self._set_busy(agent.busy)
        if agent.recorder.enabled:
            self._join_presence()

    # -- drawing ------------------------------------------------------------------------------------------
    def _user_bubble(self, text: str, files: Sequence[Mapping[str, Any]] = ()) -> w.Widget:
        bubble = w.HTML(self._bubble_html("user", text, files=files_html(files)))
        if files:  # room for three thumbnails side by side (less in a narrow chat): the row would squeeze it to its text
            bubble.layout.min_width = f"min({min(len(files), 3) * 112 + 48}px, calc(100% - 152px))"
        if not self.agent.recorder.enabled:
            return bubble
        fork = w.Button(description="fork", icon="code-branch", tooltip="a new session from this message",
                        layout=w.Layout(width="70px", min_width="70px"))  # fmt: skip
        edit = w.Button(description="edit", icon="pencil", tooltip="edit and send again, in a new branch",
                        layout=w.Layout(width="70px", min_width="70px"))  # fmt: skip
        editor = w.VBox([])
        fork.on_click(lambda _: self._safely("forking", lambda: self.fork_at(text)))
        edit.on_click(lambda _: self._safely("editing", lambda: self._open_editor(editor, text)))
        row = w.HBox([bubble, edit, fork], layout=w.Layout(align_items="center", justify_content="flex-end"))
        return w.VBox([row, editor])

    def _open_editor(self, editor: w.VBox, text: str) -> None:
        box = w.Textarea(value=text, layout=w.Layout(width="auto", height="64px"))
        box.add_class("cmdc-edit-box")
        resend = w.Button(description="Resend", button_style="primary", icon="paper-plane",
                          layout=w.Layout(width="auto"))  # fmt: skip
        cancel = w.Button(description="Cancel", layout=w.Layout(width="auto"))
        resend.on_click(
            lambda _: self._safely("resending", lambda: self.edit(box.value.strip(), prompt=text))
        )
        cancel.on_click(lambda _: setattr(editor, "children", []))
        editor.children = [box, w.HBox([resend, cancel])]
        self._snapshot_changed()

    def _undo_button(self) -> w.Button:
        button = w.Button(description="Undo", icon="undo", layout=w.Layout(width="80px"),
                          tooltip="back to before the last prompt (a new branch: nothing is deleted)")  # fmt: skip
        button.on_click(lambda _: self._safely("undoing", self.undo))
        return button

    def _add_switchers(self, rows: Sequence[Any] | None = None) -> None:
        """Under each message with alternatives, "‹ i/n ›" (see `sessions.branches`); `rows`: the
        session's stored messages when the caller has read them already."""
        rec = self.agent.recorder
        if not rec.enabled:
            return
        from cmdc_nb.services import sessions

        children = [c for c in self.messages_box.children if "cmdc-branches" not in c._dom_classes]
        points = _branch_points(rec)
        if rows is None:
            rows = list(rec.history()) if points else []
        sid = rec.session_id
        assert sid is not None
        for seq in points:
            alts = sessions.branches(sid, seq, ws=rec.ws)
            if len(alts) < 2 or seq > len(rows):
                continue
            row = rows[seq - 1]
            marker = f'data-md="{html.escape(row.content or "")}"'
            at = next((i for i in range(len(children) - 1, -1, -1) if marker in _html_of(children[i])), None)
            if at is not None:  # under its message, on its side (a prompt's on the right)
                children.insert(at + 1, self._switcher(alts, right=_role(row) == "user"))
        self.messages_box.children = children

    def _switcher(self, alts: list[Any], *, right: bool) -> w.Widget:
        here = next(i for i, s in enumerate(alts) if s.id == self.agent.recorder.session_id)
        back = w.Button(description="‹", tooltip="the previous version", layout=_SMALL, disabled=here == 0)
        ahead = w.Button(
            description="›", tooltip="the next version", layout=_SMALL, disabled=here == len(alts) - 1
        )
        back.on_click(lambda _: self._safely("switching branch", lambda: self.switch_branch(alts[here - 1])))
        ahead.on_click(lambda _: self._safely("switching branch", lambda: self.switch_branch(alts[here + 1])))
        label = w.HTML(f'<span class="cmdc-stats">{here + 1}/{len(alts)} · {escape(alts[here].name)}</span>')
        side = "flex-end" if right else "flex-start"
        box = w.HBox([back, label, ahead], layout=w.Layout(align_items="center", justify_content=side))
        box.add_class("cmdc-branches")
        return box


def which(value: Any, field: str) -> None:
    """A message named by its text or its index (not a bool, a float or a list)."""
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InvalidInputError(f"expected an index or the text, got {type(value).__name__}", field=field)


def _role(row: Any) -> str:
    return str(getattr(row.role, "value", row.role))


def _before(rows: list[Any], row: Any) -> Any:
    """The stored message just before `row` (None when it is the first)."""
    earlier = [r for r in rows if r.sequence < row.sequence]
    return earlier[-1] if earlier else None


def _branch_points(rec: Any) -> list[int]:
    """The sequence numbers where this session, its ancestors or their forks branch (+1: the message
    that differs); none for a session with no fork about it (then its history is not read at all)."""
    from cmdc_nb.services import sessions

    points: set[int] = set()
    for s in sessions.lineage(rec.session_id, ws=rec.ws):
        if s.parent_session_id is not None:
            points.add(int((s.meta or {}).get("forked_at_sequence", 0)) + 1)
        for child in sessions.forks(s, limit=200, ws=rec.ws).entries:
            points.add(int((child.meta or {}).get("forked_at_sequence", 0)) + 1)
    return sorted(points)


def _html_of(widget: Any) -> str:
    if hasattr(widget, "children"):
        return "".join(_html_of(c) for c in widget.children)
    value = getattr(widget, "value", "")
    return value if isinstance(value, str) else ""
