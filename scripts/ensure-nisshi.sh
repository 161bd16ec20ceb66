#!/usr/bin/env bash
# Installs nisshi (formerly tansu), the Kafka-protocol broker used by the local stack and the
# distributed tests, unless it is already there. The first build takes about 9 minutes on two
# cores; cargo keeps the binary in ~/.cargo/bin, so later runs return at once.
set -euo pipefail
NISSHI_VERSION="${NISSHI_VERSION:-0.8.1}"
export PATH="$HOME/.cargo/bin:$PATH"
if command -v nisshi >/dev/null 2>&1; then
  echo "nisshi: $(command -v nisshi)"
  exit 0
fi
echo "installing nisshi $NISSHI_VERSION (one-time, about 9 minutes)..."
# 0.8.1 declares rustc 1.96 but builds and runs on 1.95.
cargo install nisshi --version "$NISSHI_VERSION" --locked --ignore-rust-version \
  --no-default-features --features dynostore,postgres
command -v nisshi
