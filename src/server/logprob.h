/*
 * Log-probabilities of generated tokens, for the `logprobs` and
 * `top_logprobs` request fields. They are those of the model's own
 * distribution (a softmax over the raw logits), before temperature, top-k or
 * top-p reshape it, as OpenAI reports them.
 */
#ifndef PLM_SERVER_LOGPROB_H
#define PLM_SERVER_LOGPROB_H

#include "server/request.h"

#include <stddef.h>
#include <stdint.h>

struct token_logprob {
    int32_t token;
    float logprob;
    int n_top;                                    /* alternatives, most likely first */
    int32_t top_token[REQUEST_MAX_TOP_LOGPROBS];
    float top_logprob[REQUEST_MAX_TOP_LOGPROBS];
    size_t text_offset;                           /* where the token's text starts in the output */
};

/* Fills *out for `token` chosen from `logits` (n_vocab floats), with the n_top
 * (0..REQUEST_MAX_TOP_LOGPROBS) most likely tokens; ties keep the lower id first. */
void token_logprob_compute(const float *logits, int n_vocab, int32_t token, int n_top, struct token_logprob *out);

#endif
