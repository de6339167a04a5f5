/*
 * The generation loop: decode the prompt, then sample, print and decode one
 * token at a time until a stop condition.
 *
 * Text is streamed through a text_stream (engine/text_stream.h), which holds
 * back a tail that could still become a stop string or is an incomplete UTF-8
 * character, so that callers always receive whole characters and never the
 * start of a stop string.
 */
#include "engine/session.h"
#include "engine/text_stream.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Hands the text from what was sent up to `end` to the callback; false if it asked to stop. */
static bool emit(struct text_stream *t, size_t end, plm_text_callback on_text, void *user)
{
    size_t n = end - t->sent;
    if (n == 0)
        return true;
    bool go_on = on_text ? on_text(user, t->bytes + t->sent, n) : true;
    t->sent = end;
    return go_on;
}

/* Appends the token's text and emits what is safe; sets *reason when stopping. */
static int stream_token(plm_session *s, int32_t token, struct text_stream *text,
                        const struct plm_generate_params *params, plm_text_callback on_text, void *user,
                        enum plm_stop_reason *reason, bool *stop)
{
    int rc = text_stream_append_token(text, s->model, token);
    if (rc)
        return rc;
    bool stopped;
    size_t ready = text_stream_ready(text, params->stop, params->n_stop, &stopped);
    bool go_on = emit(text, ready, on_text, user);
    if (stopped) {
        *reason = PLM_STOP_STRING;
        *stop = true;
    } else if (!go_on) {
        *reason = PLM_STOP_CALLBACK;
        *stop = true;
    }
    return PLM_OK;
}

/* End-of-generation tokens masked out of the logits, for ignore_eog. */
struct eog_mask {
    int32_t *ids;
    int n_ids;
    float *logits; /* the session's logits with the masked tokens at -inf */
};

static int eog_mask_init(struct eog_mask *mask, const plm_model *model, int n_vocab)
{
    mask->ids = malloc((size_t)n_vocab * sizeof *mask->ids);
    mask->logits = malloc((size_t)n_vocab * sizeof *mask->logits);
    if (!mask->ids || !mask->logits)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    for (int32_t t = 0; t < n_vocab; t++)
        if (plm_token_is_eog(model, t))
            mask->ids[mask->n_ids++] = t;
    return PLM_OK;
}

/* The logits to sample from: the session's, or a masked copy (mask may be NULL). */
static const float *allowed_logits(const plm_session *s, struct eog_mask *mask)
{
    const float *logits = plm_session_logits(s);
    if (!mask)
        return logits;
    memcpy(mask->logits, logits, (size_t)s->model->hp.n_vocab * sizeof *logits);
    for (int i = 0; i < mask->n_ids; i++)
        mask->logits[mask->ids[i]] = -INFINITY;
    return mask->logits;
}

static int generate_loop(plm_session *s, plm_sampler *sampler, const struct plm_generate_params *params,
                         struct eog_mask *eog, plm_text_callback on_text, void *user,
                         struct plm_generate_result *result, struct text_stream *text)
{
    for (;;) {
        if (params->n_predict >= 0 && result->n_generated >= params->n_predict) {
            result->stop_reason = PLM_STOP_LENGTH;
            break;
        }
        const float *logits = allowed_logits(s, eog);
        int32_t token = plm_sampler_sample(sampler, logits);
        if (token < 0)
            return token; /* no finite logit: the model produced NaNs */
        plm_sampler_accept(sampler, token);
        result->n_generated++;
        if (params->on_token && !params->on_token(user, token, logits)) {
            result->stop_reason = PLM_STOP_CALLBACK;
            return PLM_OK;
        }
        if (plm_token_is_eog(s->model, token)) {
            result->stop_reason = PLM_STOP_EOG;
            break;
        }
        bool stop = false;
        int rc = stream_token(s, token, text, params, on_text, user, &result->stop_reason, &stop);
        if (rc)
            return rc;
        if (stop)
            return PLM_OK;
        if (s->n_past >= s->n_ctx) {
            result->stop_reason = PLM_STOP_CONTEXT;
            break;
        }
        if ((rc = plm_decode(s, &token, 1, NULL)))
            return rc;
    }
    emit(text, text->len, on_text, user); /* the held-back tail was not a stop string after all */
    return PLM_OK;
}

int plm_generate(plm_session *s, plm_sampler *sampler, const int32_t *prompt, int n_prompt,
                 const struct plm_generate_params *params, plm_text_callback on_text, void *user,
                 struct plm_generate_result *result)
{
    memset(result, 0, sizeof *result);
    if (n_prompt == 0 && s->n_past == 0)
        return plm_fail(PLM_ERR_ARG, "nothing to generate from: the prompt is empty");
    double start = plm_seconds_now();
    if (n_prompt > 0) {
        int rc = plm_decode(s, prompt, n_prompt, NULL);
        if (rc)
            return rc;
    }
    for (int i = 0; i < n_prompt; i++)
        plm_sampler_accept(sampler, prompt[i]);
    result->n_prompt = n_prompt;
    double prompt_done = plm_seconds_now();
    result->prompt_seconds = prompt_done - start;

    struct text_stream text;
    /* n_past == n_prompt: the prompt is the whole document so far. */
    text_stream_init(&text, s->n_past == n_prompt && text_stream_starts_document(s->model, prompt, n_prompt));
    struct eog_mask mask = {0};
    int rc = params->ignore_eog ? eog_mask_init(&mask, s->model, s->model->hp.n_vocab) : PLM_OK;
    if (rc == PLM_OK)
        rc = generate_loop(s, sampler, params, params->ignore_eog ? &mask : NULL, on_text, user, result,
                           &text);
    free(mask.ids);
    free(mask.logits);
    text_stream_free(&text);
    result->generate_seconds = plm_seconds_now() - prompt_done;
    return rc;
}
