"""Keyset pagination with stable, opaque cursors.

The seed's paginator encoded the row id but compared it against the order field; here a cursor holds
both the order value and the id, and pages compare on the pair `(order_value, id)`, so rows sharing an
order value (many messages in one millisecond) are neither skipped nor repeated, and a page costs the
same at row 100,000 as at row 1.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb.errors import InvalidInputError

__all__ = ["MAX_LIMIT", "Page", "decode_cursor", "encode_cursor", "paginate"]

T = TypeVar("T")
MAX_LIMIT = 1000


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of results. Pass `next_cursor` as `after=` (or `prev_cursor` as `before=`)."""

    entries: list[T]
    has_next: bool
    has_previous: bool
    next_cursor: str | None
    prev_cursor: str | None

    def __iter__(self) -> Iterator[T]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> T:
        return self.entries[i]


def _encode_value(v: Any) -> list[Any]:
    if v is None:
        return ["n", None]
    if isinstance(v, dt.datetime):
        return ["t", v.isoformat()]
    if isinstance(v, dt.date):
        return ["d", v.isoformat()]
    if isinstance(v, Decimal):
        return ["m", str(v)]
    if isinstance(v, uuid.UUID):
        return ["u", v.hex]
    if isinstance(v, bool | int | float | str):
        return ["p", v]
    return ["s", str(v)]


def _decode_value(tag: str, raw: Any) -> Any:
    match tag:
        case "n":
            return None
        case "t":
            return dt.datetime.fromisoformat(raw)
        case "d":
            return dt.date.fromisoformat(raw)
        case "m":
            return Decimal(raw)
        case "u":
            return uuid.UUID(raw)
        case "p" | "s":
            return raw
    raise ValueError(tag)


def encode_cursor(order_value: Any, row_id: uuid.UUID) -> str:
    doc = [_encode_value(order_value), row_id.hex]
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[Any, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        (tag, value), row_hex = json.loads(raw)
        return _decode_value(tag, value), uuid.UUID(row_hex)
    except Exception:
        raise InvalidInputError("not a cursor from this listing", field="cursor") from None


def paginate(
    db: orm.Session,
    stmt: sa.Select[Any],
    *,
    order_by: orm.InstrumentedAttribute[Any],
    id_column: orm.InstrumentedAttribute[Any],
    limit: int = 50,
    after: str | None = None,
    before: str | None = None,
    descending: bool = True,
) -> Page[Any]:
    """Run `stmt` (a `select(Model)`) one page at a time, ordered by `(order_by, id)`."""
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"must be an integer from 1 to {MAX_LIMIT}, got {limit!r}", field="limit")
    if after and before:
        raise InvalidInputError("give after= or before=, not both", field="before")
    backwards = before is not None
    cursor = before if backwards else after
    # Walking backwards is walking forwards in the opposite order, then flipping the page.
    desc = descending != backwards
    if cursor is not None:
        value, row_id = decode_cursor(cursor)
        key = sa.tuple_(order_by, id_column)
        bound = sa.tuple_(sa.literal(value, order_by.type), sa.literal(row_id, id_column.type))
        stmt = stmt.where(key < bound if desc else key > bound)
    ordering: Sequence[Any] = (
        (order_by.desc(), id_column.desc()) if desc else (order_by.asc(), id_column.asc())
    )
    rows = list(db.scalars(stmt.order_by(*ordering).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    name, id_name = order_by.key, id_column.key
    first = encode_cursor(getattr(rows[0], name), getattr(rows[0], id_name)) if rows else None
    last = encode_cursor(getattr(rows[-1], name), getattr(rows[-1], id_name)) if rows else None
    if backwards:
        return Page(
            rows, has_next=True, has_previous=more, next_cursor=last, prev_cursor=first if more else None
        )
    return Page(
        rows,
        has_next=more,
        has_previous=cursor is not None,
        next_cursor=last if more else None,
        prev_cursor=first if cursor is not None else None,
    )
