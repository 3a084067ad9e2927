"""Backfill SQLite's chunk full-text index with chunks written before 0005.

0005 created `chunks_fts` empty, and only the ingestion fills it, so on SQLite an index ingested
before 0005 found nothing by text or hybrid search until it was re-ingested (PostgreSQL's generated
tsvector column covered old rows by itself). This adds every chunk missing from `chunks_fts`, with the
rowid the ingestion gives it; re-running it adds nothing.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-24
"""

from __future__ import annotations

import uuid

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_BATCH = 1000


def upgrade() -> None:
    bind = op.get_bind()
    if bind.dialect.name != "sqlite":
        return
    missing = bind.execute(
        sa.text(
            "SELECT c.id, c.content, c.index_id FROM context_chunks c "
            "WHERE NOT EXISTS (SELECT 1 FROM chunks_fts f WHERE f.chunk_id = c.id)"
        )
    ).all()
    rows = [
        # the rowid is `cmdc_nb.rag.ingest.fts_rowid`: 63 bits of the chunk's id
        {"r": uuid.UUID(hex=cid).int >> 65, "c": content or "", "id": cid, "i": iid}
        for cid, content, iid in missing
    ]
    for i in range(0, len(rows), _BATCH):
        bind.execute(
            sa.text("INSERT INTO chunks_fts (rowid, content, chunk_id, index_id) VALUES (:r, :c, :id, :i)"),
            rows[i : i + _BATCH],
        )


def downgrade() -> None:
    pass  # the rows belong in chunks_fts either way
