"""ActivityFeed: the audit log as it happens (who did what, on which session), with presence badges —
who else is on this session right now. It re-reads itself (debounced) on every committed change."""

from __future__ import annotations

from typing import Any

import ipywidgets as w

from cmdc_nb.events import topics
from cmdc_nb.services import accounts, activity, presence
from cmdc_nb.widgets._common import Refresher
from cmdc_nb.widgets._render import escape
from cmdc_nb.widgets._snapshot import Snapshot
from cmdc_nb.widgets._theme import PANEL_CSS

__all__ = ["ActivityFeed"]

DEBOUNCE_S = 0.3


class ActivityFeed(Snapshot, w.VBox):  # type: ignore[misc]
    """The newest `limit` audit entries (of `user` and/or `session`, else the workspace's), and, for a
    session, the people on it. `refresh()` re-reads; events refresh it by themselves."""

    def __init__(self, *, user: Any = None, session: Any = None, limit: int = 30, ws: Any = None) -> None:
        from cmdc_nb._plumbing.workspace import get_workspace

        super().__init__([])
        self.ws = get_workspace(ws)
        self.user, self.session, self.limit = user, session, limit
        self.entries: list[Any] = []
        self.people: list[Any] = []
        self.badges = w.HTML()
        self.table = w.HTML()
        header = w.HBox([w.HTML('<span class="cmdc-title">Activity</span>'), self.badges])
        header.add_class("cmdc-row")
        self.children = [w.HTML(PANEL_CSS), header, self.table, self._view_probe()]
        self.add_class("cmdc-panel")
        self.add_class("cmdc-activity")
        self._refresher = Refresher(self.refresh, delay=DEBOUNCE_S)
        self._loop = self._refresher.loop
        self._names: dict[str, str] = {}
        self._sub = self.ws.bus.subscribe("*", self._on_event)
        self.refresh()

    def __repr__(self) -> str:
        return f"<ActivityFeed entries={len(self.entries)} people={len(self.people)}>"

    def _on_event(self, event: Any) -> None:
        if event.topic.startswith(topics.AGENT_PREFIX):
            return  # the kernel's own stream (deltas…): the audit log changes with the services' events
        self._refresher(event)

    def _name(self, user_id: Any) -> str:
        if user_id is None:
            return "system"
        key = str(user_id)
        if key not in self._names:
            try:
                u = accounts.get_user(user_id, ws=self.ws)
                self._names[key] = u.name or u.email
            except Exception:
                self._names[key] = key[:8]
        return self._names[key]

    def refresh(self) -> list[Any]:
        self.entries = list(
            activity.search_activity(
                user=self.user, session=self.session, limit=self.limit, ws=self.ws
            ).entries
        )
        rows = "".join(
            f"<tr><td class='cmdc-meta'>{escape(str(e.occurred_at)[11:19])}</td><td>{escape(self._name(e.user_id))}</td>"
            f"<td><code>{escape(getattr(e.action, 'value', e.action))}</code></td>"
            f"<td class='cmdc-meta'>{escape(e.resource_type)} {escape(str(e.resource_id)[:8])}</td></tr>"
            for e in self.entries
        )
        self.table.value = (
            f"<table style='font-size:12px'>{rows}</table>"
            if rows
            else '<div class="cmdc-notice">No activity yet.</div>'
        )
        if self.session is not None:
            sid = getattr(self.session, "id", self.session)
            self.people = list(presence.list_resource_presence("session", sid, ws=self.ws).entries)
            self.badges.value = (
                " ".join(
                    f'<span class="cmdc-pill" title="{escape(getattr(p.status, "value", p.status))}">● {escape(self._name(p.user_id))}</span>'
                    for p in self.people
                )
                or '<span class="cmdc-stats">nobody else here</span>'
            )
        self._snapshot_changed()
        return self.entries

    def close(self) -> None:
        self._sub.close()
        super().close()
