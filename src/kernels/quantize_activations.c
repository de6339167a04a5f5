/*
 * 8-bit quantization of activations (see quantize_activations.h). Plain C:
 * it runs once per matrix product over n_tokens * n_in values, next to the
 * n_tokens * n_in * n_out multiply-adds of the product itself, and every
 * instruction set shares it, so SIMD kernels see the same quants everywhere.
 */
#include "kernels/quantize_activations.h"

#include <float.h>
#include <stdbool.h>
#include <math.h>

/* Blocks whose largest magnitude is below this are stored as zeros: 127 / max
 * would overflow a float, and such values are far below anything a model
 * computes with. */
#define TINY_BLOCK_MAX 1e-30f

/* Quantizes n values with one shared scale; returns the scale d and stores
 * q[i] = round(x[i] / d), in [-127, 127]. */
static float quantize_block(const float *x, int8_t *q, int n)
{
    float max = 0.0f;
    bool finite = true;
    for (int i = 0; i < n; i++) {
        const float magnitude = fabsf(x[i]);
        max = magnitude > max ? magnitude : max;
        finite &= magnitude <= FLT_MAX; /* false for infinities and NaNs */
    }
    if (!finite) {
        /* NaN or infinity: zero quants and a non-finite scale turn every dot
         * product with this block into NaN, as the float path would. */
        for (int i = 0; i < n; i++)
            q[i] = 0;
        return NAN;
    }
    if (max < TINY_BLOCK_MAX) {
        for (int i = 0; i < n; i++)
            q[i] = 0;
        return 0.0f;
    }
    const float d = max / 127.0f;
    const float inverse = 127.0f / max;
    for (int i = 0; i < n; i++) {
        /* |x * inverse| <= 127 up to rounding; round half away from zero,
         * then clamp so rounding can never leave the int8 range. */
        float scaled = x[i] * inverse;
        int rounded = (int)(scaled + (scaled >= 0.0f ? 0.5f : -0.5f));
        q[i] = (int8_t)(rounded > 127 ? 127 : rounded < -127 ? -127 : rounded);
    }
    return d;
}

void plm_quantize_activations_q8(const float *x, struct plm_act_q8 *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PLM_QK; b++) {
        struct plm_act_q8 *block = &blocks[b];
        block->d = quantize_block(x + b * PLM_QK, block->qs, PLM_QK);
        int sum = 0;
        for (int i = 0; i < PLM_QK; i++)
            sum += block->qs[i];
        block->sum = block->d * (float)sum;
    }
}

void plm_quantize_activations_q8_pairs(const float *x, struct plm_act_q8_pair *pairs, int64_t n)
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

void plm_quantize_activations_q8_K(const float *x, struct plm_act_q8_K *blocks, int64_t n)
{
    for (int64_t b = 0; b < n / PLM_QK_K; b++) {
        struct plm_act_q8_K *block = &blocks[b];
        block->d = quantize_block(x + b * PLM_QK_K, block->qs, PLM_QK_K);
        for (int s = 0; s < PLM_QK_K / 16; s++) {
            int sum = 0;
            for (int i = 16 * s; i < 16 * s + 16; i++)
                sum += block->qs[i];
            block->bsums[s] = (int16_t)sum;
        }
    }
}
