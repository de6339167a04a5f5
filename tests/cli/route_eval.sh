# pocketlm route-eval on real models: TinyStories-656K quantized to Q4_0 as the
# device and its F32 conversion as the upstream (one vocabulary), and
# stories260K as the device of the same upstream (two vocabularies). Checks the
# JSON (fields, rates rising from 0 to 1, quality at 0% = the device answers'
# mean, at 100% = the upstream answers', the oracle above every signal, the
# recommendation within its target), a model against itself (no gain
# anywhere), JSON-lines prompts, the chart, and the command-line errors.
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors models/stories260K/stories260K.bin

models="$SHARED/models"
prompts="$(dirname "$0")/../data/route_prompts.txt"
expect_exit 0 "convert 656k" -- "$PLM" convert "$models/tinystories-656k" -o "$TMP/f32.gguf"
expect_exit 0 "convert 260k" -- "$PLM" convert "$models/stories260K/stories260K.bin" \
  --vocab "$models/stories260K/tok512.bin" -o "$TMP/s260k.gguf"
expect_exit 0 "quantize" -- "$PLM" quantize "$TMP/f32.gguf" "$TMP/q4.gguf" --type Q4_0
head -8 "$prompts" >"$TMP/prompts.txt"

expect_exit 0 "route-eval Q4_0 -> F32" -- "$PLM" route-eval --device "$TMP/q4.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/prompts.txt" -n 24 --first-tokens 8 --target-rate 0.3 -t 2 --json "$TMP/q4.json" --svg "$TMP/q4.svg"
cp "$TMP/out" "$TMP/q4.md"
grep -q '^| statistic | escalate when | area over random |' "$TMP/q4.md" && grep -q '^| p10_prob' "$TMP/q4.md" &&
  grep -q '^### p90_entropy' "$TMP/q4.md" && grep -q '"min_token_prob_quantile"\|"entropy_quantile"' "$TMP/q4.md" &&
  pass || fail "Markdown tables and the recommended rule: $(head -20 "$TMP/q4.md")"

check_json() { # FILE TARGET
  python3 - "$1" "$2" <<'PY'
import json, math, sys
r = json.load(open(sys.argv[1]))
target = float(sys.argv[2])
for k in ["device", "upstream", "n_prompts", "n_predict", "first_tokens", "target_rate", "quality_device",
          "quality_upstream", "best_statistic", "statistics", "prompts"]:
    assert k in r, k
n = r["n_prompts"]
assert n == len(r["prompts"]) and n >= 1, n
qa = sum(p["quality_device"] for p in r["prompts"]) / n
qb = sum(p["quality_upstream"] for p in r["prompts"]) / n
assert abs(qa - r["quality_device"]) < 1e-9 and abs(qb - r["quality_upstream"]) < 1e-9, (qa, qb, r)
for p in r["prompts"]:
    assert p["quality_device"] < 0 and p["quality_upstream"] < 0, p
    assert 1 <= p["device_tokens"] <= r["n_predict"], p
names = [s["name"] for s in r["statistics"]]
assert {"p10_prob", "p25_prob", "p50_prob", "mean_prob", "p90_entropy"} <= set(names), names
assert r["best_statistic"] == max(r["statistics"], key=lambda s: s["area_over_random"])["name"]
for s in r["statistics"]:
    curve = s["curve"]
    rates = [c["rate"] for c in curve]
    assert rates[0] == 0 and rates[-1] == 1 and all(a < b for a, b in zip(rates, rates[1:])), rates
    assert abs(curve[0]["quality"] - qa) < 1e-9 and abs(curve[-1]["quality"] - qb) < 1e-9, s["name"]
    # The threshold escalates exactly the prompts whose statistic crosses it.
    below = s["escalate_when"] == "below"
    values = [p["statistics"][s["name"]] for p in r["prompts"]]
    thresholds = [c["threshold"] for c in curve]
    assert thresholds == sorted(thresholds, reverse=not below), thresholds
    for c in curve:
        crossing = sum((v < c["threshold"]) if below else (v > c["threshold"]) for v in values)
        assert crossing == c["n_escalated"] == round(c["rate"] * n), (s["name"], c)
        assert c["oracle"] >= c["quality"] - 1e-9, c
        assert abs(c["random"] - (qa + c["rate"] * (qb - qa))) < 1e-9, c
    rec = s["recommended"]
    assert rec["rate"] <= target + 1e-9 and rec in curve, rec
    assert not any(target + 1e-9 >= c["rate"] > rec["rate"] for c in curve), (rec, target)
print(f"{n} prompts, device {qa:.4f}, upstream {qb:.4f}, best {r['best_statistic']}")
PY
}
check_json "$TMP/q4.json" 0.3 && pass || fail "Q4_0 -> F32 JSON"

python3 - "$TMP/q4.svg" <<'PY' && pass || fail "SVG chart"
import sys, xml.dom.minidom
doc = xml.dom.minidom.parse(sys.argv[1])
assert doc.documentElement.tagName == "svg"
assert doc.getElementsByTagName("polyline"), "no curve"
text = " ".join(t.firstChild.data for t in doc.getElementsByTagName("text") if t.firstChild)
assert "oracle" in text and "random" in text and "best signal" in text, text
PY

# Different vocabularies: stories260K's answers are scored on the upstream's
# tokenization of their text.
expect_exit 0 "route-eval 260K -> 656K" -- "$PLM" route-eval --device "$TMP/s260k.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/prompts.txt" -n 24 --first-tokens 8 -t 2 --json "$TMP/260k.json"
check_json "$TMP/260k.json" 0.2 && pass || fail "260K -> 656K JSON"

# A model against itself: the same answers, so no gain at any threshold.
# The prompts as JSON lines give the same prompts.
python3 -c 'import json,sys; [print(json.dumps({"prompt": l.rstrip("\n"), "id": i})) for i, l in enumerate(open(sys.argv[1]))]' \
  "$TMP/prompts.txt" >"$TMP/prompts.jsonl"
expect_exit 0 "route-eval self" -- "$PLM" route-eval --device "$TMP/f32.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/prompts.jsonl" -n 16 -t 2 --json "$TMP/self.json"
python3 - "$TMP/self.json" "$TMP/prompts.txt" <<'PY' && pass || fail "a model against itself"
import json, sys
r = json.load(open(sys.argv[1]))
assert [p["prompt"] for p in r["prompts"]] == open(sys.argv[2]).read().splitlines()
for p in r["prompts"]:
    assert p["device_answer"] == p["upstream_answer"] and p["quality_device"] == p["quality_upstream"], p
for s in r["statistics"]:
    assert all(c["quality"] == r["quality_device"] for c in s["curve"]), s["name"]
    assert abs(s["area_over_random"]) < 1e-12
PY

# Errors.
expect_exit 2 "no prompts option" -- "$PLM" route-eval --device "$TMP/q4.gguf" --upstream "$TMP/f32.gguf"
expect_exit 2 "target rate over 1" -- "$PLM" route-eval --device "$TMP/q4.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/prompts.txt" --target-rate 1.5
expect_exit 2 "K of 0" -- "$PLM" route-eval --device "$TMP/q4.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/prompts.txt" --first-tokens 0
expect_exit 1 "missing prompts file" -- "$PLM" route-eval --device "$TMP/q4.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/none.txt"
expect_one_line_error "missing prompts file"
printf 'Once upon a time\n{"text": "no prompt here"}\n' >"$TMP/bad.jsonl"
expect_exit 1 "JSON line without a prompt" -- "$PLM" route-eval --device "$TMP/q4.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/bad.jsonl"
expect_stderr 'bad.jsonl:2: a JSON line needs a string "prompt"' "the line is named"
printf 'Once upon a time\n{"prompt": "cut\n' >"$TMP/broken.jsonl"
expect_exit 1 "a line that is not JSON" -- "$PLM" route-eval --device "$TMP/q4.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/broken.jsonl"
expect_stderr "broken.jsonl:2: the line starts with '\{' but is not JSON" "the broken line is named"
# A prompt longer than the context is left out, the others kept.
{ head -1 "$TMP/prompts.txt"; python3 -c 'print("once " * 2000)'; sed -n 2p "$TMP/prompts.txt"; } >"$TMP/long.txt"
expect_exit 0 "a prompt too long" -- "$PLM" route-eval --device "$TMP/q4.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/long.txt" -n 8 -t 2 --json "$TMP/long.json"
expect_stderr "prompt 2 left out \(it does not fit a model's context\)" "the long prompt is left out"
python3 -c 'import json,sys; r = json.load(open(sys.argv[1])); assert r["n_prompts"] == 2 and len(r["prompts"]) == 2, r["n_prompts"]' \
  "$TMP/long.json" && pass || fail "two prompts kept"
printf '\n\n' >"$TMP/empty.txt"
expect_exit 1 "no prompts" -- "$PLM" route-eval --device "$TMP/q4.gguf" --upstream "$TMP/f32.gguf" --prompts "$TMP/empty.txt"
expect_stderr "holds no prompt" "an empty prompts file"
expect_exit 1 "missing model" -- "$PLM" route-eval --device "$TMP/none.gguf" --upstream "$TMP/f32.gguf" \
  --prompts "$TMP/prompts.txt"
expect_one_line_error "missing model"
expect_exit 0 "help" -- "$PLM" route-eval --help

finish
