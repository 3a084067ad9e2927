"""The activity log, written by the services themselves inside their own transaction."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from cmdc_nb._plumbing import access
from cmdc_nb._plumbing.workspace import Tx
from cmdc_nb.store.enums import ActivityAction
from cmdc_nb.store.models import ActivityLog

__all__ = ["log_activity"]


def log_activity(
    tx: Tx,
    action: ActivityAction,
    *,
    resource_type: str,
    resource_id: uuid.UUID,
    user_id: uuid.UUID | None,
    details: Mapping[str, Any] | None = None,
    session_id: uuid.UUID | None = None,
) -> ActivityLog:
    # The actor: when the workspace acts for someone (team mode), it is they who did it — Grace adding
    # a message to Ada's shared session is Grace's doing, not Ada's.
    actor = access.acting_user_id(tx.db) or user_id
    entry = ActivityLog(
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        user_id=actor,
        details=dict(details or {}),
        session_id=session_id,
    )
    tx.db.add(entry)
    return entry
