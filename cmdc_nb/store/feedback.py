"""People's ratings of a reply as stored in its message's `meta["feedback"]` (person id → rating, note,
when): the shape `sessions.rate_message` writes, and the check every reader applies. Pure: no database."""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

__all__ = ["RATINGS", "valid_feedback"]

RATINGS = ("like", "dislike")


def valid_feedback(value: Any) -> dict[str, dict[str, Any]]:
    """The well-formed ratings of a message's `meta["feedback"]` (person id → rating, note, when);
    anything else there — written by hand, or by an older version — is left out, never trusted."""
    out: dict[str, dict[str, Any]] = {}
    if not isinstance(value, dict):
        return out
    for by, f in value.items():
        if not (isinstance(f, dict) and f.get("rating") in RATINGS and isinstance(f.get("at"), str)):
            continue
        try:
            uuid.UUID(str(by))
            dt.datetime.fromisoformat(f["at"])
        except ValueError:
            continue
        note = f.get("note")
        out[str(by)] = {"rating": f["rating"], "note": note if isinstance(note, str) else None, "at": f["at"]}
    return out
