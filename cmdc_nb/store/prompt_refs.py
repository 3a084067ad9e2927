"""A call's whole prompt from its stored reference (migrations 0010 and 0014; see
services.agents.prompts).

Pure: given a session's stored prompts (and, for a reference to them, its messages), no database
here, so any layer that holds the rows (an export, a reader, a migration) rebuilds them the same way.
`as_sent` is the one place a stored message becomes the message a provider was sent: resuming a
conversation (`kernel.stored.history_from_rows`) and a prompt's reference to the session's messages
read it the same way.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from cmdc_nb.errors import NotFoundError

__all__ = [
    "Prompts",
    "Systems",
    "as_sent",
    "full_prompt",
    "full_system",
    "new_part",
    "reads_back_exactly",
    "referenced_sequences",
    "span_of",
]

# id -> (prompt_messages, prompt_ref) of a session's calls
Prompts = Mapping[str, tuple[list[Any], Mapping[str, Any] | None]]
# id -> (system_prompt, prompt_ref) of a session's calls
Systems = Mapping[str, tuple[str | None, Mapping[str, Any] | None]]


def as_sent(role: str, content: str | None, content_blocks: Any, meta: Any) -> dict[str, Any]:
    """A stored message (without files) as the agent sent it to its model: a tool result as a `tool`
    message answering its call, an assistant message with the tool calls it made (their arguments as
    `providers.ToolCall.to_message` writes them), anything else as role and content."""
    if role == "tool_result":
        return {
            "role": "tool",
            "tool_call_id": (meta or {}).get("tool_call_id", ""),
            "content": content or "",
        }
    msg: dict[str, Any] = {"role": role, "content": content}
    calls = [b for b in (content_blocks or []) if isinstance(b, Mapping) and b.get("type") == "tool_call"]
    if calls:
        msg["tool_calls"] = [
            {
                "id": b["id"],
                "type": "function",
                "function": {
                    "name": b["name"],
                    "arguments": json.dumps(b.get("arguments") or {}, sort_keys=True),
                },
            }
            for b in calls
        ]
        msg["content"] = content or None
    return msg


def reads_back_exactly(backend: str, value: Any) -> bool:
    """Whether a JSON column holding `value` reads back equal to it, float for float: on SQLite, JSON
    text always does; PostgreSQL's JSONB keeps numbers as numeric, so a float may come back as
    another value (-0.0 as 0) or type (1e300 as an integer), and `as_sent` would write it differently."""
    if backend != "postgresql":
        return True
    stack = [value]
    while stack:
        v = stack.pop()
        if isinstance(v, float):
            return False
        if isinstance(v, Mapping):
            stack.extend(v.values())
        elif isinstance(v, list | tuple):
            stack.extend(v)
    return True


# A call's new part is its base's reply and the results that answered it: a few messages, a few
# hundred with many parallel tool calls. A span longer than this is a damaged reference.
MAX_SPAN = 10_000


def span_of(ref: Mapping[str, Any] | None) -> range | None:
    """The session's messages a call's new part is (`"messages": [first, last]`), or None. A span that
    is not two integers with 1 <= first <= last, at most MAX_SPAN apart, is a damaged reference:
    NotFoundError, never a prompt to guess (nor a range to walk for ever)."""
    span = ref.get("messages") if ref else None
    if span is None:
        return None
    ok = isinstance(span, Sequence) and len(span) == 2 and all(type(n) is int for n in span)
    if not ok or not 1 <= span[0] <= span[1] < span[0] + MAX_SPAN:
        raise NotFoundError("message", f"sequences {span!r}"[:80])
    return range(span[0], span[1] + 1)


def referenced_sequences(call_id: str, rows: Prompts) -> set[int]:
    """The message sequences `full_prompt(call_id, …)` needs: those of every call on its chain whose
    new part is a reference to the session's messages."""
    out: set[int] = set()
    seen: set[str] = set()
    cur: str | None = call_id
    while cur is not None and cur in rows and cur not in seen:
        seen.add(cur)
        ref = rows[cur][1]
        span = span_of(ref)
        if span is not None:
            out.update(span)
        cur = str(ref["base"]) if ref and ref.get("base") else None
    return out


def new_part(call_id: str, ref: Mapping[str, Any] | None, sent: Mapping[int, Any] | None) -> list[Any] | None:
    """The messages a call's reference says it added (`"messages"`), from `sent` (the session's
    messages by sequence, as sent); None when it has no such reference. A message that is not there
    is a damaged store: NotFoundError naming it."""
    span = span_of(ref)
    if span is None:
        return None
    missing = [n for n in span if sent is None or n not in sent]
    if missing:
        raise NotFoundError("message", f"sequence {missing[0]} of call {call_id}'s prompt")
    return [sent[n] for n in span]  # type: ignore[index]


def full_prompt(call_id: str, rows: Prompts, sent: Mapping[int, Any] | None = None) -> list[Any]:
    """The whole prompt of call `call_id` from its session's stored prompts (walked without recursion:
    a chain is as long as the session has rounds). `sent` holds the session's messages by sequence, as
    sent (`as_sent`), for the calls whose new part refers to them (`referenced_sequences` says which)."""
    chain: list[tuple[list[Any], int | None]] = []
    seen: set[str] = set()
    cur: str | None = call_id
    while cur is not None:
        if cur in seen or cur not in rows:
            # A reference that leads nowhere is a damaged store, never a prompt to guess.
            raise NotFoundError("agent_call", cur)
        seen.add(cur)
        messages, ref = rows[cur]
        referred = new_part(cur, ref, sent)
        if referred is not None:
            messages = referred
        if ref and ref.get("base"):
            chain.append((messages, int(ref["keep"])))
            cur = str(ref["base"])
        else:
            chain.append((messages, None))
            cur = None
    # Forwards from the call holding a whole prompt: each link keeps a prefix of its base's, then adds.
    out = list(chain[-1][0])
    for i in range(len(chain) - 2, -1, -1):
        messages, keep = chain[i]
        out = out[: keep or 0] + list(messages)
    return out


def full_system(call_id: str, rows: Systems) -> str | None:
    """The system prompt call `call_id` sent: its own, or (`"system": "base"` in its reference) its
    base's, followed back to the call that stored it."""
    seen: set[str] = set()
    cur = call_id
    while True:
        if cur in seen or cur not in rows:
            raise NotFoundError("agent_call", cur)
        seen.add(cur)
        system, ref = rows[cur]
        if not (ref and ref.get("system") == "base" and ref.get("base")):
            return system
        cur = str(ref["base"])
