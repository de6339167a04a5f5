# pocketlm run and chat with --policy: escalation end to end between REAL
# processes. The device is the real stories260K model; the upstream is a real
# `pocketlm serve` on the real tinystories-656k model, spoken to in OpenAI's
# wire format. Both decode greedily, so an escalated answer must equal a
# request made by hand to the upstream with the redacted text, and an answer
# kept on the device must equal `pocketlm run` (or `chat`) without a policy.
# Consent is asked on the controlling terminal: `setsid` runs a command with
# none, and `with_terminal` gives it a pseudo-terminal on which answers are typed.
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors models/stories260K/stories260K.bin models/stories260K/tok512.bin
for tool in curl python3 setsid; do
  command -v $tool >/dev/null || { echo "skipping: $tool not found"; exit 77; }
done

"$PLM" convert "$SHARED/models/tinystories-656k" -o "$TMP/ts.gguf" >/dev/null 2>&1 || { fail "convert upstream"; finish; exit; }
"$PLM" convert "$SHARED/models/stories260K/stories260K.bin" --vocab "$SHARED/models/stories260K/tok512.bin" \
  -o "$TMP/dev.gguf" >/dev/null 2>&1 || { fail "convert device"; finish; exit; }

"$PLM" serve -m "$TMP/ts.gguf" --port 0 --chat-template chatml -t 1 --alias ts >"$TMP/serve.out" 2>"$TMP/serve.err" &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null; rm -rf "$TMP"' EXIT
for _ in $(seq 300); do grep -q "^listening on " "$TMP/serve.out" && break; sleep 0.1; done
SERVE=$(sed -n 's|^listening on \(http://127\.0\.0\.1:[0-9][0-9]*\)$|\1|p' "$TMP/serve.out")
[ -n "$SERVE" ] || { fail "the upstream prints no 'listening on' line"; cat "$TMP/serve.err"; finish; exit; }

# policy NAME RULES [TOP-LEVEL-FIELDS]: $TMP/NAME.json with three upstreams: home (the
# server, consent always), asker (the server, consent ask) and down (nothing listens).
policy() {
  cat >"$TMP/$1.json" <<EOF
{${3:+$3, }"upstreams": [
  {"name": "home", "kind": "openai", "base_url": "$SERVE/v1", "model": "ts", "consent": "always", "max_retries": 0},
  {"name": "asker", "kind": "openai", "base_url": "$SERVE/v1", "model": "ts", "consent": "ask", "max_retries": 0},
  {"name": "down", "kind": "openai", "base_url": "http://127.0.0.1:1/v1", "model": "ts", "consent": "always", "max_retries": 0}],
 "rules": [$2],
 "redaction": {"terms": ["Alice Example"]}}
EOF
}

# direct OUT MAX_TOKENS ROLE=TEXT|ROLE=@FILE...: the upstream's greedy answer to a
# request made by hand (not streamed), written to OUT as it is.
direct() {
  python3 - "$SERVE" "$@" <<'PY' || fail "direct request to the upstream"
import json, sys, urllib.request
url, out, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
messages = []
for arg in sys.argv[4:]:
    role, _, text = arg.partition("=")
    messages.append({"role": role, "content": open(text[1:]).read() if text.startswith("@") else text})
body = json.dumps({"model": "ts", "messages": messages, "max_tokens": n, "temperature": 0}).encode()
request = urllib.request.Request(url + "/v1/chat/completions", body, {"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(request, timeout=120))["choices"][0]["message"]["content"]
open(out, "w").write(answer)
PY
}

# stdout_is DESCRIPTION FILE...: the last command printed each file followed by a newline.
stdout_is() {
  local what=$1; shift
  for f in "$@"; do cat "$f"; echo; done >"$TMP/expected"
  cmp -s "$TMP/expected" "$TMP/out" && pass || fail "$what: printed '$(head -c 160 "$TMP/out")', expected '$(head -c 160 "$TMP/expected")'"
}

expect_no_stderr() {
  if grep -Eq -- "$1" "$TMP/err"; then fail "$2: stderr has /$1/"; sed 's/^/  stderr: /' "$TMP/err" | head -5; else pass; fi
}

# audit_is DB DESCRIPTION PATTERN: `pocketlm audit verify` on DB matches PATTERN.
audit_is() {
  "$PLM" audit verify --audit "$1" >"$TMP/verify" 2>&1
  grep -Eq -- "$3" "$TMP/verify" && pass || fail "$2: audit verify says '$(cat "$TMP/verify")'"
}

# with_terminal TYPED COMMAND...: runs the command in a new session whose controlling
# terminal is a pseudo-terminal with TYPED (\n for newlines) already typed on it;
# stdin, stdout and stderr stay as they are (so the program is given with -c, not on stdin).
with_terminal() {
  python3 -c "$(cat <<'PY'
import os, pty, sys
typed = sys.argv[1].replace("\\n", "\n").encode()
saved = [os.dup(fd) for fd in (0, 1, 2)]
pid, master = pty.fork()
if pid == 0:
    os.set_inheritable(os.dup(0), True)  # the terminal stays open while the command runs
    for fd, s in enumerate(saved):
        os.dup2(s, fd)
    os.execvp(sys.argv[2], sys.argv[2:])
os.write(master, typed)
while True:  # the terminal's echo, until the command ends
    try:
        if not os.read(master, 4096):
            break
    except OSError:
        break
sys.exit(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]))
PY
)" "$@"
}

PROMPT="Alice Example wrote to alice@example.com about a cat."
REDACTED="[TERM_1] wrote to [EMAIL_1] about a cat."
RUN=("$PLM" run -m "$TMP/dev.gguf" -n 24 --temp 0 -t 1)

# The device's own answers, without a policy.
expect_exit 0 "run without a policy" -- "${RUN[@]}" -p "$PROMPT"
cp "$TMP/out" "$TMP/device.out"
head -c -1 "$TMP/out" >"$TMP/device"
expect_exit 0 "run without a policy, story prompt" -- "${RUN[@]}" -p "Once upon a time"
head -c -1 "$TMP/out" >"$TMP/device_story"

# ------------------------------------------------ run: an explicit rule
policy explicit '{"when": "explicit"}'
A="$TMP/explicit.db"
expect_exit 0 "run --upstream home" -- "${RUN[@]}" --policy "$TMP/explicit.json" --audit "$A" --upstream home -p "$PROMPT"
direct "$TMP/d_explicit" 24 user="$REDACTED"
stdout_is "explicit: the answer equals a direct request with the redacted text" "$TMP/d_explicit"
expect_stderr "^pocketlm run: answered by home \(openai, model ts\): explicit: the request's model \"home\" names an upstream; sent [0-9]+ bytes, received [0-9]+ bytes, redacted EMAIL=1 TERM=1, audit #1$" \
  "explicit: the route line"
expect_no_stderr "^pocketlm: prompt" "explicit: no device summary when an upstream answered"
expect_exit 0 "audit list" -- "$PLM" audit list --audit "$A"
grep -Eq "^1 +[0-9TZ:.-]+ +home +explicit +[0-9]+ +[0-9]+ +200 +ok +EMAIL=1,TERM=1$" "$TMP/out" && pass \
  || fail "audit list shows the request: $(cat "$TMP/out")"
audit_is "$A" "explicit" "^2 entries \(1 requests, 1 completions\), chain intact"
expect_exit 0 "audit show 1" -- "$PLM" audit show 1 --audit "$A"
grep -qF "\"content\":\"$REDACTED\"" "$TMP/out" && pass || fail "the audit body holds the redacted text"
grep -qiE "alice@example\.com|Alice Example" "$TMP/out" && fail "the audit body holds a redacted value" || pass
grep -qiaF "alice@example.com" "$A"* && fail "the audit database holds the email" || pass

# An upstream that is down: the device answers, the audit says so.
expect_exit 0 "run --upstream down" -- "${RUN[@]}" --policy "$TMP/explicit.json" --audit "$A" --upstream down -p "$PROMPT"
cmp -s "$TMP/out" "$TMP/device.out" && pass || fail "upstream down: the device's answer"
expect_stderr "^pocketlm run: answered on the device after the upstream failed: upstream 'down' \(openai\): .* \(explicit: .*; audit #3\)$" \
  "upstream down: the route line says fallback"
expect_stderr "^pocketlm: prompt [0-9]+ tokens" "upstream down: the device's summary"
expect_exit 0 "audit show 3" -- "$PLM" audit show 3 --audit "$A"
grep -Eq "^  outcome: +fallback-to-device$" "$TMP/out" && pass || fail "upstream down: the audit outcome is fallback-to-device"
audit_is "$A" "after the fallback" "^4 entries \(2 requests, 2 completions\), chain intact"

# No --upstream: the explicit rule does not fire.
expect_exit 0 "run with a policy, no --upstream" -- "${RUN[@]}" --policy "$TMP/explicit.json" --audit "$A" -p "$PROMPT"
cmp -s "$TMP/out" "$TMP/device.out" && pass || fail "no rule fired: the device's answer, byte for byte"
expect_stderr "^pocketlm run: answered on the device \(no rule fired\)$" "no rule fired: the route line"
audit_is "$A" "nothing sent when no rule fired" "^4 entries"

# Command lines.
expect_exit 2 "--upstream without --policy" -- "${RUN[@]}" --upstream home -p "$PROMPT"
expect_one_line_error "--upstream without --policy"
expect_exit 1 "--upstream naming no upstream" -- "${RUN[@]}" --policy "$TMP/explicit.json" --audit "$A" --upstream hmoe -p x
expect_stderr "hmoe" "the unknown upstream is named"
expect_one_line_error "--upstream naming no upstream"

# ------------------------------------------------ run: context overflow
LONG="Once upon a time there was a little girl named Lily who loved to play in the park with her friends every day"
expect_exit 1 "a prompt over the context, no policy" -- "${RUN[@]}" -c 32 -n 16 -p "$LONG"
policy overflow '{"when": "context_overflow", "upstream": "home"}'
expect_exit 0 "run: context overflow" -- "${RUN[@]}" -c 32 -n 16 --policy "$TMP/overflow.json" --audit "$TMP/overflow.db" -p "$LONG"
direct "$TMP/d_overflow" 16 user="$LONG"
stdout_is "overflow: the upstream's answer" "$TMP/d_overflow"
expect_stderr "^pocketlm run: answered by home .*: context_overflow: [0-9]+ prompt tokens \+ 16 answer tokens = [0-9]+ > device context 32; .*redacted nothing, audit #1$" \
  "overflow: the route line"
expect_exit 1 "overflow with no rule for it" -- "${RUN[@]}" -c 32 -n 16 --policy "$TMP/explicit.json" --audit "$A" -p "$LONG"
expect_stderr "the policy sends it nowhere else" "overflow without a rule: why"

# ------------------------------------------------ run: "escalation": "never"
policy never '{"when": "always", "upstream": "home"}' '"escalation": "never"'
expect_exit 0 "run: escalation never" -- "${RUN[@]}" --policy "$TMP/never.json" --audit "$TMP/never.db" -p "$PROMPT"
cmp -s "$TMP/out" "$TMP/device.out" && pass || fail "never: the device's answer"
expect_stderr "^pocketlm run: answered on the device \(never: " "never: the route line"
audit_is "$TMP/never.db" "never: nothing sent" "^0 entries"

# ------------------------------------------------ run: consent "ask"
policy ask '{"when": "always", "upstream": "asker"}'
expect_exit 0 "run: ask, no terminal" -- setsid -w "${RUN[@]}" --policy "$TMP/ask.json" --audit "$TMP/ask.db" -p "$PROMPT"
cmp -s "$TMP/out" "$TMP/device.out" && pass || fail "ask without a terminal: the device's answer"
expect_stderr "^pocketlm run: upstream 'asker' needs consent and there is no terminal to ask: not sent$" "ask: no terminal"
expect_stderr "^pocketlm run: answered on the device \(always: .*; kept on the device: the user did not consent\)$" \
  "ask: the route line"
audit_is "$TMP/ask.db" "ask without a terminal: nothing sent" "^0 entries"
expect_exit 0 "run: ask, answered no" -- with_terminal 'n\n' "${RUN[@]}" --policy "$TMP/ask.json" --audit "$TMP/ask.db" -p "$PROMPT"
cmp -s "$TMP/out" "$TMP/device.out" && pass || fail "ask, no: the device's answer"
expect_stderr "^\[TERM_1\] wrote to \[EMAIL_1\] about a cat\.$" "ask: the question shows the redacted text"
expect_no_stderr "alice@example" "ask: the question does not show the email"
audit_is "$TMP/ask.db" "ask, no: nothing sent" "^0 entries"
expect_exit 0 "run: ask, --yes" -- setsid -w "${RUN[@]}" --policy "$TMP/ask.json" --audit "$TMP/ask.db" --yes -p "$PROMPT"
stdout_is "ask, --yes: the upstream's answer" "$TMP/d_explicit"
expect_stderr "^pocketlm run: answered by asker " "ask, --yes: the route line"

# ------------------------------------------------ run: uncertain rules
policy unsure '{"when": "uncertain", "upstream": "home", "first_tokens": 8, "min_token_prob_quantile": {"q": 0.5, "below": 1}}'
expect_exit 0 "run: an uncertain rule that fires" -- "${RUN[@]}" --policy "$TMP/unsure.json" --audit "$TMP/unsure.db" -p "Once upon a time"
direct "$TMP/d_story" 24 user="Once upon a time"
stdout_is "uncertain: the upstream's answer alone, the device's held tokens not printed" "$TMP/d_story"
[ "$(head -c 12 "$TMP/out")" != "$(head -c 12 "$TMP/device_story")" ] && pass || fail "uncertain: the answers differ from the start"
expect_stderr "^pocketlm run: answered by home .*: uncertain: p50 of chosen-token probability [0-9.e-]+ < 1 over the first 8 tokens; " \
  "uncertain: the route line"
policy sure '{"when": "uncertain", "upstream": "home", "first_tokens": 8, "min_token_prob_quantile": {"q": 0, "below": 0}}'
expect_exit 0 "run: an uncertain rule that never fires" -- "${RUN[@]}" --policy "$TMP/sure.json" --audit "$TMP/sure.db" -p "Once upon a time"
stdout_is "sure: the device's answer, its first tokens included" "$TMP/device_story"
expect_stderr "^pocketlm run: answered on the device \(no rule fired \(rule 0: sure enough: p0 of chosen-token probability [0-9.e-]+ >= 0 over the first 8 tokens\)\)$" \
  "sure: the route line"
audit_is "$TMP/sure.db" "sure: nothing sent" "^0 entries"

# ------------------------------------------------ chat
CHAT=("$PLM" chat -m "$TMP/dev.gguf" --chat-template chatml -n 12 --temp 0 -t 1)
TURN1="Alice Example has the address alice@example.com."
TURN2="Write to bob@example.org and alice@example.com."
printf '%s\n%s\n' "$TURN1" "$TURN2" >"$TMP/turns"

# Every turn upstream, one redactor for the conversation.
policy always '{"when": "always", "upstream": "home"}'
expect_exit 0 "chat: an always rule, two turns" -- "${CHAT[@]}" --policy "$TMP/always.json" --audit "$TMP/always.db" <"$TMP/turns"
direct "$TMP/d_turn1" 12 user="[TERM_1] has the address [EMAIL_1]."
direct "$TMP/d_turn2" 12 user="[TERM_1] has the address [EMAIL_1]." assistant=@"$TMP/d_turn1" \
  user="Write to [EMAIL_2] and [EMAIL_1]."
stdout_is "chat: both answers from the upstream, the first one in the history" "$TMP/d_turn1" "$TMP/d_turn2"
[ "$(grep -c "^pocketlm chat: answered by home (openai, model ts): always: " "$TMP/err")" -eq 2 ] && pass \
  || fail "chat: a route line per turn"
expect_exit 0 "audit show 3" -- "$PLM" audit show 3 --audit "$TMP/always.db"
[ "$(grep -o '\[EMAIL_1\]' "$TMP/out" | wc -l)" -eq 2 ] && pass || fail "turn 2: the same email is [EMAIL_1] in both turns"
[ "$(grep -o '\[EMAIL_2\]' "$TMP/out" | wc -l)" -eq 1 ] && pass || fail "turn 2: the new email is [EMAIL_2]"
grep -qiE "@example\.(com|org)|Alice Example" "$TMP/out" && fail "turn 2: the audit body holds a redacted value" || pass
audit_is "$TMP/always.db" "chat" "^4 entries \(2 requests, 2 completions\), chain intact"
# The redactor outlives the turns it redacted: when turn 1 no longer fits (80 tokens) and
# is dropped, turn 2's new email is still [EMAIL_2], never a second meaning of [EMAIL_1].
printf 'Mail alice@example.com.\nMail bob@example.org.\n' >"$TMP/mail_turns"
expect_exit 0 "chat: uncertain rule, turns dropped" -- "${CHAT[@]}" -c 80 -n 8 --policy "$TMP/unsure.json" \
  --audit "$TMP/mail.db" <"$TMP/mail_turns"
[ "$(grep -c "^pocketlm chat: answered by home .*: uncertain: " "$TMP/err")" -eq 2 ] && pass || fail "dropped turns: both turns escalated"
expect_exit 0 "audit show 3" -- "$PLM" audit show 3 --audit "$TMP/mail.db"
grep -qF '"messages":[{"role":"user","content":"Mail [EMAIL_2]."}]' "$TMP/out" && pass \
  || fail "dropped turns: turn 2 alone, its email [EMAIL_2]: $(grep -o '"messages".*]' "$TMP/out")"

# Consent per turn on the terminal: yes to the first, no to the second.
expect_exit 0 "chat: ask, yes then no" -- with_terminal 'y\nn\n' "${CHAT[@]}" --policy "$TMP/ask.json" --audit "$TMP/chat_ask.db" <"$TMP/turns"
{ cat "$TMP/d_turn1"; echo; } >"$TMP/expected"
head -c "$(wc -c <"$TMP/expected")" "$TMP/out" | cmp -s - "$TMP/expected" && pass || fail "chat, ask yes: the upstream's answer"
[ "$(grep -c "^send it? \[y/N\]" "$TMP/err")" -eq 2 ] && pass || fail "chat, ask: asked at each turn"
expect_stderr "^pocketlm chat: upstream 'asker' \(openai, model ts at $SERVE/v1\) would receive this conversation$" "chat, ask: to whom"
expect_stderr "^Write to \[EMAIL_2\] and \[EMAIL_1\]\.$" "chat, ask: the redacted turn shown"
expect_no_stderr "@example" "chat, ask: no email shown"
expect_stderr "^pocketlm chat: answered on the device \(always: .*the user did not consent\)$" "chat, ask no: the device answers"
audit_is "$TMP/chat_ask.db" "chat, ask: one request sent" "^2 entries \(1 requests, 1 completions\)"

# A conversation that outgrows the device's context (64 tokens: one turn fits, two do not).
printf 'Tell me about a cat.\nThe cat was named Tom.\n' >"$TMP/long_turns"
SMALL=("${CHAT[@]}" -c 64 -n 8)
expect_exit 0 "chat without a policy drops the oldest turns" -- "${SMALL[@]}" <"$TMP/long_turns"
cp "$TMP/out" "$TMP/dropped.out"
policy chat_overflow '{"when": "context_overflow", "upstream": "home"}'
expect_exit 0 "chat: context overflow" -- "${SMALL[@]}" --policy "$TMP/chat_overflow.json" --audit "$TMP/co.db" <"$TMP/long_turns"
expect_stderr "^pocketlm chat: answered on the device \(no rule fired\)$" "overflow: the first turn on the device"
expect_stderr "^pocketlm chat: answered by home .*: context_overflow: [0-9]+ prompt tokens \+ 8 answer tokens = [0-9]+ > device context 64; " \
  "overflow: the second turn upstream"
# What was sent is the whole conversation, and the answer printed is the upstream's answer to it.
python3 - "$TMP/co.db" "$SERVE" "$TMP/out" <<'PY' && pass || fail "overflow: the whole conversation went upstream"
import json, sqlite3, sys, urllib.request
body = json.loads(sqlite3.connect(sys.argv[1]).execute("SELECT body FROM entries WHERE seq = 1").fetchone()[0])
turns = [m["content"] for m in body["messages"] if m["role"] == "user"]
assert turns == ["Tell me about a cat.", "The cat was named Tom."], turns
body["stream"] = False
del body["stream_options"]
request = urllib.request.Request(sys.argv[2] + "/v1/chat/completions", json.dumps(body).encode(),
                                 {"Content-Type": "application/json"})
answer = json.load(urllib.request.urlopen(request, timeout=120))["choices"][0]["message"]["content"]
printed = open(sys.argv[3]).read()
assert printed.endswith("\n" + answer + "\n"), (printed, answer)
PY
# The upstream down: the device answers what fits, as without a policy.
policy chat_down '{"when": "context_overflow", "upstream": "down"}'
expect_exit 0 "chat: context overflow, upstream down" -- "${SMALL[@]}" --policy "$TMP/chat_down.json" --audit "$TMP/cd.db" <"$TMP/long_turns"
cmp -s "$TMP/out" "$TMP/dropped.out" && pass || fail "overflow, upstream down: the answers without a policy"
expect_stderr "^pocketlm chat: upstream 'down' \(openai\): .*; the device answers without the oldest turns$" "overflow, upstream down: why"

finish
