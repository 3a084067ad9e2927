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
    db: orm.Session, query: str, *, session_id: uuid.UUID | None = None, limit: int = 50
) -> list[uuid.UUID]:
    """Ids of messages containing every word of `query`, best match first."""
    words = _WORD.findall(query or "")
    if not words:
        return []
    limit = max(1, min(int(limit), 10_000))
    if db.get_bind().dialect.name == "postgresql":
        sql = (
            f"SELECT m.id FROM messages m, plainto_tsquery('english', :q) query "
            f"WHERE {_PG_DOCUMENT} @@ query"
            + (" AND m.session_id = :sid" if session_id else "")
            + f" ORDER BY ts_rank({_PG_DOCUMENT}, query) DESC, m.sequence LIMIT :limit"
        )
        params: dict[str, object] = {"q": " ".join(words), "limit": limit}
        stmt = sa.text(sql)
        if session_id:
            params["sid"] = session_id
            stmt = stmt.bindparams(sa.bindparam("sid", type_=sa.Uuid()))
        return list(db.scalars(stmt, params))
    match = " ".join('"' + w.replace('"', '""') + '"' for w in words)
    sql = "SELECT message_id FROM messages_fts WHERE messages_fts MATCH :q"
    params = {"q": match, "limit": limit}
    if session_id:
        sql += " AND session_id = :sid"
        params["sid"] = session_id.hex
    sql += " ORDER BY rank LIMIT :limit"
    return [uuid.UUID(hex_id) for hex_id in db.scalars(sa.text(sql), params)]
