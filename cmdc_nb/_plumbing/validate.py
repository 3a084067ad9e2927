"""Argument checks shared by the domain services. Each raises InvalidInputError naming the field."""

from __future__ import annotations

import datetime as dt
import math
import sys
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from cmdc_nb.errors import InvalidInputError

__all__ = [
    "aware",
    "choice",
    "count",
    "dataframe",
    "expiry",
    "external_id",
    "finite",
    "flag",
    "id_of",
    "id_or_none",
    "items",
    "mapping",
    "number_problem",
    "text",
    "text_problem",
    "texts",
    "uuid_of",
]

E = TypeVar("E", bound=StrEnum)


def text_problem(value: str) -> str | None:
    """Why `value` cannot be stored as text (NUL, which PostgreSQL refuses; a lone surrogate, which is
    not Unicode), or None when it can."""
    if "\x00" in value:
        return "must not contain NUL characters"
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return "must be valid Unicode text (it holds a lone surrogate)"
    return None


def text(value: Any, field: str, *, max_len: int, min_len: int = 1, strip: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"expected text, got {type(value).__name__}", field=field)
    out = value.strip() if strip else value
    if (problem := text_problem(out)) is not None:
        raise InvalidInputError(problem, field=field)
    if not min_len <= len(out) <= max_len:
        raise InvalidInputError(
            f"must be {min_len} to {max_len} characters long, got {len(out)}", field=field
        )
    return out


# The largest integer either backend stores (a 64-bit signed column; SQLite's INTEGER).
MAX_INT = 2**63 - 1
MAX_EXPIRY_S = 10 * 365 * 86_400  # ten years: later than that is never, and overflows datetime


def count(value: Any, field: str, *, minimum: int = 0, maximum: int = MAX_INT) -> int:
    """A whole number (bools refused) of at least `minimum` and at most `maximum`."""
    if isinstance(value, bool) or not isinstance(value, int) or not minimum <= value <= maximum:
        shown = repr(value) if not isinstance(value, int) or abs(value) < 10**30 else "a huge number"
        raise InvalidInputError(f"must be an integer from {minimum} to {maximum}, got {shown}", field=field)
    return value


def number_problem(value: int | float) -> str | None:
    """Why `value` is not a storable number (NaN, an infinity, an int past 64 bits), or None."""
    if isinstance(value, int):
        return None if -MAX_INT - 1 <= value <= MAX_INT else "must fit in 64 bits"
    return None if math.isfinite(value) else "must be a finite number"


def flag(value: Any, field: str) -> bool:
    """True or False, nothing else: `"no"` and `1` are not flags."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"expected True or False, got {type(value).__name__}", field=field)
    return value


def finite(value: Any, field: str) -> float:
    """A finite number (an int or a float; bools refused) as a float."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidInputError(f"expected a number, got {type(value).__name__}", field=field)
    if (problem := number_problem(value)) is not None:
        raise InvalidInputError(problem, field=field)
    return float(value)


def texts(value: Any, field: str, *, max_len: int = 10_000) -> list[str]:
    """A list (or tuple) of text; None is an empty list. A bare string is refused, not split into
    its characters."""
    out = items(value, field)
    for i, x in enumerate(out):
        text(x, f"{field}[{i}]", max_len=max_len, min_len=0, strip=False)
    return out


def dataframe(value: Any, field: str) -> Any:
    """A pandas DataFrame. (Without pandas imported, nothing can be one: pandas stays unimported.)"""
    pd = sys.modules.get("pandas")
    if pd is None or not isinstance(value, pd.DataFrame):
        raise InvalidInputError(f"expected a pandas DataFrame, got {type(value).__name__}", field=field)
    return value


def items(value: Any, field: str) -> list[Any]:
    """A list (or tuple) given for a list field; None is an empty list."""
    if value is None:
        return []
    if not isinstance(value, list | tuple):
        raise InvalidInputError(f"expected a list, got {type(value).__name__}", field=field)
    return list(value)


def mapping(value: Any, field: str) -> dict[str, Any]:
    """A mapping given for a dict field (e.g. metadata); None is an empty dict."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InvalidInputError(f"expected a mapping, got {type(value).__name__}", field=field)
    return dict(value)


def choice(enum: type[E], value: Any, field: str) -> E:
    try:
        return enum(value)
    except ValueError:
        valid = ", ".join(m.value for m in enum)
        raise InvalidInputError(f"{value!r} is not one of: {valid}", field=field) from None


def external_id(value: Any, field: str, *, max_len: int = 200) -> str:
    """An id given by someone else (a provider's tool-call id, a client's id): printable text without
    spaces, 1 to `max_len` characters."""
    out = text(value, field, max_len=max_len, strip=False)
    if not out.isprintable() or any(c.isspace() for c in out):
        raise InvalidInputError("must be printable characters without spaces", field=field)
    return out


def uuid_of(value: Any, field: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    if isinstance(value, str) and len(value) <= 64:
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    # Described, never echoed: what lands in an id's place is sometimes a secret (an issued token
    # handed to revoke), and error messages end up in logs.
    what = f"{len(value)} characters of text" if isinstance(value, str) else f"a {type(value).__name__}"
    raise InvalidInputError(f"not a valid id (a UUID or its string), got {what}", field=field)


def id_of(obj: Any, field: str) -> uuid.UUID:
    """The id of a model instance, or an id given directly (UUID or its string)."""
    return uuid_of(getattr(obj, "id", obj), field)


def id_or_none(obj: Any, field: str) -> uuid.UUID | None:
    """`id_of` for an optional reference: None stays None."""
    return None if obj is None else id_of(obj, field)


def aware(value: Any, field: str) -> dt.datetime:
    if not isinstance(value, dt.datetime):
        raise InvalidInputError(f"expected a datetime, got {type(value).__name__}", field=field)
    if value.tzinfo is None:
        raise InvalidInputError("must be timezone-aware (e.g. datetime.now(UTC))", field=field)
    return value.astimezone(dt.UTC)


def expiry(expires_at: Any, expires_in: Any) -> dt.datetime | None:
    """When something given `expires_at` (an aware datetime) or `expires_in` (seconds or a timedelta)
    ends; None when neither is given."""
    if expires_at is not None and expires_in is not None:
        raise InvalidInputError("give expires_at or expires_in, not both", field="expires_in")
    if expires_in is None:
        return aware(expires_at, "expires_at") if expires_at is not None else None
    seconds = expires_in.total_seconds() if isinstance(expires_in, dt.timedelta) else expires_in
    if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not math.isfinite(seconds):
        raise InvalidInputError("must be a finite number of seconds", field="expires_in")
    if not 0 < seconds <= MAX_EXPIRY_S:
        raise InvalidInputError(f"must be between 0 and {MAX_EXPIRY_S:,} seconds", field="expires_in")
    return dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)
