# pocketlm fit: device profiles, the fit table, JSON output checked with python3,
# and exit codes (2 bad command line, 1 failed job).
. "$(dirname "$0")/common.bash"

# json_check DESCRIPTION PYTHON: runs PYTHON with `rows` = the last command's JSON stdout.
json_check() {
  if python3 -c "import json, sys
rows = json.load(open(sys.argv[1]))
$2" "$TMP/out" 2>"$TMP/py"; then pass; else fail "$1"; sed 's/^/  python: /' "$TMP/py" | tail -3; fi
}

expect_exit 0 "fit --help" -- "$PLM" fit --help
grep -q "usage: pocketlm fit \[--device NAME|all\] MODEL..." "$TMP/out" && pass || fail "help shows the usage"
expect_exit 0 "main help" -- "$PLM" --help
grep -q "^  fit " "$TMP/out" && pass || fail "main help lists fit"

# The built-in profiles.
expect_exit 0 "list devices" -- "$PLM" fit --list-devices
for id in iphone-15-pro iphone-16 pixel-8 galaxy-s24 raspberry-pi-5 laptop-16gb; do
  grep -q "^| $id | " "$TMP/out" && pass || fail "list has a row for $id"
  grep -q "^- $id: RAM" "$TMP/out" && pass || fail "list gives the source of $id"
done
expect_exit 0 "list devices as JSON" -- "$PLM" fit --list-devices --json
json_check "device JSON" '
ids = [d["id"] for d in rows]
assert len(ids) == len(set(ids)) and "pixel-8" in ids, ids
for d in rows:
    assert 0 < d["app_memory_bytes"] <= d["ram_bytes"], d
    assert 1e9 < d["bandwidth_bytes_per_s"] < 1e12, d
    assert "Bandwidth" in d["source"], d'

# Two tiny models with a real shape (two layers of Qwen2.5-0.5B).
expect_exit 0 "synth q4_0" -- "$PLM" synth qwen2.5-0.5b --type Q4_0 --layers 2 -o "$TMP/q4.gguf"
expect_exit 0 "synth q8_0" -- "$PLM" synth qwen2.5-0.5b --type Q8_0 --layers 2 -o "$TMP/q8.gguf"

expect_exit 0 "fit one device" -- "$PLM" fit --device pixel-8 "$TMP/q4.gguf" "$TMP/q8.gguf"
grep -q "^Google Pixel 8 (pixel-8): app memory" "$TMP/out" && pass || fail "one device: header line"
[ "$(grep -c '^| pixel-8 | ' "$TMP/out")" -eq 2 ] && pass || fail "one device: a row per model"
grep -q "^| pixel-8 | .*q4.gguf | .* | 4096 | .* | yes | +" "$TMP/out" && pass || fail "q4 fits a Pixel 8 at 4096"
expect_exit 0 "device name in capitals" -- "$PLM" fit --device PIXEL-8 "$TMP/q4.gguf"
grep -q "^| pixel-8 | " "$TMP/out" && pass || fail "case-insensitive device"

# Every device by default; JSON rows agree with the profiles and with each other.
expect_exit 0 "fit all devices, JSON" -- "$PLM" fit "$TMP/q4.gguf" "$TMP/q8.gguf" -c 1024 --kv-type f16 --json
json_check "all-devices JSON" '
by = {(r["device"], r["file"].rsplit("/", 1)[1]): r for r in rows}
devices = {r["device"] for r in rows}
assert len(rows) == 2 * len(devices) and {"laptop-16gb", "raspberry-pi-5"} <= devices, devices
for r in rows:
    assert r["n_ctx"] == 1024 and r["kv_type"] == "f16", r
    assert r["fits"] == (r["memory_needed"] <= r["app_memory_bytes"]), r
    assert r["margin_bytes"] == r["app_memory_bytes"] - r["memory_needed"], r
    assert r["memory_needed"] > r["weight_bytes"], r
    assert 1024 <= r["max_ctx"] <= r["n_ctx_train"], r
# Same model, other device: speed scales with bandwidth (89.6 / 17.068 GB/s).
ratio = by[("laptop-16gb", "q4.gguf")]["max_tokens_per_s"] / by[("raspberry-pi-5", "q4.gguf")]["max_tokens_per_s"]
assert abs(ratio - 89.6 / 17.068) < 1e-6, ratio
# Same device, more bytes per weight: slower, and more memory.
q4, q8 = by[("pixel-8", "q4.gguf")], by[("pixel-8", "q8.gguf")]
assert q8["max_tokens_per_s"] < q4["max_tokens_per_s"] and q8["memory_needed"] > q4["memory_needed"]'

# The memory needed is what `info` reports for the same context and threads.
threads=$(getconf _NPROCESSORS_ONLN)
expect_exit 0 "info for comparison" -- "$PLM" info "$TMP/q4.gguf" -c 2048 --json
info_total=$(python3 -c "import json,sys; print(json.load(open(sys.argv[1]))['memory']['total_bytes'])" "$TMP/out")
expect_exit 0 "fit at the same context" -- "$PLM" fit --device laptop-16gb "$TMP/q4.gguf" -c 2048 -t "$threads" --json
json_check "fit memory equals info memory" "assert rows[0]['memory_needed'] == $info_total, (rows[0]['memory_needed'], $info_total)"

# A device of our own, with room for one model and not the other: its app
# memory is what the Q8_0 model needs at a context halfway between 1024 and
# the default 4096, which the Q4_0 model (smaller weights) fits easily.
expect_exit 0 "Q8_0 memory at 1024" -- "$PLM" fit --device laptop-16gb "$TMP/q8.gguf" -c 1024 --json
cp "$TMP/out" "$TMP/q8_1024.json"
expect_exit 0 "Q8_0 memory at 4096" -- "$PLM" fit --device laptop-16gb "$TMP/q8.gguf" --json
app_memory=$(python3 -c 'import json, sys; a, b = (json.load(open(f))[0]["memory_needed"] for f in sys.argv[1:]); print((a + b) // 2)' "$TMP/q8_1024.json" "$TMP/out")
cat >"$TMP/small.json" <<EOF
[{"id": "small-board", "name": "Small board", "ram_bytes": 268435456, "app_memory_bytes": $app_memory,
  "bandwidth_bytes_per_s": 1e10, "source": "RAM: made up for a test. Bandwidth: ditto. App memory: between the two models."}]
EOF
expect_exit 0 "custom profile list" -- "$PLM" fit --list-devices --devices "$TMP/small.json"
grep -q "^| small-board | Small board | " "$TMP/out" && pass || fail "custom list"
expect_exit 0 "fit a custom device" -- "$PLM" fit --devices "$TMP/small.json" --device small-board "$TMP/q4.gguf" "$TMP/q8.gguf" --json
json_check "one fits, one does not" '
q4, q8 = rows
assert q4["fits"] and q4["margin_bytes"] > 0, q4
assert not q8["fits"] and q8["margin_bytes"] < 0, q8
assert 0 < q8["max_ctx"] < 4096 <= q4["max_ctx"], (q4["max_ctx"], q8["max_ctx"])'
expect_exit 0 "fit a custom device, table" -- "$PLM" fit --devices "$TMP/small.json" --device small-board "$TMP/q8.gguf"
grep -q "| no | -[0-9.]* MiB |" "$TMP/out" && pass || fail "table: no, with a negative margin"

# A real shape at full size (Qwen2.5-0.5B, all 24 layers): it fits every phone at 4096.
expect_exit 0 "synth full size" -- "$PLM" synth qwen2.5-0.5b --type Q4_0 -o "$TMP/full.gguf"
expect_exit 0 "fit full size" -- "$PLM" fit "$TMP/full.gguf" --json
json_check "full size fits every device" '
for r in rows:
    assert r["fits"] and r["max_ctx"] == r["n_ctx_train"] == 32768, r
    assert 250e6 < r["weight_bytes"] < 300e6, r
    assert 20 < r["max_tokens_per_s"] < 400, r'

# Bad command lines: exit 2, one line.
expect_exit 2 "no arguments" -- "$PLM" fit
expect_one_line_error "no arguments"
expect_exit 2 "unknown device" -- "$PLM" fit --device pixel-99 "$TMP/q4.gguf"
expect_stderr "unknown device 'pixel-99' \(known: iphone-15-pro, .*laptop-16gb\)" "unknown device lists ids"
expect_one_line_error "unknown device"
expect_exit 2 "unknown option" -- "$PLM" fit --bogus "$TMP/q4.gguf"
expect_exit 2 "bad kv type" -- "$PLM" fit --kv-type q4_0 "$TMP/q4.gguf"
expect_exit 2 "negative context" -- "$PLM" fit -c -5 "$TMP/q4.gguf"
expect_exit 2 "context not a number" -- "$PLM" fit -c many "$TMP/q4.gguf"
expect_exit 2 "zero threads" -- "$PLM" fit -t 0 "$TMP/q4.gguf"
expect_exit 2 "--device without a value" -- "$PLM" fit "$TMP/q4.gguf" --device
expect_exit 2 "list and models" -- "$PLM" fit --list-devices "$TMP/q4.gguf"
expect_one_line_error "list and models"

# Jobs that cannot be done: exit 1, one line naming the problem.
expect_exit 1 "missing model" -- "$PLM" fit --device pixel-8 "$TMP/q4.gguf" "$TMP/none.gguf"
expect_stderr "none.gguf" "missing model named"
expect_one_line_error "missing model"
[ -s "$TMP/out" ] && fail "missing model: a partial table was printed" || pass
printf 'not a model' >"$TMP/text.gguf"
expect_exit 1 "not a model" -- "$PLM" fit "$TMP/text.gguf"
expect_one_line_error "not a model"
expect_exit 1 "missing profile file" -- "$PLM" fit --devices "$TMP/none.json" "$TMP/q4.gguf"
expect_stderr "none.json" "missing profile file named"
printf '[{"id": "x", "name": "X", "ram_bytes": 1e9, "app_memory_bytes": 2e9, "bandwidth_bytes_per_s": 1e10, "source": "s"}]' >"$TMP/bad.json"
expect_exit 1 "app memory over RAM" -- "$PLM" fit --devices "$TMP/bad.json" "$TMP/q4.gguf"
expect_stderr "entry 1 \(\"x\"\): field 'app_memory_bytes' .* exceeds ram_bytes" "bad profile names entry and field"
expect_one_line_error "bad profile"
printf '' >"$TMP/empty.json"
expect_exit 1 "empty profile file" -- "$PLM" fit --devices "$TMP/empty.json" --list-devices
expect_one_line_error "empty profile file"

finish
