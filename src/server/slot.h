/*
 * A slot: one session (KV cache) of the shared model and the request it is
 * generating, advanced one step at a time by the scheduler: a batch of the
 * prompt, or one token. A token is sampled and sent by the slot, but decoded
 * by the scheduler together with the other slots' tokens, in one forward pass
 * (slot_step leaves it pending, slot_token_decoded takes the outcome). The
 * slot keeps the tokens its cache holds, so a request that starts like the
 * previous one (the same system prompt, the conversation so far) only decodes
 * what is new.
 */
#ifndef PLM_SERVER_SLOT_H
#define PLM_SERVER_SLOT_H

#include "server/job.h"
#include "server/logprob.h"
#include "server/metrics.h"
#include "engine/text_stream.h"
#include "routing/uncertainty.h"

/* Prompt tokens decoded per turn: long prompts proceed in batches, so the other
 * slots' streams keep moving meanwhile. */
#define SLOT_PROMPT_BATCH 64

struct slot {
    plm_model *model;
    plm_session *session;
    int n_vocab;
    int32_t *cached;        /* tokens whose keys and values the cache holds [n_ctx] */
    int n_cached;

    struct job *job;        /* NULL when the slot is free */
    int end_status;         /* the HTTP status of a job that has just ended */
    /* The current job's progress. */
    plm_sampler *sampler;
    int n_prompt_done;
    bool generating;        /* the prompt is decoded */
    int n_generated;
    struct text_stream text;
    struct token_logprob *logprobs;
    int n_logprobs, logprobs_cap, n_logprobs_sent;
    struct held_tokens held; /* the first tokens, while an "uncertain" rule waits for them */
    bool decode_pending;    /* next_token is sampled and sent; its decode is the scheduler's */
    int32_t next_token;
};

int slot_init(struct slot *slot, plm_model *model, const struct plm_session_params *params);
void slot_free(struct slot *slot);

/* How many of the job's prompt tokens the slot's cache already holds. */
int slot_reusable(const struct slot *slot, const struct job *job);

/* Gives the slot a job, with the caller's reference to it (slot_step hands it back). */
void slot_assign(struct slot *slot, struct job *job);

/* Advances the job by one step: decodes a batch of the prompt, or samples
 * and sends the next token and sets decode_pending. When the job has ended
 * (finished, failed or cancelled) its output is complete and the slot free
 * again: returns the job, with its HTTP status in *status, for the caller to
 * mark finished (job_finish) and release. Otherwise NULL. Status 0: the job
 * left for an upstream (an "uncertain" rule fired on the tokens the slot held
 * back): the escalation finishes it, the caller only releases it. */
struct job *slot_step(struct slot *slot, struct server_metrics *metrics, int *status);

/* The caller has decoded next_token into the slot's session (plm_decode_sessions
 * returned rc): the cache now holds it, or, when rc is an error, the job ends
 * with that error and is returned as slot_step returns it. */
struct job *slot_token_decoded(struct slot *slot, int rc, int *status);

#endif
