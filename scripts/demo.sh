#!/usr/bin/env bash
# From nothing to the demo: set up .venv (with the notebook extra), print the summary of `cmdc-nb demo`,
# then execute the tour notebook headless — offline, against the embedded SQLite default — and write it as
# HTML (the path is printed). Extra arguments go to `cmdc-nb tour` (e.g. --out tour.html).
# Each stage is announced on stderr: the first run installs the dependencies and takes minutes.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "demo 1/3: setting up .venv (the locked dependencies and the notebook extra)…" >&2
bash scripts/bootstrap.sh notebook
echo "demo 2/3: cmdc-nb demo — a workspace, a user, a session, an agent, and a summary…" >&2
.venv/bin/cmdc-nb demo
echo "demo 3/3: cmdc-nb tour — running notebooks/00_tour.ipynb headless and writing it as HTML…" >&2
exec .venv/bin/cmdc-nb tour "$@"
