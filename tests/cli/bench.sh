# pocketlm bench: the contract of its flags and of its JSON (speeds themselves are
# checked by benchmarks, not tests: this machine is shared and noisy).
. "$(dirname "$0")/common.bash"
need_shared models/stories260K/stories260K.bin models/stories260K/tok512.bin

model="$TMP/stories260K.gguf"
"$PLM" convert "$SHARED/models/stories260K/stories260K.bin" --vocab "$SHARED/models/stories260K/tok512.bin" \
  -o "$model" 2>/dev/null && pass || fail "convert"

expect_exit 0 "bench --json" -- "$PLM" bench -m "$model" -t 1,2 -p 32 -n 8 -r 2 --json
python3 - "$TMP/out" <<'PY' && pass || fail "bench JSON has one object per test with the documented keys"
import json, sys
tests = json.load(open(sys.argv[1]))
assert [(t["test"], t["threads"]) for t in tests] == [("pp32", 1), ("tg8", 1), ("pp32", 2), ("tg8", 2)], tests
for t in tests:
    assert t["tokens_per_s"] > 0 and t["stddev"] >= 0, t
    assert t["limit_tokens_per_s"] > 0 and t["machine_rate"] > 0, t
    assert abs(t["fraction_of_limit"] - t["tokens_per_s"] / t["limit_tokens_per_s"]) < 1e-9, t
    assert t["limit"] in ("memory read bandwidth", "peak float multiply-add rate"), t
PY

expect_exit 0 "bench table" -- "$PLM" bench -m "$model" -p 16 -n 0 -r 1
grep -q "^| model | size | params | threads | test | t/s" "$TMP/out" && pass || fail "Markdown table header"
grep -q "| pp16 |" "$TMP/out" && ! grep -q "| tg" "$TMP/out" && pass || fail "-n 0 skips generation"

expect_exit 2 "bench without a model" -- "$PLM" bench -p 16
expect_exit 2 "bench with a bad list" -- "$PLM" bench -m "$model" -t 1,x
expect_exit 2 "bench with zero reps" -- "$PLM" bench -m "$model" -r 0
expect_exit 1 "bench of a missing file" -- "$PLM" bench -m "$TMP/none.gguf"
finish
