/*
 * Tensor element types, numbered as in GGUF/ggml so files from other runtimes
 * load as they are. Quantized types store rows as a sequence of fixed-size
 * blocks (see quant_blocks.h for each layout); a row length must be a multiple
 * of the type's block size.
 */
#ifndef PLM_TENSOR_TYPES_H
#define PLM_TENSOR_TYPES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum plm_type {
    PLM_TYPE_F32 = 0,
    PLM_TYPE_F16 = 1,
    PLM_TYPE_Q4_0 = 2,
    PLM_TYPE_Q4_1 = 3,
    PLM_TYPE_Q5_0 = 6,
    PLM_TYPE_Q5_1 = 7,
    PLM_TYPE_Q8_0 = 8,
    PLM_TYPE_Q8_1 = 9,
    PLM_TYPE_Q2_K = 10,
    PLM_TYPE_Q3_K = 11,
    PLM_TYPE_Q4_K = 12,
    PLM_TYPE_Q5_K = 13,
    PLM_TYPE_Q6_K = 14,
    PLM_TYPE_Q8_K = 15,
    PLM_TYPE_BF16 = 30,
    PLM_TYPE_COUNT = 31, /* one past the largest known value */
};

struct plm_type_traits {
    const char *name;   /* "Q4_K" */
    int block_size;     /* elements per block (1 for F32/F16/BF16) */
    size_t block_bytes; /* bytes per block */
};

/* Traits of a type the engine can run (dequantize and multiply), or NULL for
 * values that are unknown or not supported (including Q8_1 and Q8_K, which are
 * activation-only formats). */
const struct plm_type_traits *plm_type_traits(int type);
/* Name for any value, "unknown" when not a known type. */
const char *plm_type_name(int type);
/* Case-insensitive lookup by name ("q4_k", "F16"); -1 when unknown. */
int plm_type_from_name(const char *name);

/* Bytes of a row of n elements; 0 if n is not a multiple of the block size. */
size_t plm_row_bytes(int type, int64_t n);

/* IEEE half and bfloat16 conversions (round to nearest even). */
float plm_f16_to_f32(uint16_t h);
uint16_t plm_f32_to_f16(float f);
float plm_bf16_to_f32(uint16_t h);
uint16_t plm_f32_to_bf16(float f);

/* Expands a row of n elements (a multiple of the block size) to floats. */
void plm_dequantize_row(int type, const void *src, float *dst, int64_t n);

/* Reference quantizer: encodes n floats (a multiple of the block size) of one
 * row, choosing scales that minimise the squared error as ggml's reference
 * quantizers do. Deterministic. */
void plm_quantize_row(int type, const float *src, void *dst, int64_t n);

#endif
