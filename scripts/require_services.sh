#!/usr/bin/env bash
# Makes the services the tests use required, not optional: sourced by
# scripts/test.sh under CI=true or REQUIRE_SERVICES=1. Exports
# REQUIRE_POSTGRES=1, REQUIRE_REDIS=1 and REQUIRE_CHROMIUM=1 (read by
# frontend/tests/store_support, frontend/tests/limits_redis.rs and the
# `needs` marks in tests/python), so a missing service fails its tests
# instead of printing "skipped"; starts PostgreSQL and Redis where the
# machine has not, and stops the run, naming what is missing, where that
# does not work. Run it directly to check a machine: bash scripts/require_services.sh

export REQUIRE_POSTGRES=1 REQUIRE_REDIS=1 REQUIRE_CHROMIUM=1

# Whether something accepts TCP connections on 127.0.0.1:$1.
_port_open() {
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null
}

# Waits up to 20 s for port $1.
_wait_port() {
  local i
  for ((i = 0; i < 40; i++)); do
    _port_open "$1" && return 0
    sleep 0.5
  done
  return 1
}

_start_postgres() {
  if command -v pg_ctlcluster >/dev/null 2>&1 && command -v pg_lsclusters >/dev/null 2>&1; then
    local version cluster
    while read -r version cluster _; do
      pg_ctlcluster "$version" "$cluster" start 2>/dev/null || true
    done < <(pg_lsclusters --no-header 2>/dev/null)
  fi
  _port_open 5432 || service postgresql start >/dev/null 2>&1 || true
}

_start_redis() {
  command -v redis-server >/dev/null 2>&1 \
    && redis-server --daemonize yes --bind 127.0.0.1 --port 6379 >/dev/null 2>&1 \
    || service redis-server start >/dev/null 2>&1 || true
}

_missing=()
if ! _port_open 5432; then
  echo "services: PostgreSQL is not on 127.0.0.1:5432; starting it"
  _start_postgres
  _wait_port 5432 || _missing+=("PostgreSQL on 127.0.0.1:5432 (tried pg_ctlcluster, service postgresql start)")
fi
if ! _port_open 6379; then
  echo "services: Redis is not on 127.0.0.1:6379; starting it"
  _start_redis
  _wait_port 6379 || _missing+=("Redis on 127.0.0.1:6379 (tried redis-server --daemonize yes)")
fi
command -v psql >/dev/null 2>&1 || _missing+=("psql (postgresql-client)")
[ -x /usr/bin/chromium ] || _missing+=("/usr/bin/chromium (scripts/setup.sh installs it as root)")
command -v node >/dev/null 2>&1 || _missing+=("node")
[ -d "$(dirname "${BASH_SOURCE[0]}")/../tests/node_modules/playwright-core" ] \
  || _missing+=("tests/node_modules/playwright-core (npm ci --prefix tests)")

if ((${#_missing[@]})); then
  echo "services: required but missing (REQUIRE_SERVICES / CI):" >&2
  printf '  - %s\n' "${_missing[@]}" >&2
  # Sourced: return to stop test.sh (set -e); run directly: exit.
  return 1 2>/dev/null || exit 1
fi
echo "services: PostgreSQL, Redis, psql, Chromium present; REQUIRE_POSTGRES=1 REQUIRE_REDIS=1 REQUIRE_CHROMIUM=1"
