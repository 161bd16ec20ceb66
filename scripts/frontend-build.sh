#!/usr/bin/env bash
# Builds the Next.js dashboard in frontend/: installs its npm packages exactly as locked in
# package-lock.json (`npm ci`, skipped when node_modules already matches the lock), then
# `next build`. Idempotent.
#
#   scripts/frontend-build.sh              install if needed, then always build
#   scripts/frontend-build.sh --if-needed  build only when a source is newer than the last build
#
# Needs Node.js >= 20.9 with npm (the machine's own). Only the npm registry is used: no fonts,
# browsers or binaries are downloaded by the build.
set -euo pipefail
cd "$(dirname "$0")/../frontend"
export NEXT_TELEMETRY_DISABLED=1

if_needed=false
[ "${1:-}" = "--if-needed" ] && if_needed=true

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  echo "frontend: Node.js >= 20.9 and npm are needed to build the dashboard (not found on PATH)" >&2
  exit 1
fi
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a===20&&b>=9)?0:1)'; then
  echo "frontend: Node.js >= 20.9 is needed, found $(node --version)" >&2
  exit 1
fi

# Dependencies: reinstall only when package-lock.json changed since the last install.
stamp=node_modules/.ttpulse-lock.sha256
if [ -f package-lock.json ]; then
  want=$(sha256sum package-lock.json | cut -d' ' -f1)
  if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "==> frontend: npm ci"
    npm ci --no-audit --no-fund
    echo "$want" >"$stamp"
  fi
else
  echo "==> frontend: npm install (no package-lock.json yet)"
  npm install --no-audit --no-fund
fi

if $if_needed && [ -f .next/BUILD_ID ]; then
  newer=$(find app components lib proxy.ts next.config.ts tsconfig.json package.json package-lock.json \
    -newer .next/BUILD_ID -print -quit 2>/dev/null || true)
  if [ -z "$newer" ]; then
    echo "==> frontend: build is up to date"
    exit 0
  fi
fi

echo "==> frontend: next build"
npx --no-install next build
