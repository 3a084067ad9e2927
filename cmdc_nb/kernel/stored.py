"""What the kernel keeps of stored rows: a tool use as the loop sees it, stored messages turned back
into the conversation, and text made storable. No database here (see `persist`)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cmdc_nb.providers import ToolCall
from cmdc_nb.providers.attachments import Attachment, message_content, stored_message
from cmdc_nb.store.prompt_refs import as_sent
from cmdc_nb.store.values import storable_json, storable_text

__all__ = ["StoredToolUse", "blocks", "history_from_rows", "prompt_delta", "storable", "stored"]


@dataclass(frozen=True)
class StoredToolUse:
    id: str
    status: str
    input: Mapping[str, Any]
    approval_id: str | None
    requires_approval: bool = False
    output: str | None = None
    error: str | None = None
    denial_reason: str | None = None


def stored(t: Any) -> StoredToolUse:
    return StoredToolUse(
        id=str(t.id),
        status=str(t.status.value if hasattr(t.status, "value") else t.status),
        input=storable_json(dict(t.input or {})),
        approval_id=str(t.approval_id) if t.approval_id else None,
        requires_approval=bool(t.requires_approval),
        output=t.output,
        error=t.error_message or t.error_type,
        denial_reason=t.denial_reason,
    )


def storable(text: str | None) -> str | None:
    """`text` as both backends can store it (see `storable_text`): a tool's or a model's odd bytes
    must not fail the turn."""
    return None if text is None else storable_text(text)


def blocks(tool_calls: Sequence[ToolCall]) -> list[dict[str, Any]]:
    return [
        {"type": "tool_call", "id": c.id, "name": c.name, "arguments": dict(c.arguments)} for c in tool_calls
    ]


def history_from_rows(
    rows: Sequence[Any], files_of: Callable[[Any], Sequence[Attachment]] | None = None
) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Stored messages as litellm messages, and for each tool call id the agent call that asked for it.
    A message with stored files gets them back as content parts (`files_of` reads them)."""
    out: list[dict[str, Any]] = []
    call_of: dict[str, str] = {}
    for r in rows:
        role = str(r.role.value if hasattr(r.role, "value") else r.role)
        listed = getattr(r, "attachments", None)
        if (
            files_of is not None
            and listed
            and any(isinstance(x, Mapping) and "artifact_id" in x for x in listed)
        ):
            out.append({"role": role, "content": message_content(r.content or "", files_of(r))})
            continue
        msg = as_sent(role, r.content, r.content_blocks, r.meta)
        if r.agent_call_id is not None:
            for c in msg.get("tool_calls", ()):
                call_of[str(c["id"])] = str(r.agent_call_id)
        out.append(msg)
    return out, call_of


def prompt_delta(
    base: tuple[str, list[Any], str | None] | None,
    messages: Sequence[Mapping[str, Any]],
    system: str | None = None,
    files: Collection[str] = frozenset(),
) -> tuple[list[Any], list[Any], dict[str, Any] | None, str | None]:
    """A prompt as a call stores it (see `services.agents.prompts`): its stored form whole, the part to
    store (what follows the longest prefix it shares with `base`, the newest stored call's id, whole
    prompt and system prompt), the reference to that call (None: stored whole), and the system prompt
    to store — None when it is the base's (`"system": "base"` in the reference says so: an agent's
    system prompt, often the largest text of a call, is stored once, not with every round). Only the
    new messages are converted; the prefix is compared with what was stored, so a message changed in
    place since is stored again. A file whose bytes are stored (its SHA-256 in `files`) is kept as a
    reference to them; any other inline data stays inline."""
    from cmdc_nb._plumbing.service import jsonable

    keep = 0
    if base is not None:
        prev = base[1]
        n = min(len(prev), len(messages))
        if list(messages[:n]) == prev[:n]:  # the usual case, compared in C
            keep = n
        else:  # compare in the stored form: files as references, text as storable (NUL, surrogates)
            while keep < n and (
                messages[keep] == prev[keep]
                or jsonable(storable_json(stored_message(messages[keep], files))) == prev[keep]
            ):
                keep += 1
    tail = jsonable(storable_json([stored_message(m, files) for m in messages[keep:]]))
    if base is None or keep == 0:
        return tail, tail, None, system
    ref: dict[str, Any] = {"base": base[0], "keep": keep}
    if system is not None and system == base[2]:
        ref["system"] = "base"
        return base[1][:keep] + tail, tail, ref, None
    return base[1][:keep] + tail, tail, ref, system
