# The chat page in headless Chromium (tests/web/chat.test.mjs, driven by
# playwright-core): a streamed answer from the real TinyStories-656K model,
# its details, the conversation, the Stop button, and the consent flow of an
# escalation to a second real server (the test writes the policy and the audit
# log into $TMP); saves screenshots as $POCKETLM_ARTIFACTS/chat.png and
# consent.png (default build/artifacts/).
# Needs Debian's chromium and `npm ci --prefix tests/web` (.ci/run does both).
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors
web="$(cd "$(dirname "$0")/../web" && pwd)"
chromium=${CHROMIUM:-/usr/bin/chromium}
[ -x "$chromium" ] || { echo "skipping: $chromium not found (apt-get install chromium)"; exit 77; }
command -v node >/dev/null || { echo "skipping: node not found"; exit 77; }
[ -d "$web/node_modules/playwright-core" ] || { echo "skipping: $web/node_modules absent (npm ci --prefix tests/web)"; exit 77; }

"$PLM" convert "$SHARED/models/tinystories-656k" -o "$TMP/ts.gguf" >/dev/null 2>&1 || { fail "convert"; finish; exit; }
# Random weights at a real model's width: slow enough (milliseconds a token)
# that an answer is still running when the test presses Stop.
"$PLM" synth smollm2-135m --type Q8_0 --layers 2 -o "$TMP/slow.gguf" >/dev/null 2>&1 || { fail "synth"; finish; exit; }

artifacts=${POCKETLM_ARTIFACTS:-$(cd "$(dirname "$0")/../.." && pwd)/build/artifacts}
PLM="$PLM" MODEL="$TMP/ts.gguf" SLOW_MODEL="$TMP/slow.gguf" WORK="$TMP" ARTIFACTS="$artifacts" CHROMIUM="$chromium" \
  timeout 300 node "$web/chat.test.mjs"
