/*
 * Calling an upstream over HTTP with libcurl's easy API: one request per call,
 * nothing shared between calls but curl's global state (initialised once), so
 * calls from several threads run side by side.
 *
 * An attempt:
 *   1. the wire format writes the URL path and the JSON body;
 *   2. the request head is written out in full (request line, Host, ... and
 *      the key's header) and given to curl as the exact header list, over
 *      HTTP/1.1, so that what the observer (the audit log) sees, with the key
 *      masked, is byte for byte what goes out;
 *   3. the answer is read as it arrives: a 2xx text/event-stream goes through
 *      the SSE parser into the wire format's event reader, and from there each
 *      piece of text to the caller; anything else is collected and read whole.
 * Failed attempts are retried (429, 408, 5xx, transport errors, timeouts) with
 * exponential backoff and jitter, or as Retry-After asks, but never once text
 * has been handed to the caller: the caller cannot take it back.
 */
#include "routing/upstream.h"

#include "core/error.h"
#include "routing/sse.h"

#include <cjson/cJSON.h>
#include <ctype.h>
#include <curl/curl.h>
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

/* An answer read whole is refused beyond this; an error body is kept up to the second. */
#define MAX_ANSWER_BYTES (64u << 20)
#define MAX_ERROR_BODY_BYTES (64u << 10)
/* Backoff before retry k (1, 2, ...): a random wait in [d/2, d], d = BASE * 2^(k-1) up to MAX. */
#define BACKOFF_BASE_S 0.5
#define BACKOFF_MAX_S 8.0

/* ------------------------------------------------------------ the reply */

void reply_init(struct upstream_reply *reply, plm_text_callback on_delta, void *user)
{
    *reply = (struct upstream_reply){.prompt_tokens = -1, .completion_tokens = -1, .on_delta = on_delta, .user = user};
}

void reply_free(struct upstream_reply *reply)
{
    free(reply->text);
    reply->text = NULL;
}

int reply_add_text(struct upstream_reply *reply, const char *text, size_t len)
{
    if (len == 0 || reply->cancelled)
        return PLM_OK;
    if (reply->text_len + len + 1 > reply->text_cap) {
        size_t cap = reply->text_cap ? reply->text_cap : 256;
        while (cap < reply->text_len + len + 1)
            cap *= 2;
        char *grown = realloc(reply->text, cap);
        if (!grown)
            return plm_fail(PLM_ERR_NOMEM, "upstream answer: out of memory");
        reply->text = grown;
        reply->text_cap = cap;
    }
    memcpy(reply->text + reply->text_len, text, len);
    reply->text_len += len;
    reply->text[reply->text_len] = '\0';
    if (reply->on_delta) {
        reply->delivered = true;
        reply->cancelled = !reply->on_delta(reply->user, text, len);
    }
    return PLM_OK;
}

void reply_set_finish(struct upstream_reply *reply, enum plm_finish_reason reason, const char *detail)
{
    reply->finish_reason = reason;
    snprintf(reply->finish_detail, sizeof reply->finish_detail, "%s", detail);
}

void reply_finish_from_word(struct upstream_reply *reply, const char *word, const struct finish_word *table,
                            int n_words)
{
    enum plm_finish_reason reason = PLM_FINISH_OTHER;
    for (int i = 0; i < n_words; i++)
        if (strcmp(word, table[i].word) == 0)
            reason = table[i].reason;
    reply_set_finish(reply, reason, word);
}

/* ------------------------------------------- shared by the wire formats */

int upstream_print_body(cJSON *root, char **body)
{
    *body = cJSON_PrintUnformatted(root);
    cJSON_Delete(root);
    return *body ? PLM_OK : plm_fail(PLM_ERR_NOMEM, "upstream request: out of memory");
}

cJSON *upstream_parse_json(const char *json, size_t len)
{
    cJSON *root = cJSON_ParseWithLength(json, len);
    if (!cJSON_IsObject(root)) {
        cJSON_Delete(root);
        plm_fail(PLM_ERR_FORMAT, "upstream answer: not a JSON object: '%.60s%s'", json, len > 60 ? "..." : "");
        return NULL;
    }
    return root;
}

/* The message of an error object: {"message": ...} or a bare string. */
static const char *error_text(const cJSON *error)
{
    if (cJSON_IsString(error))
        return error->valuestring;
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(error, "message");
    return cJSON_IsString(message) ? message->valuestring : NULL;
}

int upstream_check_error(const cJSON *root)
{
    const cJSON *error = cJSON_GetObjectItemCaseSensitive(root, "error");
    if (!error || cJSON_IsNull(error))
        return PLM_OK;
    const char *message = error_text(error);
    return plm_fail(PLM_ERR_IO, "the upstream reported an error: %.300s", message ? message : "(no message)");
}

void upstream_read_count(const cJSON *object, const char *key, int *value)
{
    const cJSON *count = cJSON_GetObjectItemCaseSensitive(object, key);
    if (cJSON_IsNumber(count) && count->valuedouble >= 0 && count->valuedouble < 2e9)
        *value = (int)count->valuedouble;
}

void upstream_error_message(const char *body, size_t len, char *out, size_t size)
{
    cJSON *root = cJSON_ParseWithLength(body, len);
    const char *text = error_text(cJSON_GetObjectItemCaseSensitive(root, "error"));
    if (!text)
        text = error_text(root);
    const cJSON *detail = cJSON_GetObjectItemCaseSensitive(root, "detail");
    if (!text && cJSON_IsString(detail))
        text = detail->valuestring;
    if (text) {
        snprintf(out, size, "%s", text);
    } else {
        /* Not a known shape (an HTML page from a proxy, ...): its first printable bytes. */
        size_t n = 0;
        for (size_t i = 0; i < len && n + 1 < size && n < 200; i++)
            out[n++] = isprint((unsigned char)body[i]) ? body[i] : ' ';
        out[n] = '\0';
        if (n == 0)
            snprintf(out, size, "(empty body)");
    }
    cJSON_Delete(root);
}

double upstream_temperature(const struct plm_upstream_request *request)
{
    return request->temperature < 0 ? -1.0 : round(request->temperature * 1000.0) / 1000.0;
}

char *upstream_system_prompt(const struct plm_upstream_request *request)
{
    size_t len = 0;
    for (int i = 0; i < request->n_messages; i++)
        if (strcmp(request->messages[i].role, "system") == 0)
            len += strlen(request->messages[i].content) + 2;
    char *system = malloc(len + 1);
    if (!system)
        return NULL;
    system[0] = '\0';
    for (int i = 0; i < request->n_messages; i++)
        if (strcmp(request->messages[i].role, "system") == 0) {
            if (system[0])
                strcat(system, "\n\n");
            strcat(system, request->messages[i].content);
        }
    return system;
}

int upstream_max_tokens(const struct plm_upstream *upstream, const struct plm_upstream_request *request,
                        int fallback)
{
    if (request->max_tokens > 0)
        return request->max_tokens;
    return upstream->max_tokens > 0 ? upstream->max_tokens : fallback;
}

const struct upstream_wire *upstream_wire_for(enum plm_upstream_kind kind)
{
    switch (kind) {
    case PLM_UPSTREAM_OPENAI:
        return &upstream_wire_openai;
    case PLM_UPSTREAM_ANTHROPIC:
        return &upstream_wire_anthropic;
    case PLM_UPSTREAM_GEMINI:
        return &upstream_wire_gemini;
    }
    return NULL;
}

const char *plm_finish_reason_name(enum plm_finish_reason reason)
{
    static const char *const names[] = {"unknown", "stop", "length", "filtered", "other", "cancelled"};
    return (int)reason >= 0 && (int)reason < (int)(sizeof names / sizeof names[0]) ? names[reason] : "?";
}

void plm_upstream_result_free(struct plm_upstream_result *result)
{
    if (!result)
        return;
    free(result->text);
    result->text = NULL;
    result->text_len = 0;
}

/* ---------------------------------------------------------------- the key */

/* The key from the upstream's environment variable; NULL key for no key. */
static int read_key(const struct plm_upstream *upstream, const char **key)
{
    *key = NULL;
    if (!upstream->api_key_env)
        return PLM_OK;
    const char *value = getenv(upstream->api_key_env);
    if (!value || !value[0])
        return plm_fail(PLM_ERR_ARG, "upstream '%s': the environment variable %s (its api_key_env) is not set",
                        upstream->name, upstream->api_key_env);
    for (const char *c = value; *c; c++)
        if ((unsigned char)*c < ' ' || *c == 0x7f)
            return plm_fail(PLM_ERR_ARG, "upstream '%s': the key in %s holds a control character or line break",
                            upstream->name, upstream->api_key_env);
    *key = value;
    return PLM_OK;
}

int plm_upstream_ready(const struct plm_upstream *upstream)
{
    const char *key;
    return read_key(upstream, &key);
}

/* Writes text to out with every occurrence of key replaced by "[KEY]": an
 * upstream may quote the key in its error message. */
static void mask_key(const char *text, const char *key, char *out, size_t size)
{
    size_t key_len = key ? strlen(key) : 0, n = 0;
    while (*text && n + 1 < size) {
        if (key_len && strncmp(text, key, key_len) == 0) {
            n += (size_t)snprintf(out + n, size - n, "[KEY]");
            text += key_len;
        } else {
            out[n++] = *text++;
        }
    }
    out[n < size ? n : size - 1] = '\0';
}

/* ---------------------------------------------------------- the request */

/* Everything an attempt sends, built once per call. */
struct outgoing {
    char url[4096];
    char *body;
    size_t body_len;
    char *head;                /* request line and headers as sent, key masked */
    struct curl_slist *headers; /* the same headers for curl, with the key */
};

static void outgoing_free(struct outgoing *out)
{
    free(out->body);
    free(out->head);
    curl_slist_free_all(out->headers);
}

/* Appends "line\r\n" to the head. */
static int add_head_line(struct outgoing *out, size_t *head_len, const char *line)
{
    size_t len = strlen(line);
    char *grown = realloc(out->head, *head_len + len + 3);
    if (!grown)
        return plm_fail(PLM_ERR_NOMEM, "upstream request: out of memory");
    out->head = grown;
    memcpy(out->head + *head_len, line, len);
    memcpy(out->head + *head_len + len, "\r\n", 3);
    *head_len += len + 2;
    return PLM_OK;
}

static int add_curl_header(struct outgoing *out, const char *header)
{
    struct curl_slist *list = curl_slist_append(out->headers, header);
    if (!list)
        return plm_fail(PLM_ERR_NOMEM, "upstream request: out of memory");
    out->headers = list;
    return PLM_OK;
}

/* A header: as masked in the head, and with the real key (if any) for curl. */
static int add_header(struct outgoing *out, size_t *head_len, const char *masked, const char *real)
{
    int rc = add_head_line(out, head_len, masked);
    return rc ? rc : add_curl_header(out, real ? real : masked);
}

/* The request line's target and the Host header's value, from the URL. */
static int split_url(const char *url, char *target, size_t target_size, char *host, size_t host_size)
{
    CURLU *parsed = curl_url();
    char *host_part = NULL, *port = NULL, *path = NULL, *query = NULL;
    int rc = PLM_OK;
    if (!parsed || curl_url_set(parsed, CURLUPART_URL, url, 0) != CURLUE_OK ||
        curl_url_get(parsed, CURLUPART_HOST, &host_part, 0) != CURLUE_OK ||
        curl_url_get(parsed, CURLUPART_PATH, &path, 0) != CURLUE_OK) {
        rc = plm_fail(PLM_ERR_ARG, "'%s' is not a URL libcurl accepts", url);
    } else {
        curl_url_get(parsed, CURLUPART_PORT, &port, 0); /* only when the URL gives one */
        curl_url_get(parsed, CURLUPART_QUERY, &query, 0);
        snprintf(target, target_size, "%s%s%s", path, query ? "?" : "", query ? query : "");
        snprintf(host, host_size, "%s%s%s", host_part, port ? ":" : "", port ? port : "");
    }
    curl_free(host_part);
    curl_free(port);
    curl_free(path);
    curl_free(query);
    curl_url_cleanup(parsed);
    return rc;
}

static int build_outgoing(const struct plm_upstream *upstream, const struct upstream_wire *wire,
                          const struct plm_upstream_request *request, const char *key, struct outgoing *out)
{
    char path[1024], target[4096], host[512], line[4200];
    int rc = wire->path(upstream, request->stream, path, sizeof path);
    if (rc || (rc = wire->body(upstream, request, &out->body)))
        return rc;
    out->body_len = strlen(out->body);
    snprintf(out->url, sizeof out->url, "%s%s", upstream->base_url, path);
    if ((rc = split_url(out->url, target, sizeof target, host, sizeof host)))
        return rc;
    size_t head_len = 0;
    snprintf(line, sizeof line, "POST %s HTTP/1.1", target);
    if ((rc = add_head_line(out, &head_len, line)))
        return rc;
    snprintf(line, sizeof line, "Host: %s", host);
    if ((rc = add_header(out, &head_len, line, NULL)) ||
        (rc = add_header(out, &head_len, "User-Agent: pocketlm/" PLM_VERSION, NULL)) ||
        (rc = add_header(out, &head_len, request->stream ? "Accept: text/event-stream" : "Accept: application/json",
                         NULL)) ||
        (rc = add_header(out, &head_len, "Content-Type: application/json", NULL)))
        return rc;
    snprintf(line, sizeof line, "Content-Length: %zu", out->body_len);
    if ((rc = add_header(out, &head_len, line, NULL)))
        return rc;
    if (key) {
        char masked[256], *real;
        snprintf(masked, sizeof masked, "%s[KEY]", wire->key_header);
        if (asprintf(&real, "%s%s", wire->key_header, key) < 0)
            return plm_fail(PLM_ERR_NOMEM, "upstream request: out of memory");
        rc = add_header(out, &head_len, masked, real);
        memset(real, 0, strlen(real)); /* do not leave the key in freed memory */
        free(real);
        if (rc)
            return rc;
    }
    if (wire->extra_header && (rc = add_header(out, &head_len, wire->extra_header, NULL)))
        return rc;
    /* The empty line ends the head; "Expect:" keeps curl from adding 100-continue. */
    if ((rc = add_head_line(out, &head_len, "")))
        return rc;
    return add_curl_header(out, "Expect:");
}

/* ---------------------------------------------------------- an attempt */

enum body_mode {
    BODY_UNDECIDED = 0, /* no byte of the body yet */
    BODY_STREAM,        /* a 2xx event stream: parsed as it arrives */
    BODY_WHOLE,         /* anything else: collected, read at the end */
};

struct attempt {
    CURL *curl;
    const struct upstream_wire *wire;
    struct upstream_reply *reply;
    struct sse_parser sse;
    enum body_mode mode;
    char *body; /* BODY_WHOLE: the answer or the error body */
    size_t body_len;
    int failure; /* a failure inside a callback: a malformed event, an error event */
    long http_status;
    uint64_t bytes_sent; /* head and body as they went out, counted by on_debug */
};

/* Positive, so that it cannot be mistaken for a plm_status: the caller stopped. */
#define STOPPED_BY_CALLER 1

static int on_event(void *user, const char *event, const char *data, size_t len)
{
    struct attempt *a = user;
    int rc = a->wire->parse_event(event, data, len, a->reply);
    return rc ? rc : a->reply->cancelled ? STOPPED_BY_CALLER : PLM_OK;
}

static bool is_success(long status)
{
    return status >= 200 && status < 300;
}

static size_t on_body(char *bytes, size_t size, size_t count, void *user)
{
    struct attempt *a = user;
    size_t len = size * count;
    if (a->mode == BODY_UNDECIDED) {
        const char *type = NULL;
        curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &a->http_status);
        curl_easy_getinfo(a->curl, CURLINFO_CONTENT_TYPE, &type);
        bool events = type && strncasecmp(type, "text/event-stream", 17) == 0;
        a->mode = is_success(a->http_status) && events ? BODY_STREAM : BODY_WHOLE;
    }
    if (a->mode == BODY_STREAM) {
        int rc = sse_feed(&a->sse, bytes, len);
        if (rc == STOPPED_BY_CALLER)
            return 0;
        if (rc) {
            a->failure = rc;
            return 0;
        }
        return len;
    }
    size_t limit = is_success(a->http_status) ? MAX_ANSWER_BYTES : MAX_ERROR_BODY_BYTES;
    size_t keep = a->body_len + len > limit ? limit - a->body_len : len;
    if (keep < len && is_success(a->http_status)) {
        a->failure = plm_fail(PLM_ERR_LIMIT, "the answer is longer than %u bytes", MAX_ANSWER_BYTES);
        return 0;
    }
    char *grown = realloc(a->body, a->body_len + keep + 1);
    if (!grown) {
        a->failure = plm_fail(PLM_ERR_NOMEM, "upstream answer: out of memory");
        return 0;
    }
    a->body = grown;
    memcpy(a->body + a->body_len, bytes, keep);
    a->body_len += keep;
    a->body[a->body_len] = '\0';
    return len;
}

/* Counts the bytes sent. libcurl's own counters disagree on whether a small
 * body sent together with the head belongs to the request's size, so count
 * what its debug hook sees leave. */
static int on_debug(CURL *curl, curl_infotype type, char *data, size_t size, void *user)
{
    (void)curl;
    (void)data;
    struct attempt *a = user;
    if (type == CURLINFO_HEADER_OUT || type == CURLINFO_DATA_OUT)
        a->bytes_sent += size;
    return 0;
}

/* How an attempt ended. */
struct attempt_outcome {
    int status;        /* PLM_OK or a plm_status, message set */
    bool retryable;
    double retry_after; /* seconds the upstream asked to wait, or 0 */
    long http_status;
    uint64_t bytes_sent, bytes_received;
};

static bool is_retryable_status(long status)
{
    return status == 408 || status == 429 || status >= 500;
}

/* Transport failures worth another try; others (a malformed URL, a refused
 * certificate, our own callback stopping the transfer) would fail the same way. */
static bool is_retryable_transport(CURLcode code)
{
    switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_GOT_NOTHING:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_PARTIAL_FILE:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return true;
    default:
        return false;
    }
}

static void configure(CURL *curl, const struct plm_upstream *upstream, const struct outgoing *out,
                      struct attempt *a, char *error_buffer)
{
    curl_easy_setopt(curl, CURLOPT_URL, out->url);
    curl_easy_setopt(curl, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(curl, CURLOPT_HTTP_VERSION, (long)CURL_HTTP_VERSION_1_1);
    curl_easy_setopt(curl, CURLOPT_HTTPHEADER, out->headers);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDS, out->body);
    curl_easy_setopt(curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)out->body_len);
    curl_easy_setopt(curl, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(curl, CURLOPT_WRITEDATA, a);
    curl_easy_setopt(curl, CURLOPT_ERRORBUFFER, error_buffer);
    curl_easy_setopt(curl, CURLOPT_DEBUGFUNCTION, on_debug);
    curl_easy_setopt(curl, CURLOPT_DEBUGDATA, a);
    curl_easy_setopt(curl, CURLOPT_VERBOSE, 1L); /* calls on_debug; prints nothing itself */
    curl_easy_setopt(curl, CURLOPT_NOSIGNAL, 1L); /* timeouts without SIGALRM: safe in threads */
    curl_easy_setopt(curl, CURLOPT_CONNECTTIMEOUT_MS, (long)(upstream->connect_timeout_s * 1000));
    curl_easy_setopt(curl, CURLOPT_TIMEOUT_MS, (long)(upstream->timeout_s * 1000));
    /* A stall: less than 1 byte/s for stall_timeout_s seconds. */
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(curl, CURLOPT_LOW_SPEED_TIME, (long)ceil(upstream->stall_timeout_s));
    /* No redirects: the key would follow them to wherever they lead. */
    curl_easy_setopt(curl, CURLOPT_FOLLOWLOCATION, 0L);
}

/* Reads the outcome of a finished transfer. */
static void judge(struct attempt *a, CURLcode code, const char *error_buffer, const struct outgoing *out,
                  struct attempt_outcome *outcome)
{
    struct upstream_reply *reply = a->reply;
    curl_easy_getinfo(a->curl, CURLINFO_RESPONSE_CODE, &outcome->http_status);
    if (a->failure) {
        outcome->status = a->failure; /* message set where it happened */
    } else if (reply->cancelled) {
        reply_set_finish(reply, PLM_FINISH_CANCELLED, "cancelled");
    } else if (code != CURLE_OK) {
        outcome->retryable = is_retryable_transport(code);
        outcome->status = plm_fail(PLM_ERR_IO, "%s: %s", out->url, error_buffer[0] ? error_buffer : curl_easy_strerror(code));
    } else if (!is_success(outcome->http_status)) {
        char message[512];
        upstream_error_message(a->body ? a->body : "", a->body_len, message, sizeof message);
        curl_off_t wait = 0;
        curl_easy_getinfo(a->curl, CURLINFO_RETRY_AFTER, &wait);
        outcome->retry_after = (double)wait;
        outcome->retryable = is_retryable_status(outcome->http_status);
        outcome->status = plm_fail(PLM_ERR_IO, "HTTP %ld: %s", outcome->http_status, message);
    } else if (a->mode != BODY_STREAM) { /* JSON, or nothing at all */
        outcome->status = a->wire->parse_response(a->body ? a->body : "", a->body_len, reply);
    } else if (!reply->ended && reply->finish_reason == PLM_FINISH_UNKNOWN) {
        /* The connection closed cleanly, but the stream's end never came. */
        outcome->retryable = true;
        outcome->status = plm_fail(PLM_ERR_IO, "the stream ended before the answer did");
    }
    if (outcome->status && reply->delivered)
        outcome->retryable = false;
}

static void count_bytes(const struct attempt *a, struct attempt_outcome *outcome)
{
    long header_size = 0;
    curl_off_t downloaded = 0;
    curl_easy_getinfo(a->curl, CURLINFO_HEADER_SIZE, &header_size);
    curl_easy_getinfo(a->curl, CURLINFO_SIZE_DOWNLOAD_T, &downloaded);
    outcome->bytes_sent = a->bytes_sent;
    outcome->bytes_received = (uint64_t)header_size + (uint64_t)downloaded;
}

static void run_attempt(const struct plm_upstream *upstream, const struct upstream_wire *wire,
                        const struct outgoing *out, struct upstream_reply *reply, struct attempt_outcome *outcome)
{
    *outcome = (struct attempt_outcome){0};
    struct attempt a = {.wire = wire, .reply = reply};
    a.curl = curl_easy_init();
    if (!a.curl) {
        outcome->status = plm_fail(PLM_ERR_NOMEM, "cannot create an HTTP handle");
        return;
    }
    sse_init(&a.sse, on_event, &a);
    char error_buffer[CURL_ERROR_SIZE] = "";
    configure(a.curl, upstream, out, &a, error_buffer);
    CURLcode code = curl_easy_perform(a.curl);
    judge(&a, code, error_buffer, out, outcome);
    count_bytes(&a, outcome);
    sse_free(&a.sse);
    free(a.body);
    curl_easy_cleanup(a.curl);
}

/* ------------------------------------------------------------- the call */

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_code;

static void init_curl(void)
{
    curl_init_code = curl_global_init(CURL_GLOBAL_DEFAULT);
}

static int check_request(const struct plm_upstream *upstream, const struct plm_upstream_request *request)
{
    int n_turns = 0;
    for (int i = 0; i < request->n_messages; i++) {
        const struct plm_chat_message *m = &request->messages[i];
        if (!m->role || !m->content)
            return plm_fail(PLM_ERR_ARG, "upstream '%s': message %d has no role or content", upstream->name, i);
        bool system = strcmp(m->role, "system") == 0;
        if (!system && strcmp(m->role, "user") != 0 && strcmp(m->role, "assistant") != 0)
            return plm_fail(PLM_ERR_ARG, "upstream '%s': message %d has role '%.20s' (system, user or assistant)",
                            upstream->name, i, m->role);
        n_turns += !system;
    }
    if (n_turns == 0)
        return plm_fail(PLM_ERR_ARG, "upstream '%s': the request has no user or assistant message", upstream->name);
    return PLM_OK;
}

/* Seconds to wait before retry number `retry` (1, 2, ...). */
static double backoff_seconds(int retry, uint64_t *rng)
{
    double ceiling = BACKOFF_BASE_S * pow(2.0, retry - 1);
    if (ceiling > BACKOFF_MAX_S)
        ceiling = BACKOFF_MAX_S;
    *rng ^= *rng << 13; /* xorshift64: jitter needs no quality, only spread */
    *rng ^= *rng >> 7;
    *rng ^= *rng << 17;
    double unit = (double)(*rng >> 11) / 9007199254740992.0;
    return ceiling * (0.5 + 0.5 * unit);
}

static void sleep_seconds(double seconds)
{
    struct timespec t = {(time_t)seconds, (long)((seconds - floor(seconds)) * 1e9)};
    while (nanosleep(&t, &t) != 0)
        ;
}

static void fill_result(const struct upstream_reply *reply, struct plm_upstream_result *result)
{
    result->text = reply->text;
    result->text_len = reply->text_len;
    result->prompt_tokens = reply->prompt_tokens;
    result->completion_tokens = reply->completion_tokens;
    result->finish_reason = reply->finish_reason;
    memcpy(result->finish_detail, reply->finish_detail, sizeof result->finish_detail);
}

/* Runs attempts until one succeeds, one fails for good, or the retries are spent. */
static int call_with_retries(const struct plm_upstream *upstream, const struct upstream_wire *wire,
                             const struct outgoing *out, const struct plm_upstream_observer *observer,
                             struct upstream_reply *reply, struct plm_upstream_result *result)
{
    uint64_t rng = ((uint64_t)(plm_seconds_now() * 1e9) ^ (uint64_t)(uintptr_t)out) | 1;
    for (int attempt = 1;; attempt++) {
        if (observer && observer->before_send) {
            int rc = observer->before_send(observer->user, upstream, attempt, out->url, out->head, out->body,
                                           out->body_len);
            if (rc)
                return rc;
        }
        struct attempt_outcome outcome;
        reply_free(reply);
        reply_init(reply, reply->on_delta, reply->user); /* a failed attempt leaves nothing behind */
        run_attempt(upstream, wire, out, reply, &outcome);
        result->attempts = attempt;
        result->http_status = (int)outcome.http_status;
        result->bytes_sent += outcome.bytes_sent;
        result->bytes_received += outcome.bytes_received;
        if (observer && observer->after_attempt)
            observer->after_attempt(observer->user, upstream, attempt, (int)outcome.http_status, outcome.bytes_sent,
                                    outcome.bytes_received);
        if (outcome.status == PLM_OK || !outcome.retryable || attempt > upstream->max_retries)
            return outcome.status;
        double wait = outcome.retry_after > 0 ? outcome.retry_after : backoff_seconds(attempt, &rng);
        if (wait > upstream->timeout_s)
            return plm_fail_context(outcome.status, "asked to retry after %.0f s, more than timeout_s (%g)", wait,
                                    upstream->timeout_s);
        sleep_seconds(wait);
    }
}

int plm_upstream_chat(const struct plm_upstream *upstream, const struct plm_upstream_request *request,
                      plm_text_callback on_delta, void *user, const struct plm_upstream_observer *observer,
                      struct plm_upstream_result *result)
{
    *result = (struct plm_upstream_result){.prompt_tokens = -1, .completion_tokens = -1};
    const struct upstream_wire *wire = upstream_wire_for(upstream->kind);
    if (!wire)
        return plm_fail(PLM_ERR_ARG, "upstream '%s': unknown kind %d", upstream->name, (int)upstream->kind);
    pthread_once(&curl_once, init_curl);
    if (curl_init_code != CURLE_OK)
        return plm_fail(PLM_ERR_IO, "libcurl failed to initialise: %s", curl_easy_strerror(curl_init_code));
    const char *key;
    int rc = check_request(upstream, request);
    if (rc || (rc = read_key(upstream, &key)))
        return rc;
    struct outgoing out = {0};
    struct upstream_reply reply;
    reply_init(&reply, on_delta, user);
    rc = build_outgoing(upstream, wire, request, key, &out);
    if (rc == PLM_OK)
        rc = call_with_retries(upstream, wire, &out, observer, &reply, result);
    outgoing_free(&out);
    fill_result(&reply, result);
    if (rc) {
        char message[1024], masked[1024];
        snprintf(message, sizeof message, "upstream '%s' (%s): %s", upstream->name,
                 plm_upstream_kind_name(upstream->kind), plm_last_error());
        if (result->attempts > 1)
            snprintf(message + strlen(message), sizeof message - strlen(message), " (after %d attempts)",
                     result->attempts);
        mask_key(message, key, masked, sizeof masked);
        plm_fail(rc, "%s", masked);
    }
    return rc;
}
