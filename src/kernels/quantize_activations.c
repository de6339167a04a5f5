/*
 * 8-bit quantization of activations (see quantize_activations.h). Plain C:
 * it runs once per matrix product over n_tokens * n_in values, next to the
 * n_tokens * n_in * n_out multiply-adds of the product itself, and every
 * instruction set shares it, so SIMD kernels see the same quants everywhere.
 * Its loops are lane-wise, and compiled for AVX2 and AVX-512 too
 * (vector_clones.h): the same quants from every version, a prompt's share of
 * time down from a tenth.
 */
#include "kernels/quantize_activations.h"

#include "kernels/vector_clones.h"

#include <float.h>
#include <stdbool.h>
#include <math.h>

/* Blocks whose largest magnitude is below this are stored as zeros: 127 / max
 * would overflow a float, and such values are far below anything a model
 * computes with. */
#define TINY_BLOCK_MAX 1e-30f

/* Quantizes n values (a multiple of 16) with one shared scale; returns the
 * scale d, stores q[i] = round(x[i] / d), in [-127, 127], and the sum of
 * each 16 quants in group_sums. (The sums are taken here, not read back from
 * q: a vector load of bytes just stored one by one waits for the stores.)
 * Always inlined, so that each clone of its callers compiles it for its own
 * instruction set. */
static inline __attribute__((always_inline)) float quantize_block(const float *restrict x, int8_t *restrict q, int n,
                                                                  int *restrict group_sums)
{
    /* The largest magnitude, 16 lanes at a time: a maximum is the same in
     * any order. */
    float lane_max[16] = {0};
    bool lane_finite[16];
    for (int k = 0; k < 16; k++)
        lane_finite[k] = true;
    for (int i = 0; i < n; i += 16)
        for (int k = 0; k < 16; k++) {
            const float magnitude = fabsf(x[i + k]);
            lane_max[k] = magnitude > lane_max[k] ? magnitude : lane_max[k];
            lane_finite[k] &= magnitude <= FLT_MAX; /* false for infinities and NaNs */
        }
    float max = 0.0f;
    bool finite = true;
    for (int k = 0; k < 16; k++) {
        max = lane_max[k] > max ? lane_max[k] : max;
        finite &= lane_finite[k];
    }
    if (!finite || max < TINY_BLOCK_MAX) {
        /* Zero quants. With a NaN or infinity, a non-finite scale turns
         * every dot product with this block into NaN, as the float path
         * would; a block of near-zeros gets scale 0. */
        for (int i = 0; i < n; i++)
            q[i] = 0;
        for (int g = 0; g < n / 16; g++)
            group_sums[g] = 0;
        return finite ? 0.0f : NAN;
    }
    const float d = max / 127.0f;
    const float inverse = 127.0f / max;
    for (int i = 0; i < n; i += 16) {
        int rounded[16], sum = 0;
        for (int k = 0; k < 16; k++) {
            /* |x * inverse| <= 127 up to rounding; round half away from zero,
             * then clamp so rounding can never leave the int8 range. */
            float scaled = x[i + k] * inverse;
            rounded[k] = (int)(scaled + (scaled >= 0.0f ? 0.5f : -0.5f));
            rounded[k] = rounded[k] > 127 ? 127 : rounded[k] < -127 ? -127 : rounded[k];
        }
        for (int k = 0; k < 16; k++)
            q[i + k] = (int8_t)rounded[k];
        for (int k = 0; k < 16; k++)
            sum += rounded[k];
        group_sums[i / 16] = sum;
    }
    return d;
}

VECTOR_CLONES void plm_quantize_activations_q8(const float *x, struct plm_act_q8 *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PLM_QK; b++) {
        struct plm_act_q8 *block = &blocks[b];
        int group_sums[PLM_QK / 16];
        block->d = quantize_block(x + b * PLM_QK, block->qs, PLM_QK, group_sums);
        block->sum = block->d * (float)(group_sums[0] + group_sums[1]);
    }
}

VECTOR_CLONES void plm_quantize_activations_q8_pairs(const float *x, struct plm_act_q8_pair *pairs, int64_t n)
{
    const int64_t n_blocks = n / PLM_QK;
    for (int64_t b = 0; b < n_blocks; b++) {
        struct plm_act_q8 block;
        plm_quantize_activations_q8(x + b * PLM_QK, &block, PLM_QK);
        struct plm_act_q8_pair *pair = &pairs[b / 2];
        const int half = (int)(b % 2);
        for (int i = 0; i < PLM_QK; i++)
            pair->qs[half * PLM_QK + i] = (uint8_t)(block.qs[i] + 128);
        for (int lane = 0; lane < 8; lane++)
            pair->d[half * 8 + lane] = block.d;
        pair->sum[half] = block.sum;
    }
    if (n_blocks % 2) { /* the zero block that completes the last pair */
        struct plm_act_q8_pair *pair = &pairs[n_blocks / 2];
        for (int i = PLM_QK; i < 2 * PLM_QK; i++)
            pair->qs[i] = 128;
        for (int lane = 8; lane < 16; lane++)
            pair->d[lane] = 0.0f;
        pair->sum[1] = 0.0f;
    }
}

VECTOR_CLONES void plm_quantize_activations_q8_K(const float *x, struct plm_act_q8_K *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PLM_QK_K; b++) {
        struct plm_act_q8_K *block = &blocks[b];
        int group_sums[PLM_QK_K / 16];
        block->d = quantize_block(x + b * PLM_QK_K, block->qs, PLM_QK_K, group_sums);
        for (int g = 0; g < PLM_QK_K / 16; g++)
            block->bsums[g] = (int16_t)group_sums[g];
    }
}
