/*
 * The audit log's readers: walking the entries, listing requests with their
 * completions, and verifying the chain (layout and chain: audit.h).
 *
 * Readers run in one read transaction each, so that what they see (entries and
 * head) is one consistent state even while another process appends. Nothing
 * read from the file is trusted: a column of the wrong type or a NULL where a
 * value belongs is reported by verify, and reads as NULL or 0 elsewhere.
 */
#include "privacy/audit.h"

#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* What each column of an entry holds in a request and in a completion
 * (SQLITE_NULL: must be NULL in that kind), in AUDIT_ENTRY_COLUMNS order. */
static const struct {
    const char *name;
    int request_type, completion_type;
} entry_columns[AUDIT_N_ENTRY_COLUMNS] = {
    {"seq", SQLITE_INTEGER, SQLITE_INTEGER},
    {"kind", SQLITE_TEXT, SQLITE_TEXT},
    {"time", SQLITE_TEXT, SQLITE_TEXT},
    {"upstream", SQLITE_TEXT, SQLITE_NULL},
    {"host", SQLITE_TEXT, SQLITE_NULL},
    {"rule", SQLITE_TEXT, SQLITE_NULL},
    {"reason", SQLITE_TEXT, SQLITE_NULL},
    {"head", SQLITE_BLOB, SQLITE_NULL},
    {"body", SQLITE_BLOB, SQLITE_NULL},
    {"redactions", SQLITE_TEXT, SQLITE_NULL},
    {"request_seq", SQLITE_NULL, SQLITE_INTEGER},
    {"http_status", SQLITE_NULL, SQLITE_INTEGER},
    {"error", SQLITE_NULL, SQLITE_TEXT},
    {"bytes_sent", SQLITE_NULL, SQLITE_INTEGER},
    {"bytes_received", SQLITE_NULL, SQLITE_INTEGER},
    {"duration_ms", SQLITE_NULL, SQLITE_INTEGER},
    {"outcome", SQLITE_NULL, SQLITE_TEXT},
    {"prev_hash", SQLITE_TEXT, SQLITE_TEXT},
    {"hash", SQLITE_TEXT, SQLITE_TEXT},
};

static const char *column_text(sqlite3_stmt *stmt, int column)
{
    return sqlite3_column_type(stmt, column) == SQLITE_NULL ? NULL : (const char *)sqlite3_column_text(stmt, column);
}

static const uint8_t *column_blob(sqlite3_stmt *stmt, int column, size_t *len)
{
    const uint8_t *bytes = sqlite3_column_blob(stmt, column); /* before _bytes, as SQLite asks */
    *len = (size_t)sqlite3_column_bytes(stmt, column);
    return bytes;
}

/* The entry in the current row of a SELECT of AUDIT_ENTRY_COLUMNS. */
static void read_entry(sqlite3_stmt *stmt, struct plm_audit_entry *e)
{
    memset(e, 0, sizeof *e);
    e->seq = sqlite3_column_int64(stmt, 0);
    e->kind = column_text(stmt, 1);
    if (!e->kind)
        e->kind = "";
    e->time = column_text(stmt, 2);
    e->upstream = column_text(stmt, 3);
    e->host = column_text(stmt, 4);
    e->rule = column_text(stmt, 5);
    e->reason = column_text(stmt, 6);
    e->head = column_blob(stmt, 7, &e->head_len);
    e->body = column_blob(stmt, 8, &e->body_len);
    e->redactions = column_text(stmt, 9);
    e->request_seq = sqlite3_column_int64(stmt, 10);
    e->http_status = sqlite3_column_int64(stmt, 11);
    e->error = column_text(stmt, 12);
    e->bytes_sent = sqlite3_column_int64(stmt, 13);
    e->bytes_received = sqlite3_column_int64(stmt, 14);
    e->duration_ms = sqlite3_column_int64(stmt, 15);
    e->outcome = column_text(stmt, 16);
    e->prev_hash = column_text(stmt, 17);
    e->hash = column_text(stmt, 18);
}

/* Starts a read under the handle's lock; end_read finishes it and unlocks. */
static int begin_read(plm_audit *audit)
{
    pthread_mutex_lock(&audit->lock);
    int rc = audit_exec(audit->db, "BEGIN", "starting a read");
    if (rc)
        pthread_mutex_unlock(&audit->lock);
    return rc;
}

static int end_read(plm_audit *audit, int rc)
{
    sqlite3_exec(audit->db, "COMMIT", NULL, NULL, NULL); /* a read: nothing to lose */
    pthread_mutex_unlock(&audit->lock);
    return rc;
}

int plm_audit_entries(plm_audit *audit, int64_t first_seq,
                      bool (*on_entry)(void *user, const struct plm_audit_entry *entry), void *user)
{
    int rc = begin_read(audit);
    if (rc)
        return rc;
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(audit->db, "SELECT " AUDIT_ENTRY_COLUMNS " FROM entries WHERE seq >= ? ORDER BY seq", -1,
                           &stmt, NULL) != SQLITE_OK)
        return end_read(audit, audit_fail_sqlite(audit->db, "reading entries"));
    sqlite3_bind_int64(stmt, 1, first_seq);
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW) {
        struct plm_audit_entry entry;
        read_entry(stmt, &entry);
        if (!on_entry(user, &entry))
            break;
    }
    rc = step == SQLITE_ROW || step == SQLITE_DONE ? PLM_OK : audit_fail_sqlite(audit->db, "reading entries");
    sqlite3_finalize(stmt);
    return end_read(audit, rc);
}

static bool digits_at(const char *text, int at, int n, int max)
{
    int value = 0;
    for (int i = at; i < at + n; i++) {
        if (text[i] < '0' || text[i] > '9')
            return false;
        value = value * 10 + (text[i] - '0');
    }
    return value <= max;
}

/* "2025-01-31", "2025-01-31T12", "2025-01-31 12:00", "...:05", "...:05.250", each
 * with an optional "Z", into the stored form's prefix ("2025-01-31T12:00"), so
 * that comparing the strings compares the times. */
static bool normalize_since(const char *since, char out[32])
{
    size_t len = strlen(since);
    if (len > 0 && since[len - 1] == 'Z')
        len--;
    if (len != 10 && len != 13 && len != 16 && len != 19 && len != 23)
        return false;
    memcpy(out, since, len);
    out[len] = '\0';
    if (len > 10 && out[10] == ' ')
        out[10] = 'T';
    /* Each piece: where it starts, its digits, its largest value, the separator before it. */
    static const struct { int at, n, max; char before; } pieces[] = {
        {0, 4, 9999, 0}, {5, 2, 12, '-'}, {8, 2, 31, '-'}, {11, 2, 23, 'T'},
        {14, 2, 59, ':'}, {17, 2, 60, ':'}, {20, 3, 999, '.'},
    };
    for (size_t i = 0; i < sizeof pieces / sizeof pieces[0] && (size_t)pieces[i].at < len; i++)
        if ((pieces[i].before && out[pieces[i].at - 1] != pieces[i].before) ||
            !digits_at(out, pieces[i].at, pieces[i].n, pieces[i].max))
            return false;
    return true;
}

/* Reports each matching request and its completion (from the prepared statements). */
static int walk_requests(sqlite3_stmt *requests, sqlite3_stmt *completion,
                         bool (*on_request)(void *, const struct plm_audit_entry *, const struct plm_audit_entry *),
                         void *user)
{
    int step;
    while ((step = sqlite3_step(requests)) == SQLITE_ROW) {
        struct plm_audit_entry request, done;
        read_entry(requests, &request);
        sqlite3_reset(completion);
        sqlite3_bind_int64(completion, 1, request.seq);
        int found = sqlite3_step(completion);
        if (found == SQLITE_ROW)
            read_entry(completion, &done);
        else if (found != SQLITE_DONE)
            return found;
        if (!on_request(user, &request, found == SQLITE_ROW ? &done : NULL))
            return SQLITE_DONE;
    }
    return step;
}

int plm_audit_requests(plm_audit *audit, const struct plm_audit_filter *filter,
                       bool (*on_request)(void *user, const struct plm_audit_entry *request,
                                          const struct plm_audit_entry *completion),
                       void *user)
{
    struct plm_audit_filter all = {0};
    if (!filter)
        filter = &all;
    char since[32];
    if (filter->since && !normalize_since(filter->since, since))
        return plm_fail(PLM_ERR_ARG, "audit: '%s' is not a UTC time like 2025-01-31 or 2025-01-31T12:00",
                        filter->since);
    int rc = begin_read(audit);
    if (rc)
        return rc;
    sqlite3_stmt *requests = NULL, *completion = NULL;
    const char *requests_sql =
        "SELECT " AUDIT_ENTRY_COLUMNS " FROM entries WHERE kind = 'request'"
        " AND (?1 = 0 OR seq = ?1 OR seq = (SELECT request_seq FROM entries WHERE seq = ?1))"
        " AND (?2 IS NULL OR time >= ?2) AND (?3 IS NULL OR upstream = ?3) ORDER BY seq";
    const char *completion_sql =
        "SELECT " AUDIT_ENTRY_COLUMNS " FROM entries WHERE kind = 'completion' AND request_seq = ? ORDER BY seq LIMIT 1";
    int step = SQLITE_ERROR;
    if (sqlite3_prepare_v2(audit->db, requests_sql, -1, &requests, NULL) == SQLITE_OK &&
        sqlite3_prepare_v2(audit->db, completion_sql, -1, &completion, NULL) == SQLITE_OK) {
        sqlite3_bind_int64(requests, 1, filter->id);
        if (filter->since)
            sqlite3_bind_text(requests, 2, since, -1, SQLITE_STATIC);
        if (filter->upstream)
            sqlite3_bind_text(requests, 3, filter->upstream, -1, SQLITE_STATIC);
        step = walk_requests(requests, completion, on_request, user);
    }
    rc = step == SQLITE_DONE ? PLM_OK : audit_fail_sqlite(audit->db, "reading requests");
    sqlite3_finalize(requests);
    sqlite3_finalize(completion);
    return end_read(audit, rc);
}

/* The head row: false when it is missing or malformed. */
static bool read_head_row(sqlite3 *db, int64_t *n_entries, char hash[65], char seal[65])
{
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, "SELECT n_entries, hash, seal FROM head WHERE id = 1", -1, &stmt, NULL) != SQLITE_OK)
        return false;
    bool ok = sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) == SQLITE_INTEGER;
    const char *stored_hash = ok ? column_text(stmt, 1) : NULL, *stored_seal = ok ? column_text(stmt, 2) : NULL;
    ok = stored_hash && stored_seal && strlen(stored_hash) <= 64 && strlen(stored_seal) <= 64;
    if (ok) {
        *n_entries = sqlite3_column_int64(stmt, 0);
        strcpy(hash, stored_hash);
        strcpy(seal, stored_seal);
    }
    sqlite3_finalize(stmt);
    return ok;
}

int plm_audit_get_head(plm_audit *audit, struct plm_audit_head *head)
{
    int rc = begin_read(audit);
    if (rc)
        return rc;
    char seal[65];
    if (!read_head_row(audit->db, &head->n_entries, head->hash, seal))
        rc = plm_fail(PLM_ERR_FORMAT, "audit: the log's head is missing or malformed");
    head->hash_kind = audit->keyed ? "hmac-sha256" : "sha256";
    head->schema_version = audit->schema_version;
    return end_read(audit, rc);
}

/* ---------------------------------------------------------------- verifying */

/* What the verifier knows after the entries it has checked. */
struct chain_walk {
    plm_audit *audit;
    struct plm_audit_verdict *verdict;
    int64_t next_seq;
    char prev_hash[65];
    uint8_t *request_state; /* by seq: REQUEST_OPEN, REQUEST_FINISHED, or 0 (no request) */
    size_t n_states;
};
enum { REQUEST_OPEN = 1, REQUEST_FINISHED = 2 };

static bool broken(struct plm_audit_verdict *v, int64_t seq, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static bool broken(struct plm_audit_verdict *v, int64_t seq, const char *fmt, ...)
{
    v->intact = false;
    v->first_bad_seq = seq;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(v->problem, sizeof v->problem, fmt, ap);
    va_end(ap);
    return false;
}

/* Does every column hold what an entry of its kind holds? */
static bool check_shape(struct chain_walk *w, sqlite3_stmt *stmt, const struct plm_audit_entry *e)
{
    bool request = strcmp(e->kind, "request") == 0;
    if (!request && strcmp(e->kind, "completion") != 0)
        return broken(w->verdict, e->seq, "entry %lld has an unknown kind", (long long)e->seq);
    static const char *const type_names[] = {"?", "an integer", "a float", "text", "a blob", "NULL"};
    for (int i = 0; i < AUDIT_N_ENTRY_COLUMNS; i++) {
        int want = request ? entry_columns[i].request_type : entry_columns[i].completion_type;
        int got = sqlite3_column_type(stmt, i);
        if (got != want)
            return broken(w->verdict, e->seq, "entry %lld (%s): %s is %s, not %s", (long long)e->seq, e->kind,
                          entry_columns[i].name, type_names[got], type_names[want]);
    }
    return true;
}

/* A completion must follow its request, and be its only one. */
static bool check_completion(struct chain_walk *w, const struct plm_audit_entry *e)
{
    int64_t r = e->request_seq;
    if (r < 1 || r >= e->seq || (size_t)r >= w->n_states || w->request_state[r] != REQUEST_OPEN)
        return broken(w->verdict, e->seq, "entry %lld completes entry %lld, which is not an unfinished request before it",
                      (long long)e->seq, (long long)r);
    w->request_state[r] = REQUEST_FINISHED;
    return true;
}

static bool remember_request(struct chain_walk *w, int64_t seq)
{
    if ((size_t)seq >= w->n_states) {
        size_t n = w->n_states ? 2 * w->n_states : 1024;
        while (n <= (size_t)seq)
            n *= 2;
        uint8_t *grown = realloc(w->request_state, n);
        if (!grown)
            return false;
        memset(grown + w->n_states, 0, n - w->n_states);
        w->request_state = grown, w->n_states = n;
    }
    w->request_state[seq] = REQUEST_OPEN;
    return true;
}

/* Checks one entry against the chain so far; false (verdict filled) at the first fault. */
static bool check_entry(struct chain_walk *w, sqlite3_stmt *stmt)
{
    struct plm_audit_verdict *v = w->verdict;
    struct plm_audit_entry e;
    read_entry(stmt, &e);
    if (e.seq < w->next_seq)
        return broken(v, e.seq, "entry %lld is outside the numbering (the next should be %lld)", (long long)e.seq,
                      (long long)w->next_seq);
    if (e.seq > w->next_seq)
        return broken(v, w->next_seq, "entry %lld is missing (the next one is %lld)", (long long)w->next_seq,
                      (long long)e.seq);
    if (!check_shape(w, stmt, &e))
        return false;
    bool request = strcmp(e.kind, "request") == 0;
    if (!request && !check_completion(w, &e))
        return false;
    if (strcmp(e.prev_hash, w->prev_hash) != 0)
        return broken(v, e.seq, "entry %lld does not link to entry %lld (an entry was removed, inserted or moved)",
                      (long long)e.seq, (long long)e.seq - 1);
    char hash[65];
    if (audit_entry_hash(w->audit, &e, hash))
        return broken(v, e.seq, "entry %lld: %s", (long long)e.seq, plm_last_error());
    if (strcmp(hash, e.hash) != 0)
        return broken(v, e.seq, "entry %lld (%s) does not match its hash: it was changed", (long long)e.seq, e.kind);
    if (request && !remember_request(w, e.seq))
        return broken(v, e.seq, "out of memory");
    snprintf(w->prev_hash, sizeof w->prev_hash, "%s", e.hash);
    w->next_seq++;
    v->n_entries++;
    if (request)
        v->n_requests++;
    else
        v->n_completions++;
    return true;
}

/* The head must count every entry and hold the last one's hash. */
static void check_head(struct chain_walk *w)
{
    struct plm_audit_verdict *v = w->verdict;
    int64_t n = v->n_entries, head_n;
    char head_hash[65], seal[65], expected_seal[65];
    if (!read_head_row(w->audit->db, &head_n, head_hash, seal)) {
        broken(v, n, "the head (entry count and last hash) is missing or malformed");
        return;
    }
    if (head_n == n + 1) {
        broken(v, n + 1, "entry %lld is missing: the head counts %lld (the end of the log was cut off)",
               (long long)n + 1, (long long)head_n);
        return;
    }
    if (head_n > n) {
        broken(v, n + 1, "entries %lld to %lld are missing: the head counts %lld (the end of the log was cut off)",
               (long long)n + 1, (long long)head_n, (long long)head_n);
        return;
    }
    if (head_n < n) {
        broken(v, head_n + 1, "entry %lld is not counted by the head, which counts %lld (added outside pocketlm?)",
               (long long)head_n + 1, (long long)head_n);
        return;
    }
    if (strcmp(head_hash, w->prev_hash) != 0) {
        broken(v, n, "the head's hash is not entry %lld's", (long long)n);
        return;
    }
    if (audit_head_seal(w->audit, n, w->prev_hash, expected_seal) || strcmp(seal, expected_seal) != 0)
        broken(v, n, "the head's seal is wrong (the head was rewritten without the key)");
}

int plm_audit_verify(plm_audit *audit, struct plm_audit_verdict *verdict)
{
    memset(verdict, 0, sizeof *verdict);
    verdict->intact = true;
    int rc = audit_check_key(audit);
    if (rc || (rc = begin_read(audit)))
        return rc;
    struct chain_walk walk = {.audit = audit, .verdict = verdict, .next_seq = 1, .prev_hash = AUDIT_GENESIS};
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(audit->db, "SELECT " AUDIT_ENTRY_COLUMNS " FROM entries ORDER BY seq", -1, &stmt, NULL) !=
        SQLITE_OK)
        return end_read(audit, audit_fail_sqlite(audit->db, "reading entries"));
    int step;
    while ((step = sqlite3_step(stmt)) == SQLITE_ROW && check_entry(&walk, stmt)) {
    }
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        rc = audit_fail_sqlite(audit->db, "reading entries");
    sqlite3_finalize(stmt);
    if (!rc && verdict->intact)
        check_head(&walk);
    snprintf(verdict->head_hash, sizeof verdict->head_hash, "%s", walk.prev_hash);
    free(walk.request_state);
    return end_read(audit, rc);
}
