# pocketlm calibrate on the real TinyStories-656K model: an importance matrix
# and sensitivities from real text, and clear failures on bad input.
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors data/tinystories/tinystories_val.txt

text="$SHARED/data/tinystories/tinystories_val.txt"
expect_exit 0 "convert" -- "$PLM" convert "$SHARED/models/tinystories-656k" -o "$TMP/m.gguf"

# Importance only; the model given first, as the issue writes it.
expect_exit 0 "calibrate" -- "$PLM" calibrate "$TMP/m.gguf" --text "$text" -o "$TMP/imatrix.gguf" -c 128 --chunks 4 -t 2
grep -q "^4 chunks of 128 tokens (512 tokens), 15 matrices" "$TMP/out" && pass || fail "summary: $(cat "$TMP/out")"
# The file is GGUF with llama.cpp's keys and one in_sum2/counts pair per matrix
# (tied output: token_embd.weight), each count the number of tokens.
python3 - "$TMP/imatrix.gguf" <<'PY' && pass || fail "imatrix layout"
import struct, sys
data = open(sys.argv[1], "rb").read()
assert data[:4] == b"GGUF", "magic"
n_tensors, n_kv = struct.unpack_from("<QQ", data, 8)
assert n_tensors == 30, n_tensors
for key in (b"general.type", b"imatrix.chunk_count", b"imatrix.chunk_size", b"imatrix.datasets"):
    assert key in data, key
assert b"token_embd.weight.in_sum2" in data and b"blk.1.ffn_down.weight.counts" in data
untied = b"output.weight.in_sum2"  # a GGUF string: its u64 length, then the bytes
assert struct.pack("<Q", len(untied)) + untied not in data and b".kld" not in data
PY

# Same text, same chunks: the same bytes.
expect_exit 0 "calibrate again" -- "$PLM" calibrate -m "$TMP/m.gguf" -f "$text" -o "$TMP/again.gguf" -c 128 --chunks 4 -t 1
cmp -s "$TMP/imatrix.gguf" "$TMP/again.gguf" && pass || fail "two runs write the same bytes"

# Sensitivities: a table of KLD per tensor and candidate type; 128-wide rows do
# not fit K-quant blocks, so Q2_K and Q3_K are stored (and measured) as Q4_0.
expect_exit 0 "calibrate --sensitivity" -- "$PLM" calibrate "$TMP/m.gguf" --text "$text" -o "$TMP/sens.gguf" -c 64 --chunks 2 --sensitivity -t 2
python3 - "$TMP/out" <<'PY' && pass || fail "sensitivity table"
import sys
lines = open(sys.argv[1]).read().splitlines()
header = lines[0].split()
types = header[-11:]
assert types == ["Q2_K", "Q3_K", "Q4_0", "Q4_1", "Q4_K", "Q5_0", "Q5_1", "Q5_K", "Q6_K", "Q8_0", "F16"], header
rows = [l.split() for l in lines[1:16]]
assert rows[0][0] == "token_embd.weight" and rows[-1][0] == "blk.1.ffn_down.weight", rows
for r in rows:
    kld = dict(zip(types, map(float, r[1:])))
    assert all(v >= 0 for v in kld.values()), r
    assert kld["Q2_K"] == kld["Q4_0"] and kld["Q4_0"] > kld["Q8_0"] >= kld["F16"], r
    assert kld["Q4_0"] > 0 and kld["F16"] < 1e-4, r
PY

# Errors: one clear line each, exit 1 for unusable input, 2 for a bad command line.
expect_exit 2 "no text" -- "$PLM" calibrate "$TMP/m.gguf" -o "$TMP/x.gguf"
expect_exit 2 "no output" -- "$PLM" calibrate "$TMP/m.gguf" --text "$text"
expect_exit 2 "model twice" -- "$PLM" calibrate "$TMP/m.gguf" -m "$TMP/m.gguf" --text "$text" -o "$TMP/x.gguf"
expect_exit 2 "tiny context" -- "$PLM" calibrate "$TMP/m.gguf" --text "$text" -o "$TMP/x.gguf" -c 2
expect_exit 1 "missing text" -- "$PLM" calibrate "$TMP/m.gguf" --text "$TMP/none.txt" -o "$TMP/x.gguf"
expect_stderr "cannot read" "missing text is named"
: >"$TMP/empty.txt"
expect_exit 1 "empty text" -- "$PLM" calibrate "$TMP/m.gguf" --text "$TMP/empty.txt" -o "$TMP/x.gguf"
expect_stderr "is empty" "empty text is named"
expect_one_line_error "empty text"
echo "Once upon a time there was a cat." >"$TMP/short.txt"
expect_exit 1 "short text" -- "$PLM" calibrate "$TMP/m.gguf" --text "$TMP/short.txt" -o "$TMP/x.gguf" -c 128
expect_stderr "needs at least 128 tokens .*the text has [0-9]+" "short text says how many tokens"
expect_one_line_error "short text"
head -c 100 "$TMP/m.gguf" >"$TMP/bad.gguf"
expect_exit 1 "bad model" -- "$PLM" calibrate "$TMP/bad.gguf" --text "$text" -o "$TMP/x.gguf"
expect_one_line_error "bad model"
expect_exit 1 "unwritable output" -- "$PLM" calibrate "$TMP/m.gguf" --text "$text" -o "$TMP/no/such/dir/x.gguf"
expect_stderr "cannot write" "unwritable output is named"
[ ! -e "$TMP/x.gguf" ] && pass || fail "no output written on failure"
expect_exit 0 "help" -- "$PLM" calibrate --help

finish
