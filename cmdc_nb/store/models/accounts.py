"""users and api_credentials."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

import sqlalchemy as sa
from sqlalchemy.orm import Mapped, mapped_column

from cmdc_nb.store.enums import AuthProvider, CredentialStatus, UserStatus
from cmdc_nb.store.models._base import Base, TimestampMixin, counter, enum_column, fk, json_map
from cmdc_nb.store.types import Email, JSONDoc, TextList

__all__ = ["ApiCredential", "User"]


class User(TimestampMixin, Base):
    __tablename__ = "users"
    _repr_fields = ("email", "status")

    email: Mapped[str] = mapped_column(Email, nullable=False, unique=True)
    name: Mapped[str | None] = mapped_column(sa.String(200))
    avatar_url: Mapped[str | None] = mapped_column(sa.Text)
    auth_provider: Mapped[AuthProvider | None] = mapped_column(enum_column(AuthProvider, "auth_provider"))
    auth_uid: Mapped[str | None] = mapped_column(sa.String(255))
    # A slow, salted hash (scrypt) when a local password is set; never the password itself.
    password_hash: Mapped[str | None] = mapped_column(sa.Text)
    preferences: Mapped[dict[str, Any]] = mapped_column(JSONDoc, nullable=False, default=dict)
    status: Mapped[UserStatus] = mapped_column(
        enum_column(UserStatus, "status"), nullable=False, default=UserStatus.ACTIVE, server_default="active"
    )
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.Index(
            "uq_users_auth_provider_auth_uid",
            "auth_provider",
            "auth_uid",
            unique=True,
            postgresql_where=sa.text("auth_provider IS NOT NULL AND auth_uid IS NOT NULL"),
            sqlite_where=sa.text("auth_provider IS NOT NULL AND auth_uid IS NOT NULL"),
        ),
        sa.Index("ix_users_status", "status"),
    )


class ApiCredential(TimestampMixin, Base):
    """An API key for a provider, encrypted at rest by the workspace vault.

    Only `key_hint` (the last four characters) is ever shown; `encrypted_key` is AES-256-GCM ciphertext
    bound to this row and column, and is left out of every repr.
    """

    __tablename__ = "api_credentials"
    _repr_fields = ("provider", "name", "key_hint", "status")

    user_id: Mapped[uuid.UUID] = mapped_column(fk("users.id", "CASCADE"), nullable=False)
    name: Mapped[str] = mapped_column(sa.String(100), nullable=False)
    provider: Mapped[str] = mapped_column(sa.String(64), nullable=False)
    encrypted_key: Mapped[bytes | None] = mapped_column(sa.LargeBinary)
    key_hint: Mapped[str | None] = mapped_column(sa.String(8))
    status: Mapped[CredentialStatus] = mapped_column(
        enum_column(CredentialStatus, "status"),
        nullable=False,
        default=CredentialStatus.ACTIVE,
        server_default="active",
    )
    last_validated_at: Mapped[dt.datetime | None]
    validation_error: Mapped[str | None] = mapped_column(sa.Text)
    last_used_at: Mapped[dt.datetime | None]
    use_count: Mapped[int] = counter()
    scopes: Mapped[list[str]] = mapped_column(TextList(), nullable=False, default=list)
    expires_at: Mapped[dt.datetime | None]
    meta: Mapped[dict[str, Any]] = json_map()

    __table_args__ = (
        sa.UniqueConstraint("user_id", "provider", "name"),
        sa.Index("ix_api_credentials_user_provider_status", "user_id", "provider", "status"),
    )
