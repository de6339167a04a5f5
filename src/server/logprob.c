#include "server/logprob.h"

#include "eval/log_sum_exp.h"

#include <math.h>

/* Inserts (token, logit) into the descending list top[0..*n) of at most max entries. */
static void keep_if_top(int32_t token, float logit, int32_t *top_token, float *top_logit, int *n, int max)
{
    if (*n == max && !(logit > top_logit[max - 1]))
        return;
    int at = *n < max ? (*n)++ : max - 1;
    while (at > 0 && logit > top_logit[at - 1]) {
        top_token[at] = top_token[at - 1];
        top_logit[at] = top_logit[at - 1];
        at--;
    }
    top_token[at] = token;
    top_logit[at] = logit;
}

/* A log-probability that JSON can carry: -inf (a masked token) becomes a large negative number. */
static float finite_logprob(double lp) { return isfinite(lp) ? (float)lp : -9999.0f; }

void token_logprob_compute(const float *logits, int n_vocab, int32_t token, int n_top, struct token_logprob *out)
{
    float max;
    double log_sum = log_sum_exp(logits, n_vocab, &max);

    out->token = token;
    out->logprob = finite_logprob(((double)logits[token] - max) - log_sum);
    out->n_top = 0;
    for (int i = 0; i < n_vocab && n_top > 0; i++)
        keep_if_top(i, logits[i], out->top_token, out->top_logprob, &out->n_top, n_top);
    for (int i = 0; i < out->n_top; i++)
        out->top_logprob[i] = finite_logprob(((double)out->top_logprob[i] - max) - log_sum);
}
