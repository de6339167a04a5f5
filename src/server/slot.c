/*
 * One request's generation, a step at a time. The loop is plm_generate's
 * (src/engine/generate.c) cut into steps and driven with the public API, so
 * that the scheduler can interleave slots and decode their tokens together,
 * and so that each token's logits are at hand for logprobs.
 */
#include "server/slot.h"

#include "server/escalate.h"

#include <stdlib.h>
#include <string.h>

int slot_init(struct slot *slot, plm_model *model, const struct plm_session_params *params)
{
    memset(slot, 0, sizeof *slot);
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    slot->model = model;
    slot->n_vocab = info.n_vocab;
    int rc = plm_session_new(model, params, &slot->session);
    if (rc)
        return rc;
    slot->cached = malloc((size_t)plm_session_n_ctx(slot->session) * sizeof *slot->cached);
    if (!slot->cached) {
        plm_session_free(slot->session);
        slot->session = NULL;
        return PLM_ERR_NOMEM;
    }
    return PLM_OK;
}

void slot_free(struct slot *slot)
{
    plm_session_free(slot->session);
    free(slot->cached);
    free(slot->logprobs);
    held_tokens_free(&slot->held);
    text_stream_free(&slot->text);
    plm_sampler_free(slot->sampler);
    memset(slot, 0, sizeof *slot);
}

int slot_reusable(const struct slot *slot, const struct job *job)
{
    int held = plm_session_n_past(slot->session); /* a failed decode may have left less than n_cached */
    if (held > slot->n_cached)
        held = slot->n_cached;
    int n = 0;
    while (n < held && n < job->n_prompt && slot->cached[n] == job->prompt[n])
        n++;
    return n;
}

void slot_assign(struct slot *slot, struct job *job)
{
    slot->job = job;
}

/* The job has ended with that status: forget its state; slot_step hands the job over. */
static bool end_job(struct slot *slot, int status)
{
    slot->end_status = status;
    plm_sampler_free(slot->sampler);
    slot->sampler = NULL;
    text_stream_free(&slot->text);
    slot->n_logprobs = slot->n_logprobs_sent = 0;
    slot->generating = false;
    slot->n_generated = 0;
    slot->held.n = 0;
    return true;
}

static bool end_with_error(struct slot *slot, int status, const char *type, const char *message)
{
    return end_job(slot, job_push_error(slot->job, status, type, message));
}

/* Prepares the job: a sampler, and the cache cut back to what the prompt shares
 * with it (at least one prompt token is decoded, to have fresh logits). */
static int begin(struct slot *slot)
{
    struct job *job = slot->job;
    int rc = plm_sampler_new(&job->request.sampling, slot->n_vocab, &slot->sampler);
    if (rc)
        return rc;
    int keep = slot_reusable(slot, job);
    if (keep == job->n_prompt)
        keep--;
    plm_session_truncate(slot->session, keep);
    slot->n_cached = keep;
    slot->n_prompt_done = keep;
    for (int i = 0; i < job->n_prompt; i++)
        plm_sampler_accept(slot->sampler, job->prompt[i]);
    text_stream_init(&slot->text, text_stream_starts_document(slot->model, job->prompt, job->n_prompt));
    return PLM_OK;
}

static int decode_prompt_batch(struct slot *slot)
{
    struct job *job = slot->job;
    int n = job->n_prompt - slot->n_prompt_done;
    if (n > SLOT_PROMPT_BATCH)
        n = SLOT_PROMPT_BATCH;
    const int32_t *batch = job->prompt + slot->n_prompt_done;
    int rc = plm_decode(slot->session, batch, n, NULL);
    if (rc)
        return rc;
    memcpy(slot->cached + slot->n_cached, batch, (size_t)n * sizeof *batch);
    slot->n_cached += n;
    slot->n_prompt_done += n;
    return PLM_OK;
}

/* Logprob entries of text that has been sent: those starting before `end`. */
static int logprobs_before(const struct slot *slot, size_t end)
{
    int n = slot->n_logprobs_sent;
    while (n < slot->n_logprobs && slot->logprobs[n].text_offset < end)
        n++;
    return n;
}

/* Streams the text from what was sent up to `end`, with its tokens' logprobs. */
static void send_chunk(struct slot *slot, size_t end)
{
    struct job *job = slot->job;
    struct text_stream *t = &slot->text;
    int n_lp = logprobs_before(slot, end);
    job_push_owned(job, response_chunk(slot->model, &job->meta, t->bytes + t->sent, end - t->sent, false,
                                       slot->logprobs + slot->n_logprobs_sent, n_lp - slot->n_logprobs_sent,
                                       NULL));
    t->sent = end;
    slot->n_logprobs_sent = n_lp;
}

/* The text ends at `end` (a stop string starts there, or all of it): sends the
 * rest and the closing chunks, or the whole response. */
static bool finish(struct slot *slot, size_t end, const char *finish_reason, struct server_metrics *metrics)
{
    struct job *job = slot->job;
    struct response_usage usage = {job->n_prompt, slot->n_generated};
    if (job->request.stream) {
        if (end > slot->text.sent)
            send_chunk(slot, end);
        job_push_owned(job, response_chunk(slot->model, &job->meta, "", 0, false, NULL, 0, finish_reason));
        if (job->meta.include_usage)
            job_push_owned(job, response_usage_chunk(&job->meta, &usage));
        job_push_owned(job, strdup(RESPONSE_STREAM_END));
    } else {
        int n_lp = logprobs_before(slot, end);
        job_push_owned(job, response_complete(slot->model, &job->meta, slot->text.bytes, end, slot->logprobs,
                                              n_lp, finish_reason, &usage));
    }
    metrics_add_tokens(metrics, job->n_prompt, slot->n_generated);
    metrics_observe_latency(metrics, monotonic_seconds() - job->arrival);
    return end_job(slot, 200);
}

static bool record_logprob(struct slot *slot, const float *logits, int32_t token)
{
    if (slot->n_logprobs == slot->logprobs_cap) {
        int cap = slot->logprobs_cap ? 2 * slot->logprobs_cap : 64;
        struct token_logprob *grown = realloc(slot->logprobs, (size_t)cap * sizeof *grown);
        if (!grown)
            return false;
        slot->logprobs = grown;
        slot->logprobs_cap = cap;
    }
    struct token_logprob *lp = &slot->logprobs[slot->n_logprobs++];
    token_logprob_compute(logits, slot->n_vocab, token, slot->job->request.top_logprobs, lp);
    lp->text_offset = slot->text.len;
    return true;
}

/* The start of the output a client sees: a chat stream's role chunk. */
static void begin_output(struct slot *slot)
{
    struct job *job = slot->job;
    if (job->request.stream && job->request.kind == API_CHAT) /* the role comes first */
        job_push_owned(job, response_chunk(slot->model, &job->meta, "", 0, true, NULL, 0, NULL));
}

/* ------------------------------------------ an "uncertain" rule decides */

/* Whether the job's first tokens are held back until the router decides. */
static bool holding(const struct slot *slot) { return slot->job->hold_tokens > 0; }

/* Asks the router with the tokens held so far; true when the job has left
 * the slot (to an upstream, as a consent_required answer, or failed). The
 * escalation owns a job that left: the slot ends it with status 0. */
static bool decide_route(struct slot *slot, bool done)
{
    struct job *job = slot->job;
    struct api_error err;
    enum escalate_result route =
        escalator_route_tokens(job->escalator, job, slot->held.items, slot->held.n, done, &err);
    if (route == ESCALATE_TAKEN)
        return end_job(slot, 0);
    if (route == ESCALATE_FAILED)
        return end_with_error(slot, err.status, err.type, err.message);
    begin_output(slot); /* the device keeps it: the held text goes out with the next chunk */
    return false;
}

/* Measures a token sampled while holding; true when the job has left the slot. */
static bool hold_token(struct slot *slot, const float *logits, int32_t token)
{
    if (held_tokens_add(&slot->held, logits, slot->n_vocab, token))
        return end_with_error(slot, 500, "server_error", plm_last_error());
    return slot->held.n >= slot->job->hold_tokens && decide_route(slot, false);
}

/* The answer ends here: a rule still waiting judges the tokens there are. */
static bool ends_holding(struct slot *slot)
{
    return holding(slot) && decide_route(slot, true);
}

/* Samples and sends one token, and leaves it for the scheduler to decode. */
static bool generate_token(struct slot *slot, struct server_metrics *metrics)
{
    struct job *job = slot->job;
    const struct api_request *req = &job->request;
    const float *logits = plm_session_logits(slot->session);
    int32_t token = plm_sampler_sample(slot->sampler, logits);
    if (token < 0)
        return end_with_error(slot, 500, "server_error", plm_last_error());
    plm_sampler_accept(slot->sampler, token);
    if (slot->n_generated++ == 0)
        metrics_observe_ttft(metrics, monotonic_seconds() - job->arrival);
    if (holding(slot) && hold_token(slot, logits, token))
        return true;
    if (plm_token_is_eog(slot->model, token))
        return ends_holding(slot) || finish(slot, slot->text.len, "stop", metrics);
    if (req->logprobs && !record_logprob(slot, logits, token))
        return end_with_error(slot, 500, "server_error", "out of memory");
    if (text_stream_append_token(&slot->text, slot->model, token))
        return end_with_error(slot, 500, "server_error", plm_last_error());
    bool stopped;
    size_t ready = text_stream_ready(&slot->text, (const char *const *)req->stop, req->n_stop, &stopped);
    if (stopped)
        return ends_holding(slot) || finish(slot, ready, "stop", metrics);
    if (req->stream && ready > slot->text.sent && !holding(slot))
        send_chunk(slot, ready);
    bool context_full = plm_session_n_past(slot->session) >= plm_session_n_ctx(slot->session);
    if (slot->n_generated == req->max_tokens || context_full)
        return ends_holding(slot) || finish(slot, slot->text.len, "length", metrics);
    slot->next_token = token;
    slot->decode_pending = true;
    return false;
}

/* One step; true when the job has ended. */
static bool step(struct slot *slot, struct server_metrics *metrics)
{
    struct job *job = slot->job;
    if (job_cancelled(job))
        return end_job(slot, job_push_cancelled(job));
    if (!slot->sampler && begin(slot))
        return end_with_error(slot, 500, "server_error", plm_last_error());
    if (slot->n_prompt_done < job->n_prompt) {
        if (decode_prompt_batch(slot))
            return end_with_error(slot, 500, "server_error", plm_last_error());
        return false;
    }
    if (!slot->generating) {
        slot->generating = true;
        if (!holding(slot))
            begin_output(slot);
    }
    return generate_token(slot, metrics);
}

/* The job that has just ended, taken from the slot, which is free again. */
static struct job *hand_back(struct slot *slot, int *status)
{
    struct job *ended = slot->job;
    slot->job = NULL;
    *status = slot->end_status;
    return ended;
}

struct job *slot_step(struct slot *slot, struct server_metrics *metrics, int *status)
{
    return step(slot, metrics) ? hand_back(slot, status) : NULL;
}

struct job *slot_token_decoded(struct slot *slot, int rc, int *status)
{
    slot->decode_pending = false;
    if (rc == PLM_OK) {
        slot->cached[slot->n_cached++] = slot->next_token;
        return NULL;
    }
    end_with_error(slot, 500, "server_error", plm_last_error());
    return hand_back(slot, status);
}
