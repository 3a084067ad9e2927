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
# --compile-bytecode: the .pyc files are written now, once (≈15 s; later runs skip what is compiled).
# Where PYTHONDONTWRITEBYTECODE is set, as on this project's CI machines, Python never keeps what it
# compiles, so without them every process compiled SQLAlchemy, pandas and litellm from source again:
# a fresh process's first offline reply took 1.1 s instead of 0.45 s, `import litellm` 4–8 s instead of 2.
uv sync --inexact --frozen --compile-bytecode --python "$PYTHON" "${extras[@]}"
