/*
 * Sessions: KV cache types, memory prediction and budgets.
 */
#include "pocketlm.h"
#include "tensor/types.h"
#include "test_util.h"
#include "tiny_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define N_TOKENS 40

static const char *write_model(int head_dim)
{
    struct tiny_model_spec spec = {.arch = "llama", .n_embd = 128, .n_ff = 256, .n_layer = 2, .n_head = 4,
                                   .n_head_kv = 2, .head_dim = head_dim, .n_ctx_train = 256,
                                   .rope_freq_base = 10000.0f, .norm_eps = 1e-5f,
                                   .weight_type = PLM_TYPE_F32, .seed = 5};
    const char *path = temp_path("session.gguf");
    assert_int_equal(tiny_model_write(path, &spec), PLM_OK);
    return path;
}

static float *logits_with(plm_model *model, enum plm_kv_type kv_type)
{
    struct plm_session_params params = {.n_ctx = 64, .n_threads = 2, .kv_type = kv_type};
    plm_session *s;
    assert_int_equal(plm_session_new(model, &params, &s), PLM_OK);
    int32_t tokens[N_TOKENS];
    for (int i = 0; i < N_TOKENS; i++)
        tokens[i] = (i * 53 + 7) % TINY_N_VOCAB;
    float *logits = malloc(sizeof(float) * N_TOKENS * TINY_N_VOCAB);
    assert_non_null(logits);
    assert_int_equal(plm_decode(s, tokens, N_TOKENS - 1, logits), PLM_OK);
    assert_int_equal(plm_decode(s, tokens + N_TOKENS - 1, 1, logits + (N_TOKENS - 1) * TINY_N_VOCAB), PLM_OK);
    plm_session_free(s);
    return logits;
}

static double max_abs(const float *x, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m = fmax(m, fabs(x[i]));
    return m;
}

static double max_diff(const float *a, const float *b, int n)
{
    double m = 0;
    for (int i = 0; i < n; i++)
        m = fmax(m, fabs((double)a[i] - b[i]));
    return m;
}

/* A 16-bit or 8-bit cache changes logits only by the rounding of keys and values:
 * a little, and more for 8 bits; a cache that stored garbage would change them
 * by about their own size. */
static void test_kv_types_agree_with_f32(void **state)
{
    (void)state;
    const char *path = write_model(64);
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    int n = N_TOKENS * TINY_N_VOCAB;
    float *f32 = logits_with(model, PLM_KV_F32);
    float *f16 = logits_with(model, PLM_KV_F16);
    float *q8 = logits_with(model, PLM_KV_Q8_0);
    double scale = max_abs(f32, n);
    double err16 = max_diff(f32, f16, n) / scale, err8 = max_diff(f32, q8, n) / scale;
    printf("relative logit error: f16 cache %.2e, q8_0 cache %.2e\n", err16, err8);
    assert_true(err16 < 2e-3);
    assert_true(err8 < 3e-2);
    assert_true(err16 > 0.0 && err8 > err16); /* both really store rounded values */
    free(f32);
    free(f16);
    free(q8);
    plm_model_free(model);
    remove(path);
}

static void test_q8_cache_needs_whole_blocks(void **state)
{
    (void)state;
    const char *path = write_model(16); /* 16 is not a multiple of Q8_0's 32 */
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    struct plm_session_params params = {.n_ctx = 32, .kv_type = PLM_KV_Q8_0};
    plm_session *s;
    assert_int_equal(plm_session_new(model, &params, &s), PLM_ERR_ARG);
    assert_null(s);
    assert_non_null(strstr(plm_last_error(), "multiple of 32"));
    params.kv_type = (enum plm_kv_type)7;
    assert_int_equal(plm_session_new(model, &params, &s), PLM_ERR_ARG);
    plm_model_free(model);
    remove(path);
}

/* The cache is the part that grows with the context: 2 (keys, values) x layers x
 * positions x kv heads x head size x bytes per value. */
static void test_memory_prediction_follows_the_cache(void **state)
{
    (void)state;
    const char *path = write_model(64);
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    struct plm_session_params p = {.n_ctx = 100, .n_threads = 1};
    uint64_t at100 = plm_session_memory_needed(model, &p);
    p.n_ctx = 200;
    uint64_t at200 = plm_session_memory_needed(model, &p);
    /* Per position: the cache alone (attention keeps no score per position). */
    assert_int_equal(at200 - at100, 100 * (2 * 2 * 2 * 64 * 4));
    p.kv_type = PLM_KV_F16;
    uint64_t f16_200 = plm_session_memory_needed(model, &p);
    p.n_ctx = 100;
    assert_int_equal(f16_200 - plm_session_memory_needed(model, &p), 100 * (2 * 2 * 2 * 64 * 2));
    plm_model_free(model);
    remove(path);
}

static void test_max_ctx_is_the_largest_that_fits(void **state)
{
    (void)state;
    const char *path = write_model(64);
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    struct plm_session_params p = {.n_threads = 1};
    uint64_t model_bytes = info.weight_bytes + info.host_bytes; /* the vocabulary counts too */
    for (uint64_t extra = 600000; extra < 4000000; extra += 700001) {
        uint64_t budget = model_bytes + extra;
        int fits = plm_session_max_ctx(model, &p, budget);
        assert_true(fits > 0);
        p.n_ctx = fits;
        assert_true(model_bytes + plm_session_memory_needed(model, &p) <= budget);
        p.n_ctx = fits + 1;
        assert_true(model_bytes + plm_session_memory_needed(model, &p) > budget);
    }
    p.n_ctx = 0;
    assert_int_equal(plm_session_max_ctx(model, &p, info.weight_bytes / 2), 0);
    plm_model_free(model);
    remove(path);
}

static void test_context_full_leaves_the_cache_alone(void **state)
{
    (void)state;
    const char *path = write_model(64);
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    struct plm_session_params p = {.n_ctx = 8, .n_threads = 1};
    plm_session *s;
    assert_int_equal(plm_session_new(model, &p, &s), PLM_OK);
    int32_t tokens[9] = {1, 5, 6, 7, 8, 9, 10, 11, 12};
    assert_int_equal(plm_decode(s, tokens, 6, NULL), PLM_OK);
    assert_int_equal(plm_decode(s, tokens, 3, NULL), PLM_ERR_CONTEXT_FULL);
    assert_non_null(strstr(plm_last_error(), "2 of 8 positions are free"));
    assert_int_equal(plm_session_n_past(s), 6);
    int32_t bad = TINY_N_VOCAB;
    assert_int_equal(plm_decode(s, &bad, 1, NULL), PLM_ERR_ARG);
    assert_int_equal(plm_decode(s, tokens, 0, NULL), PLM_ERR_ARG);
    plm_session_truncate(s, 2);
    assert_int_equal(plm_session_n_past(s), 2);
    assert_int_equal(plm_decode(s, tokens, 6, NULL), PLM_OK);
    plm_session_free(s);
    plm_model_free(model);
    remove(path);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_kv_types_agree_with_f32),
        cmocka_unit_test(test_q8_cache_needs_whole_blocks),
        cmocka_unit_test(test_memory_prediction_follows_the_cache),
        cmocka_unit_test(test_max_ctx_is_the_largest_that_fits),
        cmocka_unit_test(test_context_full_leaves_the_cache_alone),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
