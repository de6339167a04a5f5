/*
 * AVX-512 kernels (F, BW, VL and VNNI): one weight row against a tile of
 * tokens (matmul_impl.h), on 512-bit vectors of 64 bytes.
 *
 * As in matmul_avx2.c, every function carries its own target attribute so the
 * rest of the program keeps the baseline flags; matmul.c only calls in here
 * after checking the CPU.
 *
 * Integer dot products use VNNI:
 *   - vpdpbusd multiplies 64 unsigned bytes by 64 signed bytes and adds each
 *     run of four products into one 32-bit lane, in one instruction (AVX2
 *     needs maddubs, madd and add). It is not saturating, so sums are exact.
 *   - vpdpwssd multiplies 16-bit pairs and adds them into 32-bit lanes; the
 *     K-quants use it to apply their 16-bit sub-block scales to the pair sums
 *     of maddubs in the same step as the accumulation.
 * vpdpbusd wants its first operand unsigned. The 32-element formats take
 * their activations prepared for it once per product (struct
 * plm_act_q8_pair): quants + 128, so the weights, whatever their format, are
 * the signed operand, and each dot starts from -128 * (sum of the weights),
 * computed once per weight block for all tokens; with the scales already
 * spread over the lanes, a token's step is one vpdpbusd, one convert and two
 * multiply-adds. The integer sums are the same as with the activations
 * signed, so the results are bit-identical to multiplying signed quants.
 *
 * The 32-element formats are processed two blocks per 64-byte vector. Each
 * token keeps two accumulators that take alternate pairs of blocks, so even
 * a single token (decoding) has two independent multiply-add chains; every
 * tile size runs the same float operations per token, so a token gets
 * bit-identical results alone or in a batch.
 *
 * Q4_0, Q5_0, Q8_0 and Q4_K matrices repacked (kernels/pack.h) have kernels of
 * their own, packed_group_tile and packed_q4_K_tile: 16 rows at once, each
 * vpdpbusd multiplying 4 quants of every row by 4 of a token's activations
 * broadcast to all lanes. With no horizontal sums and one scale load for 16
 * rows, they run prompts 2.2-3.7x as fast as the row kernels below
 * (bench/kernels_bench.c).
 *
 * Every weight type of the engine has a kernel here except F32, which runs
 * the AVX2 kernel: an AVX-512 one streaming F32 rows from memory measured
 * 30-40% slower (decoding, bench/kernels_bench.c), most likely because a
 * 64-byte load crosses a cache line whenever the row is not 64-byte aligned;
 * F16 and BF16, loaded 32 bytes at a time and widened, are as fast or faster
 * than on AVX2.
 */
#if defined(__x86_64__)

#include "kernels/matmul_impl.h"
#include "kernels/pack.h"
#include "kernels/quantize_activations.h"
#include "kernels/x86_shared.h"
#include "tensor/quant_blocks.h"
#include "tensor/types.h"

#include <immintrin.h>
#include <stdbool.h>
#include <string.h>

#define AVX512_TARGET "avx512f,avx512bw,avx512vl,avx512vnni,avx2,fma,f16c"
#define AVX512_FUNCTION __attribute__((target(AVX512_TARGET)))
#define AVX512_INLINE static inline __attribute__((always_inline, target(AVX512_TARGET)))

/* ------------------------------------------------------------ helpers */

AVX512_INLINE float half_to_float(uint16_t h)
{
    return _cvtsh_ss(h);
}

/* 16 floats: the first 8 are low, the last 8 high. Two blocks' scales side
 * by side, matching the two blocks' 32-bit dot lanes. */
AVX512_INLINE __m512 two_scales(float low, float high)
{
    return _mm512_mask_mov_ps(_mm512_set1_ps(low), 0xFF00, _mm512_set1_ps(high));
}

/* 64 bytes: 32 from a, then 32 from b. */
AVX512_INLINE __m512i load_two_32_bytes(const void *a, const void *b)
{
    return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)a)),
                              _mm256_loadu_si256((const __m256i *)b), 1);
}

/* ------------------------------------------- half-float weight types */

/* Up to 16 weights i .. i+15 of an F16 or BF16 row as floats (count picks
 * them; the other lanes are zero and their memory is not read). */
AVX512_INLINE __m512 load_16_weights(int type, const void *row, int64_t i, __mmask16 count)
{
    const __m256i halves = _mm256_maskz_loadu_epi16(count, (const uint16_t *)row + i);
    if (type == PLM_TYPE_F16)
        return _mm512_cvtph_ps(halves);
    /* BF16 is the top half of a float. */
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(halves), 16));
}

/* Any row length: 32 elements per step in two accumulators per token, then
 * masked steps of up to 16 for the rest, so there is no scalar tail. */
AVX512_INLINE void float_row_tile(int type, const void *row, const float *x, int64_t n, float *y,
                                  int64_t y_stride, const int tile_tokens)
{
    __m512 acc0[PLM_TOKEN_TILE], acc1[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++)
        acc0[t] = acc1[t] = _mm512_setzero_ps();
    const __mmask16 all = 0xFFFF;
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        const __m512 w0 = load_16_weights(type, row, i, all);
        const __m512 w1 = load_16_weights(type, row, i + 16, all);
        for (int t = 0; t < tile_tokens; t++) {
            const float *xt = x + t * n + i;
            acc0[t] = _mm512_fmadd_ps(w0, _mm512_loadu_ps(xt), acc0[t]);
            acc1[t] = _mm512_fmadd_ps(w1, _mm512_loadu_ps(xt + 16), acc1[t]);
        }
    }
    for (; i < n; i += 16) {
        const __mmask16 count = n - i >= 16 ? all : (__mmask16)((1u << (n - i)) - 1);
        const __m512 w = load_16_weights(type, row, i, count);
        for (int t = 0; t < tile_tokens; t++)
            acc0[t] = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(count, x + t * n + i), acc0[t]);
    }
    for (int t = 0; t < tile_tokens; t++)
        y[t * y_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t]));
}

/* ------------------------------------- 32-element blocks (Q4_0 .. Q8_0) */

/* Two consecutive weight blocks as 64 signed quants in element order (block
 * 0's 32, then block 1's), with their scales and offsets: element = d * quant
 * + m. Q4_0, Q5_0 and Q8_0 have signed quants (the -8 or -16 folded in) and
 * no offset; Q4_1 and Q5_1 have quants in [0, 31] and an offset m per
 * block. */
struct legacy_pair {
    __m512i quants;
    __m512 d; /* two_scales(d of block 0, d of block 1) */
    float m[2];
};

/* The 16 bytes of nibbles of blocks a and b as 64 values in element order:
 * for each block, low nibbles are elements 0-15, high nibbles 16-31. */
AVX512_INLINE __m512i unpack_two_nibble_blocks(const uint8_t *qs_a, const uint8_t *qs_b)
{
    /* 128-bit lanes a, a, b, b; then shift the 2nd and 4th right by 4. */
    const __m256i a = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs_a));
    const __m256i b = _mm256_broadcastsi128_si256(_mm_loadu_si128((const __m128i *)qs_b));
    const __m512i lanes = _mm512_inserti64x4(_mm512_castsi256_si512(a), b, 1);
    const __m512i shifts = _mm512_set_epi64(4, 4, 0, 0, 4, 4, 0, 0);
    return _mm512_and_si512(_mm512_srlv_epi64(lanes, shifts), _mm512_set1_epi8(0x0F));
}

/* The fifth bits of blocks a and b: bit j of the mask is element j's. */
AVX512_INLINE __mmask64 two_fifth_bit_masks(const uint8_t qh_a[4], const uint8_t qh_b[4])
{
    uint32_t a, b;
    memcpy(&a, qh_a, sizeof a);
    memcpy(&b, qh_b, sizeof b);
    return _cvtu64_mask64((uint64_t)b << 32 | a);
}

/* Blocks b and b2 of the row: b2 = b + 1, or b again for a last odd block
 * (its lanes are then left out of the sums, see legacy_step). */
AVX512_INLINE struct legacy_pair unpack_legacy_pair(int type, const void *row, int64_t b,
                                                    int64_t b2)
{
    struct legacy_pair out = {.m = {0.0f, 0.0f}};
    switch (type) {
    case PLM_TYPE_Q4_0: {
        const struct plm_block_q4_0 *block0 = (const struct plm_block_q4_0 *)row + b;
        const struct plm_block_q4_0 *block1 = (const struct plm_block_q4_0 *)row + b2;
        out.quants = _mm512_sub_epi8(unpack_two_nibble_blocks(block0->qs, block1->qs),
                                     _mm512_set1_epi8(8));
        out.d = two_scales(half_to_float(block0->d), half_to_float(block1->d));
        break;
    }
    case PLM_TYPE_Q4_1: {
        const struct plm_block_q4_1 *block0 = (const struct plm_block_q4_1 *)row + b;
        const struct plm_block_q4_1 *block1 = (const struct plm_block_q4_1 *)row + b2;
        out.quants = unpack_two_nibble_blocks(block0->qs, block1->qs);
        out.d = two_scales(half_to_float(block0->d), half_to_float(block1->d));
        out.m[0] = half_to_float(block0->m);
        out.m[1] = half_to_float(block1->m);
        break;
    }
    case PLM_TYPE_Q5_0: {
        /* q - 16 is the nibble where the fifth bit is set, else nibble - 16. */
        const struct plm_block_q5_0 *block0 = (const struct plm_block_q5_0 *)row + b;
        const struct plm_block_q5_0 *block1 = (const struct plm_block_q5_0 *)row + b2;
        const __m512i nibbles = unpack_two_nibble_blocks(block0->qs, block1->qs);
        const __mmask64 high_clear = _knot_mask64(two_fifth_bit_masks(block0->qh, block1->qh));
        out.quants = _mm512_mask_sub_epi8(nibbles, high_clear, nibbles, _mm512_set1_epi8(16));
        out.d = two_scales(half_to_float(block0->d), half_to_float(block1->d));
        break;
    }
    case PLM_TYPE_Q5_1: {
        const struct plm_block_q5_1 *block0 = (const struct plm_block_q5_1 *)row + b;
        const struct plm_block_q5_1 *block1 = (const struct plm_block_q5_1 *)row + b2;
        const __m512i nibbles = unpack_two_nibble_blocks(block0->qs, block1->qs);
        const __mmask64 high_set = two_fifth_bit_masks(block0->qh, block1->qh);
        out.quants = _mm512_mask_add_epi8(nibbles, high_set, nibbles, _mm512_set1_epi8(16));
        out.d = two_scales(half_to_float(block0->d), half_to_float(block1->d));
        out.m[0] = half_to_float(block0->m);
        out.m[1] = half_to_float(block1->m);
        break;
    }
    default: { /* PLM_TYPE_Q8_0 */
        const struct plm_block_q8_0 *block0 = (const struct plm_block_q8_0 *)row + b;
        const struct plm_block_q8_0 *block1 = (const struct plm_block_q8_0 *)row + b2;
        out.quants = load_two_32_bytes(block0->qs, block1->qs);
        out.d = two_scales(half_to_float(block0->d), half_to_float(block1->d));
        break;
    }
    }
    return out;
}

/* Pair p of the row's blocks (b = 2p and b2) into acc (one per token): acc +=
 * d_w * d_x * (quants . qx) lane-wise, plus the offsets' m * sum into offset.
 * The activations are qx + 128 (struct plm_act_q8_pair), so each dot starts
 * from -128 * (the lane's four weights): the integer sums are those of
 * quants . qx, exactly. A last odd block (b2 == b) only updates the low 8
 * lanes. */
AVX512_INLINE void legacy_step(int type, const void *row, const struct plm_act_q8_pair *x,
                               int64_t n_pairs, int64_t p, int64_t b2, __m512 acc[],
                               float offset[], const int tile_tokens)
{
    const bool has_offset = type == PLM_TYPE_Q4_1 || type == PLM_TYPE_Q5_1;
    const int64_t b = 2 * p;
    const __mmask16 lanes = b2 == b ? 0x00FF : 0xFFFF;
    const struct legacy_pair w = unpack_legacy_pair(type, row, b, b2);
    const __m512i weight_sums =
        _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8((char)0x80), w.quants);
    const __m512i start = _mm512_sub_epi32(_mm512_setzero_si512(), weight_sums);
    for (int t = 0; t < tile_tokens; t++) {
        const struct plm_act_q8_pair *xp = &x[t * n_pairs + p];
        const __m512i dot = _mm512_dpbusd_epi32(start, _mm512_loadu_si512(xp->qs), w.quants);
        const __m512 scale = _mm512_mul_ps(w.d, _mm512_loadu_ps(xp->d));
        acc[t] = _mm512_mask3_fmadd_ps(scale, _mm512_cvtepi32_ps(dot), acc[t], lanes);
        if (has_offset)
            offset[t] += w.m[0] * xp->sum[0] + (b2 == b ? 0.0f : w.m[1] * xp->sum[1]);
    }
}

/* sum over blocks of d * dx * (quants . qx) + m * dx * sum(qx), pairs of
 * blocks alternating between two accumulators per token. */
AVX512_INLINE void legacy_row_tile(int type, const void *row, const struct plm_act_q8_pair *x,
                                   int64_t n_blocks, float *y, int64_t y_stride,
                                   const int tile_tokens)
{
    const int64_t n_pairs = (n_blocks + 1) / 2;
    __m512 acc0[PLM_TOKEN_TILE], acc1[PLM_TOKEN_TILE];
    float offset[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++) {
        acc0[t] = acc1[t] = _mm512_setzero_ps();
        offset[t] = 0.0f;
    }
    int64_t p = 0;
    for (; 2 * p + 4 <= n_blocks; p += 2) {
        legacy_step(type, row, x, n_pairs, p, 2 * p + 1, acc0, offset, tile_tokens);
        legacy_step(type, row, x, n_pairs, p + 1, 2 * p + 3, acc1, offset, tile_tokens);
    }
    if (2 * p + 2 <= n_blocks) {
        legacy_step(type, row, x, n_pairs, p, 2 * p + 1, acc0, offset, tile_tokens);
        p++;
    }
    if (2 * p < n_blocks)
        legacy_step(type, row, x, n_pairs, p, 2 * p, acc1, offset, tile_tokens);
    for (int t = 0; t < tile_tokens; t++)
        y[t * y_stride] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[t], acc1[t])) + offset[t];
}

/* ------------------------------------------ K-quant super-blocks of 256 */

/*
 * As in matmul_avx2.c, every K-quant is handled as unsigned quants u in
 * [0, 63] with a 16-bit integer scale per 16-element sub-block, plus a
 * correction on whole sub-blocks:
 *     block . x = dx * (d * sum_s scale_s * (u_s . qx_s)
 *                       - offset_d * sum_s coef_s * bsum_s)
 * (coef: the mins of Q2_K, Q4_K and Q5_K; 4 or 32 times the scale for the
 * fixed offsets of Q3_K and Q6_K). A super-block is read as four vectors of
 * 64 quants; maddubs adds neighbouring products into 16-bit pair sums (at
 * most 2 * 63 * 127, so never saturating) and vpdpwssd multiplies each with
 * its sub-block's scale and accumulates, exactly: at most
 * 16 * 16 * 63 * 127 * 128 < 2^31 per super-block.
 */
struct k_block_factors {
    float d, offset_d;
    __m512i sub_scales;   /* lanes 0-15: the 16-bit scale of each sub-block */
    __m256i offset_coefs; /* coef_s of the 16 sub-blocks, 16-bit */
};

/* Eight bytes as sixteen 16-bit values, each twice: the scales and mins of
 * Q4_K and Q5_K cover two sub-blocks of 16 each. */
AVX512_INLINE __m256i each_twice(const uint8_t values[8])
{
    const __m128i words = _mm_cvtepu8_epi16(_mm_loadl_epi64((const __m128i *)values));
    return _mm256_set_m128i(_mm_unpackhi_epi16(words, words), _mm_unpacklo_epi16(words, words));
}

/* Q4_K and Q5_K: d, dmin and 6-bit scales and mins, one pair per 32
 * elements. Sets all of f but its sub-block scales, which it returns. */
AVX512_INLINE __m256i k_scale_min_factors(struct k_block_factors *f, uint16_t d, uint16_t dmin,
                                          const uint8_t packed[12])
{
    uint8_t scales[8], mins[8];
    plm_unpack_k_scales_mins(packed, scales, mins);
    f->d = half_to_float(d);
    f->offset_d = half_to_float(dmin);
    f->offset_coefs = each_twice(mins);
    return each_twice(scales);
}

AVX512_INLINE struct k_block_factors k_block_factors(int type, const uint8_t *block)
{
    struct k_block_factors f;
    __m256i scales16;
    switch (type) {
    case PLM_TYPE_Q2_K: {
        const struct plm_block_q2_K *q2 = (const struct plm_block_q2_K *)block;
        const __m128i packed = _mm_loadu_si128((const __m128i *)q2->scales);
        const __m128i low_nibbles = _mm_set1_epi8(0x0F);
        f.d = half_to_float(q2->d);
        f.offset_d = half_to_float(q2->dmin);
        scales16 = _mm256_cvtepu8_epi16(_mm_and_si128(packed, low_nibbles));
        f.offset_coefs = _mm256_cvtepu8_epi16(_mm_and_si128(_mm_srli_epi16(packed, 4), low_nibbles));
        break;
    }
    case PLM_TYPE_Q3_K: {
        const struct plm_block_q3_K *q3 = (const struct plm_block_q3_K *)block;
        f.d = f.offset_d = half_to_float(q3->d);
        scales16 = _mm256_cvtepi8_epi16(plm_q3_K_scales_x86(q3->scales));
        f.offset_coefs = _mm256_slli_epi16(scales16, 2); /* 4 s */
        break;
    }
    case PLM_TYPE_Q4_K: {
        const struct plm_block_q4_K *q4 = (const struct plm_block_q4_K *)block;
        scales16 = k_scale_min_factors(&f, q4->d, q4->dmin, q4->scales);
        break;
    }
    case PLM_TYPE_Q5_K: {
        const struct plm_block_q5_K *q5 = (const struct plm_block_q5_K *)block;
        scales16 = k_scale_min_factors(&f, q5->d, q5->dmin, q5->scales);
        break;
    }
    default: { /* PLM_TYPE_Q6_K */
        const struct plm_block_q6_K *q6 = (const struct plm_block_q6_K *)block;
        f.d = f.offset_d = half_to_float(q6->d);
        scales16 = _mm256_cvtepi8_epi16(_mm_loadu_si128((const __m128i *)q6->scales));
        f.offset_coefs = _mm256_slli_epi16(scales16, 5); /* 32 s */
        break;
    }
    }
    f.sub_scales = _mm512_castsi256_si512(scales16);
    return f;
}

/* The 16-bit scales for the 32 pair sums of quarter c (elements 64 c ..
 * 64 c + 63): pair sum i covers elements 2i, 2i + 1, in sub-block
 * 4 c + i / 8. */
AVX512_INLINE __m512i k_quarter_scales(const struct k_block_factors *f, int c)
{
    const long long lane_div_8 = 0x0001000100010001LL;
    const __m512i sub_block_of_lane =
        _mm512_set_epi64(3 * lane_div_8, 3 * lane_div_8, 2 * lane_div_8, 2 * lane_div_8,
                         lane_div_8, lane_div_8, 0, 0);
    const __m512i index = _mm512_add_epi16(sub_block_of_lane, _mm512_set1_epi16((short)(4 * c)));
    return _mm512_permutexvar_epi16(index, f->sub_scales);
}

/* 32 bytes at p in both halves, the low half shifted right by low_shift and
 * the high one by high_shift (64-bit shifts leak bits across bytes; mask
 * keeps each byte's own), masked. */
AVX512_INLINE __m512i two_bit_fields(const uint8_t *p, int low_shift, int high_shift, int mask)
{
    const __m512i bytes = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
    const __m512i shifts = _mm512_set_epi64(high_shift, high_shift, high_shift, high_shift,
                                            low_shift, low_shift, low_shift, low_shift);
    return _mm512_and_si512(_mm512_srlv_epi64(bytes, shifts), _mm512_set1_epi8((char)mask));
}

/* Bytes whose bit `low_bit` (first 32 bytes) or `low_bit + 1` (last 32) is
 * set in the 32 bytes at p, as a mask: the extra high bits of groups
 * low_bit and low_bit + 1 in Q3_K's hmask and Q5_K's qh. */
AVX512_INLINE __mmask64 two_bit_masks(const uint8_t *p, int low_bit)
{
    const __m512i bytes = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)p));
    const __m512i bit = _mm512_mask_mov_epi8(_mm512_set1_epi8((char)(1 << low_bit)),
                                             0xFFFFFFFF00000000ULL,
                                             _mm512_set1_epi8((char)(1 << (low_bit + 1))));
    return _mm512_test_epi8_mask(bytes, bit);
}

/* The unsigned quants of quarter c (elements 64 c .. 64 c + 63, the groups
 * of 32 g = 2 c and 2 c + 1; see quant_blocks.h for the layouts). */
AVX512_INLINE __m512i k_quarter_quants(int type, const uint8_t *block, int c)
{
    /* For the 2-bit fields: the 128-element half, and the field of group 2c
     * (group 2c + 1 is the next field). */
    const int half = c / 2, field = 2 * (c % 2);
    switch (type) {
    case PLM_TYPE_Q2_K: {
        const struct plm_block_q2_K *q2 = (const struct plm_block_q2_K *)block;
        return two_bit_fields(q2->qs + 32 * half, 2 * field, 2 * field + 2, 3);
    }
    case PLM_TYPE_Q3_K: {
        const struct plm_block_q3_K *q3 = (const struct plm_block_q3_K *)block;
        const __m512i low = two_bit_fields(q3->qs + 32 * half, 2 * field, 2 * field + 2, 3);
        return _mm512_mask_add_epi8(low, two_bit_masks(q3->hmask, 2 * c), low, _mm512_set1_epi8(4));
    }
    case PLM_TYPE_Q4_K: {
        /* Groups 2c and 2c+1 are the low and high nibbles of qs[32c ..]. */
        const struct plm_block_q4_K *q4 = (const struct plm_block_q4_K *)block;
        return two_bit_fields(q4->qs + 32 * c, 0, 4, 0x0F);
    }
    case PLM_TYPE_Q5_K: {
        const struct plm_block_q5_K *q5 = (const struct plm_block_q5_K *)block;
        const __m512i low = two_bit_fields(q5->qs + 32 * c, 0, 4, 0x0F);
        return _mm512_mask_add_epi8(low, two_bit_masks(q5->qh, 2 * c), low, _mm512_set1_epi8(16));
    }
    default: { /* PLM_TYPE_Q6_K */
        /* Groups 2c and 2c+1 take the same nibble of ql[64h ..] and
         * ql[64h + 32 ..]: 64 bytes in a row; their top bits are fields
         * `field` and `field + 1` of qh[32h ..]. */
        const struct plm_block_q6_K *q6 = (const struct plm_block_q6_K *)block;
        const __m512i ql = _mm512_loadu_si512((const void *)(q6->ql + 64 * half));
        const __m512i low = _mm512_and_si512(_mm512_srli_epi16(ql, 4 * (c % 2)),
                                             _mm512_set1_epi8(0x0F));
        const __m512i high = two_bit_fields(q6->qh + 32 * half, 2 * field, 2 * field + 2, 3);
        return _mm512_or_si512(low, _mm512_slli_epi16(high, 4));
    }
    }
}

AVX512_INLINE void k_quant_row_tile(int type, const uint8_t *row, size_t block_bytes,
                                    const struct plm_act_q8_K *x, int64_t n_blocks, float *y,
                                    int64_t y_stride, const int tile_tokens)
{
    __m512 acc[PLM_TOKEN_TILE];
    __m256 correction_acc[PLM_TOKEN_TILE];
    for (int t = 0; t < tile_tokens; t++) {
        acc[t] = _mm512_setzero_ps();
        correction_acc[t] = _mm256_setzero_ps();
    }
    for (int64_t b = 0; b < n_blocks; b++) {
        const uint8_t *block = row + (size_t)b * block_bytes;
        const struct k_block_factors f = k_block_factors(type, block);
        __m512i scaled_sum[PLM_TOKEN_TILE];
        for (int t = 0; t < tile_tokens; t++)
            scaled_sum[t] = _mm512_setzero_si512();
        for (int c = 0; c < 4; c++) {
            const __m512i quants = k_quarter_quants(type, block, c);
            const __m512i scales = k_quarter_scales(&f, c);
            for (int t = 0; t < tile_tokens; t++) {
                const __m512i qx = _mm512_loadu_si512((const void *)(x[t * n_blocks + b].qs + 64 * c));
                scaled_sum[t] = _mm512_dpwssd_epi32(scaled_sum[t], _mm512_maddubs_epi16(quants, qx),
                                                    scales);
            }
        }
        for (int t = 0; t < tile_tokens; t++) {
            const struct plm_act_q8_K *xb = &x[t * n_blocks + b];
            const __m256i bsums = _mm256_loadu_si256((const __m256i *)xb->bsums);
            const __m256i correction = _mm256_madd_epi16(f.offset_coefs, bsums);
            acc[t] = _mm512_fmadd_ps(_mm512_set1_ps(f.d * xb->d), _mm512_cvtepi32_ps(scaled_sum[t]),
                                     acc[t]);
            correction_acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(-f.offset_d * xb->d),
                                                _mm256_cvtepi32_ps(correction), correction_acc[t]);
        }
    }
    for (int t = 0; t < tile_tokens; t++)
        y[t * y_stride] = _mm512_reduce_add_ps(acc[t]) +
                          _mm512_reduce_add_ps(_mm512_zextps256_ps512(correction_acc[t]));
}

/* ------------------------------------- packed rows (kernels/pack.h) */

/* The 8 vectors of unsigned quants of block b of a packed group: vector k
 * holds elements 4 k .. 4 k + 3 of the 16 rows, one row per 32-bit lane. */
AVX512_INLINE void packed_quants(int type, const uint8_t *quants, __m512i w[8])
{
    if (type == PLM_TYPE_Q8_0) {
        for (int k = 0; k < 8; k++)
            w[k] = _mm512_loadu_si512((const void *)(quants + 64 * k));
        return;
    }
    /* Q4_0 and Q5_0: low nibbles are elements 4 k + j, high nibbles 4 k + j + 16. */
    const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
    for (int k = 0; k < 4; k++) {
        const __m512i bytes = _mm512_loadu_si512((const void *)(quants + 64 * k));
        w[k] = _mm512_and_si512(bytes, low_nibbles);
        w[k + 4] = _mm512_and_si512(_mm512_srli_epi16(bytes, 4), low_nibbles);
    }
    if (type != PLM_TYPE_Q5_0)
        return;
    /* Vector k's fifth bits are bit k of each byte of qh: moved to bit 4
     * (shifts of 16-bit lanes, which keep bit 4 of each byte within it for
     * these distances) and or-ed in (vpternlogd 0xF8: a | (b & c)). */
    const __m512i fifth_bits = _mm512_loadu_si512((const void *)((const struct plm_packed_q5_0 *)quants)->qh);
    const __m512i bit_4 = _mm512_set1_epi8(0x10);
    for (int k = 0; k < 8; k++) {
        const __m512i moved = k <= 4 ? _mm512_slli_epi16(fifth_bits, 4 - k) : _mm512_srli_epi16(fifth_bits, k - 4);
        w[k] = _mm512_ternarylogic_epi32(w[k], moved, bit_4, 0xF8);
    }
}

/* How far ahead of the block in use the packed kernels ask for their
 * weights. Decoding streams a group's quants and its scales from memory
 * side by side; the hardware prefetchers alone left a thread at 11 GB/s
 * where the row-by-row kernel reads 16, and the prefetches lift it to 15-20
 * (kernels_bench, one thread: 1 KiB ahead too little, 4 and 8 KiB alike). */
#define PREFETCH_BYTES 4096

/* Blocks of 32 whose prefetches the decoding kernel of Q4_0, Q5_0 and Q8_0
 * asks for at once, every PREFETCH_BURST blocks. One block's 4 or 8 lines
 * per step left Llama-3.2-1B Q4_0 decoding at 0.55 of Q4_K's speed for the
 * same bytes, with a third of the kernel's samples on the prefetch
 * instruction (perf); bursts about as long as Q4_K's super-block (2 KiB of
 * Q4_0) decode 1.05-1.23x as fast (pocketlm bench tg128, same-run A/B). */
#define PREFETCH_BURST 8

/* Tokens per tile of the packed kernels: with 16 rows in each vector, 8
 * tokens' accumulators fit in the 32 registers beside a block's 8 vectors of
 * weights, and each block is unpacked for twice as many tokens as with 4. */
#define PACKED_TILE 8

/* Four activations from p, in every 32-bit lane. */
AVX512_INLINE __m512i broadcast_4_bytes(const int8_t *p)
{
    int32_t word;
    memcpy(&word, p, sizeof word);
    return _mm512_set1_epi32(word);
}

/* Asks for `bytes` bytes from p on, one request per cache line. */
AVX512_INLINE void prefetch_lines(const uint8_t *p, size_t bytes)
{
    for (size_t line = 0; line < bytes; line += 64)
        _mm_prefetch((const char *)p + line, _MM_HINT_T0);
}

/* 16 rows of a packed group against a tile of tokens. For each block, a
 * token's 32 activations meet the 16 rows' quants in 8 vpdpbusd; the integer
 * sums, scaled by d_w * d_x, go into acc, and d_w * (the block's sum of
 * activations) into offset_acc, of which offset times is taken off at the
 * end (the quants are stored plus offset). Every tile size runs the same
 * operations per token. */
AVX512_INLINE void packed_group_tile(int type, const uint8_t *group, const struct plm_act_q8 *x,
                                     int64_t n_blocks, float *y, int64_t y_stride, uint16_t rows,
                                     const int tile_tokens)
{
    const size_t quant_bytes = type == PLM_TYPE_Q4_0   ? sizeof(struct plm_packed_q4_0)
                               : type == PLM_TYPE_Q5_0 ? sizeof(struct plm_packed_q5_0)
                                                       : sizeof(struct plm_packed_q8_0);
    const struct plm_packed_scales *scales =
        (const struct plm_packed_scales *)(group + (size_t)n_blocks * quant_bytes);
    __m512 acc[PACKED_TILE], offset_acc[PACKED_TILE];
    for (int t = 0; t < tile_tokens; t++)
        acc[t] = offset_acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        __m512i w[8];
        if (tile_tokens > 1 || b % PREFETCH_BURST == 0) {
            /* Prompts ask for one block per step (their rows come from the
             * L2 cache after the first tile: matmul.c), decoding for bursts.
             * The scales, 32 bytes per block, as many blocks ahead as the
             * quants. */
            const size_t blocks = tile_tokens > 1 ? 1 : PREFETCH_BURST;
            prefetch_lines(group + (size_t)b * quant_bytes + PREFETCH_BYTES, blocks * quant_bytes);
            prefetch_lines((const uint8_t *)&scales[b] + PREFETCH_BYTES / quant_bytes * sizeof *scales,
                           blocks * sizeof *scales);
        }
        packed_quants(type, group + (size_t)b * quant_bytes, w);
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)scales[b].d));
        for (int t = 0; t < tile_tokens; t++) {
            const struct plm_act_q8 *xb = &x[t * n_blocks + b];
            __m512i dot = _mm512_setzero_si512();
            for (int k = 0; k < 8; k++)
                dot = _mm512_dpbusd_epi32(dot, w[k], broadcast_4_bytes(xb->qs + 4 * k));
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, _mm512_set1_ps(xb->d)), _mm512_cvtepi32_ps(dot), acc[t]);
            offset_acc[t] = _mm512_fmadd_ps(d, _mm512_set1_ps(xb->sum), offset_acc[t]);
        }
    }
    const __m512 offset = _mm512_set1_ps((float)plm_packed_offset(type));
    for (int t = 0; t < tile_tokens; t++)
        _mm512_mask_storeu_ps(y + t * y_stride, rows, _mm512_fnmadd_ps(offset, offset_acc[t], acc[t]));
}

/* The 16 rows' 6-bit mins of one sub-block as (min, min) pairs of 16-bit
 * values, one pair per 32-bit lane: vpdpwssd then multiplies them by a pair
 * of the token's 16-element sums and adds both products. */
AVX512_INLINE __m512i min_pairs(const uint8_t mins[PLM_PACK_ROWS])
{
    const __m512i min = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)mins));
    return _mm512_or_si512(min, _mm512_slli_epi32(min, 16));
}

/* 16 rows of a packed Q4_K group (struct plm_packed_q4_K) against a tile of
 * tokens. Per super-block, a token's 256 activations meet the rows' quants
 * in 64 vpdpbusd, 8 per sub-block; each sub-block's sums are multiplied by
 * its 6-bit scales in integers (exact: at most 8 * 32 * 15 * 127 * 63 <
 * 2^31), the mins by the token's sub-block sums (vpdpwssd), and two float
 * multiply-adds per super-block apply d * d_x and dmin * d_x. Every tile size
 * runs the same operations per token. */
AVX512_INLINE void packed_q4_K_tile(const uint8_t *group, const struct plm_act_q8_K *x, int64_t n_blocks,
                                    float *y, int64_t y_stride, uint16_t rows, const int tile_tokens)
{
    const struct plm_packed_q4_K *blocks = (const struct plm_packed_q4_K *)group;
    const __m512i low_nibbles = _mm512_set1_epi8(0x0F);
    __m512 acc[PACKED_TILE];
    for (int t = 0; t < tile_tokens; t++)
        acc[t] = _mm512_setzero_ps();
    for (int64_t b = 0; b < n_blocks; b++) {
        const struct plm_packed_q4_K *block = &blocks[b];
        prefetch_lines((const uint8_t *)block + PREFETCH_BYTES, sizeof *block);
        __m512i sums[PACKED_TILE], min_sums[PACKED_TILE];
        for (int t = 0; t < tile_tokens; t++)
            sums[t] = min_sums[t] = _mm512_setzero_si512();
        for (int s = 0; s < 8; s++) { /* sub-block s: nibbles (s % 2) of chunk s / 2 */
            const int c = s / 2, high = s % 2;
            __m512i w[8];
            for (int k = 0; k < 8; k++) {
                const __m512i bytes = _mm512_loadu_si512((const void *)block->qs[c][k]);
                w[k] = _mm512_and_si512(high ? _mm512_srli_epi16(bytes, 4) : bytes, low_nibbles);
            }
            const __m512i scale = _mm512_cvtepu8_epi32(_mm_loadu_si128((const __m128i *)block->scales[s]));
            const __m512i mins = min_pairs(block->mins[s]);
            for (int t = 0; t < tile_tokens; t++) {
                const struct plm_act_q8_K *xb = &x[t * n_blocks + b];
                __m512i dot = _mm512_setzero_si512();
                for (int k = 0; k < 8; k++)
                    dot = _mm512_dpbusd_epi32(dot, w[k], broadcast_4_bytes(xb->qs + 32 * s + 4 * k));
                sums[t] = _mm512_add_epi32(sums[t], _mm512_mullo_epi32(dot, scale));
                min_sums[t] = _mm512_dpwssd_epi32(min_sums[t], mins,
                                                  broadcast_4_bytes((const int8_t *)&xb->bsums[2 * s]));
            }
        }
        const __m512 d = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)block->d));
        const __m512 dmin = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)block->dmin));
        for (int t = 0; t < tile_tokens; t++) {
            const __m512 dx = _mm512_set1_ps(x[t * n_blocks + b].d);
            acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(d, dx), _mm512_cvtepi32_ps(sums[t]), acc[t]);
            acc[t] = _mm512_fnmadd_ps(_mm512_mul_ps(dmin, dx), _mm512_cvtepi32_ps(min_sums[t]), acc[t]);
        }
    }
    for (int t = 0; t < tile_tokens; t++)
        _mm512_mask_storeu_ps(y + t * y_stride, rows, acc[t]);
}

/* ------------------------------------------------------ entry points */

/* Each type's tile4 and tile1: the body above with the type and the token
 * count as constants. */

AVX512_FUNCTION static void f16_tile4(const void *row, const void *x, int64_t n, float *y,
                                      int64_t ys)
{
    float_row_tile(PLM_TYPE_F16, row, x, n, y, ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void f16_tile1(const void *row, const void *x, int64_t n, float *y,
                                      int64_t ys)
{
    float_row_tile(PLM_TYPE_F16, row, x, n, y, ys, 1);
}

AVX512_FUNCTION static void bf16_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    float_row_tile(PLM_TYPE_BF16, row, x, n, y, ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void bf16_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    float_row_tile(PLM_TYPE_BF16, row, x, n, y, ys, 1);
}


AVX512_FUNCTION static void q4_0_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_0, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q4_0_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_0, row, x, n / PLM_QK, y, ys, 1);
}

AVX512_FUNCTION static void q4_1_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_1, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q4_1_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q4_1, row, x, n / PLM_QK, y, ys, 1);
}

AVX512_FUNCTION static void q5_0_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_0, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q5_0_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_0, row, x, n / PLM_QK, y, ys, 1);
}

AVX512_FUNCTION static void q5_1_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_1, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q5_1_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q5_1, row, x, n / PLM_QK, y, ys, 1);
}

AVX512_FUNCTION static void q8_0_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q8_0, row, x, n / PLM_QK, y, ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q8_0_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    legacy_row_tile(PLM_TYPE_Q8_0, row, x, n / PLM_QK, y, ys, 1);
}


AVX512_FUNCTION static void q2_K_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q2_K, row, sizeof(struct plm_block_q2_K), x, n / PLM_QK_K, y,
                     ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q2_K_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q2_K, row, sizeof(struct plm_block_q2_K), x, n / PLM_QK_K, y,
                     ys, 1);
}

AVX512_FUNCTION static void q3_K_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q3_K, row, sizeof(struct plm_block_q3_K), x, n / PLM_QK_K, y,
                     ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q3_K_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q3_K, row, sizeof(struct plm_block_q3_K), x, n / PLM_QK_K, y,
                     ys, 1);
}

AVX512_FUNCTION static void q4_K_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q4_K, row, sizeof(struct plm_block_q4_K), x, n / PLM_QK_K, y,
                     ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q4_K_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q4_K, row, sizeof(struct plm_block_q4_K), x, n / PLM_QK_K, y,
                     ys, 1);
}

AVX512_FUNCTION static void q5_K_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q5_K, row, sizeof(struct plm_block_q5_K), x, n / PLM_QK_K, y,
                     ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q5_K_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q5_K, row, sizeof(struct plm_block_q5_K), x, n / PLM_QK_K, y,
                     ys, 1);
}

AVX512_FUNCTION static void q6_K_tile4(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q6_K, row, sizeof(struct plm_block_q6_K), x, n / PLM_QK_K, y,
                     ys, PLM_TOKEN_TILE);
}

AVX512_FUNCTION static void q6_K_tile1(const void *row, const void *x, int64_t n, float *y,
                                       int64_t ys)
{
    k_quant_row_tile(PLM_TYPE_Q6_K, row, sizeof(struct plm_block_q6_K), x, n / PLM_QK_K, y,
                     ys, 1);
}

AVX512_FUNCTION static void packed_q4_0_tile8(const void *group, const void *x, int64_t n, float *y,
                                              int64_t ys, uint16_t rows)
{
    packed_group_tile(PLM_TYPE_Q4_0, group, x, n / PLM_QK, y, ys, rows, PACKED_TILE);
}

AVX512_FUNCTION static void packed_q4_0_tile1(const void *group, const void *x, int64_t n, float *y,
                                              int64_t ys, uint16_t rows)
{
    packed_group_tile(PLM_TYPE_Q4_0, group, x, n / PLM_QK, y, ys, rows, 1);
}

AVX512_FUNCTION static void packed_q5_0_tile8(const void *group, const void *x, int64_t n, float *y,
                                              int64_t ys, uint16_t rows)
{
    packed_group_tile(PLM_TYPE_Q5_0, group, x, n / PLM_QK, y, ys, rows, PACKED_TILE);
}

AVX512_FUNCTION static void packed_q5_0_tile1(const void *group, const void *x, int64_t n, float *y,
                                              int64_t ys, uint16_t rows)
{
    packed_group_tile(PLM_TYPE_Q5_0, group, x, n / PLM_QK, y, ys, rows, 1);
}

AVX512_FUNCTION static void packed_q8_0_tile8(const void *group, const void *x, int64_t n, float *y,
                                              int64_t ys, uint16_t rows)
{
    packed_group_tile(PLM_TYPE_Q8_0, group, x, n / PLM_QK, y, ys, rows, PACKED_TILE);
}

AVX512_FUNCTION static void packed_q8_0_tile1(const void *group, const void *x, int64_t n, float *y,
                                              int64_t ys, uint16_t rows)
{
    packed_group_tile(PLM_TYPE_Q8_0, group, x, n / PLM_QK, y, ys, rows, 1);
}

AVX512_FUNCTION static void packed_q4_K_tile8(const void *group, const void *x, int64_t n, float *y,
                                              int64_t ys, uint16_t rows)
{
    packed_q4_K_tile(group, x, n / PLM_QK_K, y, ys, rows, PACKED_TILE);
}

AVX512_FUNCTION static void packed_q4_K_tile1(const void *group, const void *x, int64_t n, float *y,
                                              int64_t ys, uint16_t rows)
{
    packed_q4_K_tile(group, x, n / PLM_QK_K, y, ys, rows, 1);
}

static const struct plm_kernel kernels[PLM_TYPE_COUNT] = {
    [PLM_TYPE_F16] = {PLM_ACTIVATIONS_F32, f16_tile4, f16_tile1},
    [PLM_TYPE_BF16] = {PLM_ACTIVATIONS_F32, bf16_tile4, bf16_tile1},
    [PLM_TYPE_Q4_0] = {PLM_ACTIVATIONS_Q8_PAIRS, q4_0_tile4, q4_0_tile1},
    [PLM_TYPE_Q4_1] = {PLM_ACTIVATIONS_Q8_PAIRS, q4_1_tile4, q4_1_tile1},
    [PLM_TYPE_Q5_0] = {PLM_ACTIVATIONS_Q8_PAIRS, q5_0_tile4, q5_0_tile1},
    [PLM_TYPE_Q5_1] = {PLM_ACTIVATIONS_Q8_PAIRS, q5_1_tile4, q5_1_tile1},
    [PLM_TYPE_Q8_0] = {PLM_ACTIVATIONS_Q8_PAIRS, q8_0_tile4, q8_0_tile1},
    [PLM_TYPE_Q2_K] = {PLM_ACTIVATIONS_Q8_K, q2_K_tile4, q2_K_tile1},
    [PLM_TYPE_Q3_K] = {PLM_ACTIVATIONS_Q8_K, q3_K_tile4, q3_K_tile1},
    [PLM_TYPE_Q4_K] = {PLM_ACTIVATIONS_Q8_K, q4_K_tile4, q4_K_tile1},
    [PLM_TYPE_Q5_K] = {PLM_ACTIVATIONS_Q8_K, q5_K_tile4, q5_K_tile1},
    [PLM_TYPE_Q6_K] = {PLM_ACTIVATIONS_Q8_K, q6_K_tile4, q6_K_tile1},
};

const struct plm_kernel *plm_avx512_kernel(int type)
{
    if (type == PLM_TYPE_F32)
        return plm_avx2_kernel(type); /* faster here, see the top of the file */
    if (type < 0 || type >= PLM_TYPE_COUNT || !kernels[type].tile4)
        return NULL;
    return &kernels[type];
}

static const struct plm_packed_kernel packed_kernels[PLM_TYPE_COUNT] = {
    [PLM_TYPE_Q4_0] = {PLM_ACTIVATIONS_Q8, PACKED_TILE, packed_q4_0_tile8, packed_q4_0_tile1},
    [PLM_TYPE_Q5_0] = {PLM_ACTIVATIONS_Q8, PACKED_TILE, packed_q5_0_tile8, packed_q5_0_tile1},
    [PLM_TYPE_Q8_0] = {PLM_ACTIVATIONS_Q8, PACKED_TILE, packed_q8_0_tile8, packed_q8_0_tile1},
    [PLM_TYPE_Q4_K] = {PLM_ACTIVATIONS_Q8_K, PACKED_TILE, packed_q4_K_tile8, packed_q4_K_tile1},
};

const struct plm_packed_kernel *plm_avx512_packed_kernel(int type)
{
    if (type < 0 || type >= PLM_TYPE_COUNT || !packed_kernels[type].tile)
        return NULL;
    return &packed_kernels[type];
}

#endif
