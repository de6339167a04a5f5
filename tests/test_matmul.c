/* Scalar matrix kernels against a float64 product of the dequantized rows. */
#include "test_util.h"

#include "kernels/matmul.h"
#include "kernels/matmul_impl.h"
#include "tensor/quant_blocks.h"
#include "tensor/types.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static const int weight_types[] = {
    PLM_TYPE_F32,  PLM_TYPE_F16,  PLM_TYPE_BF16, PLM_TYPE_Q4_0, PLM_TYPE_Q4_1,
    PLM_TYPE_Q5_0, PLM_TYPE_Q5_1, PLM_TYPE_Q8_0, PLM_TYPE_Q2_K, PLM_TYPE_Q3_K,
    PLM_TYPE_Q4_K, PLM_TYPE_Q5_K, PLM_TYPE_Q6_K,
};
#define N_WEIGHT_TYPES (int)(sizeof weight_types / sizeof weight_types[0])

/* A quantized random matrix and its exact float expansion. */
struct test_matrix {
    struct plm_matrix w;
    uint8_t *bytes;
    float *expanded; /* n_out rows of n_in */
};

static void make_matrix(struct test_matrix *m, int type, int64_t n_in, int64_t n_out,
                        uint64_t seed)
{
    size_t row_bytes = plm_row_bytes(type, n_in);
    assert_true(row_bytes > 0);
    float *source = malloc((size_t)(n_in * n_out) * sizeof *source);
    m->bytes = malloc(row_bytes * (size_t)n_out);
    m->expanded = malloc((size_t)(n_in * n_out) * sizeof *m->expanded);
    assert_non_null(source);
    assert_non_null(m->bytes);
    assert_non_null(m->expanded);
    struct test_rng rng = {seed};
    for (int64_t i = 0; i < n_in * n_out; i++)
        source[i] = rng_normal(&rng) + 0.1f; /* a bias exercises the mins */
    for (int64_t r = 0; r < n_out; r++) {
        plm_quantize_row(type, source + r * n_in, m->bytes + (size_t)r * row_bytes, n_in);
        plm_dequantize_row(type, m->bytes + (size_t)r * row_bytes, m->expanded + r * n_in, n_in);
    }
    free(source);
    m->w = (struct plm_matrix){.type = type, .data = m->bytes, .n_in = n_in, .n_out = n_out};
}

static void free_matrix(struct test_matrix *m)
{
    free(m->bytes);
    free(m->expanded);
}

static float *random_floats(int64_t n, uint64_t seed)
{
    float *x = malloc((size_t)n * sizeof *x);
    assert_non_null(x);
    struct test_rng rng = {seed};
    for (int64_t i = 0; i < n; i++)
        x[i] = rng_normal(&rng);
    return x;
}

/* |got - exact| within float rounding of a sum of n products. */
static void assert_close_to_dot(float got, const float *w, const float *x, int64_t n)
{
    double exact = 0.0, magnitude = 0.0;
    for (int64_t i = 0; i < n; i++) {
        exact += (double)w[i] * x[i];
        magnitude += fabs((double)w[i] * x[i]);
    }
    double tolerance = 1e-6 * magnitude + 1e-30;
    if (!(fabs(got - exact) <= tolerance))
        fail_msg("dot of %lld elements: got %.9g, expected %.9g (tolerance %.3g)", (long long)n,
                 got, exact, tolerance);
}

/* plm_matmul for each token count, checked element by element; the output
 * is surrounded by guard values that must stay untouched. */
static void check_matmul(int type, int64_t n_in, int64_t n_out)
{
    static const int token_counts[] = {1, 3, 17};
    struct test_matrix m;
    make_matrix(&m, type, n_in, n_out, (uint64_t)(type * 1000 + n_in + n_out));
    for (size_t c = 0; c < sizeof token_counts / sizeof token_counts[0]; c++) {
        const int n_tokens = token_counts[c];
        float *x = random_floats(n_tokens * n_in, (uint64_t)n_tokens);
        size_t n_y = (size_t)(n_tokens * n_out);
        float *y = malloc((n_y + 2) * sizeof *y);
        assert_non_null(y);
        y[0] = y[n_y + 1] = 12345.0f;
        plm_matmul_scalar(&m.w, x, y + 1, n_tokens);
        assert_true(y[0] == 12345.0f && y[n_y + 1] == 12345.0f);

        for (int t = 0; t < n_tokens; t++) {
            for (int64_t r = 0; r < n_out; r++) {
                float got = y[1 + t * n_out + r];
                assert_close_to_dot(got, m.expanded + r * n_in, x + t * n_in, n_in);
                /* The one-row kernel computes the very same sums. */
                const uint8_t *row = m.bytes + (size_t)r * plm_row_bytes(type, n_in);
                float single = plm_vec_dot_row_scalar(type, row, x + t * n_in, n_in);
                assert_memory_equal(&single, &got, sizeof got);
            }
        }
        free(x);
        free(y);
    }
    free_matrix(&m);
}

static void test_matmul_all_types(void **state)
{
    (void)state;
    for (int i = 0; i < N_WEIGHT_TYPES; i++) {
        int type = weight_types[i];
        int block = plm_type_traits(type)->block_size;
        check_matmul(type, 256, 1);
        check_matmul(type, 512, 5);
        /* Longer than one 1024-element chunk, with a partial last chunk. */
        check_matmul(type, 2304, 3);
        if (block < 256) {
            check_matmul(type, 32, 7);
            check_matmul(type, 1120, 2); /* 35 blocks of 32 */
        }
        if (block == 1)
            check_matmul(type, 5, 4);
    }
}

/* A long row, as in large feed-forward matrices. */
static void test_vec_dot_long_row(void **state)
{
    (void)state;
    const int64_t n = 16384 + 256;
    for (int i = 0; i < N_WEIGHT_TYPES; i++) {
        struct test_matrix m;
        make_matrix(&m, weight_types[i], n, 1, 77);
        float *x = random_floats(n, 78);
        assert_close_to_dot(plm_vec_dot_row_scalar(weight_types[i], m.bytes, x, n), m.expanded, x, n);
        free(x);
        free_matrix(&m);
    }
}

/* Hand-computed dot products: exact answers, no tolerance needed. */
static void test_vec_dot_known(void **state)
{
    (void)state;
    float w[32], x[32];
    for (int i = 0; i < 32; i++) {
        w[i] = (float)(i - 16);
        x[i] = i % 2 ? 1.0f : -1.0f;
    }
    /* sum over i of (i - 16) * (+1 odd, -1 even) = 16 pairs of +1 = 16 */
    assert_true(plm_vec_dot_row_scalar(PLM_TYPE_F32, w, x, 32) == 16.0f);

    /* Q8_0 block with d = 0.5 and quants i - 16: each pair adds 0.5. */
    struct plm_block_q8_0 q8 = {.d = 0x3800};
    for (int i = 0; i < 32; i++)
        q8.qs[i] = (int8_t)(i - 16);
    assert_true(plm_vec_dot_row_scalar(PLM_TYPE_Q8_0, &q8, x, 32) == 8.0f);

    uint16_t halves[4] = {0x3C00, 0x4000, 0xC200, 0x3800}; /* 1, 2, -3, 0.5 */
    float ones[4] = {1.0f, 1.0f, 1.0f, 2.0f};
    assert_true(plm_vec_dot_row_scalar(PLM_TYPE_F16, halves, ones, 4) == 1.0f);
    assert_true(plm_vec_dot_row_scalar(PLM_TYPE_F16, halves, ones, 0) == 0.0f);
}

static void test_zero_tokens(void **state)
{
    (void)state;
    struct test_matrix m;
    make_matrix(&m, PLM_TYPE_Q4_K, 256, 3, 1);
    float y = 7.0f;
    plm_matmul_scalar(&m.w, NULL, &y, 0);
    assert_true(y == 7.0f);
    free_matrix(&m);
}

/* An embedding lookup returns exactly the dequantized row. */
static void test_get_row(void **state)
{
    (void)state;
    for (int i = 0; i < N_WEIGHT_TYPES; i++) {
        struct test_matrix m;
        const int64_t n_in = 768, n_out = 6;
        make_matrix(&m, weight_types[i], n_in, n_out, 31);
        float row[768 + 1];
        for (int64_t r = 0; r < n_out; r++) {
            row[n_in] = -1.0f;
            plm_matrix_get_row(&m.w, r, row);
            assert_memory_equal(row, m.expanded + r * n_in, n_in * sizeof(float));
            assert_true(row[n_in] == -1.0f);
        }
        free_matrix(&m);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_matmul_all_types),
        cmocka_unit_test(test_vec_dot_long_row),
        cmocka_unit_test(test_vec_dot_known),
        cmocka_unit_test(test_zero_tokens),
        cmocka_unit_test(test_get_row),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
