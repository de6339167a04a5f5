/*
 * Weights repacked for the kernels (src/model/pack_weights.c, kernels/pack.h)
 * when the first session is made: which matrices are packed, that single rows read from a packed copy are the
 * stored rows, that a tied embedding shares the output's copy, that the
 * padding is counted in host_bytes (Q4_K's wider scales too), that a packed model's logits agree with
 * the same model read as stored, and that POCKETLM_REPACK=0 turns it off.
 *
 * The kernels are compared with the scalar ones in test_kernels.c and the
 * forward pass with the float64 reference in test_forward.c; both run packed
 * wherever this CPU's kernels pack.
 */
#include "test_util.h"
#include "tiny_model.h"

#include "kernels/matmul.h"
#include "model/model.h"
#include "tensor/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* 300 tokens: 18 groups of 16 rows and one of 12, so the vocabulary's
 * matrices end in padding. */
static const char *write_model(int type, bool tied)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s", temp_path("pack.gguf"));
    /* Rows of whole blocks: 256 elements for the K-quants. */
    const bool k_quant = plm_type_traits(type)->block_size == 256;
    struct tiny_model_spec spec = {.arch = "qwen2", .n_embd = k_quant ? 256 : 64, .n_ff = k_quant ? 512 : 96,
                                   .n_layer = 2, .n_head = 4, .n_head_kv = 2, .head_dim = k_quant ? 64 : 16,
                                   .n_ctx_train = 64,
                                   .rope_freq_base = 10000.0f, .norm_eps = 1e-6f, .tied_output = tied,
                                   .weight_type = type, .seed = 11};
    assert_int_equal(tiny_model_write(path, &spec), PLM_OK);
    return path;
}

static plm_model *load(const char *path, const char *repack)
{
    setenv("POCKETLM_REPACK", repack, 1);
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    unsetenv("POCKETLM_REPACK");
    return model;
}

/* Next-token logits after a few tokens, into logits (n_vocab floats). */
static void logits_after_prompt(plm_model *model, float *logits)
{
    struct plm_session_params params = {.n_ctx = 32, .n_threads = 2};
    plm_session *session;
    assert_int_equal(plm_session_new(model, &params, &session), PLM_OK);
    const int32_t prompt[] = {1, 70, 80, 90, 100, 260};
    assert_int_equal(plm_decode(session, prompt, 6, NULL), PLM_OK);
    memcpy(logits, plm_session_logits(session), (size_t)model->hp.n_vocab * sizeof(float));
    plm_session_free(session);
}

static void check_type(int type, bool tied)
{
    const char *path = write_model(type, tied);
    plm_model *packed = load(path, "1"), *stored = load(path, "0");
    struct plm_matrix *matrices[2 + 7 * 2];
    const int n = model_matrices(packed, matrices, 16);
    /* Nothing is packed before the first session, but info already counts
     * the padding. */
    struct plm_model_info at_load, with, without;
    plm_model_get_info(packed, &at_load);
    for (int i = 0; i < n; i++)
        assert_null(matrices[i]->packed);
    const int n_vocab = packed->hp.n_vocab;
    float *a = malloc((size_t)n_vocab * sizeof(float)), *b = malloc((size_t)n_vocab * sizeof(float));
    assert_non_null(a);
    assert_non_null(b);
    logits_after_prompt(packed, a);
    logits_after_prompt(stored, b);
    if (!plm_matmul_packed_size(&packed->layers[0].wq)) {
        print_message("skipping %s: this CPU's kernels read it as stored\n", plm_type_name(type));
        for (int i = 0; i < n; i++)
            assert_null(matrices[i]->packed);
    } else {
        /* Every matrix of a product is packed; token_embd only as the tied output. */
        for (int i = 1; i < n; i++)
            assert_non_null(matrices[i]->packed);
        if (tied)
            assert_ptr_equal(packed->token_embd.packed, packed->output.packed);
        else
            assert_null(packed->token_embd.packed);
        /* Rows read back from the packed copy are the stored rows, padding
         * group included. */
        const struct plm_matrix *w = &packed->output;
        float *from_packed = malloc((size_t)w->n_in * sizeof(float));
        float *from_file = malloc((size_t)w->n_in * sizeof(float));
        assert_non_null(from_packed);
        assert_non_null(from_file);
        for (int64_t r = 0; r < w->n_out; r++) {
            plm_matrix_get_row(w, r, from_packed);
            plm_dequantize_row(w->type, (const uint8_t *)w->data + (size_t)r * plm_row_bytes(w->type, w->n_in),
                               from_file, w->n_in);
            assert_memory_equal(from_packed, from_file, (size_t)w->n_in * sizeof(float));
        }
        free(from_packed);
        free(from_file);
        /* host_bytes counts the padding: the output's 4 rows of padding
         * at least. */
        plm_model_get_info(packed, &with);
        assert_int_equal(with.host_bytes, at_load.host_bytes);
        plm_model_get_info(stored, &without);
        assert_true(with.host_bytes >= without.host_bytes + 4 * plm_row_bytes(type, w->n_in));
        assert_int_equal(with.weight_bytes, without.weight_bytes);
    }
    for (int i = 0; i < model_matrices(stored, matrices, 16); i++)
        assert_null(matrices[i]->packed);

    /* The same logits up to the kernels' rounding: both layouts multiply the
     * same 8-bit activations with the same weights. */
    double largest = 0.0, worst = 0.0;
    for (int i = 0; i < n_vocab; i++) {
        largest = fmax(largest, fabs(b[i]));
        worst = fmax(worst, fabs((double)a[i] - b[i]));
    }
    print_message("%s%s: largest logit %.4f, packed vs stored differ by at most %.3g\n", plm_type_name(type),
                  tied ? " tied" : "", largest, worst);
    assert_true(largest > 0.1);
    assert_true(worst <= 1e-4 * largest);
    free(a);
    free(b);
    plm_model_free(packed);
    plm_model_free(stored);
    remove(path);
}

static void test_q4_0_tied(void **state)
{
    (void)state;
    check_type(PLM_TYPE_Q4_0, true);
}

static void test_q5_0_tied(void **state)
{
    (void)state;
    check_type(PLM_TYPE_Q5_0, true);
}

static void test_q8_0_untied(void **state)
{
    (void)state;
    check_type(PLM_TYPE_Q8_0, false);
}

static void test_q4_k_tied(void **state)
{
    (void)state;
    check_type(PLM_TYPE_Q4_K, true);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_q4_0_tied),
        cmocka_unit_test(test_q5_0_tied),
        cmocka_unit_test(test_q8_0_untied),
        cmocka_unit_test(test_q4_k_tied),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
