#!/usr/bin/env bash
# Runs the dashboard beside a ttpulse process, without nginx (what `make run` uses):
#
#   frontend/scripts/run.sh ./target/release/ttpulse run
#
# Starts the built Next.js server (scripts/frontend-build.sh builds it) on
# 127.0.0.1:${TTPULSE_DASHBOARD_PORT:-3000}, then the given ttpulse command in the foreground,
# waits for both to answer and prints the dashboard's URL. The page reaches the API at
# TTPULSE_HTTP_ADDR (default 127.0.0.1:8080): the Next server proxies /api there, and the browser
# opens its WebSocket there directly. The ops page reads /admin/* and /metrics through the Next
# server too (from ttpulse's admin listener, TTPULSE_ADMIN_ADDR), which it proxies only when the
# dashboard listens on loopback (TTPULSE_DASHBOARD_ADMIN_PROXY=1): on any other address they
# would be public. When ttpulse exits (or on Ctrl-C) the Next server is stopped too.
set -euo pipefail
[ $# -gt 0 ] || { echo "usage: $0 TTPULSE_COMMAND [ARGS...]" >&2; exit 2; }
FRONTEND=$(cd "$(dirname "$0")/.." && pwd)
api_addr=${TTPULSE_HTTP_ADDR:-127.0.0.1:8080}
admin_addr=${TTPULSE_ADMIN_ADDR:-127.0.0.1:9464}
port=${TTPULSE_DASHBOARD_PORT:-3000}
host=${TTPULSE_DASHBOARD_HOST:-127.0.0.1}

if [ ! -f "$FRONTEND/.next/BUILD_ID" ]; then
  echo "the dashboard is not built: run scripts/frontend-build.sh first" >&2
  exit 1
fi

export NEXT_TELEMETRY_DISABLED=1
case "$host" in
  127.* | localhost | ::1 | "[::1]") admin_proxy=1 ;;
  *)
    admin_proxy=0
    echo "the dashboard listens on $host, beyond loopback: its ops page cannot read the admin endpoints" >&2
    ;;
esac
(
  cd "$FRONTEND"
  TTPULSE_API_URL="http://$api_addr" TTPULSE_ADMIN_URL="http://$admin_addr" TTPULSE_PUBLIC_WS_URL="ws://$api_addr/ws" \
    TTPULSE_DASHBOARD_ADMIN_PROXY="$admin_proxy" exec node node_modules/next/dist/bin/next start -H "$host" -p "$port"
) &
next_pid=$!
ttpulse_pid=
cleanup() {
  [ -n "$ttpulse_pid" ] && kill "$ttpulse_pid" 2>/dev/null || true
  kill "$next_pid" 2>/dev/null || true
  wait 2>/dev/null || true
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# The dashboard's page opens its WebSocket straight at ttpulse: allow its origin there.
export TTPULSE_WS_ALLOWED_ORIGINS="${TTPULSE_WS_ALLOWED_ORIGINS:-http://$host:$port}"
"$@" &
ttpulse_pid=$!

# Print the URL once both answer (bounded: 60 s).
for _ in $(seq 1 120); do
  kill -0 "$ttpulse_pid" 2>/dev/null || break
  if curl -fsS -o /dev/null "http://$api_addr/api/instruments" 2>/dev/null &&
    curl -fsS -o /dev/null "http://$host:$port/ops" 2>/dev/null; then
    printf '\n  ttpulse dashboard: open http://%s:%s/   (operations: http://%s:%s/ops)\n\n' "$host" "$port" "$host" "$port"
    break
  fi
  sleep 0.5
done

set +e
wait "$ttpulse_pid"
status=$?
ttpulse_pid=
exit "$status"
