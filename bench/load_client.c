/*
 * A load generator for `pocketlm serve` (run by bench/load.sh): CLIENTS
 * streaming chat clients, each sending one request after another for SECONDS,
 * all on one thread through libcurl's multi interface. Each server-sent event
 * is timestamped as it arrives, which gives:
 *   - time to first token: from sending the request to its first content chunk;
 *   - inter-token latency: the gaps between content chunks of one stream (a
 *     chunk is one token, except where the server held text back for a
 *     possible stop string or half a UTF-8 character and sends two at once);
 *   - each stream's token rate: its tokens after the first (usage's
 *     completion_tokens - 1) over the time from its first to its last chunk;
 *   - errors: any status but 200, a transport failure, an error event, or a
 *     stream that ends without its usage chunk and [DONE].
 * At SECONDS the requests under way are cut (the server sees their clients
 * leave); they count neither as requests nor as errors, only as "cut".
 * SECONDS 0 sends one request per client and waits for every answer.
 *
 * Usage: load_client URL CLIENTS SECONDS MAX_TOKENS
 * Prints one "name value" line per figure (seconds are printed as ms).
 */
#include <cjson/cJSON.h>
#include <curl/curl.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static double now_seconds(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* A growable array of samples. */
struct samples {
    double *values;
    size_t n, cap;
};

static void samples_add(struct samples *s, double v)
{
    if (s->n == s->cap) {
        s->cap = s->cap ? 2 * s->cap : 1024;
        s->values = realloc(s->values, s->cap * sizeof *s->values);
        if (!s->values) {
            fprintf(stderr, "load_client: out of memory\n");
            exit(1);
        }
    }
    s->values[s->n++] = v;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The nearest-rank percentile of sorted samples (0 when there are none). */
static double percentile(const struct samples *s, double p)
{
    if (s->n == 0)
        return 0;
    size_t rank = (size_t)(p / 100.0 * (double)s->n + 0.999999);
    return s->values[rank == 0 ? 0 : rank - 1];
}

struct totals {
    long requests, errors, tokens, cut;
    struct samples ttft, inter_token, stream_rate;
};

/* One client: its connection, and the stream it is reading. */
struct client {
    CURL *curl;
    char events[65536];    /* the bytes of an event not yet complete */
    size_t events_len;
    double sent, first_chunk, last_chunk;
    int completion_tokens; /* from the usage chunk; -1 until it comes */
    bool done, failed;
    bool active;           /* the handle is in the multi */
    struct totals *totals;
};

/* Reads one event's JSON: a content chunk, the usage chunk, or an error. */
static void on_event(struct client *c, const char *data)
{
    if (strcmp(data, "[DONE]") == 0) {
        c->done = true;
        return;
    }
    cJSON *event = cJSON_Parse(data);
    if (!event || cJSON_GetObjectItemCaseSensitive(event, "error")) {
        c->failed = true;
        cJSON_Delete(event);
        return;
    }
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(event, "usage");
    const cJSON *completion = cJSON_GetObjectItemCaseSensitive(usage, "completion_tokens");
    if (cJSON_IsNumber(completion))
        c->completion_tokens = completion->valueint;
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(event, "choices"), 0);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(choice, "delta"), "content");
    if (cJSON_IsString(content) && content->valuestring[0]) {
        double t = now_seconds();
        if (c->first_chunk == 0) {
            c->first_chunk = t;
            samples_add(&c->totals->ttft, t - c->sent);
        } else {
            samples_add(&c->totals->inter_token, t - c->last_chunk);
        }
        c->last_chunk = t;
    }
    cJSON_Delete(event);
}

/* libcurl hands over the body as it arrives: split it into "data: …\n\n" events. */
static size_t on_body(char *bytes, size_t size, size_t count, void *user)
{
    struct client *c = user;
    size_t n = size * count;
    if (c->events_len + n >= sizeof c->events) {
        c->failed = true; /* an event this long is not one of the server's */
        return 0;
    }
    memcpy(c->events + c->events_len, bytes, n);
    c->events_len += n;
    c->events[c->events_len] = '\0';
    char *start = c->events, *end;
    while ((end = strstr(start, "\n\n"))) {
        *end = '\0';
        if (strncmp(start, "data: ", 6) == 0)
            on_event(c, start + 6);
        start = end + 2;
    }
    c->events_len -= (size_t)(start - c->events);
    memmove(c->events, start, c->events_len);
    return n;
}

static void start_request(CURLM *multi, struct client *c)
{
    c->events_len = 0;
    c->sent = now_seconds();
    c->first_chunk = c->last_chunk = 0;
    c->completion_tokens = -1;
    c->done = c->failed = false;
    c->active = true;
    curl_multi_add_handle(multi, c->curl);
}

static void finish_request(struct client *c, CURLcode result)
{
    long status = 0;
    curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
    struct totals *t = c->totals;
    t->requests++;
    if (result != CURLE_OK || status != 200 || c->failed || !c->done || c->completion_tokens < 0) {
        t->errors++;
        fprintf(stderr, "load_client: request failed: %s, HTTP %ld%s%s\n", curl_easy_strerror(result), status,
                c->failed ? ", error event" : "", c->done ? "" : ", no [DONE]");
        return;
    }
    t->tokens += c->completion_tokens;
    double span = c->last_chunk - c->first_chunk;
    if (c->completion_tokens > 1 && span > 0)
        samples_add(&t->stream_rate, (c->completion_tokens - 1) / span);
}

/* The given percentiles, scaled. */
static void print_percentiles(const char *name, struct samples *s, double scale, const int which[3])
{
    if (s->n > 0) /* no samples: no array either */
        qsort(s->values, s->n, sizeof *s->values, compare_doubles);
    for (int i = 0; i < 3; i++)
        printf("%s_p%d %.2f\n", name, which[i], scale * percentile(s, which[i]));
}

int main(int argc, char **argv)
{
    if (argc != 5) {
        fprintf(stderr, "usage: load_client URL CLIENTS SECONDS MAX_TOKENS\n");
        return 2;
    }
    const char *url = argv[1];
    int n_clients = atoi(argv[2]);
    double seconds = atof(argv[3]);
    int max_tokens = atoi(argv[4]);
    if (n_clients < 1 || seconds < 0 || max_tokens < 1) {
        fprintf(stderr, "load_client: CLIENTS and MAX_TOKENS must be positive, SECONDS >= 0\n");
        return 2;
    }
    char body[512];
    /* A fresh seed per request would change nothing here: the text does not matter, its length does. */
    snprintf(body, sizeof body,
             "{\"messages\":[{\"role\":\"user\",\"content\":\"Tell me a story about a robot.\"}],"
             "\"max_tokens\":%d,\"stream\":true,\"stream_options\":{\"include_usage\":true}}",
             max_tokens);

    curl_global_init(CURL_GLOBAL_DEFAULT);
    CURLM *multi = curl_multi_init();
    curl_multi_setopt(multi, CURLMOPT_MAX_TOTAL_CONNECTIONS, (long)n_clients);
    struct curl_slist *headers = curl_slist_append(NULL, "Content-Type: application/json");
    struct totals totals = {0};
    struct client *clients = calloc((size_t)n_clients, sizeof *clients);
    if (!multi || !headers || !clients) {
        fprintf(stderr, "load_client: cannot set up libcurl\n");
        return 1;
    }
    bool once = seconds == 0;
    double start = now_seconds(), deadline = start + seconds;
    for (int i = 0; i < n_clients; i++) {
        struct client *c = &clients[i];
        c->totals = &totals;
        c->curl = curl_easy_init();
        curl_easy_setopt(c->curl, CURLOPT_URL, url);
        curl_easy_setopt(c->curl, CURLOPT_POSTFIELDS, body);
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, headers);
        curl_easy_setopt(c->curl, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, c);
        curl_easy_setopt(c->curl, CURLOPT_PRIVATE, c);
        curl_easy_setopt(c->curl, CURLOPT_TIMEOUT, 600L);
        start_request(multi, c);
    }
    int running = n_clients;
    while (running > 0 && (once || now_seconds() < deadline)) {
        curl_multi_perform(multi, &running);
        CURLMsg *msg;
        int left;
        while ((msg = curl_multi_info_read(multi, &left))) {
            if (msg->msg != CURLMSG_DONE)
                continue;
            struct client *c;
            CURL *easy = msg->easy_handle;
            CURLcode result = msg->data.result;
            curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&c);
            curl_multi_remove_handle(multi, easy);
            c->active = false;
            finish_request(c, result);
            if (!once) {
                start_request(multi, c); /* the same handle: its connection is kept alive */
                running++;
            }
        }
        if (running > 0)
            curl_multi_poll(multi, NULL, 0, 100, NULL);
    }
    double elapsed = now_seconds() - start;
    for (int i = 0; i < n_clients; i++)
        if (clients[i].active) {
            curl_multi_remove_handle(multi, clients[i].curl);
            totals.cut++;
        }

    printf("clients %d\nelapsed_s %.1f\nrequests %ld\nerrors %ld\ncut %ld\n", n_clients, elapsed, totals.requests,
           totals.errors, totals.cut);
    printf("requests_per_s %.2f\ntokens %ld\ntokens_per_s %.1f\n", totals.requests / elapsed, totals.tokens,
           totals.tokens / elapsed);
    /* For latencies the slow tail is the high percentiles, for rates the low ones. */
    static const int latency[3] = {50, 90, 99}, rate[3] = {1, 10, 50};
    print_percentiles("ttft_ms", &totals.ttft, 1000, latency);
    print_percentiles("inter_token_ms", &totals.inter_token, 1000, latency);
    print_percentiles("stream_tokens_per_s", &totals.stream_rate, 1, rate);

    for (int i = 0; i < n_clients; i++)
        curl_easy_cleanup(clients[i].curl);
    free(clients);
    curl_slist_free_all(headers);
    curl_multi_cleanup(multi);
    curl_global_cleanup();
    free(totals.ttft.values);
    free(totals.inter_token.values);
    free(totals.stream_rate.values);
    return totals.errors == 0 ? 0 : 1;
}
