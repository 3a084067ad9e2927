"""A call's prompt may refer to the session's messages instead of copying them.

A stored round's prompt was its base call's plus a copy of what it added: the reply the base got and
the tool results that answered it, both already stored as messages (about 200 of a round's 5,000
bytes, for a one-line tool result; more as results grow). Now `prompt_ref` may say
`"messages": [first, last]`: what the call added is the session's messages with those sequences, as
sent (`store.prompt_refs.as_sent`), and `prompt_messages` is empty. The schema does not change; the
revision marks that older code could not read such a reference. A downgrade writes the copies back
(and drops the key), so every call reads as before.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-05
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0014"
down_revision = "0013"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    pass  # nothing stored before refers to messages; new rows may


def downgrade() -> None:
    from cmdc_nb.store.prompt_refs import as_sent, new_part

    conn = op.get_bind()
    calls = sa.table(
        "agent_calls",
        sa.column("id", sa.Uuid()),
        sa.column("session_id", sa.Uuid()),
        sa.column("prompt_messages", _JSON),
        sa.column("prompt_ref", _JSON),
    )
    messages = sa.table(
        "messages",
        sa.column("session_id", sa.Uuid()),
        sa.column("sequence", sa.Integer()),
        sa.column("role", sa.String()),
        sa.column("content", sa.Text()),
        sa.column("content_blocks", _JSON),
        sa.column("metadata", _JSON),
    )
    referring: dict[Any, list[Any]] = {}  # by session: each session's messages are read once
    for r in conn.execute(sa.select(calls.c.id, calls.c.session_id, calls.c.prompt_ref)):
        if isinstance(r.prompt_ref, dict) and r.prompt_ref.get("messages") is not None:
            referring.setdefault(r.session_id, []).append(r)
    for sid, rows in referring.items():
        sent = {
            m.sequence: as_sent(m.role, m.content, m.content_blocks, m.metadata)
            for m in conn.execute(sa.select(messages).where(messages.c.session_id == sid))
        }
        for r in rows:
            # what it refers to, written back (a damaged reference stops the downgrade, naming it)
            copy = new_part(str(r.id), r.prompt_ref, sent)
            ref = {k: v for k, v in r.prompt_ref.items() if k != "messages"}
            conn.execute(
                sa.update(calls)
                .where(calls.c.id == uuid.UUID(str(r.id)))
                .values(prompt_messages=copy, prompt_ref=ref)
            )
