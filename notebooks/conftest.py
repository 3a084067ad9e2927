"""The notebooks' nbval run (scripts/test.sh). 06_team_mode's stored outputs are a PostgreSQL run's, so its
cells are compared where CMDC_NB_TEAM_URL names a server — scripts/test.sh points it at the suite's — and
elsewhere skipped, saying why; in CI (CI=true) they run regardless, and fail without a server."""

from __future__ import annotations

import os

import pytest

NEEDS_POSTGRES = {"06_team_mode.ipynb"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if os.environ.get("CMDC_NB_TEAM_URL") or os.environ.get("CI"):
        return
    skip = pytest.mark.skip(
        reason="compares a PostgreSQL run: set CMDC_NB_TEAM_URL (scripts/test.sh sets it to its server)"
    )
    for item in items:
        if item.path.name in NEEDS_POSTGRES:
            item.add_marker(skip)
