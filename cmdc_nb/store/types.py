"""Column types that mean the same thing on SQLite and on PostgreSQL.

Each type picks the best native form per dialect and hands Python the same value on both:

| type         | PostgreSQL              | SQLite                          | Python                       |
|--------------|-------------------------|---------------------------------|------------------------------|
| UTCDateTime  | timestamptz             | ISO text in UTC                 | aware `datetime` in UTC      |
| Money        | numeric(38, 12)         | integer picodollars             | `Decimal` USD, exact to 1e-12 |
| JSONDoc      | jsonb                   | JSON text                       | `dict` / `list`              |
| TextList     | text[]                  | JSON array                      | `list[str]`                  |
| UUIDList     | uuid[]                  | JSON array of hex strings       | `list[uuid.UUID]`            |
| Email        | citext                  | text COLLATE NOCASE             | `str`                        |
| Embedding    | vector (pgvector)       | float32 blob                    | `numpy.ndarray` (float32)    |

Money is never a float: SQLite has no decimal type, so it stores whole picodollars (10^-12 USD) in an
integer, whose sums are exact; a $0.0000135 call is 13,500,000 picodollars. The SQLite form caps one
value (and one SUM) at about $9.2 million, far above any per-row or per-day figure this toolkit keeps.
"""

from __future__ import annotations

import datetime as dt
import struct
import uuid
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator, TypeEngine

from cmdc_nb.errors import InvalidInputError
from cmdc_nb.store.values import PICOS_PER_USD, tidy, to_money

__all__ = [
    "Email",
    "Embedding",
    "JSONDoc",
    "Money",
    "TextList",
    "UTCDateTime",
    "UUIDList",
]


class UTCDateTime(TypeDecorator[dt.datetime]):
    """Aware UTC datetimes on both backends. Naive input is taken to be UTC already."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if not isinstance(value, dt.datetime):
            raise InvalidInputError(f"expected a datetime, got {type(value).__name__}")
        aware = value.replace(tzinfo=dt.UTC) if value.tzinfo is None else value.astimezone(dt.UTC)
        # SQLite keeps text; UTC without an offset sorts lexically in time order.
        return aware.replace(tzinfo=None) if dialect.name == "sqlite" else aware

    def bind_processor(self, dialect: Dialect) -> Any:
        """On SQLite, `process_bind_param` and the dialect's own text format in one step: the same text
        (`YYYY-MM-DD HH:MM:SS.ffffff`, microseconds always written) at a fifth of the cost of the two
        processors chained; every row write stores two or three of these."""
        if dialect.name != "sqlite":
            return super().bind_processor(dialect)
        utc = dt.UTC

        def process(value: Any) -> str | None:
            if value is None:
                return None
            if not isinstance(value, dt.datetime):
                raise InvalidInputError(f"expected a datetime, got {type(value).__name__}")
            stamp: dt.datetime = value
            if stamp.tzinfo is None:  # naive: UTC already
                return stamp.isoformat(" ", "microseconds")
            if stamp.tzinfo is not utc:
                stamp = stamp.astimezone(utc)
            return stamp.isoformat(" ", "microseconds")[:26]  # less its "+00:00" (years have 4 digits)

        return process

    def process_result_value(self, value: dt.datetime | None, dialect: Dialect) -> dt.datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=dt.UTC)
        return value.astimezone(dt.UTC)


class Money(TypeDecorator[Decimal]):
    """Exact USD amounts: numeric on PostgreSQL, integer picodollars on SQLite."""

    impl = sa.Numeric(38, 12)
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.BigInteger())
        return dialect.type_descriptor(sa.Numeric(38, 12, asdecimal=True))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        d = to_money(value)
        if dialect.name == "sqlite":
            return int(d * PICOS_PER_USD)
        return d

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        if dialect.name == "sqlite":
            return tidy(Decimal(int(value)).scaleb(-12))
        return tidy(Decimal(value))

    @property
    def python_type(self) -> type[Decimal]:
        return Decimal


JSONDoc: TypeEngine[Any] = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")
"""JSON documents (JSONB on PostgreSQL)."""


class TextList(TypeDecorator[list[str]]):
    """A list of strings: text[] on PostgreSQL (GIN-indexable, `&&` overlap), JSON on SQLite."""

    impl = sa.JSON()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.Text()))
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value: Sequence[str] | None, dialect: Dialect) -> list[str] | None:
        if value is None:
            return None
        if isinstance(value, str) or not all(isinstance(v, str) for v in value):
            raise InvalidInputError(f"expected a list of strings, got {value!r}")
        return list(value)

    def process_result_value(self, value: Any, dialect: Dialect) -> list[str] | None:
        return None if value is None else list(value)


class UUIDList(TypeDecorator[list[uuid.UUID]]):
    """A list of UUIDs: uuid[] on PostgreSQL, a JSON array of hex strings on SQLite."""

    impl = sa.JSON()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.Uuid()))
        return dialect.type_descriptor(sa.JSON())

    def process_bind_param(self, value: Sequence[uuid.UUID | str] | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        try:
            ids = [v if isinstance(v, uuid.UUID) else uuid.UUID(str(v)) for v in value]
        except (ValueError, TypeError) as exc:
            raise InvalidInputError(f"expected a list of UUIDs, got {value!r}") from exc
        return ids if dialect.name == "postgresql" else [i.hex for i in ids]

    def process_result_value(self, value: Any, dialect: Dialect) -> list[uuid.UUID] | None:
        if value is None:
            return None
        return [v if isinstance(v, uuid.UUID) else uuid.UUID(v) for v in value]


Email: TypeEngine[str] = (
    sa.String(254)
    .with_variant(sa.String(254, collation="NOCASE"), "sqlite")
    .with_variant(postgresql.CITEXT(), "postgresql")
)
"""Case-insensitive text for e-mail addresses (citext on PostgreSQL, NOCASE collation on SQLite)."""


class Embedding(TypeDecorator[Any]):
    """A vector whose dimension is set per RAG index, not per column.

    PostgreSQL: pgvector's `vector` with no fixed dimension; each index gets its own partial HNSW index on
    `embedding::vector(n)`. SQLite: little-endian float32 bytes, which numpy reads without a copy.
    """

    impl = sa.LargeBinary()
    cache_ok = True

    def load_dialect_impl(self, dialect: Dialect) -> TypeEngine[Any]:
        if dialect.name == "postgresql":
            from pgvector.sqlalchemy import VECTOR

            return dialect.type_descriptor(VECTOR())
        return dialect.type_descriptor(sa.LargeBinary())

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        if type(value).__name__ == "ndarray":  # the fast path ingestion takes: no per-float Python work
            arr = value.astype("<f4", copy=False).reshape(-1)
            if arr.size == 0:
                raise InvalidInputError("an embedding needs at least one dimension")
            return arr if dialect.name == "postgresql" else arr.tobytes()
        floats = [float(x) for x in value]
        if not floats:
            raise InvalidInputError("an embedding needs at least one dimension")
        if dialect.name == "postgresql":
            return floats
        return struct.pack(f"<{len(floats)}f", *floats)

    def process_result_value(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        import numpy as np

        if dialect.name == "postgresql":
            return np.asarray(value, dtype=np.float32)
        return np.frombuffer(value, dtype="<f4")
