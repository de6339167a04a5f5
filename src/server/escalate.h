/*
 * Escalation in the server (serve --policy, docs/escalation.md): where each
 * completion runs, asked of the router before the device starts and, for an
 * "uncertain" rule, again after the device's first K tokens (the slot holds
 * their text back meanwhile).
 *
 * A request that leaves is redacted and shown to the user first when its
 * upstream's consent is "ask": the answer is HTTP 403 consent_required with
 * the exact messages that would be sent and a token; the client agrees by
 * repeating the request with {"pocketlm": {"consent": TOKEN}}. The token is an
 * HMAC, under a key drawn when the server starts, of the upstream's name and
 * those exact messages: it agrees to sending that text to that upstream and
 * nothing else, and needs no state on the server.
 *
 * The upstream call runs in a thread of its own (it waits on the network, so
 * neither the scheduler nor the connection may), writing the answer into the
 * job like a slot would. An upstream that fails before any of its text went
 * out hands the job to the scheduler: the device answers, flagged fallback.
 */
#ifndef PLM_SERVER_ESCALATE_H
#define PLM_SERVER_ESCALATE_H

#include "server/job.h"
#include "server/scheduler.h"

struct escalator {
    const plm_policy *policy;
    plm_audit *audit;
    struct scheduler *scheduler;
    int n_ctx;             /* the device's context */
    const char *model_name; /* the device model's id in responses */
    struct server_metrics *metrics;
    unsigned char consent_key[32];

    pthread_mutex_t lock;
    pthread_cond_t idle;   /* no upstream call running */
    /* Guarded by lock: the jobs whose upstream call is running. */
    struct job **running;
    int n_running, running_cap;
};

int escalator_init(struct escalator *e, const plm_policy *policy, plm_audit *audit, struct scheduler *scheduler,
                   int n_ctx, const char *model_name, struct server_metrics *metrics);
/* Waits up to grace seconds for the upstream calls under way, then cancels
 * the rest and waits for their threads. */
void escalator_drain(struct escalator *e, double grace);
void escalator_destroy(struct escalator *e);

enum escalate_result {
    ESCALATE_DEVICE = 0, /* the device answers (job->meta.route says why) */
    ESCALATE_TAKEN,      /* the job is answered elsewhere: an upstream call, or consent_required */
    ESCALATE_FAILED,     /* *err says why (the prompt fits nowhere, out of memory) */
};

/* Before the device starts. For an "uncertain" rule, sets job->hold_tokens to
 * K and returns ESCALATE_DEVICE: the slot asks again with the tokens. */
enum escalate_result escalator_route(struct escalator *e, struct job *job, struct api_error *err);

/* After the device's first tokens (n of them; done when its answer ended
 * there). ESCALATE_TAKEN: the slot drops the job without writing to it. */
enum escalate_result escalator_route_tokens(struct escalator *e, struct job *job,
                                            const struct plm_token_uncertainty *tokens, int n, bool done,
                                            struct api_error *err);

#endif
