# The audit log survives SIGKILL of the server in the middle of escalated
# requests: every request an upstream received has its record, no record is
# torn, `pocketlm audit verify` passes, and a restarted server appends to the
# same chain.
#
# Round 1 kills the server while eight requests wait on a stalled upstream
# (tests/upstream/stub_server.py, which logs each request as it arrives):
# their records were committed before sending, their completions never came.
# Rounds 2 and 3 kill it while streams from a REAL upstream (`pocketlm serve`
# on tinystories-656k) are under way, when completions are being written.
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors models/stories260K/stories260K.bin
command -v curl >/dev/null || { echo "skipping: curl not found"; exit 77; }
STUB="$(dirname "$0")/../upstream/stub_server.py"
export PLM_KILL_TEST_KEY="sk-test-$$-0a1b2c3d4e5f"

# requests_in_log: request entries in the audit log.
requests_in_log() {
  "$PLM" audit list --audit "$AUDIT" 2>/dev/null | grep -c '^[0-9]'
}

# unfinished_in_log: requests whose completion was never written (the server died first).
unfinished_in_log() {
  "$PLM" audit list --audit "$AUDIT" 2>/dev/null | awk '$8 == "unfinished"' | wc -l
}

# chat_requests_received URL: the requests to /v1/chat/completions a pocketlm server has answered or is answering.
chat_requests_received() {
  curl -s "$1/metrics" | awk '/^pocketlm_requests_total\{.*route="\/v1\/chat\/completions"/ {n += $2} END {print n + 0}'
}

# clients N MODEL MAX_TOKENS: N concurrent streaming requests, left running.
clients() {
  for i in $(seq "$1"); do
    curl -s -m 120 -o /dev/null "$DEV/v1/chat/completions" \
      -d '{"model":"'"$2"'","stream":true,"max_tokens":'"$3"',"messages":[{"role":"user","content":"Tell a story about bob@example.com, number '"$i"'"}]}' &
  done
}

verify_intact() {
  expect_exit 0 "$1: audit verify" -- "$PLM" audit verify --audit "$AUDIT"
  [ ! -s "$TMP/err" ] && pass || { fail "$1: verify complained"; cat "$TMP/err"; }
  grep -q "chain intact" "$TMP/out" && pass || { fail "$1: chain not intact"; cat "$TMP/out"; }
}

"$PLM" convert "$SHARED/models/tinystories-656k" -o "$TMP/big.gguf" >/dev/null 2>&1 || { fail "convert big"; finish; exit; }
"$PLM" convert "$SHARED/models/stories260K/stories260K.bin" --vocab "$SHARED/models/stories260K/tok512.bin" \
  -o "$TMP/dev.gguf" >/dev/null 2>&1 || { fail "convert device"; finish; exit; }
start_server big "$PLM" serve -m "$TMP/big.gguf" --port 0 --chat-template chatml -t 1 --parallel 4 --alias big
BIG="http://127.0.0.1:$PORT"
start_server stub python3 "$STUB" --key "$PLM_KILL_TEST_KEY" --log "$TMP/stub.log"
STUBURL="http://127.0.0.1:$PORT"
cat >"$TMP/policy.json" <<EOF
{"upstreams": [
  {"name": "stalled", "kind": "anthropic", "base_url": "$STUBURL/stall.1", "model": "m",
   "api_key_env": "PLM_KILL_TEST_KEY", "consent": "always", "timeout_s": 120, "stall_timeout_s": 120},
  {"name": "home", "kind": "openai", "base_url": "$BIG/v1", "model": "big", "consent": "always"}],
 "rules": [{"when": "explicit"}]}
EOF
AUDIT="$TMP/audit.db"
SERVE=("$PLM" serve -m "$TMP/dev.gguf" --port 0 --chat-template chatml -t 1 --policy "$TMP/policy.json" --audit "$AUDIT")

# ---------------------------------------------- round 1: a stalled upstream
start_server dev1 "${SERVE[@]}"
DEV="http://127.0.0.1:$PORT"
clients 8 stalled 16
for _ in $(seq 100); do [ "$(wc -l <"$TMP/stub.log" 2>/dev/null || echo 0)" -ge 8 ] && break; sleep 0.1; done
received=$(wc -l <"$TMP/stub.log")
kill -9 "$LAST"; wait "$LAST" 2>/dev/null
[ "$received" -eq 8 ] && pass || fail "round 1: the stand-in received $received of 8 requests before the kill"
logged=$(requests_in_log)
echo "round 1: $received requests reached the upstream, $logged recorded"
[ "$logged" -ge "$received" ] && pass || fail "round 1: $received requests left, $logged recorded"
verify_intact "round 1"

# ------------------------------------- rounds 2 and 3: streams being written
before=$logged
for round in 2 3; do
  unfinished_before=$(unfinished_in_log)
  start_server "dev$round" "${SERVE[@]}"
  DEV="http://127.0.0.1:$PORT"
  already=$(chat_requests_received "$BIG")
  # Three waves for the upstream's four slots: the tiny model writes a story
  # in a few tenths of a second, and on a loaded machine six streams (one
  # and a half waves) had sometimes all ended before the kill.
  clients 12 home 400
  # Kill as soon as the first streams have started, long before they end.
  for _ in $(seq 500); do [ $(( $(chat_requests_received "$BIG") - already )) -ge 2 ] && break; sleep 0.01; done
  kill -9 "$LAST"; wait "$LAST" 2>/dev/null
  # Let the upstream notice its clients are gone, then count what it received.
  for _ in $(seq 50); do curl -s "$BIG/metrics" | grep -q '^pocketlm_slots_busy 0' && break; sleep 0.1; done
  received=$(( $(chat_requests_received "$BIG") - already ))
  logged=$(requests_in_log)
  echo "round $round: $received requests reached the upstream, $((logged - before)) recorded"
  [ "$received" -ge 1 ] && pass || fail "round $round: no request reached the upstream before the kill"
  [ $((logged - before)) -ge "$received" ] && pass ||
    fail "round $round: $received requests reached the upstream, $((logged - before)) recorded"
  verify_intact "round $round"
  [ "$(unfinished_in_log)" -gt "$unfinished_before" ] && pass ||
    fail "round $round: every request had finished before the kill"
  before=$logged
done

finish
