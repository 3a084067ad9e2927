#!/usr/bin/env bash
# From nothing to the demo: set up .venv (with the notebook extra), print the summary of `cmdc-nb demo`,
# then execute the tour notebook headless — offline, against the embedded SQLite default — and write it as
# HTML (the path is printed). Extra arguments go to `cmdc-nb tour` (e.g. --out tour.html).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh notebook
.venv/bin/cmdc-nb demo
exec .venv/bin/cmdc-nb tour "$@"
