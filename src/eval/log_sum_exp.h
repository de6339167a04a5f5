/*
 * The normalizer of a softmax over logits, shared by everything that turns
 * logits into log-probabilities (perplexity, the gap metrics, calibration,
 * the server's logprobs) so they all agree to the last bit.
 */
#ifndef PLM_EVAL_LOG_SUM_EXP_H
#define PLM_EVAL_LOG_SUM_EXP_H

/* For n >= 1 logits z: sets *max = max z and returns log sum_i exp(z[i] - max),
 * in double. Then log p(i) = (z[i] - max) - result. The two parts stay apart
 * because adding them first would round away the precision of large logits;
 * subtracting the maximum keeps exp() from overflowing. */
double log_sum_exp(const float *logits, int n, float *max);

#endif
