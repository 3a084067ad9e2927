"""RAG chunks: one row per chunk of each document, full-text search over chunk text.

The seed made `(index_id, content_hash)` unique, so two documents sharing a paragraph (a licence
header) shared one chunk row, and deleting or changing either took it away from the other. Chunks now
belong to one document (`unique(document_id, chunk_index)`); identical text is de-duplicated where it
costs — its embedding is computed once and reused — through a plain index on `(index_id, content_hash)`.

Full text: a stored generated `content_tsv` column with a GIN index on PostgreSQL; an FTS5 table on SQLite
whose rowids are derived from the chunk ids and maintained by the ingestion code (a trigger would have
to scan the FTS table to delete by chunk id).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("context_chunks", schema=None) as batch_op:
        batch_op.drop_constraint("uq_context_chunks_index_id_content_hash", type_="unique")
        batch_op.create_unique_constraint(
            "uq_context_chunks_document_id_chunk_index", ["document_id", "chunk_index"]
        )
        batch_op.create_index(
            "ix_context_chunks_index_id_content_hash", ["index_id", "content_hash"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        # Stored, so ranking a broad OR query reads each row's vector instead of re-parsing its text.
        op.execute(
            "ALTER TABLE context_chunks ADD COLUMN content_tsv tsvector "
            "GENERATED ALWAYS AS (to_tsvector('english', content)) STORED"
        )
        op.execute("CREATE INDEX ix_context_chunks_content_fts ON context_chunks USING gin (content_tsv)")
    else:
        op.execute(
            "CREATE VIRTUAL TABLE chunks_fts USING fts5("
            "content, chunk_id UNINDEXED, index_id UNINDEXED, tokenize='porter unicode61')"
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP INDEX IF EXISTS ix_context_chunks_content_fts")
        op.execute("ALTER TABLE context_chunks DROP COLUMN IF EXISTS content_tsv")
    else:
        op.execute("DROP TABLE IF EXISTS chunks_fts")
    with op.batch_alter_table("context_chunks", schema=None) as batch_op:
        batch_op.drop_index("ix_context_chunks_index_id_content_hash")
        batch_op.drop_constraint("uq_context_chunks_document_id_chunk_index", type_="unique")
        batch_op.create_unique_constraint(
            "uq_context_chunks_index_id_content_hash", ["index_id", "content_hash"]
        )
