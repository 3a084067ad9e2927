"""Agent calls (one row per LLM request) and the tool uses they ask for, with their lifecycles.

```
agent call:  pending → streaming → completed | failed | cancelled | timeout
             pending → completed | failed | cancelled | timeout      (no streaming)
             failed | timeout → pending                             (retry_agent_call)
tool use:    pending → approved | denied → executing → completed | failed | timeout
             pending → executing                                     (when no approval is required)
             pending | approved | executing → cancelled
```

Any other move raises InvalidStateError. A tool use that requires approval (explicitly, or because its
policy's `approval_class` is above `none`) creates its approval item in the same transaction; the
owner's rules run at once, and deciding either the item or the tool use moves the other.

>>> call = create_agent_call(session, model="anthropic/claude-sonnet-4")             # doctest: +SKIP
>>> tu = create_tool_use(call, tool_name="shell", input={"command": "git status"},  # doctest: +SKIP
...                      policy={"approval_class": "medium"})
>>> tu.status, tu.approval_id is not None                                            # doctest: +SKIP
('pending', True)
"""

from __future__ import annotations

from cmdc_nb.services.agents.calls import (
    AGENT_CALL_TRANSITIONS,
    cancel_agent_call,
    complete_agent_call,
    create_agent_call,
    fail_agent_call,
    get_agent_call,
    list_agent_calls,
    retry_agent_call,
    start_streaming,
    timeout_agent_call,
)
from cmdc_nb.services.agents.prompts import call_request
from cmdc_nb.services.agents.tool_uses import (
    APPROVAL_CLASSES,
    approval_required,
    approve_tool_use,
    cancel_tool_use,
    complete_tool_use,
    create_tool_use,
    deny_tool_use,
    fail_tool_use,
    get_tool_use,
    list_pending_tool_uses,
    list_tool_uses,
    normalize_policy,
    start_tool_execution,
)
from cmdc_nb.services.tool_decisions import TOOL_USE_TRANSITIONS

__all__ = [
    "AGENT_CALL_TRANSITIONS",
    "APPROVAL_CLASSES",
    "TOOL_USE_TRANSITIONS",
    "approval_required",
    "approve_tool_use",
    "call_request",
    "cancel_agent_call",
    "cancel_tool_use",
    "complete_agent_call",
    "complete_tool_use",
    "create_agent_call",
    "create_tool_use",
    "deny_tool_use",
    "fail_agent_call",
    "fail_tool_use",
    "get_agent_call",
    "get_tool_use",
    "list_agent_calls",
    "list_pending_tool_uses",
    "list_tool_uses",
    "normalize_policy",
    "retry_agent_call",
    "start_streaming",
    "start_tool_execution",
    "timeout_agent_call",
]
