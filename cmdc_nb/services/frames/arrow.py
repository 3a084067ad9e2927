"""Typed columns from an Arrow result (`adbc.read_arrow`): the same dtypes and values as the row-by-row
path of `columns._build`, built with Arrow's and numpy's vector operations.

The SELECT asks for the columns as stored (SQLite: UTC text times, hex UUIDs, integer picodollars and
0/1 booleans; PostgreSQL: timestamptz, date, uuid, booleans), except PostgreSQL's money, whose numeric
would arrive as text: it is asked for as integer picodollars, as on the row-by-row path. Categorical
columns take their categories from the row-by-row path's own constructor, applied to the distinct
values only, so their categories, order and dtype are the same by construction.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cmdc_nb.services.frames.columns import (
    PICOS,
    _id_category,
    _money_from_picos,
    _pd,
    _ts_from_micros,
)

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

__all__ = []

NAT = -(2**63)  # numpy's NaT as int64


def _arrow_select(kind: str, col: Any, pg: bool) -> Any:
    """The SELECT expression for the Arrow path: the stored column, but PostgreSQL money as picodollars."""
    if kind == "money" and pg:
        return sa.cast(sa.func.round(col * sa.literal_column(str(PICOS))), sa.BigInteger)
    return col


def _ints(arr: pa.Array, fill: int = 0) -> tuple[Any, Any]:
    """(int64 values with `fill` where missing, missing mask) as numpy arrays."""
    import pyarrow as pa
    import pyarrow.compute as pc

    mask = arr.is_null().to_numpy(zero_copy_only=False)
    if pa.types.is_null(arr.type) or arr.null_count == len(arr):
        import numpy as np

        return np.full(len(arr), fill, dtype="int64"), mask
    values = pc.fill_null(arr.cast(pa.int64()), fill).to_numpy(zero_copy_only=False)
    return values, mask


def _categorical(arr: pa.Array, make: Callable[[Any], Any], label: Callable[[Any], Any] | None = None) -> Any:
    """A Categorical with the categories `make` gives the distinct values (and None, if any is missing),
    codes mapped from Arrow's dictionary encoding."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    pd = _pd()
    n = len(arr)
    if pa.types.is_null(arr.type) or arr.null_count == n:
        template = make([None] * min(n, 1))  # as the row-by-row path sees an all-missing column
        return pd.Categorical.from_codes(np.full(n, -1, dtype="int32"), dtype=template.dtype)
    if isinstance(arr, pa.ExtensionArray):  # PostgreSQL's uuid: 16 bytes
        arr = arr.storage
    encoded = arr.dictionary_encode()
    distinct = encoded.dictionary.to_pylist()
    if label is not None:
        distinct = [label(x) for x in distinct]
    template = make(distinct + ([None] if arr.null_count else []))
    # position of each distinct value among the categories, and -1 for a missing one
    lookup = np.append(np.asarray(template.codes[: len(distinct)], dtype="int32"), np.int32(-1))
    indices = pc.fill_null(encoded.indices, len(distinct)).to_numpy(zero_copy_only=False)
    return pd.Categorical.from_codes(lookup[indices], dtype=template.dtype)


def _uuid_text(value: Any) -> Any:
    return str(uuid.UUID(bytes=value)) if isinstance(value, bytes) else value


def _epoch(arr: pa.Array, unit: str) -> Any:
    """int64 `unit`s since the epoch (numpy; NaT's value where missing) from UTC text (SQLite), date32
    or timestamp values."""
    import pyarrow as pa

    if pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.timestamp("us") if unit == "us" else pa.date32())
    if pa.types.is_date(arr.type) or pa.types.is_timestamp(arr.type):
        arr = arr.cast(pa.timestamp(unit))  # a zone only labels the UTC values: dropping it keeps them
    return _ints(arr, NAT)[0]


def _column(kind: str, arr: pa.Array) -> Any:
    import numpy as np
    import pyarrow as pa

    pd = _pd()
    if kind == "ts":
        return _ts_from_micros(_epoch(arr, "us"))
    if kind == "day":
        return pd.Series(_epoch(arr, "s").view("datetime64[s]"))
    if kind == "money":
        return _money_from_picos(*_ints(arr))
    if kind == "id":
        return _categorical(arr, _id_category, _uuid_text)
    if kind == "cat":
        return _categorical(arr, pd.Categorical)
    if kind == "int":
        values, mask = _ints(arr)
        return pd.arrays.IntegerArray(values, mask)
    if kind == "bool":
        values, mask = _ints(arr.cast(pa.int64()) if pa.types.is_boolean(arr.type) else arr)
        return pd.arrays.BooleanArray(values != 0, mask)
    if not (pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)):
        arr = arr.cast(pa.string())  # SQLite's driver types an all-missing column as integers
    return pd.array(arr, dtype="string") if len(arr) else pd.array(np.array([], dtype=object), dtype="string")


def _from_arrow(table: pa.Table, kinds: dict[str, str]) -> pd.DataFrame:
    """The frame of an Arrow result whose columns are `kinds`' names, in order."""
    import pyarrow as pa

    data: dict[str, Any] = {}
    for (name, kind), column in zip(kinds.items(), table.columns, strict=True):
        arr = column.combine_chunks() if column.num_chunks else pa.array([], type=column.type)
        data[name] = _column(kind, arr)
    return _pd().DataFrame(data)
