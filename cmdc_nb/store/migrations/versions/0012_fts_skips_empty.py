"""SQLite's message search indexes only messages with text.

An assistant message that only asks for tools, and many a tool result, have no text: each still got a
row in `messages_fts` (its empty content, the message and session ids) and its index entries, about a
tenth of a stored agent round's bytes for nothing a search can find. The insert trigger now skips empty
content; the update trigger removes the message's row and adds it back only with text (so a message
edited from empty to text becomes findable); the rows already there for empty messages go.
PostgreSQL searches an expression index over `messages` itself and has nothing to change.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-05
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

_INSERT = (
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages "
    "WHEN coalesce(new.content, '') <> '' BEGIN "
    "INSERT INTO messages_fts (content, message_id, session_id) "
    "VALUES (new.content, new.id, new.session_id); END"
)
_UPDATE = (
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
    "DELETE FROM messages_fts WHERE message_id = old.id; "
    "INSERT INTO messages_fts (content, message_id, session_id) "
    "SELECT new.content, new.id, new.session_id WHERE coalesce(new.content, '') <> ''; END"
)
# as 0001 made them
_OLD_INSERT = (
    "CREATE TRIGGER messages_fts_insert AFTER INSERT ON messages BEGIN "
    "INSERT INTO messages_fts (content, message_id, session_id) "
    "VALUES (coalesce(new.content, ''), new.id, new.session_id); END"
)
_OLD_UPDATE = (
    "CREATE TRIGGER messages_fts_update AFTER UPDATE OF content ON messages BEGIN "
    "UPDATE messages_fts SET content = coalesce(new.content, '') WHERE message_id = old.id; END"
)


def upgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS messages_fts_insert")
    op.execute("DROP TRIGGER IF EXISTS messages_fts_update")
    op.execute(_INSERT)
    op.execute(_UPDATE)
    op.execute("DELETE FROM messages_fts WHERE content = ''")


def downgrade() -> None:
    if op.get_bind().dialect.name != "sqlite":
        return
    op.execute("DROP TRIGGER IF EXISTS messages_fts_insert")
    op.execute("DROP TRIGGER IF EXISTS messages_fts_update")
    op.execute(_OLD_INSERT)
    op.execute(_OLD_UPDATE)
    op.execute(
        "INSERT INTO messages_fts (content, message_id, session_id) "
        "SELECT '', id, session_id FROM messages WHERE coalesce(content, '') = ''"
    )
