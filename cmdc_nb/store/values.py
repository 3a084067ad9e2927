"""Plain values every layer shares, with no database in sight: exact money, UTC time, storable text.

Money is a `Decimal` of USD exact to a trillionth of a dollar (a picodollar); the column types in
`cmdc_nb.store.types` store it. Nothing here imports SQLAlchemy.
"""

from __future__ import annotations

import datetime as dt
import math
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation, localcontext
from typing import Any

from cmdc_nb.errors import InvalidInputError

__all__ = ["MAX_USD", "PICOS_PER_USD", "storable_json", "storable_text", "tidy", "to_money", "utcnow"]

_PICO = Decimal("1e-12")
PICOS_PER_USD = 10**12


def storable_text(text: str) -> str:
    """`text` with what a database cannot hold replaced by U+FFFD: NUL (PostgreSQL text and JSONB
    refuse it) and unpaired surrogates (not UTF-8)."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = text.encode("utf-16", "surrogatepass").decode("utf-16", "replace")
    return text


def storable_json(value: Any) -> Any:
    """A JSON value with every text in it (keys too) made storable (`storable_text`): what a model or
    a tool produced is kept, with its odd characters replaced, rather than refused. A number JSON has
    no spelling for (NaN, ±Infinity: Python's `json` reads them from a model's arguments) is kept as
    its text, "NaN", "Infinity" or "-Infinity" — PostgreSQL's JSON refuses them, and on SQLite they
    would be stored as text no standard JSON reader takes."""
    if isinstance(value, str):
        return storable_text(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, dict):
        return {storable_text(k) if isinstance(k, str) else k: storable_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [storable_json(v) for v in value]
    return value


def utcnow() -> dt.datetime:
    """The current time, timezone-aware in UTC."""
    return dt.datetime.now(dt.UTC)


MAX_USD = Decimal(10) ** 26  # PostgreSQL's numeric(38, 12); SQLite's picodollars stop sooner (2^63)


def to_money(value: object, *, field: str = "amount") -> Decimal:
    """Turn an amount of USD into an exact `Decimal`, to a trillionth of a dollar.

    Floats are read through their shortest repr (`1.35e-05` → `0.0000135`), so a price typed as a float
    is stored as the number the user wrote, not its binary approximation.
    """
    if isinstance(value, bool) or value is None:
        raise InvalidInputError(f"expected an amount in USD, got {value!r}", field=field)
    try:
        if isinstance(value, float):
            d = Decimal(repr(value))
        elif isinstance(value, int | str | Decimal):
            d = Decimal(value)
        else:
            raise InvalidInputError(f"expected an amount in USD, got {type(value).__name__}", field=field)
    except InvalidOperation as exc:
        raise InvalidInputError(f"not a number: {value!r}", field=field) from exc
    if not d.is_finite():
        raise InvalidInputError(f"not a finite amount: {value!r}", field=field)
    if abs(d) >= MAX_USD:
        raise InvalidInputError("too large: amounts are stored below 10^26 USD", field=field)
    # 26 digits before the point and 12 after need more than the default 28 digits of precision
    with localcontext() as ctx:
        ctx.prec = 60
        return tidy(d.quantize(_PICO, rounding=ROUND_HALF_EVEN))


def tidy(d: Decimal) -> Decimal:
    """Drop trailing zeros without switching to exponent notation (`1E+2`)."""
    if d == d.to_integral_value():
        return d.quantize(Decimal(1))
    return d.normalize()
