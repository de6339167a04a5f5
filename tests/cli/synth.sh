# pocketlm synth: the command line, exit codes (2 bad command line, 1 failed job)
# and files that the other commands use.
. "$(dirname "$0")/common.bash"

expect_exit 0 "synth --help" -- "$PLM" synth --help
grep -q "usage: pocketlm synth SHAPE --type TYPE -o OUT.gguf" "$TMP/out" && pass || fail "help shows the usage"
for shape in smollm2-135m smollm2-360m qwen2.5-0.5b llama-3.2-1b qwen3-0.6b; do
  grep -q "$shape" "$TMP/out" && pass || fail "help lists $shape"
done

# Bad command lines: exit 2, one line saying what is wrong.
expect_exit 2 "no arguments" -- "$PLM" synth
expect_one_line_error "no arguments"
expect_exit 2 "no --type" -- "$PLM" synth smollm2-135m -o "$TMP/x.gguf"
expect_exit 2 "no -o" -- "$PLM" synth smollm2-135m --type q8_0
expect_exit 2 "unknown shape" -- "$PLM" synth gpt-5 --type q8_0 -o "$TMP/x.gguf"
expect_stderr "unknown shape 'gpt-5' \(known: smollm2-135m, .*qwen3-0.6b\)" "unknown shape"
expect_one_line_error "unknown shape"
expect_exit 2 "unknown type" -- "$PLM" synth smollm2-135m --type q9_9 -o "$TMP/x.gguf"
expect_stderr "tensor type 'q9_9'" "unknown type"
expect_one_line_error "unknown type"
expect_exit 2 "activation-only type" -- "$PLM" synth smollm2-135m --type q8_k -o "$TMP/x.gguf"
expect_exit 2 "too many layers" -- "$PLM" synth smollm2-135m --type q8_0 --layers 31 -o "$TMP/x.gguf"
expect_stderr "has 30 layers" "too many layers"
expect_exit 2 "zero layers" -- "$PLM" synth smollm2-135m --type q8_0 --layers 0 -o "$TMP/x.gguf"
expect_exit 2 "layers not a number" -- "$PLM" synth smollm2-135m --type q8_0 --layers two -o "$TMP/x.gguf"
expect_exit 2 "negative seed" -- "$PLM" synth smollm2-135m --type q8_0 --seed -1 -o "$TMP/x.gguf"
expect_exit 2 "unknown option" -- "$PLM" synth smollm2-135m --type q8_0 --bogus -o "$TMP/x.gguf"
expect_exit 2 "two shapes" -- "$PLM" synth smollm2-135m qwen3-0.6b --type q8_0 -o "$TMP/x.gguf"
[ -e "$TMP/x.gguf" ] && fail "a refused command wrote a file" || pass

# Jobs that cannot be done: exit 1, one line, nothing left behind.
expect_exit 1 "output directory missing" -- "$PLM" synth smollm2-135m --type q8_0 --layers 1 -o "$TMP/none/x.gguf"
expect_one_line_error "output directory missing"
expect_exit 1 "vocab file missing" -- "$PLM" synth smollm2-135m --type q8_0 --layers 1 --vocab "$TMP/nope.gguf" -o "$TMP/x.gguf"
expect_stderr "nope.gguf" "vocab file missing"
expect_one_line_error "vocab file missing"
printf 'not a vocabulary\n' >"$TMP/text.gguf"
expect_exit 1 "vocab not GGUF" -- "$PLM" synth smollm2-135m --type q8_0 --layers 1 --vocab "$TMP/text.gguf" -o "$TMP/x.gguf"
expect_one_line_error "vocab not GGUF"
ls "$TMP" | grep -q "x.gguf" && fail "a failed job left files: $(ls "$TMP")" || pass

# A file: reproducible, described by info, runnable.
expect_exit 0 "synth smollm2-135m" -- "$PLM" synth smollm2-135m --type q8_0 --layers 1 --seed 3 -o "$TMP/a.gguf"
expect_stderr "wrote .*a.gguf \([0-9.]+ MiB\) in [0-9.]+ s" "summary line"
expect_exit 0 "same seed again" -- "$PLM" synth smollm2-135m --type Q8_0 --layers 1 --seed 3 -o "$TMP/b.gguf"
cmp -s "$TMP/a.gguf" "$TMP/b.gguf" && pass || fail "the same seed gives a different file"
expect_exit 0 "another seed" -- "$PLM" synth smollm2-135m --type q8_0 --layers 1 --seed 4 -o "$TMP/c.gguf"
cmp -s "$TMP/a.gguf" "$TMP/c.gguf" && fail "another seed gives the same file" || pass

expect_exit 0 "info on the file" -- "$PLM" info "$TMP/a.gguf"
grep -q "architecture: *llama" "$TMP/out" && pass || fail "info: architecture"
grep -q "layers: *1$" "$TMP/out" && pass || fail "info: layers"
grep -q "vocabulary: *49152 tokens" "$TMP/out" && pass || fail "info: vocabulary"
grep -q "embedding: *576" "$TMP/out" && pass || fail "info: embedding"
expect_exit 0 "run on the file" -- "$PLM" run -m "$TMP/a.gguf" -p "Hello" -n 4 --temp 0 -c 64

# k-quants on rows of 576 fall back, and say so.
expect_exit 0 "q4_k with fallback" -- "$PLM" synth smollm2-135m --type q4_k --layers 1 -o "$TMP/k.gguf"
expect_stderr "rows of 576, not a multiple of the Q4_K block size 256: stored as Q5_0" "fallback note"

# The real vocabularies.
if [ -e "$SHARED/models/gguf-vocab/ggml-vocab-gpt-2.gguf" ]; then
  expect_exit 1 "vocab larger than the model" -- "$PLM" synth smollm2-135m --type q8_0 --layers 1 \
    --vocab "$SHARED/models/gguf-vocab/ggml-vocab-gpt-2.gguf" -o "$TMP/v.gguf"
  expect_stderr "50257 tokens, more than smollm2-135m's 49152" "vocab larger than the model"
  expect_one_line_error "vocab larger than the model"
  expect_exit 0 "SentencePiece vocab" -- "$PLM" synth smollm2-135m --type q8_0 --layers 1 \
    --vocab "$SHARED/models/gguf-vocab/ggml-vocab-llama-spm.gguf" -o "$TMP/v.gguf"
  expect_exit 0 "info with the real vocab" -- "$PLM" info "$TMP/v.gguf"
  grep -q "vocabulary: *49152 tokens, llama tokenizer" "$TMP/out" && pass || fail "info: padded SentencePiece vocabulary"
else
  echo "note: $SHARED/models/gguf-vocab not found, real-vocabulary checks skipped"
fi
finish
