/*
 * Internal interface between the dispatching plm_matmul (matmul.c) and its
 * implementations: the scalar reference (matmul_scalar.c) and one file of
 * SIMD kernels per instruction set (matmul_avx2.c, matmul_avx512.c,
 * matmul_neon.c).
 *
 * A SIMD kernel computes one weight row against a tile of consecutive
 * tokens: it reads each weight block once and uses it for every token of the
 * tile, which is what makes prompt processing faster than token-by-token
 * decoding. matmul.c quantizes the activations once per call (when the kernel
 * wants integer activations), walks the rows and cuts the tokens into tiles.
 */
#ifndef PLM_KERNELS_MATMUL_IMPL_H
#define PLM_KERNELS_MATMUL_IMPL_H

#include "kernels/matmul.h"

#include <stdbool.h>
#include <stdint.h>
#include <string.h>

/* Tokens per tile of the SIMD kernels. Four keeps a tile's accumulators and
 * the unpacked weights within the 16 vector registers of AVX2. */
#define PLM_TOKEN_TILE 4

enum plm_isa {
    PLM_ISA_SCALAR,
    PLM_ISA_AVX2,   /* x86-64 with AVX2, FMA and F16C */
    PLM_ISA_AVX512, /* x86-64 with AVX-512 F, BW, VL and VNNI (and AVX2, FMA, F16C) */
    PLM_ISA_NEON,   /* aarch64 Advanced SIMD (integer kernels need dotprod) */
};

/* What a kernel reads as the tokens' activations (quantize_activations.h). */
enum plm_activation_format {
    PLM_ACTIVATIONS_F32,  /* the floats as given */
    PLM_ACTIVATIONS_Q8,   /* struct plm_act_q8 blocks of 32, for the legacy formats */
    PLM_ACTIVATIONS_Q8_K, /* struct plm_act_q8_K blocks of 256, for the K-quants */
    PLM_ACTIVATIONS_Q8_PAIRS, /* struct plm_act_q8_pair: AVX-512, the 32-element formats */
};

/* y[t * y_stride] = row . x_t for the tokens t of a tile (PLM_TOKEN_TILE of
 * them for tile4, one for tile1). x points at the first token's activations
 * in the kernel's format; the next tokens follow, each n_in elements long.
 * row holds n_in elements, a multiple of the type's block size. */
typedef void plm_row_tile_fn(const void *row, const void *x, int64_t n_in, float *y,
                             int64_t y_stride);

struct plm_kernel {
    enum plm_activation_format activations;
    plm_row_tile_fn *tile4;
    plm_row_tile_fn *tile1;
};

/* The same for a group of PLM_PACK_ROWS packed rows (kernels/pack.h) and a
 * tile of tile_tokens tokens (for `tile`) or one (for tile1): y[t * y_stride
 * + r] = row r . x_t for the rows r whose bit is set in `rows`; no other
 * element of y is written. A packed kernel's tile size is its own: with 16
 * rows per vector instead of one, its accumulators take fewer registers. */
typedef void plm_group_tile_fn(const void *group, const void *x, int64_t n_in, float *y,
                               int64_t y_stride, uint16_t rows);

struct plm_packed_kernel {
    enum plm_activation_format activations;
    int tile_tokens;
    plm_group_tile_fn *tile;
    plm_group_tile_fn *tile1;
};

/* The scalar reference (matmul_scalar.c): plm_matmul and plm_vec_dot_row
 * computed from dequantized floats. */
void plm_matmul_scalar(const struct plm_matrix *w, const float *x, float *y, int n_tokens);
/* Rows row_begin .. row_end - 1 of plm_matmul_scalar, into the same places. */
void plm_matmul_scalar_rows(const struct plm_matrix *w, const float *x, float *y, int n_tokens,
                            int64_t row_begin, int64_t row_end);
float plm_vec_dot_row_scalar(int type, const void *row, const float *x, int64_t n);

/* The kernels of one instruction set for a weight type, or NULL when it has
 * none (plm_matmul then runs the scalar one). Only call them on a CPU that
 * has the instruction set. */
#if defined(__x86_64__)
const struct plm_kernel *plm_avx2_kernel(int type);
const struct plm_kernel *plm_avx512_kernel(int type);
const struct plm_packed_kernel *plm_avx512_packed_kernel(int type);
#endif
#if defined(__aarch64__)
/* has_dotprod: the CPU has the dot-product extension (ARMv8.2 SDOT); the
 * integer kernels need it, the float ones do not. */
const struct plm_kernel *plm_neon_kernel(int type, bool has_dotprod);
const struct plm_packed_kernel *plm_neon_packed_kernel(int type, bool has_dotprod);
/* This CPU has the dot-product extension. */
bool plm_cpu_has_dotprod(void);
#endif

/* Lower-case name ("avx2") of an instruction set. */
const char *plm_isa_name(enum plm_isa isa);
/* This CPU has the instruction set and this build has kernels for it. */
bool plm_isa_available(enum plm_isa isa);
/* The instruction set for a POCKETLM_ISA value: the best available one for
 * NULL or "", the named one if available; otherwise (unknown name, or not
 * available here) a warning on stderr and PLM_ISA_SCALAR. */
enum plm_isa plm_isa_choose(const char *requested);
/* The instruction set plm_matmul uses, chosen by plm_isa_choose from
 * POCKETLM_ISA on first use and kept for the life of the process. */
enum plm_isa plm_matmul_isa(void);
/* The kernel plm_matmul would run on isa for type, or NULL for scalar. */
const struct plm_kernel *plm_isa_kernel(enum plm_isa isa, int type);
/* The kernel isa runs on packed matrices of type, or NULL when it reads them
 * as stored. */
const struct plm_packed_kernel *plm_isa_packed_kernel(enum plm_isa isa, int type);
/* plm_matmul_packed_size for a given instruction set. */
size_t plm_packed_size_with_isa(enum plm_isa isa, const struct plm_matrix *w);
/* plm_matmul on a given instruction set, which must be available; types it
 * has no kernel for run the scalar one. For tests and benchmarks. */
void plm_matmul_with_isa(enum plm_isa isa, const struct plm_matrix *w, const float *x, float *y,
                         int n_tokens);

/* plm_activations_bytes, and plm_plan_activations with every token
 * converted, for a given instruction set, which must be available. For
 * tests and benchmarks. */
size_t plm_activations_bytes_with_isa(enum plm_isa isa, int type, int64_t n_in, int n_tokens);
void plm_prepare_activations_with_isa(enum plm_isa isa, const struct plm_matrix *w, const float *x,
                                      int n_tokens, void *scratch, size_t scratch_bytes,
                                      struct plm_activations *out);

/* Block helpers shared by the SIMD kernels. They read 32-bit words as
 * little-endian, as x86-64 and aarch64 Linux are. */

/* The eight 6-bit (scale, min) pairs of a Q4_K/Q5_K block (plm_k_scale_min),
 * four at a time from 32-bit words: pairs 0-3 are the low 6 bits of bytes
 * 0-3 and 4-7; pairs 4-7 take their low 4 bits from the nibbles of bytes 8-11
 * and their top 2 bits from the spare top bits of bytes 0-3 and 4-7. */
static inline void plm_unpack_k_scales_mins(const uint8_t packed[12], uint8_t scales[8],
                                            uint8_t mins[8])
{
    uint32_t word[3];
    memcpy(word, packed, sizeof word);
    const uint32_t low6 = 0x3F3F3F3F, low4 = 0x0F0F0F0F, low2 = 0x03030303;
    const uint32_t scale_words[2] = {
        word[0] & low6,
        (word[2] & low4) | ((word[0] >> 6) & low2) << 4,
    };
    const uint32_t min_words[2] = {
        word[1] & low6,
        (word[2] >> 4 & low4) | ((word[1] >> 6) & low2) << 4,
    };
    memcpy(scales, scale_words, 8);
    memcpy(mins, min_words, 8);
}

/* The sixteen signed scales (6-bit value - 32) of a Q3_K block
 * (plm_q3_K_scale), four at a time: the low nibbles of scales 0-7 and high
 * nibbles of 8-15 are in bytes 0-7, and byte 8 + s % 4 holds the top 2 bits
 * of scale s at bit 2 * (s / 4). */
static inline void plm_unpack_q3_K_scales(const uint8_t packed[12], int8_t scales[16])
{
    uint32_t word[3];
    memcpy(word, packed, sizeof word);
    const uint32_t low4 = 0x0F0F0F0F, low2 = 0x03030303;
    const uint32_t unsigned_words[4] = {
        (word[0] & low4) | (word[2] & low2) << 4,
        (word[1] & low4) | (word[2] >> 2 & low2) << 4,
        (word[0] >> 4 & low4) | (word[2] >> 4 & low2) << 4,
        (word[1] >> 4 & low4) | (word[2] >> 6 & low2) << 4,
    };
    uint8_t unsigned_scales[16];
    memcpy(unsigned_scales, unsigned_words, sizeof unsigned_scales);
    for (int s = 0; s < 16; s++)
        scales[s] = (int8_t)(unsigned_scales[s] - 32);
}

#endif
