# The real Hugging Face model: convert it, check it tells a coherent story from
# BOS, and that f16/bf16 conversions agree with f32.
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors data/tinystories/tinystories_val.txt

src="$SHARED/models/tinystories-656k"
expect_exit 0 "convert f32" -- "$PLM" convert "$src" -o "$TMP/m32.gguf"
expect_exit 0 "convert f16" -- "$PLM" convert "$src" -o "$TMP/m16.gguf" --outtype f16
expect_exit 0 "convert bf16" -- "$PLM" convert "$src" -o "$TMP/mbf16.gguf" --outtype bf16
"$PLM" info "$TMP/m16.gguf" | grep -Eq "F16 +15 tensors" && pass || fail "f16 file holds its 15 matrices (7 per layer + embedding) as F16"

# The model was trained on text where "<|end_story|>" is spelled with ordinary
# tokens, so it writes that text rather than the EOS token: stop on it.
expect_exit 0 "greedy story" -- "$PLM" run -m "$TMP/m32.gguf" --temp 0 -n 300 --stop "<|end_story|>"
story=$(cat "$TMP/out")
[[ "$story" == "Once upon a time"* ]] && pass || fail "story starts with 'Once upon a time': '${story:0:40}'"
expect_stderr "stop: stop string" "the story ends by itself"

# Coherence: a long story whose words are nearly all words of real TinyStories text.
# Broken weights or a broken tokenizer produce fragments that are not words.
python3 - "$TMP/out" "$SHARED/data/tinystories/tinystories_val.txt" <<'PY' && pass || fail "story is coherent English"
import re, sys
story = open(sys.argv[1]).read()
known = set(re.findall(r"[a-z]+", open(sys.argv[2]).read().lower()))
words = re.findall(r"[a-z]+", story.lower())
share = sum(w in known for w in words) / max(len(words), 1)
print(f"{len(words)} words, {share:.1%} known")
sys.exit(0 if len(words) >= 80 and share >= 0.97 else 1)
PY

# 16-bit weights round the same model: the greedy story may drift late, but starts the same.
"$PLM" run -m "$TMP/m16.gguf" --temp 0 -n 40 >"$TMP/s16" 2>/dev/null
"$PLM" run -m "$TMP/m32.gguf" --temp 0 -n 40 >"$TMP/s32" 2>/dev/null
[ "$(head -c 60 "$TMP/s16")" = "$(head -c 60 "$TMP/s32")" ] && pass || fail "f16 and f32 stories start alike"

# Tokenizer: BOS and the model's own pieces.
expect_exit 0 "tokenize" -- "$PLM" tokenize -m "$TMP/m32.gguf" -p "Once upon a time"
[[ "$(cat "$TMP/out")" == "1 "* ]] && pass || fail "tokenize starts with BOS 1: $(cat "$TMP/out")"
expect_exit 0 "tokenize --no-bos" -- "$PLM" tokenize -m "$TMP/m32.gguf" -p "<|end_story|>" --no-bos --parse-special
[ "$(cat "$TMP/out")" = "2" ] && pass || fail "--parse-special gives EOS: $(cat "$TMP/out")"
expect_exit 2 "tokenize without text" -- "$PLM" tokenize -m "$TMP/m32.gguf"
finish
