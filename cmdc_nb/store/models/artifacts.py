"""artifacts: versioned, content-addressed outputs."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import ArtifactSourceType, ArtifactType, RetentionPolicy, StorageBackend, Visibility
from cmdc_nb.store.models._base import Base, TimestampMixin, enum_column, fk, json_map
from cmdc_nb.store.types import TextList, UUIDList

__all__ = ["Artifact"]


class Artifact(TimestampMixin, Base):
    __tablename__ = "artifacts"
    _repr_fields = ("name", "version", "is_latest")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    session_id: Mapped[uuid.UUID | None] = mapped_column(fk("sessions.id", "SET NULL"))
    name: Mapped[str] = mapped_column(sa.String(300), nullable=False)
    description: Mapped[str | None] = mapped_column(sa.Text)
    artifact_type: Mapped[ArtifactType] = mapped_column(
        enum_column(ArtifactType, "artifact_type"), nullable=False
    )
    mime_type: Mapped[str | None] = mapped_column(sa.String(100))
    storage_backend: Mapped[StorageBackend] = mapped_column(
        enum_column(StorageBackend, "storage_backend"), nullable=False
    )
    storage_path: Mapped[str | None] = mapped_column(sa.Text)
    storage_key: Mapped[str | None] = mapped_column(sa.Text)
    inline_content: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    size_bytes: Mapped[int | None] = mapped_column(sa.BigInteger)
    checksum: Mapped[str | None] = mapped_column(sa.String(64))
    original_filename: Mapped[str | None] = mapped_column(sa.Text)
    language: Mapped[str | None] = mapped_column(sa.String(32))
    line_count: Mapped[int | None] = mapped_column(sa.Integer)
    source_type: Mapped[ArtifactSourceType | None] = mapped_column(
        enum_column(ArtifactSourceType, "source_type")
    )
    source_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    version: Mapped[int] = mapped_column(sa.Integer, nullable=False, default=1, server_default="1")
    # Every version of one artifact shares the id of its first version, so "exactly one latest" is a
    # unique partial index rather than a hope.
    lineage_id: Mapped[uuid.UUID | None] = mapped_column(sa.Uuid)
    previous_version_id: Mapped[uuid.UUID | None] = mapped_column(fk("artifacts.id", "SET NULL"))
    is_latest: Mapped[bool] = mapped_column(
        sa.Boolean, nullable=False, default=True, server_default=sa.true()
    )
    git_commit: Mapped[str | None] = mapped_column(sa.String(64))
    git_repo: Mapped[str | None] = mapped_column(sa.Text)
    git_path: Mapped[str | None] = mapped_column(sa.Text)
    diff_base_artifact_id: Mapped[uuid.UUID | None] = mapped_column(fk("artifacts.id", "SET NULL"))
    diff_content: Mapped[str | None] = mapped_column(sa.Text)
    additions: Mapped[int | None] = mapped_column(sa.Integer)
    deletions: Mapped[int | None] = mapped_column(sa.Integer)
    visibility: Mapped[Visibility] = mapped_column(
        enum_column(Visibility, "visibility"),
        nullable=False,
        default=Visibility.PRIVATE,
        server_default="private",
    )
    shared_with_user_ids: Mapped[list[uuid.UUID]] = mapped_column(UUIDList(), nullable=False, default=list)
    expires_at: Mapped[dt.datetime | None]
    retention_policy: Mapped[RetentionPolicy | None] = mapped_column(
        enum_column(RetentionPolicy, "retention_policy")
    )
    tags: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.CheckConstraint(
            "(storage_backend != 'inline' OR inline_content IS NOT NULL)"
            " AND (storage_backend != 'local' OR storage_path IS NOT NULL)"
            " AND (storage_backend != 's3' OR storage_key IS NOT NULL)",
            name="storage",
        ),
        sa.CheckConstraint("version >= 1", name="version"),
        sa.Index(
            "uq_artifacts_lineage_latest",
            "lineage_id",
            unique=True,
            postgresql_where=sa.text("is_latest"),
            sqlite_where=sa.text("is_latest"),
        ),
        sa.Index("ix_artifacts_user_id_inserted_at", "user_id", "inserted_at"),
        sa.Index("ix_artifacts_session_id", "session_id"),
        sa.Index("ix_artifacts_previous_version_id", "previous_version_id"),
        sa.Index("ix_artifacts_checksum", "checksum"),
    )
