# pocketlm redact: redacted text on stdout, counts (never values) with --json,
# the corpus table with --eval, exit codes 2 (bad command line) and 1 (bad input).
. "$(dirname "$0")/common.bash"
CORPUS="$(dirname "$0")/../data/redaction/corpus.jsonl"

expect_exit 0 "redact --help" -- "$PLM" redact --help
grep -q "usage: pocketlm redact" "$TMP/out" && pass || fail "help shows the usage"

# Bad command lines: exit 2, one line.
expect_exit 2 "unknown option" -- "$PLM" redact --bogus
expect_one_line_error "unknown option"
expect_exit 2 "--terms without a value" -- "$PLM" redact --terms
expect_exit 2 "two inputs" -- "$PLM" redact a.txt b.txt
expect_exit 2 "--eval with a file" -- "$PLM" redact --eval "$CORPUS" a.txt
expect_one_line_error "--eval with a file"

# Bad input: exit 1, one line naming it.
expect_exit 1 "missing file" -- "$PLM" redact "$TMP/missing.txt"
expect_stderr "cannot read '.*missing.txt'" "missing file"
expect_one_line_error "missing file"
expect_exit 1 "missing terms file" -- "$PLM" redact --terms "$TMP/missing.txt" "$CORPUS"
expect_one_line_error "missing terms file"
printf 'line one\n  \n' > "$TMP/blank_terms.txt"
expect_exit 1 "blank term" -- "$PLM" redact --terms "$TMP/blank_terms.txt" "$CORPUS"
expect_stderr "term 2 is empty" "blank term"
printf '{"text": "x", "spans": [{"type": "NOPE", "start": 0, "end": 1}]}\n' > "$TMP/bad.jsonl"
expect_exit 1 "bad corpus" -- "$PLM" redact --eval "$TMP/bad.jsonl"
expect_stderr "line 1" "bad corpus"
expect_one_line_error "bad corpus"

# The text: values replaced, everything else byte for byte (trailing newline kept).
cat > "$TMP/in.txt" <<'TEXT'
Hi, I'm Jane Roe (jane@example.com, +44 20 7946 0958).
Card 4111 1111 1111 1111, again 4111-1111-1111-1111; not 4111 1111 1111 1112.
TEXT
printf 'Jane Roe\n# a comment\n\n' > "$TMP/terms.txt"
expect_exit 0 "redact a file" -- "$PLM" redact --terms "$TMP/terms.txt" "$TMP/in.txt"
cat > "$TMP/want.txt" <<'TEXT'
Hi, I'm [TERM_1] ([EMAIL_1], [PHONE_1]).
Card [CARD_1], again [CARD_1]; not 4111 1111 1111 1112.
TEXT
cmp -s "$TMP/out" "$TMP/want.txt" && pass || { fail "redacted text"; diff "$TMP/out" "$TMP/want.txt" | head -5; }

expect_exit 0 "redact stdin" -- sh -c "\"$PLM\" redact - < \"$TMP/in.txt\""
grep -q "Jane Roe (\[EMAIL_1\]" "$TMP/out" && pass || fail "without --terms names stay"

expect_exit 0 "redact --json" -- sh -c "\"$PLM\" redact --json < \"$TMP/in.txt\""
grep -q '"CARD":	2' "$TMP/out" && pass || fail "--json counts both cards"
grep -q '"EMAIL":	1' "$TMP/out" && pass || fail "--json counts the email"
grep -q 'jane@example.com\|4111 1111 1111 1111\|7946' "$TMP/out" && fail "--json leaks a value" || pass

expect_exit 0 "empty input" -- sh -c "\"$PLM\" redact < /dev/null"
[ -s "$TMP/out" ] && fail "empty input gives empty output" || pass

# Invalid UTF-8 passes through unchanged.
printf 'a\377b \300 x@example.com\n' > "$TMP/bytes.txt"
expect_exit 0 "invalid UTF-8" -- "$PLM" redact "$TMP/bytes.txt"
printf 'a\377b \300 [EMAIL_1]\n' | cmp -s - "$TMP/out" && pass || fail "invalid UTF-8 kept byte for byte"

# The corpus table: every type, no leak of a checksum-validated type.
expect_exit 0 "redact --eval" -- "$PLM" redact --eval "$CORPUS"
for type in EMAIL PHONE CARD IBAN SSN IP MAC URL SECRET TERM all; do
  grep -q "^| $type |" "$TMP/out" && pass || fail "--eval table has a $type row"
done
grep -Eq '^\| CARD \| [0-9]+ \| [0-9]+ \| [0-9]+ \| 1\.000 \| 1\.000 \| 0 \| 0 of [0-9]+ \|$' "$TMP/out" && pass || fail "no card leaks"
grep -Eq '^\| IBAN \| [0-9]+ \| [0-9]+ \| [0-9]+ \| 1\.000 \| 1\.000 \| 0 \| 0 of [0-9]+ \|$' "$TMP/out" && pass || fail "no IBAN leaks"

finish
