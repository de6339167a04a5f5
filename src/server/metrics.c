#include "server/metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Seconds: generation on a small device ranges from milliseconds (a cached
 * prompt) to minutes (a long answer). */
static const double bucket_bounds[METRICS_N_BUCKETS] = {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                                        1, 2.5, 5, 10, 30, 120};

void metrics_init(struct server_metrics *m, int n_slots)
{
    memset(m, 0, sizeof *m);
    pthread_mutex_init(&m->lock, NULL);
    m->n_slots = n_slots;
}

void metrics_destroy(struct server_metrics *m) { pthread_mutex_destroy(&m->lock); }

void metrics_count_request(struct server_metrics *m, const char *route, int status)
{
    pthread_mutex_lock(&m->lock);
    int i = 0;
    while (i < m->n_series && !(m->requests[i].status == status && strcmp(m->requests[i].route, route) == 0))
        i++;
    if (i == m->n_series && m->n_series < METRICS_MAX_SERIES)
        m->requests[m->n_series++] = (struct request_series){route, status, 0};
    if (i < m->n_series) /* with every series taken, an unseen pair goes uncounted */
        m->requests[i].count++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_count_escalation(struct server_metrics *m, const char *upstream, const char *outcome)
{
    pthread_mutex_lock(&m->lock);
    struct escalation_series *e = m->escalations;
    int i = 0;
    while (i < m->n_escalation_series && !(strcmp(e[i].upstream, upstream) == 0 && strcmp(e[i].outcome, outcome) == 0))
        i++;
    if (i == m->n_escalation_series && i < METRICS_MAX_SERIES)
        e[m->n_escalation_series++] = (struct escalation_series){upstream, outcome, 0};
    if (i < m->n_escalation_series)
        e[i].count++;
    pthread_mutex_unlock(&m->lock);
}

void metrics_add_tokens(struct server_metrics *m, int prompt_tokens, int generated_tokens)
{
    pthread_mutex_lock(&m->lock);
    m->prompt_tokens += (uint64_t)prompt_tokens;
    m->generated_tokens += (uint64_t)generated_tokens;
    pthread_mutex_unlock(&m->lock);
}

void metrics_set_load(struct server_metrics *m, int queue_depth, int busy_slots)
{
    pthread_mutex_lock(&m->lock);
    m->queue_depth = queue_depth;
    m->busy_slots = busy_slots;
    pthread_mutex_unlock(&m->lock);
}

static void observe(struct server_metrics *m, struct histogram *h, double seconds)
{
    pthread_mutex_lock(&m->lock);
    for (int i = 0; i < METRICS_N_BUCKETS; i++)
        if (seconds <= bucket_bounds[i])
            h->bucket[i]++;
    h->count++;
    h->sum += seconds;
    pthread_mutex_unlock(&m->lock);
}

void metrics_observe_latency(struct server_metrics *m, double seconds) { observe(m, &m->latency, seconds); }
void metrics_observe_ttft(struct server_metrics *m, double seconds) { observe(m, &m->ttft, seconds); }

static void print_histogram(FILE *out, const char *name, const char *help, const struct histogram *h)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name);
    for (int i = 0; i < METRICS_N_BUCKETS; i++)
        fprintf(out, "%s_bucket{le=\"%g\"} %llu\n", name, bucket_bounds[i], (unsigned long long)h->bucket[i]);
    fprintf(out, "%s_bucket{le=\"+Inf\"} %llu\n", name, (unsigned long long)h->count);
    fprintf(out, "%s_sum %.6f\n%s_count %llu\n", name, h->sum, name, (unsigned long long)h->count);
}

static void print_value(FILE *out, const char *name, const char *type, const char *help, unsigned long long v)
{
    fprintf(out, "# HELP %s %s\n# TYPE %s %s\n%s %llu\n", name, help, name, type, name, v);
}

char *metrics_render(struct server_metrics *m)
{
    char *text = NULL;
    size_t size = 0;
    FILE *out = open_memstream(&text, &size);
    if (!out)
        return NULL;
    pthread_mutex_lock(&m->lock);
    fprintf(out, "# HELP pocketlm_requests_total HTTP requests answered, by route and status.\n"
                 "# TYPE pocketlm_requests_total counter\n");
    for (int i = 0; i < m->n_series; i++)
        fprintf(out, "pocketlm_requests_total{route=\"%s\",status=\"%d\"} %llu\n", m->requests[i].route,
                m->requests[i].status, (unsigned long long)m->requests[i].count);
    fprintf(out, "# HELP pocketlm_escalations_total Requests the policy sent upstream, by upstream and outcome.\n"
                 "# TYPE pocketlm_escalations_total counter\n");
    for (int i = 0; i < m->n_escalation_series; i++)
        fprintf(out, "pocketlm_escalations_total{upstream=\"%s\",outcome=\"%s\"} %llu\n", m->escalations[i].upstream,
                m->escalations[i].outcome, (unsigned long long)m->escalations[i].count);
    print_value(out, "pocketlm_prompt_tokens_total", "counter", "Prompt tokens processed.", m->prompt_tokens);
    print_value(out, "pocketlm_generated_tokens_total", "counter", "Tokens generated.", m->generated_tokens);
    print_value(out, "pocketlm_queue_depth", "gauge", "Requests waiting for a slot.", (unsigned)m->queue_depth);
    print_value(out, "pocketlm_slots_busy", "gauge", "Slots generating.", (unsigned)m->busy_slots);
    print_value(out, "pocketlm_slots_total", "gauge", "Slots (--parallel).", (unsigned)m->n_slots);
    print_histogram(out, "pocketlm_request_duration_seconds", "Time from a request's arrival to its end.",
                    &m->latency);
    print_histogram(out, "pocketlm_time_to_first_token_seconds", "Time from a request's arrival to its first token.",
                    &m->ttft);
    pthread_mutex_unlock(&m->lock);
    if (fclose(out) != 0) {
        free(text);
        return NULL;
    }
    return text;
}
