"""A stored call's request rebuilt: its prompt is stored as a reference to an earlier call's.

A call whose `prompt_ref` is `{"base": <call id>, "keep": k}` sent the first `k` messages of call
`base`'s prompt (same session, stored before it) followed by its own `prompt_messages`; a call without
one holds its whole prompt, as every call did before migration 0010. With `"system": "base"` too, its
system prompt is its base's (stored once per agent, not with every round), and `system_prompt` is NULL.
With `"messages": [first, last]` too (migration 0014), what it added is no copy at all: it is the
session's messages with those sequences, as sent (`store.prompt_refs.as_sent`) — the reply its base
got and the tool results that answered it, already stored as messages — and `prompt_messages` is
empty. Storing only what is new keeps a session's bytes linear in its rounds instead of quadratic
(`kernel.persist` decides what is new, and refers to messages only when they read back exactly as
sent).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from cmdc_nb._plumbing.checked import checked
from cmdc_nb._plumbing.service import fetch
from cmdc_nb._plumbing.workspace import Workspace, get_workspace
from cmdc_nb.providers.attachments import expand_content
from cmdc_nb.services import attachments
from cmdc_nb.store.models import AgentCall, Message
from cmdc_nb.store.prompt_refs import (
    Prompts,
    Systems,
    as_sent,
    full_prompt,
    full_system,
    referenced_sequences,
)

__all__ = ["call_request"]


def _session_prompts(db: Any, session_id: uuid.UUID) -> tuple[Prompts, Systems]:
    rows = db.execute(
        sa.select(
            AgentCall.id, AgentCall.prompt_messages, AgentCall.system_prompt, AgentCall.prompt_ref
        ).where(AgentCall.session_id == session_id)
    ).all()
    prompts = {str(r.id): (list(r.prompt_messages or []), r.prompt_ref) for r in rows}
    return prompts, {str(r.id): (r.system_prompt, r.prompt_ref) for r in rows}


def _sent_messages(db: Any, session_id: uuid.UUID, wanted: set[int]) -> dict[int, Any]:
    """The session's messages with these sequences, as their calls sent them (`as_sent`)."""
    rows = db.execute(
        sa.select(
            Message.sequence, Message.role, Message.content, Message.content_blocks, Message.meta
        ).where(Message.session_id == session_id, Message.sequence.between(min(wanted), max(wanted)))
    ).all()
    return {r.sequence: as_sent(r.role.value, r.content, r.content_blocks, r.meta) for r in rows}


def _with_files(messages: list[Any], session_id: uuid.UUID, ws: Workspace | None) -> list[Any]:
    """Each file a stored prompt names by reference, back as the bytes the request carried."""
    cache: dict[str, bytes] = {}

    def load(sha256: str) -> bytes:
        if sha256 not in cache:
            cache[sha256] = attachments.read_attached(session_id, sha256, ws=ws)
        return cache[sha256]

    return [
        {**m, "content": expand_content(m["content"], load)} if isinstance(m, Mapping) else m
        for m in messages
    ]


@checked
def call_request(call: AgentCall | uuid.UUID | str, *, ws: Workspace | None = None) -> dict[str, Any]:
    """The request a stored agent call sent, rebuilt: `model`, `provider`, `messages` (as the agent
    built them, like `agent.last_request.messages`: the system prompt first when there was one; litellm
    then drops keys whose value is None), `system_prompt`, `tools` (their names), `temperature`,
    `max_tokens`. Files attached to a prompt are stored once, as artifacts, and put back here as the
    data URLs the request carried. Calls stored before migration 0010 read from their whole copy.

    >>> req = call_request(call)                      # doctest: +SKIP
    >>> req["messages"][-1]["role"]                   # doctest: +SKIP
    'user'
    """
    with get_workspace(ws).read() as db:
        row = fetch(db, AgentCall, call, "agent_call")
        system = row.system_prompt
        if row.prompt_ref:
            prompts, systems = _session_prompts(db, row.session_id)
            wanted = referenced_sequences(str(row.id), prompts)
            sent = _sent_messages(db, row.session_id, wanted) if wanted else None
            messages = full_prompt(str(row.id), prompts, sent)
            system = full_system(str(row.id), systems)
        else:
            messages = list(row.prompt_messages or [])
        if any(type(m.get("content")) is list for m in messages if isinstance(m, Mapping)):
            messages = _with_files(messages, row.session_id, ws)
        first = messages[0] if messages and isinstance(messages[0], Mapping) else None
        if system and (first is None or first.get("role") != "system"):
            messages = [{"role": "system", "content": system}, *messages]
        return {
            "model": row.model,
            "provider": row.provider,
            "messages": messages,
            "system_prompt": system,
            "tools": list(row.tools_provided or []),
            "temperature": row.temperature,
            "max_tokens": row.max_tokens,
        }
