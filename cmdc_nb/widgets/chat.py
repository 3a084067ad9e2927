"""ChatWidget: a live chat with an agent — streamed replies, tool-call cards, Approve / Deny / Edit on
calls that wait for a person while the agent runs, a steer box, Stop, a model picker, tokens and cost.

>>> chat = ChatWidget(agent)        # doctest: +SKIP
>>> chat                            # doctest: +SKIP   (renders in the notebook)
>>> chat.send("Summarise the README")   # doctest: +SKIP   (every button has a method)

The widget is thin: the conversation stays in the kernel (the agent); only the visible messages are
widgets, older ones are paged in on request, and streamed text reaches the browser at most ~25 times a
second however fast the model streams.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import traceback
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as w

from cmdc_nb.errors import InvalidInputError, ProviderError
from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.agent import Agent, PromptHandle
from cmdc_nb.providers._litellm import loaded as model_client_loaded
from cmdc_nb.providers.attachments import files_in
from cmdc_nb.providers.choice import missing_key
from cmdc_nb.widgets._chat_branches import ChatBranches
from cmdc_nb.widgets._chat_events import (
    MODEL_CLIENT_LOADING,
    ChatEvents,
    ToolCard,
    explain_failure,
    money,
)
from cmdc_nb.widgets._chat_files import FILES_CSS, ChatFiles
from cmdc_nb.widgets._chat_follow import Follow
from cmdc_nb.widgets._chat_presence import ChatPresence, person
from cmdc_nb.widgets._chat_reply import ChatReplies, ReplyBar
from cmdc_nb.widgets._common import on_loop
from cmdc_nb.widgets._render import CSS, escape, markdown_html
from cmdc_nb.widgets._snapshot import Snapshot, static_html

__all__ = ["ChatWidget", "explain_failure"]

log = logging.getLogger(__name__)

FLUSH_S = 0.04  # ≈ 25 updates a second at most
LIVE_MARKDOWN_CHARS = 4000  # the block being streamed is shown as plain text past this


class ChatWidget(ChatEvents, ChatBranches, ChatReplies, ChatFiles, ChatPresence, Snapshot, w.VBox):  # type: ignore[misc]
    """A chat with `agent` (a kernel Agent). Methods do what the buttons do: send, steer, stop, approve
    (Always allow: `approve(ref, remember=True)`), deny, switch_model, load_earlier, export_markdown, fork,
    rate (Like / Dislike under a reply), rerun, edit, undo, switch_branch (each a fork: nothing is lost),
    attach (files for the next Send: Attach, or drop them on the chat) and remove_file.
    Decisions are recorded as `user` — by default the owner of the stored agent's session."""

    _steers: dict[str, w.HTML]  # steers shown, by their text, until applied
    _bars: list[ReplyBar]  # each reply's Like / Dislike / Re-run, in the order they were drawn
    _reply_ids: dict[int, Any]  # the stored message id of each reply, by the identity of its dict

    def __init__(
        self,
        agent: Agent,
        *,
        models: Sequence[str] = (),
        page_size: int = 50,
        height: str = "460px",
        title: str | None = None,
        user: Any = None,
    ) -> None:
        self.agent = agent
        self.user: Any = user if user is not None else person(agent.recorder)  # who decides here
        self.page_size = page_size
        self.updates_sent = 0  # streamed-text updates sent to the front end (for tests and benchmarks)
        self._bubble: w.HTML | None = None
        self._text, self._dirty = "", False
        self._head_html, self._head_len = "", 0  # the finished blocks of the streaming reply, rendered
        self._flush_handle: asyncio.TimerHandle | None = None
        self._cards: dict[str, ToolCard] = {}
        self._shown_from = 0
        self._thread = threading.get_ident()
        self.last_handle: PromptHandle | None = None
        self._phase_text = "ready"  # what the status line says …
        self._phase_since: float | None = None  # … and since when, while it is timed
        self._tick_handle: asyncio.TimerHandle | None = None
        self._failed_run = False  # the failure of this run is shown already (said once, not thrice)
        self._steers, self._bars, self._reply_ids = {}, [], {}

        self._title_given = title is not None  # else a title the model writes (stream_tags) names it
        self.title_html = w.HTML(
            f'<span class="cmdc-title">{escape(title or agent.options.name or "Chat")}</span>'
        )
        self.model_picker = self._picker(models)
        self.stats = w.HTML()
        self.status_html = w.HTML()
        self.status_html.add_class("cmdc-status")
        self.earlier = w.Button(
            description="Show earlier messages", layout=w.Layout(display="none", width="auto")
        )
        self.earlier.on_click(lambda _: self._safely("showing earlier messages", self.load_earlier))
        self.messages_box = w.VBox([])
        self.messages_box.add_class("cmdc-log")
        # the scroller is what scrolls; `follow` keeps it at the newest item while the user is there
        self.scroller = w.Box([self.messages_box], layout=w.Layout(height=height))
        self.scroller.add_class("cmdc-scroll")
        self.follow = Follow(layout=w.Layout(height="0px"))
        self.input = w.Textarea(
            placeholder="Ask the agent… (Send), or redirect it while it works (Steer)",
            layout=w.Layout(width="auto", height="64px"),
        )
        self.people = w.HTML()
        _, files_box, files_note = self._files_parts()
        header = w.HBox([self.title_html, self.model_picker, self.stats, self.people])
        header.add_class("cmdc-chat-header")
        footer = self._footer(agent)
        parts = [
            w.HTML(CSS + FILES_CSS),
            header,
            self.earlier,
            self.scroller,
            self.follow,
            files_box,
            files_note,
        ]
        parts += [self.input, footer]
        super().__init__([*parts, self._view_probe()])
        self.add_class("cmdc-chat").add_class("cmdc-chatwidget")
        self._render_history()
        self._refresh_stats()
        self._set_busy(agent.busy)
        self._sub = agent.events.subscribe(self._on_event)
        self._presence: Any = None
        self._presence_sub: Any = None
        self._heartbeat: asyncio.TimerHandle | None = None
        if agent.recorder.enabled:
            self._join_presence()

    def _footer(self, agent: Agent) -> w.HBox:
        """Send, Steer, Stop, Undo (a stored agent's), Export and the status line."""
        self.send_button = w.Button(
            description="Send", button_style="primary", icon="paper-plane", layout=w.Layout(width="90px")
        )
        self.steer_button = w.Button(description="Steer", icon="compass", layout=w.Layout(width="90px"))
        self.stop_button = w.Button(description="Stop", icon="stop", layout=w.Layout(width="80px"))
        self.stop_button.add_class("cmdc-stop")
        self.export_button = w.Button(description="Export", icon="download", layout=w.Layout(width="90px"))
        self.send_button.on_click(lambda _: self._safely("sending", self._send_from_box))
        self.steer_button.on_click(lambda _: self._safely("steering", self._steer_from_box))
        self.stop_button.on_click(lambda _: self._safely("stopping", self.stop))
        self.export_button.on_click(lambda _: self._safely("exporting", self._export_to_file))
        undo = [self._undo_button()] if agent.recorder.enabled else []  # a branch: nothing is deleted
        footer = w.HBox(
            [
                self.send_button,
                self.steer_button,
                self.attach_button,
                self.stop_button,
                *undo,
                self.export_button,
                self.status_html,
            ]
        )
        footer.add_class("cmdc-chat-footer")
        return footer

    def __repr__(self) -> str:  # cheap: never serialise the widget tree
        return f"<ChatWidget agent={self.agent.id[:8]} messages={len(self.agent.messages)}>"

    def _snapshot_html(self) -> str:
        """The transcript as shown (the loaded page of messages, the tool cards with their state), the
        header and the status line; the input box and the buttons are left out."""
        earlier = self._shown_from
        said = f'<div class="cmdc-notice">{earlier} earlier messages are not shown</div>' if earlier else ""
        return static_html(self, {id(self.earlier): said})

    # -- what the buttons do ----------------------------------------------------------------------------
    def send(self, text: str, *, files: Any = None) -> PromptHandle:
        """Send a prompt (queued if the agent is busy) with `files`, else with the files waiting under the
        input box (see `attach`). Returns the agent's handle."""
        waiting = files is None
        self.last_handle = self.agent.prompt(text, files=tuple(self.pending_files) if waiting else files)
        if waiting and self.pending_files:
            self._sent_files()
        return self.last_handle

    def steer(self, text: str) -> Any:
        return self.agent.steer(text)

    def stop(self, reason: str = "user_cancelled") -> str:
        """Stop the run. The chat shows it at once: no cursor, Stop and Steer disabled."""
        self.steer_button.disabled = self.stop_button.disabled = True
        self._end_live_bubble("stopped")
        self._phase("stopping", timed=False)
        return self.agent.abort(reason)

    def _safely(self, what: str, action: Callable[[], Any]) -> None:
        """Run a button's `action`; a failure is logged and shown in the chat, never swallowed (a
        widget callback's exception otherwise lands nowhere a user looks)."""
        self._snapshot_used()  # a click: a live view is on screen, whatever its probe said
        try:
            action()
        except Exception as exc:
            log.exception("chat: %s failed", what)
            self._error(f"{what} failed: {exc}", traceback.format_exc())

    def approve(self, ref: str, *, args: Mapping[str, Any] | None = None, remember: bool = False) -> None:
        """Approve a waiting call as the chat's `user` (`args`: edited). `remember` is "Always allow": it
        also saves a rule approving this tool with exactly these arguments in this session (a stored
        agent only: the rule lives in the services)."""
        if remember and not self.agent.recorder.enabled:
            raise InvalidInputError("needs an agent that stores to a session", field="remember")
        self.agent.approve(ref, args=args, remember=remember, by=self.user)

    def deny(self, ref: str, *, note: str | None = "denied from the chat") -> None:
        self.agent.reject(ref, note=note, auto_resume=True, by=self.user)

    def switch_model(self, model: str) -> None:
        """Switch the agent to `model`, as picking it does. A model whose provider has no key is
        refused and the agent keeps its model: ProviderError (kind "authentication") says what to set."""
        remedy = self._refuse_without_key(model)
        if remedy is not None:
            raise ProviderError(remedy, kind="authentication", model=model)
        self.agent.switch_model(model, reason="picked in the chat")
        self._show_model(self.agent.model)  # the event does it too; at once, for a caller without a loop

    def _no_key(self, model: str) -> str | None:
        """The one-sentence remedy when `model` cannot answer for want of a key, else None."""
        given = self.agent.provider_opts.get("api_key")  # a key handed to the agent: its provider has one
        if given and model.split("/", 1)[0] == self.agent.model.split("/", 1)[0]:
            return None
        variable = missing_key(model)
        return None if variable is None else explain_failure("authentication", "", model, variable=variable)

    def _refuse_without_key(self, model: str) -> str | None:
        """Keep the agent on its model when `model` has no key, and say so in the status line at once
        (as jupyter-ai refuses to save a model whose key is missing): a switch would only fail at the
        next Send. Returns the sentence said, or None when `model` can answer."""
        remedy = self._no_key(model)
        if remedy is not None:
            self._show_model(self.agent.model)
            self._phase(remedy, timed=False)
        return remedy

    def _picker(self, models: Sequence[str]) -> w.Dropdown:
        self._models = list(dict.fromkeys([self.agent.model, *models]))
        picker = w.Dropdown(
            options=self._model_options(), value=self.agent.model, layout=w.Layout(width="220px")
        )
        picker.observe(self._picked, names="value")
        return picker

    def _model_options(self) -> list[tuple[str, str]]:
        # a model that cannot answer says so in its label; its value stays the model string
        return [(m if self._no_key(m) is None else f"{m} · no key", m) for m in self._models]

    def _show_model(self, model: str) -> None:
        # Assigning `options` makes the Dropdown fall back to its first option, and that change would be
        # observed as the user picking it (switching the agent back): update it unobserved.
        self.model_picker.unobserve(self._picked, names="value")
        try:
            if model not in self._models:
                self._models.append(model)
            self.model_picker.options = self._model_options()  # relabelled: a key may have been set since
            self.model_picker.value = model
        finally:
            self.model_picker.observe(self._picked, names="value")
        if self.pending_files:
            self._show_pending()  # whether the model now takes the waiting files

    def fork(self, index: int, *, name: str | None = None) -> Any:
        """A new session forked from the stored message at `index` of the conversation (needs a session)."""
        from cmdc_nb.services import sessions

        if not self.agent.recorder.enabled:
            raise ValueError("fork needs an agent that stores to a session")
        rows = self.agent.recorder.history()
        sid = self.agent.recorder.session_id
        assert sid is not None
        return sessions.fork_session(sid, rows[index], name=name, ws=self.agent.recorder.ws)

    def fork_at(self, text: str, *, name: str | None = None) -> Any:
        """Fork the session at the last stored user message with this text (what a bubble's fork does)."""
        rows = self.agent.recorder.history() if self.agent.recorder.enabled else []
        for i in range(len(rows) - 1, -1, -1):
            r = rows[i]
            if str(getattr(r.role, "value", r.role)) == "user" and r.content == text:
                forked = self.fork(i, name=name)
                self._append(
                    w.HTML(
                        f'<div class="cmdc-notice">forked into session {escape(forked.name)} ({escape(forked.slug)})</div>'
                    )
                )
                return forked
        raise ValueError("that message is not stored (yet): forks need an agent that stores to a session")

    def export_markdown(self) -> str:
        """The transcript as Markdown."""
        out = [f"# {self.agent.options.name or 'Chat'} ({self.agent.model})", ""]
        for m in self.agent.messages:
            if m["role"] == "tool":
                out.append(
                    f"> **tool result** `{m.get('tool_call_id')}`\n>\n> "
                    + str(m.get("content") or "").replace("\n", "\n> ")
                )
            elif m["role"] == "assistant" and m.get("tool_calls"):
                if m.get("content"):
                    out.append(f"**assistant:** {m['content']}")
                for c in m["tool_calls"]:
                    out.append(f"*calls `{c['function']['name']}`* `{c['function']['arguments']}`")
            else:
                text, files = files_in(m.get("content"))
                names = f" *(attached: {', '.join(f.name for f in files)})*" if files else ""
                out.append(f"**{m['role']}:** {text}{names}")
            out.append("")
        return "\n".join(out)

    def load_earlier(self) -> int:
        """Show the previous page of messages; returns how many were added."""
        start = max(0, self._shown_from - self.page_size)
        self._reply_ids = self._map_replies()
        older = [self._message_widget(m) for m in self.agent.messages[start : self._shown_from]]
        self.messages_box.children = [x for x in older if x is not None] + list(self.messages_box.children)
        added = self._shown_from - start
        self._shown_from = start
        self.earlier.layout.display = None if start > 0 else "none"
        self.earlier.description = f"Show earlier messages ({start})"
        self._snapshot_changed()
        return added

    # -- rendering ------------------------------------------------------------------------------------
    def _render_history(self) -> None:
        msgs = self.agent.messages
        self._shown_from = max(0, len(msgs) - self.page_size)
        rows = list(self.agent.recorder.history()) if self.agent.recorder.enabled else []  # read once
        self._reply_ids = self._map_replies(rows)
        items = [self._message_widget(m) for m in msgs[self._shown_from :]]
        self.messages_box.children = [x for x in items if x is not None]
        self.earlier.layout.display = None if self._shown_from > 0 else "none"
        if self._shown_from > 0:
            self.earlier.description = f"Show earlier messages ({self._shown_from})"
        self._add_switchers(rows)

    def _message_widget(self, m: Mapping[str, Any]) -> w.Widget | None:
        role = m.get("role")
        if role == "user":
            text, files = files_in(m.get("content"))
            return self._user_bubble(text, [f.meta() for f in files])
        if role == "assistant":
            parts: list[w.Widget] = []
            if m.get("content"):
                parts.append(w.HTMLMath(self._bubble_html("assistant", str(m["content"]))))
                parts.extend(self._reply_bar(str(m["content"]), message_id=self._reply_ids.get(id(m))))
            for c in m.get("tool_calls") or ():
                try:
                    args = json.loads(c["function"]["arguments"] or "{}")
                except ValueError:
                    args = {"raw": c["function"]["arguments"]}
                made = self._cards.get(c["id"]) or ToolCard(self, c["id"], c["function"]["name"], args)
                self._cards[c["id"]] = made
                parts.append(made.box)
            return w.VBox(parts) if parts else None
        if role == "tool":
            card = self._cards.get(str(m.get("tool_call_id")))
            if card is not None and card.result is None:
                card.result, card.status = str(m.get("content") or ""), "ok"
                card.render()
            return None
        return None

    @staticmethod
    def _bubble_html(role: str, text: str, meta: str = "", files: str = "") -> str:
        body = markdown_html(text) if role == "assistant" else f"<p>{escape(text)}</p>".replace("\n", "<br>")
        if role == "steer":
            role, body = "user cmdc-steer", f"<p>↪ {escape(text)}</p>".replace("\n", "<br>")
        meta_html = f'<div class="cmdc-meta">{escape(meta)}</div>' if meta else ""
        # the text as written, for the bubble's Copy button (added by the chat's script)
        source = f' data-md="{escape(text)}"' if text.strip() and role != "steer" else ""
        return f'<div class="cmdc-msg cmdc-{role} tex2jax_ignore mathjax_ignore"{source}>{body}{files}{meta_html}</div>'

    def _append(self, widget: w.Widget) -> None:
        self.messages_box.children = [*self.messages_box.children, widget]
        self._snapshot_changed()

    def _error(self, sentence: str, details: str | None = None) -> None:
        """A failure, said once: one sentence with the remedy, the raw details behind a disclosure."""
        more = f"<details><summary>details</summary><pre>{escape(details)}</pre></details>" if details else ""
        self._append(
            w.HTML(f'<div class="cmdc-msg cmdc-error" role="alert"><p>⚠ {escape(sentence)}</p>{more}</div>')
        )

    def _refresh_stats(self) -> None:
        a = self.agent
        self.stats.value = (
            f'<span class="cmdc-stats">{a.usage.input:,} in · {a.usage.output:,} out tokens · {money(a.cost_usd)}'
            f" · {len(a.messages)} messages</span>"
        )

    def _set_busy(self, busy: bool, note: str | None = None) -> None:
        self.steer_button.disabled = not busy
        self.stop_button.disabled = not busy
        if not busy and note is None:  # "ready" would be untrue when the next Send cannot be answered
            note = self._no_key(self.agent.model)
        self._phase(note or ("working" if busy else "ready"), timed=busy and note is None)

    # -- the status line: what is happening, and for how long -------------------------------------------
    def _phase(self, text: str, *, timed: bool = True) -> None:
        if text != MODEL_CLIENT_LOADING:
            self._loading_for = None
        self._phase_text = text
        self._phase_since = time.monotonic() if timed else None
        self._show_phase()
        if timed:
            self._schedule_tick()

    def _show_phase(self) -> None:
        text = self._phase_text
        if self._phase_since is not None:
            text += f"… {int(time.monotonic() - self._phase_since)} s"
        self.status_html.value = f'<span class="cmdc-stats">{escape(text)}</span>'

    def _schedule_tick(self) -> None:
        loop = self.agent._loop
        if self._tick_handle is not None or loop is None or loop.is_closed():
            return
        self._tick_handle = loop.call_later(1.0, self._tick)

    def _tick(self) -> None:
        self._tick_handle = None
        if self._loading_for is not None and model_client_loaded():  # loaded: now it is the model's time
            self._phase(f"waiting for {self._loading_for}")
            return
        if self._phase_since is not None:  # once a second while something is timed, then it stops
            self._show_phase()
            self._schedule_tick()

    def _end_live_bubble(self, meta: str) -> None:
        """The streaming bubble stops streaming: its text stays, its cursor goes."""
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        if self._bubble is not None:
            self._bubble.value = (
                self._bubble_html("assistant", self._text, meta) if self._text.strip() else ""
            )
            self._bubble = None

    # -- streaming, coalesced ---------------------------------------------------------------------------
    def _flush(self) -> None:
        self._flush_handle = None
        if self._bubble is not None and self._dirty:
            self._bubble.value = f'<div class="cmdc-msg cmdc-assistant tex2jax_ignore mathjax_ignore">{self._live_html()}</div>'
            self.updates_sent += 1
            self._dirty = False

    def _live_html(self) -> str:
        """The streaming bubble, rendered in time that does not grow with the reply: finished blocks
        (up to the last blank line outside a code fence) are rendered once each and kept; only the
        block being written is rendered again — as Markdown while short, as plain text once long. A
        whole-reply render on every flush stalled the kernel ≈0.4 s a flush at 10,000 words. The
        final render (ResponseComplete) is the whole reply, once."""
        text = self._text
        cut = self._head_len
        pos = text.find("\n\n", cut)
        while pos != -1:
            if text.count("```", 0, pos) % 2 == 0:
                cut = pos + 2
            pos = text.find("\n\n", pos + 2)
        if cut > self._head_len:
            self._head_html += markdown_html(text[self._head_len : cut])
            self._head_len = cut
        tail = text[self._head_len :]
        if len(tail) <= LIVE_MARKDOWN_CHARS:
            live = markdown_html(tail + " ▍")
        else:
            live = "<p>" + escape(tail).replace("\n", "<br>") + " ▍</p>"
        return self._head_html + live

    def _schedule_flush(self) -> None:
        if self._flush_handle is not None:
            return
        loop = self.agent._loop
        if loop is None or loop.is_closed():
            self._flush()
            return
        self._flush_handle = loop.call_later(FLUSH_S, self._flush)

    # -- events in → widget state -----------------------------------------------------------------------
    def _on_event(self, env: ev.Envelope) -> None:
        on_loop(self.agent._loop, self._handle, env)

    def _handle(self, env: ev.Envelope) -> None:
        handler = self._HANDLERS.get(type(env.event))
        if handler is not None:
            handler(self, env.event)
            if not isinstance(env.event, ev.MessageDelta):  # the picture follows messages, not tokens
                self._snapshot_changed()

    # -- input box ----------------------------------------------------------------------------------------
    def _send_from_box(self) -> None:
        text = self.input.value.strip()
        if text:
            self.input.value = ""
            self.follow.pin()  # a user who sends wants to see the answer
            self.send(text)

    def _steer_from_box(self) -> None:
        text = self.input.value.strip()
        if text:
            self.input.value = ""
            self.follow.pin()
            self.steer(text)

    def _picked(self, change: Mapping[str, Any]) -> None:
        model = change["new"]
        if model != self.agent.model and self._refuse_without_key(model) is None:
            self._safely(
                "switching the model", lambda: self.agent.switch_model(model, reason="picked in the chat")
            )

    def _export_to_file(self) -> Path:
        path = (
            Path(self.agent.options.working_dir)
            / f"transcript-{self.agent.id[:8]}-{time.strftime('%Y%m%d-%H%M%S')}.md"
        )
        path.write_text(self.export_markdown(), encoding="utf-8")
        self._phase(f"exported to {path.name}", timed=False)
        return path

    def close(self) -> None:
        self._sub.close()
        self._leave_presence()
        super().close()
