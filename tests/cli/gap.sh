# pocketlm gap on the real TinyStories-656K model: the F32 conversion as the
# reference against its F16 conversion and a Q8_0 quantization, on the start of
# the TinyStories validation text. Checks the JSON figures (the reference
# against itself: no gap; F16: none either, as every weight of this checkpoint
# is a bfloat16 value that F16 holds exactly; Q8_0: a small gap), that the
# reference's perplexity is `pocketlm perplexity`'s, saved and reused reference
# files, the chart, and the errors.
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors data/tinystories/tinystories_val.txt

src="$SHARED/models/tinystories-656k"
expect_exit 0 "convert f32" -- "$PLM" convert "$src" -o "$TMP/m32.gguf"
expect_exit 0 "convert f16" -- "$PLM" convert "$src" -o "$TMP/m16.gguf" --outtype f16
expect_exit 0 "quantize q8_0" -- "$PLM" quantize "$TMP/m32.gguf" "$TMP/q8.gguf" --type Q8_0
# 12 kB of stories: 20 chunks of 128 tokens. Perplexity scores every chunk of a
# text, so both commands get this same text and no --chunks.
head -c 12000 "$SHARED/data/tinystories/tinystories_val.txt" >"$TMP/text.txt"

expect_exit 0 "gap" -- "$PLM" gap --ref "$TMP/m32.gguf" "$TMP/m16.gguf" "$TMP/q8.gguf" --text "$TMP/text.txt" \
  -c 128 -t 2 --json "$TMP/gap.json" --svg "$TMP/gap.svg" --save-ref "$TMP/ref.bin"
cp "$TMP/out" "$TMP/table.md"
grep -q "^| m32.gguf (ref) |" "$TMP/table.md" && grep -q "^| q8.gguf |" "$TMP/table.md" && pass ||
  fail "the Markdown table has a row per model: $(cat "$TMP/table.md")"
[ "$(grep -c '^|' "$TMP/table.md")" -eq 5 ] && pass || fail "header, rule and three rows"

expect_exit 0 "perplexity" -- "$PLM" perplexity -m "$TMP/m32.gguf" -f "$TMP/text.txt" -c 128
ppl=$(sed -n 's/^PPL = //p' "$TMP/out")

python3 - "$TMP/gap.json" "$ppl" <<'PY' && pass || fail "JSON figures"
import json, sys
rows = json.load(open(sys.argv[1]))
ppl = float(sys.argv[2])
assert [r["file"].rsplit("/", 1)[-1] for r in rows] == ["m32.gguf", "m16.gguf", "q8.gguf"], rows
required = ["file", "bytes", "bpw", "ppl", "ppl_ratio", "kld_mean", "kld_p99", "top1_agreement", "kld_median",
            "dp_mean", "dp_rms", "pp_tokens_per_s", "tg_tokens_per_s", "peak_rss_bytes"]
for r in rows:
    missing = [k for k in required if k not in r]
    assert not missing, (r["file"], missing)
    assert r["n_chunks"] == 20 and r["n_ctx"] == 128 and r["n_scored"] == 20 * 63, r
    assert r["pp_tokens_per_s"] > 0 and r["tg_tokens_per_s"] > 0 and r["peak_rss_bytes"] > 1 << 20, r
ref, f16, q8 = rows
assert ref["kld_mean"] == 0 and ref["kld_p99"] == 0 and ref["kld_max"] == 0, ref
assert ref["top1_agreement"] == 1 and ref["dp_rms"] == 0, ref
assert abs(ref["ppl"] - ppl) <= 1e-4 * ppl, (ref["ppl"], ppl)
assert abs(ref["ppl_ratio"] - 1) < 1e-6, ref
assert abs(ref["bpw"] - 32) < 0.01 and 15.9 < f16["bpw"] < 16.1 and 8.4 < q8["bpw"] < 8.6, rows
assert ref["bytes"] > f16["bytes"] > q8["bytes"], rows
assert 0 <= f16["kld_mean"] < 1e-4 and f16["top1_agreement"] > 0.99, f16
assert 0 < q8["kld_mean"] < 0.01 and q8["kld_median"] <= q8["kld_p99"] <= q8["kld_max"], q8
assert q8["top1_agreement"] > 0.9 and abs(q8["ppl_ratio"] - 1) < 0.02, q8
assert abs(q8["ppl_ratio"] - q8["ppl"] / ref["ppl"]) < 1e-6, q8
print(f"reference ppl {ref['ppl']:.4f} (perplexity {ppl}), f16 kld {f16['kld_mean']:.3g}, "
      f"q8_0 kld {q8['kld_mean']:.3g} top-1 {q8['top1_agreement']:.3f}")
PY

# The chart: well-formed XML, the frontier drawn through the Q8_0 point, the
# points with KLD 0 left out and the caption saying so.
python3 - "$TMP/gap.svg" <<'PY' && pass || fail "SVG chart"
import sys, xml.dom.minidom
doc = xml.dom.minidom.parse(sys.argv[1])
lines = [p for p in doc.getElementsByTagName("polyline") if p.getAttribute("class") == "highlight"]
assert len(lines) == 1 and lines[0].getAttribute("points").strip(), "no frontier line"
texts = [t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild]
assert "q8.gguf" in texts and "Pareto frontier" in texts, texts
assert "m32.gguf" not in texts, texts
assert any("m32.gguf (reference)" in t and "log axis" in t for t in texts), texts
# F16 holds this model's bf16-exact weights, so its KLD is 0 or kernel rounding
# (about 1e-8): drawn when above 0, named in the caption when not.
f16_drawn = "m16.gguf" in texts
assert f16_drawn or any("m16.gguf" in t for t in texts), texts
assert len(doc.getElementsByTagName("circle")) == 1 + f16_drawn
PY

# The saved reference gives the same figures without the text; a model that is
# not the reference's is refused only if its vocabulary differs.
expect_exit 0 "gap --use-ref" -- "$PLM" gap --use-ref "$TMP/ref.bin" "$TMP/q8.gguf" --no-speed --json "$TMP/reuse.json"
python3 - "$TMP/gap.json" "$TMP/reuse.json" <<'PY' && pass || fail "--use-ref gives the same figures"
import json, sys
first = json.load(open(sys.argv[1]))[2]
again = json.load(open(sys.argv[2]))
assert len(again) == 1 and "pp_tokens_per_s" not in again[0], again
for key in ["ppl", "ppl_ratio", "kld_mean", "kld_p99", "top1_agreement", "dp_mean", "dp_rms"]:
    assert first[key] == again[0][key], (key, first[key], again[0][key])
PY

# --device adds whether each model fits.
expect_exit 0 "gap --device" -- "$PLM" gap --use-ref "$TMP/ref.bin" --ref "$TMP/m32.gguf" "$TMP/q8.gguf" \
  --no-speed --device pixel-8 --json "$TMP/device.json"
python3 - "$TMP/device.json" <<'PY' && pass || fail "--device: fits and bandwidth-bound speed"
import json, sys
rows = json.load(open(sys.argv[1]))
assert all(r["fits"] is True and r["device_tokens_per_s"] > 0 for r in rows), rows
assert rows[0]["kld_mean"] == 0 and rows[0]["reference"], rows
PY
grep -q "fits pixel-8" "$TMP/out" && pass || fail "the table has the fits column"

# Errors: the command line (2), unusable inputs (1), each with a one-line message.
expect_exit 2 "no --text" -- "$PLM" gap --ref "$TMP/m32.gguf" "$TMP/q8.gguf"
expect_stderr "--text" "the message names the missing option"
expect_one_line_error "no --text"
expect_exit 2 "no --ref" -- "$PLM" gap "$TMP/q8.gguf" --text "$TMP/text.txt"
expect_exit 2 "--use-ref with --text" -- "$PLM" gap --use-ref "$TMP/ref.bin" "$TMP/q8.gguf" --text "$TMP/text.txt"
expect_exit 2 "-c 2" -- "$PLM" gap --ref "$TMP/m32.gguf" --text "$TMP/text.txt" -c 2
expect_exit 2 "unknown device" -- "$PLM" gap --ref "$TMP/m32.gguf" --text "$TMP/text.txt" --device no-such-phone
expect_exit 0 "--help" -- "$PLM" gap --help
expect_exit 1 "unreadable tier" -- "$PLM" gap --ref "$TMP/m32.gguf" "$TMP/missing.gguf" --text "$TMP/text.txt"
expect_stderr "missing.gguf" "the message names the file"
expect_one_line_error "unreadable tier"
expect_exit 1 "unreadable text" -- "$PLM" gap --ref "$TMP/m32.gguf" --text "$TMP/missing.txt"

printf 'not a gguf file' >"$TMP/junk.gguf"
expect_exit 1 "tier that is not a model" -- "$PLM" gap --use-ref "$TMP/ref.bin" "$TMP/junk.gguf" --no-speed
expect_one_line_error "tier that is not a model"

head -c 1000 "$TMP/ref.bin" >"$TMP/short.bin"
expect_exit 1 "truncated reference" -- "$PLM" gap --use-ref "$TMP/short.bin" "$TMP/q8.gguf" --no-speed
expect_stderr "short.bin" "the message names the reference file"

if [ -e "$SHARED/models/stories260K/stories260K.bin" ]; then
  expect_exit 0 "convert stories260K" -- "$PLM" convert "$SHARED/models/stories260K/stories260K.bin" \
    --vocab "$SHARED/models/stories260K/tok512.bin" -o "$TMP/s260k.gguf"
  expect_exit 1 "vocabulary mismatch" -- "$PLM" gap --use-ref "$TMP/ref.bin" "$TMP/s260k.gguf" --no-speed
  expect_stderr "2048-token vocabulary, the model 512" "the message gives both vocabulary sizes"
fi
finish
