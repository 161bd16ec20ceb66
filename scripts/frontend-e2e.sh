#!/usr/bin/env bash
# End-to-end test of the dashboard on the real stack: the ttpulse binary (embedded, simulator
# on), the built Next.js server (`next start`) and nginx configured from deploy/nginx.conf, all
# on free loopback ports, driven by Debian's Chromium (playwright-core, no browser download).
# Test: frontend/e2e/dashboard.e2e.test.mjs (node's test runner). Artifacts (logs, screenshots)
# in frontend/test-results/.
#
# Installs chromium and nginx with apt when missing, builds ttpulse (debug) when its binary is
# missing and the dashboard when it is out of date. Environment:
#   TTPULSE_BIN   the ttpulse binary to test (default target/debug/ttpulse)
#   CHROMIUM_BIN  default /usr/bin/chromium;  NGINX_BIN  default /usr/sbin/nginx
#   E2E_SETTLE_MS how long the screenshot test lets the charts fill (default 3000)
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
cd "$ROOT"
export NEXT_TELEMETRY_DISABLED=1
export PATH="$HOME/.cargo/bin:$PATH"

# Debian packages: Chromium for the browser, nginx for the proxy.
missing=()
[ -x "${CHROMIUM_BIN:-/usr/bin/chromium}" ] || missing+=(chromium)
[ -x "${NGINX_BIN:-/usr/sbin/nginx}" ] || command -v nginx >/dev/null 2>&1 || missing+=(nginx)
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "missing packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]}) and retry" >&2
    exit 1
  fi
  echo "==> installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # Use the package lists as they are; refresh them only when the install cannot find a package.
  apt-get install -y -qq "${missing[@]}" ||
    { apt-get update -qq && apt-get install -y -qq "${missing[@]}"; }
fi

# The ttpulse binary under test.
if [ -z "${TTPULSE_BIN:-}" ]; then
  export TTPULSE_BIN="$ROOT/target/debug/ttpulse"
  if [ ! -x "$TTPULSE_BIN" ]; then
    echo "==> cargo build --bin ttpulse"
    cargo build --locked --bin ttpulse
  fi
fi

scripts/frontend-build.sh --if-needed

echo "==> frontend end-to-end test"
cd frontend
exec node --test --test-concurrency=1 --test-timeout=180000 e2e/
