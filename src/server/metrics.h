/*
 * The server's counters, gauges and histograms, rendered for GET /metrics in
 * Prometheus' text exposition format (version 0.0.4). Every function may be
 * called from any thread.
 */
#ifndef PLM_SERVER_METRICS_H
#define PLM_SERVER_METRICS_H

#include <pthread.h>
#include <stdint.h>

#define METRICS_MAX_SERIES 64 /* distinct (route, status) pairs counted */
#define METRICS_N_BUCKETS 13

/* Cumulative at rendering: bucket[i] counts observations <= bounds[i]. */
struct histogram {
    uint64_t bucket[METRICS_N_BUCKETS];
    uint64_t count;
    double sum;
};

struct request_series {
    const char *route; /* a static string: "/v1/models", ..., or "other" */
    int status;
    uint64_t count;
};

/* Requests a policy sent (or meant to send) upstream, by how they ended. */
struct escalation_series {
    const char *upstream; /* the policy's name for it (lives as long as the server) */
    const char *outcome;  /* a static string: "ok", "fallback", "error", "cancelled",
                             "consent_required", "refused" */
    uint64_t count;
};

struct server_metrics {
    pthread_mutex_t lock;
    struct request_series requests[METRICS_MAX_SERIES];
    int n_series;
    struct escalation_series escalations[METRICS_MAX_SERIES];
    int n_escalation_series;
    uint64_t prompt_tokens;
    uint64_t generated_tokens;
    int queue_depth;
    int busy_slots;
    int n_slots;
    struct histogram latency; /* from a request's arrival to its last byte produced */
    struct histogram ttft;    /* from arrival to the first generated token */
};

void metrics_init(struct server_metrics *m, int n_slots);
void metrics_destroy(struct server_metrics *m);

void metrics_count_request(struct server_metrics *m, const char *route, int status);
void metrics_count_escalation(struct server_metrics *m, const char *upstream, const char *outcome);
void metrics_add_tokens(struct server_metrics *m, int prompt_tokens, int generated_tokens);
void metrics_set_load(struct server_metrics *m, int queue_depth, int busy_slots);
void metrics_observe_latency(struct server_metrics *m, double seconds);
void metrics_observe_ttft(struct server_metrics *m, double seconds);

/* The exposition text (malloc'd), or NULL when out of memory. */
char *metrics_render(struct server_metrics *m);

#endif
