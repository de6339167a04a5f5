/*
 * Standalone check of the best SIMD kernels of this machine against the
 * scalar twin, for cross-compiled targets where cmocka is not at hand (run by
 * scripts/cross-test-aarch64.sh under qemu-aarch64, where the best is NEON).
 * It applies the same two checks as tests/test_kernels.c, which explains
 * them: each output within float rounding of the float64 product with the
 * activations as the kernel sees them, and within the 8-bit activation
 * quantization's worst case of the scalar kernel; plus bit-identical results
 * for a token alone and in a batch. And the attention kernels and the
 * SwiGLU, whose NEON lanes must give the scalar loops' bits
 * (tests/support/attention_check.c, check_swiglu below).
 *
 * Prints one line per type and exits 0 when everything matches, 1 otherwise.
 */
#include "attention_check.h"
#include "kernels/matmul_impl.h"
#include "kernels/pack.h"
#include "kernels/quantize_activations.h"
#include "kernels/swiglu.h"
#include "tensor/quant_blocks.h"
#include "tensor/types.h"

#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define FLOAT_ROUNDING 1e-5

static const int weight_types[] = {
    PLM_TYPE_F32,  PLM_TYPE_F16,  PLM_TYPE_BF16, PLM_TYPE_Q4_0, PLM_TYPE_Q4_1,
    PLM_TYPE_Q5_0, PLM_TYPE_Q5_1, PLM_TYPE_Q8_0, PLM_TYPE_Q2_K, PLM_TYPE_Q3_K,
    PLM_TYPE_Q4_K, PLM_TYPE_Q5_K, PLM_TYPE_Q6_K,
};
static const int token_counts[] = {1, 3, 4, 5, 17};
static const int row_counts[] = {1, 7, 33};

static uint64_t rng_state = 1;

/* Roughly normal, from the sum of four uniforms in [-1, 1). */
static float random_value(void)
{
    float sum = 0.0f;
    for (int k = 0; k < 4; k++) {
        rng_state = rng_state * 6364136223846793005ULL + 1442695040888963407ULL;
        sum += (float)(rng_state >> 40) / (float)(1 << 23) - 1.0f;
    }
    return sum;
}

static float *random_floats(int64_t n, float bias)
{
    float *x = malloc((size_t)n * sizeof *x);
    if (!x)
        exit(2);
    for (int64_t i = 0; i < n; i++)
        x[i] = random_value() + bias;
    return x;
}

/* One token's activations as the kernel sees them, and each element's
 * quantization error bound. */
static void activations_as_seen(enum plm_activation_format format, const float *x, int64_t n,
                                float *seen, float *error_bound)
{
    const int block = format == PLM_ACTIVATIONS_Q8 ? PLM_QK : format == PLM_ACTIVATIONS_Q8_K ? PLM_QK_K : 1;
    for (int64_t b = 0; b < n / block; b++) {
        const float *xb = x + b * block;
        float d = 1.0f, max = 0.0f;
        int8_t qs[PLM_QK_K];
        struct plm_act_q8 q8;
        struct plm_act_q8_K q8_K;
        if (format == PLM_ACTIVATIONS_Q8) {
            plm_quantize_activations_q8(xb, &q8, block);
            d = q8.d, memcpy(qs, q8.qs, PLM_QK);
        } else if (format == PLM_ACTIVATIONS_Q8_K) {
            plm_quantize_activations_q8_K(xb, &q8_K, block);
            d = q8_K.d, memcpy(qs, q8_K.qs, PLM_QK_K);
        }
        for (int i = 0; i < block; i++)
            max = fmaxf(max, fabsf(xb[i]));
        for (int i = 0; i < block; i++) {
            seen[b * block + i] = format == PLM_ACTIVATIONS_F32 ? xb[i] : d * qs[i];
            error_bound[b * block + i] = format == PLM_ACTIVATIONS_F32 ? 0.0f : max / 254.0f * 1.000001f;
        }
    }
}

/* w's rows packed for isa's packed kernels (kernels/pack.h), as the model
 * loader packs them. */
static void pack(enum plm_isa isa, struct plm_matrix *w)
{
    const size_t bytes = plm_packed_size_with_isa(isa, w);
    void *packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
    if (!packed)
        exit(2);
    plm_pack_rows(w, packed, 0, plm_packed_groups(w));
    w->packed = packed;
}

/* Checks one product, with w as stored or packed; returns the number of bad
 * outputs (reporting the first). */
static int check_product(enum plm_isa isa, int type, int64_t n_in, int64_t n_out, int n_tokens, bool packed)
{
    const size_t row_bytes = plm_row_bytes(type, n_in);
    uint8_t *bytes = malloc(row_bytes * (size_t)n_out);
    float *expanded = malloc((size_t)(n_in * n_out) * sizeof(float));
    float *source = random_floats(n_in * n_out, 0.1f);
    float *x = random_floats(n_in * n_tokens, 0.0f);
    float *y = malloc((size_t)(n_out * n_tokens + 2) * sizeof(float));
    float *scalar = malloc((size_t)(n_out * n_tokens) * sizeof(float));
    float *seen = malloc((size_t)n_in * sizeof(float));
    float *error_bound = malloc((size_t)n_in * sizeof(float));
    if (!bytes || !expanded || !y || !scalar || !seen || !error_bound)
        exit(2);
    for (int64_t r = 0; r < n_out; r++) {
        plm_quantize_row(type, source + r * n_in, bytes + (size_t)r * row_bytes, n_in);
        plm_dequantize_row(type, bytes + (size_t)r * row_bytes, expanded + r * n_in, n_in);
    }
    struct plm_matrix w = {.type = type, .data = bytes, .n_in = n_in, .n_out = n_out};
    struct plm_matrix first_row = {.type = type, .data = bytes, .n_in = n_in, .n_out = 1};
    const struct plm_kernel *kernel = plm_isa_kernel(isa, type);
    enum plm_activation_format format = kernel ? kernel->activations : PLM_ACTIVATIONS_F32;
    if (packed) {
        pack(isa, &w);
        pack(isa, &first_row);
        format = plm_isa_packed_kernel(isa, type)->activations;
    }

    y[0] = y[n_out * n_tokens + 1] = 12345.0f;
    plm_matmul_with_isa(isa, &w, x, y + 1, n_tokens);
    plm_matmul_scalar(&w, x, scalar, n_tokens);
    int bad = 0;
    if (y[0] != 12345.0f || y[n_out * n_tokens + 1] != 12345.0f) {
        printf("  wrote outside its output\n");
        bad++;
    }
    for (int t = 0; t < n_tokens; t++) {
        const float *xt = x + t * n_in;
        activations_as_seen(format, xt, n_in, seen, error_bound);
        for (int64_t r = 0; r < n_out; r++) {
            const float *wr = expanded + r * n_in;
            double exact = 0.0, magnitude = 0.0, quantization = 0.0, max_w = 0.0;
            for (int64_t i = 0; i < n_in; i++)
                max_w = fmax(max_w, fabs(wr[i]));
            for (int64_t i = 0; i < n_in; i++) {
                exact += (double)wr[i] * seen[i];
                magnitude += (fabs(wr[i]) + 2.0 * max_w) * fabs(xt[i]);
                quantization += fabs(wr[i]) * error_bound[i];
            }
            const float got = y[1 + t * n_out + r], want = scalar[t * n_out + r];
            const double rounding = FLOAT_ROUNDING * magnitude + 1e-30;
            const bool ok = kernel ? fabs(got - exact) <= rounding &&
                                         fabs(got - want) <= quantization + 2.0 * rounding
                                   : memcmp(&got, &want, sizeof got) == 0;
            if (!ok && bad++ == 0)
                printf("  n_in %lld n_out %lld tokens %d: token %d row %lld: got %.9g, exact %.9g, "
                       "scalar %.9g\n", (long long)n_in, (long long)n_out, n_tokens, t,
                       (long long)r, got, exact, want);
        }
        float alone;
        plm_matmul_with_isa(isa, &first_row, xt, &alone, 1);
        if (memcmp(&alone, &y[1 + t * n_out], sizeof alone) != 0 && bad++ == 0)
            printf("  token %d differs alone (%.9g) and in a batch of %d (%.9g)\n", t, alone,
                   n_tokens, y[1 + t * n_out]);
    }
    free((void *)w.packed);
    free((void *)first_row.packed);
    free(bytes);
    free(expanded);
    free(source);
    free(x);
    free(y);
    free(scalar);
    free(seen);
    free(error_bound);
    return bad;
}

/* The SwiGLU's vector lanes against its one-lane path (bit for bit) and the
 * exact value (as test_kernels.c's test_swiglu); 1 on a mismatch. */
static int check_swiglu(void)
{
    enum { N = 16 * 8 + 5 };
    float gate[N], up[N], result[N];
    for (int i = 0; i < N; i++) {
        gate[i] = 10.0f * random_value();
        up[i] = random_value();
    }
    memcpy(result, gate, sizeof result);
    plm_swiglu(result, up, N);
    for (int i = 0; i < N; i++) {
        float alone = gate[i];
        plm_swiglu(&alone, &up[i], 1);
        double exact = (double)gate[i] / (1.0 + exp(-(double)gate[i])) * up[i];
        if (memcmp(&alone, &result[i], sizeof alone) != 0 || fabs(result[i] - exact) > 4e-7 * fabs(exact) + 1e-36) {
            printf("swiglu(%.9g, %.9g): %.9g among 16, %.9g alone, exactly %.9g\n", gate[i], up[i], result[i],
                   alone, exact);
            return 1;
        }
    }
    return 0;
}

int main(void)
{
    const enum plm_isa isa = plm_isa_choose(NULL);
    printf("kernels_check: %s against scalar\n", plm_isa_name(isa));
    if (isa == PLM_ISA_SCALAR) {
        printf("no SIMD instruction set available: nothing to check\n");
        return 0;
    }
    int failures = 0;
    for (size_t i = 0; i < sizeof weight_types / sizeof weight_types[0]; i++) {
        const int type = weight_types[i];
        const int block = plm_type_traits(type)->block_size;
        const int64_t lengths[3] = {block == 1 ? 37 : block, 3 * (block == 1 ? 8 : block),
                                    4096 + (block == 1 ? 3 : block)};
        /* As stored, then packed where the instruction set has packed kernels. */
        const struct plm_matrix shape = {.type = type, .n_in = lengths[0], .n_out = 1};
        for (int packed = 0; packed < 2 && (!packed || plm_packed_size_with_isa(isa, &shape)); packed++) {
            int bad = 0;
            for (int l = 0; l < 3; l++)
                for (size_t o = 0; o < sizeof row_counts / sizeof row_counts[0]; o++)
                    for (size_t t = 0; t < sizeof token_counts / sizeof token_counts[0]; t++)
                        bad += check_product(isa, type, lengths[l], row_counts[o], token_counts[t], packed);
            printf("%-5s %-7s%s %s\n", plm_type_name(type),
                   plm_isa_kernel(isa, type) ? plm_isa_name(isa) : "scalar", packed ? " packed" : "",
                   bad ? "FAIL" : "ok");
            failures += bad != 0;
        }
    }
    char why[256];
    int attention_failures = attention_check(why, sizeof why);
    printf("attention %s%s\n", attention_failures ? "FAIL: " : "ok", why);
    failures += attention_failures != 0;
    int swiglu_failures = check_swiglu();
    printf("swiglu %s\n", swiglu_failures ? "FAIL" : "ok");
    failures += swiglu_failures;
    printf("%s\n", failures ? "FAILED" : "all ok");
    return failures ? 1 : 0;
}
