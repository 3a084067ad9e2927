"""A workspace: one database, its event bus and its vault. `connect()` opens one.

Every domain service runs its work inside `Workspace.transaction()`: one database transaction whose
events are published on the bus only after it commits (and dropped if it rolls back). Transactions
nest by joining: a service called from inside another's transaction becomes part of it.

This module is the public face; the machinery lives in `cmdc_nb._plumbing.workspace`.
"""

from __future__ import annotations

from cmdc_nb._plumbing.access import acting_as
from cmdc_nb._plumbing.workspace import (
    DATABASE_URL_ENV,
    HOME_ENV,
    Tx,
    Workspace,
    connect,
    default_home,
    get_workspace,
)

__all__ = [
    "DATABASE_URL_ENV",
    "HOME_ENV",
    "Tx",
    "Workspace",
    "acting_as",
    "connect",
    "default_home",
    "get_workspace",
]
