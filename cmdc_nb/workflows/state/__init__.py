"""Every change a run goes through, each one transaction: advance, claim, complete, fail, recover.

These are what make a run durable and shareable between processes. The run row is locked first, then
its step rows, in every function, so two processes (or two workers) moving the same run serialise on it:

- `advance` reads the run and decides what comes next: decided approvals are applied, skipped branches
  and failed upstreams propagate, fail-fast stops the run, and the steps whose dependencies are done are
  returned as ready. When every step is done the run is finished here (output, totals, statistics).
- `claim` moves one ready step to `running` under a lease (owner, pid, host, expiry) — or, for an
  approval gate, creates the approval item and parks the step. A step already claimed is not claimed
  again until `recover` hands it back (its owner gone), so a step has one owner at a time.
- `complete` / `fail` record an attempt's outcome; only the lease owner may, so a step taken over by
  `recover` after its owner died cannot be recorded twice. `complete` (the hot path, `hot`) also claims,
  in the same transaction, the dependants the outcome unblocked, for the caller to run next.
- `claim_ready` is `advance` and the claims of what it found ready, in one transaction.
- `recover` hands back the steps whose owner is gone (a dead pid on this host, or an expired lease).
"""

from __future__ import annotations

from cmdc_nb.workflows.state.hot import Next, claim_ready, complete, remember
from cmdc_nb.workflows.state.rows import (
    HOST,
    LEASE_SECONDS,
    OWNER,
    Claim,
    Progress,
    local_lock,
    local_steps,
    run_spec,
)
from cmdc_nb.workflows.state.runs import advance, create_retry, set_cancelled, set_paused
from cmdc_nb.workflows.state.steps import claim, fail, heartbeat, recover, retrying

__all__ = [
    "HOST",
    "LEASE_SECONDS",
    "OWNER",
    "Claim",
    "Next",
    "Progress",
    "advance",
    "claim",
    "claim_ready",
    "complete",
    "create_retry",
    "fail",
    "heartbeat",
    "local_lock",
    "local_steps",
    "recover",
    "remember",
    "retrying",
    "run_spec",
    "set_cancelled",
    "set_paused",
]
