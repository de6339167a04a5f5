# Bad command lines and bad files: a clear one-line error and the right exit code, never a crash.
. "$(dirname "$0")/common.bash"

expect_exit 2 "no command" -- "$PLM"
expect_exit 2 "unknown command" -- "$PLM" frobnicate
expect_stderr "unknown command 'frobnicate'" "unknown command"
expect_exit 0 "top-level help" -- "$PLM" --help
for cmd in run chat info convert perplexity tokenize; do
  expect_exit 0 "$cmd --help" -- "$PLM" "$cmd" --help
  grep -q "usage: pocketlm $cmd" "$TMP/out" && pass || fail "$cmd --help prints usage"
done
expect_exit 2 "unknown option" -- "$PLM" run -m x.gguf --bogus
expect_stderr "unknown option '--bogus'" "unknown option"
expect_exit 2 "missing value" -- "$PLM" run -m
expect_stderr "needs a value" "missing value"
expect_exit 2 "bad number" -- "$PLM" run -m x.gguf -n lots
expect_stderr "expects an integer, got 'lots'" "bad number"
expect_exit 2 "no model" -- "$PLM" run -p hi
expect_exit 2 "convert without -o" -- "$PLM" convert somewhere
expect_exit 2 "bad outtype" -- "$PLM" convert somewhere -o x.gguf --outtype q9

expect_exit 1 "missing model file" -- "$PLM" run -m "$TMP/nope.gguf" -p hi
expect_stderr "cannot open '.*nope.gguf'" "missing model file"
expect_one_line_error "missing model file"

printf 'this is not a model file at all, just text\n' >"$TMP/text.gguf"
expect_exit 1 "not a GGUF file" -- "$PLM" info "$TMP/text.gguf"
expect_stderr "magic" "not a GGUF file"
expect_one_line_error "not a GGUF file"

: >"$TMP/empty.gguf"
expect_exit 1 "empty file" -- "$PLM" run -m "$TMP/empty.gguf"
expect_one_line_error "empty file"

head -c 4096 /dev/urandom >"$TMP/random.gguf"
expect_exit 1 "random bytes" -- "$PLM" info "$TMP/random.gguf"
expect_one_line_error "random bytes"

expect_exit 1 "directory as model" -- "$PLM" info "$TMP"
expect_exit 1 "convert of a missing checkpoint" -- "$PLM" convert "$TMP/none.bin" -o "$TMP/out.gguf"
finish
