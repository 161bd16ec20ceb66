#!/usr/bin/env bash
# Every frontend test: builds the dashboard if needed, runs the unit and hook tests (vitest),
# then the end-to-end test on the real stack (scripts/frontend-e2e.sh). Idempotent.
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
export NEXT_TELEMETRY_DISABLED=1

"$ROOT/scripts/frontend-build.sh" --if-needed

echo "==> frontend unit tests (vitest)"
(cd "$ROOT/frontend" && npx --no-install vitest run)

"$ROOT/scripts/frontend-e2e.sh"
