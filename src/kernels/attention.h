/*
 * The arithmetic of attention, one block of PLM_ATTENTION_BLOCK cached
 * positions at a time, for several query rows at once (the query heads that
 * share a key-value head, for a tile of tokens). The model's attention
 * (model/attention.c) fetches the blocks from the cache and keeps each row's
 * running max and sum; these steps do the multiply-adds and the softmax.
 *
 * Every score, weight sum and output element is one sum in a fixed order
 * (of dimensions for a score, of a block's lanes for a weight sum, of
 * positions for an output), whichever rows share a call: a token gets the
 * same bits alone or in a prompt.
 */
#ifndef PLM_KERNELS_ATTENTION_H
#define PLM_KERNELS_ATTENTION_H

#include <stddef.h>

/* Positions per block: one AVX-512 register of scores. */
#define PLM_ATTENTION_BLOCK 16

/* scores[r][j] = scale * (queries[r] . key j) for r < n_rows and
 * j < PLM_ATTENTION_BLOCK. queries holds n_rows rows of head_dim floats;
 * keys_t holds the block's keys transposed, keys_t[d * PLM_ATTENTION_BLOCK + j]
 * being dimension d of key j, so one vector holds dimension d of every key. */
void plm_attention_scores(const float *queries, int n_rows, int head_dim, const float *keys_t, float scale,
                          float *scores);

/* out[r][d] += sum over j < n_pos of weights[r][j] * values[j][d], for
 * r < n_rows and d < head_dim. out and weights have n_rows rows (of head_dim
 * and PLM_ATTENTION_BLOCK floats); value j starts at values + j * value_stride. */
void plm_attention_values(float *out, int n_rows, int head_dim, const float *weights, const float *values,
                          size_t value_stride, int n_pos);

/* Folds the first n of a row's PLM_ATTENTION_BLOCK scores into its running
 * softmax: all the block's scores become weights e^(score - max), max being
 * the largest of the row's first n scores so far, and the sum of the first n
 * weights (a halving tree: lanes j and j + 8, then j + 4, ...) is added to
 * *sum. When the block raises the max, *sum and the head_dim outputs so far
 * are scaled down to it. A row starts with *max = -infinity and *sum = 0. */
void plm_attention_softmax(float *scores, int n, float *max, float *sum, float *out, int head_dim);

#endif
