/*
 * Dequantization: blocks back to floats.
 *
 * The arithmetic follows ggml's reference dequantizers operation for
 * operation (same products, same order, all in float), so a row expands to
 * bit-identical floats here and in llama.cpp.
 */
#include "tensor/quant_blocks.h"
#include "tensor/types.h"

#include <assert.h>
#include <string.h>

static void dequantize_f16(const uint16_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = plm_f16_to_f32(src[i]);
}

static void dequantize_bf16(const uint16_t *src, float *dst, int64_t n)
{
    for (int64_t i = 0; i < n; i++)
        dst[i] = plm_bf16_to_f32(src[i]);
}

static void dequantize_q4_0(const struct plm_block_q4_0 *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK) {
        const float d = plm_f16_to_f32(blocks[b].d);
        for (int j = 0; j < PLM_QK / 2; j++) {
            dst[j] = (float)((blocks[b].qs[j] & 0x0F) - 8) * d;
            dst[j + PLM_QK / 2] = (float)((blocks[b].qs[j] >> 4) - 8) * d;
        }
    }
}

static void dequantize_q4_1(const struct plm_block_q4_1 *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK) {
        const float d = plm_f16_to_f32(blocks[b].d);
        const float m = plm_f16_to_f32(blocks[b].m);
        for (int j = 0; j < PLM_QK / 2; j++) {
            dst[j] = (float)(blocks[b].qs[j] & 0x0F) * d + m;
            dst[j + PLM_QK / 2] = (float)(blocks[b].qs[j] >> 4) * d + m;
        }
    }
}

/* The 5-bit quant j of a Q5_0/Q5_1 block: low nibble from qs, fifth bit from qh. */
static int q5_quant(const uint8_t qs[PLM_QK / 2], const uint8_t qh[4], int j)
{
    int low = j < PLM_QK / 2 ? qs[j] & 0x0F : qs[j - PLM_QK / 2] >> 4;
    return low | plm_q5_fifth_bit(qh, j) << 4;
}

static void dequantize_q5_0(const struct plm_block_q5_0 *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK) {
        const float d = plm_f16_to_f32(blocks[b].d);
        for (int j = 0; j < PLM_QK; j++)
            dst[j] = (float)(q5_quant(blocks[b].qs, blocks[b].qh, j) - 16) * d;
    }
}

static void dequantize_q5_1(const struct plm_block_q5_1 *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK) {
        const float d = plm_f16_to_f32(blocks[b].d);
        const float m = plm_f16_to_f32(blocks[b].m);
        for (int j = 0; j < PLM_QK; j++)
            dst[j] = (float)q5_quant(blocks[b].qs, blocks[b].qh, j) * d + m;
    }
}

static void dequantize_q8_0(const struct plm_block_q8_0 *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK) {
        const float d = plm_f16_to_f32(blocks[b].d);
        for (int j = 0; j < PLM_QK; j++)
            dst[j] = (float)blocks[b].qs[j] * d;
    }
}

/* The 2-bit field of element i (0..255) in the Q2_K/Q3_K qs layout: each half
 * of 128 elements owns 32 bytes, and group g of 32 elements uses bits 2g, 2g+1. */
static int k_low2_bits(const uint8_t qs[PLM_QK_K / 4], int i)
{
    int half = i / 128, group = (i % 128) / 32, l = i % 32;
    return (qs[32 * half + l] >> (2 * group)) & 3;
}

static void dequantize_q2_K(const struct plm_block_q2_K *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK_K) {
        const struct plm_block_q2_K *block = &blocks[b];
        const float d = plm_f16_to_f32(block->d);
        const float dmin = plm_f16_to_f32(block->dmin);
        for (int s = 0; s < PLM_QK_K / 16; s++) {
            const float scale = d * (float)(block->scales[s] & 0x0F);
            const float min = dmin * (float)(block->scales[s] >> 4);
            for (int i = 16 * s; i < 16 * s + 16; i++)
                dst[i] = scale * (float)k_low2_bits(block->qs, i) - min;
        }
    }
}

static void dequantize_q3_K(const struct plm_block_q3_K *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK_K) {
        const struct plm_block_q3_K *block = &blocks[b];
        const float d = plm_f16_to_f32(block->d);
        for (int s = 0; s < PLM_QK_K / 16; s++) {
            const float scale = d * (float)(plm_q3_K_scale(block->scales, s) - 32);
            for (int i = 16 * s; i < 16 * s + 16; i++) {
                int high_bit = (block->hmask[i % 32] >> (i / 32)) & 1;
                /* A clear high bit means the quant is negative: q - 4. */
                int q = k_low2_bits(block->qs, i) - (high_bit ? 0 : 4);
                dst[i] = scale * (float)q;
            }
        }
    }
}

/* Q4_K and Q5_K share the 64-element chunk layout: element 64c + l takes the
 * low nibble of qs[32c + l], element 64c + 32 + l the high nibble. */
static int k_nibble(const uint8_t qs[PLM_QK_K / 2], int i)
{
    int chunk = i / 64, l = i % 32;
    uint8_t byte = qs[32 * chunk + l];
    return (i % 64) < 32 ? byte & 0x0F : byte >> 4;
}

static void dequantize_q4_K(const struct plm_block_q4_K *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK_K) {
        const struct plm_block_q4_K *block = &blocks[b];
        const float d = plm_f16_to_f32(block->d);
        const float dmin = plm_f16_to_f32(block->dmin);
        for (int s = 0; s < PLM_QK_K / 32; s++) {
            uint8_t sc, m;
            plm_k_scale_min(block->scales, s, &sc, &m);
            const float scale = d * (float)sc;
            const float min = dmin * (float)m;
            for (int i = 32 * s; i < 32 * s + 32; i++)
                dst[i] = scale * (float)k_nibble(block->qs, i) - min;
        }
    }
}

static void dequantize_q5_K(const struct plm_block_q5_K *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK_K) {
        const struct plm_block_q5_K *block = &blocks[b];
        const float d = plm_f16_to_f32(block->d);
        const float dmin = plm_f16_to_f32(block->dmin);
        for (int s = 0; s < PLM_QK_K / 32; s++) {
            uint8_t sc, m;
            plm_k_scale_min(block->scales, s, &sc, &m);
            const float scale = d * (float)sc;
            const float min = dmin * (float)m;
            for (int i = 32 * s; i < 32 * s + 32; i++) {
                /* Sub-block s keeps its fifth bits in bit s of qh. */
                int high_bit = (block->qh[i % 32] >> s) & 1;
                dst[i] = scale * (float)(k_nibble(block->qs, i) + 16 * high_bit) - min;
            }
        }
    }
}

/* The 6-bit quant of element i (0..255) of a Q6_K block, before the -32. */
static int q6_K_quant(const struct plm_block_q6_K *block, int i)
{
    int half = i / 128, quarter = (i % 128) / 32, l = i % 32;
    uint8_t low_byte = block->ql[64 * half + 32 * (quarter & 1) + l];
    int low = quarter < 2 ? low_byte & 0x0F : low_byte >> 4;
    int high = (block->qh[32 * half + l] >> (2 * quarter)) & 3;
    return low | high << 4;
}

static void dequantize_q6_K(const struct plm_block_q6_K *blocks, float *dst, int64_t n_blocks)
{
    for (int64_t b = 0; b < n_blocks; b++, dst += PLM_QK_K) {
        const struct plm_block_q6_K *block = &blocks[b];
        const float d = plm_f16_to_f32(block->d);
        for (int s = 0; s < PLM_QK_K / 16; s++) {
            const float scale = d * (float)block->scales[s];
            for (int i = 16 * s; i < 16 * s + 16; i++)
                dst[i] = scale * (float)(q6_K_quant(block, i) - 32);
        }
    }
}

void plm_dequantize_row(int type, const void *src, float *dst, int64_t n)
{
    const struct plm_type_traits *traits = plm_type_traits(type);
    assert(traits && n >= 0 && n % traits->block_size == 0);
    if (!traits || n <= 0)
        return;
    /* Only whole blocks are read, so a bad n cannot read past the row. */
    int64_t n_blocks = n / traits->block_size;
    switch (type) {
    case PLM_TYPE_F32: memcpy(dst, src, (size_t)n * sizeof(float)); break;
    case PLM_TYPE_F16: dequantize_f16(src, dst, n); break;
    case PLM_TYPE_BF16: dequantize_bf16(src, dst, n); break;
    case PLM_TYPE_Q4_0: dequantize_q4_0(src, dst, n_blocks); break;
    case PLM_TYPE_Q4_1: dequantize_q4_1(src, dst, n_blocks); break;
    case PLM_TYPE_Q5_0: dequantize_q5_0(src, dst, n_blocks); break;
    case PLM_TYPE_Q5_1: dequantize_q5_1(src, dst, n_blocks); break;
    case PLM_TYPE_Q8_0: dequantize_q8_0(src, dst, n_blocks); break;
    case PLM_TYPE_Q2_K: dequantize_q2_K(src, dst, n_blocks); break;
    case PLM_TYPE_Q3_K: dequantize_q3_K(src, dst, n_blocks); break;
    case PLM_TYPE_Q4_K: dequantize_q4_K(src, dst, n_blocks); break;
    case PLM_TYPE_Q5_K: dequantize_q5_K(src, dst, n_blocks); break;
    case PLM_TYPE_Q6_K: dequantize_q6_K(src, dst, n_blocks); break;
    }
}
