"""The chat widget's half that reads the agent: tool-call cards, failures said as one sentence with the
remedy, and a handler per agent event (`ChatEvents`, mixed into `ChatWidget`). Kept apart so each
module stays one concern: `chat.py` is the widget and its buttons, this is what events do to it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, ClassVar, cast

import ipywidgets as w

from cmdc_nb.kernel import events as ev
from cmdc_nb.providers._litellm import loaded as model_client_loaded
from cmdc_nb.widgets._common import Decision
from cmdc_nb.widgets._render import escape, pretty_json

if TYPE_CHECKING:
    from cmdc_nb.widgets.chat import ChatWidget

__all__ = ["ChatEvents", "ToolCard", "edits_line", "explain_failure", "money", "verdict"]

log = logging.getLogger("cmdc_nb.widgets.chat")


def money(value: Any) -> str:
    if value is None:
        return "unpriced"
    return f"${float(value):.4f}" if value else "$0"


_KEY_WORDS = ("missing credentials", "api key", "api_key", "no key", "invalid x-api-key", "unauthorized")


def explain_failure(kind: str, reason: str, model: str, *, variable: str | None = None) -> str:
    """One sentence a user can act on, for a model call that failed with `kind` (a ProviderError kind)
    and the provider's `reason`; the raw reason goes behind a disclosure, not in this sentence.
    `variable` names the key to set when it is known (else the provider's usual `<PROVIDER>_API_KEY`).

    >>> explain_failure("server_error", "OpenAIException - Missing credentials", "openai/gpt-4o-mini")
    'no key for openai: set OPENAI_API_KEY, or pick an offline model'
    """
    provider = model.split("/", 1)[0] if "/" in model else model
    lowered = reason.lower()
    # litellm reports a missing key as a server error for some providers: the words tell it apart
    if kind == "authentication" or any(k in lowered for k in _KEY_WORDS):
        variable = variable or f"{provider.upper()}_API_KEY"
        return f"no key for {provider}: set {variable}, or pick an offline model"
    remedies = {
        "rate_limit": f"{provider} is limiting requests: wait a minute and send again, or pick another model",
        "timeout": f"{provider} did not answer in time: send again, or pick another model",
        "server_error": f"{provider} failed on its side: send again in a moment, or pick another model",
        "unavailable": f"{provider} is unavailable: send again in a moment, or pick another model",
        "connection": f"cannot reach {provider}: check the network, or pick an offline model",
        "context_overflow": "the conversation is too long for this model: fork from an earlier message, "
        "or pick a model with a larger context",
        "not_found": f"{provider} does not know {model}: pick another model",
        "bad_request": f"{provider} refused the request: see the details, or pick another model",
    }
    return remedies.get(kind, f"the model failed ({kind}): see the details, or pick another model")


_END_SENTENCES = {
    "max_turns_exceeded": "the agent stopped at its limit of turns: send “go on” to let it continue",
    "loop_detected": "the agent was repeating itself and was stopped: rephrase the request, or steer it",
    "plugin_aborted": "a plugin stopped the run: see the details",
    "exception": "something inside the agent failed: see the details (also in the log)",
}


def _shown(value: Any) -> str:
    """An argument's value in one short phrase: text as it is, anything else as JSON."""
    if value is _ABSENT:
        return "(none)"
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
    return text if len(text) <= 40 else text[:39] + "…"


_ABSENT: Any = object()  # an argument one side of an edit does not have


def edits_line(proposed: Mapping[str, Any], ran: Mapping[str, Any]) -> str:
    """The arguments a person changed before approving, as the card says them.

    >>> edits_line({"channel": "mastodon", "text": "hi"}, {"channel": "blog", "text": "hi"})
    'edited: channel mastodon → blog'
    """
    changed = [k for k in dict.fromkeys([*proposed, *ran]) if proposed.get(k, _ABSENT) != ran.get(k, _ABSENT)]
    return "edited: " + ", ".join(
        f"{k} {_shown(proposed.get(k, _ABSENT))} → {_shown(ran.get(k, _ABSENT))}" for k in changed
    )


def verdict(e: ev.ToolDecided) -> str:
    """Who or what decided a call, in words (from its `tool_decided` event).

    >>> verdict(ev.ToolDecided("r", "write", "c", False, "rule", "never /etc", "off limits"))
    'denied by rule ‘never /etc’: off limits'
    """
    said = "approved" if e.approved else "denied"
    if e.how == "remembered":  # its note is the rule's own bookkeeping ("remembered from approval …")
        return f"{said} by a remembered “Always allow” (rule ‘{e.by}’: {e.name} {SCOPE})"
    if e.how == "rule":
        said += f" by rule ‘{e.by}’" if e.by else " by a rule"
    elif e.how == "timeout":
        said += " on timeout"
    elif e.by:
        said += f" by {e.by}"
    return f"{said}: {e.note}" if e.note else said


# the status line while a process's first model call loads litellm (the demo and the tour say it too)
MODEL_CLIENT_LOADING = "loading the model client (first call only)"
# Where the reply will be, until its first words: three dots that pulse (CSS), said in words for
# screen readers and for the static snapshot.
THINKING = (
    '<div class="cmdc-msg cmdc-assistant cmdc-thinking" role="status" aria-label="thinking">'
    '<span class="cmdc-thinking-dots"><span>●</span><span>●</span><span>●</span></span> thinking</div>'
)

# what "Always allow" remembers besides the tool (services.approvals.remember_decision_in, docs/approvals.md)
SCOPE = "with exactly these arguments in this session"


class ToolCard:
    """One tool call: a card; while it waits for a person, its arguments are open and the Approve /
    Always allow / Deny / Edit controls sit inside it (Edit: a form built from the tool's parameters
    schema). Once decided it says who decided (a person, a rule) and, when the arguments were edited,
    shows the ones that ran with the edit spelled out."""

    LABELS: ClassVar[dict[str, str]] = {
        "waiting": "waiting for your approval",
        "running": "running…",
        "ok": "done",
        "error": "failed",
        "denied": "denied",
        "stopped": "stopped",
    }

    def __init__(self, chat: ChatWidget, call_id: str, name: str, args: Mapping[str, Any]) -> None:
        self.chat, self.call_id, self.name = chat, call_id, name
        self.proposed: dict[str, Any] = dict(args)  # what the person was asked about
        self.args: dict[str, Any] = dict(args)  # what runs (the edited arguments, once approved)
        self.status: str = "queued"
        self.result: str | None = None
        self.duration_ms: int | None = None
        self.ref: str | None = None
        self.verdict: str | None = None
        self.remembered = False
        self.html = w.HTML()
        self.controls = w.VBox([])
        self.box = w.VBox([self.html, self.controls])
        self.box.add_class("cmdc-tool")
        self._klass = ""
        self.render()

    @property
    def edited(self) -> bool:
        return self.args != self.proposed

    def render(self) -> None:
        klass = self.status if self.status in self.LABELS else ""
        if klass != self._klass:  # the card's border and fill say its state
            if self._klass:
                self.box.remove_class(self._klass)
            if klass:
                self.box.add_class(klass)
            self._klass = klass
        label = self.LABELS.get(self.status, self.status)
        took = f" · {self.duration_ms} ms" if self.duration_ms is not None else ""
        lines = [self.verdict] if self.verdict else []
        if self.remembered:
            lines.append(f"remembered: from now on {self.name} {SCOPE} is approved without asking")
        if self.edited:
            lines.append(edits_line(self.proposed, self.args))
        said = "".join(f'<div class="cmdc-meta cmdc-decided">{escape(x)}</div>' for x in lines)
        result = ""
        if self.result is not None:
            opened = " open" if self.status == "error" else ""
            result = (
                f"<details{opened}><summary>result</summary><pre>{escape(self.result[:4000])}</pre></details>"
            )
        # a person deciding must see what they approve: the arguments are open while the card waits
        args_open = " open" if self.status == "waiting" else ""
        self.html.value = (
            f'<div class="cmdc-tool-head"><span class="cmdc-tool-name">{escape(self.name)}</span>'
            f'<span class="cmdc-badge {klass}">{escape(label)}</span><span class="cmdc-meta">{took}</span></div>'
            f"{said}<details{args_open}><summary>arguments{' (edited)' if self.edited else ''}</summary>"
            f"<pre>{escape(pretty_json(self.args))}</pre></details>"
            f"{result}"
        )

    def ask(self, ref: str, args: Mapping[str, Any], hint: str | None) -> None:
        self.ref, self.status = ref, "waiting"
        self.proposed, self.args = dict(args), dict(args)
        chat = self.chat
        tool = chat.agent.tools.get(self.name)
        stored = chat.agent.recorder.enabled  # a remembered decision is a rule: it needs the services
        decision = Decision(
            args,
            approve=lambda edited: chat._safely("approving", lambda: self._approve(ref, edited)),
            deny=lambda: chat._safely("denying", lambda: chat.deny(ref)),
            schema=getattr(tool, "parameters", None),
            always=(
                (lambda edited: chat._safely("approving", lambda: self._approve(ref, edited, remember=True)))
                if stored
                else None
            ),
            always_tip=f"Approve, and from now on approve {self.name} {SCOPE} without asking",
        )
        note = w.HTML(f'<div class="cmdc-notice">{escape(hint)}</div>' if hint else "")
        self.controls.children = [*decision.widgets, note]
        self.render()

    def _approve(self, ref: str, edited: Mapping[str, Any] | None, *, remember: bool = False) -> None:
        self.chat.approve(ref, args=edited, remember=remember)
        self.remembered = remember
        if edited is not None:  # the card shows what runs, not what the model proposed
            self.args = dict(edited)
        self.render()

    def on_decided(self, e: ev.ToolDecided) -> None:
        self.ref, self.verdict = e.ref, verdict(e)
        self.decided()
        if not e.approved:  # denied: it will neither wait nor run (a rule's denial comes with no other event)
            self.status = "denied"
        self.render()

    def on_start(self, args: Mapping[str, Any]) -> None:
        self.status, self.args = "running", dict(args)  # the arguments that run, edited wherever
        self.decided()
        self.render()

    def decided(self) -> None:
        self.controls.children = []


class ChatEvents:
    """What each agent event does to the chat (the methods assume a `ChatWidget`)."""

    if TYPE_CHECKING:
        # the widget's own attributes and methods (agent, _cards, _phase, …): this is only its mixin
        def __getattr__(self, name: str) -> Any: ...

        _flush_handle: Any
        _bubble: Any
        updates_sent: int

    _loading_for: str | None = None  # the model a request waits for while litellm loads

    # the conversation: bubbles and notices
    def _on_prompt(self, e: ev.PromptReceived) -> None:
        self._append(self._user_bubble(e.text, e.files))
        self._set_busy(True, "queued" if e.queued else None)

    def _on_start(self, e: ev.AgentStart) -> None:
        self._failed_run = False
        self._set_busy(True)
        self._phase("starting")

    def _on_request(self, e: ev.RequestStart) -> None:
        if self._bubble is None:  # a placeholder where the reply will be, until its first words
            self._bubble, self._text, self._dirty = w.HTMLMath(THINKING), "", False
            self._head_html, self._head_len = "", 0
            self._append(self._bubble)
        if model_client_loaded(e.model, getattr(self.agent.options, "cassette", None)):
            self._phase(f"waiting for {e.model}")  # loaded, or an offline model, which never loads it
        else:  # the first call of the process loads litellm first: the long wait, said for what it is
            self._loading_for = e.model
            self._phase(MODEL_CLIENT_LOADING)

    def _on_status(self, e: ev.StatusUpdate) -> None:
        self._phase(e.text)  # what the model says it is doing, timed like any phase

    def _on_title(self, e: ev.TitleGenerated) -> None:
        if not self._title_given:
            self.title_html.value = f'<span class="cmdc-title">{escape(e.title)}</span>'

    def _on_retry(self, e: ev.Retry) -> None:
        self._phase(f"{e.kind.replace('_', ' ')}: trying again in {e.delay_s:.0f} s (attempt {e.attempt})")

    def _on_message_start(self, e: ev.MessageStart) -> None:
        self._phase("writing")
        placeholder = self._bubble
        self._bubble, self._text, self._dirty = placeholder or w.HTMLMath(), "", False
        self._bubble.value = self._bubble_html("assistant", "▍")
        self._head_html, self._head_len = "", 0
        if placeholder is None:
            self._append(self._bubble)

    def _on_delta(self, e: ev.MessageDelta) -> None:
        self._text += e.delta
        self._dirty = True
        self._schedule_flush()

    def _on_response(self, e: ev.ResponseComplete) -> None:
        if self._flush_handle is not None:
            self._flush_handle.cancel()
            self._flush_handle = None
        meta = f"{e.model} · {e.usage.input:,}/{e.usage.output:,} tokens · {money(e.cost_usd)}"
        if self._bubble is not None:
            if e.text:
                self._bubble.value = self._bubble_html("assistant", e.text, meta)
                self.updates_sent += 1
                for bar in self._reply_bar(e.text, call_id=e.call_id):
                    self._append(bar)
            else:
                self._bubble.value = f'<div class="cmdc-meta">{escape(meta)}</div>'
        for c in e.tool_calls:
            try:
                args = json.loads(c["function"]["arguments"] or "{}")
            except ValueError:
                args = {}
            card = ToolCard(cast("ChatWidget", self), c["id"], c["function"]["name"], args)
            self._cards[c["id"]] = card
            self._append(card.box)
        self._bubble = None
        self._refresh_stats()

    def _notice(self, text: str) -> None:
        self._append(w.HTML(f'<div class="cmdc-notice">{escape(text)}</div>'))

    def _on_unknown_tool(self, e: ev.ToolCallUnknown) -> None:
        self._notice(f"the model called an unknown tool: {e.name}")

    def _on_steer_received(self, e: ev.SteeringReceived) -> None:
        if e.status == "queued":  # the steer is part of the conversation: shown where it was given
            bubble = w.HTML(self._bubble_html("steer", e.text, "steer · applies at the next step"))
            self._steers[e.text] = bubble
            self._append(bubble)
        elif e.status.startswith("rejected"):
            self._error(
                f"the steer was not taken ({e.status.replace('_', ' ')}): send it again when the agent is done"
            )

    def _on_steered(self, e: ev.SteeringApplied) -> None:
        for text in e.texts:
            bubble = self._steers.pop(text, None)
            if bubble is not None:
                bubble.value = self._bubble_html("steer", text, "steer · applied")

    def _on_model_switched(self, e: ev.ModelSwitched) -> None:
        self._show_model(e.to_model)

    def _on_turn(self, e: ev.TurnComplete) -> None:
        self._refresh_stats()

    def _on_abort(self, e: ev.AgentAbort) -> None:
        for card in self._cards.values():
            card.decided()
            if card.status in ("queued", "waiting", "running"):
                card.status = "stopped"
                card.render()
        self._end_live_bubble("stopped")
        said = "by you" if e.reason == "user_cancelled" else f"({e.reason.replace('_', ' ')})"
        self._append(w.HTML(f'<div class="cmdc-notice cmdc-stopped">■ stopped {escape(said)}</div>'))
        self._set_busy(False, "stopped")

    def _on_end(self, e: ev.AgentEnd) -> None:
        self._refresh_stats()
        if e.reason == "normal":
            self._set_busy(False)
            return
        if not self._failed_run:  # a provider failure was shown by its stream error already
            self._error(
                _END_SENTENCES.get(e.reason, f"the run ended: {e.reason.replace('_', ' ')}"), e.detail
            )
        self._set_busy(False, "failed: see the message above")

    def _on_stream_error(self, e: ev.StreamError) -> None:
        self._end_live_bubble("failed")
        if not self._failed_run:
            self._failed_run = True
            self._error(explain_failure(e.kind, e.reason, self.agent.model), e.reason)

    # the tool cards
    def _on_approval_required(self, e: ev.ApprovalRequired) -> None:
        card = self._cards.get(e.call_id)
        if card is not None:
            card.ask(e.ref, e.args, e.hint)
        self._phase("waiting for your approval", timed=False)

    def _on_resumed(self, e: ev.AgentResumed) -> None:
        if e.trigger not in ("tool_approved", "tool_rejected"):
            return
        for card in self._cards.values():
            if card.ref in e.refs:
                card.decided()
                card.status = "running" if e.trigger == "tool_approved" else "denied"
                card.render()

    def _on_decided(self, e: ev.ToolDecided) -> None:
        card = self._cards.get(e.call_id)
        if card is not None:
            card.on_decided(e)

    def _on_tool_start(self, e: ev.ToolExecutionStart) -> None:
        card = self._cards.get(e.call_id)
        if card is not None:
            card.on_start(e.args)
        self._phase(f"running {e.name}")

    def _on_tool_metrics(self, e: ev.ToolExecutionMetrics) -> None:
        card = self._cards.get(e.call_id)
        if card is not None and e.duration_ms is not None:
            card.duration_ms = e.duration_ms
            card.render()

    def _on_tool_end(self, e: ev.ToolExecutionEnd) -> None:
        card = self._cards.get(e.call_id)
        if card is not None:
            # a denied call ends "not ok", but it did not fail: it stays denied
            if card.status != "denied":
                card.status = "ok" if e.ok else "error"
            card.result = e.result
            card.render()
        if self.agent.busy:
            self._phase("working")

    _HANDLERS: ClassVar[dict[type[ev.AgentEvent], Callable[[Any, Any], None]]] = {
        ev.PromptReceived: _on_prompt,
        ev.AgentStart: _on_start,
        ev.RequestStart: _on_request,
        ev.Retry: _on_retry,
        ev.StatusUpdate: _on_status,
        ev.TitleGenerated: _on_title,
        ev.SteeringReceived: _on_steer_received,
        ev.MessageStart: _on_message_start,
        ev.MessageDelta: _on_delta,
        ev.ResponseComplete: _on_response,
        ev.ToolCallUnknown: _on_unknown_tool,
        ev.SteeringApplied: _on_steered,
        ev.ModelSwitched: _on_model_switched,
        ev.TurnComplete: _on_turn,
        ev.AgentAbort: _on_abort,
        ev.AgentEnd: _on_end,
        ev.StreamError: _on_stream_error,
        ev.ApprovalRequired: _on_approval_required,
        ev.ToolDecided: _on_decided,
        ev.AgentResumed: _on_resumed,
        ev.ToolExecutionStart: _on_tool_start,
        ev.ToolExecutionMetrics: _on_tool_metrics,
        ev.ToolExecutionEnd: _on_tool_end,
    }
