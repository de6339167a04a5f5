# `pocketlm serve --policy`: escalation end to end, over real HTTP.
#
# The device is stories260K; the private-server tier is a second, REAL
# `pocketlm serve` on tinystories-656k. The Anthropic and Gemini tiers are
# tests/upstream/stub_server.py, which speaks those providers' wire formats and
# answers with the user message it received: the placeholders it echoes must
# come back restored, streamed or not. Every request that left must be in the
# audit log, redacted, with an intact chain.
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors models/stories260K/stories260K.bin
command -v curl >/dev/null || { echo "skipping: curl not found"; exit 77; }
STUB="$(dirname "$0")/../upstream/stub_server.py"
export PLM_ESCALATE_TEST_KEY="sk-test-$$-fedcba9876543210"

# post BODY: POST to the device server's chat route; headers in $TMP/head, body in $TMP/body.
post() { curl -s -m 120 -D "$TMP/head" -o "$TMP/body" "$DEV/v1/chat/completions" -d "$1"; }
# json EXPR: a Python expression over the last body, parsed as j.
json() { python3 -c "import json,sys; j=json.load(open(sys.argv[1])); print($1)" "$TMP/body"; }
# check DESCRIPTION PYTHON-CONDITION: the condition holds for the last body j (and headers h).
check() {
  python3 - "$TMP/body" "$TMP/head" "$2" <<'PY' && pass || fail "$1"
import json, sys
body = open(sys.argv[1]).read()
h = open(sys.argv[2]).read().lower()
try:
    j = json.loads(body)
except ValueError:
    j = None
if not eval(sys.argv[3]):
    print("  body:", body[:600]); print("  head:", h[:300]); sys.exit(1)
PY
}
# stream_text: the content of the streamed chunks in the last body.
stream_text() {
  python3 - "$TMP/body" <<'PY'
import json, sys
out = []
for line in open(sys.argv[1]):
    if line.startswith("data: {"):
        for c in json.loads(line[6:]).get("choices", []):
            out.append(c.get("delta", {}).get("content") or "")
print("".join(out))
PY
}

"$PLM" convert "$SHARED/models/tinystories-656k" -o "$TMP/big.gguf" >/dev/null 2>&1 || { fail "convert big"; finish; exit; }
"$PLM" convert "$SHARED/models/stories260K/stories260K.bin" --vocab "$SHARED/models/stories260K/tok512.bin" \
  -o "$TMP/dev.gguf" >/dev/null 2>&1 || { fail "convert device"; finish; exit; }
start_server big "$PLM" serve -m "$TMP/big.gguf" --port 0 --chat-template chatml -t 1 --alias big
BIG="http://127.0.0.1:$PORT"
start_server stub python3 "$STUB" --key "$PLM_ESCALATE_TEST_KEY" --log "$TMP/stub.log"
STUBURL="http://127.0.0.1:$PORT"

cat >"$TMP/policy.json" <<EOF
{"upstreams": [
  {"name": "home", "kind": "openai", "base_url": "$BIG/v1", "model": "big", "consent": "always"},
  {"name": "asky", "kind": "openai", "base_url": "$BIG/v1", "model": "big", "consent": "ask"},
  {"name": "claude", "kind": "anthropic", "base_url": "$STUBURL/ok.1", "model": "m",
   "api_key_env": "PLM_ESCALATE_TEST_KEY", "consent": "always"},
  {"name": "gemini", "kind": "gemini", "base_url": "$STUBURL/ok.2/v1beta", "model": "gemini-2.0-flash",
   "api_key_env": "PLM_ESCALATE_TEST_KEY", "consent": "always"},
  {"name": "dead", "kind": "openai", "base_url": "http://127.0.0.1:9/v1", "model": "big", "consent": "always",
   "max_retries": 1},
  {"name": "forbidden", "kind": "openai", "base_url": "$BIG/v1", "model": "big", "consent": "never"}
 ],
 "rules": [{"when": "explicit"}, {"when": "context_overflow", "upstream": "home"}],
 "redaction": {"terms": ["Alice Example"]}}
EOF
AUDIT="$TMP/audit.db"
start_server dev "$PLM" serve -m "$TMP/dev.gguf" --port 0 --chat-template chatml -t 1 -c 128 \
  --policy "$TMP/policy.json" --audit "$AUDIT"
DEV="http://127.0.0.1:$PORT"
PERSONAL='Alice Example (alice@example.com) asks: once upon a time'

# ------------------------------------------------- explicit, the private server
post '{"model":"home","messages":[{"role":"user","content":"'"$PERSONAL"'"}],"max_tokens":24,"temperature":0}'
check "explicit: answered by home" 'j["pocketlm"]["route"] == "home" and "x-pocketlm-route: home" in h'
check "explicit: the reason" 'j["pocketlm"]["reason"].startswith("explicit: ")'
check "explicit: what was sent is redacted" \
  'j["pocketlm"]["sent"] == [{"role": "user", "content": "[TERM_1] ([EMAIL_1]) asks: once upon a time"}]'
check "explicit: redaction counts" 'j["pocketlm"]["redactions"] == {"EMAIL": 1, "TERM": 1}'
via_device=$(json 'j["choices"][0]["message"]["content"]')
curl -s -m 120 -o "$TMP/body" "$BIG/v1/chat/completions" \
  -d '{"model":"big","messages":[{"role":"user","content":"[TERM_1] ([EMAIL_1]) asks: once upon a time"}],"max_tokens":24,"temperature":0}'
direct=$(json 'j["choices"][0]["message"]["content"]')
[ -n "$direct" ] && [ "$via_device" = "$direct" ] && pass ||
  fail "explicit: the answer is the upstream's for the redacted text ('$via_device' vs '$direct')"

# --------------------------------------- restored answers, Anthropic and Gemini
for up in claude gemini; do
  post '{"model":"'$up'","messages":[{"role":"system","content":"Be brief."},{"role":"user","content":"'"$PERSONAL"'"}]}'
  check "$up whole: placeholders restored" \
    'j["choices"][0]["message"]["content"] == "system=Be brief. user=Alice Example (alice@example.com) asks: once upon a time"'
  check "$up whole: route" 'j["pocketlm"]["route"] == "'$up'"'
  post '{"model":"'$up'","stream":true,"messages":[{"role":"user","content":"'"$PERSONAL"'"}]}'
  got=$(stream_text)
  [ "$got" = "system= user=$PERSONAL" ] && pass || fail "$up streamed: restored across chunks, got '$got'"
  check "$up streamed: route header and last chunk" \
    '"x-pocketlm-route: '$up'" in h and "\"route\":\"'$up'\"" in body'
done
grep -q "alice@example.com\|Alice Example" "$TMP/stub.log" && fail "a personal value reached the stand-in" || pass

# ------------------------------------------------------------------ consent
ASKED='{"model":"asky","messages":[{"role":"user","content":"'"$PERSONAL"'"}],"max_tokens":8,"temperature":0'
post "$ASKED}"
check "ask: 403 consent_required" 'h.startswith("http/1.1 403") and j["error"]["code"] == "consent_required"'
check "ask: shows the redacted messages and the upstream" \
  'j["consent"]["messages"][0]["content"] == "[TERM_1] ([EMAIL_1]) asks: once upon a time" and j["consent"]["upstream"] == "asky"'
token=$(json 'j["consent"]["token"]')
post "$ASKED,\"stream\":true}"
check "ask: a stream request gets the same JSON 403" 'h.startswith("http/1.1 403") and j["consent"]["token"] == "'$token'"'
post "$ASKED,\"pocketlm\":{\"consent\":\"${token}\"}}"
check "ask: the token sends it" 'h.startswith("http/1.1 200") and j["pocketlm"]["route"] == "asky"'
post '{"model":"asky","messages":[{"role":"user","content":"Bob asks: once upon a time"}],"max_tokens":8,"pocketlm":{"consent":"'$token'"}}'
check "ask: the token does not fit other text" 'h.startswith("http/1.1 403")'
post "$ASKED,\"pocketlm\":{\"consent\":\"00${token:2}\"}}"
check "ask: a forged token is refused" 'h.startswith("http/1.1 403")'
post "$ASKED,\"pocketlm\":{\"consent\":7}}"
check "ask: a token of the wrong type is a 400" 'h.startswith("http/1.1 400")'

# --------------------------------------------------- never, fallback, overflow
post '{"model":"forbidden","messages":[{"role":"user","content":"once"}],"max_tokens":4}'
check "consent never: the device answers" \
  'j["pocketlm"]["route"] == "device" and "never" in j["pocketlm"]["reason"] and "sent" not in j["pocketlm"]'
post '{"model":"dead","messages":[{"role":"user","content":"once upon a time"}],"max_tokens":6,"temperature":0}'
check "upstream down: the device answers, flagged" \
  'j["pocketlm"]["route"] == "device" and j["pocketlm"]["fallback"] and "x-pocketlm-route: device; fallback" in h'
check "upstream down: the error says why" '"dead" in j["pocketlm"]["upstream_error"] and j["choices"][0]["message"]["content"]'
LONG=$(python3 -c 'print("once upon a time " * 60)')
post '{"messages":[{"role":"user","content":"'"$LONG"'"}],"max_tokens":6,"temperature":0}'
check "context overflow: the private server answers" \
  'j["pocketlm"]["route"] == "home" and j["pocketlm"]["reason"].startswith("context_overflow: ")'
post '{"messages":[{"role":"user","content":"once upon a time"}],"max_tokens":6}'
check "no rule fires: the device" 'j["pocketlm"]["route"] == "device" and j["pocketlm"]["reason"].startswith("no rule fired")'

# ------------------------------------------------------------------ metrics
curl -s "$DEV/metrics" >"$TMP/metrics"
python3 - "$TMP/metrics" <<'PY' && pass || { fail "/metrics counts escalations by upstream and outcome"; grep escalations "$TMP/metrics"; }
import re, sys
counts = {m[0] + "/" + m[1]: int(m[2]) for m in
          re.findall(r'^pocketlm_escalations_total\{upstream="([^"]+)",outcome="([^"]+)"\} (\d+)$', open(sys.argv[1]).read(), re.M)}
want = {"home/ok": 2, "claude/ok": 2, "gemini/ok": 2, "asky/consent_required": 4, "asky/ok": 1,
        "forbidden/refused": 1, "dead/fallback": 1}
assert counts == want, counts
PY

# -------------------------------------------------------------------- audit
expect_exit 0 "audit verify" -- "$PLM" audit verify --audit "$AUDIT"
expect_exit 0 "audit list" -- "$PLM" audit list --audit "$AUDIT"
python3 - "$TMP/out" <<'PY' && pass || { fail "audit list: one entry per request sent, with outcomes"; cat "$TMP/out"; }
import sys
rows = [l.split() for l in open(sys.argv[1]) if l[:1].isdigit()]
ups = [r[2] for r in rows]
# home (explicit), claude x2, gemini x2, asky (consented), dead x2 attempts, home (overflow)
assert ups == ["home", "claude", "claude", "gemini", "gemini", "asky", "dead", "dead", "home"], ups
assert [r[7] for r in rows if r[2] == "dead"] == ["upstream-error", "fallback-to-device"], rows
PY
"$PLM" audit export --audit "$AUDIT" >"$TMP/export.json" 2>/dev/null
grep -q "alice@example.com\|Alice Example" "$TMP/export.json" && fail "a personal value is in the audit log" || pass
grep -qF "$PLM_ESCALATE_TEST_KEY" "$TMP/export.json" && fail "the key is in the audit log" || pass
grep -qF "$PLM_ESCALATE_TEST_KEY" "$TMP/dev.err" && fail "the key is in the server's log" || pass

# ------------------------------- uncertain: the device's first tokens decide
# Two more device servers: one whose rule always fires (no token has
# probability 1), one whose rule never does (entropy above the largest allowed).
uncertain_policy() {
  echo '{"upstreams": [{"name": "home", "kind": "openai", "base_url": "'"$BIG/v1"'", "model": "big", "consent": "always"}],
         "rules": [{"when": "uncertain", "upstream": "home", "first_tokens": 4, '"$1"'}]}'
}
uncertain_policy '"min_token_prob_quantile": {"q": 0.5, "below": 1}' >"$TMP/unsure.json"
uncertain_policy '"entropy_quantile": {"q": 0.5, "above": 1000}' >"$TMP/sure.json"
QUESTION='{"messages":[{"role":"user","content":"once upon a time"}],"max_tokens":12,"temperature":0'
post "$QUESTION}"
device_answer=$(json 'j["choices"][0]["message"]["content"]')
curl -s -m 120 -o "$TMP/body" "$BIG/v1/chat/completions" -d "$QUESTION,\"model\":\"big\"}"
upstream_answer=$(json 'j["choices"][0]["message"]["content"]')
for kind in unsure sure; do
  start_server "dev-$kind" "$PLM" serve -m "$TMP/dev.gguf" --port 0 --chat-template chatml -t 1 -c 128 \
    --policy "$TMP/$kind.json" --audit "$TMP/$kind.db"
  DEV="http://127.0.0.1:$PORT"
  post "$QUESTION,\"stream\":true}"
  got=$(stream_text)
  if [ $kind = unsure ]; then
    [ "$got" = "$upstream_answer" ] && pass ||
      fail "uncertain fires: the stream is the upstream's answer alone ('$got' vs '$upstream_answer')"
    check "uncertain fires: route and reason" \
      '"x-pocketlm-route: home" in h and "uncertain: p50 of chosen-token probability" in body'
  else
    [ "$got" = "$device_answer" ] && pass ||
      fail "uncertain holds: the device's answer, held tokens included ('$got' vs '$device_answer')"
    check "uncertain holds: device, with the measured figures" \
      '"x-pocketlm-route: device" in h and "sure enough: p50 of entropy" in body'
  fi
  post "$QUESTION}"
  check "$kind, whole: the same route" '(j["pocketlm"]["route"] == "home") == ("'$kind'" == "unsure")'
done

# Shutdown with a call under way ends it cleanly.
kill -TERM "${PIDS[2]}"; wait "${PIDS[2]}" 2>/dev/null
[ $? -eq 0 ] && pass || fail "SIGTERM: clean exit"
finish
