"""A call's whole prompt from its stored reference (migration 0010; see services.agents.prompts).

Pure: given a session's stored prompts, no database here, so any layer that holds the rows (an
export, a reader) rebuilds them the same way.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from cmdc_nb.errors import NotFoundError

__all__ = ["Prompts", "Systems", "full_prompt", "full_system"]

# id -> (prompt_messages, prompt_ref) of a session's calls
Prompts = Mapping[str, tuple[list[Any], Mapping[str, Any] | None]]
# id -> (system_prompt, prompt_ref) of a session's calls
Systems = Mapping[str, tuple[str | None, Mapping[str, Any] | None]]


def full_prompt(call_id: str, rows: Prompts) -> list[Any]:
    """The whole prompt of call `call_id` from its session's stored prompts (walked without recursion:
    a chain is as long as the session has rounds)."""
    chain: list[tuple[list[Any], int | None]] = []
    seen: set[str] = set()
    cur: str | None = call_id
    while cur is not None:
        if cur in seen or cur not in rows:
            # A reference that leads nowhere is a damaged store, never a prompt to guess.
            raise NotFoundError("agent_call", cur)
        seen.add(cur)
        messages, ref = rows[cur]
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
