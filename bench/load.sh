#!/usr/bin/env bash
# Server load: CLIENTS concurrent streaming chat clients on loopback for
# SECONDS against `pocketlm serve --parallel PARALLEL`, reporting requests/s,
# time to first token, inter-token latency and per-stream token rate
# percentiles, token throughput, errors (must be 0), and the server's resident
# memory (VmRSS) before and after (must be flat).
#
# The load generator is bench/load_client.c (built here with cc), not wrk: the
# figures need a timestamp on every server-sent event of a stream, which a C
# client on libcurl's multi interface (already a dependency of pocketlm) takes
# as each event arrives, on one thread for all clients; wrk's Lua hooks see a
# response only once it is complete.
#
# The queue is sized for every client (--queue CLIENTS), so no request is
# refused with a 503: with PARALLEL slots busy, the other clients wait in it,
# and their time to first token includes that wait.
#
# Usage: bench/load.sh [clients] [seconds] [parallel] [model.gguf]
#   defaults: 32 60 4, and a random-weight smollm2-135m Q4_0 with the real Llama
#   SentencePiece vocabulary (so that answers have text), cached in $BENCH_DIR
# Environment: PLM (default build/pocketlm), BENCH_DIR (default /tmp/pocketlm-bench),
# SHARED (default ../shared, for the vocabulary),
# THREADS (threads of each slot, default 2), CTX (each slot's context, default 256),
# MAX_TOKENS (tokens per answer, default 64), CC (default cc).
set -euo pipefail
cd "$(dirname "$0")/.."
plm=${PLM:-build/pocketlm}
dir=${BENCH_DIR:-/tmp/pocketlm-bench}
clients=${1:-32}
seconds=${2:-60}
parallel=${3:-4}
model=${4:-$dir/smollm2-135m-Q4_0-spm.gguf}
mkdir -p "$dir"

if [ $# -lt 4 ] && [ ! -f "$model" ]; then
  vocab="${SHARED:-../shared}/models/gguf-vocab/ggml-vocab-llama-spm.gguf"
  [ -f "$vocab" ] || { echo "bench/load.sh: $vocab not found (set SHARED, or give a model)" >&2; exit 1; }
  "$plm" synth smollm2-135m --type Q4_0 --vocab "$vocab" -o "$model" >&2
fi
client="$dir/load_client"
# shellcheck disable=SC2046 # pkg-config prints several flags
${CC:-cc} -O2 -std=c11 -Wall -Wextra -Werror -D_GNU_SOURCE bench/load_client.c -o "$client" \
  $(pkg-config --cflags --libs libcurl libcjson)

log=$(mktemp)
"$plm" serve -m "$model" --port 0 --parallel "$parallel" --queue "$clients" -t "${THREADS:-2}" -c "${CTX:-256}" \
  --chat-template chatml >"$log" 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do grep -q "^listening on " "$log" && break; sleep 0.1; done
url=$(sed -n 's|^listening on \(http://[^ ]*\)$|\1|p' "$log")
[ -n "$url" ] || { cat "$log" >&2; exit 1; }

rss_kib() { awk '/^VmRSS:/ {print $2}' "/proc/$server/status"; }
# wait_idle: the server's slots and queue are empty (cut requests leave once
# the server sees their clients gone; until then they hold their places).
wait_idle() {
  for _ in $(seq 600); do
    curl -s "$url/health" | grep -q '"slots_processing":0,"queue_depth":0' && return
    sleep 0.1
  done
}
rss_start=$(rss_kib)
# Warm-up, so that "before" is the server as it serves: every client at once
# (connection threads and their malloc arenas), then one whole answer per slot
# (each slot's KV cache touched as deep as the load will use it).
"$client" "$url/v1/chat/completions" "$clients" 2 4 >/dev/null
wait_idle
"$client" "$url/v1/chat/completions" "$parallel" 0 "${MAX_TOKENS:-64}" >/dev/null
wait_idle
rss_before=$(rss_kib)
echo "load: $clients clients for $seconds s, --parallel $parallel, $(basename "$model") ($url)" >&2
report=$("$client" "$url/v1/chat/completions" "$clients" "$seconds" "${MAX_TOKENS:-64}") || status=$?
rss_after=$(rss_kib)
echo "$report"
echo "rss_start_mib $((rss_start / 1024))"
echo "rss_before_mib $((rss_before / 1024))"
echo "rss_after_mib $((rss_after / 1024))"
echo "rss_growth_kib $((rss_after - rss_before))"
exit "${status:-0}"
