/*
 * The generation loop: decode the prompt, then sample, print and decode one
 * token at a time until a stop condition.
 *
 * Text is streamed, but a stop string may arrive split over several tokens, so
 * the tail of the text that could still be the start of a stop string is held
 * back until the next token decides. Likewise an incomplete UTF-8 sequence is
 * held back so that callers always receive whole characters.
 */
#include "engine/session.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct pending_text {
    char *bytes;
    size_t len, cap;
    bool strip_leading_space; /* the next text starts the document (see below) */
};

static int pending_append(struct pending_text *p, const char *bytes, size_t n)
{
    if (n == 0)
        return PLM_OK; /* an empty piece; also keeps memcpy away from a NULL buffer */
    if (p->len + n > p->cap) {
        size_t cap = p->cap ? p->cap : 256;
        while (cap < p->len + n)
            cap *= 2;
        char *grown = realloc(p->bytes, cap);
        if (!grown)
            return plm_fail(PLM_ERR_NOMEM, "out of memory");
        p->bytes = grown;
        p->cap = cap;
    }
    memcpy(p->bytes + p->len, bytes, n);
    p->len += n;
    return PLM_OK;
}

/* Where the first stop string starts in the text, or -1. */
static long find_stop(const struct pending_text *p, const struct plm_generate_params *params)
{
    long first = -1;
    for (int i = 0; i < params->n_stop; i++) {
        size_t n = strlen(params->stop[i]);
        if (n == 0 || n > p->len)
            continue;
        const char *hit = memmem(p->bytes, p->len, params->stop[i], n);
        if (hit && (first < 0 || hit - p->bytes < first))
            first = hit - p->bytes;
    }
    return first;
}

/* Length of the longest tail of the text that begins some stop string. */
static size_t stop_prefix_len(const struct pending_text *p, const struct plm_generate_params *params)
{
    size_t longest = 0;
    for (int i = 0; i < params->n_stop; i++) {
        size_t n = strlen(params->stop[i]);
        size_t proper = n > 0 ? n - 1 : 0; /* a whole stop string was handled by find_stop */
        for (size_t k = proper; k > longest; k--)
            if (k <= p->len && memcmp(p->bytes + p->len - k, params->stop[i], k) == 0) {
                longest = k;
                break;
            }
    }
    return longest;
}

/* Length of an unfinished UTF-8 sequence at the end of the text (0..3). */
static size_t partial_utf8_len(const struct pending_text *p)
{
    for (size_t back = 1; back <= 3 && back <= p->len; back++) {
        unsigned char c = (unsigned char)p->bytes[p->len - back];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation byte: look further back */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

/* Hands the first n bytes to the callback and drops them; false if it asked to stop. */
static bool emit(struct pending_text *p, size_t n, plm_text_callback on_text, void *user)
{
    if (n == 0)
        return true;
    bool go_on = on_text ? on_text(user, p->bytes, n) : true;
    memmove(p->bytes, p->bytes + n, p->len - n);
    p->len -= n;
    return go_on;
}

/* Appends the token's text and emits what is safe; sets *reason when stopping. */
static int stream_token(plm_session *s, int32_t token, struct pending_text *p,
                        const struct plm_generate_params *params, plm_text_callback on_text, void *user,
                        enum plm_stop_reason *reason, bool *stop)
{
    char small[256];
    char *piece = small;
    int n = plm_token_to_piece(s->model, token, small, sizeof small, false);
    if (n > (int)sizeof small) { /* a rare very long token */
        if (!(piece = malloc((size_t)n)))
            return plm_fail(PLM_ERR_NOMEM, "out of memory");
        n = plm_token_to_piece(s->model, token, piece, (size_t)n, false);
    }
    const char *text = piece;
    if (n > 0 && p->strip_leading_space && piece[0] == ' ') {
        text++;
        n--;
    }
    if (n > 0)
        p->strip_leading_space = false;
    int rc = n < 0 ? n : pending_append(p, text, (size_t)n);
    if (piece != small)
        free(piece);
    if (rc)
        return rc;
    long stop_at = find_stop(p, params);
    if (stop_at >= 0) {
        emit(p, (size_t)stop_at, on_text, user);
        *reason = PLM_STOP_STRING;
        *stop = true;
        return PLM_OK;
    }
    size_t hold = stop_prefix_len(p, params);
    size_t partial = partial_utf8_len(p);
    if (partial > hold)
        hold = partial;
    if (!emit(p, p->len - hold, on_text, user)) {
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
                         struct plm_generate_result *result, struct pending_text *p)
{
    for (;;) {
        if (params->n_predict >= 0 && result->n_generated >= params->n_predict) {
            result->stop_reason = PLM_STOP_LENGTH;
            break;
        }
        int32_t token = plm_sampler_sample(sampler, allowed_logits(s, eog));
        if (token < 0)
            return token; /* no finite logit: the model produced NaNs */
        plm_sampler_accept(sampler, token);
        result->n_generated++;
        if (plm_token_is_eog(s->model, token)) {
            result->stop_reason = PLM_STOP_EOG;
            break;
        }
        bool stop = false;
        int rc = stream_token(s, token, p, params, on_text, user, &result->stop_reason, &stop);
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
    emit(p, p->len, on_text, user); /* the held-back tail was not a stop string after all */
    return PLM_OK;
}

/* SentencePiece prefixes the text with a space ("▁Once"); its decoder drops
 * that space again at the start of the document. Generating right after BOS
 * (an empty prompt) is such a start. */
static bool starts_document(const plm_session *s, const int32_t *prompt, int n_prompt)
{
    const struct plm_model *m = s->model;
    if (strcmp(m->tokenizer_model, "llama") != 0 || s->n_past != n_prompt)
        return false;
    for (int i = 0; i < n_prompt; i++)
        if (vocab_token_type(m->vocab, prompt[i]) != PLM_TOKEN_CONTROL)
            return false;
    return true;
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

    struct pending_text pending = {.strip_leading_space = starts_document(s, prompt, n_prompt)};
    struct eog_mask mask = {0};
    int rc = params->ignore_eog ? eog_mask_init(&mask, s->model, s->model->hp.n_vocab) : PLM_OK;
    if (rc == PLM_OK)
        rc = generate_loop(s, sampler, params, params->ignore_eog ? &mask : NULL, on_text, user, result,
                           &pending);
    free(mask.ids);
    free(mask.logits);
    free(pending.bytes);
    result->generate_seconds = plm_seconds_now() - prompt_done;
    return rc;
}
