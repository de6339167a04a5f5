/* Escalation in the server: see escalate.h. */
#include "server/escalate.h"

#include "core/error.h"
#include "privacy/audit.h"
#include "routing/policy.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

int escalator_init(struct escalator *e, const plm_policy *policy, plm_audit *audit, struct scheduler *scheduler,
                   int n_ctx, const char *model_name, struct server_metrics *metrics)
{
    memset(e, 0, sizeof *e);
    if (!policy || !audit)
        return plm_fail(PLM_ERR_ARG, "server: a policy needs an audit log");
    if (getrandom(e->consent_key, sizeof e->consent_key, 0) != (ssize_t)sizeof e->consent_key)
        return plm_fail(PLM_ERR_IO, "server: no random bytes for the consent key");
    e->policy = policy;
    e->audit = audit;
    e->scheduler = scheduler;
    e->n_ctx = n_ctx;
    e->model_name = model_name;
    e->metrics = metrics;
    pthread_mutex_init(&e->lock, NULL);
    monotonic_cond_init(&e->idle);
    return PLM_OK;
}

void escalator_drain(struct escalator *e, double grace)
{
    if (!e->policy)
        return;
    pthread_mutex_lock(&e->lock);
    struct timespec deadline = monotonic_deadline(grace);
    while (e->n_running > 0 && pthread_cond_timedwait(&e->idle, &e->lock, &deadline) == 0)
        ;
    for (int i = 0; i < e->n_running; i++)
        job_cancel(e->running[i], JOB_SHUTDOWN);
    while (e->n_running > 0) /* a cancelled call ends at its next byte or its timeout */
        pthread_cond_wait(&e->idle, &e->lock);
    pthread_mutex_unlock(&e->lock);
}

void escalator_destroy(struct escalator *e)
{
    if (!e->policy)
        return;
    pthread_cond_destroy(&e->idle);
    pthread_mutex_destroy(&e->lock);
    free(e->running);
    memset(e->consent_key, 0, sizeof e->consent_key);
}

/* ----------------------------------------------------------- the route */

static bool prompt_fits(const struct escalator *e, const struct job *job) { return job->n_prompt < e->n_ctx; }

static bool too_long(const struct escalator *e, const struct job *job, struct api_error *err)
{
    bool chat = job->request.kind == API_CHAT;
    return api_fail(err, 400, "invalid_request_error", "context_length_exceeded", chat ? "messages" : "prompt",
                    "the prompt is %d tokens but the context holds %d (with room for at least one more), and "
                    "the policy sends it nowhere else (%s)", job->n_prompt, e->n_ctx, job->meta.route.reason);
}

static void set_reason(struct job *job, const char *reason, const char *more)
{
    size_t len = strlen(reason) + (more ? strlen(more) + 32 : 0) + 1;
    char *text = malloc(len);
    if (text)
        snprintf(text, len, "%s%s%s", reason, more ? "; kept on the device: " : "", more ? more : "");
    free(job->meta.route.reason);
    job->meta.route.reason = text;
}

/* The conversation an upstream gets: the messages, or a legacy prompt as one user turn. */
static const struct plm_chat_message *conversation(const struct job *job, struct plm_chat_message *one, int *n)
{
    if (job->request.kind == API_CHAT) {
        *n = job->request.n_messages;
        return job->request.messages;
    }
    *one = (struct plm_chat_message){"user", job->request.prompt};
    *n = 1;
    return one;
}

/* hex HMAC of the upstream's name and the exact redacted messages. */
static int consent_token(const struct escalator *e, const struct plm_upstream *upstream, const char *messages_json,
                         char token[65])
{
    size_t name_len = strlen(upstream->name), json_len = strlen(messages_json);
    char *data = malloc(name_len + 1 + json_len);
    if (!data)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    memcpy(data, upstream->name, name_len + 1); /* the NUL separates the two */
    memcpy(data + name_len + 1, messages_json, json_len);
    int rc = audit_digest((const char *)e->consent_key, sizeof e->consent_key, data, name_len + 1 + json_len,
                          token);
    free(data);
    return rc;
}

/* Answers with consent_required: what would be sent, to whom, and the token. */
static void ask_consent(struct job *job, const struct plm_upstream *upstream, const char *rule,
                        const char *messages_json, const struct plm_redact_stats *redactions, const char *token)
{
    char *body = response_consent_required(upstream, rule, job->meta.route.reason, messages_json, redactions, token);
    pthread_mutex_lock(&job->lock);
    job->whole_body = true;
    pthread_mutex_unlock(&job->lock);
    job_push_owned(job, body);
    job_finish(job, 403);
}

static int start_call(struct escalator *e, struct job *job, plm_escalation *escalation);

/* The router chose an upstream: consent, then the call. */
static enum escalate_result escalate(struct escalator *e, struct job *job, const struct plm_route_decision *d,
                                     struct api_error *err)
{
    const struct plm_upstream *up = d->upstream;
    const char *rule = policy_trigger_name(e->policy->rules[d->rule].when);
    const char *refusal = plm_policy_refusal(e->policy, up);
    if (refusal) {
        metrics_count_escalation(e->metrics, up->name, "refused");
        set_reason(job, d->reason, refusal);
        return prompt_fits(e, job) ? ESCALATE_DEVICE : (too_long(e, job, err), ESCALATE_FAILED);
    }
    struct plm_chat_message one;
    int n;
    const struct plm_chat_message *messages = conversation(job, &one, &n);
    plm_escalation *escalation;
    if (plm_escalation_new(e->policy, up, rule, d->reason, messages, n, NULL, &escalation))
        return api_fail(err, 500, "server_error", "", "", "%s", plm_last_error()), ESCALATE_FAILED;
    const struct plm_chat_message *sent = plm_escalation_messages(escalation, &n);
    char *sent_json = response_messages_json(sent, n);
    char token[65];
    if (!sent_json || consent_token(e, up, sent_json, token)) {
        free(sent_json);
        plm_escalation_free(escalation);
        return api_fail(err, 500, "server_error", "", "", "out of memory"), ESCALATE_FAILED;
    }
    if (up->consent == PLM_CONSENT_ASK && strcmp(job->request.consent, token) != 0) {
        metrics_count_escalation(e->metrics, up->name, "consent_required");
        ask_consent(job, up, rule, sent_json, plm_escalation_redactions(escalation), token);
        free(sent_json);
        plm_escalation_free(escalation);
        return ESCALATE_TAKEN;
    }
    struct response_route *route = &job->meta.route;
    route->where = up->name;
    route->sent = sent_json;
    route->redactions = *plm_escalation_redactions(escalation);
    if (start_call(e, job, escalation)) {
        plm_escalation_free(escalation);
        return api_fail(err, 500, "server_error", "", "", "%s", plm_last_error()), ESCALATE_FAILED;
    }
    return ESCALATE_TAKEN;
}

static enum escalate_result decide(struct escalator *e, struct job *job, const struct plm_route_request *request,
                                   struct api_error *err)
{
    struct plm_route_decision d;
    if (plm_route(e->policy, request, &d))
        return api_fail(err, 500, "server_error", "", "", "%s", plm_last_error()), ESCALATE_FAILED;
    set_reason(job, d.reason, NULL);
    if (d.action == PLM_ROUTE_UPSTREAM)
        return escalate(e, job, &d, err);
    if (!prompt_fits(e, job))
        return too_long(e, job, err), ESCALATE_FAILED;
    job->hold_tokens = d.action == PLM_ROUTE_NEED_TOKENS ? d.first_tokens : 0;
    job->escalator = e;
    return ESCALATE_DEVICE;
}

static struct plm_route_request route_request(const struct escalator *e, const struct job *job)
{
    return (struct plm_route_request){
        .model = job->request.model, .n_prompt_tokens = job->n_prompt,
        .max_tokens = job->request.max_tokens > 0 ? job->request.max_tokens : 0, .n_ctx = e->n_ctx};
}

enum escalate_result escalator_route(struct escalator *e, struct job *job, struct api_error *err)
{
    struct plm_route_request request = route_request(e, job);
    return decide(e, job, &request, err);
}

enum escalate_result escalator_route_tokens(struct escalator *e, struct job *job,
                                            const struct plm_token_uncertainty *tokens, int n, bool done,
                                            struct api_error *err)
{
    struct plm_route_request request = route_request(e, job);
    request.tokens = tokens;
    request.n_tokens = n;
    request.answer_done = done;
    enum escalate_result result = decide(e, job, &request, err);
    job->hold_tokens = 0; /* decided: a later uncertain rule asking for more is not waited for */
    return result;
}

/* ------------------------------------------------------- the upstream call */

struct call {
    struct escalator *escalator;
    struct job *job;
    plm_escalation *escalation;
    bool role_sent;
    bool text_sent;
};

static void send_role(struct call *c)
{
    struct job *job = c->job;
    if (c->role_sent || !job->request.stream || job->request.kind != API_CHAT)
        return;
    c->role_sent = true;
    job_push_owned(job, response_chunk(NULL, &job->meta, "", 0, true, NULL, 0, NULL));
}

static bool on_upstream_text(void *user, const char *text, size_t len)
{
    struct call *c = user;
    if (job_cancelled(c->job))
        return false;
    if (!c->job->request.stream)
        return true; /* the whole answer is written at the end */
    send_role(c);
    c->text_sent = true;
    return job_push_owned(c->job, response_chunk(NULL, &c->job->meta, text, len, false, NULL, 0, NULL));
}

static const char *finish_reason_of(enum plm_finish_reason reason)
{
    switch (reason) {
    case PLM_FINISH_LENGTH: return "length";
    case PLM_FINISH_FILTERED: return "content_filter";
    default: return "stop";
    }
}

static int answered(struct call *c, const struct plm_upstream_result *r)
{
    struct job *job = c->job;
    struct response_usage usage = {r->prompt_tokens >= 0 ? r->prompt_tokens : job->n_prompt,
                                   r->completion_tokens >= 0 ? r->completion_tokens : 0};
    const char *finish = finish_reason_of(r->finish_reason);
    if (!job->request.stream) {
        job_push_owned(job, response_complete(NULL, &job->meta, r->text ? r->text : "", r->text_len, NULL, 0,
                                              finish, &usage));
        return 200;
    }
    send_role(c);
    job_push_owned(job, response_chunk(NULL, &job->meta, "", 0, false, NULL, 0, finish));
    if (job->meta.include_usage)
        job_push_owned(job, response_usage_chunk(&job->meta, &usage));
    job_push_owned(job, strdup(RESPONSE_STREAM_END));
    return 200;
}

/* The upstream failed before any text went out: the device answers. */
static bool fall_back(struct call *c, const char *error)
{
    struct job *job = c->job;
    struct response_route *route = &job->meta.route;
    route->where = RESPONSE_ROUTE_DEVICE;
    route->fallback = true;
    route->error = strdup(error);
    job->meta.model_name = c->escalator->model_name;
    job->meta.logprobs = job->request.logprobs;
    job->hold_tokens = 0;
    return scheduler_submit(c->escalator->scheduler, job) == SUBMIT_OK;
}

static int ended(struct call *c, int rc, const struct plm_upstream_result *r)
{
    struct job *job = c->job;
    struct server_metrics *metrics = c->escalator->metrics;
    const char *upstream = plm_escalation_upstream(c->escalation)->name;
    if (job_cancelled(job)) {
        metrics_count_escalation(metrics, upstream, "cancelled");
        return job_push_cancelled(job);
    }
    if (rc == PLM_OK) {
        metrics_count_escalation(metrics, upstream, "ok");
        return answered(c, r);
    }
    char error[256];
    snprintf(error, sizeof error, "%s", plm_last_error());
    if (!c->text_sent && prompt_fits(c->escalator, job) && fall_back(c, error)) {
        metrics_count_escalation(metrics, upstream, "fallback");
        return 0; /* the scheduler finishes the job */
    }
    metrics_count_escalation(metrics, upstream, "error");
    return job_push_error(job, 502, "upstream_error", error);
}

static void forget(struct escalator *e, struct job *job)
{
    pthread_mutex_lock(&e->lock);
    for (int i = 0; i < e->n_running; i++)
        if (e->running[i] == job) {
            e->running[i] = e->running[--e->n_running];
            break;
        }
    if (e->n_running == 0)
        pthread_cond_broadcast(&e->idle);
    pthread_mutex_unlock(&e->lock);
}

static void *run_call(void *arg)
{
    struct call *c = arg;
    struct job *job = c->job;
    const struct api_request *req = &job->request;
    struct plm_upstream_request options = {
        .max_tokens = req->max_tokens > 0 ? req->max_tokens : 0,
        .temperature = req->sampling.temperature, .stream = req->stream};
    bool can_fall_back = prompt_fits(c->escalator, job);
    struct plm_upstream_result result;
    int rc = plm_escalation_send(c->escalation, c->escalator->audit, &options,
                                 can_fall_back ? PLM_AUDIT_FALLBACK : PLM_AUDIT_UPSTREAM_ERROR, on_upstream_text, c,
                                 &result);
    job->meta.route.audit_id = plm_escalation_audit_id(c->escalation);
    int status = ended(c, rc, &result);
    plm_upstream_result_free(&result);
    if (status)
        job_finish(job, status);
    plm_escalation_free(c->escalation);
    forget(c->escalator, job);
    job_release(job);
    free(c);
    return NULL;
}

static int track(struct escalator *e, struct job *job)
{
    pthread_mutex_lock(&e->lock);
    int rc = PLM_OK;
    if (e->n_running == e->running_cap) {
        int cap = e->running_cap ? 2 * e->running_cap : 16;
        struct job **grown = realloc(e->running, (size_t)cap * sizeof *grown);
        if (grown) {
            e->running = grown;
            e->running_cap = cap;
        } else {
            rc = plm_fail(PLM_ERR_NOMEM, "out of memory");
        }
    }
    if (!rc)
        e->running[e->n_running++] = job;
    pthread_mutex_unlock(&e->lock);
    return rc;
}

static int start_call(struct escalator *e, struct job *job, plm_escalation *escalation)
{
    struct call *c = calloc(1, sizeof *c);
    if (!c || track(e, job)) {
        free(c);
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    }
    *c = (struct call){e, job, escalation, false, false};
    job->meta.model_name = plm_escalation_upstream(escalation)->name;
    job->meta.logprobs = false; /* upstreams do not give them */
    job_retain(job);
    pthread_attr_t attr;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    pthread_t thread;
    int failed = pthread_create(&thread, &attr, run_call, c);
    pthread_attr_destroy(&attr);
    if (failed) {
        job_release(job);
        forget(e, job);
        free(c);
        return plm_fail(PLM_ERR_NOMEM, "cannot start a thread for the upstream call");
    }
    return PLM_OK;
}
