/*
 * The HTTP layer, on libmicrohttpd: routes, authentication, body limits, and
 * the hand-over of completion requests to the scheduler.
 *
 * libmicrohttpd runs one thread per connection, so a connection may block
 * while its request waits for a slot and generates: a whole response is
 * waited for in the request handler, a stream in the response's read
 * callback. Both wait in short slices and between them ask the socket whether
 * the client has hung up (poll's POLLRDHUP), so a client that leaves frees its
 * slot at once, even while nothing is being written to it; a failed write
 * cancels the request too (the completion callback).
 */
#include "server/escalate.h"
#include "server/request.h"
#include "server/response.h"
#include "server/scheduler.h"

#include "core/error.h"

#include <microhttpd.h>
#include <netdb.h>
#include <poll.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* How often a waiting connection checks whether its client is still there. */
#define WAIT_SLICE_SECONDS 0.1
/* At shutdown, how long finished responses get to reach slow clients. */
#define DELIVERY_SECONDS 5.0
/* The Retry-After hint when the queue is full. */
#define RETRY_AFTER_SECONDS "1"
/* The chat page may load its own script and style and talk to this server,
 * and nothing else: no external resources, no inline script, no framing. */
#define PAGE_CONTENT_SECURITY_POLICY                                                                         \
    "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; img-src 'self' data:; "    \
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

/* The chat page (web/), embedded in the library by CMake (cmake/embed.cmake). */
extern const char plm_web_index_html[], plm_web_app_js[], plm_web_style_css[];
extern const unsigned long plm_web_index_html_size, plm_web_app_js_size, plm_web_style_css_size;

struct page_file {
    const char *bytes;
    const unsigned long *size;
    const char *content_type;
};

static const struct page_file index_html = {plm_web_index_html, &plm_web_index_html_size, "text/html; charset=utf-8"};
static const struct page_file app_js = {plm_web_app_js, &plm_web_app_js_size, "text/javascript; charset=utf-8"};
static const struct page_file style_css = {plm_web_style_css, &plm_web_style_css_size, "text/css; charset=utf-8"};

struct plm_server {
    plm_model *model;
    struct plm_server_params params;
    int n_ctx;
    struct server_metrics metrics;
    struct scheduler *scheduler;
    struct escalator escalator; /* with a policy */
    struct MHD_Daemon *daemon;
    int port;
    long long started;          /* Unix seconds, the model's "created" */
    atomic_uint_fast64_t n_ids; /* completions so far, for unique ids */
    atomic_int n_exchanges;     /* requests between their headers and their response's last byte */
};

enum route_kind { ROUTE_CHAT, ROUTE_COMPLETIONS, ROUTE_MODELS, ROUTE_MODEL, ROUTE_HEALTH, ROUTE_METRICS, ROUTE_PAGE };

struct route {
    const char *path; /* also the route's label in /metrics */
    const char *method;
    enum route_kind kind;
    bool needs_key;   /* with --api-key; /health and /metrics stay open for probes, the page asks for the key */
    const struct page_file *file; /* ROUTE_PAGE */
};

static const struct route routes[] = {
    {"/v1/chat/completions", "POST", ROUTE_CHAT, true, NULL},
    {"/v1/completions", "POST", ROUTE_COMPLETIONS, true, NULL},
    {"/v1/models", "GET", ROUTE_MODELS, true, NULL},
    {"/v1/models/{id}", "GET", ROUTE_MODEL, true, NULL}, /* matched by prefix: see find_route */
    {"/health", "GET", ROUTE_HEALTH, false, NULL},
    {"/metrics", "GET", ROUTE_METRICS, false, NULL},
    {"/", "GET", ROUTE_PAGE, false, &index_html},
    {"/app.js", "GET", ROUTE_PAGE, false, &app_js},
    {"/style.css", "GET", ROUTE_PAGE, false, &style_css},
};

/* One request on a connection, from its headers to its response. */
struct exchange {
    plm_server *server;
    const struct route *route; /* NULL: unknown path */
    char *body;
    size_t body_len, body_cap;
    bool body_too_large;
    bool answered;             /* a response was queued while the body was arriving */
};

/* ------------------------------------------------------------- responses */

static const char *route_label(const struct exchange *x) { return x->route ? x->route->path : "other"; }

static void add_route_header(struct MHD_Response *r, const struct job *job);

/* Queues body (malloc'd, taken over; NULL means out of memory) with the
 * status; a completion's (job not NULL) says where it ran. */
static enum MHD_Result send_body(struct MHD_Connection *c, struct exchange *x, int status, char *body,
                                 const char *content_type, const struct job *job)
{
    if (!body)
        return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(body), body, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, content_type);
    if (status == MHD_HTTP_SERVICE_UNAVAILABLE)
        MHD_add_response_header(r, MHD_HTTP_HEADER_RETRY_AFTER, RETRY_AFTER_SECONDS);
    if (status == MHD_HTTP_METHOD_NOT_ALLOWED)
        MHD_add_response_header(r, MHD_HTTP_HEADER_ALLOW, x->route->method);
    if (job && !job->whole_body) /* consent_required: nothing ran anywhere yet */
        add_route_header(r, job);
    enum MHD_Result ok = MHD_queue_response(c, (unsigned)status, r);
    MHD_destroy_response(r);
    metrics_count_request(&x->server->metrics, route_label(x), status);
    return ok;
}

static enum MHD_Result send_json(struct MHD_Connection *c, struct exchange *x, int status, char *json)
{
    return send_body(c, x, status, json, "application/json", NULL);
}

static enum MHD_Result send_error(struct MHD_Connection *c, struct exchange *x, const struct api_error *err)
{
    return send_json(c, x, err->status, response_error(err));
}

/* A file of the chat page, from the library's own bytes. The page may change
 * with the binary, so browsers check again each time (no-cache). */
static enum MHD_Result send_page_file(struct MHD_Connection *c, struct exchange *x, const struct page_file *file)
{
    struct MHD_Response *r =
        MHD_create_response_from_buffer(*file->size, (void *)file->bytes, MHD_RESPMEM_PERSISTENT);
    if (!r)
        return MHD_NO;
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, file->content_type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_SECURITY_POLICY, PAGE_CONTENT_SECURITY_POLICY);
    MHD_add_response_header(r, MHD_HTTP_HEADER_X_CONTENT_TYPE_OPTIONS, "nosniff");
    MHD_add_response_header(r, "Referrer-Policy", "no-referrer");
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    metrics_count_request(&x->server->metrics, route_label(x), MHD_HTTP_OK);
    return ok;
}

/* ------------------------------------------------------------- the client */

/* Whether the client has closed its end of the connection. */
static bool client_gone(struct MHD_Connection *c)
{
    const union MHD_ConnectionInfo *info = MHD_get_connection_info(c, MHD_CONNECTION_INFO_CONNECTION_FD);
    if (!info)
        return true;
    struct pollfd p = {.fd = info->connect_fd, .events = POLLRDHUP};
    return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* A streamed response's reader: hands over the events as the scheduler writes them. */
struct stream {
    plm_server *server;
    struct job *job;
    struct MHD_Connection *connection;
};

static ssize_t read_stream(void *cls, uint64_t pos, char *buf, size_t max)
{
    (void)pos;
    struct stream *st = cls;
    for (;;) {
        ssize_t n = job_read(st->job, buf, max, WAIT_SLICE_SECONDS);
        if (n > 0)
            return n;
        if (n < 0)
            return MHD_CONTENT_READER_END_OF_STREAM;
        if (client_gone(st->connection)) {
            scheduler_cancel(st->server->scheduler, st->job, JOB_CLIENT_GONE);
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
    }
}

static void free_stream(void *cls)
{
    struct stream *st = cls;
    /* Ended before the job did (a failed write): stop generating for nobody. */
    scheduler_cancel(st->server->scheduler, st->job, JOB_CLIENT_GONE);
    job_release(st->job);
    free(st);
}

/* X-Pocketlm-Route: where the answer came from ("device", an upstream's name;
 * "; fallback" when the upstream failed and the device answered). */
static void add_route_header(struct MHD_Response *r, const struct job *job)
{
    char value[128];
    snprintf(value, sizeof value, "%s%s", job->meta.route.where, job->meta.route.fallback ? "; fallback" : "");
    MHD_add_response_header(r, "X-Pocketlm-Route", value);
}

static enum MHD_Result send_stream(struct MHD_Connection *c, struct exchange *x, struct job *job)
{
    struct stream *st = malloc(sizeof *st);
    if (!st)
        return MHD_NO;
    job_retain(job);
    *st = (struct stream){x->server, job, c};
    struct MHD_Response *r = MHD_create_response_from_callback(MHD_SIZE_UNKNOWN, 4096, read_stream, st, free_stream);
    if (!r) {
        free_stream(st);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, "text/event-stream");
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-cache");
    add_route_header(r, job);
    enum MHD_Result ok = MHD_queue_response(c, MHD_HTTP_OK, r);
    MHD_destroy_response(r);
    metrics_count_request(&x->server->metrics, route_label(x), MHD_HTTP_OK);
    return ok;
}

/* Waits for the whole response, giving up (and freeing the slot) if the client leaves. */
static enum MHD_Result send_when_finished(struct MHD_Connection *c, struct exchange *x, struct job *job)
{
    while (!job_wait_finished(job, WAIT_SLICE_SECONDS))
        if (client_gone(c)) {
            scheduler_cancel(x->server->scheduler, job, JOB_CLIENT_GONE);
            metrics_count_request(&x->server->metrics, route_label(x), 499);
            return MHD_NO;
        }
    pthread_mutex_lock(&job->lock); /* finished: the scheduler writes no more */
    char *body = malloc(job->out_len + 1);
    if (body) {
        if (job->out_len > 0) /* out is NULL when nothing was written */
            memcpy(body, job->out, job->out_len);
        body[job->out_len] = '\0';
    }
    int status = job->status;
    pthread_mutex_unlock(&job->lock);
    return send_body(c, x, status, body, "application/json", job);
}

/* --------------------------------------------------------- the prompt */

/* Tokenizes into a fresh array; the count, or a negative plm_status. */
static int tokenize(const plm_model *model, const char *text, bool add_special, bool parse_special,
                    int32_t **tokens)
{
    size_t len = strlen(text);
    int max = (int)(len < 1000000000 ? len : 1000000000) + 8; /* bytes + BOS/EOS cover every tokenization */
    for (;;) {
        *tokens = malloc((size_t)max * sizeof **tokens);
        if (!*tokens)
            return PLM_ERR_NOMEM;
        int n = plm_tokenize(model, text, len, add_special, parse_special, *tokens, max);
        if (n <= max) {
            if (n < 0) {
                free(*tokens);
                *tokens = NULL;
            }
            return n;
        }
        free(*tokens);
        max = n;
    }
}

/* The conversation through the chat template, with BOS when the model wants
 * one and the template did not write it. */
static int chat_tokens(const plm_server *server, const struct api_request *req, int32_t **tokens)
{
    char *text;
    int rc = plm_chat_render(server->model, server->params.chat_template, req->messages, req->n_messages, true,
                             &text);
    if (rc)
        return rc;
    int n = tokenize(server->model, text, false, true, tokens);
    free(text);
    int32_t bos = plm_token_bos(server->model);
    if (n < 0 || !plm_add_bos(server->model) || bos < 0 || (n > 0 && (*tokens)[0] == bos))
        return n;
    int32_t *grown = realloc(*tokens, ((size_t)n + 1) * sizeof **tokens);
    if (!grown) {
        free(*tokens);
        return PLM_ERR_NOMEM;
    }
    memmove(grown + 1, grown, (size_t)n * sizeof *grown);
    grown[0] = bos;
    *tokens = grown;
    return n + 1;
}

/* Tokenizes the job's prompt; false with *err filled when it cannot run. */
static bool prepare_prompt(const plm_server *server, struct job *job, struct api_error *err)
{
    const struct api_request *req = &job->request;
    bool chat = req->kind == API_CHAT;
    int n = chat ? chat_tokens(server, req, &job->prompt) : tokenize(server->model, req->prompt, true, false, &job->prompt);
    if (n < 0)
        return api_fail(err, n == PLM_ERR_NOMEM ? 500 : 400, n == PLM_ERR_NOMEM ? "server_error" : "invalid_request_error",
                        "", chat ? "messages" : "prompt", "%s", plm_last_error());
    job->n_prompt = n;
    if (n == 0)
        return api_fail(err, 400, "invalid_request_error", "invalid_value", "prompt",
                        "the prompt is empty and the model has no BOS token to start from");
    if (n >= server->n_ctx && !server->params.policy) /* with a policy, the router decides */
        return api_fail(err, 400, "invalid_request_error", "context_length_exceeded", chat ? "messages" : "prompt",
                        "the prompt is %d tokens but the context holds %d (with room for at least one more); "
                        "shorten the prompt or start the server with a larger -c",
                        n, server->n_ctx);
    return true;
}

static void fill_meta(plm_server *server, struct job *job)
{
    struct response_meta *meta = &job->meta;
    uint64_t n = atomic_fetch_add(&server->n_ids, 1);
    meta->kind = job->request.kind;
    snprintf(meta->id, sizeof meta->id, "%s-%llx%08llx", meta->kind == API_CHAT ? "chatcmpl" : "cmpl",
             (unsigned long long)server->started, (unsigned long long)n);
    meta->created = (long long)time(NULL);
    meta->model_name = server->params.model_name;
    meta->logprobs = job->request.logprobs;
    meta->include_usage = job->request.stream && job->request.include_usage;
    meta->route.where = RESPONSE_ROUTE_DEVICE;
}

static bool submit(plm_server *server, struct job *job, struct api_error *err)
{
    enum submit_result submitted = scheduler_submit(server->scheduler, job);
    if (submitted == SUBMIT_QUEUE_FULL)
        return api_fail(err, 503, "server_error", "queue_full", "",
                        "every slot is busy and the queue is full; retry later");
    if (submitted == SUBMIT_CLOSED)
        return api_fail(err, 503, "server_error", "shutting_down", "", "the server is shutting down");
    return true;
}

/* With a policy, where the answer comes from is settled only when its first
 * bytes are written (after the device's first tokens, or a consent_required
 * answer), and the response's status and headers say it: wait for them. */
static bool wait_first_bytes(struct MHD_Connection *c, struct exchange *x, struct job *job)
{
    while (!job_wait_output(job, WAIT_SLICE_SECONDS))
        if (client_gone(c)) {
            scheduler_cancel(x->server->scheduler, job, JOB_CLIENT_GONE);
            metrics_count_request(&x->server->metrics, route_label(x), 499);
            return false;
        }
    return true;
}

static bool answered_whole(struct job *job)
{
    pthread_mutex_lock(&job->lock);
    bool whole = job->whole_body || !job->request.stream;
    pthread_mutex_unlock(&job->lock);
    return whole;
}

/* Runs the job on the device or, with a policy, where the router sends it. */
static enum MHD_Result run_job(struct MHD_Connection *c, struct exchange *x, struct job *job)
{
    plm_server *server = x->server;
    struct api_error err;
    enum escalate_result route = ESCALATE_DEVICE;
    if (server->params.policy && (route = escalator_route(&server->escalator, job, &err)) == ESCALATE_FAILED)
        return send_error(c, x, &err);
    if (route == ESCALATE_DEVICE && !submit(server, job, &err))
        return send_error(c, x, &err);
    if (server->params.policy && !wait_first_bytes(c, x, job))
        return MHD_NO;
    return answered_whole(job) ? send_when_finished(c, x, job) : send_stream(c, x, job);
}

static enum MHD_Result serve_completion(struct MHD_Connection *c, struct exchange *x, enum api_kind kind)
{
    struct api_request req;
    struct api_error err;
    if (x->body_too_large) {
        api_fail(&err, 413, "invalid_request_error", "request_too_large", "",
                 "the request body is over the server's limit of %zu bytes", x->server->params.max_body);
        return send_error(c, x, &err);
    }
    if (!request_parse(x->body ? x->body : "", x->body_len, kind, &req, &err))
        return send_error(c, x, &err);
    struct job *job = job_new(&req);
    if (!job) {
        request_free(&req);
        return MHD_NO;
    }
    fill_meta(x->server, job);
    enum MHD_Result ok = prepare_prompt(x->server, job, &err) ? run_job(c, x, job) : send_error(c, x, &err);
    job_release(job);
    return ok;
}

/* ------------------------------------------------------------------ routes */

#define MODEL_PREFIX "/v1/models/"

static const struct route *find_route(const char *url)
{
    for (size_t i = 0; i < sizeof routes / sizeof routes[0]; i++) {
        bool match = routes[i].kind == ROUTE_MODEL
                         ? strncmp(url, MODEL_PREFIX, strlen(MODEL_PREFIX)) == 0 && url[strlen(MODEL_PREFIX)]
                         : strcmp(url, routes[i].path) == 0;
        if (match)
            return &routes[i];
    }
    return NULL;
}

/* GET /v1/models/{id}: the model when id names it, else OpenAI's 404. */
static enum MHD_Result serve_model(struct MHD_Connection *c, struct exchange *x, const char *url)
{
    const char *id = url + strlen(MODEL_PREFIX);
    if (strcmp(id, x->server->params.model_name) == 0)
        return send_json(c, x, 200, response_model(x->server->params.model_name, x->server->started));
    struct api_error err;
    api_fail(&err, 404, "invalid_request_error", "model_not_found", "model",
             "The model '%s' does not exist: this server serves '%s'", id, x->server->params.model_name);
    return send_error(c, x, &err);
}

/* Compares without an early exit, so response times do not reveal how much of a guessed key is right. */
static bool same_key(const char *given, const char *key)
{
    size_t n = strlen(key);
    if (strlen(given) != n)
        return false;
    unsigned char diff = 0;
    for (size_t i = 0; i < n; i++)
        diff |= (unsigned char)(given[i] ^ key[i]);
    return diff == 0;
}

static bool authorized(struct MHD_Connection *c, const plm_server *server)
{
    const char *key = server->params.api_key;
    if (!key)
        return true;
    const char *header = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_AUTHORIZATION);
    return header && strncmp(header, "Bearer ", 7) == 0 && same_key(header + 7, key);
}

/* Checks that need only the headers; true when a response (an error) was queued. */
static bool refuse_early(struct MHD_Connection *c, struct exchange *x, const char *url, const char *method,
                         enum MHD_Result *result)
{
    struct api_error err;
    if (!x->route)
        api_fail(&err, 404, "invalid_request_error", "unknown_url", "", "unknown route: %s %s", method, url);
    else if (strcmp(method, x->route->method) != 0)
        api_fail(&err, 405, "invalid_request_error", "method_not_allowed", "", "%s needs %s, not %s",
                 x->route->path, x->route->method, method);
    else if (x->route->needs_key && !authorized(c, x->server))
        api_fail(&err, 401, "invalid_request_error", "invalid_api_key", "",
                 "missing or wrong API key: send the header 'Authorization: Bearer <key>'");
    else {
        const char *length = MHD_lookup_connection_value(c, MHD_HEADER_KIND, MHD_HTTP_HEADER_CONTENT_LENGTH);
        if (!length || strtoull(length, NULL, 10) <= x->server->params.max_body)
            return false;
        api_fail(&err, 413, "invalid_request_error", "request_too_large", "",
                 "the request body is over the server's limit of %zu bytes", x->server->params.max_body);
    }
    *result = send_error(c, x, &err);
    return true;
}

static char *health_body(plm_server *server)
{
    struct server_metrics *m = &server->metrics;
    pthread_mutex_lock(&m->lock);
    int busy = m->busy_slots, queued = m->queue_depth;
    pthread_mutex_unlock(&m->lock);
    char *body = malloc(128);
    if (body)
        snprintf(body, 128, "{\"status\":\"ok\",\"slots_idle\":%d,\"slots_processing\":%d,\"queue_depth\":%d}",
                 server->params.n_parallel - busy, busy, queued);
    return body;
}

static enum MHD_Result serve(struct MHD_Connection *c, struct exchange *x, const char *url)
{
    plm_server *server = x->server;
    switch (x->route->kind) {
    case ROUTE_CHAT:
        return serve_completion(c, x, API_CHAT);
    case ROUTE_COMPLETIONS:
        return serve_completion(c, x, API_COMPLETION);
    case ROUTE_MODELS:
        return send_json(c, x, 200, response_models(server->params.model_name, server->started));
    case ROUTE_MODEL:
        return serve_model(c, x, url);
    case ROUTE_HEALTH:
        return send_json(c, x, 200, health_body(server));
    case ROUTE_METRICS:
        return send_body(c, x, 200, metrics_render(&server->metrics), "text/plain; version=0.0.4", NULL);
    case ROUTE_PAGE:
        return send_page_file(c, x, x->route->file);
    }
    return MHD_NO;
}

/* Called for the headers, then for each piece of the body, then once more with none. */
static enum MHD_Result on_request(void *cls, struct MHD_Connection *c, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **context)
{
    (void)version;
    struct exchange *x = *context;
    if (!x) {
        if (!(x = calloc(1, sizeof *x)))
            return MHD_NO;
        x->server = cls;
        x->route = find_route(url);
        *context = x;
        atomic_fetch_add(&x->server->n_exchanges, 1);
        enum MHD_Result result;
        if (refuse_early(c, x, url, method, &result)) {
            x->answered = true;
            return result;
        }
        return MHD_YES;
    }
    if (*upload_data_size > 0) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (x->answered || x->body_too_large)
            return MHD_YES;
        if (x->body_len + n > x->server->params.max_body) {
            x->body_too_large = true; /* keep reading, to answer 413 at the end */
            return MHD_YES;
        }
        if (x->body_len + n > x->body_cap) {
            size_t cap = 2 * (x->body_len + n);
            char *grown = realloc(x->body, cap);
            if (!grown)
                return MHD_NO;
            x->body = grown;
            x->body_cap = cap;
        }
        memcpy(x->body + x->body_len, upload_data, n);
        x->body_len += n;
        return MHD_YES;
    }
    return x->answered ? MHD_YES : serve(c, x, url);
}

static void on_completed(void *cls, struct MHD_Connection *c, void **context, enum MHD_RequestTerminationCode why)
{
    (void)cls;
    (void)c;
    (void)why;
    struct exchange *x = *context;
    if (!x)
        return;
    atomic_fetch_sub(&x->server->n_exchanges, 1);
    free(x->body);
    free(x);
    *context = NULL;
}

/* ------------------------------------------------------------ public API */

/* The socket address of host:port (a name or a numeric IPv4/IPv6 address). */
static int resolve(const char *host, int port, struct sockaddr_storage *addr, socklen_t *len)
{
    char service[16];
    snprintf(service, sizeof service, "%d", port);
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM, .ai_flags = AI_PASSIVE};
    struct addrinfo *found;
    int rc = getaddrinfo(host, service, &hints, &found);
    if (rc != 0)
        return plm_fail(PLM_ERR_ARG, "cannot resolve host '%s': %s", host, gai_strerror(rc));
    memcpy(addr, found->ai_addr, found->ai_addrlen);
    *len = found->ai_addrlen;
    freeaddrinfo(found);
    return PLM_OK;
}

static int check_params(const struct plm_server_params *p)
{
    if (p->n_parallel < 1)
        return plm_fail(PLM_ERR_ARG, "server: at least one slot is needed (got %d)", p->n_parallel);
    if (p->max_queue < 0)
        return plm_fail(PLM_ERR_ARG, "server: the queue length must be >= 0 (got %d)", p->max_queue);
    if (p->port < 0 || p->port > 65535)
        return plm_fail(PLM_ERR_ARG, "server: port %d is not in 0..65535", p->port);
    if (!p->model_name)
        return plm_fail(PLM_ERR_ARG, "server: no model name");
    return PLM_OK;
}

static int start_daemon(plm_server *server)
{
    const char *host = server->params.host ? server->params.host : "127.0.0.1";
    struct sockaddr_storage addr;
    socklen_t addr_len;
    int rc = resolve(host, server->params.port, &addr, &addr_len);
    if (rc)
        return rc;
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_THREAD_PER_CONNECTION | MHD_USE_POLL | MHD_USE_ITC;
    if (addr.ss_family == AF_INET6)
        flags |= MHD_USE_IPv6;
    server->daemon = MHD_start_daemon(flags, (uint16_t)server->params.port, NULL, NULL, on_request, server,
                                      MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                      MHD_OPTION_NOTIFY_COMPLETED, on_completed, server, MHD_OPTION_END);
    if (!server->daemon)
        return plm_fail(PLM_ERR_IO, "server: cannot listen on %s port %d (in use, or not an address of this machine)",
                        host, server->params.port);
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(server->daemon, MHD_DAEMON_INFO_BIND_PORT);
    server->port = info ? info->port : server->params.port;
    return PLM_OK;
}

int plm_server_start(plm_model *model, const struct plm_server_params *params, plm_server **out)
{
    *out = NULL;
    int rc = check_params(params);
    if (rc)
        return rc;
    plm_server *server = calloc(1, sizeof *server);
    if (!server)
        return plm_fail(PLM_ERR_NOMEM, "server: out of memory");
    server->model = model;
    server->params = *params;
    server->started = (long long)time(NULL);
    metrics_init(&server->metrics, params->n_parallel);
    struct scheduler_params sp = {model, params->session, params->n_parallel, params->max_queue, &server->metrics};
    rc = scheduler_start(&sp, &server->scheduler);
    if (rc == PLM_OK) {
        server->n_ctx = plm_session_n_ctx(server->scheduler->slots[0].session);
        if (params->policy)
            rc = escalator_init(&server->escalator, params->policy, params->audit, server->scheduler,
                                server->n_ctx, params->model_name, &server->metrics);
    }
    if (rc == PLM_OK)
        rc = start_daemon(server);
    if (rc) {
        escalator_destroy(&server->escalator);
        scheduler_free(server->scheduler);
        metrics_destroy(&server->metrics);
        free(server);
        return rc == PLM_ERR_NOMEM ? plm_fail(rc, "server: out of memory for %d slots", params->n_parallel) : rc;
    }
    *out = server;
    return PLM_OK;
}

int plm_server_port(const plm_server *server) { return server->port; }

int plm_server_stop(plm_server *server, double grace_seconds)
{
    if (!server)
        return 0;
    MHD_socket listener = MHD_quiesce_daemon(server->daemon);
    if (listener != MHD_INVALID_SOCKET)
        close(listener);
    escalator_drain(&server->escalator, grace_seconds); /* its fallbacks go to the scheduler */
    int n_cancelled = scheduler_drain(server->scheduler, grace_seconds);
    /* Every job has ended; let the connections send what remains (the end of
     * a stream, a whole body) before the daemon closes them. */
    double deadline = monotonic_seconds() + DELIVERY_SECONDS;
    while (atomic_load(&server->n_exchanges) > 0 && monotonic_seconds() < deadline)
        nanosleep(&(struct timespec){0, 10 * 1000 * 1000}, NULL);
    MHD_stop_daemon(server->daemon); /* waits for the connections' threads */
    scheduler_free(server->scheduler);
    escalator_destroy(&server->escalator);
    metrics_destroy(&server->metrics);
    free(server);
    return n_cancelled;
}
