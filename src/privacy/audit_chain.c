/*
 * The audit log's hash chain: the serialization of an entry (layout in
 * audit.h), its digest, and the clean-up of what is stored (secrets masked,
 * the URL reduced to its host).
 */
#include "privacy/audit.h"

#include "core/error.h"
#include "tokenizer/unicode.h"

#include <ctype.h>
#include <inttypes.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* A growing byte buffer for the serialization. */
struct byte_buffer {
    uint8_t *data;
    size_t len, cap;
    bool failed; /* an allocation failed: the content is incomplete */
};

static void put_bytes(struct byte_buffer *b, const void *data, size_t len)
{
    if (b->failed)
        return;
    if (b->len + len > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + len)
            cap *= 2;
        uint8_t *grown = realloc(b->data, cap);
        if (!grown) {
            b->failed = true;
            return;
        }
        b->data = grown, b->cap = cap;
    }
    if (len)
        memcpy(b->data + b->len, data, len);
    b->len += len;
}

/* One field: "<decimal length>:<bytes>". A NULL pointer counts as empty. */
static void put_field(struct byte_buffer *b, const void *data, size_t len)
{
    char prefix[24];
    int n = snprintf(prefix, sizeof prefix, "%zu:", len);
    put_bytes(b, prefix, (size_t)n);
    put_bytes(b, data, len);
}

static void put_text(struct byte_buffer *b, const char *text)
{
    put_field(b, text, text ? strlen(text) : 0);
}

static void put_int(struct byte_buffer *b, int64_t value)
{
    char digits[24];
    int n = snprintf(digits, sizeof digits, "%" PRId64, value);
    put_field(b, digits, (size_t)n);
}

static void to_hex(const uint8_t *bytes, size_t n, char *hex)
{
    static const char digits[] = "0123456789abcdef";
    for (size_t i = 0; i < n; i++) {
        hex[2 * i] = digits[bytes[i] >> 4];
        hex[2 * i + 1] = digits[bytes[i] & 15];
    }
    hex[2 * n] = '\0';
}

int audit_digest(const char *key, size_t key_len, const void *data, size_t len, char hex[65])
{
    uint8_t digest[EVP_MAX_MD_SIZE];
    unsigned int digest_len = 0;
    bool ok = key ? HMAC(EVP_sha256(), key, (int)key_len, data, len, digest, &digest_len) != NULL
                  : EVP_Digest(data, len, digest, &digest_len, EVP_sha256(), NULL) == 1;
    if (!ok || digest_len != 32)
        return plm_fail(PLM_ERR_UNSUPPORTED, "audit: SHA-256 is not available from libcrypto");
    to_hex(digest, digest_len, hex);
    return PLM_OK;
}

static int digest_buffer(const struct plm_audit *audit, struct byte_buffer *b, char hex[65])
{
    int rc = b->failed ? plm_fail(PLM_ERR_NOMEM, "audit: out of memory serializing an entry")
                       : audit_digest(audit->keyed ? audit->key : NULL, audit->key_len, b->data, b->len, hex);
    free(b->data);
    return rc;
}

int audit_entry_hash(const struct plm_audit *audit, const struct plm_audit_entry *e, char hex[65])
{
    struct byte_buffer b = {0};
    put_text(&b, AUDIT_ENTRY_TAG);
    put_int(&b, e->seq);
    put_text(&b, e->kind);
    put_text(&b, e->time);
    if (strcmp(e->kind, "request") == 0) {
        put_text(&b, e->upstream);
        put_text(&b, e->host);
        put_text(&b, e->rule);
        put_text(&b, e->reason);
        put_field(&b, e->head, e->head_len);
        put_field(&b, e->body, e->body_len);
        put_text(&b, e->redactions);
    } else {
        put_int(&b, e->request_seq);
        put_int(&b, e->http_status);
        put_text(&b, e->error);
        put_int(&b, e->bytes_sent);
        put_int(&b, e->bytes_received);
        put_int(&b, e->duration_ms);
        put_text(&b, e->outcome);
    }
    put_text(&b, e->prev_hash);
    return digest_buffer(audit, &b, hex);
}

int audit_head_seal(const struct plm_audit *audit, int64_t n_entries, const char *hash, char hex[65])
{
    if (!audit->keyed) {
        hex[0] = '\0';
        return PLM_OK;
    }
    struct byte_buffer b = {0};
    put_text(&b, AUDIT_HEAD_TAG);
    put_int(&b, n_entries);
    put_text(&b, hash);
    return digest_buffer(audit, &b, hex);
}

/* ------------------------------------------------------------ what is kept */

static const char *const secret_headers[] = {
    "authorization", "proxy-authorization", "x-api-key", "api-key", "x-goog-api-key",
};
static const char *const secret_parameters[] = {"key", "api_key", "apikey", "access_token"};

/* Is line (up to its ':') one of the secret headers? */
static bool is_secret_header(const char *line, size_t len)
{
    const char *colon = memchr(line, ':', len);
    if (!colon)
        return false;
    size_t name_len = (size_t)(colon - line);
    for (size_t i = 0; i < sizeof secret_headers / sizeof secret_headers[0]; i++)
        if (strlen(secret_headers[i]) == name_len && strncasecmp(line, secret_headers[i], name_len) == 0)
            return true;
    return false;
}

/* The length of a secret parameter name followed by '=' at text[0..len), or 0. */
static size_t secret_parameter_at(const char *text, size_t len)
{
    for (size_t i = 0; i < sizeof secret_parameters / sizeof secret_parameters[0]; i++) {
        size_t n = strlen(secret_parameters[i]);
        if (n < len && text[n] == '=' && strncasecmp(text, secret_parameters[i], n) == 0)
            return n + 1;
    }
    return 0;
}

/* Copies one line, masking the values of secret query parameters. */
static void put_line_masking_parameters(struct byte_buffer *b, const char *line, size_t len)
{
    size_t i = 0;
    while (i < len) {
        put_bytes(b, &line[i], 1);
        bool starts_parameter = line[i] == '?' || line[i] == '&';
        i++;
        size_t name_len = starts_parameter ? secret_parameter_at(line + i, len - i) : 0;
        if (!name_len)
            continue;
        put_bytes(b, line + i, name_len);
        put_bytes(b, "[KEY]", 5);
        i += name_len;
        while (i < len && !strchr("& #\r", line[i]))
            i++;
    }
}

char *audit_mask_secrets(const char *head, size_t *masked_len)
{
    struct byte_buffer b = {0};
    size_t len = strlen(head);
    for (size_t start = 0; start < len;) {
        const char *newline = memchr(head + start, '\n', len - start);
        size_t end = newline ? (size_t)(newline - head) + 1 : len; /* the line with its '\n' */
        const char *line = head + start;
        if (start > 0 && is_secret_header(line, end - start)) {
            const char *colon = memchr(line, ':', end - start);
            put_bytes(&b, line, (size_t)(colon - line));
            put_bytes(&b, ": [KEY]", 7);
            size_t eol = end - start;
            while (eol > 0 && (line[eol - 1] == '\n' || line[eol - 1] == '\r'))
                eol--; /* keep the line ending as it was */
            put_bytes(&b, line + eol, end - start - eol);
        } else {
            put_line_masking_parameters(&b, line, end - start);
        }
        start = end;
    }
    put_bytes(&b, "", 1); /* NUL-terminated for convenience; not counted */
    if (b.failed) {
        free(b.data);
        return NULL;
    }
    *masked_len = b.len - 1;
    return (char *)b.data;
}

bool audit_url_host(const char *url, char *host, size_t capacity)
{
    const char *scheme_end = strstr(url, "://");
    const char *start = scheme_end ? scheme_end + 3 : url;
    size_t len = strcspn(start, "/?#");
    /* user:password@ precedes the host and is a secret: drop it. */
    const char *at = memchr(start, '@', len);
    while (at) {
        len -= (size_t)(at + 1 - start);
        start = at + 1;
        at = memchr(start, '@', len);
    }
    if (len == 0 || len >= capacity)
        return false;
    for (size_t i = 0; i < len; i++)
        if (isspace((unsigned char)start[i]) || (unsigned char)start[i] < 0x20)
            return false;
    memcpy(host, start, len);
    host[len] = '\0';
    return true;
}

bool audit_is_utf8(const void *text, size_t len)
{
    const unsigned char *bytes = text;
    for (size_t i = 0; i < len;) {
        uint32_t cp;
        size_t n = utf8_decode(bytes + i, len - i, &cp);
        /* A malformed byte decodes alone to U+FFFD; a real U+FFFD takes 3 bytes. */
        if (cp == UNICODE_REPLACEMENT && n == 1)
            return false;
        i += n;
    }
    return true;
}

const char *audit_outcome_name(enum plm_audit_outcome outcome)
{
    switch (outcome) {
    case PLM_AUDIT_OK: return "ok";
    case PLM_AUDIT_UPSTREAM_ERROR: return "upstream-error";
    case PLM_AUDIT_FALLBACK: return "fallback-to-device";
    case PLM_AUDIT_CANCELLED: return "cancelled";
    }
    return NULL;
}

int audit_fail_sqlite(sqlite3 *db, const char *what)
{
    return plm_fail(PLM_ERR_IO, "audit: %s: %s", what, sqlite3_errmsg(db));
}

int audit_exec(sqlite3 *db, const char *sql, const char *what)
{
    if (sqlite3_exec(db, sql, NULL, NULL, NULL) != SQLITE_OK)
        return audit_fail_sqlite(db, what);
    return PLM_OK;
}
