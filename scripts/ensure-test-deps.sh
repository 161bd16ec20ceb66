#!/usr/bin/env bash
# What `make test` needs besides the Rust toolchain, installed or started when missing:
# - Debian packages: C toolchain and headers for librdkafka (built from source by rdkafka-sys),
#   libpq for diesel's PostgreSQL backend, redis-server and psql for the distributed tests,
#   python3-yaml for scripts/check-deploy.py (the deploy files), nginx for the distributed test of
#   two api nodes behind deploy/nginx.conf (and the dashboard's end-to-end tests);
# - a running PostgreSQL on 127.0.0.1:5432 (trust auth for the `postgres` user);
# - promtool, from Debian's prometheus package, for the alert rules' tests;
# - the nisshi broker (scripts/ensure-nisshi.sh; a one-time ~9-minute build).
set -euo pipefail
cd "$(dirname "$0")/.."

extra=(curl redis-server postgresql-client python3-yaml nginx)
if ! command -v pg_ctlcluster >/dev/null 2>&1 && ! command -v pg_ctl >/dev/null 2>&1; then
  extra+=(postgresql)
fi
scripts/ensure-build-deps.sh "${extra[@]}"

if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
  echo "starting PostgreSQL"
  if command -v pg_ctlcluster >/dev/null 2>&1; then
    version="$(ls /etc/postgresql | sort -V | tail -1)"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
  fi
  for _ in $(seq 1 50); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 0.2; done
fi
if ! psql "postgres://postgres@127.0.0.1:5432/postgres" -tAc "SELECT 1" >/dev/null 2>&1; then
  echo "PostgreSQL on 127.0.0.1:5432 does not let user postgres in without a password;" >&2
  echo "the tests need trust (or a .pgpass entry) for postgres@127.0.0.1" >&2
  exit 1
fi

# promtool (Debian's prometheus package) checks and unit-tests deploy/prometheus/alerts.yml.
if ! command -v promtool >/dev/null 2>&1; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing promtool; install it (sudo apt-get install --no-install-recommends prometheus) and retry" >&2
    exit 1
  fi
  echo "installing prometheus (for promtool)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends prometheus ||
    { apt-get update -qq && apt-get install -y -qq --no-install-recommends prometheus; }
fi

scripts/ensure-nisshi.sh
