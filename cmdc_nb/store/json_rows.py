"""Table rows as JSON, for a PostgreSQL function that inserts them itself (`jsonb_populate_record`).

A stored agent round on PostgreSQL sends each of its two writes as one call of a function of the
schema's (`cmdc_record_call`, `cmdc_end_tool_use`): one statement's worth of the client's Python
instead of nine. The rows it sends must be the rows the statements would have stored, so each is bound
exactly as `store.prepared` binds it — Python-side defaults filled in, every value through its type's
bind processor (UTC datetimes, money, enums, UUIDs, JSON) — and only then written as JSON text that
PostgreSQL reads back into the same values: a UUID, a datetime or a date as its ISO text, an exact
amount as its decimal text, a JSON column as the document itself.
"""

from __future__ import annotations

import datetime as dt
import functools
import uuid
from collections.abc import Collection, Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from cmdc_nb.store.prepared import Prepared

__all__ = ["json_row"]


def json_row(
    insert: Prepared,
    table: sa.Table,
    dialect: sa.Dialect,
    row: Mapping[str, Any],
    *,
    json_null: Collection[str] = (),
) -> dict[str, Any]:
    """`row` as `insert` (an INSERT into `table`) would bind it, each value made JSON.

    Every column the INSERT leaves out must have no server default: the function's
    `jsonb_populate_record` would make it NULL, not the default. A JSON column holding None (stored
    as JSON `null` by SQLAlchemy) is refused unless named in `json_null`, whose columns the function
    must take from the JSON itself, since `jsonb_populate_record` reads a JSON null as SQL NULL."""
    bound = insert.bound(dialect, row)
    _check_complete(table, frozenset(bound))
    wrapped = _jsonb_class()
    out: dict[str, Any] = {}
    for name, value in bound.items():
        if type(value) is wrapped:
            value = value.obj
            if value is None and name not in json_null:
                raise TypeError(f"{table.name}.{name}: a JSON null would be stored as SQL NULL")
            out[name] = value
        else:
            out[name] = _plain(value)
    return out


@functools.cache
def _jsonb_class() -> Any:
    """psycopg's JSONB wrapper, the bound form of a JSON column (imported only when first needed)."""
    from psycopg.types.json import Jsonb

    return Jsonb


@functools.cache
def _check_complete(table: sa.Table, names: frozenset[str]) -> None:
    left = [c.name for c in table.c if c.name not in names and c.server_default is not None]
    if left:
        raise TypeError(f"{table.name}: no value for {left}, which have server defaults")


def _plain(value: Any) -> Any:
    kind = type(value)
    if value is None or kind is str or kind is int or kind is bool or kind is float:
        return value
    if kind is uuid.UUID:
        return str(value)
    if kind is dt.datetime or kind is dt.date:
        return value.isoformat()
    if kind is Decimal:
        return str(value)
    if kind is list or kind is tuple:
        return [_plain(v) for v in value]
    raise TypeError(f"no JSON form for a bound {kind.__name__}")
