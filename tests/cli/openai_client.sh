# pocketlm serve driven by OpenAI's official Node client (tests/openai_client/
# client.test.mjs, the `openai` package from npm): models, chat and legacy
# completions, streaming, logprobs, stop, seeds, an aborted stream, and the
# SDK's typed errors, against the real TinyStories-656K model.
# Needs node and `npm ci --prefix tests/openai_client` (.ci/run does it).
. "$(dirname "$0")/common.bash"
need_shared models/tinystories-656k/model.safetensors
client="$(cd "$(dirname "$0")/../openai_client" && pwd)"
command -v node >/dev/null || { echo "skipping: node not found"; exit 77; }
[ -d "$client/node_modules/openai" ] || { echo "skipping: $client/node_modules absent (npm ci --prefix tests/openai_client)"; exit 77; }

"$PLM" convert "$SHARED/models/tinystories-656k" -o "$TMP/ts.gguf" >/dev/null 2>&1 || { fail "convert"; finish; exit; }
# The script starts the server on port 0 and stops it with SIGTERM.
PLM="$PLM" MODEL="$TMP/ts.gguf" timeout 300 node "$client/client.test.mjs"
