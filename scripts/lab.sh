#!/usr/bin/env bash
# From nothing to JupyterLab on the notebooks (the tour first): set up .venv with the notebook extra
# and the gateway extra (08_serve_and_share serves an agent over HTTP).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh notebook gateway
exec .venv/bin/jupyter lab notebooks/00_tour.ipynb "$@"
