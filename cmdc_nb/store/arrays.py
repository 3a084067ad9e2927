"""Queries over list columns (`TextList`): PostgreSQL arrays, JSON arrays on SQLite."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy import orm

__all__ = ["overlaps"]


def overlaps(db: orm.Session, column: Any, values: Sequence[str]) -> sa.ColumnElement[bool]:
    """Rows whose list `column` shares at least one element with `values` (`&&` on PostgreSQL)."""
    if db.get_bind().dialect.name == "postgresql":
        return column.op("&&")(sa.cast(sa.literal(list(values)), column.type))  # type: ignore[no-any-return]
    each = sa.func.json_each(column).table_valued("value")
    return sa.exists(sa.select(1).select_from(each).where(each.c.value.in_(list(values))))
