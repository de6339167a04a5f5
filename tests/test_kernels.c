/*
 * The SIMD matrix kernels against their scalar twin, for every weight type
 * and every instruction set this machine has (the others are skipped with a
 * message), plus the run-time choice of instruction set.
 *
 * How close is close enough. The float types (F32, F16, BF16) multiply the
 * same floats as the scalar kernel, only summed in another order. The
 * quantized types multiply with 8-bit activations (quantize_activations.h):
 * each activation is moved by at most max|x| / 254 of its block, so each
 * output is checked twice:
 *
 *  1. Exactness: against the float64 product of the dequantized weights with
 *     the activations as the kernel sees them (dequantized 8-bit quants, or
 *     the floats), within FLOAT_ROUNDING of the sum of magnitudes. The
 *     integer sums inside a block are exact, so only float rounding is
 *     left; losing or garbling even one block of a 4096-long row costs
 *     hundreds of times more (test_checks_catch_one_wrong_block).
 *  2. Against the scalar kernel: within the activation quantization's worst
 *     case, sum_i |w_i| * max|x of i's block| / 254, plus float rounding on
 *     both sides. For random data that is about 1% of sum_i |w_i x_i|, the
 *     ~1e-2 relative error of ggml-style 8-bit activations.
 *
 * Outputs must also be bit-identical whether a token runs alone or in a
 * batch of any size, and the memory around the output must stay untouched.
 */
#include "attention_check.h"
#include "test_util.h"

#include "kernels/matmul.h"
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
#include <sys/wait.h>
#include <unistd.h>

/* Float rounding allowance, relative to the magnitude of the kernel's
 * partial sums (dot_reference.magnitude). A 4352-long row adds at most a few
 * hundred rounded terms into each of 8 lanes: a few hundred times 2^-24 in
 * the very worst case, and far less (measured: below 1e-7) in practice. */
#define FLOAT_ROUNDING 1e-5

static const int weight_types[] = {
    PLM_TYPE_F32,  PLM_TYPE_F16,  PLM_TYPE_BF16, PLM_TYPE_Q4_0, PLM_TYPE_Q4_1,
    PLM_TYPE_Q5_0, PLM_TYPE_Q5_1, PLM_TYPE_Q8_0, PLM_TYPE_Q2_K, PLM_TYPE_Q3_K,
    PLM_TYPE_Q4_K, PLM_TYPE_Q5_K, PLM_TYPE_Q6_K,
};
#define N_WEIGHT_TYPES (int)(sizeof weight_types / sizeof weight_types[0])

/* Best first: the first available one is what plm_matmul picks by default. */
static const enum plm_isa simd_isas[] = {PLM_ISA_AVX512, PLM_ISA_AVX2, PLM_ISA_NEON};
#define N_SIMD_ISAS (int)(sizeof simd_isas / sizeof simd_isas[0])

/* ------------------------------------------------------------ test data */

struct test_matrix {
    struct plm_matrix w;
    uint8_t *bytes;
    float *expanded; /* n_out rows of n_in: the weights as every kernel reads them */
};

/* Byte offsets of the half-float scale fields in one block of each
 * quantized type (-1 ends the list). */
static const int *half_fields(int type)
{
    static const int at_0[] = {0, -1}, at_0_2[] = {0, 2, -1};
    static const int q2_K[] = {80, 82, -1}, q3_K[] = {108, -1}, q6_K[] = {208, -1};
    switch (type) {
    case PLM_TYPE_Q4_1: case PLM_TYPE_Q5_1: case PLM_TYPE_Q4_K: case PLM_TYPE_Q5_K: return at_0_2;
    case PLM_TYPE_Q2_K: return q2_K;
    case PLM_TYPE_Q3_K: return q3_K;
    case PLM_TYPE_Q6_K: return q6_K;
    default: return at_0;
    }
}

/* Every byte random, so quants and packed scales take their extreme values
 * (Q8_0 quants of -128, Q6_K scales of -128, 6-bit scales of 63...); only
 * the half-float scales are set to sane values in [-1/32, 1/32]. */
static void fill_raw_blocks(int type, uint8_t *bytes, size_t n_bytes, struct test_rng *rng)
{
    for (size_t i = 0; i < n_bytes; i++)
        bytes[i] = (uint8_t)rng_next(rng);
    const struct plm_type_traits *traits = plm_type_traits(type);
    for (size_t block = 0; block < n_bytes; block += traits->block_bytes)
        for (const int *field = half_fields(type); *field >= 0; field++) {
            uint16_t half = plm_f32_to_f16((rng_uniform(rng) - 0.5f) / 16.0f);
            memcpy(bytes + block + *field, &half, sizeof half);
        }
}

/* Random weights: quantized from normal values (with a bias, which gives the
 * mins something to do), or raw random blocks for the quantized types. */
static void make_matrix(struct test_matrix *m, int type, int64_t n_in, int64_t n_out,
                        uint64_t seed, bool raw)
{
    const size_t row_bytes = plm_row_bytes(type, n_in);
    assert_true(row_bytes > 0);
    m->bytes = malloc(row_bytes * (size_t)n_out);
    m->expanded = malloc((size_t)(n_in * n_out) * sizeof(float));
    assert_non_null(m->bytes);
    assert_non_null(m->expanded);
    struct test_rng rng = {seed};
    if (raw) {
        fill_raw_blocks(type, m->bytes, row_bytes * (size_t)n_out, &rng);
    } else {
        float *source = malloc((size_t)n_in * sizeof(float));
        assert_non_null(source);
        for (int64_t r = 0; r < n_out; r++) {
            for (int64_t i = 0; i < n_in; i++)
                source[i] = rng_normal(&rng) + 0.1f;
            plm_quantize_row(type, source, m->bytes + (size_t)r * row_bytes, n_in);
        }
        free(source);
    }
    for (int64_t r = 0; r < n_out; r++)
        plm_dequantize_row(type, m->bytes + (size_t)r * row_bytes, m->expanded + r * n_in, n_in);
    m->w = (struct plm_matrix){.type = type, .data = m->bytes, .n_in = n_in, .n_out = n_out};
}

static void free_matrix(struct test_matrix *m)
{
    free(m->bytes);
    free(m->expanded);
    free((void *)m->w.packed);
}

/* Packs m's rows for isa's kernels (as the model loader does); false, and
 * m left as stored, when isa has no packed layout for its type. */
static bool pack_matrix(enum plm_isa isa, struct test_matrix *m)
{
    const size_t bytes = plm_packed_size_with_isa(isa, &m->w);
    if (!bytes)
        return false;
    void *packed = aligned_alloc(64, (bytes + 63) / 64 * 64);
    assert_non_null(packed);
    /* In two parts, as the loader's threads pack a matrix. */
    const int64_t n_groups = plm_packed_groups(&m->w);
    plm_pack_rows(&m->w, packed, n_groups / 2, n_groups);
    plm_pack_rows(&m->w, packed, 0, n_groups / 2);
    m->w.packed = packed;
    return true;
}

/* Normal activations with an outlier every 37 elements, as real activations
 * have: it sets the scale of its 8-bit block. */
static float *random_activations(int64_t n, uint64_t seed)
{
    float *x = malloc((size_t)n * sizeof *x);
    assert_non_null(x);
    struct test_rng rng = {seed};
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_normal(&rng) * (i % 37 == 5 ? 20.0f : 1.0f);
    return x;
}

/* ---------------------------------------------------- expected values */

static int format_block_size(enum plm_activation_format format)
{
    return format == PLM_ACTIVATIONS_Q8_K ? PLM_QK_K : format == PLM_ACTIVATIONS_F32 ? 1 : PLM_QK;
}

/* One token's activations as a kernel in `format` sees them (the 8-bit
 * quants times their scale), and each element's worst-case quantization
 * error (max|x| of its block / 254). */
static void activations_as_seen(enum plm_activation_format format, const float *x, int64_t n,
                                 float *seen, float *error_bound)
{
    if (format == PLM_ACTIVATIONS_F32) {
        memcpy(seen, x, (size_t)n * sizeof *x);
        memset(error_bound, 0, (size_t)n * sizeof *error_bound);
        return;
    }
    const int block = format_block_size(format);
    for (int64_t b = 0; b < n / block; b++) {
        float d;
        const int8_t *qs;
        struct plm_act_q8 q8;
        struct plm_act_q8_K q8_K;
        if (format != PLM_ACTIVATIONS_Q8_K) { /* Q8 blocks, alone or in pairs */
            plm_quantize_activations_q8(x + b * block, &q8, block);
            d = q8.d, qs = q8.qs;
        } else {
            plm_quantize_activations_q8_K(x + b * block, &q8_K, block);
            d = q8_K.d, qs = q8_K.qs;
        }
        float max = 0.0f;
        for (int i = 0; i < block; i++)
            max = fmaxf(max, fabsf(x[b * block + i]));
        for (int i = 0; i < block; i++) {
            seen[b * block + i] = d * qs[i];
            error_bound[b * block + i] = max / 254.0f * (1.0f + 1e-6f);
        }
    }
}

/* What one output must be close to. */
struct dot_reference {
    double exact_seen;         /* w . activations as the kernel sees them, in float64 */
    double magnitude;          /* scale of the kernel's partial sums, for rounding */
    double quantization_error; /* worst case of |w . x - w . seen| */
};

/* The kernels sum quants times scales and the mins (or quant offsets) apart,
 * each up to about twice the row's largest weight per element, hence the
 * 2 * max|w| in the magnitude. */
static struct dot_reference reference_dot(const float *w, const float *x, const float *seen,
                                          const float *error_bound, int64_t n)
{
    double max_w = 0.0;
    for (int64_t i = 0; i < n; i++)
        max_w = fmax(max_w, fabs(w[i]));
    struct dot_reference ref = {0};
    for (int64_t i = 0; i < n; i++) {
        ref.exact_seen += (double)w[i] * seen[i];
        ref.magnitude += (fabs(w[i]) + 2.0 * max_w) * fabs(x[i]);
        ref.quantization_error += fabs(w[i]) * error_bound[i];
    }
    return ref;
}

/* Whether a SIMD output passes both checks; if not, says why in `why`. */
static bool output_is_close(float got, float scalar, const struct dot_reference *ref, char *why,
                            size_t why_size)
{
    const double rounding = FLOAT_ROUNDING * ref->magnitude + 1e-30;
    if (!(fabs(got - ref->exact_seen) <= rounding)) {
        snprintf(why, why_size, "got %.9g, exact product with its activations %.9g (tolerance %.3g)",
                 got, ref->exact_seen, rounding);
        return false;
    }
    const double bound = ref->quantization_error + 2.0 * rounding;
    if (!(fabs(got - scalar) <= bound)) {
        snprintf(why, why_size, "got %.9g, scalar kernel %.9g (tolerance %.3g)", got, scalar, bound);
        return false;
    }
    return true;
}

/* ------------------------------------------------------ kernel checks */

/* A SIMD result and the scalar one for the same product. */
struct product {
    int64_t n_out;
    int n_tokens;
    float *y;      /* the instruction set's, between two guard values */
    float *scalar; /* the scalar kernel's */
};

#define GUARD 12345.0f

static void run_product(struct product *p, enum plm_isa isa, const struct test_matrix *m,
                        const float *x, int n_tokens)
{
    p->n_out = m->w.n_out;
    p->n_tokens = n_tokens;
    const size_t n_y = (size_t)n_tokens * (size_t)m->w.n_out;
    float *guarded = malloc((n_y + 2) * sizeof(float));
    p->scalar = malloc(n_y * sizeof(float));
    assert_non_null(guarded);
    assert_non_null(p->scalar);
    guarded[0] = guarded[n_y + 1] = GUARD;
    plm_matmul_with_isa(isa, &m->w, x, guarded + 1, n_tokens);
    assert_true(guarded[0] == GUARD && guarded[n_y + 1] == GUARD);
    p->y = guarded + 1;
    plm_matmul_scalar(&m->w, x, p->scalar, n_tokens);
}

static void free_product(struct product *p)
{
    free(p->y - 1);
    free(p->scalar);
}

static void check_product(enum plm_isa isa, const struct test_matrix *m, int n_tokens,
                          uint64_t seed)
{
    const int type = m->w.type;
    const int64_t n_in = m->w.n_in, n_out = m->w.n_out;
    const struct plm_kernel *kernel = plm_isa_kernel(isa, type);
    const struct plm_packed_kernel *packed_kernel = m->w.packed ? plm_isa_packed_kernel(isa, type) : NULL;
    float *x = random_activations(n_tokens * n_in, seed);
    struct product p;
    run_product(&p, isa, m, x, n_tokens);

    if (!kernel) {
        /* No kernel for this type: it must have run the scalar one. */
        assert_memory_equal(p.y, p.scalar, (size_t)(n_tokens * n_out) * sizeof(float));
    } else {
        float *seen = malloc((size_t)n_in * sizeof(float));
        float *error_bound = malloc((size_t)n_in * sizeof(float));
        float single;
        assert_non_null(seen);
        assert_non_null(error_bound);
        for (int t = 0; t < n_tokens; t++) {
            const float *xt = x + t * n_in;
            activations_as_seen(packed_kernel ? packed_kernel->activations : kernel->activations, xt,
                                n_in, seen, error_bound);
            for (int64_t r = 0; r < n_out; r++) {
                const float got = p.y[t * n_out + r];
                struct dot_reference ref =
                    reference_dot(m->expanded + r * n_in, xt, seen, error_bound, n_in);
                char why[200];
                if (!output_is_close(got, p.scalar[t * n_out + r], &ref, why, sizeof why))
                    fail_msg("%s%s %s n_in %lld n_out %lld n_tokens %d, token %d row %lld: %s",
                             plm_isa_name(isa), packed_kernel ? " packed" : "", plm_type_name(type),
                             (long long)n_in, (long long)n_out, n_tokens, t, (long long)r, why);
            }
            /* The same token alone: bit-identical (tile4 and tile1 agree;
             * for packed rows, the token's first row alone in its group). */
            struct test_matrix one_row = {
                .w = {.type = type, .data = m->bytes, .n_in = n_in, .n_out = 1}};
            if (packed_kernel)
                assert_true(pack_matrix(isa, &one_row));
            plm_matmul_with_isa(isa, &one_row.w, xt, &single, 1);
            assert_memory_equal(&single, &p.y[t * n_out], sizeof single);
            free((void *)one_row.w.packed);
        }
        free(seen);
        free(error_bound);
    }
    free_product(&p);
    free(x);
}

/* Row lengths per block size: one block, a few, and 4096 + a bit. The
 * AVX-512 kernels step over 32 floats, or 4 blocks of 32 as two pairs, so
 * the lengths leave every kind of remainder: less than one step, a partial
 * and a whole vector of floats; 1, 2 and 3 blocks, and 6 = 4 + 2. */
static const int64_t float_lengths[] = {1, 24, 37, 48, 4099};
static const int64_t legacy_lengths[] = {32, 64, 96, 192, 4128};
static const int64_t k_lengths[] = {256, 768, 4352};
static const int64_t row_counts[] = {1, 7, 33};
/* Every count up to 9: whole tiles, partial ones and single tokens. */
static const int token_counts[] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 17, 64};

#define COUNT(array) (int)(sizeof array / sizeof array[0])

static void lengths_for(int type, const int64_t **lengths, int *n_lengths)
{
    const int block = plm_type_traits(type)->block_size;
    if (block == 1)
        *lengths = float_lengths, *n_lengths = COUNT(float_lengths);
    else if (block == PLM_QK)
        *lengths = legacy_lengths, *n_lengths = COUNT(legacy_lengths);
    else
        *lengths = k_lengths, *n_lengths = COUNT(k_lengths);
}

static void check_isa(enum plm_isa isa, bool raw)
{
    if (!plm_isa_available(isa)) {
        printf("skipping %s: not available on this CPU or in this build\n", plm_isa_name(isa));
        return;
    }
    for (int i = 0; i < N_WEIGHT_TYPES; i++) {
        const int type = weight_types[i];
        if (raw && plm_type_traits(type)->block_size == 1)
            continue; /* random bytes would be NaNs and infinities */
        if (!plm_isa_kernel(isa, type) && !raw)
            printf("%s has no %s kernel: checking it runs the scalar one\n", plm_isa_name(isa),
                   plm_type_name(type));
        const int64_t *lengths;
        int n_lengths;
        lengths_for(type, &lengths, &n_lengths);
        for (int l = 0; l < n_lengths; l++)
            for (int o = 0; o < COUNT(row_counts); o++) {
                struct test_matrix m;
                make_matrix(&m, type, lengths[l], row_counts[o],
                            (uint64_t)(1000 * type + 10 * l + o + 1), raw);
                for (int t = 0; t < COUNT(token_counts); t++)
                    check_product(isa, &m, token_counts[t], (uint64_t)(7 * t + l + 1));
                if (pack_matrix(isa, &m))
                    for (int t = 0; t < COUNT(token_counts); t++)
                        check_product(isa, &m, token_counts[t], (uint64_t)(7 * t + l + 1));
                free_matrix(&m);
            }
    }
}

static void test_kernels_match_scalar(void **state)
{
    (void)state;
    for (int i = 0; i < N_SIMD_ISAS; i++)
        check_isa(simd_isas[i], false);
}

static void test_kernels_on_random_blocks(void **state)
{
    (void)state;
    for (int i = 0; i < N_SIMD_ISAS; i++)
        check_isa(simd_isas[i], true);
}

/* The checks are sharp enough to see a kernel that drops, doubles or
 * garbles a single block of a long row: the product with one weight block
 * zeroed is rejected, for every quantized type. */
static void test_checks_catch_one_wrong_block(void **state)
{
    (void)state;
    for (int i = 0; i < N_WEIGHT_TYPES; i++) {
        const int type = weight_types[i];
        const int block = plm_type_traits(type)->block_size;
        const int64_t n_in = block == 1 ? 4099 : block == PLM_QK ? 4128 : 4352;
        struct test_matrix m;
        make_matrix(&m, type, n_in, 1, 99, false);
        float *x = random_activations(n_in, 98);
        float *seen = malloc((size_t)n_in * sizeof(float));
        float *error_bound = malloc((size_t)n_in * sizeof(float));
        assert_non_null(seen);
        assert_non_null(error_bound);
        const enum plm_activation_format format =
            block == 1 ? PLM_ACTIVATIONS_F32 : block == PLM_QK ? PLM_ACTIVATIONS_Q8 : PLM_ACTIVATIONS_Q8_K;
        activations_as_seen(format, x, n_in, seen, error_bound);
        const struct dot_reference ref = reference_dot(m.expanded, x, seen, error_bound, n_in);
        const float scalar = plm_vec_dot_row_scalar(type, m.bytes, x, n_in);
        char why[200];
        assert_true(output_is_close((float)ref.exact_seen, scalar, &ref, why, sizeof why));

        /* A middle block (32 elements for the float types) left out. */
        const int64_t span = block == 1 ? 32 : block, start = (n_in / span / 2) * span;
        double dropped = 0.0;
        for (int64_t j = start; j < start + span; j++)
            dropped += (double)m.expanded[j] * seen[j];
        const float wrong = (float)(ref.exact_seen - dropped);
        if (output_is_close(wrong, scalar, &ref, why, sizeof why))
            fail_msg("%s: a product missing one block (%.6g) passes the checks", plm_type_name(type),
                     dropped);
        free(seen);
        free(error_bound);
        free(x);
        free_matrix(&m);
    }
}

/* ------------------------------------------ prepared activations */

/* y = W x for rows [begin, end) with activations prepared once, as the
 * threads of the forward pass run it. */
static void run_prepared(enum plm_isa isa, const struct test_matrix *m, const float *x, int n_tokens,
                         float *y, const int64_t *bounds, int n_ranges)
{
    const size_t bytes = plm_activations_bytes_with_isa(isa, m->w.type, m->w.n_in, n_tokens);
    void *scratch = bytes ? malloc(bytes) : NULL;
    assert_true(bytes == 0 || scratch);
    struct plm_activations xq;
    plm_prepare_activations_with_isa(isa, &m->w, x, n_tokens, scratch, bytes, &xq);
    /* Last range first: no range may depend on another having run. */
    for (int k = n_ranges - 1; k >= 0; k--)
        plm_matmul_prepared(&m->w, &xq, y, bounds[k], bounds[k + 1]);
    free(scratch);
}

/* Activations prepared once and rows run in ranges (as the threads of the
 * forward pass do) give plm_matmul's results bit for bit, for every type and
 * instruction set, and a range writes only its own outputs. */
static void test_prepared_rows_match_matmul(void **state)
{
    (void)state;
    const enum plm_isa isas[] = {PLM_ISA_SCALAR, PLM_ISA_AVX512, PLM_ISA_AVX2, PLM_ISA_NEON};
    const int64_t n_out = 37, bounds[] = {0, 5, 21, 22, 37};
    const int n_ranges = COUNT(bounds) - 1;
    const int token_counts_here[] = {1, 5, 64};
    for (int k = 0; k < COUNT(isas); k++) {
        if (!plm_isa_available(isas[k]))
            continue;
        for (int i = 0; i < N_WEIGHT_TYPES; i++) {
            const int type = weight_types[i];
            const int64_t *lengths;
            int n_lengths;
            lengths_for(type, &lengths, &n_lengths);
            const int64_t n_in = lengths[n_lengths / 2];
            struct test_matrix m;
            make_matrix(&m, type, n_in, n_out, (uint64_t)(500 + type), false);
            /* As stored, then packed where isa has a packed layout: the
             * ranges then start and end inside groups of 16 rows. */
            for (int packed = 0; packed < 2 && (!packed || pack_matrix(isas[k], &m)); packed++) {
                for (int t = 0; t < COUNT(token_counts_here); t++) {
                    const int n_tokens = token_counts_here[t];
                    const size_t n_y = (size_t)n_tokens * (size_t)n_out;
                    float *x = random_activations(n_tokens * n_in, (uint64_t)(t + 3));
                    float *expected = malloc(n_y * sizeof(float));
                    float *y = malloc(n_y * sizeof(float));
                    assert_non_null(expected);
                    assert_non_null(y);
                    plm_matmul_with_isa(isas[k], &m.w, x, expected, n_tokens);
                    for (size_t j = 0; j < n_y; j++)
                        y[j] = GUARD;
                    run_prepared(isas[k], &m, x, n_tokens, y, bounds, n_ranges);
                    if (memcmp(y, expected, n_y * sizeof(float)) != 0)
                        fail_msg("%s %s%s, %d tokens: prepared rows differ from plm_matmul",
                                 plm_isa_name(isas[k]), plm_type_name(type), packed ? " packed" : "",
                                 n_tokens);
                    /* One middle range alone: everything else is left as it was. */
                    for (size_t j = 0; j < n_y; j++)
                        y[j] = GUARD;
                    run_prepared(isas[k], &m, x, n_tokens, y, bounds + 1, 1);
                    for (int tok = 0; tok < n_tokens; tok++)
                        for (int64_t r = 0; r < n_out; r++) {
                            const size_t j = (size_t)tok * (size_t)n_out + (size_t)r;
                            if (r >= bounds[1] && r < bounds[2])
                                assert_memory_equal(&y[j], &expected[j], sizeof(float));
                            else
                                assert_true(y[j] == GUARD);
                        }
                    free(x);
                    free(expected);
                    free(y);
                }
            }
            free_matrix(&m);
        }
    }
}

/* Without room to quantize the activations, a product still comes out
 * right: the scalar kernel's, which needs none. */
static void test_prepared_without_scratch(void **state)
{
    (void)state;
    struct test_matrix m;
    make_matrix(&m, PLM_TYPE_Q4_0, 64, 9, 77, false);
    float *x = random_activations(3 * 64, 76);
    float y[27], scalar[27];
    plm_matmul_scalar(&m.w, x, scalar, 3);
    for (int i = 0; i < N_SIMD_ISAS; i++) {
        if (!plm_isa_available(simd_isas[i]))
            continue;
        const size_t bytes = plm_activations_bytes_with_isa(simd_isas[i], PLM_TYPE_Q4_0, 64, 3);
        assert_true(bytes > 0);
        uint8_t *small = malloc(bytes - 1);
        assert_non_null(small);
        struct plm_activations xq;
        plm_prepare_activations_with_isa(simd_isas[i], &m.w, x, 3, small, bytes - 1, &xq);
        assert_null(xq.data);
        plm_matmul_prepared(&m.w, &xq, y, 0, 9);
        assert_memory_equal(y, scalar, sizeof y);
        free(small);
    }
    assert_true(plm_activations_max_bytes(4096, 64) >= plm_activations_bytes(PLM_TYPE_Q4_K, 4096, 64));
    free(x);
    free_matrix(&m);
}

/* ------------------------------------------------- activation quants */

static void test_activation_quantization(void **state)
{
    (void)state;
    const int64_t n = 2 * PLM_QK_K;
    float *x = random_activations(n, 5);
    x[3] = 0.0f;
    struct plm_act_q8 q8[2 * PLM_QK_K / PLM_QK];
    struct plm_act_q8_K q8_K[2];
    plm_quantize_activations_q8(x, q8, n);
    plm_quantize_activations_q8_K(x, q8_K, n);

    float seen[2 * PLM_QK_K], error_bound[2 * PLM_QK_K];
    for (int f = 0; f < 2; f++) {
        enum plm_activation_format format = f ? PLM_ACTIVATIONS_Q8_K : PLM_ACTIVATIONS_Q8;
        activations_as_seen(format, x, n, seen, error_bound);
        bool reaches_127 = false;
        for (int64_t i = 0; i < n; i++) {
            assert_true(fabsf(seen[i] - x[i]) <= error_bound[i]);
            int8_t q = f ? q8_K[i / PLM_QK_K].qs[i % PLM_QK_K] : q8[i / PLM_QK].qs[i % PLM_QK];
            assert_true(q != -128);
            reaches_127 |= q == 127 || q == -127;
        }
        assert_true(reaches_127); /* the block maximum uses the full range */
    }
    for (int b = 0; b < 2 * PLM_QK_K / PLM_QK; b++) {
        int sum = 0;
        for (int i = 0; i < PLM_QK; i++)
            sum += q8[b].qs[i];
        assert_true(q8[b].sum == q8[b].d * (float)sum);
    }
    for (int b = 0; b < 2; b++)
        for (int s = 0; s < PLM_QK_K / 16; s++) {
            int sum = 0;
            for (int i = 0; i < 16; i++)
                sum += q8_K[b].qs[16 * s + i];
            assert_int_equal(q8_K[b].bsums[s], sum);
        }
    free(x);
}

/* Zero blocks quantize to zero; a NaN poisons its block so the product is
 * NaN, as it is with float activations. */
static void test_activation_zeros_and_nan(void **state)
{
    (void)state;
    float x[PLM_QK_K] = {0};
    struct plm_act_q8 q8;
    struct plm_act_q8_K q8_K;
    plm_quantize_activations_q8(x, &q8, PLM_QK);
    assert_true(q8.d == 0.0f && q8.sum == 0.0f && q8.qs[0] == 0);
    x[1] = NAN;
    plm_quantize_activations_q8_K(x, &q8_K, PLM_QK_K);
    assert_true(isnan(q8_K.d));

    for (int i = 0; i < N_SIMD_ISAS; i++) {
        if (!plm_isa_available(simd_isas[i]))
            continue;
        for (int k = 0; k < N_WEIGHT_TYPES; k++) {
            struct test_matrix m;
            make_matrix(&m, weight_types[k], PLM_QK_K, 2, 3, false);
            float y[2];
            plm_matmul_with_isa(simd_isas[i], &m.w, x, y, 1);
            assert_true(isnan(y[0]) && isnan(y[1]));
            free_matrix(&m);
        }
    }
}

/* --------------------------------------------------------- dispatching */

static void test_nothing_to_do(void **state)
{
    (void)state;
    struct test_matrix m;
    make_matrix(&m, PLM_TYPE_Q4_0, 64, 3, 1, false);
    float y = 7.0f;
    for (int i = 0; i < N_SIMD_ISAS; i++) {
        if (!plm_isa_available(simd_isas[i]))
            continue;
        plm_matmul_with_isa(simd_isas[i], &m.w, NULL, &y, 0);
        m.w.n_out = 0;
        plm_matmul_with_isa(simd_isas[i], &m.w, NULL, &y, 1);
        m.w.n_out = 3;
    }
    assert_true(y == 7.0f);
    free_matrix(&m);
}

/* plm_vec_dot_row goes through the same dispatch as plm_matmul. */
static void test_vec_dot_row_matches_matmul(void **state)
{
    (void)state;
    for (int i = 0; i < N_WEIGHT_TYPES; i++) {
        struct test_matrix m;
        make_matrix(&m, weight_types[i], 512, 1, 11, false);
        float *x = random_activations(512, 12);
        float y;
        plm_matmul(&m.w, x, &y, 1);
        float dot = plm_vec_dot_row(weight_types[i], m.bytes, x, 512);
        assert_memory_equal(&dot, &y, sizeof y);
        free(x);
        free_matrix(&m);
    }
}

static enum plm_isa best_isa(void)
{
    for (int i = 0; i < N_SIMD_ISAS; i++)
        if (plm_isa_available(simd_isas[i]))
            return simd_isas[i];
    return PLM_ISA_SCALAR;
}

static void test_isa_choice(void **state)
{
    (void)state;
    assert_int_equal(plm_isa_choose(NULL), best_isa());
    assert_int_equal(plm_isa_choose(""), best_isa());
    assert_int_equal(plm_isa_choose("scalar"), PLM_ISA_SCALAR);
    assert_int_equal(plm_isa_choose("sse9"), PLM_ISA_SCALAR);
    assert_int_equal(plm_isa_choose("AVX2"), PLM_ISA_SCALAR); /* names are lower case */
    for (int i = 0; i < N_SIMD_ISAS; i++) {
        enum plm_isa isa = simd_isas[i];
        assert_int_equal(plm_isa_choose(plm_isa_name(isa)),
                         plm_isa_available(isa) ? isa : PLM_ISA_SCALAR);
    }
    assert_string_equal(plm_isa_name(PLM_ISA_NEON), "neon");
}

/* What a fresh process did with POCKETLM_ISA set to a value (NULL: unset). */
struct child_report {
    char isa[16];           /* plm_matmul_isa() */
    bool same_as_scalar;    /* plm_matmul gave the scalar kernel's bits */
    bool same_as_best;      /* ... the best instruction set's bits */
    bool repeatable;        /* a second plm_matmul gave the same bits */
    char stderr_text[1024]; /* what it printed on stderr over both products */
};

#define CHILD_FLAG "--isa-child"

/* The child's side (this program run again with CHILD_FLAG): two products
 * with whatever POCKETLM_ISA says, the report written to stdout. */
static int run_as_isa_child(void)
{
    struct test_matrix m;
    make_matrix(&m, PLM_TYPE_Q4_0, 256, 5, 21, false);
    float *x = random_activations(3 * 256, 22);
    float y[15], y_again[15], scalar[15], best[15];
    plm_matmul(&m.w, x, y, 3);
    plm_matmul(&m.w, x, y_again, 3); /* must not warn again */
    plm_matmul_scalar(&m.w, x, scalar, 3);
    plm_matmul_with_isa(best_isa(), &m.w, x, best, 3);
    struct child_report report = {
        .same_as_scalar = memcmp(y, scalar, sizeof y) == 0,
        .same_as_best = memcmp(y, best, sizeof y) == 0,
        .repeatable = memcmp(y, y_again, sizeof y) == 0,
    };
    snprintf(report.isa, sizeof report.isa, "%s", plm_isa_name(plm_matmul_isa()));
    free(x);
    free_matrix(&m);
    return write(STDOUT_FILENO, &report, sizeof report) == (ssize_t)sizeof report ? 0 : 1;
}

static void read_all(int fd, char *buf, size_t size)
{
    size_t used = 0;
    ssize_t got;
    while (used + 1 < size && (got = read(fd, buf + used, size - 1 - used)) > 0)
        used += (size_t)got;
    buf[used] = '\0';
}

/* The choice is made once per process (and this one has made it), so each
 * value is tried by a fresh copy of this program. */
static struct child_report run_child_with_isa(const char *value)
{
    int out_pipe[2], err_pipe[2];
    assert_int_equal(pipe(out_pipe), 0);
    assert_int_equal(pipe(err_pipe), 0);
    fflush(NULL);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        dup2(out_pipe[1], STDOUT_FILENO);
        dup2(err_pipe[1], STDERR_FILENO);
        if (value)
            setenv("POCKETLM_ISA", value, 1);
        else
            unsetenv("POCKETLM_ISA");
        execl("/proc/self/exe", "test_kernels", CHILD_FLAG, (char *)NULL);
        _exit(127);
    }
    close(out_pipe[1]);
    close(err_pipe[1]);
    struct child_report report;
    assert_int_equal(read(out_pipe[0], &report, sizeof report), (ssize_t)sizeof report);
    read_all(err_pipe[0], report.stderr_text, sizeof report.stderr_text);
    close(out_pipe[0]);
    close(err_pipe[0]);
    int status;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    assert_true(report.repeatable);
    return report;
}

static int count_lines(const char *text)
{
    int lines = 0;
    for (; *text; text++)
        lines += *text == '\n';
    return lines;
}

static void test_isa_environment_variable(void **state)
{
    (void)state;
    const char *best = plm_isa_name(best_isa());

    struct child_report r = run_child_with_isa(NULL);
    assert_string_equal(r.isa, best);
    assert_true(r.same_as_best);
    assert_string_equal(r.stderr_text, "");

    r = run_child_with_isa("scalar");
    assert_string_equal(r.isa, "scalar");
    assert_true(r.same_as_scalar);
    assert_string_equal(r.stderr_text, "");
    if (best_isa() != PLM_ISA_SCALAR)
        assert_false(r.same_as_best); /* 8-bit activations: Q4_0 really differs */

    r = run_child_with_isa(best);
    assert_string_equal(r.isa, best);
    assert_true(r.same_as_best);
    assert_string_equal(r.stderr_text, "");

    /* Unknown or unavailable: scalar, with exactly one warning. */
    const char *refused[] = {"avx3", "avx512", "neon", "avx2"};
    for (size_t i = 0; i < sizeof refused / sizeof refused[0]; i++) {
        bool available = false;
        for (int k = 0; k < N_SIMD_ISAS; k++)
            available |= !strcmp(refused[i], plm_isa_name(simd_isas[k])) &&
                         plm_isa_available(simd_isas[k]);
        if (available)
            continue;
        r = run_child_with_isa(refused[i]);
        assert_string_equal(r.isa, "scalar");
        assert_true(r.same_as_scalar);
        assert_non_null(strstr(r.stderr_text, refused[i]));
        assert_int_equal(count_lines(r.stderr_text), 1);
    }
}

/* The attention kernels' lanes do the scalar loops' sums in the same order:
 * the same bits, whichever vector width the loader picked. */
static void test_attention_matches_scalar_loops(void **state)
{
    (void)state;
    char why[256];
    int failures = attention_check(why, sizeof why);
    if (failures)
        fail_msg("%d attention kernel calls differ; first: %s", failures, why);
}

/* silu(g) * up within a few float roundings of the exact value, NaN and
 * infinities as the formula gives them,
 * each value the same alone (the one-lane path) as among 16 (the vector
 * path). */
static void test_swiglu(void **state)
{
    (void)state;
    enum { N = 16 * 64 + 7 };
    static float gate[N], up[N], result[N];
    struct test_rng rng = {5};
    for (int i = 0; i < N; i++) {
        gate[i] = i < 16 ? (float[]){0.0f, -0.0f, 1e-30f, -1e-30f, 87.5f, -87.5f, 88.5f, -88.5f, 100.0f, -100.0f,
                                     1e30f, -1e30f, INFINITY, -INFINITY, 0.5f, -0.5f}[i]
                         : 40.0f * (rng_uniform(&rng) - 0.5f) * (i % 7 == 0 ? 5.0f : 1.0f);
        up[i] = 2.0f * rng_uniform(&rng) - 1.0f;
    }
    gate[N - 1] = NAN;
    memcpy(result, gate, sizeof result);
    plm_swiglu(result, up, N);
    for (int i = 0; i < N; i++) {
        if (isnan(gate[i])) {
            assert_true(isnan(result[i]));
            continue;
        }
        double exact = (double)gate[i] / (1.0 + exp(-(double)gate[i])) * up[i];
        /* Below g = -88, e^-g is clamped to e^88: silu is then under 1e-36
         * either way. */
        if (fabs(result[i] - exact) > 4e-7 * fabs(exact) + 1e-36)
            fail_msg("swiglu(%.9g, %.9g) = %.9g, exactly %.9g", gate[i], up[i], result[i], exact);
        float alone = gate[i];
        plm_swiglu(&alone, &up[i], 1);
        if (memcmp(&alone, &result[i], sizeof alone) != 0)
            fail_msg("swiglu(%.9g) alone %.9g, among 16 %.9g", gate[i], alone, result[i]);
    }
}

int main(int argc, char **argv)
{
    if (argc == 2 && strcmp(argv[1], CHILD_FLAG) == 0)
        return run_as_isa_child();
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_activation_quantization),
        cmocka_unit_test(test_attention_matches_scalar_loops),
        cmocka_unit_test(test_swiglu),
        cmocka_unit_test(test_activation_zeros_and_nan),
        cmocka_unit_test(test_checks_catch_one_wrong_block),
        cmocka_unit_test(test_kernels_match_scalar),
        cmocka_unit_test(test_kernels_on_random_blocks),
        cmocka_unit_test(test_nothing_to_do),
        cmocka_unit_test(test_prepared_rows_match_matmul),
        cmocka_unit_test(test_prepared_without_scratch),
        cmocka_unit_test(test_vec_dot_row_matches_matmul),
        cmocka_unit_test(test_isa_choice),
        cmocka_unit_test(test_isa_environment_variable),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
