#!/usr/bin/env bash
# Debian packages the build needs besides the Rust toolchain: a C toolchain and headers for
# librdkafka (built from source by rdkafka-sys) and libpq (diesel's PostgreSQL backend).
# SQLite is bundled. Installed only when missing.
set -euo pipefail
packages=(pkg-config make gcc g++ libssl-dev libpq-dev zlib1g-dev "$@")
missing=()
for pkg in "${packages[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
  echo "missing packages: ${missing[*]}; install them (sudo apt-get install ${missing[*]}) and retry" >&2
  exit 1
fi
echo "installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq "${missing[@]}"
