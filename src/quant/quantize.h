/*
 * Quantization with per-element importance (an "imatrix").
 *
 * Rounding every weight to its nearest level is rarely the best encoding: the
 * scale of each block trades error on some elements against others. Given the
 * importance of each element (typically the mean square of the activation it
 * multiplies, measured on sample text), the scale search minimises the
 * importance-weighted squared error instead of the plain one, which is what
 * the model's output actually feels.
 */
#ifndef PLM_QUANT_QUANTIZE_H
#define PLM_QUANT_QUANTIZE_H

#include <stdint.h>

/* Encodes n floats (a multiple of the type's block size) of one row, like
 * plm_quantize_row, weighing element i's squared error by importance[i]
 * (n non-negative entries). With importance == NULL this is exactly
 * plm_quantize_row. F32, F16, BF16 and Q8_0 have no scale search and ignore
 * the importance. Deterministic. */
void plm_quantize_row_weighted(int type, const float *src, void *dst, int64_t n,
                               const float *importance);

/* The type a matrix with rows of n_in elements is actually stored in when
 * `type` is asked for: `type` itself when n_in is a multiple of its block
 * size, else the nearest more precise type whose block fits (as llama.cpp:
 * Q2_K, Q3_K -> Q4_0; Q4_K -> Q5_0; Q5_K -> Q5_1; Q6_K -> Q8_0; then F16).
 * quantize and calibrate's sensitivity measurement share this rule. */
int plm_quant_storage_type(int type, int64_t n_in);

#endif
