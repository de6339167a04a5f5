/*
 * Per-token uncertainty: the probability the model gave the token it chose
 * and the entropy of the distribution it chose from, both from the softmax of
 * the logits normalised with the shared log_sum_exp (so they agree with
 * perplexity and the gap metrics to the last bit); then quantiles and means
 * over the first tokens of an answer.
 */
#include "routing/uncertainty.h"

#include "core/error.h"
#include "eval/gap.h"
#include "eval/log_sum_exp.h"

#include <math.h>
#include <stdlib.h>

int plm_token_uncertainty(const float *logits, int n_vocab, int32_t chosen, struct plm_token_uncertainty *u)
{
    if (!logits || !u || n_vocab < 1)
        return plm_fail(PLM_ERR_ARG, "token uncertainty: no logits");
    if (chosen < 0 || chosen >= n_vocab)
        return plm_fail(PLM_ERR_ARG, "token uncertainty: token %d outside the vocabulary of %d", (int)chosen,
                        n_vocab);
    float max;
    double log_norm = log_sum_exp(logits, n_vocab, &max);
    if (!isfinite(max) || !isfinite(log_norm))
        return plm_fail(PLM_ERR_ARG, "token uncertainty: the logits are not finite (largest %g)", (double)max);
    double entropy = 0.0;
    for (int i = 0; i < n_vocab; i++) {
        if (isnan(logits[i]))
            return plm_fail(PLM_ERR_ARG, "token uncertainty: logit %d is NaN", i);
        double log_p = ((double)logits[i] - max) - log_norm;
        /* A token of probability 0 (logit -inf, or so low exp() underflows)
         * adds 0 log 0 = 0, not the NaN of 0 * -inf. */
        double p = exp(log_p);
        if (p > 0.0)
            entropy -= p * log_p;
    }
    u->prob = exp(((double)logits[chosen] - max) - log_norm);
    /* Rounding can leave -1e-17 for a one-hot distribution. */
    u->entropy = entropy > 0.0 ? entropy : 0.0;
    return PLM_OK;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

double uncertainty_sorted_quantile(double *values, int n, double q)
{
    qsort(values, (size_t)n, sizeof *values, compare_doubles);
    return gap_quantile(values, (size_t)n, q);
}

int held_tokens_add(struct held_tokens *held, const float *logits, int n_vocab, int32_t chosen)
{
    if (held->n == held->cap) {
        int cap = held->cap ? 2 * held->cap : 16;
        struct plm_token_uncertainty *grown = realloc(held->items, (size_t)cap * sizeof *grown);
        if (!grown)
            return plm_fail(PLM_ERR_NOMEM, "out of memory holding the answer's first tokens");
        held->items = grown;
        held->cap = cap;
    }
    int rc = plm_token_uncertainty(logits, n_vocab, chosen, &held->items[held->n]);
    if (rc == PLM_OK)
        held->n++;
    return rc;
}

void held_tokens_free(struct held_tokens *held)
{
    free(held->items);
    *held = (struct held_tokens){0};
}

static double measure(const struct plm_token_uncertainty *token, bool entropy)
{
    return entropy ? token->entropy : token->prob;
}

double plm_uncertainty_quantile(const struct plm_token_uncertainty *tokens, int n, bool entropy, double q)
{
    double small[64];
    double *values = n <= 64 ? small : malloc((size_t)n * sizeof *values);
    if (!values || n < 1)
        return NAN;
    for (int i = 0; i < n; i++)
        values[i] = measure(&tokens[i], entropy);
    double result = uncertainty_sorted_quantile(values, n, q < 0 ? 0 : q > 1 ? 1 : q);
    if (values != small)
        free(values);
    return result;
}

double plm_uncertainty_mean(const struct plm_token_uncertainty *tokens, int n, bool entropy)
{
    if (n < 1)
        return NAN;
    double sum = 0.0;
    for (int i = 0; i < n; i++)
        sum += measure(&tokens[i], entropy);
    return sum / n;
}
