/*
 * The audit log: what is stored (and what never is), the hash chain against
 * every kind of tampering, processes killed with SIGKILL while appending, and
 * two processes appending to one file.
 */
#include "pocketlm.h"
#include "privacy/audit.h"
#include "test_util.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define SECRET "sk-live-0123456789abcdef"

static const struct plm_audit_redaction two_kinds[] = {{"email", 2}, {"phone", 1}};

/* A request like the escalation code will log: body i, two redaction types. */
static struct plm_audit_request sample_request(const char *body, const char *upstream)
{
    return (struct plm_audit_request){
        .upstream = upstream,
        .url = "https://user:pw@api.example.com:8443/v1/chat/completions",
        .rule = "long-context",
        .reason = "prompt of 9000 tokens exceeds the device's 4096",
        .head = "POST /v1/chat/completions HTTP/1.1\r\nHost: api.example.com\r\n"
                "Authorization: Bearer " SECRET "\r\nContent-Type: application/json\r\n",
        .body = body,
        .body_len = strlen(body),
        .redactions = two_kinds,
        .n_redactions = 2,
    };
}

static const struct plm_audit_result ok_result = {
    .http_status = 200, .bytes_sent = 1234, .bytes_received = 5678, .duration_s = 0.25, .outcome = PLM_AUDIT_OK};

/* A path where no log is yet (temp_path's result is reused by its next call:
 * a test that holds several keeps copies). */
static const char *fresh_path(const char *tag, char path[4096])
{
    snprintf(path, 4096, "%s", temp_path(tag));
    const char *suffixes[] = {"", "-wal", "-shm", "-journal"};
    for (int i = 0; i < 4; i++) {
        char file[4200];
        snprintf(file, sizeof file, "%s%s", path, suffixes[i]);
        unlink(file); /* left by an earlier run whose process had the same id */
    }
    return path;
}

/* A fresh log holding n requests, each finished: request i is entry 2i-1, its completion 2i. */
static const char *make_log(const char *tag, int n)
{
    static char copy[4096];
    fresh_path(tag, copy);
    plm_audit *audit;
    assert_int_equal(plm_audit_open(copy, &audit), PLM_OK);
    for (int i = 1; i <= n; i++) {
        char body[64];
        snprintf(body, sizeof body, "{\"prompt\": \"request number %d\"}", i);
        struct plm_audit_request r = sample_request(body, i % 2 ? "openai" : "anthropic");
        int64_t id;
        assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_OK);
        assert_int_equal(id, 2 * i - 1);
        assert_int_equal(plm_audit_finish(audit, id, &ok_result), PLM_OK);
    }
    plm_audit_close(audit);
    return copy;
}

static void verify_path(const char *path, struct plm_audit_verdict *verdict)
{
    plm_audit *audit;
    assert_int_equal(plm_audit_open_existing(path, &audit), PLM_OK);
    assert_int_equal(plm_audit_verify(audit, verdict), PLM_OK);
    plm_audit_close(audit);
}

static void expect_intact(const char *path, int64_t n_entries)
{
    struct plm_audit_verdict v;
    verify_path(path, &v);
    if (!v.intact)
        fail_msg("verify: entry %lld: %s", (long long)v.first_bad_seq, v.problem);
    assert_int_equal(v.n_entries, n_entries);
}

static void expect_broken_at(const char *path, int64_t seq, const char *words)
{
    struct plm_audit_verdict v;
    verify_path(path, &v);
    assert_false(v.intact);
    if (v.first_bad_seq != seq || !strstr(v.problem, words))
        fail_msg("expected entry %lld (\"%s\"), got entry %lld: %s", (long long)seq, words,
                 (long long)v.first_bad_seq, v.problem);
}

/* Runs SQL on the file directly, as someone with write access to it could. */
static void tamper(const char *path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
    char *error = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &error) != SQLITE_OK)
        fail_msg("tampering with '%s': %s", sql, error);
    sqlite3_close(db);
}

/* ------------------------------------------------------------ what is kept */

struct collected {
    int n;
    int64_t ids[64];
    bool finished[64];
    char upstream[64][16];
};

static bool collect(void *user, const struct plm_audit_entry *request, const struct plm_audit_entry *completion)
{
    struct collected *c = user;
    c->ids[c->n] = request->seq;
    c->finished[c->n] = completion != NULL;
    snprintf(c->upstream[c->n], sizeof c->upstream[0], "%s", request->upstream);
    c->n++;
    return true;
}

struct first_request {
    struct plm_audit_entry request, completion;
    bool has_completion;
    /* copies: the entries' pointers are valid only during the callback */
    char head[512], body[512], redactions[128], host[64], time[32], outcome[32], error[64];
};

static bool keep_first(void *user, const struct plm_audit_entry *request, const struct plm_audit_entry *completion)
{
    struct first_request *f = user;
    f->request = *request;
    memcpy(f->head, request->head, request->head_len);
    f->head[request->head_len] = '\0';
    memcpy(f->body, request->body, request->body_len);
    f->body[request->body_len] = '\0';
    snprintf(f->redactions, sizeof f->redactions, "%s", request->redactions);
    snprintf(f->host, sizeof f->host, "%s", request->host);
    snprintf(f->time, sizeof f->time, "%s", request->time);
    f->has_completion = completion != NULL;
    if (completion) {
        f->completion = *completion;
        snprintf(f->outcome, sizeof f->outcome, "%s", completion->outcome);
        snprintf(f->error, sizeof f->error, "%s", completion->error);
    }
    return false;
}

static void test_request_and_completion_are_stored(void **state)
{
    (void)state;
    char path[4096];
    fresh_path("stored.db", path);
    plm_audit *audit;
    assert_int_equal(plm_audit_open(path, &audit), PLM_OK);
    const char body[] = "{\"messages\": [{\"role\": \"user\", \"content\": \"[EMAIL_1] asks\"}]}";
    struct plm_audit_request r = sample_request(body, "openai");
    int64_t id;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_OK);
    assert_int_equal(id, 1);

    struct first_request f = {0};
    struct plm_audit_filter by_id = {.id = id};
    assert_int_equal(plm_audit_requests(audit, &by_id, keep_first, &f), PLM_OK);
    assert_false(f.has_completion); /* written before it is sent: no completion yet */
    assert_string_equal(f.body, body);
    assert_string_equal(f.host, "api.example.com:8443"); /* user:pw@ dropped */
    assert_string_equal(f.redactions, "{\"email\":2,\"phone\":1}");
    assert_null(strstr(f.head, SECRET));
    assert_non_null(strstr(f.head, "\r\nAuthorization: [KEY]\r\n"));
    assert_non_null(strstr(f.head, "Content-Type: application/json\r\n"));
    assert_int_equal(strlen(f.time), 24);
    assert_int_equal(f.time[10], 'T');
    assert_int_equal(f.time[23], 'Z');

    struct plm_audit_result failed = {.error = "connection refused", .bytes_sent = 0, .duration_s = 1.5,
                                      .outcome = PLM_AUDIT_FALLBACK};
    assert_int_equal(plm_audit_finish(audit, id, &failed), PLM_OK);
    memset(&f, 0, sizeof f);
    assert_int_equal(plm_audit_requests(audit, NULL, keep_first, &f), PLM_OK);
    assert_true(f.has_completion);
    assert_int_equal(f.completion.seq, 2);
    assert_int_equal(f.completion.request_seq, 1);
    assert_int_equal(f.completion.http_status, 0);
    assert_int_equal(f.completion.duration_ms, 1500);
    assert_string_equal(f.error, "connection refused");
    assert_string_equal(f.outcome, "fallback-to-device");

    struct plm_audit_head head;
    assert_int_equal(plm_audit_get_head(audit, &head), PLM_OK);
    assert_int_equal(head.n_entries, 2);
    assert_string_equal(head.hash_kind, "sha256");
    struct plm_audit_verdict v;
    assert_int_equal(plm_audit_verify(audit, &v), PLM_OK);
    assert_true(v.intact);
    assert_int_equal(v.n_requests, 1);
    assert_int_equal(v.n_completions, 1);
    assert_string_equal(v.head_hash, head.hash);
    plm_audit_close(audit);
}

/* The secret must not be anywhere in the files, whatever SQLite wrote where. */
static void test_secrets_never_reach_the_file(void **state)
{
    (void)state;
    char db_path[4096];
    fresh_path("secrets.db", db_path);
    plm_audit *audit;
    assert_int_equal(plm_audit_open(db_path, &audit), PLM_OK);
    struct plm_audit_request r = sample_request("{}", "gemini");
    r.head = "POST /v1beta/models/x:generate?alt=sse&key=" SECRET "&x=1 HTTP/1.1\n"
             "x-api-key: " SECRET "\nX-Goog-Api-Key:" SECRET "\nproxy-authorization: Basic " SECRET "\n"
             "Referer: https://example.com/?api_key=" SECRET "#frag";
    int64_t id;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_OK);
    struct first_request f = {0};
    assert_int_equal(plm_audit_requests(audit, NULL, keep_first, &f), PLM_OK);
    assert_string_equal(f.head, "POST /v1beta/models/x:generate?alt=sse&key=[KEY]&x=1 HTTP/1.1\n"
                                "x-api-key: [KEY]\nX-Goog-Api-Key: [KEY]\nproxy-authorization: [KEY]\n"
                                "Referer: https://example.com/?api_key=[KEY]#frag");
    plm_audit_close(audit);
    const char *suffixes[] = {"", "-wal"};
    for (int i = 0; i < 2; i++) {
        char file[4200];
        snprintf(file, sizeof file, "%s%s", db_path, suffixes[i]);
        FILE *in = fopen(file, "rb");
        if (!in)
            continue; /* the WAL is gone after the last connection checkpointed it */
        static char bytes[1 << 20];
        size_t n = fread(bytes, 1, sizeof bytes, in);
        fclose(in);
        assert_null(memmem(bytes, n, SECRET, strlen(SECRET)));
        assert_null(memmem(bytes, n, "user:pw", 7));
    }
}

static void test_masking_edge_cases(void **state)
{
    (void)state;
    struct { const char *in, *out; } cases[] = {
        {"", ""},
        {"GET /?key=abc", "GET /?key=[KEY]"},
        {"GET /?monkey=abc&key=", "GET /?monkey=abc&key=[KEY]"}, /* only whole parameter names */
        {"GET /?KEY=abc HTTP/1.1\r\n", "GET /?KEY=[KEY] HTTP/1.1\r\n"},
        {"GET / HTTP/1.1\r\nAuthorization:\r\n", "GET / HTTP/1.1\r\nAuthorization: [KEY]\r\n"},
        {"GET / HTTP/1.1\r\nAuthorizations: x\r\n", "GET / HTTP/1.1\r\nAuthorizations: x\r\n"},
        {"Authorization: first line is the request line", "Authorization: first line is the request line"},
        {"GET /\nno colon here\napi-key: k", "GET /\nno colon here\napi-key: [KEY]"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        size_t len;
        char *masked = audit_mask_secrets(cases[i].in, &len);
        assert_non_null(masked);
        assert_string_equal(masked, cases[i].out);
        assert_int_equal(len, strlen(cases[i].out));
        free(masked);
    }
    char host[32];
    assert_true(audit_url_host("http://127.0.0.1:8080", host, sizeof host));
    assert_string_equal(host, "127.0.0.1:8080");
    assert_true(audit_url_host("https://a:b@c@[::1]:9/x?y#z", host, sizeof host));
    assert_string_equal(host, "[::1]:9");
    assert_true(audit_url_host("example.org/path", host, sizeof host));
    assert_string_equal(host, "example.org");
    assert_false(audit_url_host("https:///path", host, sizeof host));
    assert_false(audit_url_host("https://user@/x", host, sizeof host));
    assert_false(audit_url_host("https://exa mple.org/", host, sizeof host));
    assert_false(audit_url_host("https://a-host-name-far-too-long-for-the-buffer.example/", host, sizeof host));
}

static void test_bad_calls_are_refused(void **state)
{
    (void)state;
    char path[4096];
    fresh_path("refused.db", path);
    plm_audit *audit;
    assert_int_equal(plm_audit_open(path, &audit), PLM_OK);
    int64_t id;
    struct plm_audit_request r = sample_request("{}", "openai");
    r.upstream = "";
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_ERR_ARG);
    r = sample_request("{}", "openai");
    r.rule = NULL;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_ERR_ARG);
    r = sample_request("{}", "openai");
    r.url = "https://";
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_ERR_ARG);
    r = sample_request("{}", "openai");
    r.reason = "\xff\xfe";
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "not UTF-8"));
    r = sample_request("{}", "openai");
    r.body = NULL;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_ERR_ARG);
    /* A redaction "type" that is really a value must never be stored. */
    struct plm_audit_redaction value_as_type[] = {{"alice@example.com", 1}};
    r = sample_request("{}", "openai");
    r.redactions = value_as_type;
    r.n_redactions = 1;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_ERR_ARG);
    struct plm_audit_redaction negative[] = {{"email", -1}}, twice[] = {{"email", 1}, {"email", 2}};
    r.redactions = negative;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_ERR_ARG);
    r.redactions = twice;
    r.n_redactions = 2;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "twice"));

    r = sample_request("", "openai"); /* an empty body and no head are fine */
    r.head = NULL;
    r.n_redactions = 0;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_OK);
    assert_int_equal(id, 1); /* nothing refused was written */
    struct plm_audit_result bad = ok_result;
    bad.outcome = (enum plm_audit_outcome)42;
    assert_int_equal(plm_audit_finish(audit, id, &bad), PLM_ERR_ARG);
    bad = ok_result;
    bad.http_status = 1000;
    assert_int_equal(plm_audit_finish(audit, id, &bad), PLM_ERR_ARG);
    bad = ok_result;
    bad.duration_s = -1;
    assert_int_equal(plm_audit_finish(audit, id, &bad), PLM_ERR_ARG);
    bad = ok_result;
    bad.bytes_received = UINT64_MAX;
    assert_int_equal(plm_audit_finish(audit, id, &bad), PLM_ERR_ARG);
    assert_int_equal(plm_audit_finish(audit, 7, &ok_result), PLM_ERR_ARG);
    assert_int_equal(plm_audit_finish(audit, id, &ok_result), PLM_OK);
    assert_int_equal(plm_audit_finish(audit, id, &ok_result), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "already finished"));
    assert_int_equal(plm_audit_finish(audit, 2, &ok_result), PLM_ERR_ARG); /* a completion, not a request */
    struct plm_audit_verdict v;
    assert_int_equal(plm_audit_verify(audit, &v), PLM_OK);
    assert_true(v.intact);
    assert_int_equal(v.n_entries, 2);
    plm_audit_close(audit);
}

static void test_filters(void **state)
{
    (void)state;
    const char *path = make_log("filters.db", 5);
    plm_audit *audit;
    assert_int_equal(plm_audit_open_existing(path, &audit), PLM_OK);
    struct collected c = {0};
    assert_int_equal(plm_audit_requests(audit, NULL, collect, &c), PLM_OK);
    assert_int_equal(c.n, 5);
    assert_int_equal(c.ids[4], 9);
    assert_true(c.finished[4]);

    struct plm_audit_filter f = {.upstream = "anthropic"};
    memset(&c, 0, sizeof c);
    assert_int_equal(plm_audit_requests(audit, &f, collect, &c), PLM_OK);
    assert_int_equal(c.n, 2);
    assert_string_equal(c.upstream[0], "anthropic");

    const char *since_all[] = {"2000-01-01", "2000-01-01T00:00Z", "2000-01-01 10", "2000-12-31T23:59:59.999"};
    for (int i = 0; i < 4; i++) {
        f = (struct plm_audit_filter){.since = since_all[i]};
        memset(&c, 0, sizeof c);
        assert_int_equal(plm_audit_requests(audit, &f, collect, &c), PLM_OK);
        assert_int_equal(c.n, 5);
    }
    f = (struct plm_audit_filter){.since = "9999-01-01"};
    memset(&c, 0, sizeof c);
    assert_int_equal(plm_audit_requests(audit, &f, collect, &c), PLM_OK);
    assert_int_equal(c.n, 0);
    const char *bad_since[] = {"yesterday", "2025-1-01", "2025-13-01", "2025-01-01T25:00", "2025-01-01T10:00:",
                               "", "2025-01-01X10"};
    for (int i = 0; i < 7; i++) {
        f = (struct plm_audit_filter){.since = bad_since[i]};
        assert_int_equal(plm_audit_requests(audit, &f, collect, &c), PLM_ERR_ARG);
    }
    /* An id names a request, or the completion of one. */
    int64_t ids[] = {3, 4, 11};
    int expected[] = {1, 1, 0};
    for (int i = 0; i < 3; i++) {
        f = (struct plm_audit_filter){.id = ids[i]};
        memset(&c, 0, sizeof c);
        assert_int_equal(plm_audit_requests(audit, &f, collect, &c), PLM_OK);
        assert_int_equal(c.n, expected[i]);
        if (c.n)
            assert_int_equal(c.ids[0], 3);
    }
    plm_audit_close(audit);
}

/* The serialization query of docs/audit.md ("Checking by hand"), which must
 * rebuild, from the stored columns alone, the bytes the writer hashed. */
static const char documented_serialization[] =
    "SELECT '17:pocketlm-audit-v1'"
    "  || length(CAST(seq AS TEXT)) || ':' || seq"
    "  || length(CAST(kind AS BLOB)) || ':' || kind"
    "  || length(CAST(time AS BLOB)) || ':' || time"
    "  || CASE kind WHEN 'request' THEN"
    "       length(CAST(upstream AS BLOB)) || ':' || upstream"
    "    || length(CAST(host AS BLOB)) || ':' || host"
    "    || length(CAST(rule AS BLOB)) || ':' || rule"
    "    || length(CAST(reason AS BLOB)) || ':' || reason"
    "    || length(head) || ':' || head"
    "    || length(body) || ':' || body"
    "    || length(CAST(redactions AS BLOB)) || ':' || redactions"
    "  ELSE"
    "       length(CAST(request_seq AS TEXT)) || ':' || request_seq"
    "    || length(CAST(http_status AS TEXT)) || ':' || http_status"
    "    || length(CAST(error AS BLOB)) || ':' || error"
    "    || length(CAST(bytes_sent AS TEXT)) || ':' || bytes_sent"
    "    || length(CAST(bytes_received AS TEXT)) || ':' || bytes_received"
    "    || length(CAST(duration_ms AS TEXT)) || ':' || duration_ms"
    "    || length(CAST(outcome AS BLOB)) || ':' || outcome"
    "  END"
    "  || length(prev_hash) || ':' || prev_hash, hash "
    "FROM entries ORDER BY seq";

static void test_documented_serialization(void **state)
{
    (void)state;
    char db_path[4096];
    fresh_path("documented.db", db_path);
    plm_audit *audit;
    assert_int_equal(plm_audit_open(db_path, &audit), PLM_OK);
    static const uint8_t binary[] = {0, 1, 2, 0xff, 0xfe, ':', '9', 0};
    struct plm_audit_request r = sample_request("", "caf\xc3\xa9-\xf0\x9f\x98\x80");
    r.body = binary;
    r.body_len = sizeof binary;
    r.reason = "";
    int64_t id;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_OK);
    struct plm_audit_result result = {.error = "timeout: 30 s", .bytes_sent = 1ull << 40, .duration_s = 30.0004,
                                      .outcome = PLM_AUDIT_UPSTREAM_ERROR};
    assert_int_equal(plm_audit_finish(audit, id, &result), PLM_OK);
    r = sample_request("{\"x\": \"\xe2\x82\xac\"}", "openai");
    r.head = NULL;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_OK);
    plm_audit_close(audit);

    sqlite3 *db;
    assert_int_equal(sqlite3_open(db_path, &db), SQLITE_OK);
    sqlite3_stmt *stmt;
    assert_int_equal(sqlite3_prepare_v2(db, documented_serialization, -1, &stmt, NULL), SQLITE_OK);
    int n = 0;
    while (sqlite3_step(stmt) == SQLITE_ROW) {
        const void *bytes = sqlite3_column_blob(stmt, 0);
        int len = sqlite3_column_bytes(stmt, 0);
        char hash[65];
        assert_int_equal(audit_digest(NULL, 0, bytes, (size_t)len, hash), PLM_OK);
        assert_string_equal(hash, (const char *)sqlite3_column_text(stmt, 1));
        n++;
    }
    assert_int_equal(n, 3);
    sqlite3_finalize(stmt);
    sqlite3_close(db);
}

/* ------------------------------------------------------ not an audit log */

static void test_files_that_are_not_audit_logs(void **state)
{
    (void)state;
    char scratch[4096], text[4096], other[4096], empty[4096];
    plm_audit *audit = (plm_audit *)&audit; /* not NULL: a failed open must set it */
    assert_int_equal(plm_audit_open_existing(fresh_path("missing.db", scratch), &audit), PLM_ERR_IO);
    assert_null(audit);
    assert_non_null(strstr(plm_last_error(), "no audit log at"));

    fresh_path("text.db", text);
    FILE *f = fopen(text, "wb");
    assert_non_null(f);
    fputs("this is not a database, just some text that is long enough to have a header", f);
    fclose(f);
    assert_int_equal(plm_audit_open_existing(text, &audit), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "not a pocketlm audit log"));
    assert_int_equal(plm_audit_open(text, &audit), PLM_ERR_FORMAT);

    fresh_path("other.db", other);
    tamper(other, "CREATE TABLE notes (x TEXT)");
    assert_int_equal(plm_audit_open(other, &audit), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "no meta table"));
    tamper(other, "CREATE TABLE meta (key TEXT, value TEXT); INSERT INTO meta VALUES ('format', 'something-else')");
    assert_int_equal(plm_audit_open_existing(other, &audit), PLM_ERR_FORMAT);

    fresh_path("empty.db", empty);
    tamper(empty, "PRAGMA user_version = 0");
    assert_int_equal(plm_audit_open_existing(empty, &audit), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "empty"));

    const char *newer = make_log("newer.db", 1);
    tamper(newer, "UPDATE meta SET value = '2' WHERE key = 'schema_version'");
    assert_int_equal(plm_audit_open_existing(newer, &audit), PLM_ERR_UNSUPPORTED);
    assert_non_null(strstr(plm_last_error(), "newer pocketlm (schema version 2"));
    tamper(newer, "UPDATE meta SET value = 'one' WHERE key = 'schema_version'");
    assert_int_equal(plm_audit_open_existing(newer, &audit), PLM_ERR_FORMAT);
}

/* ---------------------------------------------------------------- tampering */

static void test_edited_body_is_detected(void **state)
{
    (void)state;
    const char *path = make_log("edit-body.db", 6);
    expect_intact(path, 12);
    tamper(path, "UPDATE entries SET body = CAST(substr(body, 1, 2) || 'X' || substr(body, 4) AS BLOB) WHERE seq = 5");
    expect_broken_at(path, 5, "does not match its hash");
}

static void test_edited_status_is_detected(void **state)
{
    (void)state;
    const char *path = make_log("edit-status.db", 6);
    tamper(path, "UPDATE entries SET http_status = 500 WHERE seq = 8");
    expect_broken_at(path, 8, "does not match its hash");
    /* Re-hashing the edited entry moves the break to the next one. */
    path = make_log("rehash.db", 6);
    tamper(path, "UPDATE entries SET hash = (SELECT hash FROM entries WHERE seq = 1) WHERE seq = 8");
    expect_broken_at(path, 8, "does not match its hash");
}

static void test_edits_of_every_field_are_detected(void **state)
{
    (void)state;
    const char *edits[] = {
        "UPDATE entries SET time = '2001-01-01T00:00:00.000Z' WHERE seq = 3",
        "UPDATE entries SET upstream = 'other' WHERE seq = 3",
        "UPDATE entries SET host = 'evil.example' WHERE seq = 3",
        "UPDATE entries SET rule = 'other' WHERE seq = 3",
        "UPDATE entries SET reason = '' WHERE seq = 3",
        "UPDATE entries SET head = X'' WHERE seq = 3",
        "UPDATE entries SET body = CAST(body || ' ' AS BLOB) WHERE seq = 3",
        "UPDATE entries SET redactions = '{}' WHERE seq = 3",
        "UPDATE entries SET kind = 'completion' WHERE seq = 3",
        "UPDATE entries SET bytes_sent = 0 WHERE seq = 3",
        "UPDATE entries SET prev_hash = hash WHERE seq = 3",
        "UPDATE entries SET error = 'x' WHERE seq = 4",
        "UPDATE entries SET bytes_received = 1 WHERE seq = 4",
        "UPDATE entries SET duration_ms = 1 WHERE seq = 4",
        "UPDATE entries SET outcome = 'cancelled' WHERE seq = 4",
        "UPDATE entries SET request_seq = 2 WHERE seq = 4",
        "UPDATE entries SET body = NULL WHERE seq = 3",
    };
    for (size_t i = 0; i < sizeof edits / sizeof edits[0]; i++) {
        const char *path = make_log("edit-field.db", 3);
        tamper(path, edits[i]);
        struct plm_audit_verdict v;
        verify_path(path, &v);
        if (v.intact || v.first_bad_seq != (strstr(edits[i], "seq = 3") ? 3 : 4))
            fail_msg("'%s' not found at its entry: %s", edits[i], v.intact ? "intact" : v.problem);
    }
}

static void test_deletions_are_detected(void **state)
{
    (void)state;
    const char *path = make_log("delete-middle.db", 6);
    tamper(path, "DELETE FROM entries WHERE seq = 5");
    expect_broken_at(path, 5, "entry 5 is missing");

    path = make_log("delete-last.db", 6);
    tamper(path, "DELETE FROM entries WHERE seq = 12");
    expect_broken_at(path, 12, "the end of the log was cut off");

    path = make_log("delete-all.db", 2);
    tamper(path, "DELETE FROM entries");
    expect_broken_at(path, 1, "entries 1 to 4 are missing");

    /* Renumbering after a deletion breaks the renumbered entry's hash. */
    path = make_log("delete-renumber.db", 6);
    tamper(path, "DELETE FROM entries WHERE seq = 5; UPDATE entries SET seq = -seq + 1 WHERE seq > 5;"
                 "UPDATE entries SET seq = -seq WHERE seq < 0; UPDATE head SET n_entries = 11");
    expect_broken_at(path, 5, "entry 5");

    path = make_log("delete-head.db", 2);
    tamper(path, "DELETE FROM head");
    expect_broken_at(path, 4, "head");
}

static void test_reordering_is_detected(void **state)
{
    (void)state;
    const char *path = make_log("swap.db", 6);
    tamper(path, "UPDATE entries SET seq = -1 WHERE seq = 6; UPDATE entries SET seq = 6 WHERE seq = 7;"
                 "UPDATE entries SET seq = 7 WHERE seq = -1");
    expect_broken_at(path, 6, "entry 6");
    /* Two whole requests swapped, each keeping its own completion after it. */
    path = make_log("swap-pairs.db", 6);
    tamper(path, "UPDATE entries SET seq = -seq WHERE seq IN (3, 4);"
                 "UPDATE entries SET seq = seq - 2 WHERE seq IN (5, 6);"
                 "UPDATE entries SET seq = -seq + 2 WHERE seq < 0;"
                 "UPDATE entries SET request_seq = -1 WHERE seq = 6; UPDATE entries SET request_seq = 3 WHERE seq = 4;"
                 "UPDATE entries SET request_seq = 5 WHERE seq = 6");
    expect_broken_at(path, 3, "entry 3");
}

/* Appends a request entry whose hash is computed the way pocketlm computes it
 * (with key, or none), as a forger who knows the format would. */
static void forge_entry(const char *path, int64_t seq, const char *prev_hash, const char *key)
{
    struct plm_audit hasher = {.keyed = key != NULL, .key = (char *)key, .key_len = key ? strlen(key) : 0};
    struct plm_audit_entry e = {
        .seq = seq, .kind = "request", .time = "2030-01-01T00:00:00.000Z", .upstream = "openai",
        .host = "api.example.com", .rule = "forged", .reason = "", .head = (const uint8_t *)"", .head_len = 0,
        .body = (const uint8_t *)"{}", .body_len = 2, .redactions = "{}", .prev_hash = prev_hash,
    };
    char hash[65];
    assert_int_equal(audit_entry_hash(&hasher, &e, hash), PLM_OK);
    char sql[1024];
    snprintf(sql, sizeof sql,
             "INSERT INTO entries (seq, kind, time, upstream, host, rule, reason, head, body, redactions, prev_hash, hash)"
             " VALUES (%lld, 'request', '%s', 'openai', 'api.example.com', 'forged', '', X'', CAST('{}' AS BLOB), '{}',"
             " '%s', '%s')",
             (long long)seq, e.time, prev_hash, hash);
    tamper(path, sql);
}

static void head_hash(const char *path, char hash[65])
{
    plm_audit *audit;
    assert_int_equal(plm_audit_open_existing(path, &audit), PLM_OK);
    struct plm_audit_head head;
    assert_int_equal(plm_audit_get_head(audit, &head), PLM_OK);
    memcpy(hash, head.hash, 65);
    plm_audit_close(audit);
}

static void test_forged_entries(void **state)
{
    (void)state;
    char last[65];
    /* At the end, with a self-consistent hash: the head does not count it. */
    const char *path = make_log("forge-end.db", 3);
    head_hash(path, last);
    forge_entry(path, 7, last, NULL);
    expect_broken_at(path, 7, "not counted by the head");

    /* ... but a forger who also moves the head is not caught: without a key,
     * anyone who can write the file can extend or rewrite the chain. */
    tamper(path, "UPDATE head SET n_entries = 7, hash = (SELECT hash FROM entries WHERE seq = 7)");
    expect_intact(path, 7);

    /* In the middle: the entries after it were renumbered, which breaks the next one. */
    path = make_log("forge-middle.db", 3);
    char hash2[65];
    {
        sqlite3 *db;
        assert_int_equal(sqlite3_open(path, &db), SQLITE_OK);
        sqlite3_stmt *stmt;
        assert_int_equal(sqlite3_prepare_v2(db, "SELECT hash FROM entries WHERE seq = 2", -1, &stmt, NULL), SQLITE_OK);
        assert_int_equal(sqlite3_step(stmt), SQLITE_ROW);
        memcpy(hash2, sqlite3_column_text(stmt, 0), 65);
        sqlite3_finalize(stmt);
        sqlite3_close(db);
    }
    tamper(path, "UPDATE entries SET seq = -seq - 1 WHERE seq >= 3; UPDATE entries SET seq = -seq WHERE seq < 0;"
                 "UPDATE entries SET request_seq = request_seq + 1 WHERE request_seq >= 3;"
                 "UPDATE head SET n_entries = 7");
    forge_entry(path, 3, hash2, NULL);
    expect_broken_at(path, 4, "entry 4");
}

static void test_keyed_log(void **state)
{
    (void)state;
    setenv(AUDIT_KEY_ENV, "correct horse battery staple", 1);
    const char *path = make_log("keyed.db", 3);
    expect_intact(path, 6);
    plm_audit *audit;
    assert_int_equal(plm_audit_open_existing(path, &audit), PLM_OK);
    struct plm_audit_head head;
    assert_int_equal(plm_audit_get_head(audit, &head), PLM_OK);
    assert_string_equal(head.hash_kind, "hmac-sha256");
    plm_audit_close(audit);

    /* A forger without the key: the forged entry itself is caught, even with the head moved. */
    char last[65];
    head_hash(path, last);
    forge_entry(path, 7, last, "a guessed key");
    tamper(path, "UPDATE head SET n_entries = 7, hash = (SELECT hash FROM entries WHERE seq = 7)");
    expect_broken_at(path, 7, "does not match its hash");

    /* Cutting the end off and moving the head back needs the key for the seal. */
    path = make_log("keyed-cut.db", 3);
    tamper(path, "DELETE FROM entries WHERE seq = 6;"
                 "UPDATE head SET n_entries = 5, hash = (SELECT hash FROM entries WHERE seq = 5)");
    expect_broken_at(path, 5, "seal");

    /* Reading needs no key; writing and verifying need the right one. */
    path = make_log("keyed-2.db", 1);
    unsetenv(AUDIT_KEY_ENV);
    assert_int_equal(plm_audit_open_existing(path, &audit), PLM_OK);
    struct collected c = {0};
    assert_int_equal(plm_audit_requests(audit, NULL, collect, &c), PLM_OK);
    assert_int_equal(c.n, 1);
    struct plm_audit_verdict v;
    assert_int_equal(plm_audit_verify(audit, &v), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "keyed"));
    struct plm_audit_request r = sample_request("{}", "openai");
    int64_t id;
    assert_int_equal(plm_audit_begin(audit, &r, &id), PLM_ERR_ARG);
    plm_audit_close(audit);
    setenv(AUDIT_KEY_ENV, "wrong", 1);
    assert_int_equal(plm_audit_open_existing(path, &audit), PLM_OK);
    assert_int_equal(plm_audit_verify(audit, &v), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "not the key"));
    plm_audit_close(audit);

    /* Downgrading a keyed log to a plain one, rehashed: caught by anyone holding the key. */
    setenv(AUDIT_KEY_ENV, "correct horse battery staple", 1);
    tamper(path, "UPDATE meta SET value = 'sha256' WHERE key = 'hash'; DELETE FROM meta WHERE key = 'key_check'");
    assert_int_equal(plm_audit_open_existing(path, &audit), PLM_OK);
    assert_int_equal(plm_audit_verify(audit, &v), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "without a key"));
    plm_audit_close(audit);
    unsetenv(AUDIT_KEY_ENV);
}

/* ------------------------------------------------- crashes and concurrency */

/* Appends requests and completions forever, writing each committed id to fd
 * (request ids as is, completions as -id). */
static void append_forever(const char *path, int fd, int limit)
{
    plm_audit *audit;
    if (plm_audit_open(path, &audit))
        _exit(3);
    static char body[8192];
    for (int i = 0; limit == 0 || i < limit; i++) {
        size_t len = (size_t)(i * 977) % sizeof body;
        memset(body, 'a' + i % 26, len);
        struct plm_audit_request r = sample_request("", "openai");
        r.body = body;
        r.body_len = len;
        int64_t id;
        if (plm_audit_begin(audit, &r, &id))
            _exit(4);
        if (write(fd, &id, sizeof id) != sizeof id)
            _exit(5);
        if (plm_audit_finish(audit, id, &ok_result))
            _exit(6);
        int64_t done = -id;
        if (write(fd, &done, sizeof done) != sizeof done)
            _exit(7);
    }
    plm_audit_close(audit);
    _exit(0);
}

/* Reads what the child reported until the deadline (or its end, when deadline <= 0). */
static void drain(int fd, int64_t *ids, size_t *n, size_t cap, double deadline)
{
    for (;;) {
        double left = deadline - plm_seconds_now();
        if (deadline > 0 && left <= 0)
            return;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, deadline > 0 ? (int)(left * 1000) + 1 : -1) <= 0)
            continue;
        int64_t id;
        ssize_t got = read(fd, &id, sizeof id);
        if (got == 0)
            return;
        assert_int_equal(got, sizeof id);
        if (*n < cap)
            ids[(*n)++] = id;
    }
}

struct committed_check {
    const int64_t *ids;
    size_t n;
    uint8_t *seen; /* by request id: 1 request, 2 with its completion */
    int64_t cap;
};

static bool note_request(void *user, const struct plm_audit_entry *request, const struct plm_audit_entry *completion)
{
    struct committed_check *c = user;
    if (request->seq < c->cap)
        c->seen[request->seq] = completion ? 2 : 1;
    return true;
}

static void test_sigkill_loses_and_tears_nothing(void **state)
{
    (void)state;
    char db_path[4096];
    fresh_path("sigkill.db", db_path);
    struct test_rng rng = {20250131};
    enum { MAX_IDS = 1 << 18 };
    int64_t *ids = malloc(MAX_IDS * sizeof *ids);
    assert_non_null(ids);
    size_t n_ids = 0;
    for (int round = 0; round < 12; round++) {
        int fds[2];
        assert_int_equal(pipe(fds), 0);
        pid_t child = fork();
        assert_true(child >= 0);
        if (child == 0) {
            close(fds[0]);
            append_forever(db_path, fds[1], 0);
        }
        close(fds[1]);
        /* Round 0 kills at once (perhaps while the file is being created). */
        double delay = round == 0 ? 0.0005 : 0.005 + 0.3 * rng_uniform(&rng);
        drain(fds[0], ids, &n_ids, MAX_IDS, plm_seconds_now() + delay);
        kill(child, SIGKILL);
        int status;
        assert_int_equal(waitpid(child, &status, 0), child);
        assert_true(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
        drain(fds[0], ids, &n_ids, MAX_IDS, 0);
        close(fds[0]);

        plm_audit *audit;
        assert_int_equal(plm_audit_open(db_path, &audit), PLM_OK);
        struct plm_audit_verdict v;
        assert_int_equal(plm_audit_verify(audit, &v), PLM_OK);
        if (!v.intact)
            fail_msg("round %d: entry %lld: %s", round, (long long)v.first_bad_seq, v.problem);
        struct committed_check c = {.ids = ids, .n = n_ids, .cap = v.n_entries + 1};
        c.seen = calloc((size_t)c.cap, 1);
        assert_int_equal(plm_audit_requests(audit, NULL, note_request, &c), PLM_OK);
        for (size_t i = 0; i < n_ids; i++) {
            int64_t id = ids[i] < 0 ? -ids[i] : ids[i];
            int want = ids[i] < 0 ? 2 : 1;
            if (id >= c.cap || c.seen[id] < want)
                fail_msg("round %d: committed %s %lld is missing", round, want == 2 ? "completion of" : "request",
                         (long long)id);
        }
        free(c.seen);
        plm_audit_close(audit);
    }
    assert_true(n_ids > 0);
    free(ids);
}

static void test_two_processes_build_one_chain(void **state)
{
    (void)state;
    char db_path[4096];
    fresh_path("two-writers.db", db_path);
    enum { PER_CHILD = 60 };
    int null_fd = open("/dev/null", O_WRONLY);
    assert_true(null_fd >= 0);
    pid_t children[2];
    for (int i = 0; i < 2; i++) {
        children[i] = fork();
        assert_true(children[i] >= 0);
        if (children[i] == 0)
            append_forever(db_path, null_fd, PER_CHILD);
    }
    for (int i = 0; i < 2; i++) {
        int status;
        assert_int_equal(waitpid(children[i], &status, 0), children[i]);
        assert_true(WIFEXITED(status));
        assert_int_equal(WEXITSTATUS(status), 0);
    }
    close(null_fd);
    expect_intact(db_path, 4 * PER_CHILD);
    struct plm_audit_verdict v;
    verify_path(db_path, &v);
    assert_int_equal(v.n_requests, 2 * PER_CHILD);
    assert_int_equal(v.n_completions, 2 * PER_CHILD);
}

int main(void)
{
    unsetenv(AUDIT_KEY_ENV);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_request_and_completion_are_stored),
        cmocka_unit_test(test_secrets_never_reach_the_file),
        cmocka_unit_test(test_masking_edge_cases),
        cmocka_unit_test(test_bad_calls_are_refused),
        cmocka_unit_test(test_filters),
        cmocka_unit_test(test_documented_serialization),
        cmocka_unit_test(test_files_that_are_not_audit_logs),
        cmocka_unit_test(test_edited_body_is_detected),
        cmocka_unit_test(test_edited_status_is_detected),
        cmocka_unit_test(test_edits_of_every_field_are_detected),
        cmocka_unit_test(test_deletions_are_detected),
        cmocka_unit_test(test_reordering_is_detected),
        cmocka_unit_test(test_forged_entries),
        cmocka_unit_test(test_keyed_log),
        cmocka_unit_test(test_sigkill_loses_and_tears_nothing),
        cmocka_unit_test(test_two_processes_build_one_chain),
    };
    return cmocka_run_group_tests(tests, 0, NULL);
}
