/*
 * aarch64 NEON kernels: one weight row against a tile of tokens
 * (matmul_impl.h). The same scheme as the AVX2 kernels (matmul_avx2.c):
 *
 * Float types widen the weights to floats and multiply-add with the float
 * activations; Advanced SIMD is part of every aarch64 CPU.
 *
 * Quantized types multiply their integer quants with 8-bit activations
 * (quantize_activations.h) using SDOT (vdotq_s32: four 4-byte dot products
 * into four int32 lanes), from the ARMv8.2 dot-product extension. Those
 * functions carry a dotprod target attribute and matmul.c hands them out only when
 * the CPU reports the extension (HWCAP_ASIMDDP); on older cores (Cortex-A53,
 * A72) the quantized types run the scalar kernels. SDOT multiplies signed by
 * signed bytes, so the quants go in as they are: every format's quants fit
 * in int8.
 *
 * Shifts by a variable amount use vshlq (a negative count shifts right):
 * the immediate forms need compile-time constants, which an unoptimized
 * build does not provide through the inlined loops.
 */
#if defined(__aarch64__)

#include "kernels/matmul_impl.h"
#include "kernels/pack.h"
#include "kernels/quantize_activations.h"
#include "tensor/quant_blocks.h"
#include "tensor/types.h"

#include <arm_neon.h>
#include <stdbool.h>
#include <string.h>

#define NEON_INLINE static inline __attribute__((always_inline))
/* GCC compiles SDOT into single functions: its arm_neon.h declares it for
 * armv8.2-a+dotprod (any CPU with the extension implements ARMv8.2, whose
 * other additions these functions never need). Clang (at least up to 14)
 * only declares it when the whole file targets the extension (for example
 * -march=armv8.2-a+dotprod, or Apple's arm64 default); otherwise the
 * integer kernels are left out and the quantized types run scalar. */
#if !defined(__clang__)
#define HAVE_DOTPROD_KERNELS 1
#define DOTPROD_FUNCTION __attribute__((target("arch=armv8.2-a+dotprod")))
#elif defined(__ARM_FEATURE_DOTPROD)
#define HAVE_DOTPROD_KERNELS 1
#define DOTPROD_FUNCTION /* the whole file targets it */
#else
#define HAVE_DOTPROD_KERNELS 0
#endif
#define DOTPROD_INLINE static inline __attribute__((always_inline)) DOTPROD_FUNCTION

/* ------------------------------------------------------------ helpers */

NEON_INLINE float half_to_float(uint16_t h)
{
    __fp16 half;
    memcpy(&half, &h, sizeof half);
    return (float)half;
}

/* ------------------------------------------------- float weight types */

/* Weights i .. i+3 of a float-type row, as floats. */
NEON_INLINE float32x4_t load_4_weights(int type, const void *row, int64_t i)
{
    if (type == PLM_TYPE_F32)
        return vld1q_f32((const float *)row + i);
    const uint16x4_t halves = vld1_u16((const uint16_t *)row + i);
    if (type == PLM_TYPE_F16)
        return vcvt_f32_f16(vreinterpret_f16_u16(halves));
    /* BF16 is the top half of a float. */
    return vreinterpretq_f32_u32(vshll_n_u16(halves, 16));
}

NEON_INLINE float weight_at(int type, const void *row, int64_t i)
{
    if (type == PLM_TYPE_F32)
        return ((const float *)row)[i];
    const uint16_t h = ((const uint16_t *)row)[i];
    return type == PLM_TYPE_F16 ? half_to_float(h) : plm_bf16_to_f32(h);
}

/* Any row length: 8 elements per step with two accumulators per token,
 * then a scalar tail. */
NEON_INLINE void float_row_tile(int type, const void *row, const float *x, int64_t n, float *y,
                                int64_t y_stride, const int tile_tokens)
{
    float32x4_t acc0[PLM_TOKEN_TILE], acc1[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++)
        acc0[t] = acc1[t] = vdupq_n_f32(0.0f);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8) {
        const float32x4_t w0 = load_4_weights(type, row, i);
        const float32x4_t w1 = load_4_weights(type, row, i + 4);
        for (int t = 0; t < tile_tokens; t++) {
            const float *xt = x + t * n + i;
            acc0[t] = vfmaq_f32(acc0[t], w0, vld1q_f32(xt));
            acc1[t] = vfmaq_f32(acc1[t], w1, vld1q_f32(xt + 4));
        }
    }
    for (int t = 0; t < tile_tokens; t++) {
        float sum = vaddvq_f32(vaddq_f32(acc0[t], acc1[t]));
        for (int64_t j = i; j < n; j++)
            sum += weight_at(type, row, j) * x[t * n + j];
        y[t * y_stride] = sum;
    }
}

/* ------------------------------------------------ float entry points */

static void f32_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_F32, row, x, n, y, ys, PLM_TOKEN_TILE);
}
static void f32_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_F32, row, x, n, y, ys, 1);
}
static void f16_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_F16, row, x, n, y, ys, PLM_TOKEN_TILE);
}
static void f16_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_F16, row, x, n, y, ys, 1);
}
static void bf16_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_BF16, row, x, n, y, ys, PLM_TOKEN_TILE);
}
static void bf16_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_BF16, row, x, n, y, ys, 1);
}

#if HAVE_DOTPROD_KERNELS

/* ---------------------------------------- integer dot products (SDOT) */

/* Bits shift .. of each byte, masked: (bytes >> shift) & mask. */
NEON_INLINE uint8x16_t bit_field(uint8x16_t bytes, int shift, uint8_t mask)
{
    return vandq_u8(vshlq_u8(bytes, vdupq_n_s8((int8_t)-shift)), vdupq_n_u8(mask));
}

/* 16 bytes: byte j is 0xFF where bit j of bits is set, else 0. */
NEON_INLINE uint8x16_t bytes_from_16_bits(uint32_t bits)
{
    static const uint8_t bit_of_byte[16] = {1, 2, 4, 8, 16, 32, 64, 128,
                                            1, 2, 4, 8, 16, 32, 64, 128};
    const uint8x16_t spread = vcombine_u8(vdup_n_u8((uint8_t)bits), vdup_n_u8((uint8_t)(bits >> 8)));
    return vtstq_u8(spread, vld1q_u8(bit_of_byte));
}

/* 32 quants of one block or group: elements 0-15 and 16-31. */
struct quants32 {
    int8x16_t lo, hi;
};

DOTPROD_INLINE int32x4_t dot_32(struct quants32 w, const int8_t *x)
{
    const int32x4_t lo = vdotq_s32(vdupq_n_s32(0), w.lo, vld1q_s8(x));
    return vdotq_s32(lo, w.hi, vld1q_s8(x + 16));
}

/* ------------------------------------- 32-element blocks (Q4_0 .. Q8_0) */

/* One weight block: element = d * quant + m. Q4_0, Q5_0 and Q8_0 give
 * signed quants (the -8 or -16 folded in) with m = 0; Q4_1 and Q5_1 give
 * their quants as they are, and m. */
struct legacy_block {
    struct quants32 quants;
    float d;
    float m;
};

/* Nibbles in element order: low nibbles are elements 0-15, high 16-31. */
NEON_INLINE struct quants32 unpack_nibbles(const uint8_t qs[PLM_QK / 2], uint8_t subtract)
{
    const uint8x16_t packed = vld1q_u8(qs);
    const uint8x16_t lo = vsubq_u8(vandq_u8(packed, vdupq_n_u8(0x0F)), vdupq_n_u8(subtract));
    const uint8x16_t hi = vsubq_u8(vshrq_n_u8(packed, 4), vdupq_n_u8(subtract));
    return (struct quants32){vreinterpretq_s8_u8(lo), vreinterpretq_s8_u8(hi)};
}

/* Adds the fifth bits of a Q5 block to its nibbles: `set` where a bit is set
 * and `clear` where it is not (16 and 0 for Q5_1; 0 and 0xF0, i.e. -16 in
 * two's complement, for Q5_0). */
NEON_INLINE struct quants32 add_fifth_bits(struct quants32 nibbles, const uint8_t qh[4], uint8_t set,
                                           uint8_t clear)
{
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
    const uint8x16_t high_lo = bytes_from_16_bits(bits), high_hi = bytes_from_16_bits(bits >> 16);
    const uint8x16_t set_v = vdupq_n_u8(set), clear_v = vdupq_n_u8(clear);
    const uint8x16_t add_lo = vbslq_u8(high_lo, set_v, clear_v), add_hi = vbslq_u8(high_hi, set_v, clear_v);
    return (struct quants32){
        vreinterpretq_s8_u8(vorrq_u8(vreinterpretq_u8_s8(nibbles.lo), add_lo)),
        vreinterpretq_s8_u8(vorrq_u8(vreinterpretq_u8_s8(nibbles.hi), add_hi)),
    };
}

NEON_INLINE struct legacy_block unpack_legacy_block(int type, const void *row, int64_t b)
{
    struct legacy_block out = {.m = 0.0f};
    switch (type) {
    case PLM_TYPE_Q4_0: {
        const struct plm_block_q4_0 *block = (const struct plm_block_q4_0 *)row + b;
        out.quants = unpack_nibbles(block->qs, 8);
        out.d = half_to_float(block->d);
        break;
    }
    case PLM_TYPE_Q4_1: {
        const struct plm_block_q4_1 *block = (const struct plm_block_q4_1 *)row + b;
        out.quants = unpack_nibbles(block->qs, 0);
        out.d = half_to_float(block->d);
        out.m = half_to_float(block->m);
        break;
    }
    case PLM_TYPE_Q5_0: {
        const struct plm_block_q5_0 *block = (const struct plm_block_q5_0 *)row + b;
        out.quants = add_fifth_bits(unpack_nibbles(block->qs, 0), block->qh, 0x00, 0xF0);
        out.d = half_to_float(block->d);
        break;
    }
    case PLM_TYPE_Q5_1: {
        const struct plm_block_q5_1 *block = (const struct plm_block_q5_1 *)row + b;
        out.quants = add_fifth_bits(unpack_nibbles(block->qs, 0), block->qh, 0x10, 0x00);
        out.d = half_to_float(block->d);
        out.m = half_to_float(block->m);
        break;
    }
    default: { /* PLM_TYPE_Q8_0 */
        const struct plm_block_q8_0 *block = (const struct plm_block_q8_0 *)row + b;
        out.quants = (struct quants32){vld1q_s8(block->qs), vld1q_s8(block->qs + 16)};
        out.d = half_to_float(block->d);
        break;
    }
    }
    return out;
}

/* sum over blocks of d * dx * (quants . qx) + m * dx * sum(qx); the second
 * term only for the formats with an offset. */
DOTPROD_INLINE void legacy_row_tile(int type, const void *row, const struct plm_act_q8 *x,
                                    int64_t n_blocks, float *y, int64_t y_stride,
                                    const int tile_tokens)
{
    const bool has_offset = type == PLM_TYPE_Q4_1 || type == PLM_TYPE_Q5_1;
    float32x4_t acc[PLM_TOKEN_TILE];
    float offset[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++) {
        acc[t] = vdupq_n_f32(0.0f);
        offset[t] = 0.0f;
    }
    for (int64_t b = 0; b < n_blocks; b++) {
        const struct legacy_block w = unpack_legacy_block(type, row, b);
        for (int t = 0; t < tile_tokens; t++) {
            const struct plm_act_q8 *xb = &x[t * n_blocks + b];
            const int32x4_t dot = dot_32(w.quants, xb->qs);
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(dot), w.d * xb->d);
            if (has_offset)
                offset[t] += w.m * xb->sum;
        }
    }
    for (int t = 0; t < tile_tokens; t++)
        y[t * y_stride] = vaddvq_f32(acc[t]) + offset[t];
}

/* ------------------------------------------ K-quant super-blocks of 256 */

/*
 * As in the AVX2 kernels: 8 groups of 32 unsigned quants u in [0, 63],
 * integer scales per 32 (Q4_K, Q5_K) or per 16 elements (the others), and a
 * correction on the 16-element sub-block sums of the activation quants:
 *     block . x = dx * (d * sum_s scale_s * (u_s . qx_s)
 *                       - offset_d * sum_s coef_s * bsum_s)
 * with coef the mins (Q2_K, Q4_K, Q5_K; offset_d = dmin) or 4 and 32 times
 * the scales for the fixed offsets of Q3_K (u - 4) and Q6_K (u - 32).
 */
struct k_block_factors {
    float d, offset_d;
    uint8_t group_scales[8];  /* Q4_K, Q5_K: per group of 32 */
    int8_t sub_scales[16];    /* the others: per sub-block of 16 */
    int16_t offset_coefs[16]; /* coef_s */
};

NEON_INLINE struct k_block_factors k_block_factors(int type, const uint8_t *block)
{
    struct k_block_factors f;
    memset(&f, 0, sizeof f);
    switch (type) {
    case PLM_TYPE_Q2_K: {
        const struct plm_block_q2_K *q2 = (const struct plm_block_q2_K *)block;
        f.d = half_to_float(q2->d);
        f.offset_d = half_to_float(q2->dmin);
        for (int s = 0; s < 16; s++) {
            f.sub_scales[s] = (int8_t)(q2->scales[s] & 0x0F);
            f.offset_coefs[s] = q2->scales[s] >> 4;
        }
        break;
    }
    case PLM_TYPE_Q3_K: {
        const struct plm_block_q3_K *q3 = (const struct plm_block_q3_K *)block;
        f.d = f.offset_d = half_to_float(q3->d);
        plm_unpack_q3_K_scales(q3->scales, f.sub_scales);
        for (int s = 0; s < 16; s++)
            f.offset_coefs[s] = (int16_t)(4 * f.sub_scales[s]);
        break;
    }
    case PLM_TYPE_Q4_K:
    case PLM_TYPE_Q5_K: {
        /* Q4_K and Q5_K start alike: d, dmin, then the packed scales. */
        const struct plm_block_q4_K *q4 = (const struct plm_block_q4_K *)block;
        uint8_t mins[8];
        f.d = half_to_float(q4->d);
        f.offset_d = half_to_float(q4->dmin);
        plm_unpack_k_scales_mins(q4->scales, f.group_scales, mins);
        for (int s = 0; s < 16; s++)
            f.offset_coefs[s] = mins[s / 2]; /* each min covers two sub-blocks */
        break;
    }
    default: { /* PLM_TYPE_Q6_K */
        const struct plm_block_q6_K *q6 = (const struct plm_block_q6_K *)block;
        f.d = f.offset_d = half_to_float(q6->d);
        memcpy(f.sub_scales, q6->scales, sizeof f.sub_scales);
        for (int s = 0; s < 16; s++)
            f.offset_coefs[s] = (int16_t)(32 * f.sub_scales[s]);
        break;
    }
    }
    return f;
}

/* Bit field of 32 bytes at p, as quants. */
NEON_INLINE struct quants32 field32(const uint8_t *p, int shift, uint8_t mask)
{
    return (struct quants32){vreinterpretq_s8_u8(bit_field(vld1q_u8(p), shift, mask)),
                             vreinterpretq_s8_u8(bit_field(vld1q_u8(p + 16), shift, mask))};
}

/* low | high << shift, bytewise. */
NEON_INLINE struct quants32 combine32(struct quants32 low, struct quants32 high, int shift)
{
    const int8x16_t count = vdupq_n_s8((int8_t)shift);
    return (struct quants32){vorrq_s8(low.lo, vshlq_s8(high.lo, count)),
                             vorrq_s8(low.hi, vshlq_s8(high.hi, count))};
}

/* The unsigned quants of elements 32 g .. 32 g + 31 (g = 0..7); the bit
 * layouts are spelled out in matmul_avx2.c's k_group_quants. */
NEON_INLINE struct quants32 k_group_quants(int type, const uint8_t *block, int g)
{
    const int half = g / 4, quarter = g % 4;
    switch (type) {
    case PLM_TYPE_Q2_K: {
        const struct plm_block_q2_K *q2 = (const struct plm_block_q2_K *)block;
        return field32(q2->qs + 32 * half, 2 * quarter, 3);
    }
    case PLM_TYPE_Q3_K: {
        const struct plm_block_q3_K *q3 = (const struct plm_block_q3_K *)block;
        return combine32(field32(q3->qs + 32 * half, 2 * quarter, 3), field32(q3->hmask, g, 1), 2);
    }
    case PLM_TYPE_Q4_K: {
        const struct plm_block_q4_K *q4 = (const struct plm_block_q4_K *)block;
        return field32(q4->qs + 32 * (g / 2), 4 * (g % 2), 0x0F);
    }
    case PLM_TYPE_Q5_K: {
        const struct plm_block_q5_K *q5 = (const struct plm_block_q5_K *)block;
        return combine32(field32(q5->qs + 32 * (g / 2), 4 * (g % 2), 0x0F), field32(q5->qh, g, 1), 4);
    }
    default: { /* PLM_TYPE_Q6_K */
        const struct plm_block_q6_K *q6 = (const struct plm_block_q6_K *)block;
        return combine32(field32(q6->ql + 64 * half + 32 * (quarter % 2), 4 * (quarter / 2), 0x0F),
                         field32(q6->qh + 32 * half, 2 * quarter, 3), 4);
    }
    }
}

/* coef . bsums over the 16 sub-blocks, as 4 int32 partial sums. */
NEON_INLINE int32x4_t k_correction(const int16_t coefs[16], const int16_t bsums[16])
{
    const int16x8_t c0 = vld1q_s16(coefs), c1 = vld1q_s16(coefs + 8);
    const int16x8_t b0 = vld1q_s16(bsums), b1 = vld1q_s16(bsums + 8);
    int32x4_t sum = vmull_s16(vget_low_s16(c0), vget_low_s16(b0));
    sum = vmlal_high_s16(sum, c0, b0);
    sum = vmlal_s16(sum, vget_low_s16(c1), vget_low_s16(b1));
    return vmlal_high_s16(sum, c1, b1);
}

DOTPROD_INLINE void k_quant_row_tile(int type, const uint8_t *row, size_t block_bytes,
                                     const struct plm_act_q8_K *x, int64_t n_blocks, float *y,
                                     int64_t y_stride, const int tile_tokens)
{
    const bool scale_per_32 = type == PLM_TYPE_Q4_K || type == PLM_TYPE_Q5_K;
    float32x4_t acc[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++)
        acc[t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *block = row + (size_t)b * block_bytes;
        const struct k_block_factors f = k_block_factors(type, block);
        int32x4_t scaled_sum[PLM_TOKEN_TILE];
        for (int t = 0; t < tile_tokens; t++)
            scaled_sum[t] = vdupq_n_s32(0);
        for (int g = 0; g < 8; g++) {
            const struct quants32 quants = k_group_quants(type, block, g);
            for (int t = 0; t < tile_tokens; t++) {
                const int8_t *qx = x[t * n_blocks + b].qs + 32 * g;
                if (scale_per_32) {
                    scaled_sum[t] = vmlaq_n_s32(scaled_sum[t], dot_32(quants, qx), f.group_scales[g]);
                } else {
                    const int32x4_t zero = vdupq_n_s32(0);
                    const int32x4_t lo = vdotq_s32(zero, quants.lo, vld1q_s8(qx));
                    const int32x4_t hi = vdotq_s32(zero, quants.hi, vld1q_s8(qx + 16));
                    scaled_sum[t] = vmlaq_n_s32(scaled_sum[t], lo, f.sub_scales[2 * g]);
                    scaled_sum[t] = vmlaq_n_s32(scaled_sum[t], hi, f.sub_scales[2 * g + 1]);
                }
            }
        }
        for (int t = 0; t < tile_tokens; t++) {
            const struct plm_act_q8_K *xb = &x[t * n_blocks + b];
            const int32x4_t correction = k_correction(f.offset_coefs, xb->bsums);
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(scaled_sum[t]), f.d * xb->d);
            acc[t] = vfmaq_n_f32(acc[t], vcvtq_f32_s32(correction), -f.offset_d * xb->d);
        }
    }
    for (int t = 0; t < tile_tokens; t++)
        y[t * y_stride] = vaddvq_f32(acc[t]);
}

/* Entry points of the integer kernels. */

DOTPROD_FUNCTION static void q4_0_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_0, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q4_0_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_0, row, x, n / PLM_QK, y, ys, 1);
}
DOTPROD_FUNCTION static void q4_1_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_1, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q4_1_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_1, row, x, n / PLM_QK, y, ys, 1);
}
DOTPROD_FUNCTION static void q5_0_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_0, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q5_0_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_0, row, x, n / PLM_QK, y, ys, 1);
}
DOTPROD_FUNCTION static void q5_1_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_1, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q5_1_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_1, row, x, n / PLM_QK, y, ys, 1);
}
DOTPROD_FUNCTION static void q8_0_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q8_0, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q8_0_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q8_0, row, x, n / PLM_QK, y, ys, 1);
}

DOTPROD_FUNCTION static void q2_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q2_K, row, sizeof(struct plm_block_q2_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q2_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q2_K, row, sizeof(struct plm_block_q2_K), x, n / PLM_QK_K, y, ys, 1);
}
DOTPROD_FUNCTION static void q3_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q3_K, row, sizeof(struct plm_block_q3_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q3_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q3_K, row, sizeof(struct plm_block_q3_K), x, n / PLM_QK_K, y, ys, 1);
}
DOTPROD_FUNCTION static void q4_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q4_K, row, sizeof(struct plm_block_q4_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q4_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q4_K, row, sizeof(struct plm_block_q4_K), x, n / PLM_QK_K, y, ys, 1);
}
DOTPROD_FUNCTION static void q5_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q5_K, row, sizeof(struct plm_block_q5_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q5_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q5_K, row, sizeof(struct plm_block_q5_K), x, n / PLM_QK_K, y, ys, 1);
}
DOTPROD_FUNCTION static void q6_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q6_K, row, sizeof(struct plm_block_q6_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
DOTPROD_FUNCTION static void q6_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q6_K, row, sizeof(struct plm_block_q6_K), x, n / PLM_QK_K, y, ys, 1);
}

/* ------------------------------------- packed rows (kernels/pack.h) */

/*
 * A packed group interleaves 16 rows 4 bytes at a time, so a 16-byte load
 * holds 4 consecutive quants of 4 rows (a quad), one row per 32-bit lane,
 * and SDOT by lane (vdotq_laneq_s32) multiplies them by 4 of a token's
 * activations taken from one lane of a vector: 8 SDOT per block of 32 for 4
 * rows, no horizontal sums, one load for the 4 rows' scales. The kernels go
 * over the group a quad at a time (the group stays in cache between quads)
 * so a tile of 4 tokens keeps its accumulators in registers.
 */

/* Sum of w[k] . x[4 k .. 4 k + 3] for k < 8, one sum per row of the quad. The
 * lanes are constants, as SDOT by lane needs them even in an unoptimized
 * build. */
DOTPROD_INLINE int32x4_t quad_dot_32(const int8x16_t w[8], const int8_t *x)
{
    const int8x16_t lo = vld1q_s8(x), hi = vld1q_s8(x + 16);
    int32x4_t dot = vdotq_laneq_s32(vdupq_n_s32(0), w[0], lo, 0);
    dot = vdotq_laneq_s32(dot, w[1], lo, 1);
    dot = vdotq_laneq_s32(dot, w[2], lo, 2);
    dot = vdotq_laneq_s32(dot, w[3], lo, 3);
    dot = vdotq_laneq_s32(dot, w[4], hi, 0);
    dot = vdotq_laneq_s32(dot, w[5], hi, 1);
    dot = vdotq_laneq_s32(dot, w[6], hi, 2);
    return vdotq_laneq_s32(dot, w[7], hi, 3);
}

/* The quad's 4 values of v into y[0..3], those whose bit is set in rows. */
NEON_INLINE void store_quad(float *y, float32x4_t v, unsigned rows)
{
    float values[4];
    vst1q_f32(values, v);
    for (int i = 0; i < 4; i++)
        if (rows >> i & 1)
            y[i] = values[i];
}

/* The 4 half-float values of a quad as floats. */
NEON_INLINE float32x4_t quad_halves(const uint16_t *halves)
{
    float16x4_t h;
    memcpy(&h, halves, sizeof h);
    return vcvt_f32_f16(h);
}

/* Quad q of block b of a packed Q4_0, Q5_0 or Q8_0 group, as signed quants:
 * k-th vector = elements 4 k .. 4 k + 3 of the 4 rows. Q4_0's nibbles and
 * Q5_0's 5-bit quants stay unsigned (0..15 and 0..31, the offset of 8 or 16
 * is taken off later); Q8_0's quants + 128 get their top bit flipped back. */
NEON_INLINE void packed_quad_quants(int type, const uint8_t *quants, int q, int8x16_t w[8])
{
    if (type == PLM_TYPE_Q8_0) {
        for (int k = 0; k < 8; k++)
            w[k] = vreinterpretq_s8_u8(veorq_u8(vld1q_u8(quants + 64 * k + 16 * q), vdupq_n_u8(0x80)));
        return;
    }
    uint8x16_t nibbles[8];
    for (int k = 0; k < 4; k++) {
        const uint8x16_t bytes = vld1q_u8(quants + 64 * k + 16 * q);
        nibbles[k] = vandq_u8(bytes, vdupq_n_u8(0x0F));
        nibbles[k + 4] = vshrq_n_u8(bytes, 4);
    }
    if (type == PLM_TYPE_Q5_0) {
        /* Vector k's fifth bits are bit k of the quad's 16 bytes of qh (4
         * rows of 4), moved to bit 4 (a negative shift goes right). */
        const uint8x16_t fifth_bits = vld1q_u8(((const struct plm_packed_q5_0 *)quants)->qh[4 * q]);
        for (int k = 0; k < 8; k++) {
            const uint8x16_t moved = vshlq_u8(fifth_bits, vdupq_n_s8((int8_t)(4 - k)));
            nibbles[k] = vorrq_u8(nibbles[k], vandq_u8(moved, vdupq_n_u8(0x10)));
        }
    }
    for (int k = 0; k < 8; k++)
        w[k] = vreinterpretq_s8_u8(nibbles[k]);
}

/* Quad q (rows 4 q .. 4 q + 3) of a packed Q4_0, Q5_0 or Q8_0 group against
 * a tile of tokens: d_w * d_x * dot per block, less offset * d_w * (the
 * block's activation sum) for Q4_0's and Q5_0's unsigned quants. Every tile
 * size runs the same operations per token. */
DOTPROD_INLINE void packed_legacy_quad(int type, const uint8_t *group, int q, const struct plm_act_q8 *x,
                                       int64_t n_blocks, float *y, int64_t y_stride, unsigned rows,
                                       const int tile_tokens)
{
    const size_t quant_bytes = type == PLM_TYPE_Q4_0   ? sizeof(struct plm_packed_q4_0)
                               : type == PLM_TYPE_Q5_0 ? sizeof(struct plm_packed_q5_0)
                                                       : sizeof(struct plm_packed_q8_0);
    const struct plm_packed_scales *scales =
        (const struct plm_packed_scales *)(group + (size_t)n_blocks * quant_bytes);
    float32x4_t acc[PLM_TOKEN_TILE], offset_acc[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++)
        acc[t] = offset_acc[t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n_blocks; b++) {
        int8x16_t w[8];
        packed_quad_quants(type, group + (size_t)b * quant_bytes, q, w);
        const float32x4_t d = quad_halves(scales[b].d + 4 * q);
        for (int t = 0; t < tile_tokens; t++) {
            const struct plm_act_q8 *xb = &x[t * n_blocks + b];
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(quad_dot_32(w, xb->qs)), vmulq_n_f32(d, xb->d));
            if (type != PLM_TYPE_Q8_0)
                offset_acc[t] = vfmaq_n_f32(offset_acc[t], d, xb->sum);
        }
    }
    for (int t = 0; t < tile_tokens; t++) {
        if (type != PLM_TYPE_Q8_0)
            acc[t] = vfmsq_n_f32(acc[t], offset_acc[t], (float)plm_packed_offset(type));
        store_quad(y + t * y_stride + 4 * q, acc[t], rows >> (4 * q));
    }
}

/* The 4 rows' bytes at p (one per row) as int32 lanes. */
NEON_INLINE int32x4_t quad_bytes(const uint8_t *p)
{
    uint32_t word;
    memcpy(&word, p, sizeof word);
    const uint16x8_t wide = vmovl_u8(vreinterpret_u8_u32(vdup_n_u32(word)));
    return vreinterpretq_s32_u32(vmovl_u16(vget_low_u16(wide)));
}

/* Quad q of a packed Q4_K group (struct plm_packed_q4_K) against a tile of
 * tokens: per super-block, each sub-block's dot products times its 6-bit
 * scales and the mins times the activations' sub-block sums, in integers,
 * then d * d_x and dmin * d_x once. */
DOTPROD_INLINE void packed_q4_K_quad(const uint8_t *group, int q, const struct plm_act_q8_K *x,
                                     int64_t n_blocks, float *y, int64_t y_stride, unsigned rows,
                                     const int tile_tokens)
{
    const struct plm_packed_q4_K *blocks = (const struct plm_packed_q4_K *)group;
    float32x4_t acc[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++)
        acc[t] = vdupq_n_f32(0.0f);
    for (int64_t b = 0; b < n_blocks; b++) {
        const struct plm_packed_q4_K *block = &blocks[b];
        int32x4_t sums[PLM_TOKEN_TILE], min_sums[PLM_TOKEN_TILE];
        for (int t = 0; t < tile_tokens; t++)
            sums[t] = min_sums[t] = vdupq_n_s32(0);
        for (int s = 0; s < 8; s++) { /* sub-block s: nibbles (s % 2) of chunk s / 2 */
            int8x16_t w[8];
            for (int k = 0; k < 8; k++) {
                const uint8x16_t bytes = vld1q_u8(block->qs[s / 2][k][4 * q]);
                w[k] = vreinterpretq_s8_u8(s % 2 ? vshrq_n_u8(bytes, 4) : vandq_u8(bytes, vdupq_n_u8(0x0F)));
            }
            const int32x4_t scale = quad_bytes(&block->scales[s][4 * q]);
            const int32x4_t min = quad_bytes(&block->mins[s][4 * q]);
            for (int t = 0; t < tile_tokens; t++) {
                const struct plm_act_q8_K *xb = &x[t * n_blocks + b];
                sums[t] = vmlaq_s32(sums[t], quad_dot_32(w, xb->qs + 32 * s), scale);
                min_sums[t] = vmlaq_n_s32(min_sums[t], min, xb->bsums[2 * s] + xb->bsums[2 * s + 1]);
            }
        }
        const float32x4_t d = quad_halves(block->d + 4 * q), dmin = quad_halves(block->dmin + 4 * q);
        for (int t = 0; t < tile_tokens; t++) {
            const float dx = x[t * n_blocks + b].d;
            acc[t] = vfmaq_f32(acc[t], vcvtq_f32_s32(sums[t]), vmulq_n_f32(d, dx));
            acc[t] = vfmsq_f32(acc[t], vcvtq_f32_s32(min_sums[t]), vmulq_n_f32(dmin, dx));
        }
    }
    for (int t = 0; t < tile_tokens; t++)
        store_quad(y + t * y_stride + 4 * q, acc[t], rows >> (4 * q));
}

DOTPROD_FUNCTION static void packed_q4_0_tile4(const void *group, const void *x, int64_t n, float *y,
                                               int64_t ys, uint16_t rows)
{
    for (int q = 0; q < 4; q++)
        packed_legacy_quad(PLM_TYPE_Q4_0, group, q, x, n / PLM_QK, y, ys, rows, PLM_TOKEN_TILE);
}

DOTPROD_FUNCTION static void packed_q4_0_tile1(const void *group, const void *x, int64_t n, float *y,
                                               int64_t ys, uint16_t rows)
{
    for (int q = 0; q < 4; q++)
        packed_legacy_quad(PLM_TYPE_Q4_0, group, q, x, n / PLM_QK, y, ys, rows, 1);
}

DOTPROD_FUNCTION static void packed_q5_0_tile4(const void *group, const void *x, int64_t n, float *y,
                                               int64_t ys, uint16_t rows)
{
    for (int q = 0; q < 4; q++)
        packed_legacy_quad(PLM_TYPE_Q5_0, group, q, x, n / PLM_QK, y, ys, rows, PLM_TOKEN_TILE);
}

DOTPROD_FUNCTION static void packed_q5_0_tile1(const void *group, const void *x, int64_t n, float *y,
                                               int64_t ys, uint16_t rows)
{
    for (int q = 0; q < 4; q++)
        packed_legacy_quad(PLM_TYPE_Q5_0, group, q, x, n / PLM_QK, y, ys, rows, 1);
}

DOTPROD_FUNCTION static void packed_q8_0_tile4(const void *group, const void *x, int64_t n, float *y,
                                               int64_t ys, uint16_t rows)
{
    for (int q = 0; q < 4; q++)
        packed_legacy_quad(PLM_TYPE_Q8_0, group, q, x, n / PLM_QK, y, ys, rows, PLM_TOKEN_TILE);
}

DOTPROD_FUNCTION static void packed_q8_0_tile1(const void *group, const void *x, int64_t n, float *y,
                                               int64_t ys, uint16_t rows)
{
    for (int q = 0; q < 4; q++)
        packed_legacy_quad(PLM_TYPE_Q8_0, group, q, x, n / PLM_QK, y, ys, rows, 1);
}

DOTPROD_FUNCTION static void packed_q4_K_tile4(const void *group, const void *x, int64_t n, float *y,
                                               int64_t ys, uint16_t rows)
{
    for (int q = 0; q < 4; q++)
        packed_q4_K_quad(group, q, x, n / PLM_QK_K, y, ys, rows, PLM_TOKEN_TILE);
}

DOTPROD_FUNCTION static void packed_q4_K_tile1(const void *group, const void *x, int64_t n, float *y,
                                               int64_t ys, uint16_t rows)
{
    for (int q = 0; q < 4; q++)
        packed_q4_K_quad(group, q, x, n / PLM_QK_K, y, ys, rows, 1);
}

#endif /* HAVE_DOTPROD_KERNELS */

static const struct plm_kernel kernels[PLM_TYPE_COUNT] = {
    [PLM_TYPE_F32] = {PLM_ACTIVATIONS_F32, f32_tile4, f32_tile1},
    [PLM_TYPE_F16] = {PLM_ACTIVATIONS_F32, f16_tile4, f16_tile1},
    [PLM_TYPE_BF16] = {PLM_ACTIVATIONS_F32, bf16_tile4, bf16_tile1},
#if HAVE_DOTPROD_KERNELS
    [PLM_TYPE_Q4_0] = {PLM_ACTIVATIONS_Q8, q4_0_tile4, q4_0_tile1},
    [PLM_TYPE_Q4_1] = {PLM_ACTIVATIONS_Q8, q4_1_tile4, q4_1_tile1},
    [PLM_TYPE_Q5_0] = {PLM_ACTIVATIONS_Q8, q5_0_tile4, q5_0_tile1},
    [PLM_TYPE_Q5_1] = {PLM_ACTIVATIONS_Q8, q5_1_tile4, q5_1_tile1},
    [PLM_TYPE_Q8_0] = {PLM_ACTIVATIONS_Q8, q8_0_tile4, q8_0_tile1},
    [PLM_TYPE_Q2_K] = {PLM_ACTIVATIONS_Q8_K, q2_K_tile4, q2_K_tile1},
    [PLM_TYPE_Q3_K] = {PLM_ACTIVATIONS_Q8_K, q3_K_tile4, q3_K_tile1},
    [PLM_TYPE_Q4_K] = {PLM_ACTIVATIONS_Q8_K, q4_K_tile4, q4_K_tile1},
    [PLM_TYPE_Q5_K] = {PLM_ACTIVATIONS_Q8_K, q5_K_tile4, q5_K_tile1},
    [PLM_TYPE_Q6_K] = {PLM_ACTIVATIONS_Q8_K, q6_K_tile4, q6_K_tile1},
#endif
};

#if HAVE_DOTPROD_KERNELS
static const struct plm_packed_kernel packed_kernels[PLM_TYPE_COUNT] = {
    [PLM_TYPE_Q4_0] = {PLM_ACTIVATIONS_Q8, PLM_TOKEN_TILE, packed_q4_0_tile4, packed_q4_0_tile1},
    [PLM_TYPE_Q5_0] = {PLM_ACTIVATIONS_Q8, PLM_TOKEN_TILE, packed_q5_0_tile4, packed_q5_0_tile1},
    [PLM_TYPE_Q8_0] = {PLM_ACTIVATIONS_Q8, PLM_TOKEN_TILE, packed_q8_0_tile4, packed_q8_0_tile1},
    [PLM_TYPE_Q4_K] = {PLM_ACTIVATIONS_Q8_K, PLM_TOKEN_TILE, packed_q4_K_tile4, packed_q4_K_tile1},
};
#endif

const struct plm_packed_kernel *plm_neon_packed_kernel(int type, bool has_dotprod)
{
#if HAVE_DOTPROD_KERNELS
    if (has_dotprod && type >= 0 && type < PLM_TYPE_COUNT && packed_kernels[type].tile)
        return &packed_kernels[type];
#endif
    (void)type;
    (void)has_dotprod;
    return NULL;
}

const struct plm_kernel *plm_neon_kernel(int type, bool has_dotprod)
{
    if (type < 0 || type >= PLM_TYPE_COUNT || !kernels[type].tile4)
        return NULL;
    if (kernels[type].activations != PLM_ACTIVATIONS_F32 && !has_dotprod)
        return NULL;
    return &kernels[type];
}

#endif
