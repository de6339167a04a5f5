/*
 * The audit log's writer: opening (and creating) the database, and appending
 * request and completion entries to the chain. Layout and chain: audit.h.
 *
 * Every append is one IMMEDIATE transaction that reads the head, inserts the
 * entry and moves the head, so that a process killed at any moment leaves the
 * whole entry or nothing, and two processes appending at once still build one
 * chain (the second waits for the first's write lock, then reads its head).
 */
#include "privacy/audit.h"

#include "core/error.h"

#include <cjson/cJSON.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* How long an append waits for another process's transaction to end. */
#define AUDIT_BUSY_TIMEOUT_MS 10000

static const char schema_sql[] =
    "CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;"
    "CREATE TABLE entries ("
    " seq INTEGER PRIMARY KEY,"
    " kind TEXT NOT NULL CHECK (kind IN ('request', 'completion')),"
    " time TEXT NOT NULL,"
    " upstream TEXT, host TEXT, rule TEXT, reason TEXT, head BLOB, body BLOB, redactions TEXT,"
    " request_seq INTEGER REFERENCES entries(seq),"
    " http_status INTEGER, error TEXT, bytes_sent INTEGER, bytes_received INTEGER, duration_ms INTEGER,"
    " outcome TEXT,"
    " prev_hash TEXT NOT NULL, hash TEXT NOT NULL) STRICT;"
    "CREATE UNIQUE INDEX entries_completion ON entries(request_seq);" /* one completion per request */
    "CREATE TABLE head (id INTEGER PRIMARY KEY CHECK (id = 1), n_entries INTEGER NOT NULL,"
    " hash TEXT NOT NULL, seal TEXT NOT NULL) STRICT;";

int plm_audit_default_path(char *path, size_t capacity)
{
    const char *home = getenv("POCKETLM_HOME");
    const char *data = getenv("XDG_DATA_HOME");
    const char *user_home = getenv("HOME");
    int n;
    if (home && *home)
        n = snprintf(path, capacity, "%s/audit.db", home);
    else if (data && *data)
        n = snprintf(path, capacity, "%s/pocketlm/audit.db", data);
    else if (user_home && *user_home)
        n = snprintf(path, capacity, "%s/.local/share/pocketlm/audit.db", user_home);
    else
        return plm_fail(PLM_ERR_ARG, "audit: no POCKETLM_HOME, XDG_DATA_HOME or HOME to put the audit log in");
    if (n < 0 || (size_t)n >= capacity)
        return plm_fail(PLM_ERR_LIMIT, "audit: the default audit log path is too long");
    return PLM_OK;
}

/* mkdir -p of the directory that holds path (private: the log holds what was sent). */
static int make_parent_directories(const char *path)
{
    char dir[4096];
    if (strlen(path) >= sizeof dir)
        return plm_fail(PLM_ERR_LIMIT, "audit: path too long: '%s'", path);
    strcpy(dir, path);
    for (char *slash = strchr(dir + 1, '/'); slash; slash = strchr(slash + 1, '/')) {
        *slash = '\0';
        if (mkdir(dir, 0700) != 0 && errno != EEXIST)
            return plm_fail(PLM_ERR_IO, "audit: cannot create directory '%s': %s", dir, strerror(errno));
        *slash = '/';
    }
    return PLM_OK;
}

/* Creates the file readable by its owner only before SQLite opens it (SQLite
 * gives its -wal and -shm files the same mode). */
static int create_private_file(const char *path)
{
    int rc = make_parent_directories(path);
    if (rc)
        return rc;
    int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd >= 0)
        close(fd);
    else if (errno != EEXIST)
        return plm_fail(PLM_ERR_IO, "audit: cannot create '%s': %s", path, strerror(errno));
    return PLM_OK;
}

static int not_an_audit_log(const char *path, const char *why)
{
    return plm_fail(PLM_ERR_FORMAT, "audit: '%s' is not a pocketlm audit log (%s)", path, why);
}

/* WAL, so that readers never block the writer, set once the file is known to
 * be an audit log (it is a lasting property of the file). */
static int use_wal(sqlite3 *db, const char *path)
{
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, "PRAGMA journal_mode=WAL", -1, &stmt, NULL) != SQLITE_OK)
        return audit_fail_sqlite(db, "setting WAL mode");
    int step = sqlite3_step(stmt);
    bool wal = step == SQLITE_ROW && sqlite3_stricmp((const char *)sqlite3_column_text(stmt, 0), "wal") == 0;
    sqlite3_finalize(stmt);
    if (!wal)
        return plm_fail(PLM_ERR_IO, "audit: cannot put '%s' in WAL mode: %s", path, sqlite3_errmsg(db));
    return PLM_OK;
}

/* Reads meta[key] into value; false when absent. */
static bool meta_value(sqlite3 *db, const char *key, char *value, size_t capacity)
{
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, "SELECT value FROM meta WHERE key = ?", -1, &stmt, NULL) != SQLITE_OK)
        return false;
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    bool found = sqlite3_step(stmt) == SQLITE_ROW && sqlite3_column_type(stmt, 0) == SQLITE_TEXT;
    if (found)
        snprintf(value, capacity, "%s", (const char *)sqlite3_column_text(stmt, 0));
    sqlite3_finalize(stmt);
    return found;
}

static int set_meta(sqlite3 *db, const char *key, const char *value)
{
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, "INSERT INTO meta (key, value) VALUES (?, ?)", -1, &stmt, NULL) != SQLITE_OK)
        return audit_fail_sqlite(db, "writing the schema");
    sqlite3_bind_text(stmt, 1, key, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, value, -1, SQLITE_STATIC);
    int step = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return step == SQLITE_DONE ? PLM_OK : audit_fail_sqlite(db, "writing the schema");
}

/* A new log: keyed when the key is set at its creation. */
static int create_schema(plm_audit *audit)
{
    int rc = audit_exec(audit->db, schema_sql, "creating the schema");
    char version[16], key_check[65] = "", seal[65];
    snprintf(version, sizeof version, "%d", AUDIT_SCHEMA_VERSION);
    audit->keyed = audit->key != NULL;
    audit->schema_version = AUDIT_SCHEMA_VERSION;
    if (!rc)
        rc = set_meta(audit->db, "format", AUDIT_FORMAT);
    if (!rc)
        rc = set_meta(audit->db, "schema_version", version);
    if (!rc)
        rc = set_meta(audit->db, "hash", audit->keyed ? "hmac-sha256" : "sha256");
    if (!rc && audit->keyed)
        rc = audit_digest(audit->key, audit->key_len, AUDIT_KEY_CHECK_TAG, strlen(AUDIT_KEY_CHECK_TAG), key_check);
    if (!rc && audit->keyed)
        rc = set_meta(audit->db, "key_check", key_check);
    if (!rc)
        rc = audit_head_seal(audit, 0, AUDIT_GENESIS, seal);
    if (rc)
        return rc;
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(audit->db, "INSERT INTO head VALUES (1, 0, ?, ?)", -1, &stmt, NULL) != SQLITE_OK)
        return audit_fail_sqlite(audit->db, "writing the schema");
    sqlite3_bind_text(stmt, 1, AUDIT_GENESIS, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 2, seal, -1, SQLITE_STATIC);
    int step = sqlite3_step(stmt);
    sqlite3_finalize(stmt);
    return step == SQLITE_DONE ? PLM_OK : audit_fail_sqlite(audit->db, "writing the schema");
}

static int count_tables(sqlite3 *db, const char *name, int *count)
{
    sqlite3_stmt *stmt;
    const char *sql = "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND (?1 IS NULL OR name = ?1)";
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        return audit_fail_sqlite(db, "reading the schema");
    sqlite3_bind_text(stmt, 1, name, -1, SQLITE_STATIC);
    int step = sqlite3_step(stmt);
    *count = step == SQLITE_ROW ? sqlite3_column_int(stmt, 0) : 0;
    sqlite3_finalize(stmt);
    return step == SQLITE_ROW ? PLM_OK : audit_fail_sqlite(db, "reading the schema");
}

/* Checks the meta table of an existing log and learns whether it is keyed. */
static int check_meta(plm_audit *audit, const char *path)
{
    char format[64], version[16], hash[32];
    if (!meta_value(audit->db, "format", format, sizeof format) || strcmp(format, AUDIT_FORMAT) != 0)
        return not_an_audit_log(path, "its meta table does not say format = " AUDIT_FORMAT);
    char *end = version;
    long v = meta_value(audit->db, "schema_version", version, sizeof version) ? strtol(version, &end, 10) : 0;
    if (v < 1 || *end)
        return not_an_audit_log(path, "no valid schema_version in its meta table");
    if (v > AUDIT_SCHEMA_VERSION)
        return plm_fail(PLM_ERR_UNSUPPORTED,
                        "audit: '%s' was written by a newer pocketlm (schema version %ld; this one knows up to %d)",
                        path, v, AUDIT_SCHEMA_VERSION);
    if (!meta_value(audit->db, "hash", hash, sizeof hash) ||
        (strcmp(hash, "sha256") != 0 && strcmp(hash, "hmac-sha256") != 0))
        return not_an_audit_log(path, "its meta table names no known hash");
    audit->keyed = strcmp(hash, "hmac-sha256") == 0;
    audit->schema_version = (int)v;
    return PLM_OK;
}

/* Reads the existing schema, or writes it into a new (empty) database. */
static int load_schema(plm_audit *audit, const char *path, bool create)
{
    int rc = audit_exec(audit->db, create ? "BEGIN IMMEDIATE" : "BEGIN", "reading the schema");
    int n_tables = 0, n_meta = 0;
    if (!rc)
        rc = count_tables(audit->db, NULL, &n_tables);
    if (rc && sqlite3_errcode(audit->db) == SQLITE_NOTADB)
        rc = not_an_audit_log(path, "file is not a database");
    if (!rc)
        rc = count_tables(audit->db, "meta", &n_meta);
    if (!rc && n_meta == 0 && (n_tables > 0 || !create))
        rc = not_an_audit_log(path, n_tables ? "it has no meta table" : "the database is empty");
    else if (!rc)
        rc = n_meta == 0 ? create_schema(audit) : check_meta(audit, path);
    if (rc) {
        sqlite3_exec(audit->db, "ROLLBACK", NULL, NULL, NULL);
        return rc;
    }
    return audit_exec(audit->db, "COMMIT", "writing the schema");
}

/* Does the key at hand fit the log? (A mismatch is kept, not failed on: the
 * readers need no key, only writing and verifying do.) */
static void check_key_fits(plm_audit *audit)
{
    char stored[80], expected[65];
    if (audit->keyed && !audit->key)
        audit->key_problem = "audit: this log is keyed: set " AUDIT_KEY_ENV " to the key it was created with";
    else if (!audit->keyed && audit->key)
        audit->key_problem = "audit: this log was created without a key, but " AUDIT_KEY_ENV
                             " is set (a keyed log starts in a new file)";
    else if (audit->keyed &&
             (!meta_value(audit->db, "key_check", stored, sizeof stored) ||
              audit_digest(audit->key, audit->key_len, AUDIT_KEY_CHECK_TAG, strlen(AUDIT_KEY_CHECK_TAG), expected) ||
              strcmp(stored, expected) != 0))
        audit->key_problem = "audit: " AUDIT_KEY_ENV " is not the key this log was created with";
}

int audit_check_key(const struct plm_audit *audit)
{
    return audit->key_problem ? plm_fail(PLM_ERR_ARG, "%s", audit->key_problem) : PLM_OK;
}

static int open_log(const char *path, bool create, plm_audit **out)
{
    *out = NULL;
    if (!path || !*path)
        return plm_fail(PLM_ERR_ARG, "audit: no database path given");
    int rc = create ? create_private_file(path) : PLM_OK;
    if (rc)
        return rc;
    if (!create && access(path, F_OK) != 0)
        return plm_fail(PLM_ERR_IO, "audit: no audit log at '%s'", path);
    plm_audit *audit = calloc(1, sizeof *audit);
    if (!audit)
        return plm_fail(PLM_ERR_NOMEM, "audit: out of memory");
    pthread_mutex_init(&audit->lock, NULL);
    const char *key = getenv(AUDIT_KEY_ENV);
    if (key && *key) {
        audit->key = strdup(key);
        audit->key_len = strlen(key);
        if (!audit->key)
            rc = plm_fail(PLM_ERR_NOMEM, "audit: out of memory");
    }
    if (!rc && sqlite3_open_v2(path, &audit->db, SQLITE_OPEN_READWRITE, NULL) != SQLITE_OK)
        rc = plm_fail(PLM_ERR_IO, "audit: cannot open '%s': %s", path,
                      audit->db ? sqlite3_errmsg(audit->db) : "out of memory");
    if (!rc) {
        sqlite3_busy_timeout(audit->db, AUDIT_BUSY_TIMEOUT_MS);
        rc = load_schema(audit, path, create); /* first, so that a foreign file is left as it is */
    }
    /* synchronous=FULL: a committed entry survives a power loss, not only a crash. */
    if (!rc)
        rc = audit_exec(audit->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON", "configuring the connection");
    if (!rc)
        rc = use_wal(audit->db, path);
    if (rc) {
        plm_audit_close(audit);
        return rc;
    }
    check_key_fits(audit);
    *out = audit;
    return PLM_OK;
}

int plm_audit_open(const char *path, plm_audit **audit) { return open_log(path, true, audit); }

int plm_audit_open_existing(const char *path, plm_audit **audit) { return open_log(path, false, audit); }

void plm_audit_close(plm_audit *audit)
{
    if (!audit)
        return;
    sqlite3_close(audit->db);
    pthread_mutex_destroy(&audit->lock);
    free(audit->key);
    free(audit);
}

/* ---------------------------------------------------------------- appending */

/* UTC, millisecond precision: "2025-01-31T12:00:00.123Z". */
static void utc_now(char out[32])
{
    struct timespec now;
    clock_gettime(CLOCK_REALTIME, &now);
    struct tm utc;
    gmtime_r(&now.tv_sec, &utc);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &utc);
    snprintf(out + n, 32 - n, ".%03ldZ", now.tv_nsec / 1000000);
}

static void bind_text_or_null(sqlite3_stmt *stmt, int column, bool present, const char *text)
{
    if (present)
        sqlite3_bind_text(stmt, column, text ? text : "", -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(stmt, column);
}

static void bind_int_or_null(sqlite3_stmt *stmt, int column, bool present, int64_t value)
{
    if (present)
        sqlite3_bind_int64(stmt, column, value);
    else
        sqlite3_bind_null(stmt, column);
}

/* Binds the entry's columns, in AUDIT_ENTRY_COLUMNS order; the other kind's are NULL. */
static void bind_entry(sqlite3_stmt *stmt, const struct plm_audit_entry *e)
{
    bool request = strcmp(e->kind, "request") == 0;
    sqlite3_bind_int64(stmt, 1, e->seq);
    sqlite3_bind_text(stmt, 2, e->kind, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, e->time, -1, SQLITE_STATIC);
    bind_text_or_null(stmt, 4, request, e->upstream);
    bind_text_or_null(stmt, 5, request, e->host);
    bind_text_or_null(stmt, 6, request, e->rule);
    bind_text_or_null(stmt, 7, request, e->reason);
    for (int i = 0; i < 2; i++) {
        const uint8_t *bytes = i == 0 ? e->head : e->body;
        size_t len = i == 0 ? e->head_len : e->body_len;
        if (request) /* never NULL: an empty blob is "" of length 0 */
            sqlite3_bind_blob64(stmt, 8 + i, bytes ? (const void *)bytes : "", len, SQLITE_STATIC);
        else
            sqlite3_bind_null(stmt, 8 + i);
    }
    bind_text_or_null(stmt, 10, request, e->redactions);
    bind_int_or_null(stmt, 11, !request, e->request_seq);
    bind_int_or_null(stmt, 12, !request, e->http_status);
    bind_text_or_null(stmt, 13, !request, e->error);
    bind_int_or_null(stmt, 14, !request, e->bytes_sent);
    bind_int_or_null(stmt, 15, !request, e->bytes_received);
    bind_int_or_null(stmt, 16, !request, e->duration_ms);
    bind_text_or_null(stmt, 17, !request, e->outcome);
    sqlite3_bind_text(stmt, 18, e->prev_hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 19, e->hash, -1, SQLITE_STATIC);
}

/* Runs one statement that writes: PLM_OK when it did. */
static int step_write(sqlite3_stmt *stmt, sqlite3 *db, const char *what)
{
    int step = sqlite3_step(stmt);
    int rc = step == SQLITE_DONE ? PLM_OK : audit_fail_sqlite(db, what);
    sqlite3_finalize(stmt);
    return rc;
}

static int read_head(sqlite3 *db, int64_t *n_entries, char hash[65])
{
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(db, "SELECT n_entries, hash FROM head WHERE id = 1", -1, &stmt, NULL) != SQLITE_OK)
        return audit_fail_sqlite(db, "reading the head");
    int step = sqlite3_step(stmt);
    const char *text = step == SQLITE_ROW ? (const char *)sqlite3_column_text(stmt, 1) : NULL;
    bool ok = text && strlen(text) == 64;
    if (ok) {
        *n_entries = sqlite3_column_int64(stmt, 0);
        memcpy(hash, text, 65);
    }
    sqlite3_finalize(stmt);
    if (!ok)
        return step == SQLITE_ROW || step == SQLITE_DONE
                   ? plm_fail(PLM_ERR_FORMAT, "audit: the log's head is missing or malformed (see pocketlm audit verify)")
                   : audit_fail_sqlite(db, "reading the head");
    return PLM_OK;
}

/* A completion must name a request that has none yet. */
static int check_unfinished_request(sqlite3 *db, int64_t request_seq)
{
    sqlite3_stmt *stmt;
    const char *sql = "SELECT kind, (SELECT count(*) FROM entries WHERE request_seq = ?1) FROM entries WHERE seq = ?1";
    if (sqlite3_prepare_v2(db, sql, -1, &stmt, NULL) != SQLITE_OK)
        return audit_fail_sqlite(db, "finding the request");
    sqlite3_bind_int64(stmt, 1, request_seq);
    int step = sqlite3_step(stmt);
    bool is_request = step == SQLITE_ROW && sqlite3_column_type(stmt, 0) == SQLITE_TEXT &&
                      strcmp((const char *)sqlite3_column_text(stmt, 0), "request") == 0;
    bool finished = step == SQLITE_ROW && sqlite3_column_int(stmt, 1) > 0;
    sqlite3_finalize(stmt);
    if (step != SQLITE_ROW && step != SQLITE_DONE)
        return audit_fail_sqlite(db, "finding the request");
    if (!is_request)
        return plm_fail(PLM_ERR_ARG, "audit: no request %lld to finish", (long long)request_seq);
    if (finished)
        return plm_fail(PLM_ERR_ARG, "audit: request %lld is already finished", (long long)request_seq);
    return PLM_OK;
}

/* Inside the transaction: numbers, times and chains the entry, inserts it, moves the head. */
static int append_in_transaction(plm_audit *audit, struct plm_audit_entry *entry)
{
    int64_t n_entries = 0;
    char prev_hash[65], hash[65], seal[65], time[32];
    int rc = read_head(audit->db, &n_entries, prev_hash);
    if (!rc && strcmp(entry->kind, "completion") == 0)
        rc = check_unfinished_request(audit->db, entry->request_seq);
    if (rc)
        return rc;
    utc_now(time); /* taken under the write lock, so times follow the chain's order */
    entry->seq = n_entries + 1;
    entry->time = time;
    entry->prev_hash = prev_hash;
    if ((rc = audit_entry_hash(audit, entry, hash)) || (rc = audit_head_seal(audit, entry->seq, hash, seal)))
        return rc;
    entry->hash = hash;
    sqlite3_stmt *stmt;
    if (sqlite3_prepare_v2(audit->db,
                           "INSERT INTO entries (" AUDIT_ENTRY_COLUMNS ") VALUES "
                           "(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           -1, &stmt, NULL) != SQLITE_OK)
        return audit_fail_sqlite(audit->db, "adding an entry");
    bind_entry(stmt, entry);
    if ((rc = step_write(stmt, audit->db, "adding an entry")))
        return rc;
    if (sqlite3_prepare_v2(audit->db, "UPDATE head SET n_entries = ?, hash = ?, seal = ? WHERE id = 1", -1, &stmt,
                           NULL) != SQLITE_OK)
        return audit_fail_sqlite(audit->db, "moving the head");
    sqlite3_bind_int64(stmt, 1, entry->seq);
    sqlite3_bind_text(stmt, 2, hash, -1, SQLITE_STATIC);
    sqlite3_bind_text(stmt, 3, seal, -1, SQLITE_STATIC);
    return step_write(stmt, audit->db, "moving the head");
}

/* Appends the entry (kind and content filled in) in one transaction. */
static int append_entry(plm_audit *audit, struct plm_audit_entry *entry)
{
    pthread_mutex_lock(&audit->lock);
    int rc = audit_check_key(audit);
    if (!rc)
        rc = audit_exec(audit->db, "BEGIN IMMEDIATE", "starting a transaction");
    if (!rc) {
        rc = append_in_transaction(audit, entry);
        if (!rc)
            rc = audit_exec(audit->db, "COMMIT", "committing an entry");
        if (rc)
            sqlite3_exec(audit->db, "ROLLBACK", NULL, NULL, NULL);
    }
    pthread_mutex_unlock(&audit->lock);
    return rc;
}

static bool is_type_name(const char *type)
{
    size_t len = type ? strlen(type) : 0;
    if (len == 0 || len > 64)
        return false;
    for (size_t i = 0; i < len; i++) {
        char c = type[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || strchr("-_.", c)))
            return false;
    }
    return true;
}

/* {"email": 2, "phone": 1} as stored: names and counts only, in the caller's order. */
static int redactions_json(const struct plm_audit_request *r, char **json)
{
    if (r->n_redactions < 0 || (r->n_redactions > 0 && !r->redactions))
        return plm_fail(PLM_ERR_ARG, "audit: bad redaction list");
    cJSON *root = cJSON_CreateObject();
    int rc = root ? PLM_OK : plm_fail(PLM_ERR_NOMEM, "audit: out of memory");
    for (int i = 0; !rc && i < r->n_redactions; i++) {
        const struct plm_audit_redaction *red = &r->redactions[i];
        if (!is_type_name(red->type))
            rc = plm_fail(PLM_ERR_ARG, "audit: redaction type %d is not a name of letters, digits, '-', '_', '.'", i);
        else if (red->count < 0)
            rc = plm_fail(PLM_ERR_ARG, "audit: redaction '%s' has a negative count", red->type);
        else if (cJSON_GetObjectItemCaseSensitive(root, red->type))
            rc = plm_fail(PLM_ERR_ARG, "audit: redaction type '%s' is listed twice", red->type);
        else if (!cJSON_AddNumberToObject(root, red->type, red->count))
            rc = plm_fail(PLM_ERR_NOMEM, "audit: out of memory");
    }
    *json = rc ? NULL : cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    if (!rc && !*json)
        rc = plm_fail(PLM_ERR_NOMEM, "audit: out of memory");
    return rc;
}

/* A required (or, with optional, possibly NULL) UTF-8 text field. */
static int check_text(const char *name, const char *text, bool optional)
{
    if (!text && optional)
        return PLM_OK;
    if (!text || (!optional && !*text))
        return plm_fail(PLM_ERR_ARG, "audit: the request has no %s", name);
    if (!audit_is_utf8(text, strlen(text)))
        return plm_fail(PLM_ERR_ARG, "audit: the %s is not UTF-8", name);
    return PLM_OK;
}

int plm_audit_begin(plm_audit *audit, const struct plm_audit_request *request, int64_t *id)
{
    if (!audit || !request || !id)
        return plm_fail(PLM_ERR_ARG, "audit: plm_audit_begin needs a log, a request and an id");
    int rc;
    if ((rc = check_text("upstream name", request->upstream, false)) || (rc = check_text("URL", request->url, false)) ||
        (rc = check_text("rule", request->rule, false)) || (rc = check_text("reason", request->reason, true)))
        return rc;
    if (request->body_len > 0 && !request->body)
        return plm_fail(PLM_ERR_ARG, "audit: the request has a body length but no body");
    char host[256];
    if (!audit_url_host(request->url, host, sizeof host))
        return plm_fail(PLM_ERR_ARG, "audit: no host in the URL '%s'", request->url);
    size_t head_len = 0;
    char *head = audit_mask_secrets(request->head ? request->head : "", &head_len);
    char *redactions = NULL;
    rc = head ? redactions_json(request, &redactions) : plm_fail(PLM_ERR_NOMEM, "audit: out of memory");
    if (!rc) {
        struct plm_audit_entry entry = {
            .kind = "request",
            .upstream = request->upstream,
            .host = host,
            .rule = request->rule,
            .reason = request->reason ? request->reason : "",
            .head = (const uint8_t *)head,
            .head_len = head_len,
            .body = request->body,
            .body_len = request->body_len,
            .redactions = redactions,
        };
        rc = append_entry(audit, &entry);
        *id = rc ? 0 : entry.seq;
    }
    free(head);
    cJSON_free(redactions);
    return rc;
}

int plm_audit_finish(plm_audit *audit, int64_t id, const struct plm_audit_result *result)
{
    if (!audit || !result)
        return plm_fail(PLM_ERR_ARG, "audit: plm_audit_finish needs a log and a result");
    const char *outcome = audit_outcome_name(result->outcome);
    if (!outcome)
        return plm_fail(PLM_ERR_ARG, "audit: unknown outcome %d", (int)result->outcome);
    if (result->http_status < 0 || result->http_status > 999)
        return plm_fail(PLM_ERR_ARG, "audit: HTTP status %d is out of range", result->http_status);
    if (result->bytes_sent > INT64_MAX || result->bytes_received > INT64_MAX)
        return plm_fail(PLM_ERR_ARG, "audit: byte count out of range");
    if (!isfinite(result->duration_s) || result->duration_s < 0 || result->duration_s > 1e9)
        return plm_fail(PLM_ERR_ARG, "audit: duration %g s is out of range", result->duration_s);
    int rc = check_text("transport error", result->error, true);
    if (rc)
        return rc;
    struct plm_audit_entry entry = {
        .kind = "completion",
        .request_seq = id,
        .http_status = result->http_status,
        .error = result->error ? result->error : "",
        .bytes_sent = (int64_t)result->bytes_sent,
        .bytes_received = (int64_t)result->bytes_received,
        .duration_ms = llround(result->duration_s * 1000.0),
        .outcome = outcome,
    };
    return append_entry(audit, &entry);
}
