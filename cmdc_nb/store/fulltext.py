"""Full-text search over message content: tsvector + GIN on PostgreSQL, FTS5 on SQLite.

User text is never passed through as query syntax: it is split into words, and every word must match
(stemmed, so "parser" finds "parsing"), on both backends.
"""

from __future__ import annotations

import re
import uuid

import sqlalchemy as sa
from sqlalchemy import orm

__all__ = ["search_message_ids"]

_WORD = re.compile(r"\w+", re.UNICODE)

# Must match the expression of ix_messages_content_fts (migration 0001), or PostgreSQL cannot use it.
_PG_DOCUMENT = "to_tsvector('english', coalesce(m.content, ''))"


def search_message_ids(
    db: orm.Session,
    query: str,
    *,
    session_id: uuid.UUID | None = None,
    user_id: uuid.UUID | None = None,
    limit: int = 50,
) -> list[uuid.UUID]:
    """Ids of messages containing every word of `query`, best match first, optionally only in one
    session or in one user's sessions."""
    words = _WORD.findall(query or "")
    if not words:
        return []
    limit = max(1, min(int(limit), 10_000))
    pg = db.get_bind().dialect.name == "postgresql"
    filters = ""
    params: dict[str, object] = {"limit": limit}
    binds = []
    if session_id:
        filters += " AND m.session_id = :sid" if pg else " AND session_id = :sid"
        params["sid"] = session_id if pg else session_id.hex
        binds.append(sa.bindparam("sid", type_=sa.Uuid()) if pg else sa.bindparam("sid"))
    if user_id:
        column = "m.session_id" if pg else "session_id"
        filters += f" AND {column} IN (SELECT id FROM sessions WHERE user_id = :uid)"
        params["uid"] = user_id if pg else user_id.hex
        binds.append(sa.bindparam("uid", type_=sa.Uuid()) if pg else sa.bindparam("uid"))
    if pg:
        params["q"] = " ".join(words)
        sql = (
            f"SELECT m.id FROM messages m, plainto_tsquery('english', :q) query "
            f"WHERE {_PG_DOCUMENT} @@ query{filters}"
            f" ORDER BY ts_rank({_PG_DOCUMENT}, query) DESC, m.sequence LIMIT :limit"
        )
        return list(db.scalars(sa.text(sql).bindparams(*binds), params))
    params["q"] = " ".join('"' + w.replace('"', '""') + '"' for w in words)
    sql = (
        f"SELECT message_id FROM messages_fts WHERE messages_fts MATCH :q{filters} ORDER BY rank LIMIT :limit"
    )
    return [uuid.UUID(hex_id) for hex_id in db.scalars(sa.text(sql), params)]
