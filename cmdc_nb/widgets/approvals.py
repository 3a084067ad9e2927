"""ApprovalQueue: everything waiting for your decision, across sessions and workflows — where each item
comes from (agent, session, workflow step, notebook), priority, risk, the arguments (editable as a form
built from the tool's schema), approve or deny with a note. It updates itself from the workspace's
events, so an item decided elsewhere (another cell, a rule, another person) leaves the queue by itself,
and an agent waiting on an item resumes the moment you click."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import ipywidgets as w

from cmdc_nb.errors import CmdcError, InvalidInputError
from cmdc_nb.events import topics
from cmdc_nb.services import approvals
from cmdc_nb.widgets._arg_form import check_args, sentence
from cmdc_nb.widgets._common import Decision, Refresher
from cmdc_nb.widgets._render import escape, pretty_json
from cmdc_nb.widgets._snapshot import Snapshot
from cmdc_nb.widgets._theme import PANEL_CSS

__all__ = ["ApprovalQueue"]

_PRIORITY_STYLE = {
    "critical": "cmdc-risk-critical",
    "high": "cmdc-risk-high",
    "normal": "cmdc-risk-medium",
    "low": "cmdc-risk-low",
}


class ApprovalQueue(Snapshot, w.VBox):  # type: ignore[misc]
    """The pending approval items of `user`, most urgent first. `approve(id)` / `deny(id)` do what the
    buttons do; `refresh()` re-reads the queue (done automatically on every approval event)."""

    def __init__(self, user: Any, *, ws: Any = None, page_size: int = 20) -> None:
        from cmdc_nb._plumbing.workspace import get_workspace

        self.user = user
        self.ws = get_workspace(ws)
        self.page_size = page_size
        self.items: list[Any] = []
        self._rows: dict[Any, tuple[w.Widget, w.HTML]] = {}
        self.heading = w.HTML()
        self.list_box = w.VBox([])
        self.refresh_button = w.Button(description="Refresh", icon="refresh", layout=w.Layout(width="100px"))
        self.refresh_button.on_click(lambda _: self.refresh())
        header = w.HBox([self.heading, self.refresh_button])
        header.add_class("cmdc-row")
        super().__init__([w.HTML(PANEL_CSS), header, self.list_box, self._view_probe()])
        self.add_class("cmdc-panel")
        self.add_class("cmdc-approvals")
        # Bus callbacks run in the publisher's thread (an agent's writer, another cell): refresh on the loop.
        self._refresher = Refresher(self.refresh)
        self._loop = self._refresher.loop
        uid = getattr(user, "id", user)
        self._sub = self.ws.bus.subscribe(topics.user_approvals(uid), self._refresher)
        self.refresh()

    def __repr__(self) -> str:
        return f"<ApprovalQueue pending={len(self.items)}>"

    def refresh(self) -> list[Any]:
        page = approvals.list_pending_approvals(self.user, limit=self.page_size, ws=self.ws)
        self.items = list(page.entries)
        more = " (more below the first page)" if page.has_next else ""
        self.heading.value = f'<span class="cmdc-title">Approvals</span> <span class="cmdc-stats">{len(self.items)} pending{more}</span>'
        origins = approvals.approval_origins(self.items, ws=self.ws) if self.items else {}
        # An item still pending keeps its row: a form half edited survives another item's arrival.
        rows = {item.id: self._rows.get(item.id) or self._row(item) for item in self.items}
        for item in self.items:
            rows[item.id][1].value = self._header(item, origins.get(item.id))
        self._rows = rows
        self.list_box.children = [row for row, _ in rows.values()] or [
            w.HTML('<div class="cmdc-notice">Nothing is waiting for you.</div>')
        ]
        self._snapshot_changed()
        return self.items

    @staticmethod
    def _shown(item: Any) -> tuple[Any, Mapping[str, Any] | None]:
        """What the item asks to approve (a tool's arguments, a step's payload), and its JSON schema."""
        payload = dict(item.payload or {})
        schema = payload.get("tool_schema") if item.approval_type == "tool_use" else None
        params = schema.get("parameters") if isinstance(schema, Mapping) else None
        return payload.get("input", payload), params if isinstance(params, Mapping) else None

    def _header(self, item: Any, origin: approvals.Origin | None) -> str:
        priority = str(getattr(item.priority, "value", item.priority))
        risk = str(getattr(item.risk_level, "value", item.risk_level) or "")
        factors = ", ".join(item.risk_factors or [])
        shown, _ = self._shown(item)
        came = origin.describe() if origin is not None else ""
        return (
            f'<div><b>{escape(item.title)}</b> <span class="cmdc-badge {_PRIORITY_STYLE.get(priority, "")}">{escape(priority)}</span>'
            + (
                f' <span class="cmdc-badge cmdc-risk-{escape(risk)}">risk {escape(risk)}</span>'
                if risk
                else ""
            )
            + (f' <span class="cmdc-stats">{escape(factors)}</span>' if factors else "")
            + f'<div class="cmdc-meta cmdc-origin">{escape("from " + came if came else "origin not recorded")}</div>'
            + f'<div class="cmdc-meta">{escape(item.description or "")} · {escape(str(item.inserted_at)[:19])}'
            + (f" · expires {escape(str(item.expires_at)[:19])}" if item.expires_at else "")
            + f"</div><details><summary>payload</summary><pre>{escape(pretty_json(shown))}</pre></details></div>"
        )

    def _row(self, item: Any) -> tuple[w.Widget, w.HTML]:
        shown, schema = self._shown(item)
        header = w.HTML()
        note = w.Text(placeholder="note (optional)", layout=w.Layout(width="260px", max_width="100%"))
        decision = Decision(
            shown if isinstance(shown, Mapping) else {"value": shown},
            approve=lambda edited: self._clicked(
                decision, lambda: self.approve(item.id, note=note.value or None, input=edited)
            ),
            deny=lambda: self._clicked(decision, lambda: self.deny(item.id, note=note.value or None)),
            edit_label="Edit",
            extra=[note],
            schema=schema,
        )
        decision.widgets[0].add_class("cmdc-row")
        row = w.VBox([header, *decision.widgets])
        row.add_class("cmdc-queue-item")
        return row, header

    def _clicked(self, decision: Decision, action: Callable[[], Any]) -> None:
        """A button's action: a refusal (decided meanwhile, not allowed, invalid) is said under the item."""
        try:
            action()
        except CmdcError as exc:
            decision.message.value = f'<div class="cmdc-notice">{escape(exc)}</div>'

    def approve(
        self, item_id: Any, *, note: str | None = None, input: Mapping[str, Any] | None = None
    ) -> Any:
        """Approve an item; `input` replaces what it asked for (a tool's arguments, a step's payload), and
        must pass the tool's schema: InvalidInputError names the first argument that does not."""
        item = next((i for i in self.items if i.id == item_id), None)
        modified = None
        if input is not None and item is not None:
            _, schema = self._shown(item)
            for name, problem in check_args(input, schema).items():
                refused = InvalidInputError(sentence(name, problem))
                refused.field = name or "input"  # the sentence names the argument already
                raise refused
            modified = (
                {**dict(item.payload or {}), "input": dict(input)}
                if "input" in (item.payload or {})
                else dict(input)
            )
        decided = approvals.approve_item(item_id, self.user, note=note, modified_payload=modified, ws=self.ws)
        self.refresh()
        return decided

    def deny(self, item_id: Any, *, note: str | None = None) -> Any:
        decided = approvals.deny_item(item_id, self.user, note=note, ws=self.ws)
        self.refresh()
        return decided

    def close(self) -> None:
        self._sub.close()
        super().close()
