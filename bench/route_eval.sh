#!/usr/bin/env bash
# The figures of docs/routing.md: `pocketlm route-eval` on real pairs of a
# device model and a larger upstream, over the story openings of
# tests/data/route_prompts.txt (102 prompts, answers of up to 64 tokens,
# uncertainty over the first 16):
#   - q2k:  TinyStories-656K quantized to Q2_K (device) -> its F32 conversion
#   - q40:  TinyStories-656K quantized to Q4_0 (device) -> its F32 conversion
#   - 260k: stories260K (device) -> TinyStories-656K F32 (different vocabularies:
#           the device's answers are scored on the upstream's tokenization of their text)
# Each pair writes docs/routing/<pair>.md (the command's tables) and
# docs/routing/<pair>.svg (the chart); the JSON with every answer stays in WORK.
#
# Usage: bench/route_eval.sh            (about 2 minutes on 2 cores)
# Environment: PLM (default build/pocketlm), SHARED (default ../shared),
# WORK (default /tmp/pocketlm-route), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
plm=${PLM:-build/pocketlm}
shared=${SHARED:-../shared}
work=${WORK:-/tmp/pocketlm-route}
threads=${THREADS:-2}
models="$shared/models"
[ -d "$models/tinystories-656k" ] || { echo "bench/route_eval.sh: $models/tinystories-656k not found (set SHARED)" >&2; exit 1; }
mkdir -p "$work" docs/routing

"$plm" convert "$models/tinystories-656k" -o "$work/t656-f32.gguf"
"$plm" convert "$models/stories260K/stories260K.bin" --vocab "$models/stories260K/tok512.bin" -o "$work/s260k.gguf"
for type in Q2_K Q4_0; do
  "$plm" quantize "$work/t656-f32.gguf" "$work/t656-$type.gguf" --type "$type"
done

run_pair() { # NAME DEVICE UPSTREAM
  "$plm" route-eval --device "$2" --upstream "$3" --prompts tests/data/route_prompts.txt -n 64 --first-tokens 16 \
    --target-rate 0.2 -t "$threads" --json "$work/$1.json" --svg "docs/routing/$1.svg" >"docs/routing/$1.md"
  echo "docs/routing/$1.md: $(grep -m1 '(best)' "docs/routing/$1.md")"
}
run_pair q2k "$work/t656-Q2_K.gguf" "$work/t656-f32.gguf"
run_pair q40 "$work/t656-Q4_0.gguf" "$work/t656-f32.gguf"
run_pair 260k "$work/s260k.gguf" "$work/t656-f32.gguf"
