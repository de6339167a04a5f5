#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages pocketlm builds and tests with.
# Does nothing when they are all present; uses sudo when not root.
# --ci adds what CI also runs: the aarch64 cross compiler and qemu-user,
# node/npm for the reference GGUF parser, and chromium for the chat page's test.
set -euo pipefail

packages=(
  build-essential cmake pkg-config   # compiler and build
  libcjson-dev                       # JSON (config.json, tokenizer.json, requests)
  libmicrohttpd-dev                  # the HTTP server of `pocketlm serve`
  libcurl4-openssl-dev               # HTTP client: escalation to upstream models
  libsqlite3-dev                     # the audit log of what left the device
  libssl-dev                         # SHA-256 for the audit log's hash chain (libcrypto)
  curl                               # the server tests talk to the real server with it
  sqlite3                            # the audit tests check the documented by-hand verification
  libcmocka-dev                      # unit tests
  python3 python3-jinja2             # renders the vendors' chat templates in the template tests
)

if [ "${1:-}" = "--ci" ]; then
  packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
  packages+=(chromium)               # the chat page's browser test (tests/cli/web_chat.sh)
  packages+=(clang)                  # libFuzzer: the fuzz targets run briefly in CI
  command -v npm >/dev/null || packages+=(nodejs npm)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

sudo=""
[ "$(id -u)" -ne 0 ] && sudo="sudo"
echo "installing: ${missing[*]}"
$sudo apt-get update -qq
DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
