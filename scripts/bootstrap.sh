#!/usr/bin/env bash
# Set up .venv from nothing but python3 (>= 3.11): installs uv into .venv-tools, then the locked
# dependencies (uv.lock) into .venv. Extras to install are the arguments, e.g. `bootstrap.sh dev`.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
"$PYTHON" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "cmdc_nb needs Python 3.11 or newer")'
if ! command -v uv >/dev/null 2>&1; then
  if [ ! -x .venv-tools/bin/uv ]; then
    "$PYTHON" -m venv .venv-tools
    .venv-tools/bin/python -m pip install --quiet --disable-pip-version-check "uv>=0.5"
  fi
  export PATH="$PWD/.venv-tools/bin:$PATH"
fi
extras=()
for e in "$@"; do extras+=(--extra "$e"); done
uv sync --quiet --frozen --python "$PYTHON" "${extras[@]}"
