#!/usr/bin/env bash
# From nothing to the README's reliability table: set up .venv, start a throw-away PostgreSQL +
# pgvector, run every reliability check at its FULL size on both backends, write the figures to
# ci-artifacts/reliability/*.json and rewrite the table between the markers in README.md.
# (CI runs the same tests at reduced sizes inside scripts/test.sh.) Takes about an hour.
#   bash scripts/reliability.sh            # full sizes
#   bash scripts/reliability.sh --quick    # CI sizes: checks the harness in a few minutes
set -euo pipefail
cd "$(dirname "$0")/.."
full=1
[ "${1:-}" = "--quick" ] && full=0
bash scripts/bootstrap.sh dev
export CMDC_PG_PORT="${CMDC_PG_PORT:-55446}" CMDC_PG_ROOT="${CMDC_PG_ROOT:-/tmp/cmdc-pg-reliability}"
CMDC_TEST_PG_URL=$(bash scripts/pg.sh start | tail -1)
export CMDC_TEST_PG_URL
trap 'bash scripts/pg.sh stop' EXIT
rm -rf ci-artifacts/reliability
if [ "$full" = 1 ]; then export CMDC_RELIABILITY_FULL=1; fi
.venv/bin/python -m pytest -n 2 -p no:randomly \
  tests/test_crash_resume.py tests/test_concurrency.py tests/test_migrations.py tests/test_fuzz.py \
  tests/test_toolkit.py tests/test_prompt_injection.py tests/test_vault.py tests/test_vault_scale.py \
  tests/test_provider_faults.py tests/test_kernel_store.py tests/test_load.py
.venv/bin/python scripts/reliability_table.py --write README.md
