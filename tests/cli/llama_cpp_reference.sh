# Cross-check against llama.cpp itself: pocketlm converts the real models, then
# llama.cpp (the reference GGUF runtime, through node-llama-cpp's prebuilt CPU
# binary: tests/reference/llama_cpp/llama_cpp_check.mjs) must load each file,
# tokenize text to the same ids, generate the same greedy text and measure the
# same perplexity as pocketlm does on that file.
#
# Needs: npm install --prefix tests/reference/llama_cpp --omit=optional
. "$(dirname "$0")/common.bash"
need_shared models/stories260K/stories260K.bin models/stories260K/tok512.bin \
  models/tinystories-656k/model.safetensors data/tinystories/tinystories_val.txt

REF=$(cd "$(dirname "$0")/../reference/llama_cpp" && pwd)
[ "$(uname -sm)" = "Linux x86_64" ] || { echo "skipping: llama.cpp's prebuilt binary here is for Linux x86_64 only"; exit 77; }
command -v node >/dev/null || { echo "skipping: node not found"; exit 77; }
[ -d "$REF/node_modules/node-llama-cpp" ] && [ -d "$REF/node_modules/@node-llama-cpp/linux-x64" ] || {
  echo "skipping: node-llama-cpp not installed (npm install --prefix tests/reference/llama_cpp --omit=optional)"; exit 77; }
llama() { node "$REF/llama_cpp_check.mjs" "$@"; }

# Relative difference of two numbers within a tolerance.
close() { python3 -c 'import sys; a, b, tol = map(float, sys.argv[1:]); sys.exit(abs(a - b) > tol * abs(b))' "$@"; }

# Show llama.cpp's warnings about a file (they are not failures: llama.cpp warns
# about any vocabulary whose EOS text is not one it knows, e.g. <|end_story|>).
show_warnings() { grep '^llama.cpp warn' "$TMP/err" | sort -u | sed "s/^/  note ($1): /"; }

have_tokenize=1
"$PLM" tokenize --help >/dev/null 2>&1 || have_tokenize=0
[ "$have_tokenize" -eq 1 ] || echo "note: 'pocketlm tokenize' is missing: tokenization is not compared"

# Text that tends to break tokenizers: spaces at either end, runs of spaces,
# newlines, tabs, CR LF, digits, punctuation, accents, CJK, emoji (byte fallback),
# special-token text taken literally, and a few paragraphs of a real story.
texts=(
  "Once upon a time"
  "Hello world"
  "Hello  world,   three   spaces"
  " leading space"
  "trailing space "
  "  two leading spaces"
  "   "
  " "
  "a"
  ""
  "line one
line two"
  "
"
  "

two newlines first"
  "ends with a newline
"
  "tab	inside"
  "windows line$(printf '\r')
ending"
  "1234567890"
  "3.14159 and 42, not 4 2"
  "In 2024, 7 cats ate 365 fish."
  "Hello, world! How's it going?"
  "\"Quoted\" (parens) [brackets] {braces} - dash -- double ... dots"
  "Lily said: \"I'm 3 years old!\""
  "Don't, won't, can't; Mr. Smith's 2nd-grade class: 25 kids?"
  "café naïve résumé"
  "Ünïcödé ÀÉÎÕÜ ß"
  "日本語のテキスト"
  "emoji 🙂 and 🐶🐱"
  "mixed: a1b2c3 ü 🙂 end"
  "<s> and </s> and <unk> as text"
  "<|start_story|>Once<|end_story|>"
  "$(sed -n '1,5p' "$SHARED/data/tinystories/tinystories_val.txt")"
)
special_texts=("<s>Once upon</s>" "<|start_story|>Once<|end_story|>" "a<unk>b")

# Greedy prompts; "" is generation from BOS alone.
prompts=("Once upon a time" "" "Tom and his dog" "The little bird said \"Hello" "Lily was happy.
One day")

sed -n '1,150p' "$SHARED/data/tinystories/tinystories_val.txt" >"$TMP/val.txt"

check_model() {
  local name=$1 model=$2 ppl_tolerance=$3

  # (a) llama.cpp loads the file and reads the same header facts.
  expect_exit 0 "$name: llama.cpp loads the file" -- llama info "$model"
  show_warnings "$name"
  cp "$TMP/out" "$TMP/llama_info.json"
  "$PLM" info "$model" --json >"$TMP/plm_info.json" 2>/dev/null || fail "$name: pocketlm info"
  python3 - "$TMP/llama_info.json" "$TMP/plm_info.json" <<'EOF' && pass || fail "$name: llama.cpp's header facts differ from pocketlm's"
import json, sys
ref, plm = (json.load(open(p)) for p in sys.argv[1:])
problems = [f"{k}: llama.cpp {ref[k]!r}, pocketlm {plm[k]!r}" for k in ("architecture", "n_vocab", "n_ctx_train") if ref[k] != plm[k]]
if not ref["eos_is_eog"]:
    problems.append("llama.cpp does not stop at EOS")
for p in problems:
    print("  " + p)
sys.exit(bool(problems))
EOF

  # (b) the same token ids, text by text.
  if [ "$have_tokenize" -eq 1 ]; then
    compare_tokens "$name" "$model" "" "${texts[@]}"
    compare_tokens "$name" "$model" --parse-special "${special_texts[@]}"
    # BOS: pocketlm adds llama.cpp's BOS id when llama.cpp would.
    local bos plain with_bos
    bos=$(python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); print(d["bos"] if d["add_bos"] else "")' "$TMP/llama_info.json")
    plain=$("$PLM" tokenize -m "$model" -p "Once upon a time" --no-bos 2>/dev/null)
    with_bos=$("$PLM" tokenize -m "$model" -p "Once upon a time" 2>/dev/null)
    [ "$with_bos" = "${bos:+$bos }$plain" ] && pass || fail "$name: BOS: pocketlm '$with_bos', llama.cpp adds '$bos' to '$plain'"
  fi

  # (c) greedy generation: the same text.
  local prompt
  for prompt in "${prompts[@]}"; do
    compare_generation "$name" "$model" "$prompt" 64
  done
  compare_generation "$name" "$model" "Once upon a time" 400

  # (d) perplexity, llama.cpp's way on both sides, over the same token stream.
  expect_exit 0 "$name: llama.cpp perplexity" -- llama perplexity "$model" "$TMP/val.txt" 128
  local ref_ppl ref_tokens plm_ppl plm_tokens
  ref_ppl=$(sed -n 's/^PPL = //p' "$TMP/out")
  ref_tokens=$(sed -n 's/^llama.cpp: \([0-9]*\) tokens,.*/\1/p' "$TMP/err")
  read -r plm_ppl plm_tokens < <("$PLM" perplexity -m "$model" -f "$TMP/val.txt" -c 128 --json 2>/dev/null |
    python3 -c 'import json,sys; d=json.loads(sys.stdin.read().rsplit("PPL =", 1)[0]); print(d["ppl"], d["n_tokens"])')
  [ -n "$ref_tokens" ] && [ "${plm_tokens-}" = "$ref_tokens" ] && pass || \
    fail "$name: perplexity text: pocketlm ${plm_tokens-?} tokens, llama.cpp ${ref_tokens:-?}"
  if [ -n "$ref_ppl" ] && [ -n "${plm_ppl-}" ] && close "$plm_ppl" "$ref_ppl" "$ppl_tolerance"; then pass; else
    fail "$name: perplexity: pocketlm ${plm_ppl-?}, llama.cpp ${ref_ppl:-?} (tolerance $ppl_tolerance relative)"; fi
  echo "$name: perplexity over $ref_tokens tokens: pocketlm $plm_ppl, llama.cpp $ref_ppl"
}

# compare_tokens NAME MODEL [--parse-special|""] TEXT...: pocketlm's ids (no BOS)
# equal llama.cpp's for every text.
compare_tokens() {
  local name=$1 model=$2 mode=$3; shift 3
  local flags=(--no-bos) ref_flags=()
  [ -n "$mode" ] && flags+=("$mode") && ref_flags+=("$mode")
  if ! llama tokenize "$model" "${ref_flags[@]}" "$@" >"$TMP/ref_ids" 2>"$TMP/err"; then
    fail "$name: llama.cpp tokenize"; sed 's/^/  stderr: /' "$TMP/err" | head -3; return
  fi
  local -a ref_ids
  mapfile -t ref_ids <"$TMP/ref_ids"
  local i=0 text ids
  for text in "$@"; do
    ids=$("$PLM" tokenize -m "$model" -p "$text" "${flags[@]}" 2>"$TMP/err")
    if [[ "${ref_ids[$i]-}" == "!"* ]]; then
      # llama.cpp aborts on characters it can neither find nor spell in bytes;
      # nothing to compare with, but pocketlm must cope (it uses <unk>).
      echo "  note ($name): $(printf '%q' "$text"): ${ref_ids[$i]#! }; pocketlm gives [$ids]"
      [ -n "$ids" ] && pass || fail "$name: pocketlm tokenize $(printf '%q' "$text") failed"
    elif [ "$ids" = "${ref_ids[$i]-}" ]; then pass; else
      fail "$name: tokenize ${mode:+$mode }$(printf '%q' "$text"): pocketlm [$ids], llama.cpp [${ref_ids[$i]-}]"; fi
    i=$((i + 1))
  done
}

# compare_generation NAME MODEL PROMPT N: `pocketlm run --temp 0` prints the text
# llama.cpp generates greedily (pocketlm ends it with one newline of its own).
compare_generation() {
  local name=$1 model=$2 prompt=$3 n=$4
  local what="$name: greedy $n tokens after $(printf '%q' "$prompt")"
  local prompt_flag=()
  [ -n "$prompt" ] && prompt_flag=(-p "$prompt")
  if ! llama generate "$model" "$prompt" "$n" >"$TMP/ref_text" 2>"$TMP/ref_err"; then
    fail "$what: llama.cpp failed"; sed 's/^/  stderr: /' "$TMP/ref_err" | head -3; return
  fi
  if ! "$PLM" run -m "$model" "${prompt_flag[@]}" --temp 0 -n "$n" >"$TMP/plm_text" 2>"$TMP/plm_err"; then
    fail "$what: pocketlm failed"; sed 's/^/  stderr: /' "$TMP/plm_err" | head -3; return
  fi
  if [ "$(tail -c 1 "$TMP/plm_text" | od -An -c | tr -d ' ')" != '\n' ]; then
    fail "$what: pocketlm's output does not end with a newline"; return
  fi
  head -c -1 "$TMP/plm_text" >"$TMP/plm_text.trimmed"
  if cmp -s "$TMP/ref_text" "$TMP/plm_text.trimmed"; then pass; else
    fail "$what: the texts differ"
    python3 - "$TMP/ref_text" "$TMP/plm_text.trimmed" <<'EOF'
import sys
ref, plm = (open(p, encoding="utf-8", errors="replace").read() for p in sys.argv[1:])
at = next((i for i, (a, b) in enumerate(zip(ref, plm)) if a != b), min(len(ref), len(plm)))
print(f"  first difference at character {at}: ...{ref[max(0, at - 40):at]!r}")
print(f"  llama.cpp continues {ref[at:at + 60]!r}")
print(f"  pocketlm  continues {plm[at:at + 60]!r}")
EOF
    sed 's/^/  /' "$TMP/ref_err" "$TMP/plm_err" | grep -v "^  llama.cpp warn"
  fi
}

convert() {
  expect_exit 0 "convert $1" -- "$PLM" convert "${@:2}"
}
convert stories260K-f32 "$SHARED/models/stories260K/stories260K.bin" --vocab "$SHARED/models/stories260K/tok512.bin" -o "$TMP/s260k-f32.gguf"
convert stories260K-f16 "$SHARED/models/stories260K/stories260K.bin" --vocab "$SHARED/models/stories260K/tok512.bin" -o "$TMP/s260k-f16.gguf" --outtype f16
convert tinystories-656k-f32 "$SHARED/models/tinystories-656k" -o "$TMP/t656k-f32.gguf"
convert tinystories-656k-f16 "$SHARED/models/tinystories-656k" -o "$TMP/t656k-f16.gguf" --outtype f16

# F16 weights: llama.cpp's CPU matmul rounds the activations to F16 as well,
# pocketlm keeps them F32, so the perplexities may differ a little more.
check_model stories260K-f32 "$TMP/s260k-f32.gguf" 1e-5
check_model stories260K-f16 "$TMP/s260k-f16.gguf" 3e-4
check_model tinystories-656k-f32 "$TMP/t656k-f32.gguf" 1e-5
check_model tinystories-656k-f16 "$TMP/t656k-f16.gguf" 3e-4
finish
