# The real llama2.c model: convert it, check it tells the story llama2.c's
# documentation prints at temperature 0, and exercise every command on it.
. "$(dirname "$0")/common.bash"
need_shared models/stories260K/stories260K.bin models/stories260K/tok512.bin

model="$TMP/stories260K.gguf"
expect_exit 0 "convert stories260K" -- "$PLM" convert "$SHARED/models/stories260K/stories260K.bin" \
  --vocab "$SHARED/models/stories260K/tok512.bin" -o "$model"

# llama2.c doc/stories260K.md: `./run stories260K.bin -z tok512.bin -t 0.0` (256 steps).
expected='Once upon a time, there was a little girl named Lily. She loved to play outside in the park. One day, she saw a big, red ball. She wanted to play with it, but it was too high.
Lily'"'"'s mom said, "Lily, let'"'"'s go to the park." Lily was sad and didn'"'"'t know what to do. She said, "I want to play with your ball, but I can'"'"'t find it."
Lily was sad and didn'"'"'t know what to do. She said, "I'"'"'m sorry, Lily. I didn'"'"'t know what to do."
Lily didn'"'"'t want to help her mom, so she said, "I'"'"'m sorry, mom. I didn'"'"'t know what to do." Her mom said, "Don'"'"'t worry, Lily. We can help you.'
expect_exit 0 "greedy story" -- "$PLM" run -m "$model" --temp 0 -n 256
got=$(cat "$TMP/out")
if [ "$got" = "$expected" ]; then pass; else
  fail "greedy story differs from llama2.c's"; diff <(echo "$expected") <(echo "$got") | head -10; fi

# Same seed, same text; --echo prints the prompt first; -n bounds the length.
"$PLM" run -m "$model" -p "Once upon a time" --seed 7 -n 40 >"$TMP/a" 2>/dev/null
"$PLM" run -m "$model" -p "Once upon a time" --seed 7 -n 40 >"$TMP/b" 2>/dev/null
cmp -s "$TMP/a" "$TMP/b" && pass || fail "same seed gives the same text"
expect_exit 0 "echo" -- "$PLM" run -m "$model" -p "Once upon a time" --echo --temp 0 -n 5
grep -q "^Once upon a time" "$TMP/out" && pass || fail "--echo prints the prompt"
expect_stderr "generated 5 tokens" "-n 5 generates 5 tokens"

# A stop string ends generation and is not printed.
expect_exit 0 "stop string" -- "$PLM" run -m "$model" --temp 0 -n 256 --stop "Lily"
[ "$(cat "$TMP/out")" = "Once upon a time, there was a little girl named " ] && pass || \
  fail "stop string: got '$(head -c 80 "$TMP/out")'"
expect_stderr "stop: stop string" "stop reason reported"

# Prompt longer than the context: a clear error, exit 1.
expect_exit 1 "prompt too long" -- "$PLM" run -m "$model" -c 16 -p "$(printf 'once upon a time %.0s' $(seq 20))"
expect_stderr "prompt is [0-9]+ tokens but the context holds 16" "prompt too long"

# Generation stops when the context is full.
expect_exit 0 "context full" -- "$PLM" run -m "$model" -c 32 --temp 0
expect_stderr "stop: context full" "context full"

# Memory: --mem-budget refuses what would not fit and says what would; --kv-type.
expect_exit 1 "over the memory budget" -- "$PLM" run -m "$model" --mem-budget 1500K -p hi -n 2
expect_stderr "over the budget of 1.5 MiB; a context of at most [0-9]+ tokens fits" "budget names the context that fits"
fits=$(grep -Eo "at most [0-9]+" "$TMP/err" | grep -Eo "[0-9]+")
expect_exit 0 "the context it names fits" -- "$PLM" run -m "$model" --mem-budget 1500K -c "$fits" -p hi -n 2
expect_exit 1 "budget below the weights" -- "$PLM" run -m "$model" --mem-budget 100K -p hi
expect_stderr "no context fits" "budget below the weights"
expect_exit 2 "malformed budget" -- "$PLM" run -m "$model" --mem-budget lots -p hi
expect_exit 0 "f16 KV cache" -- "$PLM" run -m "$model" --kv-type f16 --temp 0 -n 30
[[ "$(cat "$TMP/out")" == "Once upon a time, there was a little girl named Lily."* ]] && pass || fail "f16 cache tells the same story"
expect_exit 1 "q8_0 cache with 8-wide heads" -- "$PLM" run -m "$model" --kv-type q8_0 -p hi
expect_stderr "multiple of 32" "q8_0 cache with 8-wide heads"
expect_exit 2 "unknown KV type" -- "$PLM" run -m "$model" --kv-type q3 -p hi

# Invalid sampling parameters are a usage error.
expect_exit 2 "negative temperature" -- "$PLM" run -m "$model" --temp -1

# tokenize: ids on one line, BOS first unless --no-bos.
expect_exit 0 "tokenize" -- "$PLM" tokenize -m "$model" -p "Once upon a time"
[ "$(cat "$TMP/out")" = "1 403 407 261 378" ] && pass || fail "tokenize: $(cat "$TMP/out")"
expect_exit 0 "tokenize --no-bos" -- "$PLM" tokenize -m "$model" -p "Once upon a time" --no-bos
[ "$(cat "$TMP/out")" = "403 407 261 378" ] && pass || fail "tokenize --no-bos: $(cat "$TMP/out")"

# info, text and JSON.
expect_exit 0 "info" -- "$PLM" info "$model"
grep -q "architecture: *llama" "$TMP/out" && pass || fail "info names the architecture"
grep -q "vocabulary: *512 tokens" "$TMP/out" && pass || fail "info gives the vocabulary"
expect_exit 0 "info --json" -- "$PLM" info "$model" --json -c 256
python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["n_layer"]==5 and d["n_head_kv"]==4 and d["memory"]["n_ctx"]==256, d' \
  "$TMP/out" && pass || fail "info --json content"

# perplexity: last stdout line is "PPL = <value>".
head -c 20000 "$SHARED/data/tinystories/tinystories_val.txt" >"$TMP/val.txt" 2>/dev/null || \
  printf 'Once upon a time there was a girl. %.0s' $(seq 300) >"$TMP/val.txt"
expect_exit 0 "perplexity" -- "$PLM" perplexity -m "$model" -f "$TMP/val.txt" -c 128
last=$(tail -n 1 "$TMP/out")
if [[ "$last" =~ ^PPL\ =\ ([0-9.]+)$ ]] && python3 -c "import sys; v=float(sys.argv[1]); assert 1.5 < v < 20, v" "${BASH_REMATCH[1]}"; then
  pass; else fail "perplexity output: '$last'"; fi
expect_exit 1 "perplexity of a too-short text" -- "$PLM" perplexity -m "$model" -f <(echo hi) -c 128
expect_stderr "fewer than one chunk" "too-short text"

# chat from a pipe, with a named template (the model has none of its own).
expect_exit 1 "chat without a template" -- bash -c "echo hello | '$PLM' chat -m '$model'"
expect_stderr "no chat template" "chat without a template"
printf 'Tell me a story.\nAnd another one.\n' | "$PLM" chat -m "$model" --chat-template chatml -n 20 --temp 0 \
  >"$TMP/out" 2>"$TMP/err" && pass || fail "chat from a pipe"
[ "$(grep -c . "$TMP/out")" -ge 2 ] && pass || fail "chat answers both turns"
# A message too long for the context is refused, and the chat goes on.
printf '%s\nHi.\n' "$(printf 'word %.0s' $(seq 200))" | "$PLM" chat -m "$model" --chat-template chatml -c 64 -n 8 --temp 0 \
  >"$TMP/out" 2>"$TMP/err" && pass || fail "chat survives a too-long message"
expect_stderr "It was not sent" "too-long chat message"
finish
