"""The domain services: one module per concern, each a set of functions over the workspace's tables.

Every public function is one transaction (`cmdc_nb._plumbing.workspace.Workspace.transaction`), checks
its arguments, writes its activity-log entry and publishes its events after the commit. Users reach
these modules by their seed names on the package (`cmdc_nb.sessions`, `cmdc_nb.approvals`, …); the
services import `store`, `events`, `_plumbing` and `providers` (model facts) only — never the kernel,
widgets or gateway (the import contract in `pyproject.toml` holds them to it).

Functions whose first argument is an open `Tx` and whose name ends in `_in` (e.g.
`approvals.decide_in`) are for sibling services and the layers above that must join a transaction;
they are not part of the public API.
"""

SERVICES = (
    "accounts",
    "activity",
    "agents",
    "approvals",
    "artifacts",
    "attachments",
    "budgets",
    "costs",
    "frames",
    "matching",
    "presence",
    "pricing",
    "scheduling",
    "sessions",
    "vault",
)
