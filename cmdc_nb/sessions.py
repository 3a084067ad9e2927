"""Chat sessions. (Messages, forks, search and export build on this in the domain-services work.)

>>> s = create_session(user, name="Refactor the parser", tags=["parser"])   # doctest: +SKIP
>>> s.slug
'refactor-the-parser'
"""

from __future__ import annotations

import re
import unicodedata
import uuid
from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa

from cmdc_nb import _validate as v
from cmdc_nb._audit import log_activity
from cmdc_nb.errors import ConflictError, InvalidInputError, NotFoundError
from cmdc_nb.events import topics
from cmdc_nb.store.enums import ActivityAction, SessionStatus
from cmdc_nb.store.models import Session, User
from cmdc_nb.store.pagination import Page, paginate
from cmdc_nb.workspace import Tx, Workspace, get_workspace

__all__ = ["create_session", "get_session", "get_session_by_slug", "list_sessions", "slugify"]

_SLUG = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")


def slugify(name: str, *, max_len: int = 50) -> str:
    """The seed's rule: lower-case, drop all but letters, digits, spaces and dashes, spaces to dashes,
    first 50 characters. Accents are folded first ("Café" → "cafe"), underscores count as spaces
    ("cmdc_nb" → "cmdc-nb") and dashes collapse."""
    folded = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode().lower()
    cleaned = re.sub(r"[^a-z0-9\s-]", "", folded.replace("_", " "))
    slug = re.sub(r"[\s-]+", "-", cleaned).strip("-")[:max_len].strip("-")
    return slug or "session"


def _session_payload(s: Session) -> dict[str, Any]:
    return {
        "session_id": str(s.id),
        "user_id": str(s.user_id),
        "name": s.name,
        "slug": s.slug,
        "status": s.status.value,
    }


def _free_slug(tx: Tx, user_id: uuid.UUID, base: str) -> str:
    taken = set(
        tx.db.scalars(
            sa.select(Session.slug).where(Session.user_id == user_id, Session.slug.like(f"{base}%"))
        )
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def create_session(
    user: User | uuid.UUID | str,
    *,
    name: str,
    purpose: str | None = None,
    slug: str | None = None,
    tags: Sequence[str] | None = None,
    system_prompt: str | None = None,
    default_model: str | None = None,
    default_agent: str | None = None,
    temperature: float | None = None,
    max_tokens: int | None = None,
    ws: Workspace | None = None,
) -> Session:
    """Create a session. Without `slug`, one is made from the name (and numbered if already taken)."""
    uid = v.id_of(user, "user")
    name = v.text(name, "name", max_len=200)
    if slug is not None:
        slug = v.text(slug, "slug", max_len=100)
        if not _SLUG.match(slug):
            raise InvalidInputError("use lower-case letters, digits and single dashes", field="slug")
    if temperature is not None and not (isinstance(temperature, int | float) and 0 <= temperature <= 2):
        raise InvalidInputError("must be a number from 0 to 2", field="temperature")
    if max_tokens is not None and (
        isinstance(max_tokens, bool) or not isinstance(max_tokens, int) or max_tokens <= 0
    ):
        raise InvalidInputError("must be a positive integer", field="max_tokens")
    tag_list = [v.text(t, "tags", max_len=64) for t in (tags or [])]
    with get_workspace(ws).transaction() as tx:
        if tx.db.get(User, uid) is None:
            raise NotFoundError("user", uid)
        if slug is None:
            slug = _free_slug(tx, uid, slugify(name))
        elif tx.db.scalar(sa.select(Session.id).where(Session.user_id == uid, Session.slug == slug)):
            raise ConflictError(f"you already have a session with slug {slug!r}", field="slug")
        session = Session(
            id=uuid.uuid4(),
            user_id=uid,
            name=name,
            purpose=purpose,
            slug=slug,
            tags=tag_list,
            system_prompt=system_prompt,
            default_model=default_model,
            default_agent=default_agent,
            temperature=temperature,
            max_tokens=max_tokens,
        )
        tx.db.add(session)
        tx.db.flush()
        log_activity(
            tx,
            ActivityAction.SESSION_CREATE,
            resource_type="session",
            resource_id=session.id,
            user_id=uid,
            session_id=session.id,
            details={"name": name, "slug": slug},
        )
        payload = _session_payload(session)
        tx.publish(topics.session(session.id), "session_created", payload)
        tx.publish(topics.user_sessions(uid), "session_created", payload)
    return session


def get_session(session_id: uuid.UUID | str, *, ws: Workspace | None = None) -> Session:
    sid = v.uuid_of(session_id, "session_id")
    with get_workspace(ws).read() as db:
        session = db.get(Session, sid)
    if session is None:
        raise NotFoundError("session", sid)
    return session


def get_session_by_slug(user: User | uuid.UUID | str, slug: str, *, ws: Workspace | None = None) -> Session:
    uid = v.id_of(user, "user")
    with get_workspace(ws).read() as db:
        session = db.scalar(sa.select(Session).where(Session.user_id == uid, Session.slug == slug))
    if session is None:
        raise NotFoundError("session", slug)
    return session


def list_sessions(
    user: User | uuid.UUID | str,
    *,
    status: SessionStatus | str | None = None,
    limit: int = 50,
    after: str | None = None,
    before: str | None = None,
    ws: Workspace | None = None,
) -> Page[Session]:
    """The user's sessions, most recently updated first."""
    stmt = sa.select(Session).where(Session.user_id == v.id_of(user, "user"))
    if status is not None:
        stmt = stmt.where(Session.status == v.choice(SessionStatus, status, "status"))
    with get_workspace(ws).read() as db:
        return paginate(
            db,
            stmt,
            order_by=Session.updated_at,
            id_column=Session.id,
            limit=limit,
            after=after,
            before=before,
        )
