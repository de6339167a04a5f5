# Shared helpers for the command-line tests, sourced by tests/cli/*.sh.

set -u
PLM=${POCKETLM_BIN:?POCKETLM_BIN must point at the pocketlm program}
SHARED=${POCKETLM_SHARED:-../shared}
TMP=$(mktemp -d "${POCKETLM_TEST_TMP:-/tmp}/cli.XXXXXX" 2>/dev/null || mktemp -d)
PIDS=() # background servers, stopped at exit (start_server)
trap 'kill "${PIDS[@]}" 2>/dev/null; rm -rf "$TMP"' EXIT
failures=0
checks=0

fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { checks=$((checks + 1)); }

# expect_exit CODE DESCRIPTION -- command...: runs the command, checks its exit code.
expect_exit() {
  local want=$1 what=$2; shift 3
  "$@" >"$TMP/out" 2>"$TMP/err"
  local got=$?
  if [ "$got" -ne "$want" ]; then
    fail "$what: exit $got, expected $want"; sed 's/^/  stderr: /' "$TMP/err" | head -5
  else pass; fi
}

# expect_stderr PATTERN DESCRIPTION: the last command's stderr matches PATTERN (grep -E).
expect_stderr() {
  if grep -Eq -- "$1" "$TMP/err"; then pass; else fail "$2: stderr lacks /$1/"; sed 's/^/  stderr: /' "$TMP/err" | head -5; fi
}

# The stderr of a failed command is one line (plus nothing else): a clear error, not a dump.
expect_one_line_error() {
  local n; n=$(grep -c . "$TMP/err")
  if [ "$n" -eq 1 ]; then pass; else fail "$1: expected a one-line error, got $n lines"; sed 's/^/  stderr: /' "$TMP/err" | head -5; fi
}

need_shared() {
  for f in "$@"; do
    [ -e "$SHARED/$f" ] || { echo "skipping: $SHARED/$f not found (set POCKETLM_SHARED)"; exit 77; }
  done
}

finish() {
  echo "$checks passed, $failures failed"
  [ "$failures" -eq 0 ]
}

# start_server NAME COMMAND...: runs a server that prints "listening on
# http://127.0.0.1:PORT" when ready (pocketlm serve, tests/upstream/stub_server.py);
# sets PORT and LAST (its pid) and adds it to PIDS. Its output is in $TMP/NAME.out
# and $TMP/NAME.err.
start_server() {
  local name=$1; shift
  "$@" >"$TMP/$name.out" 2>"$TMP/$name.err" &
  LAST=$!
  PIDS+=("$LAST")
  for _ in $(seq 300); do grep -q "^listening on " "$TMP/$name.out" && break; sleep 0.1; done
  PORT=$(sed -n 's|^listening on http://127\.0\.0\.1:\([0-9][0-9]*\)$|\1|p' "$TMP/$name.out")
  [ -n "$PORT" ] || { fail "$name: no 'listening on' line"; sed 's/^/  stderr: /' "$TMP/$name.err"; finish; exit; }
}
