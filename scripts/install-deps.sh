#!/usr/bin/env bash
# Installs the Debian/Ubuntu packages pocketlm builds and tests with.
# Does nothing when they are all present; uses sudo when not root.
# --ci adds what CI also runs: the aarch64 cross compiler and qemu-user, and
# node/npm for the reference GGUF parser.
set -euo pipefail

packages=(
  build-essential cmake pkg-config   # compiler and build
  libcjson-dev                       # JSON (config.json, tokenizer.json, requests)
  libmicrohttpd-dev                  # the HTTP server of `pocketlm serve`
  libcmocka-dev                      # unit tests
  python3 python3-jinja2             # renders the vendors' chat templates in the template tests
)

if [ "${1:-}" = "--ci" ]; then
  packages+=(gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)
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
