"""The declarative base, shared column helpers and the naming convention for constraints."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Any, ClassVar

import sqlalchemy as sa
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from cmdc_nb.store.types import JSONDoc, Money, UTCDateTime
from cmdc_nb.store.values import utcnow

__all__ = ["Base", "TimestampMixin", "counter", "enum_column", "fk", "json_map", "money"]

# Stable constraint names let migrations (and SQLite's copy-and-move batch mode) find them again.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = sa.MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map = {  # noqa: RUF012 (SQLAlchemy reads it as a class attribute)
        dt.datetime: UTCDateTime(),
        Decimal: Money(),
        dict[str, Any]: JSONDoc,
        uuid.UUID: sa.Uuid(),
    }

    # Reprs name the row, never its contents: some columns hold secrets or large text.
    _repr_fields: ClassVar[tuple[str, ...]] = ()

    def __repr__(self) -> str:
        fields = ", ".join(f"{f}={getattr(self, f, None)!r}" for f in ("id", *self._repr_fields))
        return f"<{type(self).__name__} {fields}>"


class TimestampMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    inserted_at: Mapped[dt.datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[dt.datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def enum_column(enum: type[StrEnum], name: str) -> sa.Enum:
    """A string column limited to `enum`'s values by a CHECK constraint (no native PG enum type,
    so adding a value later is a plain constraint swap on both backends)."""
    return sa.Enum(
        enum,
        name=name,
        native_enum=False,
        create_constraint=True,
        length=max(len(m.value) for m in enum),
        values_callable=lambda e: [m.value for m in e],
        validate_strings=True,
    )


def fk(target: str, ondelete: str | None = None) -> sa.ForeignKey:
    return sa.ForeignKey(target, ondelete=ondelete)


def money(*, nullable: bool = False) -> Mapped[Any]:
    if nullable:
        return mapped_column(Money(), nullable=True)
    return mapped_column(Money(), nullable=False, default=Decimal(0), server_default=sa.text("0"))


def counter(*, big: bool = False) -> Mapped[Any]:
    return mapped_column(
        sa.BigInteger() if big else sa.Integer(), nullable=False, default=0, server_default=sa.text("0")
    )


def json_map() -> Mapped[Any]:
    return mapped_column("metadata", JSONDoc, nullable=False, default=dict, server_default=sa.text("'{}'"))
