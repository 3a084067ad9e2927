#!/usr/bin/env bash
# From nothing to the demo: set up .venv, then run `cmdc-nb demo` against the embedded SQLite default.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh
exec .venv/bin/cmdc-nb demo "$@"
