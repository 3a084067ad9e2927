#!/usr/bin/env bash
# From nothing to bench/RESULTS.md: set up .venv (dev extras: the widget scenario needs them), start a
# throw-away PostgreSQL 18 + pgvector on its own port, then run every benchmark scenario — the peers
# (LangGraph, pydantic-ai, simonw/llm) in their own venvs under bench/.cache, created on first use —
# and write RESULTS.md anew. Arguments go to bench/run_all.py (--quick, --only agent-loop,frames,...).
# The full run takes about half an hour on a 2-core machine.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/bootstrap.sh dev
export CMDC_PG_PORT=${CMDC_BENCH_PG_PORT:-55445}
export CMDC_PG_ROOT=${CMDC_BENCH_PG_ROOT:-/tmp/cmdc-bench-pg-$CMDC_PG_PORT}
PG_URL=$(bash scripts/pg.sh start | tail -1)
trap 'bash scripts/pg.sh stop' EXIT
.venv/bin/python bench/run_all.py --pg "$PG_URL" "$@"
