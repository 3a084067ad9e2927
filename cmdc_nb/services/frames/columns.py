"""Typed columns read with Core, not the ORM: money as integer picodollars turned into decimal128(38, 12)
Arrow arrays without per-row Decimal objects, times and ids as native dtypes; the acting user's scope."""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing import validate as v
from cmdc_nb.store.arrays import overlaps
from cmdc_nb.store.models import Session

if TYPE_CHECKING:
    import pandas as pd

__all__ = []


PICOS = 10**12


def _pd() -> Any:
    import pandas  # deferred: `import cmdc_nb` must stay light

    return pandas


def _money_select(col: Any, pg: bool) -> Any:
    # Exact integer picodollars straight from the database (no per-row Decimal objects).
    if pg:
        return sa.cast(sa.func.round(col * PICOS), sa.BigInteger)
    return sa.type_coerce(col, sa.BigInteger)


def _ts_select(col: Any, pg: bool) -> Any:
    """Integer microseconds since the epoch, computed by the database (no per-row parsing here)."""
    if pg:
        return sa.cast(sa.func.floor(sa.extract("epoch", col) * 1_000_000), sa.BigInteger)
    # SQLite keeps 'YYYY-MM-DD HH:MM:SS.ffffff' (UTC): whole seconds from strftime, then the fraction.
    # strftime is given the time without its fraction: it keeps milliseconds, so it would round
    # 23:59:59.9999 up to the next second (and day).
    raw = sa.type_coerce(col, sa.String)
    seconds = sa.cast(sa.func.strftime("%s", sa.func.substr(raw, 1, 19)), sa.BigInteger)
    fraction = sa.cast(sa.func.substr(raw, 21, 6), sa.BigInteger)
    return sa.case((raw.is_(None), None), else_=seconds * 1_000_000 + fraction)


def _id_select(col: Any, pg: bool) -> Any:
    return sa.cast(col, sa.String) if pg else sa.type_coerce(col, sa.String)


def _money_array(values: Sequence[int | None]) -> Any:
    import numpy as np

    n = len(values)
    mask = np.fromiter((x is None for x in values), dtype=bool, count=n)
    picos = np.fromiter((0 if x is None else x for x in values), dtype="<i8", count=n)
    return _money_from_picos(picos, mask)


def _money_from_picos(picos: Any, mask: Any) -> Any:
    """decimal128(38, 12) from int64 picodollars (numpy) and a missing-value mask."""
    import numpy as np
    import pyarrow as pa

    n = len(picos)
    words = np.empty(2 * n, dtype="<i8")
    words[0::2] = picos
    words[1::2] = np.where(picos < 0, -1, 0)  # two's-complement high word of the 128-bit value
    validity = pa.array(~mask, pa.bool_()).buffers()[1] if mask.any() else None
    arr = pa.Array.from_buffers(pa.decimal128(38, 12), n, [validity, pa.py_buffer(words)])
    return _pd().arrays.ArrowExtensionArray(arr)


def _ts_array(values: Sequence[Any]) -> Any:
    import numpy as np

    micros = np.fromiter((-(2**63) if x is None else x for x in values), dtype="int64", count=len(values))
    return _ts_from_micros(micros)


def _ts_from_micros(micros: Any) -> Any:
    """datetime64[us, UTC] from int64 microseconds since the epoch (numpy; int64's minimum is NaT)."""
    return _pd().DatetimeIndex(micros.view("datetime64[us]")).tz_localize("UTC").array


def _id_category(values: Sequence[Any]) -> Any:
    pd = _pd()
    cat = pd.Categorical(values)
    # SQLite keeps UUIDs as 32 hex digits; show them as UUIDs (only the distinct values are touched).
    return cat.rename_categories([str(uuid.UUID(c)) if len(c) == 32 else c for c in cat.categories])


def _build(db: Any, stmt: sa.Select[Any], kinds: dict[str, str]) -> pd.DataFrame:
    pd = _pd()
    # Core, not the ORM: a million rows come back as plain tuples without per-row ORM work.
    rows = db.connection().execute(stmt).all()
    cols = list(zip(*rows, strict=True)) if rows else [() for _ in kinds]
    data: dict[str, Any] = {}
    for (name, kind), values in zip(kinds.items(), cols, strict=True):
        if kind == "ts":
            data[name] = _ts_array(values)
        elif kind == "money":
            data[name] = _money_array(values)
        elif kind == "day":
            # few distinct days: parse each once, through the categories
            cat = pd.Categorical(values)
            parsed = pd.to_datetime(pd.Series(cat.categories, dtype="object")).astype("datetime64[s]")
            data[name] = pd.Series(parsed.to_numpy()[cat.codes]).where(cat.codes >= 0).astype("datetime64[s]")
        elif kind == "id":
            data[name] = _id_category(values)
        elif kind == "cat":
            data[name] = pd.Categorical(values)
        elif kind == "int":
            data[name] = pd.array(values, dtype="Int64")
        elif kind == "bool":
            data[name] = pd.array(values, dtype="boolean")
        else:
            data[name] = pd.array(list(values), dtype="string")
    return pd.DataFrame(data)


def _window(
    stmt: sa.Select[Any], col: Any, since: dt.datetime | None, until: dt.datetime | None
) -> sa.Select[Any]:
    if since is not None:
        stmt = stmt.where(col >= v.aware(since, "since"))
    if until is not None:
        stmt = stmt.where(col < v.aware(until, "until"))
    return stmt


def _sessions_tagged(db: Any, tags: Sequence[str]) -> Any:
    return sa.select(Session.id).where(overlaps(db, Session.tags, tags))


def _acting_user(db: Any, user: Any, session: Any) -> Any:
    """When the workspace acts for someone: a frame of one session needs read access to it; any other
    frame is of the acting user's own records (asking for another user's is refused)."""
    if session is not None:
        access.check_session_id(db, v.id_of(session, "session"), "read")
        return user
    return access.resolve_user(access.acting_user_id(db), user)


def _scope(
    db: Any, stmt: sa.Select[Any], model: Any, *, user: Any, session: Any, tags: Sequence[str] | None
) -> sa.Select[Any]:
    user = _acting_user(db, user, session)
    if user is not None:
        if hasattr(model, "user_id"):
            stmt = stmt.where(model.user_id == v.id_of(user, "user"))
        else:
            stmt = stmt.where(
                model.session_id.in_(sa.select(Session.id).where(Session.user_id == v.id_of(user, "user")))
            )
    if session is not None:
        stmt = stmt.where(model.session_id == v.id_of(session, "session"))
    if tags:
        stmt = stmt.where(model.session_id.in_(_sessions_tagged(db, tags)))
    return stmt
