# pocketlm quantize on the real TinyStories-656K model: presets, overrides,
# determinism, target sizes, bad command lines and files; and llama.cpp loading
# the quantized files (when node-llama-cpp is installed, as for
# llama_cpp_reference.sh).
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors

expect_exit 0 "convert f32" -- "$PLM" convert "$SHARED/models/tinystories-656k" -o "$TMP/m32.gguf"
m32="$TMP/m32.gguf"

# Presets: each file loads, holds the expected types and tells the story.
# Rows are 128 and 384 long, never whole k-quant blocks of 256, so k-quants fall back.
quantize() { expect_exit 0 "quantize $1" -- "$PLM" quantize "$m32" "$TMP/$1.gguf" --type "$1" "${@:2}"; }
for preset in Q8_0 Q6_K Q5_K_M Q4_K_M Q4_0 Q3_K_M Q2_K F16 BF16; do
  quantize "$preset"
  grep -Eq "^total: 20 tensors, .* bits per weight" "$TMP/err" && pass || fail "$preset: total line"
  [ "$(grep -c '^\[ *[0-9]*/ *20\]' "$TMP/err")" -eq 20 ] && pass || fail "$preset: one line per tensor"
  expect_exit 0 "$preset: info" -- "$PLM" info "$TMP/$preset.gguf"
  expect_exit 0 "$preset: run" -- "$PLM" run -m "$TMP/$preset.gguf" --temp 0 -n 12
  [[ "$(cat "$TMP/out")" == "Once upon a time"* ]] && pass || fail "$preset: story starts 'Once upon a time': $(head -c 40 "$TMP/out")"
done
"$PLM" info "$TMP/Q8_0.gguf" | grep -Eq "Q8_0 +15 tensors" && pass || fail "Q8_0: all 15 matrices Q8_0"
"$PLM" info "$TMP/F16.gguf" | grep -Eq "F16 +15 tensors" && pass || fail "F16: all 15 matrices F16"
"$PLM" info "$TMP/Q4_0.gguf" | grep -Eq "Q4_0 +14 tensors" && pass || fail "Q4_0: 14 matrices Q4_0 (the tied output Q8_0)"

# Fallback notes, one per (row length, asked type, stored type).
quantize Q4_K
expect_stderr "token_embd.weight \(and 12 more like it\): 128 columns are not a multiple of 256; Q4_K -> Q5_0" "fallback note for rows of 128"
expect_stderr "blk.0.ffn_down.weight \(and 1 more like it\): 384 columns are not a multiple of 256; Q4_K -> Q5_0" "fallback note for rows of 384"
[ "$(grep -c 'columns are not a multiple' "$TMP/err")" -eq 2 ] && pass || fail "Q4_K: two grouped fallback notes"

# Overrides: the last matching pattern wins.
quantize Q4_0 --tensor-type 'blk.*.ffn_*=Q8_0' --tensor-type 'blk.1.ffn_down.weight=F16'
expect_stderr "blk.0.ffn_down.weight +384 x 128 +F32 -> Q8_0" "override: ffn_down Q8_0"
expect_stderr "blk.1.ffn_down.weight +384 x 128 +F32 -> F16" "override: last match wins"
expect_stderr "blk.1.attn_q.weight +128 x 128 +F32 -> Q4_0" "no override: preset type"

# Deterministic whatever the thread count.
"$PLM" quantize "$m32" "$TMP/a.gguf" --type Q4_K_M -t 1 2>/dev/null
"$PLM" quantize "$m32" "$TMP/b.gguf" --type Q4_K_M -t 2 2>/dev/null
cmp -s "$TMP/a.gguf" "$TMP/b.gguf" && cmp -s "$TMP/a.gguf" "$TMP/Q4_K_M.gguf" && pass || fail "same file for -t 1, -t 2 and the default"

# Target size, with an importance matrix whose sensitivities are made up
# (Q4_0 costs each matrix ten times the KLD of Q8_0, token_embd ten times more
# than the others): the file fits, and a larger target buys more precision.
python3 - "$m32" "$TMP/imatrix.gguf" <<'PY' || fail "writing an imatrix"
import struct, sys
def gguf_string(s): b = s.encode(); return struct.pack("<Q", len(b)) + b
# The matrices of the model, read from its GGUF header.
data = open(sys.argv[1], "rb").read()
pos = 8
n_tensors, n_kv = struct.unpack_from("<QQ", data, pos); pos += 16
sizes = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}
def skip_value(t):
    global pos
    if t == 8: n, = struct.unpack_from("<Q", data, pos); pos += 8 + n
    elif t == 9:
        et, n = struct.unpack_from("<IQ", data, pos); pos += 12
        for _ in range(n): skip_value(et)
    else: pos += sizes[t]
for _ in range(n_kv):
    n, = struct.unpack_from("<Q", data, pos); pos += 8 + n
    t, = struct.unpack_from("<I", data, pos); pos += 4
    skip_value(t)
matrices = []
for _ in range(n_tensors):
    n, = struct.unpack_from("<Q", data, pos); name = data[pos + 8:pos + 8 + n].decode(); pos += 8 + n
    dims, = struct.unpack_from("<I", data, pos); pos += 4
    ne = struct.unpack_from("<%dQ" % dims, data, pos); pos += 8 * dims + 12
    if dims == 2: matrices.append((name, ne[0]))
types = ["Q4_0", "Q8_0", "F16"]
tensors = []
for name, n_in in matrices:
    scale = 10.0 if name == "token_embd.weight" else 1.0
    tensors.append((name + ".in_sum2", [1.0] * n_in))
    tensors.append((name + ".counts", [1.0]))
    tensors.append((name + ".kld", [0.01 * scale, 0.001 * scale, 0.0001 * scale]))
kv = gguf_string("general.type") + struct.pack("<I", 8) + gguf_string("imatrix")
kv += gguf_string("pocketlm.sensitivity.types") + struct.pack("<IIQ", 9, 8, len(types)) + b"".join(map(gguf_string, types))
head = b"GGUF" + struct.pack("<IQQ", 3, len(tensors), 2) + kv
body, offset = b"", 0
for name, values in tensors:
    head += gguf_string(name) + struct.pack("<IQIQ", 1, len(values), 0, offset)
    blob = struct.pack("<%df" % len(values), *values)
    blob += b"\0" * (-len(blob) % 32)
    body += blob; offset += len(blob)
head += b"\0" * (-len(head) % 32)
open(sys.argv[2], "wb").write(head + body)
PY
size_of() { stat -c %s "$1"; }
q80=$(size_of "$TMP/Q8_0.gguf")
expect_exit 0 "target size of the Q8_0 file" -- "$PLM" quantize "$m32" "$TMP/t1.gguf" --imatrix "$TMP/imatrix.gguf" --target-size "$q80"
[ "$(size_of "$TMP/t1.gguf")" -le "$q80" ] && pass || fail "target size: $(size_of "$TMP/t1.gguf") bytes, over $q80"
expect_stderr "token_embd.weight .* -> Q8_0 .* kld 0.010000" "target size: token_embd Q8_0 with its KLD"
expect_stderr "predicted KLD" "target size: total predicted KLD"
expect_exit 0 "target size 1M" -- "$PLM" quantize "$m32" "$TMP/t2.gguf" --imatrix "$TMP/imatrix.gguf" --target-size 1M
[ "$(size_of "$TMP/t2.gguf")" -gt "$q80" ] && [ "$(size_of "$TMP/t2.gguf")" -le 1048576 ] && pass || fail "target 1M: more precision, within 1 MiB"
expect_exit 0 "target-size run" -- "$PLM" run -m "$TMP/t2.gguf" --temp 0 -n 12
expect_exit 1 "target too small" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --imatrix "$TMP/imatrix.gguf" --target-size 100K
expect_stderr "over the target" "target too small: says so"
expect_exit 1 "target without sensitivities" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --imatrix "$m32" --target-size 1M

# --device: the device's app memory less the session's needs at -c.
cat >"$TMP/devices.json" <<'EOF'
[{"id": "tiny-board", "name": "Tiny board", "ram_bytes": 134217728, "app_memory_bytes": 67108864,
  "bandwidth_bytes_per_s": 1000000000, "source": "made up for a test"}]
EOF
expect_exit 0 "--device" -- "$PLM" quantize "$m32" "$TMP/d.gguf" --imatrix "$TMP/imatrix.gguf" --device tiny-board --devices "$TMP/devices.json" -c 64
expect_stderr "Tiny board: 64.0 MiB for an app, less .* MiB for a session with a 64-token context and .* MiB for the model's tables: target [0-9]+ bytes" "--device: the derived budget"
target=$(sed -n 's/.*: target \([0-9]*\) bytes.*/\1/p' "$TMP/err")
[ -n "$target" ] && [ "$(size_of "$TMP/d.gguf")" -le "$target" ] && pass || fail "--device: the file fits the derived target ${target:-?}"
expect_exit 2 "--device unknown" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --imatrix "$TMP/imatrix.gguf" --device nope --devices "$TMP/devices.json"
expect_stderr "tiny-board" "--device unknown: lists the known ids"
expect_exit 1 "--device too small for the session" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --imatrix "$TMP/imatrix.gguf" --device tiny-board --devices "$TMP/devices.json" -c 100000
expect_stderr "need .* MiB, all of the 64.0 MiB an app may use" "--device too small: says so"

# On the real model with measured sensitivities (pocketlm calibrate --sensitivity
# on one part of the text), the fitted file beats every preset of its size on
# another part: lower mean KLD (pocketlm gap) at equal or smaller size.
val="$SHARED/data/tinystories/tinystories_val.txt"
if [ -e "$val" ] && "$PLM" calibrate --help >/dev/null 2>&1 && "$PLM" gap --help >/dev/null 2>&1; then
  head -c 60000 "$val" >"$TMP/cal.txt"
  tail -c 80000 "$val" >"$TMP/eval.txt"
  expect_exit 0 "calibrate --sensitivity" -- "$PLM" calibrate "$m32" -f "$TMP/cal.txt" -o "$TMP/measured.gguf" -c 64 --chunks 4 --sensitivity
  tiers=()
  for preset in Q2_K Q3_K_M Q4_0 Q4_K_M Q5_K_M; do
    "$PLM" quantize "$m32" "$TMP/preset-$preset.gguf" --type "$preset" --imatrix "$TMP/measured.gguf" 2>/dev/null
    "$PLM" quantize "$m32" "$TMP/fit-$preset.gguf" --imatrix "$TMP/measured.gguf" \
      --target-size "$(size_of "$TMP/preset-$preset.gguf")" 2>/dev/null || fail "fit to the size of $preset"
    tiers+=("$TMP/preset-$preset.gguf" "$TMP/fit-$preset.gguf")
  done
  expect_exit 0 "gap" -- "$PLM" gap --ref "$m32" "${tiers[@]}" -f "$TMP/eval.txt" -c 128 --chunks 8 --json "$TMP/gap.json"
  python3 - "$TMP/gap.json" <<'PY' && pass || fail "a fitted file beats each preset of its size"
import json, os, sys
rows = {os.path.basename(r["file"]): r for r in json.load(open(sys.argv[1]))}
bad = 0
for preset in ["Q2_K", "Q3_K_M", "Q4_0", "Q4_K_M", "Q5_K_M"]:
    p, f = rows[f"preset-{preset}.gguf"], rows[f"fit-{preset}.gguf"]
    ok = f["bytes"] <= p["bytes"] and f["kld_mean"] < p["kld_mean"]
    bad += not ok
    print(f"  {preset}: preset {p['bytes']} bytes KLD {p['kld_mean']:.5f}, fit {f['bytes']} bytes KLD {f['kld_mean']:.5f}{'' if ok else '  <- not better'}")
sys.exit(bad > 0)
PY
else
  echo "note: calibrate, gap or the TinyStories text missing: the fit is not compared with the presets"
fi

# Bad command lines (2) and bad files (1), each with a one-line error.
expect_exit 2 "unknown type" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --type Q4_K_X
expect_stderr "unknown type 'Q4_K_X'" "unknown type: named"; expect_one_line_error "unknown type"
expect_exit 2 "bad pattern" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --type Q4_0 --tensor-type 'blk.[0.weight=Q8_0'
expect_one_line_error "bad pattern"
expect_exit 2 "override without =" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --type Q4_0 --tensor-type 'Q8_0'
expect_exit 2 "override to a mix" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --type Q4_0 --tensor-type '*=Q4_K_M'
expect_exit 2 "no type" -- "$PLM" quantize "$m32" "$TMP/never.gguf"
expect_exit 2 "no output path" -- "$PLM" quantize "$m32" --type Q4_0
expect_exit 2 "bad target size" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --target-size 12X
expect_exit 2 "target size without imatrix" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --target-size 1M
expect_exit 2 "target size and device" -- "$PLM" quantize "$m32" "$TMP/never.gguf" --target-size 1M --device pixel-8
expect_exit 1 "missing input" -- "$PLM" quantize "$TMP/missing.gguf" "$TMP/never.gguf" --type Q4_0
expect_one_line_error "missing input"
head -c 3000 "$m32" >"$TMP/cut.gguf"
expect_exit 1 "truncated input" -- "$PLM" quantize "$TMP/cut.gguf" "$TMP/never.gguf" --type Q4_0
expect_one_line_error "truncated input"
expect_exit 1 "unwritable output" -- "$PLM" quantize "$m32" "$TMP/no/such/dir/out.gguf" --type Q4_0
expect_one_line_error "unwritable output"
[ ! -e "$TMP/never.gguf" ] && pass || fail "no output file after a failure"
expect_exit 0 "--list-types" -- "$PLM" quantize --list-types
grep -Eq "^  Q4_K_M " "$TMP/out" && pass || fail "--list-types lists Q4_K_M"
expect_exit 0 "--help" -- "$PLM" quantize --help
grep -q "Q4_K_M" "$TMP/out" && pass || fail "--help lists the presets"

# llama.cpp loads quantized files and generates the same greedy start.
REF=$(cd "$(dirname "$0")/../reference/llama_cpp" && pwd)
if [ "$(uname -sm)" != "Linux x86_64" ] || ! command -v node >/dev/null ||
   [ ! -d "$REF/node_modules/node-llama-cpp" ] || [ ! -d "$REF/node_modules/@node-llama-cpp/linux-x64" ]; then
  echo "note: node-llama-cpp is not installed: llama.cpp does not check the quantized files"
else
  # robust prefix length in characters: Q8_0 activations round differently in
  # the two runtimes, so only the start of the text must agree
  for case in "Q8_0 60" "Q4_0 20" "Q4_K_M 20"; do
    read -r preset chars <<<"$case"
    if node "$REF/llama_cpp_check.mjs" generate "$TMP/$preset.gguf" "Once upon a time" 32 >"$TMP/ref" 2>"$TMP/ref_err"; then
      pass
      "$PLM" run -m "$TMP/$preset.gguf" -p "Once upon a time" --temp 0 -n 32 >"$TMP/plm" 2>/dev/null
      [ "$(head -c "$chars" "$TMP/ref")" = "$(head -c "$chars" "$TMP/plm")" ] && pass ||
        fail "$preset: llama.cpp's greedy text starts '$(head -c "$chars" "$TMP/ref")', pocketlm's '$(head -c "$chars" "$TMP/plm")'"
    else
      fail "$preset: llama.cpp cannot load or run the file"; grep -v "warn" "$TMP/ref_err" | head -3
    fi
  done
fi
finish
