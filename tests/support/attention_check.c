#include "attention_check.h"

#include "kernels/attention.h"
#include "kernels/exp_lanes.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCK PLM_ATTENTION_BLOCK

static const int head_dims[] = {8, 12, 24, 64, 80, 128};
static const int row_counts[] = {1, 3, 4, 5, 7, 9, 28};
static const int position_counts[] = {1, 5, 16};

static uint64_t rng_state = 7;

static float random_float(void)
{
    rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(rng_state >> 40) / (float)(1 << 23) - 1.0f; /* [-1, 1) */
}

static float *random_floats(size_t n)
{
    float *x = malloc(n * sizeof *x);
    if (!x)
        exit(2);
    for (size_t i = 0; i < n; i++)
        x[i] = random_float();
    return x;
}

/* The first differing float of n, or -1. */
static long first_difference(const float *got, const float *want, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (memcmp(&got[i], &want[i], sizeof(float)) != 0)
            return (long)i;
    return -1;
}

static int check_scores(int head_dim, int n_rows, char *why, size_t why_size)
{
    float *queries = random_floats((size_t)n_rows * head_dim), *keys_t = random_floats((size_t)head_dim * BLOCK);
    float *got = random_floats((size_t)n_rows * BLOCK), *want = random_floats((size_t)n_rows * BLOCK);
    float scale = 0.125f + random_float() / 16;
    plm_attention_scores(queries, n_rows, head_dim, keys_t, scale, got);
    for (int r = 0; r < n_rows; r++)
        for (int j = 0; j < BLOCK; j++) {
            float sum = 0.0f;
            for (int d = 0; d < head_dim; d++)
                sum += queries[r * head_dim + d] * keys_t[d * BLOCK + j];
            want[r * BLOCK + j] = sum * scale;
        }
    long bad = first_difference(got, want, (size_t)n_rows * BLOCK);
    if (bad >= 0)
        snprintf(why, why_size, "scores, head_dim %d, %d rows: score %ld is %.9g, the loop gives %.9g", head_dim,
                 n_rows, bad, got[bad], want[bad]);
    free(queries), free(keys_t), free(got), free(want);
    return bad >= 0;
}

static int check_values(int head_dim, int n_rows, int n_pos, char *why, size_t why_size)
{
    size_t stride = (size_t)head_dim * 3 + 5, n_out = (size_t)n_rows * head_dim;
    float *weights = random_floats((size_t)n_rows * BLOCK), *values = random_floats((size_t)BLOCK * stride);
    float *got = random_floats(n_out), *want = malloc(n_out * sizeof *want);
    if (!want)
        exit(2);
    memcpy(want, got, n_out * sizeof *want);
    plm_attention_values(got, n_rows, head_dim, weights, values, stride, n_pos);
    for (int r = 0; r < n_rows; r++)
        for (int d = 0; d < head_dim; d++)
            for (int j = 0; j < n_pos; j++)
                want[r * head_dim + d] += weights[r * BLOCK + j] * values[j * stride + d];
    long bad = first_difference(got, want, n_out);
    if (bad >= 0)
        snprintf(why, why_size, "values, head_dim %d, %d rows, %d positions: output %ld is %.9g, the loop gives %.9g",
                 head_dim, n_rows, n_pos, bad, got[bad], want[bad]);
    free(weights), free(values), free(got), free(want);
    return bad >= 0;
}

/* The running softmax of one row from a running max of `max_before`
 * (-infinity: the row's first block), against the same steps one lane at a
 * time, bit for bit, and against expf within 4e-7. */
static int check_softmax(int head_dim, int n, float max_before, char *why, size_t why_size)
{
    float *scores = random_floats(BLOCK), *want = malloc(BLOCK * sizeof *want);
    float *out = random_floats((size_t)head_dim), *want_out = malloc((size_t)head_dim * sizeof *want_out);
    if (!want || !want_out)
        exit(2);
    for (int j = 0; j < BLOCK; j++)
        scores[j] *= 20.0f;
    float max = max_before, sum = isinf(max_before) ? 0.0f : 3.5f, want_max = max, want_sum = sum;
    if (isinf(max_before))
        memset(out, 0, (size_t)head_dim * sizeof *out);
    memcpy(want, scores, BLOCK * sizeof *want);
    memcpy(want_out, out, (size_t)head_dim * sizeof *want_out);

    plm_attention_softmax(scores, n, &max, &sum, out, head_dim);
    float block_max = want[0]; /* the max is exact in any order */
    for (int j = 1; j < n; j++)
        block_max = want[j] > block_max ? want[j] : block_max;
    if (block_max > want_max) {
        float rescale = exp_lane(want_max - block_max);
        want_sum *= rescale;
        for (int d = 0; d < head_dim; d++)
            want_out[d] *= rescale;
        want_max = block_max;
    }
    float exact[BLOCK];
    for (int j = 0; j < BLOCK; j++) {
        exact[j] = expf(want[j] - want_max);
        want[j] = exp_lane(want[j] - want_max);
    }
    float tree[BLOCK]; /* the sum: lanes j and j + 8, then j + 4, ... */
    for (int j = 0; j < BLOCK; j++)
        tree[j] = j < n ? want[j] : 0.0f;
    for (int width = BLOCK / 2; width >= 1; width /= 2)
        for (int j = 0; j < width; j++)
            tree[j] += tree[j + width];
    want_sum += tree[0];

    long bad = first_difference(scores, want, BLOCK), bad_out = first_difference(out, want_out, (size_t)head_dim);
    int failed = 1;
    if (bad >= 0)
        snprintf(why, why_size, "softmax, %d scores, max %g before: weight %ld is %.9g, the loop gives %.9g", n,
                 max_before, bad, scores[bad], want[bad]);
    else if (bad_out >= 0 || memcmp(&sum, &want_sum, sizeof sum) || memcmp(&max, &want_max, sizeof max))
        snprintf(why, why_size, "softmax, %d scores, max %g before: sum %.9g, max %.9g, output %ld differ from the loop's",
                 n, max_before, sum, max, bad_out);
    else
        failed = 0;
    for (int j = 0; j < n && !failed; j++)
        if (fabsf(scores[j] - exact[j]) > 4e-7f * exact[j] + 1e-37f) {
            snprintf(why, why_size, "softmax: weight %d is %.9g, expf gives %.9g", j, scores[j], exact[j]);
            failed = 1;
        }
    free(scores), free(want), free(out), free(want_out);
    return failed;
}

/* Keeps the first failure's message. */
static void count(int failed, const char *message, int *failures, char *why, size_t why_size)
{
    if (failed && (*failures)++ == 0)
        snprintf(why, why_size, "%s", message);
}

int attention_check(char *why, size_t why_size)
{
    int failures = 0;
    char message[256];
    why[0] = '\0';
    for (size_t h = 0; h < sizeof head_dims / sizeof head_dims[0]; h++)
        for (size_t r = 0; r < sizeof row_counts / sizeof row_counts[0]; r++) {
            int failed = check_scores(head_dims[h], row_counts[r], message, sizeof message);
            count(failed, message, &failures, why, why_size);
            for (size_t p = 0; p < sizeof position_counts / sizeof position_counts[0]; p++) {
                failed = check_values(head_dims[h], row_counts[r], position_counts[p], message, sizeof message);
                count(failed, message, &failures, why, why_size);
            }
        }
    const float maxes_before[] = {-INFINITY, -30.0f, 0.0f, 30.0f};
    for (size_t h = 0; h < sizeof head_dims / sizeof head_dims[0]; h++)
        for (size_t p = 0; p < sizeof position_counts / sizeof position_counts[0]; p++)
            for (size_t m = 0; m < sizeof maxes_before / sizeof maxes_before[0]; m++) {
                int failed = check_softmax(head_dims[h], position_counts[p], maxes_before[m], message, sizeof message);
                count(failed, message, &failures, why, why_size);
            }
    return failures;
}
