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


def encode_cursor(order_values: Sequence[Any], row_id: uuid.UUID) -> str:
    doc = [[_encode_value(v) for v in order_values], row_id.hex]
    return base64.urlsafe_b64encode(json.dumps(doc, separators=(",", ":")).encode()).decode().rstrip("=")


def decode_cursor(cursor: str, *, width: int) -> tuple[list[Any], uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        values, row_hex = json.loads(raw)
        if len(values) != width:
            raise ValueError("width")
        return [_decode_value(tag, value) for tag, value in values], uuid.UUID(row_hex)
    except Exception:
        raise InvalidInputError("not a cursor from this listing", field="cursor") from None


OrderSpec = orm.InstrumentedAttribute[Any] | Sequence[tuple[orm.InstrumentedAttribute[Any], bool]]


def _after(keys: Sequence[tuple[Any, bool]], values: Sequence[Any]) -> sa.ColumnElement[bool]:
    """Rows strictly after `values` in the lexicographic order `keys` ((column, descending) pairs).

    Written out as `a > va OR (a = va AND b > vb) OR …` rather than a row comparison, because the
    columns may run in different directions (a priority queue: rank descending, then age ascending).
    """
    clauses: list[sa.ColumnElement[bool]] = []
    for i, (col, desc) in enumerate(keys):
        bound = sa.literal(values[i], col.type)
        step = col < bound if desc else col > bound
        equal = [keys[j][0] == sa.literal(values[j], keys[j][0].type) for j in range(i)]
        clauses.append(sa.and_(*equal, step))
    return sa.or_(*clauses)


def paginate(
    db: orm.Session,
    stmt: sa.Select[Any],
    *,
    order_by: OrderSpec,
    id_column: orm.InstrumentedAttribute[Any],
    limit: int = 50,
    after: str | None = None,
    before: str | None = None,
    descending: bool = True,
) -> Page[Any]:
    """Run `stmt` (a `select(Model)`) one page at a time.

    `order_by` is one column (sorted `descending` or not) or a sequence of `(column, descending)`
    pairs; the row id always breaks ties, in the direction of the last key.
    """
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidInputError(f"must be an integer from 1 to {MAX_LIMIT}, got {limit!r}", field="limit")
    if after and before:
        raise InvalidInputError("give after= or before=, not both", field="before")
    if isinstance(order_by, orm.InstrumentedAttribute):
        order: list[tuple[Any, bool]] = [(order_by, descending)]
    else:
        order = list(order_by)
    order.append((id_column, order[-1][1]))
    backwards = before is not None
    cursor = before if backwards else after
    # Walking backwards is walking forwards in the opposite order, then flipping the page.
    keys = [(col, desc != backwards) for col, desc in order]
    if cursor is not None:
        values, row_id = decode_cursor(cursor, width=len(order) - 1)
        stmt = stmt.where(_after(keys, [*values, row_id]))
    ordering = [col.desc() if desc else col.asc() for col, desc in keys]
    rows = list(db.scalars(stmt.order_by(*ordering).limit(limit + 1)))
    more = len(rows) > limit
    rows = rows[:limit]
    if backwards:
        rows.reverse()
    names = [col.key for col, _ in order[:-1]]

    def cursor_of(row: Any) -> str:
        return encode_cursor([getattr(row, n) for n in names], getattr(row, id_column.key))

    first = cursor_of(rows[0]) if rows else None
    last = cursor_of(rows[-1]) if rows else None
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
