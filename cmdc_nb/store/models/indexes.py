"""indexes (RAG), context_documents and context_chunks."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import ChunkStrategy, DocumentSourceType, IndexSourceType, IndexStatus
from cmdc_nb.store.models._base import Base, TimestampMixin, counter, enum_column, fk, json_map, money
from cmdc_nb.store.types import Embedding, JSONDoc, TextList

__all__ = ["ContextChunk", "ContextDocument", "Index"]


class Index(TimestampMixin, Base):
    __tablename__ = "indexes"
    _repr_fields = ("slug", "status")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    slug: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    status: Mapped[IndexStatus] = mapped_column(
        enum_column(IndexStatus, "status"),
        nullable=False,
        default=IndexStatus.CREATING,
        server_default="creating",
    )
    source_type: Mapped[IndexSourceType] = mapped_column(
        enum_column(IndexSourceType, "source_type"), nullable=False
    )
    source_config: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    chunk_strategy: Mapped[ChunkStrategy] = mapped_column(
        enum_column(ChunkStrategy, "chunk_strategy"),
        nullable=False,
        default=ChunkStrategy.RECURSIVE,
        server_default="recursive",
    )
    chunk_config: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    embedding_provider: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    embedding_model: Mapped[str] = mapped_column(sa.String(200), nullable=False)
    embedding_dimensions: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    storage_backend: Mapped[str] = mapped_column(
        sa.String(32), nullable=False, default="native", server_default="native"
    )
    storage_config: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    document_count: Mapped[int] = counter()
    chunk_count: Mapped[int] = counter()
    total_tokens: Mapped[int] = counter(big=True)
    embedding_cost_usd: Mapped[Decimal] = money()
    last_indexed_at: Mapped[dt.datetime | None]
    indexing_started_at: Mapped[dt.datetime | None]
    indexing_duration_ms: Mapped[int | None] = mapped_column(sa.BigInteger)
    last_error: Mapped[str | None] = mapped_column(sa.Text)
    auto_reindex: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=False, server_default=sa.false()
    )
    reindex_schedule: Mapped[str | None] = mapped_column(sa.String(100))
    last_reindex_at: Mapped[dt.datetime | None]
    tracked_commit: Mapped[str | None] = mapped_column(sa.String(64))
    git_config: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    tags: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.UniqueConstraint("user_id", "slug"),
        sa.CheckConstraint("embedding_dimensions > 0 AND embedding_dimensions <= 16000", name="dimensions"),
        sa.Index("ix_indexes_status", "status"),
    )


class ContextDocument(TimestampMixin, Base):
    __tablename__ = "context_documents"
    _repr_fields = ("uri", "content_hash")

    index_id: Mapped[uuid.UUID] = mapped_column(fk("indexes.id", "CASCADE"), nullable=False)
    uri: Mapped[str] = mapped_column(sa.Text, nullable=False)
    title: Mapped[str | None] = mapped_column(sa.Text)
    source_type: Mapped[DocumentSourceType] = mapped_column(
        enum_column(DocumentSourceType, "source_type"), nullable=False
    )
    content_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    mime_type: Mapped[str | None] = mapped_column(sa.String(100))
    language: Mapped[str | None] = mapped_column(sa.String(32))
    encoding: Mapped[str | None] = mapped_column(sa.String(32))
    git_commit: Mapped[str | None] = mapped_column(sa.String(64))
    git_branch: Mapped[str | None] = mapped_column(sa.String(200))
    chunked_at: Mapped[dt.datetime | None]
    chunk_count: Mapped[int] = counter()
    total_tokens: Mapped[int] = counter()
    processing_error: Mapped[str | None] = mapped_column(sa.Text)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.UniqueConstraint("index_id", "uri"),
        sa.Index("ix_context_documents_content_hash", "content_hash"),
    )


class ContextChunk(TimestampMixin, Base):
    """A chunk of a document and its embedding (dimension fixed by the chunk's index)."""

    __tablename__ = "context_chunks"
    _repr_fields = ("source_uri", "chunk_index")

    index_id: Mapped[uuid.UUID] = mapped_column(fk("indexes.id", "CASCADE"), nullable=False)
    # The seed linked chunks to documents only through (index_id, source_uri); a real key lets a changed
    # document's chunks be replaced in the same transaction as the document row.
    document_id: Mapped[uuid.UUID | None] = mapped_column(fk("context_documents.id", "CASCADE"))
    source_uri: Mapped[str] = mapped_column(sa.Text, nullable=False)
    source_type: Mapped[DocumentSourceType] = mapped_column(
        enum_column(DocumentSourceType, "source_type"), nullable=False
    )
    source_metadata: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)
    content: Mapped[str] = mapped_column(sa.Text, nullable=False)
    content_hash: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    chunk_index: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    start_offset: Mapped[int | None] = mapped_column(sa.Integer)
    end_offset: Mapped[int | None] = mapped_column(sa.Integer)
    start_line: Mapped[int | None] = mapped_column(sa.Integer)
    end_line: Mapped[int | None] = mapped_column(sa.Integer)
    token_count: Mapped[int] = mapped_column(sa.Integer, nullable=False)
    embedding: Mapped[Any | None] = mapped_column(Embedding())
    embedding_model: Mapped[str | None] = mapped_column(sa.String(200))
    embedded_at: Mapped[dt.datetime | None]
    language: Mapped[str | None] = mapped_column(sa.String(32))
    code_context: Mapped[dict[str, Any] | None] = mapped_column(JSONDoc)

    __table_args__ = (
        # One row per chunk of a document; identical text shares its embedding, not its row (0005).
        sa.UniqueConstraint("document_id", "chunk_index"),
        sa.Index("ix_context_chunks_index_id_content_hash", "index_id", "content_hash"),
        sa.CheckConstraint("chunk_index >= 0", name="chunk_index"),
        sa.CheckConstraint("token_count > 0", name="token_count"),
        sa.Index("ix_context_chunks_index_id_source_uri", "index_id", "source_uri"),
        sa.Index("ix_context_chunks_document_id", "document_id"),
        sa.Index("ix_context_chunks_language", "language"),
    )
