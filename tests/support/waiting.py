"""How long a test waits for a sign that something is ready or done before it calls it hung.

Tests wait on signals (a line a child prints, an event, a row, a reply), never on a deadline: the wait
ends the moment the signal comes, so a generous ceiling costs a passing test nothing, and a loaded
machine (a fresh clone's suite has run at load 10 on 2 cores) does not turn slowness into a failure.
`CMDC_TEST_CEILING_S` changes it.
"""

from __future__ import annotations

import os

__all__ = ["CEILING_S"]

CEILING_S = float(os.environ.get("CMDC_TEST_CEILING_S", "300"))
