#!/usr/bin/env bash
# From nothing to JupyterLab on the notebooks (the tour first): set up .venv with the notebook extra.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh notebook
exec .venv/bin/jupyter lab notebooks/00_tour.ipynb "$@"
