/*
 * Generation: stop conditions of plm_generate.
 */
#include "pocketlm.h"
#include "tensor/types.h"
#include "test_util.h"
#include "tiny_model.h"

#include <stdlib.h>

#define N_PREDICT 200
#define N_SEEDS 10

static const char *write_model(void)
{
    struct tiny_model_spec spec = {.arch = "llama", .n_embd = 64, .n_ff = 128, .n_layer = 1, .n_head = 4,
                                   .n_head_kv = 2, .head_dim = 16, .n_ctx_train = 256,
                                   .rope_freq_base = 10000.0f, .norm_eps = 1e-5f,
                                   .weight_type = PLM_TYPE_F32, .seed = 11};
    const char *path = temp_path("generate.gguf");
    assert_int_equal(tiny_model_write(path, &spec), PLM_OK);
    return path;
}

static bool ignore_text(void *user, const char *text, size_t len)
{
    (void)user, (void)text, (void)len;
    return true;
}

/* Samples N_PREDICT tokens at a temperature so high that every token is about
 * equally likely, so an end-of-text token comes up within a few hundred. */
static enum plm_stop_reason generate(plm_model *model, uint64_t seed, bool ignore_eog, int *n_generated)
{
    struct plm_session_params session_params = {.n_ctx = 256, .n_threads = 1};
    plm_session *session;
    assert_int_equal(plm_session_new(model, &session_params, &session), PLM_OK);
    struct plm_sampler_params sampling;
    plm_sampler_params_default(&sampling);
    sampling.temperature = 1000.0f;
    sampling.top_k = 0;
    sampling.top_p = 1.0f;
    sampling.min_p = 0.0f;
    sampling.seed = seed;
    plm_sampler *sampler;
    assert_int_equal(plm_sampler_new(&sampling, TINY_N_VOCAB, &sampler), PLM_OK);

    int32_t prompt[] = {plm_token_bos(model)};
    struct plm_generate_params params = {.n_predict = N_PREDICT, .ignore_eog = ignore_eog};
    struct plm_generate_result result;
    assert_int_equal(plm_generate(session, sampler, prompt, 1, &params, ignore_text, NULL, &result), PLM_OK);
    plm_sampler_free(sampler);
    plm_session_free(session);
    *n_generated = result.n_generated;
    return result.stop_reason;
}

/* Without the flag some seeds end early at an end-of-text token; with it,
 * every seed runs to n_predict. */
static void test_ignore_eog_runs_to_n_predict(void **state)
{
    (void)state;
    plm_model *model;
    assert_int_equal(plm_model_load(write_model(), &model), PLM_OK);
    int stopped_early = 0;
    for (uint64_t seed = 1; seed <= N_SEEDS; seed++) {
        int n;
        if (generate(model, seed, false, &n) == PLM_STOP_EOG) {
            assert_true(n < N_PREDICT + 1);
            stopped_early++;
        }
        assert_int_equal(generate(model, seed, true, &n), PLM_STOP_LENGTH);
        assert_int_equal(n, N_PREDICT);
    }
    assert_true(stopped_early > 0);
    plm_model_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ignore_eog_runs_to_n_predict),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
