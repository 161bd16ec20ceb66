#!/usr/bin/env bash
# The distributed stack on this machine: `make up` / `make down` / `make status`.
#
#   up:     a Kafka-protocol broker (nisshi; installed when missing), a Redis with
#           deploy/redis.conf on its own port, a database on the local PostgreSQL, and each
#           ttpulse role as its own process. Logs and pids under $TTPULSE_STACK_DIR.
#   down:   stops what `up` started, by pid.
#
# Ports and URLs can be changed through the environment (see the defaults below). To use an
# existing Apache Kafka cluster, Redis or PostgreSQL instead, see docs/distributed.md.
set -euo pipefail
cd "$(dirname "$0")/.."

STACK_DIR="${TTPULSE_STACK_DIR:-$PWD/.stack}"
BROKER_PORT="${TTPULSE_STACK_BROKER_PORT:-19092}"
REDIS_PORT="${TTPULSE_STACK_REDIS_PORT:-16379}"
PG_ADMIN_URL="${TTPULSE_STACK_PG_ADMIN_URL:-postgres://postgres@127.0.0.1:5432/postgres}"
PG_DB="${TTPULSE_STACK_PG_DB:-ttpulse}"
API_ADDR="${TTPULSE_STACK_API_ADDR:-127.0.0.1:8080}"
INGESTER_ADDR="${TTPULSE_STACK_INGESTER_ADDR:-127.0.0.1:8081}"
PROCESSOR_ADDR="${TTPULSE_STACK_PROCESSOR_ADDR:-127.0.0.1:8082}"
CACHE_ADDR="${TTPULSE_STACK_CACHE_ADDR:-127.0.0.1:8083}"
# Each role's admin listener (/admin/*, /metrics): loopback, one port per role.
API_ADMIN="${TTPULSE_STACK_API_ADMIN_ADDR:-127.0.0.1:9460}"
INGESTER_ADMIN="${TTPULSE_STACK_INGESTER_ADMIN_ADDR:-127.0.0.1:9461}"
PROCESSOR_ADMIN="${TTPULSE_STACK_PROCESSOR_ADMIN_ADDR:-127.0.0.1:9462}"
CACHE_ADMIN="${TTPULSE_STACK_CACHE_ADMIN_ADDR:-127.0.0.1:9463}"
SIM_RATE="${TTPULSE_SIM_RATE:-200}"
BIN="$PWD/target/release/ttpulse"
export PATH="$HOME/.cargo/bin:$PATH"

pids="$STACK_DIR/pids"
logs="$STACK_DIR/logs"

start() { # name, command...
  local name="$1"; shift
  if [ -f "$pids/$name" ] && kill -0 "$(cat "$pids/$name")" 2>/dev/null; then
    echo "  $name already running (pid $(cat "$pids/$name"))"
    return
  fi
  nohup "$@" >"$logs/$name.log" 2>&1 &
  echo $! >"$pids/$name"
  echo "  $name started (pid $!, log $logs/$name.log)"
}

wait_http() { # name, url
  for _ in $(seq 1 150); do
    if curl -fsS -o /dev/null "$2" 2>/dev/null; then return 0; fi
    sleep 0.2
  done
  echo "$1 did not become healthy; see $logs/$1.log" >&2
  tail -20 "$logs/$1.log" >&2 || true
  return 1
}

wait_port() { # name, port
  for _ in $(seq 1 100); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$2") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "$1 is not listening on $2; see $logs/$1.log" >&2
  return 1
}

role() { # role, http addr, admin addr
  start "$1" env TTPULSE_ROLES="$1" TTPULSE_HTTP_ADDR="$2" TTPULSE_ADMIN_ADDR="$3" \
    TTPULSE_KAFKA_BROKERS="127.0.0.1:$BROKER_PORT" \
    TTPULSE_REDIS_URL="redis://127.0.0.1:$REDIS_PORT/" \
    TTPULSE_DATABASE_URL="${PG_ADMIN_URL%/*}/$PG_DB" \
    TTPULSE_DATA_DIR="$STACK_DIR/data-$1" TTPULSE_SIM_RATE="$SIM_RATE" \
    "$BIN" run
}

up() {
  mkdir -p "$pids" "$logs" "$STACK_DIR/redis"
  scripts/ensure-build-deps.sh curl redis-server postgresql-client
  scripts/ensure-nisshi.sh >/dev/null
  command -v redis-server >/dev/null || { echo "redis-server is missing (apt-get install redis-server)" >&2; exit 1; }
  command -v psql >/dev/null || { echo "psql is missing (apt-get install postgresql-client)" >&2; exit 1; }
  echo "building ttpulse (release)..."
  cargo build --release --locked --bin ttpulse
  echo "starting the stack in $STACK_DIR"
  start broker nisshi broker --listener-url "tcp://127.0.0.1:$BROKER_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$BROKER_PORT" --storage-engine memory://nisshi/ \
    --group-initial-rebalance-delay 500ms
  start redis redis-server "$PWD/deploy/redis.conf" --port "$REDIS_PORT" --dir "$STACK_DIR/redis" --daemonize no
  wait_port broker "$BROKER_PORT"
  wait_port redis "$REDIS_PORT"
  if ! psql "$PG_ADMIN_URL" -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DB'" | grep -q 1; then
    psql "$PG_ADMIN_URL" -qc "CREATE DATABASE \"$PG_DB\""
    echo "  database $PG_DB created"
  fi
  role processor "$PROCESSOR_ADDR" "$PROCESSOR_ADMIN"
  role cache "$CACHE_ADDR" "$CACHE_ADMIN"
  role api "$API_ADDR" "$API_ADMIN"
  role ingester "$INGESTER_ADDR" "$INGESTER_ADMIN"
  for r in processor:$PROCESSOR_ADMIN cache:$CACHE_ADMIN api:$API_ADMIN ingester:$INGESTER_ADMIN; do
    wait_http "${r%%:*}" "http://${r#*:}/admin/health"
  done
  echo
  echo "  ttpulse (distributed) is up: open http://$API_ADDR/"
  echo "  ingest: POST http://$INGESTER_ADDR/api/ingest"
  echo "  admin (/admin/actors, /metrics): api $API_ADMIN, ingester $INGESTER_ADMIN, processor $PROCESSOR_ADMIN, cache $CACHE_ADMIN"
  echo "  stop with: make down"
}

down() {
  [ -d "$pids" ] || { echo "nothing to stop"; return; }
  for name in ingester api cache processor redis broker; do
    f="$pids/$name"
    [ -f "$f" ] || continue
    pid="$(cat "$f")"
    if kill -0 "$pid" 2>/dev/null; then
      kill "$pid" 2>/dev/null || true
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
      echo "  $name stopped"
    fi
    rm -f "$f"
  done
}

status() {
  [ -d "$pids" ] || { echo "not running"; return; }
  for f in "$pids"/*; do
    [ -f "$f" ] || continue
    name="$(basename "$f")"
    if kill -0 "$(cat "$f")" 2>/dev/null; then echo "  $name: running (pid $(cat "$f"))"; else echo "  $name: stopped"; fi
  done
}

case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  *) echo "usage: $0 up|down|status" >&2; exit 2 ;;
esac
