/*
 * How sure the device model is of its own answer, token by token (public
 * side: plm_token_uncertainty, plm_uncertainty_quantile in pocketlm.h). The
 * router and `pocketlm route-eval` both go through these functions, so a
 * threshold calibrated offline means the same thing at run time.
 */
#ifndef PLM_ROUTING_UNCERTAINTY_H
#define PLM_ROUTING_UNCERTAINTY_H

#include "pocketlm.h"

/* Sorts values[0..n) ascending in place and returns their q-quantile by
 * linear interpolation (gap_quantile: NumPy's default, Hyndman and Fan's
 * type 7). n >= 1. */
double uncertainty_sorted_quantile(double *values, int n, double q);

/* The first tokens of an answer, measured as they are sampled while an
 * "uncertain" rule waits for them (plm_answer, the server's slots). A zeroed
 * struct is empty; n = 0 empties it for the next answer, keeping the array. */
struct held_tokens {
    struct plm_token_uncertainty *items; /* [cap] */
    int n, cap;
};

/* Measures the token chosen from logits (plm_token_uncertainty) and appends
 * it. PLM_ERR_NOMEM or plm_token_uncertainty's error, message set; nothing is
 * appended then. */
int held_tokens_add(struct held_tokens *held, const float *logits, int n_vocab, int32_t chosen);
void held_tokens_free(struct held_tokens *held);

#endif
