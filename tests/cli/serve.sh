# pocketlm serve over real HTTP on loopback, with Debian's curl: every route,
# streaming, logprobs, stop strings, concurrency, cancellation, a full queue,
# every error status, and a graceful SIGTERM. Servers listen on port 0 (a free
# port each), so this test runs beside others.
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors
command -v curl >/dev/null || { echo "skipping: curl not found"; exit 77; }

"$PLM" convert "$SHARED/models/tinystories-656k" -o "$TMP/ts.gguf" >/dev/null 2>&1 || { fail "convert"; finish; exit; }
# A random-weight model of a real size: slow enough (milliseconds a token) to
# hold a slot while the test cancels, queues and signals.
"$PLM" synth smollm2-135m --type Q8_0 --layers 2 -o "$TMP/slow.gguf" >/dev/null 2>&1 || { fail "synth"; finish; exit; }

# start_server NAME ARGS...: starts the server, waits for its "listening on" line; sets PORT and SERVER_PID.
start_server() {
  local name=$1; shift
  "$PLM" serve --port 0 "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  SERVER_PID=$!
  for _ in $(seq 300); do grep -q "^listening on " "$TMP/$name.out" && break; sleep 0.1; done
  PORT=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$TMP/$name.out")
  [ -n "$PORT" ] || { fail "$name: no 'listening on' line"; sed 's/^/  stderr: /' "$TMP/$name.err"; kill "$SERVER_PID"; finish; exit; }
}

# stop_server DESCRIPTION: SIGTERM, then the process must exit 0.
stop_server() {
  kill -TERM "$SERVER_PID"
  wait "$SERVER_PID"
  local rc=$?
  [ "$rc" -eq 0 ] && pass || { fail "$1: exit $rc after SIGTERM"; tail -5 "$TMP"/*.err; }
}

# http STATUS DESCRIPTION CURL-ARGS...: the body goes to $TMP/body, headers to $TMP/headers.
http() {
  local want=$1 what=$2; shift 2
  local got
  got=$(curl -s -m 60 -o "$TMP/body" -D "$TMP/headers" -w '%{http_code}' "$@")
  [ "$got" = "$want" ] && pass || { fail "$what: HTTP $got, expected $want"; head -c 300 "$TMP/body"; echo; }
}

# check DESCRIPTION PYTHON-CODE [ARGS]: runs the code with `body` (the last
# body) and `sse` (its server-sent events, parsed) defined; it asserts.
check() {
  local what=$1 code=$2; shift 2
  python3 - "$TMP/body" "$@" >"$TMP/py.err" 2>&1 <<PY && pass || { fail "$what"; sed 's/^/  /' "$TMP/py.err" | tail -5; }
import json, sys
raw = open(sys.argv[1], encoding="utf-8").read()
args = sys.argv[2:]
def events():
    # SSE framing: "data: <payload>" lines, each event ended by a blank line.
    assert raw.endswith("\n\n"), "stream does not end with a blank line"
    out = []
    for block in raw[:-2].split("\n\n"):
        assert block.startswith("data: ") and "\n" not in block, "bad event: %r" % block[:80]
        out.append(block[6:])
    assert out and out[-1] == "[DONE]", "last event is not [DONE]"
    return [json.loads(e) for e in out[:-1]]
$code
PY
}

start_server main -m "$TMP/ts.gguf" --chat-template chatml --parallel 2 -t 1 --api-key sekret
KEY=(-H "Authorization: Bearer sekret")
URL="http://127.0.0.1:$PORT"

# ---------------------------------------------------------------- GET routes
http 200 "health" "$URL/health"
check "health body" 'assert json.loads(raw)["status"] == "ok"'
http 200 "models" "${KEY[@]}" "$URL/v1/models"
check "models body" '
m = json.loads(raw)
assert m["object"] == "list" and len(m["data"]) == 1
assert m["data"][0]["id"] == "ts.gguf" and m["data"][0]["object"] == "model", m
assert isinstance(m["data"][0]["created"], int) and m["data"][0]["owned_by"]'
http 200 "one model" "${KEY[@]}" "$URL/v1/models/ts.gguf"
check "one model body" '
m = json.loads(raw)
assert m["id"] == "ts.gguf" and m["object"] == "model" and isinstance(m["created"], int), m'
http 404 "a model not served" "${KEY[@]}" "$URL/v1/models/gpt-4o"
check "a model not served: OpenAI-shaped error" '
e = json.loads(raw)["error"]
assert e["code"] == "model_not_found" and e["param"] == "model" and "gpt-4o" in e["message"], e'

# The chat page: embedded files, no key needed, a CSP that forbids other origins.
for file in "/ text/html" "/app.js text/javascript" "/style.css text/css"; do
  read -r path type <<<"$file"
  http 200 "page file $path" "$URL$path"
  grep -qi "^content-type: $type; charset=utf-8" "$TMP/headers" && pass || fail "$path is $type"
  grep -qi "^content-security-policy: default-src 'none'; script-src 'self'" "$TMP/headers" && pass || fail "$path has the CSP"
  grep -qi '^cache-control: no-cache' "$TMP/headers" && pass || fail "$path has Cache-Control"
done
cmp -s "$TMP/body" "$(dirname "$0")/../../web/style.css" && pass || fail "/style.css is web/style.css"

# ------------------------------------------------------- legacy completions
"$PLM" run -m "$TMP/ts.gguf" -p "Once upon a time" -n 30 --temp 0 >"$TMP/run.txt" 2>/dev/null
n_prompt=$("$PLM" tokenize -m "$TMP/ts.gguf" -p "Once upon a time" | wc -w)
http 200 "completion" "${KEY[@]}" "$URL/v1/completions" \
  -d '{"model":"x","prompt":"Once upon a time","max_tokens":30,"temperature":0}'
cp "$TMP/body" "$TMP/completion.json"
check "greedy completion equals 'pocketlm run --temp 0'" '
c = json.loads(raw)
want = open(args[0], encoding="utf-8").read()[:-1]   # run adds a newline
assert c["object"] == "text_completion" and c["id"].startswith("cmpl-"), c
ch = c["choices"][0]
assert ch["text"] == want, (ch["text"], want)
assert ch["index"] == 0 and ch["finish_reason"] == "length" and ch["logprobs"] is None
u = c["usage"]
assert u["prompt_tokens"] == int(args[1]) and u["completion_tokens"] == 30
assert u["total_tokens"] == u["prompt_tokens"] + 30' "$TMP/run.txt" "$n_prompt"

http 200 "completion stream" "${KEY[@]}" -N "$URL/v1/completions" \
  -d '{"prompt":"Once upon a time","max_tokens":30,"temperature":0,"stream":true}'
grep -qi '^content-type: text/event-stream' "$TMP/headers" && pass || fail "stream content type"
check "streamed completion: SSE chunks add up to the same text" '
chunks = events()
whole = json.load(open(args[0]))
assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
assert "".join(c["choices"][0]["text"] for c in chunks) == whole["choices"][0]["text"]
assert [c["choices"][0]["finish_reason"] for c in chunks][-1] == "length"
assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])' "$TMP/completion.json"

http 200 "completion logprobs" "${KEY[@]}" "$URL/v1/completions" \
  -d '{"prompt":"Once upon a time","max_tokens":8,"temperature":0,"logprobs":3}'
check "legacy logprobs shape" '
c = json.loads(raw)["choices"][0]
lp = c["logprobs"]
n = len(lp["tokens"])
assert n == 8 and len(lp["token_logprobs"]) == n and len(lp["top_logprobs"]) == n and len(lp["text_offset"]) == n
assert "".join(lp["tokens"]) == c["text"]
for tok, p, top, off in zip(lp["tokens"], lp["token_logprobs"], lp["top_logprobs"], lp["text_offset"]):
    assert p <= 0 and 1 <= len(top) <= 3 and c["text"][off:].startswith(tok)
    assert abs(max(top.values()) - p) < 1e-5      # greedy: the chosen token is the most likely'

# Stop strings: the text ends just before the first one, which is not sent.
stop_word=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))["choices"][0]["text"]; print(t.split()[3])' "$TMP/completion.json")
for stream in false true; do
  http 200 "stop string (stream $stream)" "${KEY[@]}" "$URL/v1/completions" \
    -d "{\"prompt\":\"Once upon a time\",\"max_tokens\":30,\"temperature\":0,\"stop\":[\"zzz\",\"$stop_word\"],\"stream\":$stream}"
  check "stop string ends the text (stream $stream)" '
whole = json.load(open(args[0]))["choices"][0]["text"]
want = whole[:whole.index(args[1])]
if args[2] == "true":
    chunks = events()
    text, reason = "".join(c["choices"][0]["text"] for c in chunks), chunks[-1]["choices"][0]["finish_reason"]
else:
    c = json.loads(raw)["choices"][0]
    text, reason = c["text"], c["finish_reason"]
assert text == want and reason == "stop", (text, want, reason)' "$TMP/completion.json" "$stop_word" "$stream"
done

http 200 "seeded sampling" "${KEY[@]}" "$URL/v1/completions" -d '{"prompt":"Once","max_tokens":20,"temperature":1,"seed":42}'
cp "$TMP/body" "$TMP/seeded.json"
http 200 "seeded sampling again" "${KEY[@]}" "$URL/v1/completions" -d '{"prompt":"Once","max_tokens":20,"temperature":1,"seed":42}'
check "the same seed gives the same text" '
assert json.loads(raw)["choices"][0]["text"] == json.load(open(args[0]))["choices"][0]["text"]' "$TMP/seeded.json"

# ---------------------------------------------------------- chat completions
CHAT='"messages":[{"role":"system","content":"You tell stories."},{"role":"user","content":[{"type":"text","text":"Tell me one."}]}]'
http 200 "chat" "${KEY[@]}" "$URL/v1/chat/completions" -d "{$CHAT,\"max_tokens\":12,\"temperature\":0,\"some_future_field\":{\"x\":1}}"
cp "$TMP/body" "$TMP/chat.json"
check "chat completion shape" '
c = json.loads(raw)
assert c["object"] == "chat.completion" and c["id"].startswith("chatcmpl-") and c["model"] == "ts.gguf"
assert isinstance(c["created"], int)
ch = c["choices"][0]
assert ch["index"] == 0 and ch["message"]["role"] == "assistant" and isinstance(ch["message"]["content"], str)
assert ch["finish_reason"] in ("stop", "length") and ch["logprobs"] is None
u = c["usage"]
assert u["completion_tokens"] <= 12 and u["total_tokens"] == u["prompt_tokens"] + u["completion_tokens"]'

http 200 "chat stream" "${KEY[@]}" -N "$URL/v1/chat/completions" \
  -d "{$CHAT,\"max_tokens\":12,\"temperature\":0,\"stream\":true,\"stream_options\":{\"include_usage\":true},\"logprobs\":true,\"top_logprobs\":3}"
check "chat stream: chunks, logprobs, usage, [DONE]" '
chunks = events()
whole = json.load(open(args[0]))
assert all(c["object"] == "chat.completion.chunk" and c["id"] == chunks[0]["id"] for c in chunks)
assert chunks[0]["choices"][0]["delta"]["role"] == "assistant"
usage = chunks[-1]
assert usage["choices"] == [] and usage["usage"] == whole["usage"], usage
body = chunks[:-1]
assert all(c["usage"] is None for c in body)
text = "".join(c["choices"][0]["delta"].get("content", "") for c in body)
assert text == whole["choices"][0]["message"]["content"]
assert body[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]
assert body[-1]["pocketlm"] == usage["pocketlm"] == whole["pocketlm"] == {"route": "device"}
assert all("pocketlm" not in c for c in body[:-1])
entries = [e for c in body if c["choices"][0]["logprobs"] for e in c["choices"][0]["logprobs"]["content"]]
assert "".join(e["token"] for e in entries) == text
for e in entries:
    assert bytes(e["bytes"]).decode("utf-8", "replace") == e["token"] and e["logprob"] <= 0
    tops = [t["logprob"] for t in e["top_logprobs"]]
    assert len(tops) == 3 and tops == sorted(tops, reverse=True) and abs(tops[0] - e["logprob"]) < 1e-5' "$TMP/chat.json"

# ------------------------------------------------------------------- errors
# error STATUS DESCRIPTION PARAM CURL-ARGS...: an OpenAI-shaped error naming PARAM ("" = null).
error() {
  local status=$1 what=$2 param=$3; shift 3
  http "$status" "$what" "$@"
  check "$what: OpenAI error shape" '
e = json.loads(raw)["error"]
assert set(e) == {"message", "type", "param", "code"} and e["message"] and e["type"], e
assert e["param"] == (args[0] or None), e' "$param"
}
C="$URL/v1/completions"
error 400 "malformed JSON" "" "${KEY[@]}" "$C" -d '{"prompt": "x",'
error 400 "not an object" "" "${KEY[@]}" "$C" -d '["prompt"]'
error 400 "wrong type: temperature" temperature "${KEY[@]}" "$C" -d '{"prompt":"x","temperature":"hot"}'
error 400 "wrong type: max_tokens" max_tokens "${KEY[@]}" "$C" -d '{"prompt":"x","max_tokens":2.5}'
error 400 "wrong type: stop" stop "${KEY[@]}" "$C" -d '{"prompt":"x","stop":[1]}'
error 400 "wrong type: messages" messages "${KEY[@]}" "$URL/v1/chat/completions" -d '{"messages":"hi"}'
error 400 "n=2" n "${KEY[@]}" "$C" -d '{"prompt":"x","n":2}'
error 400 "top_logprobs over 20" top_logprobs "${KEY[@]}" "$URL/v1/chat/completions" \
  -d '{"messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":21}'
long=$(python3 -c 'print("once upon a time " * 300)')
error 400 "prompt longer than the context" prompt "${KEY[@]}" "$C" -d "{\"prompt\":\"$long\"}"
grep -Eq 'the prompt is [0-9]+ tokens but the context holds 512' "$TMP/body" && pass || fail "too long: token counts in the message"
error 401 "no API key" "" "$C" -d '{"prompt":"x"}'
error 401 "wrong API key" "" -H "Authorization: Bearer nope" "$C" -d '{"prompt":"x"}'
python3 -c 'print("{\"prompt\":\"" + "a" * 1100000 + "\"}")' >"$TMP/big.json"
error 413 "body over the limit" "" "${KEY[@]}" "$C" --data-binary @"$TMP/big.json"
error 413 "chunked body over the limit" "" "${KEY[@]}" -H "Transfer-Encoding: chunked" "$C" --data-binary @"$TMP/big.json"
error 404 "unknown route" "" "${KEY[@]}" "$URL/v1/nothing"
error 405 "wrong method" "" "${KEY[@]}" -X GET "$C"
grep -qi '^allow: POST' "$TMP/headers" && pass || fail "405 has an Allow header"
http 200 "the server is still serving" "$URL/health"

# ------------------------------------------------------------- concurrency
for i in 1 2 3 4; do
  curl -s -N -m 60 "${KEY[@]}" "$URL/v1/chat/completions" -o "$TMP/par$i" \
    -d "{$CHAT,\"max_tokens\":40,\"stream\":true,\"seed\":$i}" &
done
wait_ok=0
for job in $(jobs -p); do [ "$job" = "$SERVER_PID" ] && continue; wait "$job" || wait_ok=1; done
[ "$wait_ok" -eq 0 ] && pass || fail "4 concurrent streams on 2 slots: a curl failed"
for i in 1 2 3 4; do
  cp "$TMP/par$i" "$TMP/body"
  check "concurrent stream $i completes" 'c = events(); assert c[-1]["choices"][0]["finish_reason"] in ("stop", "length")'
done

http 200 "metrics" "$URL/metrics"
check "metrics in Prometheus text" '
lines = raw.splitlines()
def value(name):
    return [float(l.split()[-1]) for l in lines if l.startswith(name)]
assert value("pocketlm_requests_total{route=\"/v1/completions\",status=\"200\"}")[0] >= 7
assert value("pocketlm_requests_total{route=\"/v1/completions\",status=\"401\"}")[0] == 2
assert value("pocketlm_requests_total{route=\"other\",status=\"404\"}")[0] == 1
assert value("pocketlm_generated_tokens_total")[0] >= 200 and value("pocketlm_prompt_tokens_total")[0] > 0
assert value("pocketlm_slots_busy")[0] == 0 and value("pocketlm_queue_depth")[0] == 0
for h in ("pocketlm_request_duration_seconds", "pocketlm_time_to_first_token_seconds"):
    assert "# TYPE %s histogram" % h in lines
    buckets = value(h + "_bucket")
    assert buckets == sorted(buckets) and buckets[-1] == value(h + "_count")[0] > 0'
stop_server "idle server"

# ------------------------------------------- cancellation and a full queue
start_server slow -m "$TMP/slow.gguf" -c 2048 -t 1 --parallel 1 --queue 1 --shutdown-timeout 2
URL="http://127.0.0.1:$PORT"
SLOW='{"prompt":"hello","max_tokens":1900,"stream":true}'
metric() { curl -s "$URL/metrics" | sed -n "s/^$1 //p"; }
# wait_metric NAME VALUE: polls /metrics for up to 30 s.
wait_metric() {
  for _ in $(seq 300); do [ "$(metric "$1")" = "$2" ] && return 0; sleep 0.1; done
  return 1
}

# A random model's tokens are mostly unused ones that decode to no text, so
# "the stream started" is read from /metrics, not from the text received.
curl -s -N -m 120 "$URL/v1/completions" -d "$SLOW" >/dev/null &
curl_pid=$!
wait_metric pocketlm_slots_busy 1 && pass || fail "the slow stream started"
kill "$curl_pid"; wait "$curl_pid" 2>/dev/null
wait_metric pocketlm_slots_busy 0 && pass || fail "a client that disconnects frees its slot"
http 200 "served after a cancellation" -m 30 "$URL/v1/completions" -d '{"prompt":"hello","max_tokens":5}'

curl -s -N -m 120 "$URL/v1/completions" -d "$SLOW" >/dev/null &
first=$!
wait_metric pocketlm_slots_busy 1 || fail "first slow request runs"
curl -s -N -m 120 "$URL/v1/completions" -d "$SLOW" >/dev/null &
second=$!
wait_metric pocketlm_queue_depth 1 && pass || fail "second slow request waits in the queue"
error 503 "queue full" "" "$URL/v1/completions" -d '{"prompt":"hello","max_tokens":5}'
grep -qi '^retry-after: [0-9]' "$TMP/headers" && pass || fail "503 has Retry-After"
kill "$first" "$second"; wait "$first" "$second" 2>/dev/null
wait_metric pocketlm_slots_busy 0 && pass || fail "slots free after both clients left"
wait_metric pocketlm_queue_depth 0 && pass || fail "queue empty after both clients left"

# SIGTERM during a stream that cannot finish within the 2 s grace period:
# the stream is told (an error event, then [DONE]) and the server exits 0.
curl -s -N -m 120 "$URL/v1/completions" -d "$SLOW" >"$TMP/body" &
curl_pid=$!
wait_metric pocketlm_slots_busy 1 || fail "the stream to cut started"
start=$(date +%s)
stop_server "SIGTERM during a stream"
elapsed=$(( $(date +%s) - start ))
[ "$elapsed" -le 15 ] && pass || fail "shutdown took ${elapsed}s with a 2 s grace period"
wait "$curl_pid"
check "the cut stream ends with an error event and [DONE]" '
raw_events = raw[:-2].split("\n\n")
assert raw_events[-1] == "data: [DONE]"
last = json.loads(raw_events[-2][6:])
assert "error" in last and "shutting down" in last["error"]["message"], last'

# SIGTERM during a short stream: it finishes within the grace period.
start_server graceful -m "$TMP/slow.gguf" -c 256 -t 1 --shutdown-timeout 60
URL="http://127.0.0.1:$PORT"
curl -s -N -m 120 "$URL/v1/completions" -d '{"prompt":"hello","max_tokens":150,"stream":true}' >"$TMP/body" &
curl_pid=$!
# The stream's response is counted when its headers are queued: the request
# is in the server, whether or not it has finished by the next poll.
for _ in $(seq 300); do
  curl -s "$URL/metrics" | grep -qF 'pocketlm_requests_total{route="/v1/completions",status="200"} 1' && break
  sleep 0.1
done
stop_server "SIGTERM with a request that finishes in time"
wait "$curl_pid"
curl_rc=$?
check "the in-flight stream finished normally" '
assert args[0] == "0", "curl exit " + args[0]
c = events(); assert c[-1]["choices"][0]["finish_reason"] == "length"' "$curl_rc"

expect_exit 2 "serve without a model" -- "$PLM" serve --port 0
expect_exit 2 "serve --parallel 0" -- "$PLM" serve -m "$TMP/ts.gguf" --parallel 0
expect_exit 1 "serve on an address that is not one" -- "$PLM" serve -m "$TMP/ts.gguf" --port 0 --host 256.1.1.1
finish
