/*
 * Matrix kernel speed: GFLOP/s of a 4096 x 4096 matrix-vector product
 * (decoding one token) and a 4096 x 4096 by 64-token product (a prompt
 * chunk), single thread, for each weight type on the scalar kernels and on
 * every SIMD instruction set this CPU has. A benchmark, not a test: it
 * checks nothing. The time includes quantizing the activations.
 *
 * Build against the library (after a CMake build in build/):
 *     cc -O3 -std=c11 -D_GNU_SOURCE -Iinclude -Isrc bench/kernels_bench.c \
 *        build/libpocketlm.a -lcjson -lm -lpthread -o kernels_bench
 * Run: ./kernels_bench [TYPE...]     (e.g. ./kernels_bench q4_0 q4_k; all by default)
 */
#include "kernels/matmul_impl.h"
#include "tensor/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define N_IN 4096
#define N_OUT 4096
#define PROMPT_TOKENS 64
/* Distinct rows quantized; the rest of the matrix repeats them (the speed
 * does not depend on the values, and quantizing 16M weights is slow). */
#define DISTINCT_ROWS 64

static const int default_types[] = {
    PLM_TYPE_F32,  PLM_TYPE_F16,  PLM_TYPE_BF16, PLM_TYPE_Q4_0, PLM_TYPE_Q4_1,
    PLM_TYPE_Q5_0, PLM_TYPE_Q5_1, PLM_TYPE_Q8_0, PLM_TYPE_Q2_K, PLM_TYPE_Q3_K,
    PLM_TYPE_Q4_K, PLM_TYPE_Q5_K, PLM_TYPE_Q6_K,
};

static double now_seconds(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* Uniform in [-1, 1), from a fixed linear congruential sequence. */
static float next_value(uint64_t *state)
{
    *state = *state * 6364136223846793005ULL + 1442695040888963407ULL;
    return (float)(*state >> 40) / (float)(1 << 23) - 1.0f;
}

static void *make_weights(int type)
{
    const size_t row_bytes = plm_row_bytes(type, N_IN);
    uint8_t *bytes = malloc(row_bytes * N_OUT);
    float *row = malloc(N_IN * sizeof *row);
    if (!bytes || !row) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    uint64_t state = 1;
    for (int r = 0; r < DISTINCT_ROWS; r++) {
        for (int i = 0; i < N_IN; i++)
            row[i] = next_value(&state);
        plm_quantize_row(type, row, bytes + (size_t)r * row_bytes, N_IN);
    }
    for (int r = DISTINCT_ROWS; r < N_OUT; r++)
        memcpy(bytes + (size_t)r * row_bytes, bytes + (size_t)(r % DISTINCT_ROWS) * row_bytes,
               row_bytes);
    free(row);
    return bytes;
}

/* GFLOP/s of plm_matmul_with_isa over at least half a second. */
static double measure(enum plm_isa isa, const struct plm_matrix *w, const float *x, float *y,
                      int n_tokens)
{
    plm_matmul_with_isa(isa, w, x, y, n_tokens); /* warm up */
    int runs = 0;
    const double start = now_seconds();
    double elapsed;
    do {
        plm_matmul_with_isa(isa, w, x, y, n_tokens);
        runs++;
        elapsed = now_seconds() - start;
    } while (elapsed < 0.5);
    return 2.0 * N_IN * N_OUT * n_tokens * runs / elapsed * 1e-9;
}

int main(int argc, char **argv)
{
    int types[PLM_TYPE_COUNT];
    int n_types = 0;
    if (argc > 1) {
        for (int i = 1; i < argc && n_types < PLM_TYPE_COUNT; i++) {
            int type = plm_type_from_name(argv[i]);
            if (type < 0 || !plm_type_traits(type)) {
                fprintf(stderr, "unknown weight type %s\n", argv[i]);
                return 2;
            }
            types[n_types++] = type;
        }
    } else {
        n_types = (int)(sizeof default_types / sizeof default_types[0]);
        memcpy(types, default_types, sizeof default_types);
    }

    float *x = malloc(sizeof(float) * N_IN * PROMPT_TOKENS);
    float *y = malloc(sizeof(float) * N_OUT * PROMPT_TOKENS);
    if (!x || !y)
        return 1;
    uint64_t state = 2;
    for (int i = 0; i < N_IN * PROMPT_TOKENS; i++)
        x[i] = next_value(&state);

    const enum plm_isa isas[] = {PLM_ISA_SCALAR, PLM_ISA_AVX2, PLM_ISA_AVX512, PLM_ISA_NEON};
    printf("GFLOP/s, %dx%d weights, 1 thread; (x N) = speed-up over scalar\n", N_OUT, N_IN);
    printf("%-6s %-7s %10s %10s\n", "type", "isa", "matvec", "64 tokens");
    for (int i = 0; i < n_types; i++) {
        void *bytes = make_weights(types[i]);
        const struct plm_matrix w = {.type = types[i], .data = bytes, .n_in = N_IN, .n_out = N_OUT};
        double scalar_vec = 0.0, scalar_mat = 0.0;
        for (size_t k = 0; k < sizeof isas / sizeof isas[0]; k++) {
            if (!plm_isa_available(isas[k]))
                continue;
            const bool has_kernel = isas[k] == PLM_ISA_SCALAR || plm_isa_kernel(isas[k], types[i]);
            const double vec = measure(isas[k], &w, x, y, 1);
            const double mat = measure(isas[k], &w, x, y, PROMPT_TOKENS);
            if (isas[k] == PLM_ISA_SCALAR) {
                scalar_vec = vec, scalar_mat = mat;
                printf("%-6s %-7s %10.2f %10.2f\n", plm_type_name(types[i]), "scalar", vec, mat);
            } else {
                printf("%-6s %-7s %10.2f %10.2f   (x%.1f, x%.1f)%s\n", plm_type_name(types[i]),
                       plm_isa_name(isas[k]), vec, mat, vec / scalar_vec, mat / scalar_mat,
                       has_kernel ? "" : "  no kernel: scalar");
            }
        }
        free(bytes);
    }
    free(x);
    free(y);
    return 0;
}
