"""Argument checks shared by the domain services. Each raises InvalidInputError naming the field."""

from __future__ import annotations

import datetime as dt
import math
import uuid
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, TypeVar

from cmdc_nb.errors import InvalidInputError

__all__ = ["aware", "choice", "count", "expiry", "id_of", "items", "mapping", "text", "uuid_of"]

E = TypeVar("E", bound=StrEnum)


def text(value: Any, field: str, *, max_len: int, min_len: int = 1, strip: bool = True) -> str:
    if not isinstance(value, str):
        raise InvalidInputError(f"expected text, got {type(value).__name__}", field=field)
    out = value.strip() if strip else value
    if "\x00" in out:
        raise InvalidInputError("must not contain NUL characters", field=field)
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


def uuid_of(value: Any, field: str) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError:
        raise InvalidInputError(f"not a valid id: {str(value)[:40]!r}", field=field) from None


def id_of(obj: Any, field: str) -> uuid.UUID:
    """The id of a model instance, or an id given directly (UUID or its string)."""
    return uuid_of(getattr(obj, "id", obj), field)


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
