# The upstream clients through `pocketlm ask`.
#
# OpenAI wire format against a REAL upstream: `pocketlm serve` on the real
# tinystories-656k model, whose greedy answer must equal a direct request's,
# streamed or not. Retries, timeouts, cut streams, and the Anthropic and Gemini
# wire formats against tests/upstream/stub_server.py: a STAND-IN speaking those
# providers' documented formats, since no real one is reachable offline. It
# checks each request as the provider would (path, key and version headers,
# body fields) and answers with what it received, so the text shows that the
# system prompt and the turns arrived where the format puts them.
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors
command -v curl >/dev/null || { echo "skipping: curl not found"; exit 77; }
STUB="$(dirname "$0")/../upstream/stub_server.py"
SECRET="sk-test-$$-0123456789abcdef"
export PLM_UPSTREAM_TEST_KEY="$SECRET"

# upstream NAME KIND BASE_URL [EXTRA-JSON]: one entry of the policy's "upstreams".
upstream() {
  echo "{\"name\": \"$1\", \"kind\": \"$2\", \"base_url\": \"$3\", \"model\": \"${MODEL:-m}\", \"api_key_env\": \"PLM_UPSTREAM_TEST_KEY\", \"consent\": \"always\"${4:+, $4}}"
}

# no_secret DESCRIPTION: the key appears in neither output of the last command.
no_secret() {
  if grep -qF "$SECRET" "$TMP/out" "$TMP/err"; then fail "$1: the key was printed"; else pass; fi
}

# answer_is TEXT DESCRIPTION: stdout of the last command is TEXT and a newline.
answer_is() {
  [ "$(cat "$TMP/out")" = "$1" ] && pass || fail "$2: answer '$(head -c 200 "$TMP/out")', expected '$1'"
}

# ------------------------------------------- a real upstream: pocketlm serve
"$PLM" convert "$SHARED/models/tinystories-656k" -o "$TMP/ts.gguf" >/dev/null 2>&1 || { fail "convert"; finish; exit; }
start_server serve "$PLM" serve -m "$TMP/ts.gguf" --port 0 --chat-template chatml -t 1 --api-key "$SECRET" --alias ts
SERVE="http://127.0.0.1:$PORT"
cat >"$TMP/real.json" <<EOF
{"upstreams": [$(MODEL=ts upstream private openai "$SERVE/v1"),
               {"name": "nokey", "kind": "openai", "base_url": "$SERVE/v1", "model": "ts", "api_key_env": "PLM_UNSET_KEY_VAR"}]}
EOF

curl -s -m 120 -H "Authorization: Bearer $SECRET" "$SERVE/v1/chat/completions" -o "$TMP/direct.json" \
  -d '{"model":"ts","messages":[{"role":"user","content":"Once upon a time"}],"max_tokens":30,"temperature":0}'
direct=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["choices"][0]["message"]["content"])' "$TMP/direct.json")
[ -n "$direct" ] && pass || fail "a direct request to pocketlm serve answers"

expect_exit 0 "ask the real server, streamed" -- "$PLM" ask --policy "$TMP/real.json" --upstream private -n 30 --temp 0 "Once upon a time"
answer_is "$direct" "streamed answer equals the direct request's"
expect_stderr "upstream 'private' \(openai\): HTTP 200, 1 attempt, sent [0-9]+ bytes, received [0-9]+ bytes" "summary line"
expect_stderr "tokens [0-9]+ prompt \+ [0-9]+ completion" "usage from the stream's last chunk"
no_secret "streamed"
expect_exit 0 "ask the real server, whole" -- "$PLM" ask --policy "$TMP/real.json" --upstream private -n 30 --temp 0 --no-stream "Once upon a time"
answer_is "$direct" "whole answer equals the direct request's"
no_secret "whole"

# What is sent: the head as shown plus the body is exactly what went out, but for the key's length.
expect_exit 0 "ask --show-request" -- "$PLM" ask --policy "$TMP/real.json" -n 5 --temp 0 --show-request "Once"
expect_stderr "Authorization: Bearer \[KEY\]" "the shown request masks the key"
no_secret "--show-request"
python3 - "$TMP/err" <<'PY' && pass || fail "shown head + body = bytes sent"
import os, re, sys
err = open(sys.argv[1], encoding="utf-8", newline="").read()
shown = err.split("\n", 1)[1]                      # after "pocketlm ask: attempt 1 to ..."
head, rest = shown.split("\r\n\r\n", 1)
body = rest.split("\n", 1)[0]
sent = int(re.search(r"sent (\d+) bytes", err).group(1))
assert head.startswith("POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:"), head[:80]
key = os.environ["PLM_UPSTREAM_TEST_KEY"]
assert len(head) + 4 + len(body.encode()) - len("[KEY]") + len(key) == sent, (len(head), len(body), sent)
PY

PLM_UPSTREAM_TEST_KEY=not-the-key expect_exit 1 "wrong key" -- "$PLM" ask --policy "$TMP/real.json" "Once"
expect_stderr "upstream 'private' \(openai\): HTTP 401: " "401 with the server's message"
expect_stderr "HTTP 401, 1 attempt," "401 is not retried"
expect_exit 1 "key variable unset" -- "$PLM" ask --policy "$TMP/real.json" --upstream nokey "Once"
expect_stderr "PLM_UNSET_KEY_VAR .*is not set" "the message names the variable"
kill "${PIDS[0]}"

# ------------------------------------------------------- the stand-in server
start_server stub python3 "$STUB" --key "$SECRET" --log "$TMP/stub.log"
S="http://127.0.0.1:$PORT"
cat >"$TMP/stub.json" <<EOF
{"upstreams": [
  $(upstream o-ok openai "$S/ok.1/v1"),
  $(upstream o-429 openai "$S/429.1/v1"),
  $(upstream o-503 openai "$S/503.1/v1"),
  $(upstream o-400 openai "$S/400.1/v1"),
  $(upstream o-down openai "$S/always503.1/v1"),
  $(upstream o-stall openai "$S/stall.1/v1" '"timeout_s": 2, "max_retries": 0'),
  $(upstream o-slow openai "$S/stall.2/v1" '"stall_timeout_s": 1, "max_retries": 0'),
  $(upstream o-cut openai "$S/cut.1/v1"),
  $(upstream a-ok anthropic "$S/ok.2"),
  $(upstream a-429 anthropic "$S/429.2"),
  $(upstream a-cut anthropic "$S/cut.2"),
  $(MODEL=gemini-2.0-flash upstream g-ok gemini "$S/ok.3/v1beta"),
  $(MODEL=gemini-2.0-flash upstream g-503 gemini "$S/503.3/v1beta"),
  $(MODEL=gemini-2.0-flash upstream g-400 gemini "$S/400.3/v1beta"),
  {"name": "never", "kind": "openai", "base_url": "$S/ok.9/v1", "model": "m", "consent": "never"}
]}
EOF
ASK=("$PLM" ask --policy "$TMP/stub.json" --system "Be brief.")
WANT="system=Be brief. user=Hi there"

for u in o-ok a-ok g-ok; do
  expect_exit 0 "$u streamed" -- "${ASK[@]}" --upstream "$u" "Hi there"
  answer_is "$WANT" "$u streamed"
  expect_stderr "HTTP 200, 1 attempt, .*finish stop" "$u streamed: finish reason"
  no_secret "$u"
  expect_exit 0 "$u whole" -- "${ASK[@]}" --upstream "$u" --no-stream "Hi there"
  answer_is "$WANT" "$u whole"
done
python3 - "$TMP/stub.log" <<'PY' && pass || fail "the stand-in saw each provider's request format"
import json, sys
reqs = [json.loads(l) for l in open(sys.argv[1])]
paths = [r["path"] for r in reqs]
assert "/ok.3/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse" in paths, paths
assert "/ok.3/v1beta/models/gemini-2.0-flash:generateContent" in paths, paths
a = [r for r in reqs if r["path"] == "/ok.2/v1/messages"][0]
body = json.loads(a["body"])
assert body["system"] == "Be brief." and body["max_tokens"] == 1024 and body["stream"] is True, body
assert dict(a["headers"])["anthropic-version"] == "2023-06-01"
# The head pocketlm shows is the head that arrived, in order.
assert [k for k, _ in a["headers"]] == ["Host", "User-Agent", "Accept", "Content-Type", "Content-Length",
                                        "x-api-key", "anthropic-version"], a["headers"]
PY

start_clock() { T0=$(date +%s.%N); }
elapsed() { python3 -c "import sys; print(float(sys.argv[2]) - float(sys.argv[1]))" "$T0" "$(date +%s.%N)"; }

start_clock
expect_exit 0 "429 then 200" -- "${ASK[@]}" --upstream o-429 "Hi there"
answer_is "$WANT" "429 then 200"
expect_stderr "HTTP 200, 2 attempts" "429 is retried"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) >= 0.95 else 1)" "$(elapsed)" && pass || fail "Retry-After: 1 was waited for"
expect_exit 0 "anthropic 429 then 200" -- "${ASK[@]}" --upstream a-429 --no-stream "Hi there"
expect_stderr "HTTP 200, 2 attempts" "anthropic 429 is retried"
expect_exit 0 "503 twice then 200" -- "${ASK[@]}" --upstream o-503 "Hi there"
answer_is "$WANT" "503 twice then 200"
expect_stderr "HTTP 200, 3 attempts" "503 is retried twice"
expect_exit 0 "gemini 503 twice then 200" -- "${ASK[@]}" --upstream g-503 "Hi there"
expect_stderr "HTTP 200, 3 attempts" "gemini 503 is retried"

expect_exit 1 "400" -- "${ASK[@]}" --upstream o-400 "Hi there"
expect_stderr "upstream 'o-400' \(openai\): HTTP 400: max_tokens is too large for this model$" "400: the upstream's message"
expect_stderr "HTTP 400, 1 attempt," "400 is not retried"
expect_exit 1 "gemini 400" -- "${ASK[@]}" --upstream g-400 "Hi there"
expect_stderr "upstream 'g-400' \(gemini\): HTTP 400: max_tokens is too large" "gemini error shape"
expect_exit 1 "503 for ever" -- "${ASK[@]}" --upstream o-down "Hi there"
expect_stderr "HTTP 503: The server is overloaded \(after 3 attempts\)" "gives up after max_retries"

start_clock
expect_exit 1 "stalled server, total timeout" -- "${ASK[@]}" --upstream o-stall "Hi there"
expect_stderr "upstream 'o-stall' \(openai\): http://127.0.0.1:[0-9]+/stall.1/v1/chat/completions: .*[Tt]imed out" "timeout message"
python3 -c "import sys; sys.exit(0 if float(sys.argv[1]) < 30 else 1)" "$(elapsed)" && pass || fail "timed out long before the stall ended"
expect_exit 1 "stalled server, stall timeout" -- "${ASK[@]}" --upstream o-slow "Hi there"
expect_stderr "too slow" "stall detected"

for u in o-cut a-cut; do
  expect_exit 1 "$u: stream cut after its first piece" -- "${ASK[@]}" --upstream "$u" "Hi there"
  expect_stderr "the stream ended before the answer did" "$u: a cut stream is an error"
  expect_stderr "HTTP 200, 1 attempt," "$u: never retried once text was delivered"
  answer_is "syste" "$u: the piece that arrived was passed on"
done

PLM_UPSTREAM_TEST_KEY=wrong expect_exit 1 "gemini wrong key" -- "${ASK[@]}" --upstream g-ok "Hi"
expect_stderr "HTTP 401: API key not valid" "gemini 401"

# ----------------------------------------------------------- the command line
expect_exit 1 "consent never" -- "${ASK[@]}" --upstream never "Hi"
expect_stderr "consent is \"never\"" "consent never refused"
expect_one_line_error "consent never"
grep -q '"/ok.9/' "$TMP/stub.log" && fail "consent never: a request was sent" || pass
echo '{"escalation": "never", "upstreams": [{"name": "u", "kind": "openai", "base_url": "'"$S"'/ok.8/v1", "model": "m"}]}' >"$TMP/never.json"
expect_exit 1 "escalation never" -- "$PLM" ask --policy "$TMP/never.json" "Hi"
expect_stderr "escalation\": \"never\"" "escalation never refused"
expect_exit 1 "unknown upstream" -- "${ASK[@]}" --upstream nope "Hi"
expect_stderr "no upstream named 'nope' in the policy \(it has: o-ok, o-429" "unknown upstream lists the names"
echo '{"upstreams": [{"name": "u", "kind": "openai", "model": "m", "timeout_s": "10"}]}' >"$TMP/bad.json"
expect_exit 1 "malformed policy" -- "$PLM" ask --policy "$TMP/bad.json" "Hi"
expect_stderr "bad.json: upstreams\[0\].timeout_s: expected a number from 0.1 to 3600, got \"10\"" "policy error names the field"
expect_one_line_error "malformed policy"
expect_exit 1 "missing policy" -- "$PLM" ask --policy "$TMP/none.json" "Hi"
expect_one_line_error "missing policy"
expect_exit 2 "no policy" -- "$PLM" ask "Hi"
expect_exit 2 "no prompt" -- "$PLM" ask --policy "$TMP/stub.json"
expect_exit 2 "negative -n" -- "$PLM" ask --policy "$TMP/stub.json" -n -3 "Hi"
expect_exit 0 "help" -- "$PLM" ask --help
finish
