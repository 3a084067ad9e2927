"""Export and import: a session with its messages, agent calls and tool uses as one JSON document
(format `cmdc_nb.session/1`), every id remapped on import in one transaction."""

from __future__ import annotations

import datetime as dt
import json
import os
import uuid
from collections.abc import Collection, Mapping
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing import validate as v
from cmdc_nb._plumbing.audit import log_activity
from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch, jsonable
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.errors import CmdcError, InvalidInputError
from cmdc_nb.services.sessions.records import EXPORT_FORMAT, _insert_session, _publish_session
from cmdc_nb.store.enums import ActivityAction, AgentCallStatus, MessageRole, SessionStatus, ToolUseStatus
from cmdc_nb.store.models import AgentCall, Message, Session, ToolUse, User
from cmdc_nb.store.prompt_refs import as_sent, full_prompt, full_system
from cmdc_nb.store.types import Money, TextList, UUIDList
from cmdc_nb.store.values import to_money, utcnow

__all__ = ["export_session", "import_session"]


_SESSION_EXPORT_SKIP = {"id", "user_id", "parent_session_id", "forked_at_message_id", "slug"}


def _row_dict(row: Any, skip: Collection[str] = ()) -> dict[str, Any]:
    mapper = sa.inspect(type(row))
    return {
        attr.key: jsonable(getattr(row, attr.key)) for attr in mapper.column_attrs if attr.key not in skip
    }


@checked
def export_session(
    session: Session | uuid.UUID | str,
    path: str | os.PathLike[str] | None = None,
    *,
    ws: Workspace | None = None,
) -> dict[str, Any]:
    """The session, its messages, agent calls and tool uses as one JSON-ready document.

    With `path`, the document is also written there (UTF-8 JSON). `import_session` reads it back.
    """
    with get_workspace(ws).read() as db:
        s = fetch(db, Session, session, "session")
        messages = db.scalars(sa.select(Message).where(Message.session_id == s.id).order_by(Message.sequence))
        calls = db.scalars(
            sa.select(AgentCall)
            .where(AgentCall.session_id == s.id)
            .order_by(AgentCall.inserted_at, AgentCall.id)
        )
        tools = db.scalars(
            sa.select(ToolUse).where(ToolUse.session_id == s.id).order_by(ToolUse.inserted_at, ToolUse.id)
        )
        message_rows = [_row_dict(m, {"session_id"}) for m in messages]
        doc = {
            "format": EXPORT_FORMAT,
            "exported_at": utcnow().isoformat(),
            "session": {**_row_dict(s, _SESSION_EXPORT_SKIP), "original_id": str(s.id), "slug": s.slug},
            "messages": message_rows,
            "agent_calls": _whole_prompts(
                message_rows,
                [
                    _row_dict(c, {"session_id", "user_id", "workflow_run_id", "workflow_step_id"})
                    for c in calls
                ],
            ),
            "tool_uses": [_row_dict(t, {"session_id", "approval_id", "approved_by_id"}) for t in tools],
        }
    if path is not None:
        try:
            Path(path).write_text(json.dumps(doc, indent=1, ensure_ascii=False), encoding="utf-8")
        except OSError as exc:
            raise InvalidInputError(f"cannot write the export there: {exc.strerror}", field="path") from None
    return doc


def _whole_prompts(messages: list[dict[str, Any]], calls: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Exported calls hold their whole prompt (no reference to another call's or to the session's
    messages, see services.agents.prompts): an export stands alone, whatever reads it."""
    sent = {m["sequence"]: as_sent(m["role"], m["content"], m["content_blocks"], m["meta"]) for m in messages}
    rows = {str(c["id"]): (c["prompt_messages"], c.get("prompt_ref")) for c in calls}
    systems = {str(c["id"]): (c.get("system_prompt"), c.get("prompt_ref")) for c in calls}
    out = []
    for c in calls:
        ref = c.pop("prompt_ref", None)
        whole = {
            "prompt_messages": full_prompt(str(c["id"]), rows, sent),
            "system_prompt": full_system(str(c["id"]), systems),
        }
        out.append({**c, **whole} if ref else c)
    return out


def _restore(model: Any, raw: Mapping[str, Any]) -> dict[str, Any]:
    """Column values for `model` from an exported row: known columns only, types restored and checked
    (a hand-edited document is an InvalidInputError naming the field, never a database error)."""
    out: dict[str, Any] = {}
    for attr in sa.inspect(model).column_attrs:
        if attr.key not in raw:
            continue
        value = raw[attr.key]
        if value is not None:
            try:
                value = _typed(attr.columns[0].type, attr.key, value)
            except (ValueError, TypeError, NotImplementedError, InvalidInputError):
                raise InvalidInputError(
                    f"bad value for {attr.key}", field=f"{model.__tablename__}.{attr.key}"
                ) from None
        out[attr.key] = value
    return out


def _typed(t: Any, key: str, value: Any) -> Any:
    """`value` as column type `t` holds it; ValueError/TypeError when it cannot be."""
    if isinstance(t, UUIDList):
        return [uuid.UUID(str(x)) for x in v.items(value, key)]
    if isinstance(t, sa.Uuid):  # not by name: a tool use's `tool_use_id` is the provider's own id
        return uuid.UUID(str(value))
    if isinstance(t, TextList):
        if not all(isinstance(x, str) for x in v.items(value, key)):
            raise TypeError(key)
        return list(value)
    if getattr(t, "enums", None):
        if value not in t.enums:
            raise ValueError(key)
        return value
    if isinstance(t, Money) or key.endswith("_usd"):
        return to_money(value)
    try:
        py = t.python_type
    except NotImplementedError:
        py = None
    if py is dt.datetime or key.endswith("_at"):
        return dt.datetime.fromisoformat(value)
    if py is bool and not isinstance(value, bool):
        raise TypeError(key)
    if py is int:
        return v.count(value, key, minimum=-v.MAX_INT)
    if py is float and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise TypeError(key)
    if py is str and not isinstance(value, str):
        raise TypeError(key)
    return value


@checked
def import_session(
    user: User | uuid.UUID | str,
    source: Mapping[str, Any] | str | os.PathLike[str],
    *,
    name: str | None = None,
    ws: Workspace | None = None,
) -> Session:
    """Recreate an exported session (a document from `export_session`, or the path of its JSON file)
    for `user`, with new ids and all references between its rows remapped. One transaction: a bad
    document imports nothing."""
    if isinstance(source, Mapping):
        doc = source
    else:
        try:
            doc = json.loads(Path(source).read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"cannot read a session export: {exc}", field="source") from None
    if not isinstance(doc, Mapping) or doc.get("format") != EXPORT_FORMAT:
        raise InvalidInputError(f"not a {EXPORT_FORMAT} document", field="source")
    uid = v.id_of(user, "user")
    try:
        return _import(tx_ws=get_workspace(ws), uid=uid, doc=doc, name=name)
    except CmdcError:
        raise
    except (KeyError, TypeError, AttributeError, ValueError) as exc:
        # A hand-edited or truncated document: say which part, import nothing.
        raise InvalidInputError(
            f"malformed session export ({type(exc).__name__}: {str(exc)[:100]})", field="source"
        ) from None


def _import(*, tx_ws: Workspace, uid: uuid.UUID, doc: Mapping[str, Any], name: str | None) -> Session:
    with tx_ws.transaction() as tx:
        fields = _restore(Session, doc["session"])
        for k in ("id", "user_id", "parent_session_id", "forked_at_message_id", "slug"):
            fields.pop(k, None)
        fields["meta"] = {**fields.get("meta", {}), "imported_from": doc["session"].get("original_id")}
        fields["name"] = v.text(name, "name", max_len=200) if name is not None else fields["name"]
        fields["status"] = SessionStatus(fields.get("status", "active"))
        new = _insert_session(tx, uid, **fields, slug=None)
        ids: dict[uuid.UUID, uuid.UUID] = {}

        def remap(raw: Mapping[str, Any], model: Any) -> dict[str, Any]:
            row = _restore(model, raw)
            old = row.pop("id")
            row["id"] = ids.setdefault(old, uuid.uuid4())
            return row

        calls = [remap(c, AgentCall) for c in doc.get("agent_calls", [])]
        tools = [remap(t, ToolUse) for t in doc.get("tool_uses", [])]
        messages = [remap(m, Message) for m in doc.get("messages", [])]
        for c in calls:
            c.update(session_id=new.id, user_id=uid, status=AgentCallStatus(c["status"]))
        for t in tools:
            t.update(session_id=new.id, status=ToolUseStatus(t["status"]))
            t["agent_call_id"] = ids.get(t["agent_call_id"])
            if t["agent_call_id"] is None:
                raise InvalidInputError(
                    "a tool use refers to an agent call not in the export", field="tool_uses"
                )
        for m in messages:
            m.update(session_id=new.id, role=MessageRole(m["role"]))
            for ref in ("agent_call_id", "tool_use_id"):
                if m.get(ref) is not None:
                    m[ref] = ids.get(m[ref])
        for model, rows in ((AgentCall, calls), (ToolUse, tools), (Message, messages)):
            if rows:
                tx.db.execute(sa.insert(model), rows)
        tx.db.refresh(new)
        log_activity(
            tx,
            ActivityAction.SESSION_CREATE,
            resource_type="session",
            resource_id=new.id,
            user_id=uid,
            session_id=new.id,
            details={"imported_from": doc["session"].get("original_id"), "messages": len(messages)},
        )
        _publish_session(tx, new, "session_created")
    return new
