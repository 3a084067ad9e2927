"""Who else is on a chat's session: the chat joins the session's presence as the person at this
keyboard, keeps it alive with a heartbeat, shows everyone present as badges, and leaves on close."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from cmdc_nb.widgets._common import on_loop
from cmdc_nb.widgets._render import escape

__all__ = ["ChatPresence", "person"]


class ChatPresence:
    """The presence of a ChatWidget (a mixin: the methods assume a `ChatWidget`)."""

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...

    _presence: Any
    _presence_sub: Any
    _heartbeat: asyncio.TimerHandle | None

    # -- presence: who else is on this session ------------------------------------------------------------
    def _join_presence(self) -> None:
        import uuid

        from cmdc_nb._plumbing.workspace import get_workspace
        from cmdc_nb.events import topics
        from cmdc_nb.services import presence

        rec = self.agent.recorder
        assert rec.user_id is not None and rec.session_id is not None
        self._presence = presence.join_resource(
            person(rec),  # the one at this keyboard: in team mode, not necessarily the session's owner
            "session",
            rec.session_id,
            client_id=f"chat-{uuid.uuid4().hex[:12]}",
            status="editing",
            ws=rec.ws,
        )
        bus = get_workspace(rec.ws).bus
        self._presence_sub = bus.subscribe(
            topics.presence("session", rec.session_id), lambda _e: self._on_presence()
        )
        self.refresh_presence()
        self._schedule_heartbeat()

    def _on_presence(self) -> None:
        on_loop(self.agent._loop, self.refresh_presence)

    def _schedule_heartbeat(self) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # not in a notebook: nobody to keep present
        self._heartbeat = loop.call_later(30.0, self._beat)

    def _beat(self) -> None:
        from cmdc_nb.services import presence

        if self._presence is not None:
            presence.heartbeat(self._presence, ws=self.agent.recorder.ws)
            self._schedule_heartbeat()

    def refresh_presence(self) -> list[str]:
        """The people on this chat's session now (badges in the header)."""
        from cmdc_nb.services import accounts, presence

        rec = self.agent.recorder
        assert rec.session_id is not None
        here = presence.list_resource_presence("session", rec.session_id, ws=rec.ws).entries
        names: list[str] = []
        for p in here:
            u = accounts.get_user(p.user_id, ws=rec.ws)
            name = u.name or u.email
            if name not in names:
                names.append(name)
        self.people.value = " ".join(f'<span class="cmdc-badge ok">● {escape(n)}</span>' for n in names)
        return names

    def _leave_presence(self) -> None:
        if self._heartbeat is not None:
            self._heartbeat.cancel()
        if self._presence_sub is not None:
            self._presence_sub.close()
        if self._presence is not None:
            from cmdc_nb.services import presence

            presence.leave_resource(self._presence, ws=self.agent.recorder.ws)
            self._presence = None


def person(rec: Any) -> Any:
    """Who uses the chat: the workspace's acting user (team mode), else the stored session's owner."""
    from cmdc_nb._plumbing import access
    from cmdc_nb._plumbing.workspace import get_workspace

    if not rec.enabled:
        return rec.user_id
    return access.current(get_workspace(rec.ws).acting_user_id) or rec.user_id
