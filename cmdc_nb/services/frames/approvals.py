"""The audit view of approvals: one row per decided item — who or what decided it, how, when, on which
tool and arguments, with the edits made and the note left."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import orm

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import InvalidInputError
from cmdc_nb.services.frames.columns import (
    _acting_user,
    _id_category,
    _id_select,
    _ts_array,
    _ts_select,
    _window,
)
from cmdc_nb.store.enums import ApprovalStatus
from cmdc_nb.store.models import ApprovalItem, ApprovalRule, User

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["APPROVAL_COLUMNS", "approvals_frame"]


APPROVAL_COLUMNS = (
    "decided_at",
    "how",
    "decided_by",
    "status",
    "approval_type",
    "tool_name",
    "arguments",
    "edits",
    "note",
    "title",
    "requested_at",
    "session_id",
    "user_id",
    "decided_by_id",
    "rule_id",
    "id",
)

# The note `remember_decision_in` gives a sticky rule: how a remembered decision is still told apart from
# a rule once that rule is deleted (its id is cleared on the item, the reason is kept).
_REMEMBERED_NOTE = "remembered from approval "
_DECIDED = [s for s in ApprovalStatus if s is not ApprovalStatus.PENDING]


def _status_filter(status: Any) -> ApprovalStatus | None:
    if status is None:
        return None
    chosen = v.choice(ApprovalStatus, status, "status")
    if chosen is ApprovalStatus.PENDING:
        raise InvalidInputError(
            "this frame holds decided items only; list_pending_approvals lists those still waiting",
            field="status",
        )
    return chosen


def _how(row: Any) -> str:
    """person, rule, remembered (a sticky decision) or timeout (expired, or approved by its
    timeout_action)."""
    if row.reason is not None:  # only a rule's decision leaves a reason (`decide_in`)
        sticky = row.is_sticky if row.rule_id is not None else row.reason.startswith(_REMEMBERED_NOTE)
        return "remembered" if sticky else "rule"
    if row.status == ApprovalStatus.EXPIRED.value or (row.meta or {}).get("reason") == "timeout":
        return "timeout"
    return "person"


def _who(row: Any, how: str) -> str | None:
    """The person's e-mail, the rule's name (its reason once it is deleted), or None: no one decided a
    timeout, and a person's decision made without `by=` names no one."""
    if how in ("rule", "remembered"):
        return str(row.rule_name) if row.rule_name is not None else str(row.reason)
    if how == "person" and row.email is not None:
        return str(row.email)
    return None


def _edits(
    payload: Mapping[str, Any], changed: Mapping[str, Any] | None, tool: bool
) -> dict[str, Any] | None:
    """{argument: {"from": proposed, "to": approved}} for each argument the decider changed (for a tool
    use, the arguments are its input; for any other item, the payload's top-level keys)."""
    if not changed:
        return None
    before = payload.get("input") if tool else payload
    after = changed.get("input") if tool else changed
    if not isinstance(before, Mapping) or not isinstance(after, Mapping):
        return None
    edits = {
        k: {"from": before.get(k), "to": after.get(k)}
        for k in dict.fromkeys([*before, *after])
        if before.get(k) != after.get(k)
    }
    return edits or None


def _query(db: orm.Session, pg: bool) -> sa.Select[Any]:
    i, r, u = ApprovalItem, ApprovalRule, User
    return (
        sa.select(
            _ts_select(i.decided_at, pg).label("decided_at"),
            _ts_select(i.inserted_at, pg).label("requested_at"),
            sa.type_coerce(i.status, sa.String).label("status"),
            i.approval_type,
            i.title,
            i.payload,
            i.modified_payload,
            i.meta.label("meta"),
            i.decision_note,
            i.auto_approval_reason.label("reason"),
            _id_select(i.id, pg).label("id"),
            _id_select(i.session_id, pg).label("session_id"),
            _id_select(i.user_id, pg).label("user_id"),
            _id_select(i.decided_by_id, pg).label("decided_by_id"),
            _id_select(i.auto_approval_rule_id, pg).label("rule_id"),
            r.name.label("rule_name"),
            r.is_sticky,
            u.email,
        )
        .select_from(i)
        .outerjoin(r, r.id == i.auto_approval_rule_id)
        .outerjoin(u, u.id == i.decided_by_id)
        .where(i.status.in_(_DECIDED))
    )


def _rows_to_frame(rows: Sequence[Any]) -> pd.DataFrame:
    import pandas as pd

    how = [_how(row) for row in rows]
    tool = [row.approval_type == "tool_use" for row in rows]
    payloads = [row.payload or {} for row in rows]

    def strings(values: list[Any]) -> Any:
        return pd.array(values, dtype="string")

    data = {
        "decided_at": _ts_array([row.decided_at for row in rows]),
        "how": pd.Categorical(how, categories=["person", "rule", "remembered", "timeout"]),
        "decided_by": strings([_who(row, h) for row, h in zip(rows, how, strict=True)]),
        "status": pd.Categorical([row.status for row in rows]),
        "approval_type": pd.Categorical([row.approval_type for row in rows]),
        "tool_name": pd.Categorical(
            [p.get("tool_name") if t else None for p, t in zip(payloads, tool, strict=True)]
        ),
        "arguments": pd.Series(
            [p.get("input") if t else p for p, t in zip(payloads, tool, strict=True)], dtype="object"
        ),
        "edits": pd.Series(
            [_edits(p, row.modified_payload, t) for p, row, t in zip(payloads, rows, tool, strict=True)],
            dtype="object",
        ),
        "note": strings([row.decision_note for row in rows]),
        "title": strings([row.title for row in rows]),
        "requested_at": _ts_array([row.requested_at for row in rows]),
    }
    for col in ("session_id", "user_id", "decided_by_id", "rule_id", "id"):
        data[col] = _id_category([getattr(row, col) for row in rows])
    return pd.DataFrame(data, columns=list(APPROVAL_COLUMNS))


@checked
def approvals_frame(
    *,
    user: Any = None,
    session: Any = None,
    status: ApprovalStatus | str | None = None,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    ws: Workspace | None = None,
) -> pd.DataFrame:
    """One row per decided approval item, oldest decision first: the audit view of who decided what.

    Columns (`APPROVAL_COLUMNS`): decided_at, requested_at (datetime64[us, UTC]); how (category:
    `person`, `rule`, `remembered` — a sticky "always allow" decision, itself a rule — or `timeout`:
    expired, or approved by its `timeout_action`); decided_by (string: the person's e-mail or the
    rule's name; <NA> for a timeout and for a person's decision recorded without `by=`); status,
    approval_type, tool_name (category); arguments (object: the tool's input as proposed, or the
    payload of any other item); edits (object: {argument: {"from": …, "to": …}} for each argument
    changed before approval, else None); note, title (string); session_id, user_id (the item's owner),
    decided_by_id, rule_id, id (category).

    `user` and `session` scope the items as the other frames do, `status` keeps one decision
    (`approved`, `auto_approved`, `denied`, `expired`; a pending item is not decided, so `pending` is
    refused), and `since` / `until` bound `decided_at`.

    >>> frames.approvals_frame(session=chat)[["how", "decided_by", "tool_name", "arguments"]]  # doctest: +SKIP
    """
    wanted = _status_filter(status)
    i = ApprovalItem
    with get_workspace(ws).read() as db:
        pg = db.get_bind().dialect.name == "postgresql"
        stmt = _window(_query(db, pg), i.decided_at, since, until)
        who = _acting_user(db, user, session)
        if who is not None:
            stmt = stmt.where(i.user_id == v.id_of(who, "user"))
        if session is not None:
            stmt = stmt.where(i.session_id == v.id_of(session, "session"))
        if wanted is not None:
            stmt = stmt.where(i.status == wanted)
        # Few rows (people and rules decide them one by one): ordered by the database, read as tuples.
        rows = db.connection().execute(stmt.order_by(i.decided_at, i.inserted_at, i.id)).all()
    return _rows_to_frame(rows)
