/*
 * The audit log of what leaves the device: storage layout and the hash chain,
 * shared by the writer (audit.c), the readers and verifier (audit_read.c) and
 * the chain's serialization (audit_chain.c). docs/audit.md is the user's view.
 *
 * One SQLite database (WAL, synchronous=FULL) with three tables:
 *
 *   meta(key, value)      format = "pocketlm-audit", schema_version = "1",
 *                         hash = "sha256" | "hmac-sha256",
 *                         key_check = HMAC(key, "pocketlm-audit-key-check") when keyed
 *   entries(seq, ...)     the chain: seq 1, 2, 3, ... without gaps. A "request"
 *                         entry is written before a request is sent, a
 *                         "completion" entry (request_seq = the request's seq)
 *                         after it ends; the fields of the other kind are NULL.
 *   head(id = 1, n_entries, hash, seal)
 *                         the number of entries and the last one's hash,
 *                         updated in the transaction that appends, so that a
 *                         truncated tail shows; seal = HMAC over both when keyed.
 *
 * An entry's hash is SHA-256 (or HMAC-SHA-256 with the key) of its fields, each
 * written as "<decimal byte length>:<bytes>", in this order:
 *   request:    "pocketlm-audit-v1", seq, "request", time, upstream, host, rule,
 *               reason, head, body, redactions, prev_hash
 *   completion: "pocketlm-audit-v1", seq, "completion", time, request_seq,
 *               http_status, error, bytes_sent, bytes_received, duration_ms,
 *               outcome, prev_hash
 * Integers are written in decimal, hashes as 64 lowercase hex digits. The
 * first entry's prev_hash is AUDIT_GENESIS. Length prefixes make the encoding
 * unambiguous: no two different entries serialize to the same bytes.
 */
#ifndef PLM_PRIVACY_AUDIT_H
#define PLM_PRIVACY_AUDIT_H

#include "pocketlm.h"

#include <pthread.h>
#include <sqlite3.h>

#define AUDIT_FORMAT "pocketlm-audit"
#define AUDIT_SCHEMA_VERSION 1
#define AUDIT_ENTRY_TAG "pocketlm-audit-v1"
#define AUDIT_HEAD_TAG "pocketlm-audit-v1-head"
#define AUDIT_KEY_CHECK_TAG "pocketlm-audit-key-check"
#define AUDIT_GENESIS "0000000000000000000000000000000000000000000000000000000000000000"
#define AUDIT_KEY_ENV "POCKETLM_AUDIT_KEY"

/* The columns of entries, in the order the writer binds and the readers read them. */
#define AUDIT_ENTRY_COLUMNS                                                                      \
    "seq, kind, time, upstream, host, rule, reason, head, body, redactions, request_seq, "      \
    "http_status, error, bytes_sent, bytes_received, duration_ms, outcome, prev_hash, hash"
#define AUDIT_N_ENTRY_COLUMNS 19

struct plm_audit {
    sqlite3 *db;
    pthread_mutex_t lock;    /* one transaction at a time on the connection */
    int schema_version;      /* the file's (meta schema_version) */
    bool keyed;              /* the log's hashes are HMACs (meta hash = "hmac-sha256") */
    char *key;               /* a copy of $POCKETLM_AUDIT_KEY, or NULL */
    size_t key_len;
    const char *key_problem; /* why the key does not fit the log (writing and verifying
                                then fail with it), or NULL */
};

/* PLM_OK when the log can be written and verified with the key at hand, else
 * records and returns the error (key_problem). */
int audit_check_key(const struct plm_audit *audit);

/* hex = SHA-256 of data, or HMAC-SHA-256 with key when key is not NULL. */
int audit_digest(const char *key, size_t key_len, const void *data, size_t len, char hex[65]);

/* The hash of an entry as laid out above (with the log's key when keyed). */
int audit_entry_hash(const struct plm_audit *audit, const struct plm_audit_entry *entry, char hex[65]);

/* The head's seal: HMAC of (n_entries, hash); "" when the log is not keyed. */
int audit_head_seal(const struct plm_audit *audit, int64_t n_entries, const char *hash, char hex[65]);

/* The request line and headers with secrets replaced by "[KEY]": the values of
 * Authorization, Proxy-Authorization, X-Api-Key, Api-Key and X-Goog-Api-Key
 * headers, and of key=, api_key=, apikey= and access_token= query parameters.
 * Returns a malloc'd copy (length in *masked_len), NULL when out of memory. */
char *audit_mask_secrets(const char *head, size_t *masked_len);

/* Copies the host[:port] of url (without user:password@) into host; false if
 * there is none or it does not fit. */
bool audit_url_host(const char *url, char *host, size_t capacity);

/* True when the len bytes are well-formed UTF-8. */
bool audit_is_utf8(const void *text, size_t len);

/* The outcome's stored name, or NULL for a value outside the enum. */
const char *audit_outcome_name(enum plm_audit_outcome outcome);

/* Runs a statement without results; on failure records "audit: <what>: <sqlite message>". */
int audit_exec(sqlite3 *db, const char *sql, const char *what);

/* plm_fail with the connection's message: "audit: <what>: <sqlite message>". */
int audit_fail_sqlite(sqlite3 *db, const char *what);

#endif
