/*
 * Perplexity, computed the way llama.cpp's `perplexity` tool does so that
 * figures are comparable (see plm_perplexity in pocketlm.h).
 */
#include "engine/session.h"

#include "core/error.h"
#include "eval/log_sum_exp.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* -log softmax(logits)[target]. */
static double negative_log_likelihood(const float *logits, int n_vocab, int32_t target)
{
    float max;
    double log_sum = log_sum_exp(logits, n_vocab, &max);
    return log_sum - ((double)logits[target] - max);
}

struct nll_totals {
    double sum, sum_sq;
    long count;
};

static void summarize(const struct nll_totals *totals, int n_chunks, struct plm_perplexity_result *r)
{
    double mean = totals->count ? totals->sum / totals->count : 0.0;
    double variance = totals->count > 1
                          ? (totals->sum_sq / totals->count - mean * mean) * totals->count / (totals->count - 1)
                          : 0.0;
    r->nll_mean = mean;
    r->nll_stderr = totals->count ? sqrt(fmax(variance, 0.0) / totals->count) : 0.0;
    r->ppl = exp(mean);
    r->n_chunks = n_chunks;
    r->n_scored = (int)totals->count;
}

static int score_chunk(plm_session *s, const int32_t *chunk_tokens, int n_ctx, float *logits,
                       struct nll_totals *totals)
{
    int n_vocab = s->model->hp.n_vocab;
    plm_session_truncate(s, 0);
    int rc = plm_decode(s, chunk_tokens, n_ctx, logits);
    if (rc)
        return rc;
    for (int pos = n_ctx / 2; pos < n_ctx - 1; pos++) {
        double nll = negative_log_likelihood(logits + (size_t)pos * n_vocab, n_vocab, chunk_tokens[pos + 1]);
        totals->sum += nll;
        totals->sum_sq += nll * nll;
        totals->count++;
    }
    return PLM_OK;
}

int plm_perplexity(plm_session *s, const int32_t *tokens, int n_tokens, int n_ctx,
                   void (*progress)(void *user, const struct plm_perplexity_result *so_far), void *user,
                   struct plm_perplexity_result *result)
{
    memset(result, 0, sizeof *result);
    if (n_ctx < 4 || n_ctx > s->n_ctx)
        return plm_fail(PLM_ERR_ARG, "perplexity context %d must be between 4 and the session's %d", n_ctx,
                        s->n_ctx);
    int n_chunks = n_tokens / n_ctx;
    if (n_chunks == 0)
        return plm_fail(PLM_ERR_ARG, "the text has %d tokens, fewer than one chunk of %d", n_tokens, n_ctx);
    int32_t bos = plm_token_bos(s->model);
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    float *logits = malloc((size_t)n_ctx * s->model->hp.n_vocab * sizeof *logits);
    int rc = chunk && logits ? PLM_OK : plm_fail(PLM_ERR_NOMEM, "out of memory for %d-token chunks", n_ctx);
    struct nll_totals totals = {0};
    for (int c = 0; c < n_chunks && rc == PLM_OK; c++) {
        memcpy(chunk, tokens + (size_t)c * n_ctx, (size_t)n_ctx * sizeof *chunk);
        if (bos >= 0)
            chunk[0] = bos;
        rc = score_chunk(s, chunk, n_ctx, logits, &totals);
        summarize(&totals, c + 1, result);
        if (rc == PLM_OK && progress)
            progress(user, result);
    }
    free(chunk);
    free(logits);
    return rc;
}
