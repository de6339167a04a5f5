/*
 * Activations quantized to 8 bits, so the SIMD kernels can multiply them with
 * quantized weights using integer dot products (as ggml does with its Q8_1
 * and Q8_K blocks): a block of the weights times the matching block of the
 * activations is an exact integer sum, scaled once by d_weights * d_x.
 *
 * Each block keeps its own scale d = max|x| / 127 and quants
 * q = round(x / d) in [-127, 127], so an element is off by at most d / 2 =
 * max|x| / 254: about 0.4% of the block's largest value. 8-bit activations
 * are what make the integer kernels fast; the float types (F32, F16, BF16)
 * keep float activations.
 */
#ifndef PLM_KERNELS_QUANTIZE_ACTIVATIONS_H
#define PLM_KERNELS_QUANTIZE_ACTIVATIONS_H

#include "tensor/quant_blocks.h"

#include <stdint.h>

/* 32 activations, for the 32-element weight blocks (Q4_0 ... Q8_0).
 * x[i] ~= d * qs[i]. sum = d * (qs[0] + ... + qs[31]) serves the formats with
 * an offset (x = d q + m): the offset's share of a dot product is m * sum. */
struct plm_act_q8 {
    float d;
    float sum;
    int8_t qs[PLM_QK];
};

/* Two consecutive struct plm_act_q8 blocks as the AVX-512 kernels of the
 * 32-element formats read them, so that a token's step over a pair of weight
 * blocks is one vpdpbusd, one convert and two multiply-adds:
 *   - vpdpbusd multiplies unsigned bytes by signed ones, so the quants are
 *     stored plus 128 (in [1, 255]) and the weights take the signed side;
 *     the kernel subtracts 128 * (sum of the weights) once per weight block;
 *   - the scales are spread over the 16 lanes of the pair's dot products.
 * A row with an odd number of blocks ends with a pair whose second block is
 * zeros (quants 128, scale 0). */
struct plm_act_q8_pair {
    uint8_t qs[2 * PLM_QK]; /* quant + 128 of block 0, then of block 1 */
    float d[16];            /* block 0's scale in lanes 0-7, block 1's in 8-15 */
    float sum[2];           /* the blocks' sums, as in struct plm_act_q8 */
};

/* 256 activations, for the K-quant super-blocks. x[i] ~= d * qs[i].
 * bsums[s] = qs[16 s] + ... + qs[16 s + 15]: the K-quants' mins and quant
 * offsets (q - 32, q - 4) act on whole 16-element sub-blocks, so their share
 * of a dot product only needs these sums. */
struct plm_act_q8_K {
    float d;
    int8_t qs[PLM_QK_K];
    int16_t bsums[PLM_QK_K / 16];
};

/* Quantizes n floats (a multiple of 32) to n / 32 blocks. */
void plm_quantize_activations_q8(const float *x, struct plm_act_q8 *blocks, int64_t n);

/* Quantizes n floats (a multiple of 32) to (n / 32 + 1) / 2 pairs of
 * blocks, with the quants of plm_quantize_activations_q8. */
void plm_quantize_activations_q8_pairs(const float *x, struct plm_act_q8_pair *pairs, int64_t n);

/* Quantizes n floats (a multiple of 256) to n / 256 blocks. */
void plm_quantize_activations_q8_K(const float *x, struct plm_act_q8_K *blocks, int64_t n);

#endif
