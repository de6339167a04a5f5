#!/usr/bin/env bash
# Speed at real sizes: synthesizes random-weight models of real shapes (cached
# in $BENCH_DIR) and runs `pocketlm bench` on each, printing one Markdown table.
# Usage: bench/speed.sh [shapes] [types] [threads]
#   defaults: "qwen2.5-0.5b llama-3.2-1b" "Q4_0 Q4_K Q8_0" "1,2"
# Environment: PLM (the program, default build/pocketlm), BENCH_DIR (default
# /tmp/pocketlm-bench), SHARED (default ../shared, for the real vocabulary),
# PP / TG / REPS (default 512 / 128 / 3).
set -euo pipefail
cd "$(dirname "$0")/.."
plm=${PLM:-build/pocketlm}
dir=${BENCH_DIR:-/tmp/pocketlm-bench}
shared=${SHARED:-../shared}
shapes=${1:-qwen2.5-0.5b llama-3.2-1b}
types=${2:-Q4_0 Q4_K Q8_0}
threads=${3:-1,2}
mkdir -p "$dir"

# A real byte-level BPE vocabulary (padded by synth to each model's size).
vocab="$shared/models/gguf-vocab/ggml-vocab-gpt-2.gguf"
vocab_flag=()
[ -f "$vocab" ] && vocab_flag=(--vocab "$vocab")

first=1
for shape in $shapes; do
  for type in $types; do
    model="$dir/$shape-$type.gguf"
    if [ ! -f "$model" ]; then
      "$plm" synth "$shape" --type "$type" -o "$model" "${vocab_flag[@]}" >&2
    fi
    table=$("$plm" bench -m "$model" -t "$threads" -p "${PP:-512}" -n "${TG:-128}" -r "${REPS:-3}")
    if [ $first -eq 1 ]; then echo "$table"; first=0; else echo "$table" | tail -n +3; fi
  done
done
