"""The notebook's agents as a live table (what `%cmdc status` shows): state, model, turns, messages,
tokens and cost, redrawn on the agents' own events while they run, so the table is current without
running the cell again. Agents made after it was shown join at the next cell's end (`refresh()`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import ipywidgets as w

from cmdc_nb.kernel import events as ev
from cmdc_nb.kernel.agent import Agent
from cmdc_nb.widgets._chat_events import money
from cmdc_nb.widgets._common import Refresher
from cmdc_nb.widgets._render import escape
from cmdc_nb.widgets._theme import PANEL_CSS

__all__ = ["StatusTable", "status_rows"]

COALESCE_S = 0.1  # a burst of events (a turn's) is one redraw


def status_rows(agents: Sequence[Agent], name_of: Callable[[Agent], str]) -> list[tuple[str, ...]]:
    """One row per agent: name, state, model, turns, messages, tokens, cost."""
    return [
        (
            name_of(a),
            a.state.value,
            a.model,
            str(a.turns),
            str(len(a.messages)),
            f"{a.usage.total:,}",
            money(a.cost_usd),
        )
        for a in agents
    ]


def status_text(agents: Sequence[Agent], name_of: Callable[[Agent], str]) -> str:
    """The table as plain text (for a shell without a front end to draw a widget)."""
    rows = [
        f"{n:<20} {state:<16} {model:<32} turns {turns:<4} messages {msgs:<5} tokens {tokens:<8} cost {cost}"
        for n, state, model, turns, msgs, tokens, cost in status_rows(agents, name_of)
    ]
    return "\n".join(rows) or "no agents in this notebook"


class StatusTable(w.VBox):  # type: ignore[misc]
    """A live table of `agents()` (a callable: the notebook's agents now). `refresh()` re-reads it."""

    HEAD = ("agent", "state", "model", "turns", "messages", "tokens", "cost")

    def __init__(self, agents: Callable[[], Sequence[Agent]], name_of: Callable[[Agent], str]) -> None:
        self._agents, self._name_of = agents, name_of
        self._subs: dict[str, Any] = {}
        self._refresher = Refresher(self.refresh, delay=COALESCE_S)
        self.table = w.HTML()
        super().__init__([w.HTML(PANEL_CSS), self.table])
        self.add_class("cmdc-panel")
        self.add_class("cmdc-status-table")
        self.redraws = 0
        self.refresh()

    def __repr__(self) -> str:
        return f"<StatusTable agents={len(self._subs)}>"

    def _on_event(self, env: ev.Envelope) -> None:
        if not env.type.endswith("_delta"):  # tokens stream in many pieces; the table changes per step
            self._refresher()

    def refresh(self) -> None:
        """Follow the notebook's agents now (new ones joined, gone ones left) and redraw the table."""
        agents = list(self._agents())
        ids = {a.id for a in agents}
        for gone in [i for i in self._subs if i not in ids]:
            self._subs.pop(gone).close()
        for a in agents:
            if a.id not in self._subs:
                self._subs[a.id] = a.events.subscribe(self._on_event)
        rows = status_rows(agents, self._name_of)
        head = "".join(f"<th>{h}</th>" for h in self.HEAD)
        body = "".join("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in row) + "</tr>" for row in rows)
        empty = '<div class="cmdc-notice">no agents in this notebook</div>' if not rows else ""
        self.table.value = (
            f'<div class="cmdc-scroll-x"><table class="cmdc-status"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table></div>{empty}"
        )
        self.redraws += 1

    def close(self) -> None:
        for sub in self._subs.values():
            sub.close()
        self._subs.clear()
        super().close()
