# pocketlm audit: the command line on logs written by an independent writer
# (Python, from the format in docs/audit.md), the documented checks (the
# sqlite3 + sha256sum recipe and the Python export checker), tampering, and
# bad files and command lines.
. "$(dirname "$0")/common.bash"
DOC="$(dirname "$0")/../../docs/audit.md"
PY=python3
[ -x /usr/bin/python3 ] && PY=/usr/bin/python3

# write_log FILE [KEY]: a log of 3 requests (the last unfinished) as docs/audit.md describes it.
write_log() {
  AUDIT_KEY="${2:-}" "$PY" - "$1" <<'EOF'
import hashlib, hmac, os, sqlite3, sys
path, key = sys.argv[1], os.environ["AUDIT_KEY"].encode()
def field(v):
    data = v if isinstance(v, bytes) else str(v).encode()
    return str(len(data)).encode() + b":" + data
def digest(*fields):
    data = b"".join(field(f) for f in fields)
    return hmac.new(key, data, hashlib.sha256).hexdigest() if key else hashlib.sha256(data).hexdigest()
db = sqlite3.connect(path)
db.executescript("""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
CREATE TABLE entries (seq INTEGER PRIMARY KEY, kind TEXT NOT NULL CHECK (kind IN ('request', 'completion')),
  time TEXT NOT NULL, upstream TEXT, host TEXT, rule TEXT, reason TEXT, head BLOB, body BLOB, redactions TEXT,
  request_seq INTEGER REFERENCES entries(seq), http_status INTEGER, error TEXT, bytes_sent INTEGER,
  bytes_received INTEGER, duration_ms INTEGER, outcome TEXT, prev_hash TEXT NOT NULL, hash TEXT NOT NULL) STRICT;
CREATE UNIQUE INDEX entries_completion ON entries(request_seq);
CREATE TABLE head (id INTEGER PRIMARY KEY CHECK (id = 1), n_entries INTEGER NOT NULL, hash TEXT NOT NULL,
  seal TEXT NOT NULL) STRICT;
""")
meta = {"format": "pocketlm-audit", "schema_version": "1", "hash": "hmac-sha256" if key else "sha256"}
if key:
    meta["key_check"] = hmac.new(key, b"pocketlm-audit-key-check", hashlib.sha256).hexdigest()
db.executemany("INSERT INTO meta VALUES (?, ?)", meta.items())
requests = [
    ("openai", "api.openai.com", "long-context", "prompt of 9000 tokens", b"POST /v1/chat/completions HTTP/1.1\r\nAuthorization: [KEY]\r\n",
     '{"messages":[{"role":"user","content":"Caf\u00e9 \U0001f600 [EMAIL_1]"}]}'.encode(), '{"email":1}',
     (200, "", 2048, 1024, 830, "ok")),
    ("gemini", "generativelanguage.googleapis.com", "vision", "", b"",
     b"\x00\x01binary\xff\xfe body", "{}", (0, "connection refused", 0, 0, 12, "fallback-to-device")),
    ("openai", "api.openai.com", "code", "tool call", b"POST /v1/x?key=[KEY] HTTP/1.1\r\n", b"{}", '{"phone":2}', None),
]
prev, seq = "0" * 64, 0
def add(kind, time, values, fields):
    global prev, seq
    seq += 1
    h = digest("pocketlm-audit-v1", seq, kind, time, *fields, prev)
    cols = "seq, kind, time, " + values + ", prev_hash, hash"
    marks = ", ".join("?" * (5 + len(fields)))
    db.execute(f"INSERT INTO entries ({cols}) VALUES ({marks})", (seq, kind, time, *fields, prev, h))
    prev = h
days = ["2025-01-30", "2025-01-31", "2025-02-01"]
for i, (upstream, host, rule, reason, head, body, redactions, done) in enumerate(requests):
    add("request", f"{days[i]}T12:00:00.00{i}Z", "upstream, host, rule, reason, head, body, redactions",
        (upstream, host, rule, reason, head, body, redactions))
    if done:
        add("completion", f"{days[i]}T12:00:01.00{i}Z",
            "request_seq, http_status, error, bytes_sent, bytes_received, duration_ms, outcome", (seq,) + done)
seal = digest("pocketlm-audit-v1-head", seq, prev) if key else ""
db.execute("INSERT INTO head VALUES (1, ?, ?, ?)", (seq, prev, seal))
db.commit()
EOF
}

extract() { sed -n "/$1-begin/,/$1-end/p" "$DOC"; }

# Command lines.
expect_exit 0 "audit --help" -- "$PLM" audit --help
cp "$TMP/out" "$TMP/help"
for sub in list show verify export; do
  grep -q "^  $sub " "$TMP/help" && pass || fail "audit --help lists $sub"
  expect_exit 0 "audit $sub --help" -- "$PLM" audit $sub --help
  grep -q "usage: pocketlm audit $sub" "$TMP/out" && pass || fail "audit $sub --help shows its usage"
  grep -q -- "--audit FILE" "$TMP/out" && pass || fail "audit $sub takes --audit"
done
expect_exit 2 "audit without a command" -- "$PLM" audit
expect_one_line_error "audit without a command"
expect_exit 2 "unknown audit command" -- "$PLM" audit delete
expect_exit 2 "unknown option" -- "$PLM" audit list --bogus

# Files that are not (yet) audit logs: exit 1, one line.
expect_exit 1 "missing log" -- "$PLM" audit list --audit "$TMP/none.db"
expect_stderr "no audit log at '.*none.db'" "missing log"
expect_one_line_error "missing log"
[ -e "$TMP/none.db" ] && fail "reading a missing log created it" || pass
printf 'just text, not a database at all, but long enough\n' >"$TMP/text.db"
expect_exit 1 "text file" -- "$PLM" audit verify --audit "$TMP/text.db"
expect_stderr "is not a pocketlm audit log \(file is not a database\)" "text file"
expect_one_line_error "text file"
"$PY" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.execute('CREATE TABLE t (x)'); c.commit()" "$TMP/other.db"
expect_exit 1 "another database" -- "$PLM" audit show 1 --audit "$TMP/other.db"
expect_stderr "not a pocketlm audit log \(it has no meta table\)" "another database"
expect_exit 1 "default log missing" -- env POCKETLM_HOME="$TMP/home" "$PLM" audit list
expect_stderr "no audit log at '$TMP/home/audit.db'" "default path"

# A log written by the Python writer, in the default place.
mkdir -p "$TMP/home"
write_log "$TMP/home/audit.db"
LOG="$TMP/home/audit.db"
expect_exit 0 "verify (default path)" -- env POCKETLM_HOME="$TMP/home" "$PLM" audit verify
grep -q "^5 entries (3 requests, 2 completions), chain intact, head [0-9a-f]\{64\}$" "$TMP/out" && pass \
  || fail "verify summary: $(cat "$TMP/out")"

expect_exit 0 "list" -- "$PLM" audit list --audit "$LOG"
[ "$(wc -l <"$TMP/out")" -eq 4 ] && pass || fail "list: header + 3 lines, got $(wc -l <"$TMP/out")"
grep -Eq "^1 +2025-01-30T12:00:00.000Z +openai +long-context +2048 +1024 +200 +ok +email=1$" "$TMP/out" && pass \
  || fail "list line 1: $(sed -n 2p "$TMP/out")"
grep -Eq "^3 +2025-01-31T12:00:00.001Z +gemini +vision +0 +0 +- +fallback-to-device +-$" "$TMP/out" && pass \
  || fail "list line 2: $(sed -n 3p "$TMP/out")"
grep -Eq "^5 .* code +- +- +- +unfinished +phone=2$" "$TMP/out" && pass || fail "list line 3: $(sed -n 4p "$TMP/out")"
expect_exit 0 "list --upstream" -- "$PLM" audit list --audit "$LOG" --upstream openai
[ "$(grep -c openai "$TMP/out")" -eq 2 ] && ! grep -q gemini "$TMP/out" && pass || fail "--upstream filters"
expect_exit 0 "list --since" -- "$PLM" audit list --audit "$LOG" --since "2025-01-31 12:00"
[ "$(wc -l <"$TMP/out")" -eq 3 ] && pass || fail "--since keeps the last 2 requests"
expect_exit 2 "list --since malformed" -- "$PLM" audit list --audit "$LOG" --since yesterday
expect_stderr "'yesterday' is not a UTC time" "--since malformed"
expect_exit 0 "list --json" -- "$PLM" audit list --audit "$LOG" --json
"$PY" -c "import json,sys; a=json.load(open(sys.argv[1])); assert [r['id'] for r in a]==[1,3,5] and a[1]['error']=='connection refused' and a[2]['finished'] is False and a[0]['redactions']=={'email':1}" "$TMP/out" \
  && pass || fail "list --json content"

expect_exit 0 "show 1" -- "$PLM" audit show 1 --audit "$LOG"
grep -q "Café 😀 \[EMAIL_1\]" "$TMP/out" && pass || fail "show prints a UTF-8 body as text"
grep -q "Authorization: \[KEY\]" "$TMP/out" && pass || fail "show prints the head"
grep -q "status:      HTTP 200" "$TMP/out" && pass || fail "show prints the status"
expect_exit 0 "show 4 (a completion's id)" -- "$PLM" audit show 4 --audit "$LOG"
grep -q "^request 3$" "$TMP/out" && pass || fail "show 4 shows request 3"
grep -q "not text: hex" "$TMP/out" && grep -q "00 01 62 69 6e 61 72 79 ff fe" "$TMP/out" && pass \
  || fail "show prints a binary body in hex"
grep -q "error:       connection refused" "$TMP/out" && pass || fail "show prints the transport error"
expect_exit 0 "show 5 (unfinished)" -- "$PLM" audit show 5 --audit "$LOG"
grep -q "completion:    none" "$TMP/out" && pass || fail "show says unfinished"
expect_exit 1 "show a missing id" -- "$PLM" audit show 99 --audit "$LOG"
expect_stderr "no request 99" "show a missing id"
expect_exit 2 "show abc" -- "$PLM" audit show abc --audit "$LOG"
expect_exit 2 "show without id" -- "$PLM" audit show --audit "$LOG"

# Export, and the checker of docs/audit.md on it.
extract audit-checker >"$TMP/checker.py"
expect_exit 0 "export" -- "$PLM" audit export --audit "$LOG" -o "$TMP/log.jsonl"
[ "$(wc -l <"$TMP/log.jsonl")" -eq 6 ] && pass || fail "export: header + 5 entries"
"$PY" "$TMP/checker.py" "$TMP/log.jsonl" >"$TMP/checked" 2>&1 && grep -q "5 entries, chain intact" "$TMP/checked" && pass \
  || fail "the documented checker on the export: $(cat "$TMP/checked")"
expect_exit 0 "export csv" -- "$PLM" audit export --audit "$LOG" --format csv
"$PY" -c "import csv,sys; r=list(csv.DictReader(open(sys.argv[1]))); assert len(r)==5 and bytes.fromhex(r[2]['body_hex']).startswith(b'\x00\x01binary') and r[3]['error']=='connection refused' and r[1]['upstream']==''" "$TMP/out" \
  && pass || fail "export csv content"
expect_exit 2 "export --format xml" -- "$PLM" audit export --audit "$LOG" --format xml
expect_exit 1 "export to a missing directory" -- "$PLM" audit export --audit "$LOG" -o "$TMP/no/such/dir.jsonl"
expect_one_line_error "export to a missing directory"

# The sqlite3 + sha256sum recipe of docs/audit.md, on every entry.
if command -v sqlite3 >/dev/null && command -v basenc >/dev/null; then
  query=$(extract audit-serialization | grep -v '^--' | sed 's/WHERE seq = 1/WHERE seq = SEQ/')
  for seq in 1 2 3 4 5; do
    computed=$(sqlite3 "$LOG" "${query/SEQ/$seq}" | basenc -d --base16 | sha256sum | cut -c1-64)
    stored=$(sqlite3 "$LOG" "SELECT hash FROM entries WHERE seq = $seq")
    [ "$computed" = "$stored" ] && pass || fail "the documented recipe on entry $seq: $computed, stored $stored"
  done
else
  echo "note: sqlite3 or basenc not installed: the by-hand recipe is not checked"
fi

# Tampering: verify and the checker both catch it, at the right entry.
tamper() { "$PY" -c "import sqlite3,sys; c=sqlite3.connect(sys.argv[1]); c.executescript(sys.argv[2]); c.commit()" "$@"; }
cp "$LOG" "$TMP/edited.db"
tamper "$TMP/edited.db" "UPDATE entries SET body = CAST(replace(CAST(body AS TEXT), 'Caf', 'CAF') AS BLOB) WHERE seq = 1"
expect_exit 1 "verify an edited body" -- "$PLM" audit verify --audit "$TMP/edited.db"
expect_stderr "^pocketlm audit verify: chain broken at entry 1: entry 1 \(request\) does not match its hash" "edited body"
expect_one_line_error "edited body"
"$PLM" audit export --audit "$TMP/edited.db" -o "$TMP/edited.jsonl"
"$PY" "$TMP/checker.py" "$TMP/edited.jsonl" >/dev/null 2>&1 && fail "the checker missed the edit" || pass
cp "$LOG" "$TMP/status.db"
tamper "$TMP/status.db" "UPDATE entries SET http_status = 404 WHERE seq = 2"
expect_exit 1 "verify an edited status" -- "$PLM" audit verify --audit "$TMP/status.db"
expect_stderr "chain broken at entry 2:" "edited status"
cp "$LOG" "$TMP/cut.db"
tamper "$TMP/cut.db" "DELETE FROM entries WHERE seq = 5"
expect_exit 1 "verify a cut log" -- "$PLM" audit verify --audit "$TMP/cut.db"
expect_stderr "chain broken at entry 5: entry 5 is missing: the head counts 5" "cut log"
cp "$LOG" "$TMP/newer.db"
tamper "$TMP/newer.db" "UPDATE meta SET value = '7' WHERE key = 'schema_version'"
expect_exit 1 "a newer schema" -- "$PLM" audit list --audit "$TMP/newer.db"
expect_stderr "written by a newer pocketlm \(schema version 7; this one knows up to 1\)" "newer schema"
expect_one_line_error "newer schema"

# A keyed log: verified with its key only.
write_log "$TMP/keyed.db" "secret key"
expect_exit 0 "verify a keyed log" -- env POCKETLM_AUDIT_KEY="secret key" "$PLM" audit verify --audit "$TMP/keyed.db"
expect_exit 1 "verify a keyed log without the key" -- env -u POCKETLM_AUDIT_KEY "$PLM" audit verify --audit "$TMP/keyed.db"
expect_stderr "this log is keyed: set POCKETLM_AUDIT_KEY" "no key"
expect_exit 1 "verify with a wrong key" -- env POCKETLM_AUDIT_KEY="guess" "$PLM" audit verify --audit "$TMP/keyed.db"
expect_stderr "not the key this log was created with" "wrong key"
expect_exit 0 "list a keyed log without the key" -- env -u POCKETLM_AUDIT_KEY "$PLM" audit list --audit "$TMP/keyed.db"
expect_exit 0 "export a keyed log" -- env -u POCKETLM_AUDIT_KEY "$PLM" audit export --audit "$TMP/keyed.db" -o "$TMP/keyed.jsonl"
POCKETLM_AUDIT_KEY="secret key" "$PY" "$TMP/checker.py" "$TMP/keyed.jsonl" >/dev/null && pass || fail "checker on a keyed export"

finish
