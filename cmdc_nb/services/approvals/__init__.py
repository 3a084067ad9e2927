"""The approval queue and the auto-approval rules that decide items before a human has to.

An item is decided once: approved or denied by a person (with a note and, optionally, edited
arguments), auto-approved or denied by a rule, or expired according to its `timeout_action`. When an
item belongs to a tool use, the tool use is moved in the same transaction, whichever side was decided.
`approval_origins` says where items come from: the agent, session, workflow step and notebook.

How rules decide a new item (`try_auto_approve`, run automatically on creation):

1. Candidates are the owner's active rules for the item's type (or `"*"`), highest priority first.
2. A rule *matches* when its tool names, conditions (`cmdc_nb.matching`) and scope (`applies_to_sessions`,
   `applies_to_workflows`) all hold.
3. Any matching `deny` rule denies: deny beats approve, whatever the priorities.
4. Otherwise the matching rules are walked by priority: `require_review` stops the walk (a human
   decides); `approve` approves if the rule is within its limits (a sliding hour window and a per-session
   cap, counted from the decisions themselves under a row lock, so concurrent items cannot overshoot);
   a rule at its limit is passed over.

>>> rule = create_approval_rule(user, name="tmp files", approval_type="file_write",      # doctest: +SKIP
...     conditions={"path_pattern": "/tmp/**"}, action="approve", max_auto_approvals_per_hour=100)
"""

from __future__ import annotations

from cmdc_nb.services.approvals.deciding import (
    approve_item,
    create_approval_item,
    deny_item,
    try_auto_approve,
)
from cmdc_nb.services.approvals.deciding import (
    auto_decide_in as auto_decide_in,  # for sibling services (see cmdc_nb.services)
)
from cmdc_nb.services.approvals.items import (
    PRIORITY_RANK,
    ExpiryReport,
    RuleDecision,
    count_pending_approvals,
    expire_old_approvals,
    get_approval_item,
    list_pending_approvals,
    list_session_pending_approvals,
)
from cmdc_nb.services.approvals.items import (
    decide_in as decide_in,  # for sibling services (see cmdc_nb.services)
)
from cmdc_nb.services.approvals.items import (
    insert_item_in as insert_item_in,  # for sibling services (see cmdc_nb.services)
)
from cmdc_nb.services.approvals.origins import Origin, approval_origins
from cmdc_nb.services.approvals.rules import (
    create_approval_rule,
    delete_approval_rule,
    disable_rule,
    enable_rule,
    find_matching_rules,
    get_approval_rule,
    list_approval_rules,
    update_approval_rule,
)
from cmdc_nb.services.approvals.rules import (
    remember_decision_in as remember_decision_in,  # for sibling services (see cmdc_nb.services)
)

__all__ = [
    "PRIORITY_RANK",
    "ExpiryReport",
    "Origin",
    "RuleDecision",
    "approval_origins",
    "approve_item",
    "count_pending_approvals",
    "create_approval_item",
    "create_approval_rule",
    "delete_approval_rule",
    "deny_item",
    "disable_rule",
    "enable_rule",
    "expire_old_approvals",
    "find_matching_rules",
    "get_approval_item",
    "get_approval_rule",
    "list_approval_rules",
    "list_pending_approvals",
    "list_session_pending_approvals",
    "try_auto_approve",
    "update_approval_rule",
]
