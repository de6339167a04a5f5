# Resident memory is bounded by what `pocketlm info` predicts (issue 3: the
# measured peak within 10% of it): synthesized models of real shapes with real
# vocabularies and few layers, run with a 512-token context filled by
# generation. The bound is info's total x 1.10 plus the program's own code and
# libraries, measured as the peak of `pocketlm --help`; the peak must also reach
# 90% of the total, so that the prediction is not padded either.
. "$(dirname "$0")/common.bash"

if ldd "$PLM" | grep -q asan; then
  echo "skipping: $PLM is built with AddressSanitizer, whose shadow memory makes RSS meaningless"
  exit 77
fi
need_shared models/gguf-vocab/ggml-vocab-gpt-2.gguf models/gguf-vocab/ggml-vocab-llama-spm.gguf
vocabs="$SHARED/models/gguf-vocab"
ctx=512

# peak_kib command...: runs the command (stdout discarded, stderr to $TMP/err)
# and prints its peak RSS in KiB. The peak comes from wait4, which also counts
# the launcher's memory from before exec: Python without site packages keeps
# that at about 8 MiB, below pocketlm's own.
peak_kib() {
  python3 -S -I -c '
import os, sys
devnull = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)]
pid = os.posix_spawn(sys.argv[1], sys.argv[1:], os.environ, file_actions=devnull)
_, status, usage = os.wait4(pid, 0)
print(usage.ru_maxrss)
sys.exit(os.waitstatus_to_exitcode(status))' "$@" 2>"$TMP/err"
}

baseline_kib=$(peak_kib "$PLM" --help) || { echo "FAIL: pocketlm --help"; exit 1; }
echo "baseline: pocketlm --help peaks at $((baseline_kib * 10 / 1024 / 10)).$((baseline_kib * 10 / 1024 % 10)) MiB"

# check SHAPE TYPE LAYERS VOCAB: synthesizes the model, predicts, runs, compares.
check() {
  local shape=$1 type=$2 layers=$3 vocab=$4
  local model="$TMP/$shape-$type.gguf" what="$shape $type --layers $layers, $(basename "$vocab")"
  expect_exit 0 "synth $what" -- "$PLM" synth "$shape" --type "$type" --layers "$layers" --vocab "$vocab" -o "$model"
  expect_exit 0 "info $what" -- "$PLM" info "$model" -c "$ctx" --json
  local predicted
  predicted=$(python3 -c 'import json, sys; print(int(json.load(sys.stdin)["memory"]["total_bytes"]))' <"$TMP/out")
  local peak
  peak=$(peak_kib "$PLM" run -m "$model" -c "$ctx" -n $((ctx - 100)) --ignore-eos --temp 0 -p "the the the") ||
    { fail "run $what: exit $?"; sed 's/^/  stderr: /' "$TMP/err" | head -5; return; }
  python3 - "$what" "$predicted" "$((peak * 1024))" "$((baseline_kib * 1024))" <<'EOF' && pass || fail "memory of $what"
import sys
what, predicted, peak, baseline = sys.argv[1], *map(int, sys.argv[2:])
mib = lambda b: b / 1048576
bound = predicted * 1.10 + baseline
print(f"{what}: peak RSS {mib(peak):.1f} MiB, predicted {mib(predicted):.1f} MiB + baseline {mib(baseline):.1f} MiB; "
      f"(peak - baseline) / predicted = {(peak - baseline) / predicted:.3f}; bound {mib(bound):.1f} MiB")
sys.exit(0 if predicted * 0.90 <= peak <= bound else 1)
EOF
}

# Byte-level BPE with 151,936 tokens (the GPT-2 vocabulary padded), where the
# vocabulary tables are a large part of a one-layer model.
check qwen2.5-0.5b Q4_0 1 "$vocabs/ggml-vocab-gpt-2.gguf"
# SentencePiece (32,000 tokens padded to 49,152), more layers.
check smollm2-135m Q8_0 3 "$vocabs/ggml-vocab-llama-spm.gguf"
# Another architecture (qwen3: q/k norms), a wider embedding, 5-bit weights.
# (k-quants are left out: synthesizing them takes a minute.)
check qwen3-0.6b Q5_0 1 "$vocabs/ggml-vocab-gpt-2.gguf"

finish
