"""The demo behind the README's first command: a workspace, a user, a session, and a summary.

It grows as features land (chat, approvals, workflows, RAG, the cost dashboard).
"""

from __future__ import annotations

import time
from pathlib import Path

import sqlalchemy as sa

import cmdc_nb
from cmdc_nb import accounts, sessions
from cmdc_nb.errors import NotFoundError
from cmdc_nb.events import Event
from cmdc_nb.store.models import ActivityLog

__all__ = ["run_demo"]


def run_demo(home: str | Path | None = None, *, url: str | None = None) -> str:
    """Run the demo and return its summary (also printed by `cmdc-nb demo`)."""
    started = time.perf_counter()
    ws = cmdc_nb.connect(url, home=home)
    seen: list[Event] = []
    ws.bus.subscribe("*", seen.append)
    try:
        user = accounts.get_user_by_email("demo@example.com", ws=ws)
    except NotFoundError:
        user = accounts.create_user("demo@example.com", name="Demo User", ws=ws)
    session = sessions.create_session(
        user, name="Explore cmdc_nb", purpose="A first session", tags=["demo"], ws=ws
    )
    with ws.read() as db:
        audit = db.scalar(
            sa.select(sa.func.count()).select_from(ActivityLog).where(ActivityLog.user_id == user.id)
        )
    total = len(sessions.list_sessions(user, limit=1000, ws=ws))
    lines = [
        "cmdc_nb demo",
        f"  workspace   {ws.url_display} ({ws.backend})",
        f"  user        {user.email} ({user.id})",
        f"  session     {session.name!r} slug={session.slug} status={session.status.value}",
        f"  sessions    {total} for this user",
        f"  events      {', '.join(f'{e.topic}:{e.type}' for e in seen)}",
        f"  audit log   {audit} entries for this user",
        f"  took        {time.perf_counter() - started:.2f} s",
    ]
    ws.close()
    return "\n".join(lines)
