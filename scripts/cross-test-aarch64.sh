#!/usr/bin/env bash
# Cross-compiles the matrix kernels for aarch64 and checks the NEON kernels
# against the scalar ones under qemu-aarch64 (tests/cross/kernels_check.c),
# twice: on an emulated CPU with the dot-product extension (every kernel) and
# on a Cortex-A72 without it (float kernels on NEON, the rest scalar).
#
# Needs the Debian packages gcc-aarch64-linux-gnu, libc6-dev-arm64-cross and
# qemu-user. Exits 77 (skipped) when they are missing, 1 when a check fails.
# Usage: scripts/cross-test-aarch64.sh [build-dir]   (default build-aarch64)
set -euo pipefail
cd "$(dirname "$0")/.."

cc=${CC_AARCH64:-aarch64-linux-gnu-gcc}
qemu=${QEMU_AARCH64:-qemu-aarch64}
out=${1:-build-aarch64}
for tool in "$cc" "$qemu"; do
  if ! command -v "$tool" >/dev/null; then
    echo "skipping: $tool not found (apt-get install gcc-aarch64-linux-gnu libc6-dev-arm64-cross qemu-user)"
    exit 77
  fi
done

sources=(tests/cross/kernels_check.c tests/support/attention_check.c src/kernels/*.c src/tensor/*.c src/quant/quantize.c)
flags=(-std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE -Iinclude -Isrc -Itests/support)
mkdir -p "$out"
# Unoptimized builds must compile too (no shift counts that need constant folding).
"$cc" "${flags[@]}" -O0 -c src/kernels/matmul_neon.c -o "$out/matmul_neon_O0.o"
"$cc" "${flags[@]}" -O2 -static "${sources[@]}" -lm -lpthread -o "$out/kernels_check"

echo "== with the dot-product extension (qemu -cpu max)"
"$qemu" -cpu max "$out/kernels_check"
echo "== without it (qemu -cpu cortex-a72)"
"$qemu" -cpu cortex-a72 "$out/kernels_check"
