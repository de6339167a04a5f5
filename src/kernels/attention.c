/*
 * Attention's multiply-adds and softmax (see attention.h), written with the
 * compiler's vector types (GCC and clang): a block_vector holds 16 floats,
 * one per position of a block (scores, weights) or per dimension of a head
 * (outputs). The multiply-adds are lane-wise, never a sum across lanes; the
 * softmax's max and sum across a block's lanes go by a fixed halving tree.
 * So the versions for each instruction set (vector_clones.h) do the same
 * arithmetic in each lane: AVX-512 in one register, AVX2 in two, the
 * baseline and NEON in four. The lanes are the scalar twin.
 *
 * Four rows at a time: each lane's sum waits on its previous addition, so
 * one row alone would leave the adders idle for most of every step; four
 * independent rows fill them.
 */
#include "kernels/attention.h"

#include "kernels/exp_lanes.h"
#include "kernels/vector_clones.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#define BLOCK PLM_ATTENTION_BLOCK
#define ROWS 4

/* Copied in and out with memcpy: the rows are only float-aligned. */
typedef float block_vector __attribute__((vector_size(BLOCK * sizeof(float))));

/* Scores of n_rows (ROWS or 1: a constant once inlined) query rows. */
static inline void score_rows(const float *queries, const int n_rows, int head_dim, const float *keys_t,
                              float scale, float *scores)
{
    block_vector sum[ROWS] = {0};
    for (int d = 0; d < head_dim; d++) {
        block_vector keys;
        memcpy(&keys, keys_t + d * BLOCK, sizeof keys);
        for (int r = 0; r < n_rows; r++)
            sum[r] += queries[r * head_dim + d] * keys;
    }
    for (int r = 0; r < n_rows; r++) {
        block_vector scaled = sum[r] * scale;
        memcpy(scores + r * BLOCK, &scaled, sizeof scaled);
    }
}

VECTOR_CLONES void plm_attention_scores(const float *queries, int n_rows, int head_dim, const float *keys_t,
                                        float scale, float *scores)
{
    int r = 0;
    for (; r + ROWS <= n_rows; r += ROWS)
        score_rows(queries + (size_t)r * head_dim, ROWS, head_dim, keys_t, scale, scores + (size_t)r * BLOCK);
    for (; r < n_rows; r++)
        score_rows(queries + (size_t)r * head_dim, 1, head_dim, keys_t, scale, scores + (size_t)r * BLOCK);
}

/* Dimensions [d0, d0 + 16) of the outputs of n_rows rows (ROWS or 1). */
static inline void value_vectors(float *out, const int n_rows, int head_dim, int d0, const float *weights,
                                 const float *values, size_t value_stride, int n_pos)
{
    block_vector sum[ROWS];
    for (int r = 0; r < n_rows; r++)
        memcpy(&sum[r], out + r * head_dim + d0, sizeof sum[r]);
    for (int j = 0; j < n_pos; j++) {
        block_vector value;
        memcpy(&value, values + j * value_stride + d0, sizeof value);
        for (int r = 0; r < n_rows; r++)
            sum[r] += weights[r * BLOCK + j] * value;
    }
    for (int r = 0; r < n_rows; r++)
        memcpy(out + r * head_dim + d0, &sum[r], sizeof sum[r]);
}

/* Dimension d of the outputs of n_rows rows: the same sums, one lane. */
static void value_lane(float *out, int n_rows, int head_dim, int d, const float *weights, const float *values,
                       size_t value_stride, int n_pos)
{
    for (int r = 0; r < n_rows; r++) {
        float sum = out[r * head_dim + d];
        for (int j = 0; j < n_pos; j++)
            sum += weights[r * BLOCK + j] * values[j * value_stride + d];
        out[r * head_dim + d] = sum;
    }
}

VECTOR_CLONES void plm_attention_values(float *out, int n_rows, int head_dim, const float *weights,
                                        const float *values, size_t value_stride, int n_pos)
{
    int d = 0;
    for (; d + BLOCK <= head_dim; d += BLOCK) {
        int r = 0;
        for (; r + ROWS <= n_rows; r += ROWS)
            value_vectors(out + (size_t)r * head_dim, ROWS, head_dim, d, weights + (size_t)r * BLOCK, values,
                          value_stride, n_pos);
        for (; r < n_rows; r++)
            value_vectors(out + (size_t)r * head_dim, 1, head_dim, d, weights + (size_t)r * BLOCK, values,
                          value_stride, n_pos);
    }
    for (; d < head_dim; d++)
        value_lane(out, n_rows, head_dim, d, weights, values, value_stride, n_pos);
}

typedef int32_t block_ints __attribute__((vector_size(BLOCK * sizeof(int32_t))));
typedef float half_vector __attribute__((vector_size(BLOCK / 2 * sizeof(float))));
typedef float quarter_vector __attribute__((vector_size(BLOCK / 4 * sizeof(float))));
typedef float pair_vector __attribute__((vector_size(2 * sizeof(float))));

/* The lanes before n: all ones there, zeros after. */
static void first_lanes(int n, block_ints *keep)
{
    const block_ints lane = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    *keep = lane < n;
}

/* *a = the larger of *a and *b in each lane. */
static void keep_larger(block_vector *a, const block_vector *b)
{
    block_ints b_larger = *b > *a;
    *a = (block_vector)(((block_ints)*a & ~b_larger) | ((block_ints)*b & b_larger));
}

/* The largest of the first n of a block's scores and the sum of the first n
 * weights, by halving trees in registers: lanes j and j + 8, then j + 4, j +
 * 2, j + 1 (16 dependent additions through memory took over a third of the
 * softmax's time). The lanes past n take -infinity or 0. */
static float block_max(const float *scores, int n)
{
    block_vector v, minus_infinity = (block_vector){0} - INFINITY;
    memcpy(&v, scores, sizeof v);
    block_ints keep;
    first_lanes(n, &keep);
    v = (block_vector)(((block_ints)v & keep) | ((block_ints)minus_infinity & ~keep));
    block_vector high = __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15, 0, 1, 2, 3, 4, 5, 6, 7);
    keep_larger(&v, &high);
    high = __builtin_shufflevector(v, v, 4, 5, 6, 7, 0, 1, 2, 3, 4, 5, 6, 7, 0, 1, 2, 3);
    keep_larger(&v, &high);
    high = __builtin_shufflevector(v, v, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1, 2, 3, 0, 1);
    keep_larger(&v, &high);
    high = __builtin_shufflevector(v, v, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0);
    keep_larger(&v, &high);
    return v[0];
}

static float block_sum(const block_vector *weights, int n)
{
    block_ints keep;
    first_lanes(n, &keep);
    block_vector v = (block_vector)((block_ints)*weights & keep);
    half_vector h = __builtin_shufflevector(v, v, 0, 1, 2, 3, 4, 5, 6, 7) +
                    __builtin_shufflevector(v, v, 8, 9, 10, 11, 12, 13, 14, 15);
    quarter_vector q = __builtin_shufflevector(h, h, 0, 1, 2, 3) + __builtin_shufflevector(h, h, 4, 5, 6, 7);
    pair_vector p = __builtin_shufflevector(q, q, 0, 1) + __builtin_shufflevector(q, q, 2, 3);
    return p[0] + p[1];
}

VECTOR_CLONES void plm_attention_softmax(float *scores, int n, float *max, float *sum, float *out, int head_dim)
{
    float new_max = block_max(scores, n);
    if (new_max > *max) {
        float rescale = exp_lane(*max - new_max); /* e^-87, not 0, at the first block: out and sum are 0 */
        *sum *= rescale;
        for (int d = 0; d < head_dim; d++)
            out[d] *= rescale;
        *max = new_max;
    }
    block_vector weights;
    memcpy(&weights, scores, sizeof weights);
    weights -= *max;
    exp_lanes(&weights);
    memcpy(scores, &weights, sizeof weights);
    *sum += block_sum(&weights, n);
}
