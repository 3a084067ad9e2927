"""Argument checks shared by the domain services. Each raises InvalidInputError naming the field."""

from __future__ import annotations

import datetime as dt
import uuid
from enum import StrEnum
from typing import Any, TypeVar

from cmdc_nb.errors import InvalidInputError

__all__ = ["aware", "choice", "count", "id_of", "text", "uuid_of"]

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


def count(value: Any, field: str, *, minimum: int = 0) -> int:
    """A whole number (bools refused) of at least `minimum`."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidInputError(f"must be an integer of at least {minimum}, got {value!r}", field=field)
    return value


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
