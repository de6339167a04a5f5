#!/usr/bin/env bash
# Memory and time to first token at real sizes, against issue 3's targets:
#   - peak RSS <= file size + KV cache + 5% + 20 MB, and within 10% of what
#     `pocketlm info --ctx N` predicts once the program's own code and libraries
#     (the peak of `pocketlm --help`) are taken off;
#   - first generated token of a 16-token prompt in under 1 s from a warm page
#     cache (the whole process: start, load, prompt, one token).
# Synthesizes random-weight models of real shapes (cached in $BENCH_DIR, shared
# with bench/speed.sh), measures each run's time and peak RSS (wait4, from a
# Python launcher small enough not to raise the peak), and prints one Markdown table.
# Usage: bench/memory.sh [shapes] [types] [ctx]
#   defaults: "qwen2.5-0.5b llama-3.2-1b" "Q4_0 Q4_K Q8_0" 512
# Environment: PLM (default build/pocketlm), BENCH_DIR (default /tmp/pocketlm-bench),
# SHARED (default ../shared, for the real vocabulary), THREADS (default 2).
set -euo pipefail
cd "$(dirname "$0")/.."
plm=${PLM:-build/pocketlm}
dir=${BENCH_DIR:-/tmp/pocketlm-bench}
shared=${SHARED:-../shared}
shapes=${1:-qwen2.5-0.5b llama-3.2-1b}
types=${2:-Q4_0 Q4_K Q8_0}
ctx=${3:-512}
threads=${THREADS:-2}
mkdir -p "$dir"

vocab="$shared/models/gguf-vocab/ggml-vocab-gpt-2.gguf"
vocab_flag=()
[ -f "$vocab" ] && vocab_flag=(--vocab "$vocab")

# 16 tokens of ordinary English for the GPT-2 vocabulary (" the" is one token).
prompt="the the the the the the the the the the the the the the the the"

# Prints "seconds peak_kib" of one run of the program. wait4's peak includes the
# launcher's memory from before exec; Python without site packages keeps that
# near 8 MiB, below pocketlm's own.
measure() {
    python3 -S -I -c '
import os, sys, time
start = time.monotonic()
quiet = [(os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_WRONLY, 0) for fd in (1, 2)]
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=quiet)
_, status, usage = os.wait4(pid, 0)
print(f"{time.monotonic() - start:.2f} {usage.ru_maxrss}")' "$plm" "$@"
}

mib() { python3 -c "print(f'{$1 / 1048576:.1f}')"; }

# The program's own code and libraries, which `info` leaves out of its prediction.
read -r _ program_kib < <(measure --help)
program=$((program_kib * 1024))

echo "| model | file MiB | KV MiB | predicted MiB | peak RSS MiB | program MiB | (peak - program) / predicted | bound MiB | RSS ok | first token s | < 1 s |"
echo "|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---|"
for shape in $shapes; do
  for type in $types; do
    model="$dir/$shape-$type.gguf"
    [ -f "$model" ] || "$plm" synth "$shape" --type "$type" -o "$model" "${vocab_flag[@]}" >&2
    file_bytes=$(stat -c %s "$model")
    read -r predicted kv_bytes < <("$plm" info "$model" --json -c "$ctx" | python3 -c '
import json, sys
m = json.load(sys.stdin)
kv = 2 * m["n_layer"] * m["memory"]["n_ctx"] * m["n_head_kv"] * m["head_dim"] * 4  # F32 cache
print(m["memory"]["total_bytes"], kv)')

    # Peak RSS with the whole context in use: prompt plus generation to the end.
    read -r _ peak_kib < <(measure run -m "$model" -c "$ctx" -t "$threads" -p "$prompt" \
                                   -n $((ctx - 20)) --temp 0 --ignore-eos)
    # Time to first token, warm: once to fill the page cache, then measured.
    measure run -m "$model" -c "$ctx" -t "$threads" -p "$prompt" -n 1 --temp 0 >/dev/null
    read -r ttft _ < <(measure run -m "$model" -c "$ctx" -t "$threads" -p "$prompt" -n 1 --temp 0)

    peak=$((peak_kib * 1024))
    bound=$(python3 -c "print(int(($file_bytes + $kv_bytes) * 1.05 + 20e6))")
    ratio=$(python3 -c "print(f'{($peak - $program) / $predicted:.2f}')")
    rss_ok=$([ "$peak" -le "$bound" ] && echo yes || echo NO)
    ttft_ok=$(python3 -c "print('yes' if $ttft < 1.0 else 'NO')")
    echo "| $shape $type | $(mib "$file_bytes") | $(mib "$kv_bytes") | $(mib "$predicted") | $(mib "$peak") | $(mib "$program") | $ratio | $(mib "$bound") | $rss_ok | $ttft | $ttft_ok |"
  done
done
