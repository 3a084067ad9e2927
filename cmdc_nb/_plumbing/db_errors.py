"""Database errors as `cmdc_nb.errors` types, with no row values in the message (drivers append the
offending values, which may be secret). Every transaction and single statement of a workspace runs
inside `translate_db_errors`."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import sqlalchemy as sa

from cmdc_nb.errors import CmdcError, ConflictError, InvalidInputError, StorageError

__all__ = ["translate_db_errors"]


@contextlib.contextmanager
def translate_db_errors() -> Iterator[None]:
    try:
        yield
    except CmdcError:
        raise
    except sa.exc.IntegrityError as exc:
        reason = _first_line(exc.orig)
        if "unique" in reason.lower() or "duplicate key" in reason.lower():
            raise ConflictError(f"already exists ({reason})") from None
        raise InvalidInputError(f"rejected by the database ({reason})") from None
    except sa.exc.DataError as exc:  # a value the column cannot hold (e.g. NUL in PostgreSQL text)
        raise InvalidInputError(f"rejected by the database ({_first_line(exc.orig)})") from None
    except OverflowError:  # SQLite's driver refuses integers beyond 64 bits before the database sees them
        raise InvalidInputError("a number is too large to store (over 64 bits)") from None
    except UnicodeEncodeError:  # lone surrogates (e.g. from JSON "\\ud800") are not UTF-8
        raise InvalidInputError(
            "text contains characters that cannot be stored (unpaired UTF-16 surrogates)"
        ) from None
    except sa.exc.DBAPIError as exc:
        raise StorageError(f"database error: {_first_line(exc.orig)}") from None


def _first_line(err: BaseException | None) -> str:
    # Drivers append the offending row values (PostgreSQL's DETAIL line; SQLAlchemy's [parameters]),
    # which may be secret: keep only the first line of the driver's own message.
    text = str(err) if err is not None else ""
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__
