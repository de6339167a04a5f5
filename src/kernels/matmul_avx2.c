/*
 * AVX2 kernels: one weight row against a tile of tokens (matmul_impl.h).
 *
 * Every function carries its own target attribute instead of the whole
 * program being built with -mavx2, so the binary still runs on any x86-64;
 * matmul.c only calls in here after checking the CPU.
 *
 * Float types (F32, F16, BF16) widen the weights to floats and multiply-add
 * with the float activations. Quantized types multiply their integer quants
 * with 8-bit activations (quantize_activations.h): maddubs multiplies 32
 * unsigned bytes by 32 signed bytes and adds neighbours into 16-bit sums,
 * madd then widens those to 32 bits, and a block's integer sum is scaled
 * once by d_weights * d_x. Each weight block is unpacked once per tile and
 * used for every token of it.
 *
 * A kernel body is written once, for tile_tokens tokens; the tile4 and tile1
 * entry points inline it with a constant count, so the compiler unrolls the
 * token loops and keeps each token's accumulators in registers.
 */
#if defined(__x86_64__)

#include "kernels/matmul_impl.h"
#include "kernels/quantize_activations.h"
#include "kernels/x86_shared.h"
#include "tensor/quant_blocks.h"
#include "tensor/types.h"

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#define AVX2_FUNCTION __attribute__((target("avx2,fma,f16c")))
#define AVX2_INLINE static inline __attribute__((always_inline, target("avx2,fma,f16c")))

/* ------------------------------------------------------------ helpers */

AVX2_INLINE float half_to_float(uint16_t h)
{
    return _cvtsh_ss(h);
}

AVX2_INLINE __m256i load_32_bytes(const void *p)
{
    return _mm256_loadu_si256((const __m256i *)p);
}

/* The sum of the 8 floats of v. */
AVX2_INLINE float sum_floats(__m256 v)
{
    __m128 sum4 = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    __m128 sum2 = _mm_add_ps(sum4, _mm_movehl_ps(sum4, sum4));
    return _mm_cvtss_f32(_mm_add_ss(sum2, _mm_movehdup_ps(sum2)));
}

/* u . x over 32 bytes, u unsigned and x signed, as 8 int32 partial sums.
 * maddubs's 16-bit pair sums cannot saturate: |u| <= 63 in every format
 * that uses this, |x| <= 127. */
AVX2_INLINE __m256i dot_unsigned_signed(__m256i u, __m256i x)
{
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, x), _mm256_set1_epi16(1));
}

/* w . x over 32 signed bytes, as 8 int32 partial sums. maddubs wants one
 * operand unsigned, so w's sign moves onto x: |w| * (x * sign(w)) = w * x.
 * This stays exact for w = -128 (|w| reads as unsigned 128) as x >= -127. */
AVX2_INLINE __m256i dot_signed_signed(__m256i w, __m256i x)
{
    return dot_unsigned_signed(_mm256_sign_epi8(w, w), _mm256_sign_epi8(x, w));
}

/* 32 bytes: byte j is 0xFF where bit j of bits is set, else 0. */
AVX2_INLINE __m256i bytes_from_bits(uint32_t bits)
{
    /* Copy byte j / 8 of bits into byte j, then test bit j % 8 of it. */
    const __m256i spread = _mm256_shuffle_epi8(
        _mm256_set1_epi32((int)bits),
        _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101, 0x0202020202020202,
                           0x0303030303030303));
    const __m256i bit_of_byte = _mm256_set1_epi64x((long long)0x8040201008040201ULL);
    return _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit_of_byte), bit_of_byte);
}

/* ------------------------------------------------- float weight types */

/* Weights i .. i+7 of a float-type row, as floats. */
AVX2_INLINE __m256 load_8_weights(int type, const void *row, int64_t i)
{
    if (type == PLM_TYPE_F32)
        return _mm256_loadu_ps((const float *)row + i);
    const __m128i halves = _mm_loadu_si128((const __m128i *)((const uint16_t *)row + i));
    if (type == PLM_TYPE_F16)
        return _mm256_cvtph_ps(halves);
    /* BF16 is the top half of a float. */
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(halves), 16));
}

AVX2_INLINE float weight_at(int type, const void *row, int64_t i)
{
    if (type == PLM_TYPE_F32)
        return ((const float *)row)[i];
    const uint16_t h = ((const uint16_t *)row)[i];
    return type == PLM_TYPE_F16 ? half_to_float(h) : plm_bf16_to_f32(h);
}

/* Any row length: 16 elements per step with two accumulators per token (so
 * even one token has two independent multiply-add chains), then one step of
 * 8 and a scalar tail. */
AVX2_INLINE void float_row_tile(int type, const void *row, const float *x, int64_t n, float *y,
                                int64_t y_stride, const int tile_tokens)
{
    __m256 acc0[PLM_TOKEN_TILE], acc1[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++)
        acc0[t] = acc1[t] = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
        const __m256 w0 = load_8_weights(type, row, i);
        const __m256 w1 = load_8_weights(type, row, i + 8);
        for (int t = 0; t < tile_tokens; t++) {
            const float *xt = x + t * n + i;
            acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(xt), acc0[t]);
            acc1[t] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(xt + 8), acc1[t]);
        }
    }
    if (i + 8 <= n) {
        const __m256 w0 = load_8_weights(type, row, i);
        for (int t = 0; t < tile_tokens; t++)
            acc0[t] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x + t * n + i), acc0[t]);
        i += 8;
    }
    for (int t = 0; t < tile_tokens; t++) {
        float sum = sum_floats(_mm256_add_ps(acc0[t], acc1[t]));
        for (int64_t j = i; j < n; j++)
            sum += weight_at(type, row, j) * x[t * n + j];
        y[t * y_stride] = sum;
    }
}

/* ------------------------------------- 32-element blocks (Q4_0 .. Q8_0) */

/* One weight block as 32 quants in element order, and its scale and
 * offset: element = d * quant + m. Q4_0, Q5_0 and Q8_0 give signed quants
 * with m = 0 (the -8 or -16 folded into the quants); Q4_1 and Q5_1 give
 * unsigned quants and their m. */
struct legacy_block {
    __m256i quants;
    float d;
    float m;
};

/* The 16 bytes of nibbles as 32 values: low nibbles are elements 0-15, high
 * nibbles 16-31. */
AVX2_INLINE __m256i unpack_nibbles(const uint8_t qs[PLM_QK / 2])
{
    const __m128i packed = _mm_loadu_si128((const __m128i *)qs);
    const __m256i both = _mm256_set_m128i(_mm_srli_epi16(packed, 4), packed);
    return _mm256_and_si256(both, _mm256_set1_epi8(0x0F));
}

AVX2_INLINE uint32_t fifth_bits(const uint8_t qh[4])
{
    uint32_t bits;
    memcpy(&bits, qh, sizeof bits);
    return bits;
}

AVX2_INLINE struct legacy_block unpack_legacy_block(int type, const void *row, int64_t b)
{
    struct legacy_block out = {.m = 0.0f};
    switch (type) {
    case PLM_TYPE_Q4_0: {
        const struct plm_block_q4_0 *block = (const struct plm_block_q4_0 *)row + b;
        out.quants = _mm256_sub_epi8(unpack_nibbles(block->qs), _mm256_set1_epi8(8));
        out.d = half_to_float(block->d);
        break;
    }
    case PLM_TYPE_Q4_1: {
        const struct plm_block_q4_1 *block = (const struct plm_block_q4_1 *)row + b;
        out.quants = unpack_nibbles(block->qs);
        out.d = half_to_float(block->d);
        out.m = half_to_float(block->m);
        break;
    }
    case PLM_TYPE_Q5_0: {
        /* q - 16 as a signed byte is the nibble with 0xF0 added where the
         * fifth bit is clear: nibble - 16 = nibble | 0xF0 in two's complement. */
        const struct plm_block_q5_0 *block = (const struct plm_block_q5_0 *)row + b;
        const __m256i high_set = bytes_from_bits(fifth_bits(block->qh));
        const __m256i sign = _mm256_andnot_si256(high_set, _mm256_set1_epi8((char)0xF0));
        out.quants = _mm256_or_si256(unpack_nibbles(block->qs), sign);
        out.d = half_to_float(block->d);
        break;
    }
    case PLM_TYPE_Q5_1: {
        const struct plm_block_q5_1 *block = (const struct plm_block_q5_1 *)row + b;
        const __m256i high_set = bytes_from_bits(fifth_bits(block->qh));
        const __m256i sixteen = _mm256_and_si256(high_set, _mm256_set1_epi8(0x10));
        out.quants = _mm256_or_si256(unpack_nibbles(block->qs), sixteen);
        out.d = half_to_float(block->d);
        out.m = half_to_float(block->m);
        break;
    }
    default: { /* PLM_TYPE_Q8_0 */
        const struct plm_block_q8_0 *block = (const struct plm_block_q8_0 *)row + b;
        out.quants = load_32_bytes(block->qs);
        out.d = half_to_float(block->d);
        break;
    }
    }
    return out;
}

/* sum over blocks of d * dx * (quants . qx) + m * dx * sum(qx); the second
 * term only for the formats with an offset. */
AVX2_INLINE void legacy_row_tile(int type, const void *row, const struct plm_act_q8 *x,
                                 int64_t n_blocks, float *y, int64_t y_stride,
                                 const int tile_tokens)
{
    const bool has_offset = type == PLM_TYPE_Q4_1 || type == PLM_TYPE_Q5_1;
    __m256 acc[PLM_TOKEN_TILE];
    float offset[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++) {
        acc[t] = _mm256_setzero_ps();
        offset[t] = 0.0f;
    }
    for (int64_t b = 0; b < n_blocks; b++) {
        const struct legacy_block w = unpack_legacy_block(type, row, b);
        for (int t = 0; t < tile_tokens; t++) {
            const struct plm_act_q8 *xb = &x[t * n_blocks + b];
            const __m256i qx = load_32_bytes(xb->qs);
            const __m256i dot = has_offset ? dot_unsigned_signed(w.quants, qx)
                                           : dot_signed_signed(w.quants, qx);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(w.d * xb->d), _mm256_cvtepi32_ps(dot), acc[t]);
            if (has_offset)
                offset[t] += w.m * xb->sum;
        }
    }
    for (int t = 0; t < tile_tokens; t++)
        y[t * y_stride] = sum_floats(acc[t]) + offset[t];
}

/* ------------------------------------------ K-quant super-blocks of 256 */

/*
 * Every K-quant is handled as 8 groups of 32 elements with unsigned quants
 * u in [0, 63] and a 16-bit integer scale per 16 elements, plus a correction
 * on whole 16-element sub-blocks:
 *     block . x = dx * (d * sum_s scale_s * (u_s . qx_s)
 *                       - offset_d * sum_s coef_s * bsum_s)
 * where bsum_s is the sum of the activation quants of sub-block s. The
 * correction is the mins (Q2_K, Q4_K, Q5_K: offset_d = dmin, coef = min) or
 * the quants' fixed offset (Q3_K: u - 4, Q6_K: u - 32; offset_d = d,
 * coef = 4 or 32 times the scale). The integer sums stay exact within a
 * super-block: at most 16 * 16 * 63 * 127 * 128 < 2^31.
 */
struct k_block_factors {
    float d, offset_d;
    uint8_t group_scales[8]; /* Q4_K, Q5_K: one scale per group of 32 */
    __m128i sub_scales;      /* the others: one signed byte per sub-block of 16 */
    __m256i offset_coefs;    /* coef_s for the 16 sub-blocks, 16-bit */
};

/* Q4_K and Q5_K: 6-bit scales and mins, one pair per 32 elements; each min
 * covers two bsums. */
AVX2_INLINE struct k_block_factors k_scale_min_factors(uint16_t d, uint16_t dmin,
                                                       const uint8_t packed[12])
{
    struct k_block_factors f;
    uint8_t mins[8];
    plm_unpack_k_scales_mins(packed, f.group_scales, mins);
    f.d = half_to_float(d);
    f.offset_d = half_to_float(dmin);
    const __m128i mins16 = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)mins));
    f.offset_coefs = _mm256_set_m128i(_mm_unpackhi_epi16(mins16, mins16),
                                      _mm_unpacklo_epi16(mins16, mins16));
    f.sub_scales = _mm_setzero_si128();
    return f;
}

AVX2_INLINE struct k_block_factors k_block_factors(int type, const uint8_t *block)
{
    struct k_block_factors f = {.group_scales = {0}};
    switch (type) {
    case PLM_TYPE_Q2_K: {
        const struct plm_block_q2_K *q2 = (const struct plm_block_q2_K *)block;
        const __m128i packed = _mm_loadu_si128((const __m128i *)q2->scales);
        const __m128i low_nibbles = _mm_set1_epi8(0x0F);
        f.d = half_to_float(q2->d);
        f.offset_d = half_to_float(q2->dmin);
        f.sub_scales = _mm_and_si128(packed, low_nibbles);
        f.offset_coefs = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), low_nibbles));
        break;
    }
    case PLM_TYPE_Q3_K: {
        const struct plm_block_q3_K *q3 = (const struct plm_block_q3_K *)block;
        f.d = f.offset_d = half_to_float(q3->d);
        f.sub_scales = plm_q3_K_scales_x86(q3->scales);
        f.offset_coefs = _mm256_slli_epi16(_mm256_cvtepi8_epi16(f.sub_scales), 2); /* 4 s */
        break;
    }
    case PLM_TYPE_Q4_K: {
        const struct plm_block_q4_K *q4 = (const struct plm_block_q4_K *)block;
        f = k_scale_min_factors(q4->d, q4->dmin, q4->scales);
        break;
    }
    case PLM_TYPE_Q5_K: {
        const struct plm_block_q5_K *q5 = (const struct plm_block_q5_K *)block;
        f = k_scale_min_factors(q5->d, q5->dmin, q5->scales);
        break;
    }
    default: { /* PLM_TYPE_Q6_K */
        const struct plm_block_q6_K *q6 = (const struct plm_block_q6_K *)block;
        f.d = f.offset_d = half_to_float(q6->d);
        f.sub_scales = _mm_loadu_si128((const __m128i *)q6->scales);
        f.offset_coefs = _mm256_slli_epi16(_mm256_cvtepi8_epi16(f.sub_scales), 5); /* 32 s */
        break;
    }
    }
    return f;
}

/* Bits shift..shift+width-1 of each of 32 bytes, as values. epi16 shifts
 * leak bits across bytes, but the mask keeps only each byte's own. */
AVX2_INLINE __m256i bit_field(__m256i bytes, int shift, int mask)
{
    return _mm256_and_si256(_mm256_srli_epi16(bytes, shift), _mm256_set1_epi8((char)mask));
}

/* The unsigned quants of elements 32 g .. 32 g + 31 (g = 0..7). */
AVX2_INLINE __m256i k_group_quants(int type, const uint8_t *block, int g)
{
    const int half = g / 4, quarter = g % 4; /* for the 128-element halves */
    switch (type) {
    case PLM_TYPE_Q2_K: {
        /* Half h owns qs[32h ..]; quarter k is bits 2k, 2k+1. */
        const struct plm_block_q2_K *q2 = (const struct plm_block_q2_K *)block;
        return bit_field(load_32_bytes(q2->qs + 32 * half), 2 * quarter, 3);
    }
    case PLM_TYPE_Q3_K: {
        /* Low bits as Q2_K; the third bit of group g is bit g of hmask. */
        const struct plm_block_q3_K *q3 = (const struct plm_block_q3_K *)block;
        const __m256i low = bit_field(load_32_bytes(q3->qs + 32 * half), 2 * quarter, 3);
        const __m256i high = bit_field(load_32_bytes(q3->hmask), g, 1);
        return _mm256_or_si256(low, _mm256_slli_epi16(high, 2));
    }
    case PLM_TYPE_Q4_K: {
        /* Groups 2c and 2c+1 are the low and high nibbles of qs[32c ..]. */
        const struct plm_block_q4_K *q4 = (const struct plm_block_q4_K *)block;
        return bit_field(load_32_bytes(q4->qs + 32 * (g / 2)), 4 * (g % 2), 0x0F);
    }
    case PLM_TYPE_Q5_K: {
        /* Nibbles as Q4_K; the fifth bit of group g is bit g of qh. */
        const struct plm_block_q5_K *q5 = (const struct plm_block_q5_K *)block;
        const __m256i low = bit_field(load_32_bytes(q5->qs + 32 * (g / 2)), 4 * (g % 2), 0x0F);
        const __m256i high = bit_field(load_32_bytes(q5->qh), g, 1);
        return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
    }
    default: { /* PLM_TYPE_Q6_K */
        /* Quarter k of half h: low nibble (k < 2) or high nibble (k >= 2) of
         * ql[64h + 32 (k % 2) ..], top bits 2k, 2k+1 of qh[32h ..]. */
        const struct plm_block_q6_K *q6 = (const struct plm_block_q6_K *)block;
        const __m256i low = bit_field(load_32_bytes(q6->ql + 64 * half + 32 * (quarter % 2)),
                                      4 * (quarter / 2), 0x0F);
        const __m256i high = bit_field(load_32_bytes(q6->qh + 32 * half), 2 * quarter, 3);
        return _mm256_or_si256(low, _mm256_slli_epi16(high, 4));
    }
    }
}

/* The 16-bit scales of group g: its 16 pair sums (maddubs output) cover
 * elements 0-15 then 16-31, i.e. sub-blocks 2g and 2g + 1. */
AVX2_INLINE __m256i k_group_scales(int type, const struct k_block_factors *f, int g)
{
    if (type == PLM_TYPE_Q4_K || type == PLM_TYPE_Q5_K)
        return _mm256_set1_epi16(f->group_scales[g]);
    const __m128i pick = _mm_set_epi64x((long long)(0x0101010101010101ULL * (uint64_t)(2 * g + 1)),
                                        (long long)(0x0101010101010101ULL * (uint64_t)(2 * g)));
    return _mm256_cvtepi8_epi16(_mm_shuffle_epi8(f->sub_scales, pick));
}

AVX2_INLINE void k_quant_row_tile(int type, const uint8_t *row, size_t block_bytes,
                                  const struct plm_act_q8_K *x, int64_t n_blocks, float *y,
                                  int64_t y_stride, const int tile_tokens)
{
    __m256 acc[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++)
        acc[t] = _mm256_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *block = row + (size_t)b * block_bytes;
        const struct k_block_factors f = k_block_factors(type, block);
        __m256i scaled_sum[PLM_TOKEN_TILE];
        for (int t = 0; t < tile_tokens; t++)
            scaled_sum[t] = _mm256_setzero_si256();
        for (int g = 0; g < 8; g++) {
            const __m256i quants = k_group_quants(type, block, g);
            const __m256i scales = k_group_scales(type, &f, g);
            for (int t = 0; t < tile_tokens; t++) {
                const __m256i qx = load_32_bytes(x[t * n_blocks + b].qs + 32 * g);
                const __m256i pair_sums = _mm256_maddubs_epi16(quants, qx);
                scaled_sum[t] = _mm256_add_epi32(scaled_sum[t], _mm256_madd_epi16(pair_sums, scales));
            }
        }
        for (int t = 0; t < tile_tokens; t++) {
            const struct plm_act_q8_K *xb = &x[t * n_blocks + b];
            const __m256i bsums = load_32_bytes(xb->bsums);
            const __m256i correction = _mm256_madd_epi16(f.offset_coefs, bsums);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(f.d * xb->d), _mm256_cvtepi32_ps(scaled_sum[t]),
                                     acc[t]);
            acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(-f.offset_d * xb->d),
                                     _mm256_cvtepi32_ps(correction), acc[t]);
        }
    }
    for (int t = 0; t < tile_tokens; t++)
        y[t * y_stride] = sum_floats(acc[t]);
}

/* ------------------------------------------------------ entry points */

/* Each type's tile4 and tile1: the body above with the type and the token
 * count as constants. */

AVX2_FUNCTION static void f32_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_F32, row, x, n, y, ys, PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void f32_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_F32, row, x, n, y, ys, 1);
}
AVX2_FUNCTION static void f16_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_F16, row, x, n, y, ys, PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void f16_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_F16, row, x, n, y, ys, 1);
}
AVX2_FUNCTION static void bf16_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_BF16, row, x, n, y, ys, PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void bf16_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    float_row_tile(PLM_TYPE_BF16, row, x, n, y, ys, 1);
}

AVX2_FUNCTION static void q4_0_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_0, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q4_0_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_0, row, x, n / PLM_QK, y, ys, 1);
}
AVX2_FUNCTION static void q4_1_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_1, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q4_1_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_1, row, x, n / PLM_QK, y, ys, 1);
}
AVX2_FUNCTION static void q5_0_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_0, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q5_0_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_0, row, x, n / PLM_QK, y, ys, 1);
}
AVX2_FUNCTION static void q5_1_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_1, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q5_1_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_1, row, x, n / PLM_QK, y, ys, 1);
}
AVX2_FUNCTION static void q8_0_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q8_0, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q8_0_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q8_0, row, x, n / PLM_QK, y, ys, 1);
}

AVX2_FUNCTION static void q2_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q2_K, row, sizeof(struct plm_block_q2_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q2_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q2_K, row, sizeof(struct plm_block_q2_K), x, n / PLM_QK_K, y, ys, 1);
}
AVX2_FUNCTION static void q3_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q3_K, row, sizeof(struct plm_block_q3_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q3_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q3_K, row, sizeof(struct plm_block_q3_K), x, n / PLM_QK_K, y, ys, 1);
}
AVX2_FUNCTION static void q4_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q4_K, row, sizeof(struct plm_block_q4_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q4_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q4_K, row, sizeof(struct plm_block_q4_K), x, n / PLM_QK_K, y, ys, 1);
}
AVX2_FUNCTION static void q5_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q5_K, row, sizeof(struct plm_block_q5_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q5_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q5_K, row, sizeof(struct plm_block_q5_K), x, n / PLM_QK_K, y, ys, 1);
}
AVX2_FUNCTION static void q6_K_tile4(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q6_K, row, sizeof(struct plm_block_q6_K), x, n / PLM_QK_K, y, ys,
                     PLM_TOKEN_TILE);
}
AVX2_FUNCTION static void q6_K_tile1(const void *row, const void *x, int64_t n, float *y, int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q6_K, row, sizeof(struct plm_block_q6_K), x, n / PLM_QK_K, y, ys, 1);
}

static const struct plm_kernel kernels[PLM_TYPE_COUNT] = {
    [PLM_TYPE_F32] = {PLM_ACTIVATIONS_F32, f32_tile4, f32_tile1},
    [PLM_TYPE_F16] = {PLM_ACTIVATIONS_F32, f16_tile4, f16_tile1},
    [PLM_TYPE_BF16] = {PLM_ACTIVATIONS_F32, bf16_tile4, bf16_tile1},
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
};

const struct plm_kernel *plm_avx2_kernel(int type)
{
    if (type < 0 || type >= PLM_TYPE_COUNT || !kernels[type].tile4)
        return NULL;
    return &kernels[type];
}

#endif
