/*
 * plm_matmul: picks the instruction set once per process (the best one this
 * CPU has, or the one named by POCKETLM_ISA=scalar|avx2|avx512|neon) and runs
 * its kernel for the weight type, or the scalar reference for types it has no
 * kernel for.
 *
 * For a SIMD kernel, the activations are prepared once per product
 * (plm_plan_activations, plm_convert_activations: quantized, if the kernel
 * multiplies integers),
 * then every weight row is dotted with the tokens a tile of PLM_TOKEN_TILE at
 * a time, the last few one by one, rows going by chunks that stay in cache
 * (plm_matmul_prepared, which threads call on their own rows). Each
 * output is computed by the same operations whatever the tile, so a token
 * gets bit-identical results alone or in a batch.
 *
 * A matrix repacked for the kernels (w->packed, kernels/pack.h) runs its instruction
 * set's packed kernel instead, 16 rows at a time, when there is one, with
 * the kernel's own tile of tokens (8 on AVX-512, 4 on ARM64).
 */
#include "kernels/matmul.h"
#include "kernels/matmul_impl.h"
#include "kernels/pack.h"
#include "kernels/quantize_activations.h"
#include "tensor/types.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__aarch64__)
#include <sys/auxv.h>
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20) /* Linux's bit, for older libc headers */
#endif
#endif

static const char *const isa_names[] = {
    [PLM_ISA_SCALAR] = "scalar",
    [PLM_ISA_AVX2] = "avx2",
    [PLM_ISA_AVX512] = "avx512",
    [PLM_ISA_NEON] = "neon",
};
#define N_ISAS (int)(sizeof isa_names / sizeof isa_names[0])

const char *plm_isa_name(enum plm_isa isa)
{
    return (int)isa >= 0 && (int)isa < N_ISAS ? isa_names[isa] : "unknown";
}

#if defined(__aarch64__)
bool plm_cpu_has_dotprod(void)
{
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
}
#endif

bool plm_isa_available(enum plm_isa isa)
{
    switch (isa) {
    case PLM_ISA_SCALAR:
        return true;
    case PLM_ISA_AVX2:
#if defined(__x86_64__)
        /* The kernels also convert halves with F16C, which every AVX2 CPU
         * has (it came a generation earlier); clang cannot test for it. */
        return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
        return false;
#endif
    case PLM_ISA_AVX512:
#if defined(__x86_64__)
        /* Every AVX-512 CPU also has AVX2, FMA and F16C, which the kernels
         * use for their 256-bit steps. */
        return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
               __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
#else
        return false;
#endif
    case PLM_ISA_NEON:
#if defined(__aarch64__)
        return true; /* Advanced SIMD is part of every aarch64 CPU */
#else
        return false;
#endif
    default:
        return false;
    }
}

const struct plm_kernel *plm_isa_kernel(enum plm_isa isa, int type)
{
    switch (isa) {
#if defined(__x86_64__)
    case PLM_ISA_AVX2:
        return plm_avx2_kernel(type);
    case PLM_ISA_AVX512:
        return plm_avx512_kernel(type);
#endif
#if defined(__aarch64__)
    case PLM_ISA_NEON:
        return plm_neon_kernel(type, plm_cpu_has_dotprod());
#endif
    default:
        return NULL;
    }
}

const struct plm_packed_kernel *plm_isa_packed_kernel(enum plm_isa isa, int type)
{
#if defined(__x86_64__)
    if (isa == PLM_ISA_AVX512)
        return plm_avx512_packed_kernel(type);
#endif
#if defined(__aarch64__)
    if (isa == PLM_ISA_NEON)
        return plm_neon_packed_kernel(type, plm_cpu_has_dotprod());
#endif
    (void)isa;
    (void)type;
    return NULL;
}

enum plm_isa plm_isa_choose(const char *requested)
{
    if (!requested || !*requested) {
        if (plm_isa_available(PLM_ISA_AVX512))
            return PLM_ISA_AVX512;
        if (plm_isa_available(PLM_ISA_AVX2))
            return PLM_ISA_AVX2;
        if (plm_isa_available(PLM_ISA_NEON))
            return PLM_ISA_NEON;
        return PLM_ISA_SCALAR;
    }
    for (int isa = 0; isa < N_ISAS; isa++) {
        if (strcmp(requested, isa_names[isa]) != 0)
            continue;
        if (plm_isa_available((enum plm_isa)isa))
            return (enum plm_isa)isa;
        fprintf(stderr, "pocketlm: POCKETLM_ISA=%s is not available on this CPU or build; "
                        "using scalar kernels\n", requested);
        return PLM_ISA_SCALAR;
    }
    fprintf(stderr, "pocketlm: unknown POCKETLM_ISA=%s (expected scalar, avx2, avx512 or neon); "
                    "using scalar kernels\n", requested);
    return PLM_ISA_SCALAR;
}

static pthread_once_t isa_once = PTHREAD_ONCE_INIT;
static enum plm_isa chosen_isa;

static void choose_isa_once(void)
{
    chosen_isa = plm_isa_choose(getenv("POCKETLM_ISA"));
}

enum plm_isa plm_matmul_isa(void)
{
    pthread_once(&isa_once, choose_isa_once);
    return chosen_isa;
}

/* Bytes of one token's activations in a kernel's format, 0 if the row
 * length does not fit it. */
static size_t token_activation_bytes(enum plm_activation_format format, int64_t n_in)
{
    switch (format) {
    case PLM_ACTIVATIONS_F32:
        return (size_t)n_in * sizeof(float);
    case PLM_ACTIVATIONS_Q8:
        return n_in % PLM_QK ? 0 : (size_t)(n_in / PLM_QK) * sizeof(struct plm_act_q8);
    case PLM_ACTIVATIONS_Q8_K:
        return n_in % PLM_QK_K ? 0 : (size_t)(n_in / PLM_QK_K) * sizeof(struct plm_act_q8_K);
    case PLM_ACTIVATIONS_Q8_PAIRS:
        return n_in % PLM_QK ? 0 : (size_t)((n_in / PLM_QK + 1) / 2) * sizeof(struct plm_act_q8_pair);
    }
    return 0;
}

/* The kernel isa runs for a matrix of type with rows of n_in, NULL when the
 * scalar one does (no kernel, or rows that are not whole blocks). */
static const struct plm_kernel *usable_kernel(enum plm_isa isa, int type, int64_t n_in)
{
    const struct plm_kernel *kernel = plm_isa_kernel(isa, type);
    if (!kernel || n_in <= 0 || plm_row_bytes(type, n_in) == 0 ||
        token_activation_bytes(kernel->activations, n_in) == 0)
        return NULL;
    return kernel;
}

size_t plm_packed_size_with_isa(enum plm_isa isa, const struct plm_matrix *w)
{
    if (!plm_isa_packed_kernel(isa, w->type) || !usable_kernel(isa, w->type, w->n_in))
        return 0;
    return plm_packed_size(w);
}

size_t plm_matmul_packed_size(const struct plm_matrix *w)
{
    return plm_packed_size_with_isa(plm_matmul_isa(), w);
}

/* What isa's kernel reads as activations for a matrix of type with rows of
 * n_in, packed or as stored; false when the scalar kernel runs. */
static bool activation_format(enum plm_isa isa, int type, int64_t n_in, bool packed,
                              enum plm_activation_format *format)
{
    const struct plm_kernel *kernel = usable_kernel(isa, type, n_in);
    if (!kernel)
        return false;
    const struct plm_packed_kernel *packed_kernel = plm_isa_packed_kernel(isa, type);
    *format = packed && packed_kernel ? packed_kernel->activations : kernel->activations;
    return true;
}

size_t plm_activations_bytes_with_isa(enum plm_isa isa, int type, int64_t n_in, int n_tokens)
{
    /* The most either layout of the matrix needs: as stored or packed. */
    size_t most = 0;
    enum plm_activation_format format;
    for (int packed = 0; packed < 2 && n_tokens > 0; packed++) {
        if (!activation_format(isa, type, n_in, packed, &format) || format == PLM_ACTIVATIONS_F32)
            continue;
        const size_t bytes = token_activation_bytes(format, n_in) * (size_t)n_tokens;
        most = bytes > most ? bytes : most;
    }
    return most;
}

size_t plm_activations_bytes(int type, int64_t n_in, int n_tokens)
{
    return plm_activations_bytes_with_isa(plm_matmul_isa(), type, n_in, n_tokens);
}

size_t plm_activations_max_bytes(int64_t n_in, int n_tokens)
{
    size_t most = 0;
    for (int type = 0; type < PLM_TYPE_COUNT; type++) {
        const size_t bytes = plm_activations_bytes(type, n_in, n_tokens);
        most = bytes > most ? bytes : most;
    }
    return most;
}

/* plm_plan_activations for a given instruction set. */
static void plan_activations(enum plm_isa isa, const struct plm_matrix *w, const float *x, int n_tokens,
                             void *scratch, size_t scratch_bytes, struct plm_activations *out)
{
    const int64_t n_in = w->n_in;
    *out = (struct plm_activations){.isa = isa, .type = w->type, .n_in = n_in,
                                    .n_tokens = n_tokens, .x = x};
    enum plm_activation_format format;
    if (!activation_format(isa, w->type, n_in, w->packed != NULL, &format) || n_tokens <= 0)
        return; /* the scalar kernel reads x */
    out->packed = w->packed && plm_isa_packed_kernel(isa, w->type);
    out->token_bytes = token_activation_bytes(format, n_in);
    out->format = format;
    if (format == PLM_ACTIVATIONS_F32) {
        out->data = x;
        return;
    }
    if (!scratch || scratch_bytes < out->token_bytes * (size_t)n_tokens)
        return; /* no room: the scalar kernel needs none */
    out->data = out->converted = scratch;
}

void plm_plan_activations(const struct plm_matrix *w, const float *x, int n_tokens, void *scratch,
                          size_t scratch_bytes, struct plm_activations *out)
{
    plan_activations(plm_matmul_isa(), w, x, n_tokens, scratch, scratch_bytes, out);
}

void plm_convert_activations(const struct plm_activations *xq, int token_begin, int token_end)
{
    if (!xq->converted)
        return;
    for (int t = token_begin; t < token_end; t++) {
        const float *token = xq->x + (size_t)t * (size_t)xq->n_in;
        void *quantized = (uint8_t *)xq->converted + (size_t)t * xq->token_bytes;
        if (xq->format == PLM_ACTIVATIONS_Q8)
            plm_quantize_activations_q8(token, quantized, xq->n_in);
        else if (xq->format == PLM_ACTIVATIONS_Q8_PAIRS)
            plm_quantize_activations_q8_pairs(token, quantized, xq->n_in);
        else
            plm_quantize_activations_q8_K(token, quantized, xq->n_in);
    }
}

void plm_prepare_activations_with_isa(enum plm_isa isa, const struct plm_matrix *w, const float *x,
                                      int n_tokens, void *scratch, size_t scratch_bytes,
                                      struct plm_activations *out)
{
    plan_activations(isa, w, x, n_tokens, scratch, scratch_bytes, out);
    plm_convert_activations(out, 0, n_tokens);
}

/* Weight bytes per chunk of rows (see plm_matmul_prepared): a fraction of
 * any x86-64 or ARM64 core's L2 cache. */
#define ROW_CHUNK_BYTES (64 * 1024)

/* The bits of the rows of group g (rows 16 g .. 16 g + 15) that lie in
 * [row_begin, row_end). */
static uint16_t group_rows(int64_t g, int64_t row_begin, int64_t row_end)
{
    uint16_t rows = 0;
    for (int r = 0; r < PLM_PACK_ROWS; r++) {
        const int64_t row = g * PLM_PACK_ROWS + r;
        if (row >= row_begin && row < row_end)
            rows |= (uint16_t)(1u << r);
    }
    return rows;
}

/* plm_matmul_prepared on a packed matrix: as below, by groups of 16 rows.
 * The groups at either end of the range may be computed whole but only
 * their rows in the range are written. */
static void matmul_packed(const struct plm_matrix *w, const struct plm_activations *xq, float *y,
                          int64_t row_begin, int64_t row_end)
{
    const struct plm_packed_kernel *kernel = plm_isa_packed_kernel((enum plm_isa)xq->isa, w->type);
    const size_t group_bytes = plm_packed_group_bytes(w);
    const int64_t chunk_groups = group_bytes >= ROW_CHUNK_BYTES ? 1 : (int64_t)(ROW_CHUNK_BYTES / group_bytes);
    const int64_t group_end = (row_end + PLM_PACK_ROWS - 1) / PLM_PACK_ROWS;
    const uint8_t *groups = w->packed, *activations = xq->data;
    const size_t token_bytes = xq->token_bytes;
    const int64_t n_out = w->n_out;
    for (int64_t first = row_begin / PLM_PACK_ROWS; first < group_end; first += chunk_groups) {
        const int64_t end = first + chunk_groups < group_end ? first + chunk_groups : group_end;
        int t = 0;
        for (; t + kernel->tile_tokens <= xq->n_tokens; t += kernel->tile_tokens)
            for (int64_t g = first; g < end; g++)
                kernel->tile(groups + (size_t)g * group_bytes, activations + (size_t)t * token_bytes,
                             w->n_in, y + (size_t)t * (size_t)n_out + g * PLM_PACK_ROWS, n_out,
                             group_rows(g, row_begin, row_end));
        for (; t < xq->n_tokens; t++)
            for (int64_t g = first; g < end; g++)
                kernel->tile1(groups + (size_t)g * group_bytes, activations + (size_t)t * token_bytes,
                              w->n_in, y + (size_t)t * (size_t)n_out + g * PLM_PACK_ROWS, n_out,
                              group_rows(g, row_begin, row_end));
    }
}

void plm_matmul_prepared(const struct plm_matrix *w, const struct plm_activations *xq, float *y,
                         int64_t row_begin, int64_t row_end)
{
    const int n_tokens = xq->n_tokens;
    if (n_tokens <= 0 || row_begin >= row_end)
        return;
    if (!xq->data) {
        plm_matmul_scalar_rows(w, xq->x, y, n_tokens, row_begin, row_end);
        return;
    }
    if (xq->packed) {
        matmul_packed(w, xq, y, row_begin, row_end);
        return;
    }
    const struct plm_kernel *kernel = plm_isa_kernel((enum plm_isa)xq->isa, w->type);
    const size_t row_bytes = plm_row_bytes(w->type, w->n_in);
    const size_t token_bytes = xq->token_bytes;
    const uint8_t *activations = xq->data;
    /* Rows go by chunks of about ROW_CHUNK_BYTES, each chunk against every
     * tile of tokens in turn: the chunk's weights stay in the L2 cache over
     * all tiles, and a tile's activations in the L1 cache over the chunk's
     * rows (row by row over all tokens, the activations of a long prompt
     * would stream from L2 for every row). */
    const int64_t chunk_rows = row_bytes >= ROW_CHUNK_BYTES ? 1 : (int64_t)(ROW_CHUNK_BYTES / row_bytes);
    const uint8_t *weights = w->data;
    const int64_t n_out = w->n_out;
    for (int64_t first = row_begin; first < row_end; first += chunk_rows) {
        const int64_t end = first + chunk_rows < row_end ? first + chunk_rows : row_end;
        int t = 0;
        for (; t + PLM_TOKEN_TILE <= n_tokens; t += PLM_TOKEN_TILE)
            for (int64_t r = first; r < end; r++)
                kernel->tile4(weights + (size_t)r * row_bytes, activations + (size_t)t * token_bytes,
                              w->n_in, y + (size_t)t * (size_t)n_out + r, n_out);
        for (; t < n_tokens; t++)
            for (int64_t r = first; r < end; r++)
                kernel->tile1(weights + (size_t)r * row_bytes, activations + (size_t)t * token_bytes,
                              w->n_in, y + (size_t)t * (size_t)n_out + r, n_out);
    }
}

void plm_matmul_with_isa(enum plm_isa isa, const struct plm_matrix *w, const float *x, float *y,
                         int n_tokens)
{
    if (n_tokens <= 0 || w->n_out <= 0)
        return;
    const size_t bytes = plm_activations_bytes_with_isa(isa, w->type, w->n_in, n_tokens);
    void *scratch = bytes ? malloc(bytes) : NULL; /* on failure: the scalar kernel */
    struct plm_activations xq;
    plm_prepare_activations_with_isa(isa, w, x, n_tokens, scratch, bytes, &xq);
    plm_matmul_prepared(w, &xq, y, 0, w->n_out);
    free(scratch);
}

void plm_matmul(const struct plm_matrix *w, const float *x, float *y, int n_tokens)
{
    plm_matmul_with_isa(plm_matmul_isa(), w, x, y, n_tokens);
}

float plm_vec_dot_row(int type, const void *row, const float *x, int64_t n)
{
    const struct plm_matrix one_row = {.type = type, .data = row, .n_in = n, .n_out = 1};
    float result = 0.0f;
    plm_matmul(&one_row, x, &result, 1);
    return result;
}
