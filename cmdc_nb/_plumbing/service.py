"""Small helpers every domain service shares: load-or-NotFound, row locks, status transitions."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping
from enum import Enum, StrEnum
from typing import Any, Final, Literal, TypeVar

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb.errors import InvalidStateError, NotFoundError

__all__ = ["UNSET", "Unset", "check_transition", "fetch", "free_slug", "increment", "jsonable"]

M = TypeVar("M")
S = TypeVar("S", bound=StrEnum)


class Unset(Enum):
    """Marks an argument that was not given, so `None` can mean "clear this field"."""

    UNSET = "UNSET"

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = Unset.UNSET


def fetch(
    db: orm.Session, model: type[M], obj: Any, kind: str, *, lock: bool | Literal["no_key"] = False
) -> M:
    """The current row for `obj` (a model instance or an id), re-read inside this transaction.

    Services never trust the caller's copy: it may be stale. With `lock`, PostgreSQL takes a row lock
    (`SELECT … FOR UPDATE`) so concurrent status changes queue up; SQLite's `BEGIN IMMEDIATE` has
    already serialised writers. `lock="no_key"` takes `FOR NO KEY UPDATE`, for a change that leaves the
    row's key alone: it does not wait on the KEY SHARE locks that rows referencing it hold (writers of
    those, locking it FOR UPDATE in turn, deadlock).
    """
    row_id = v.id_of(obj, f"{kind}_id")
    stmt = sa.select(model).where(model.id == row_id)  # type: ignore[attr-defined]
    if lock:
        stmt = stmt.with_for_update(key_share=lock == "no_key")
    row = db.execute(stmt.execution_options(populate_existing=True)).scalar_one_or_none()
    if row is None:
        raise NotFoundError(kind, row_id)
    if db.info.get(access.INFO_KEY) is not None:
        access.check_row(db, row, kind, write=bool(lock))
    return row


def free_slug(db: orm.Session, model: Any, user_id: Any, base: str) -> str:
    """`base`, or `base-2`, `base-3`, … — the first slug `user_id` does not use yet in `model`'s table."""
    taken = set(
        db.scalars(sa.select(model.slug).where(model.user_id == user_id, model.slug.like(f"{base}%")))
    )
    if base not in taken:
        return base
    n = 2
    while f"{base}-{n}" in taken:
        n += 1
    return f"{base}-{n}"


def check_transition(kind: str, table: Mapping[S, frozenset[S]], current: S, target: S) -> None:
    """Raise InvalidStateError unless `table` allows `current → target`."""
    allowed = table.get(current, frozenset())
    if target not in allowed:
        raise InvalidStateError(kind, current.value, target.value, allowed=sorted(s.value for s in allowed))


def increment(model: Any, row_id: uuid.UUID, /, **deltas: Any) -> sa.Update:
    """`UPDATE … SET col = col + delta` for each non-zero delta: atomic, never read-modify-write."""
    values = {name: getattr(model, name) + d for name, d in deltas.items() if d}
    return sa.update(model).where(model.id == row_id).values(**values)


def jsonable(value: Any) -> Any:
    """`value` with UUIDs, datetimes and Decimals turned into strings, for events and exports."""
    if isinstance(value, Mapping):
        return {str(k): jsonable(x) for k, x in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(x) for x in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    if isinstance(value, StrEnum):
        return value.value
    if type(value).__name__ == "Decimal":
        return str(value)
    return value
