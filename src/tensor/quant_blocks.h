/*
 * Byte layouts of the quantized block formats, identical to ggml's so GGUF
 * files written by llama.cpp load as they are.
 *
 * A quantized row is a sequence of blocks. Each block stores small integer
 * "quants" q and one or more scales; an element is reconstructed as
 *     x = d * q            (symmetric formats: Q4_0, Q5_0, Q8_0, Q3_K, Q6_K)
 *     x = d * q + m        (formats with an offset: Q4_1, Q5_1)
 *     x = d * q - m        (K-quants with a min: Q2_K, Q4_K, Q5_K)
 * Scales are IEEE half floats (uint16_t bit patterns), stored little-endian as
 * GGUF is. Block sizes are even, so a row starting at an even address keeps
 * every half-float field aligned; callers must pass rows at least 2-byte
 * aligned (4 for F32).
 *
 * The "legacy" formats use blocks of 32 elements. The K-quants use
 * super-blocks of 256 elements split into sub-blocks of 16 or 32, whose own
 * scales are themselves quantized to 4-8 bits against the super-block scale.
 */
#ifndef PLM_TENSOR_QUANT_BLOCKS_H
#define PLM_TENSOR_QUANT_BLOCKS_H

#include <stdint.h>

#define PLM_QK 32    /* elements per block of the legacy formats */
#define PLM_QK_K 256 /* elements per K-quant super-block */

/* Q4_0: 4.5 bits per weight. x = d * (q - 8), q in [0, 15].
 * qs[j] holds element j in its low nibble and element j + 16 in its high one. */
struct plm_block_q4_0 {
    uint16_t d;              /* scale (f16) */
    uint8_t qs[PLM_QK / 2];  /* 4-bit quants */
};
_Static_assert(sizeof(struct plm_block_q4_0) == 18, "Q4_0 block must be 18 bytes");

/* Q4_1: 5 bits per weight. x = d * q + m, q in [0, 15]; nibbles as in Q4_0. */
struct plm_block_q4_1 {
    uint16_t d;              /* scale (f16) */
    uint16_t m;              /* offset, the block minimum (f16) */
    uint8_t qs[PLM_QK / 2];  /* 4-bit quants */
};
_Static_assert(sizeof(struct plm_block_q4_1) == 20, "Q4_1 block must be 20 bytes");

/* Q5_0: 5.5 bits per weight. x = d * (q - 16), q in [0, 31].
 * The low 4 bits are packed as in Q4_0; bit j of the little-endian 32-bit
 * word qh is the fifth bit of element j. */
struct plm_block_q5_0 {
    uint16_t d;              /* scale (f16) */
    uint8_t qh[4];           /* fifth bits, one per element */
    uint8_t qs[PLM_QK / 2];  /* low 4 bits */
};
_Static_assert(sizeof(struct plm_block_q5_0) == 22, "Q5_0 block must be 22 bytes");

/* Q5_1: 6 bits per weight. x = d * q + m, q in [0, 31]; bits as in Q5_0. */
struct plm_block_q5_1 {
    uint16_t d;              /* scale (f16) */
    uint16_t m;              /* offset (f16) */
    uint8_t qh[4];           /* fifth bits */
    uint8_t qs[PLM_QK / 2];  /* low 4 bits */
};
_Static_assert(sizeof(struct plm_block_q5_1) == 24, "Q5_1 block must be 24 bytes");

/* Q8_0: 8.5 bits per weight. x = d * q, q in [-127, 127]. */
struct plm_block_q8_0 {
    uint16_t d;              /* scale (f16) */
    int8_t qs[PLM_QK];       /* quants, in element order */
};
_Static_assert(sizeof(struct plm_block_q8_0) == 34, "Q8_0 block must be 34 bytes");

/* Q2_K: 2.625 bits per weight. 16 sub-blocks of 16 elements; sub-block s uses
 *     x = d * (scales[s] & 15) * q - dmin * (scales[s] >> 4),   q in [0, 3].
 * Quants: each half of the super-block (128 elements) owns 32 bytes of qs;
 * element 32*g + l of that half (g = 0..3, l = 0..31) is bits 2g..2g+1 of
 * byte l. */
struct plm_block_q2_K {
    uint8_t scales[PLM_QK_K / 16]; /* 4-bit scale (low) and 4-bit min (high) */
    uint8_t qs[PLM_QK_K / 4];      /* 2-bit quants */
    uint16_t d;                    /* super-block scale for the scales (f16) */
    uint16_t dmin;                 /* super-block scale for the mins (f16) */
};
_Static_assert(sizeof(struct plm_block_q2_K) == 84, "Q2_K block must be 84 bytes");

/* Q3_K: 3.4375 bits per weight. 16 sub-blocks of 16 elements;
 *     x = d * (scale[s] - 32) * (q - 4),   q in [0, 7], scale[s] in [0, 63].
 * The low 2 bits of q are packed as in Q2_K; the third bit of element
 * 32*g + l of half h is bit 4*h + g of hmask[l]. The 6-bit scales are split:
 * the low 4 bits of scale s are the low nibble of scales[s] for s < 8 and the
 * high nibble of scales[s - 8] for s >= 8; the top 2 bits are bits
 * 2*(s/4)..2*(s/4)+1 of scales[8 + s%4]. */
struct plm_block_q3_K {
    uint8_t hmask[PLM_QK_K / 8];   /* third bit of each quant */
    uint8_t qs[PLM_QK_K / 4];      /* low 2 bits of each quant */
    uint8_t scales[12];            /* 16 6-bit scales, packed as above */
    uint16_t d;                    /* super-block scale (f16) */
};
_Static_assert(sizeof(struct plm_block_q3_K) == 110, "Q3_K block must be 110 bytes");

/* Q4_K: 4.5 bits per weight. 8 sub-blocks of 32 elements;
 *     x = d * scale[s] * q - dmin * min[s],   q in [0, 15].
 * Quants: each 64 elements own 32 bytes of qs; element l (l < 32) is the low
 * nibble of byte l, element 32 + l the high nibble. The 6-bit scale[s] and
 * min[s] are packed in 12 bytes (see plm_k_scale_min). */
struct plm_block_q4_K {
    uint16_t d;                    /* super-block scale for the scales (f16) */
    uint16_t dmin;                 /* super-block scale for the mins (f16) */
    uint8_t scales[12];            /* 8 scales and 8 mins, 6 bits each */
    uint8_t qs[PLM_QK_K / 2];      /* 4-bit quants */
};
_Static_assert(sizeof(struct plm_block_q4_K) == 144, "Q4_K block must be 144 bytes");

/* Q5_K: 5.5 bits per weight. As Q4_K with q in [0, 31]: the fifth bit of
 * element 64*c + l (l < 32) is bit 2c of qh[l], of element 64*c + 32 + l bit
 * 2c + 1. */
struct plm_block_q5_K {
    uint16_t d;                    /* super-block scale for the scales (f16) */
    uint16_t dmin;                 /* super-block scale for the mins (f16) */
    uint8_t scales[12];            /* 8 scales and 8 mins, 6 bits each */
    uint8_t qh[PLM_QK_K / 8];      /* fifth bit of each quant */
    uint8_t qs[PLM_QK_K / 2];      /* low 4 bits of each quant */
};
_Static_assert(sizeof(struct plm_block_q5_K) == 176, "Q5_K block must be 176 bytes");

/* Q6_K: 6.5625 bits per weight. 16 sub-blocks of 16 elements;
 *     x = d * scales[s] * (q - 32),   q in [0, 63].
 * Each half of the super-block (128 elements) owns 64 bytes of ql and 32 of
 * qh. For l < 32, the four elements l, 32 + l, 64 + l, 96 + l of the half take
 * their low 4 bits from: low nibble of ql[l], low nibble of ql[32 + l], high
 * nibble of ql[l], high nibble of ql[32 + l]; and their top 2 bits from bits
 * 0-1, 2-3, 4-5, 6-7 of qh[l]. */
struct plm_block_q6_K {
    uint8_t ql[PLM_QK_K / 2];      /* low 4 bits of each quant */
    uint8_t qh[PLM_QK_K / 4];      /* top 2 bits of each quant */
    int8_t scales[PLM_QK_K / 16];  /* 8-bit signed sub-block scales */
    uint16_t d;                    /* super-block scale (f16) */
};
_Static_assert(sizeof(struct plm_block_q6_K) == 210, "Q6_K block must be 210 bytes");

/* Q4_K/Q5_K scale packing: 8 (scale, min) pairs of 6 bits in 12 bytes.
 * Pairs 0-3 sit in the low 6 bits of bytes 0-3 (scale) and 4-7 (min).
 * Pairs 4-7 keep their low 4 bits in byte 8 + (s - 4) (scale low nibble,
 * min high nibble) and their top 2 bits in the spare top bits of bytes
 * s - 4 (scale) and s (min). */
static inline void plm_k_scale_min(const uint8_t packed[12], int s, uint8_t *scale, uint8_t *min)
{
    if (s < 4) {
        *scale = packed[s] & 63;
        *min = packed[s + 4] & 63;
    } else {
        *scale = (uint8_t)((packed[s + 4] & 0x0F) | ((packed[s - 4] >> 6) << 4));
        *min = (uint8_t)((packed[s + 4] >> 4) | ((packed[s] >> 6) << 4));
    }
}

/* The fifth bit of element j (0..31) of a Q5_0/Q5_1 block: bit j % 8 of
 * qh[j / 8]. */
static inline int plm_q5_fifth_bit(const uint8_t qh[4], int j) { return (qh[j / 8] >> (j % 8)) & 1; }

/* Q3_K scale packing: the 6-bit scale s (0..15) as stored, before the -32. */
static inline int plm_q3_K_scale(const uint8_t packed[12], int s)
{
    int low = s < 8 ? packed[s] & 0x0F : packed[s - 8] >> 4;
    int high = (packed[8 + s % 4] >> (2 * (s / 4))) & 3;
    return low | (high << 4);
}

#endif
