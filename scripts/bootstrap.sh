#!/usr/bin/env bash
# Set up .venv from nothing but python3 (>= 3.11): installs uv into .venv-tools, then the locked
# dependencies (uv.lock) into .venv. Extras to install are the arguments, e.g. `bootstrap.sh dev`.
# Each stage says what it does on stderr (a first run takes minutes), and uv shows its own progress.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
say() { echo "bootstrap: $*" >&2; }
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cmdc_nb needs Python 3.11 or newer")'
if ! command -v uv >/dev/null 2>&1; then
  if [ ! -x .venv-tools/bin/uv ]; then
    say "installing uv into .venv-tools (once)…"
    "$PYTHON" -m venv .venv-tools
    .venv-tools/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"
  fi
  export PATH="$PWD/.venv-tools/bin:$PATH"
fi
extras=()
for e in "$@"; do extras+=(--extra "$e"); done
say "syncing .venv with uv.lock${*:+ (extras: $*)}…"
# --inexact: add what is missing, remove nothing — `demo.sh` (the notebook extra) run in a developer's
# checkout must not uninstall the dev tools that `test.sh` installed.
uv sync --inexact --frozen --python "$PYTHON" "${extras[@]}"
