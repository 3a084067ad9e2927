"""agent_calls.prompt_ref: a call's prompt stored as a reference to the previous call's plus what is new.

Rows written before keep `prompt_ref` NULL and their full copy in `prompt_messages`, which
`services.agents.call_request` reads as it always was.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-04
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

_JSON = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")


def upgrade() -> None:
    op.add_column("agent_calls", sa.Column("prompt_ref", _JSON, nullable=True))


def downgrade() -> None:
    # Every call gets its whole prompt (and system prompt, which later calls may share through the
    # reference: `"system": "base"`) back before the reference goes: nothing becomes unreadable.
    from cmdc_nb.store.prompt_refs import full_prompt, full_system

    conn = op.get_bind()
    t = sa.table(
        "agent_calls",
        sa.column("id", sa.Uuid()),
        sa.column("session_id", sa.Uuid()),
        sa.column("prompt_messages", _JSON),
        sa.column("system_prompt", sa.Text()),
        sa.column("prompt_ref", _JSON),
    )
    referred = {r.session_id for r in conn.execute(sa.select(t.c.session_id, t.c.prompt_ref)) if r.prompt_ref}
    for sid in referred:
        calls = conn.execute(sa.select(t).where(t.c.session_id == sid)).all()
        rows = {str(r.id): (list(r.prompt_messages or []), r.prompt_ref) for r in calls}
        systems = {str(r.id): (r.system_prompt, r.prompt_ref) for r in calls}
        for cid, (_tail, ref) in rows.items():
            if ref:
                whole, system = full_prompt(cid, rows), full_system(cid, systems)
                conn.execute(
                    sa.update(t)
                    .where(t.c.id == uuid.UUID(cid))
                    .values(prompt_messages=whole, system_prompt=system)
                )
    op.drop_column("agent_calls", "prompt_ref")
