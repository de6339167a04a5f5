/*
 * Internals of the gap measurement (plm_gap_save_reference, plm_gap_compare in
 * pocketlm.h): the reference file and the per-position metrics, declared here
 * so the tests can check each one against a hand computation.
 */
#ifndef PLM_EVAL_GAP_H
#define PLM_EVAL_GAP_H

#include "core/mapped_file.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/*
 * The reference file: the tokens and the reference model's log-probabilities,
 * in the host's byte order (little-endian on every target pocketlm builds for).
 *
 *   offset  type     field
 *   0       char[8]  magic      "PLMGAPRF"
 *   8       uint32   version    1
 *   12      uint32   n_vocab    >= 2
 *   16      uint32   n_ctx      chunk length, >= 4
 *   20      uint32   n_chunks   >= 1
 *   24      int32    tokens[n_chunks][n_ctx]       each chunk as decoded, BOS first
 *   ...     float    log_probs[n_chunks][n_scored][n_vocab]
 *
 * n_scored = n_ctx - 1 - n_ctx/2 rows per chunk: row j is the log-softmax of
 * the reference's logits at chunk position n_ctx/2 + j, the distribution of
 * the token at position n_ctx/2 + j + 1. The size of the file is exactly what
 * the counts imply; anything else is refused.
 */
#define GAP_REF_MAGIC "PLMGAPRF"
#define GAP_REF_VERSION 1
#define GAP_REF_HEADER_BYTES 24

struct gap_reference {
    struct mapped_file file;
    int n_vocab;
    int n_ctx;
    int n_chunks;
    int n_scored;             /* rows per chunk */
    const int32_t *tokens;    /* [n_chunks][n_ctx], inside the mapping */
    const float *log_probs;   /* [n_chunks][n_scored][n_vocab], inside the mapping */
};

/* Maps and validates a reference file: PLM_ERR_IO if it cannot be read,
 * PLM_ERR_FORMAT (naming the problem) if it is not a well-formed one. */
int gap_reference_open(struct gap_reference *ref, const char *path);
void gap_reference_close(struct gap_reference *ref);

/* Scored positions of a chunk of n_ctx tokens. */
int gap_scored_per_chunk(int n_ctx);

/* log_probs[i] = logits[i] - log(sum_v exp(logits[v])), in double. */
void gap_log_softmax(const float *logits, int n_vocab, double *log_probs);

/* Index of the largest value; ties go to the lowest index. */
int gap_argmax(const double *values, int n);

/* KL(ref || model) = sum_v p_ref(v) (log p_ref(v) - log p_model(v)), in nats,
 * from log-probabilities; tokens the reference gives probability 0 add 0. */
double gap_kl_divergence(const double *ref_log_probs, const double *model_log_probs, int n_vocab);

/* What one scored position contributes. */
struct gap_position {
    double kld;
    bool same_top1;   /* both distributions' argmax (lowest index on ties) agree */
    double p_ref;     /* probability each gives the correct next token */
    double p_model;
};
void gap_score_position(const double *ref_log_probs, const double *model_log_probs, int n_vocab,
                        int32_t correct, struct gap_position *position);

/* Whether a stored row is a log-probability distribution: no NaN, no value
 * above 0, probabilities summing to 1 within float rounding. */
bool gap_is_log_distribution(const float *row, int n_vocab);

/* The q-quantile (0 <= q <= 1) of n >= 1 values sorted ascending, by linear
 * interpolation between order statistics (Hyndman and Fan's type 7, NumPy's
 * default): with h = q (n - 1), the value is x[floor h] + (h - floor h)
 * (x[floor h + 1] - x[floor h]). */
double gap_quantile(const double *sorted, size_t n, double q);

#endif
