/*
 * Calibration: the importance matrix file (round trip, hostile files refused),
 * the statistics plm_calibrate collects checked against a direct computation,
 * the sensitivities it measures, and that the model is left exactly as it was.
 */
#include "test_util.h"
#include "tiny_model.h"

#include "format/gguf_writer.h"
#include "model/model.h"
#include "pocketlm.h"
#include "quant/imatrix.h"
#include "tensor/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ file round trip */

static void test_round_trip(void **state)
{
    (void)state;
    double sum_a[3] = {1.0, 0.0, 12.5}, sum_b[257];
    for (int i = 0; i < 257; i++)
        sum_b[i] = 0.25 * i;
    double kld_a[2] = {0.5, 0.001}, kld_b[2] = {2.0, 0.0}, kld_embd[2] = {0.75, 0.125};
    const int types[2] = {PLM_TYPE_Q2_K, PLM_TYPE_F16};
    struct imatrix_entry entries[3] = {
        {"blk.0.attn_q.weight", 3, sum_a, 4.0, kld_a},
        {"output.weight", 257, sum_b, 8.0, kld_b},
        {"token_embd.weight", 64, NULL, 0.0, kld_embd}, /* lookup only */
    };
    struct imatrix_contents contents = {"val.txt", 2, 4, 3, entries, 2, types};
    const char *path = temp_path("round_trip.imatrix.gguf");
    assert_int_equal(imatrix_write(path, &contents), PLM_OK);

    struct imatrix *im;
    assert_int_equal(imatrix_load(path, &im), PLM_OK);
    const float *importance = imatrix_importance(im, "blk.0.attn_q.weight", 3);
    assert_non_null(importance);
    assert_float_equal(importance[0], 0.25, 1e-7);
    assert_float_equal(importance[1], 0.0, 0.0);
    assert_float_equal(importance[2], 12.5 / 4, 1e-6);
    importance = imatrix_importance(im, "output.weight", 257);
    assert_non_null(importance);
    assert_float_equal(importance[256], 0.25 * 256 / 8, 1e-6);
    /* A length that differs from the model's, an unknown or a lookup-only name: no importance. */
    assert_null(imatrix_importance(im, "output.weight", 256));
    assert_null(imatrix_importance(im, "blk.1.attn_q.weight", 3));
    assert_null(imatrix_importance(im, "token_embd.weight", 64));

    const int *read_types;
    assert_int_equal(imatrix_sensitivity_types(im, &read_types), 2);
    assert_int_equal(read_types[0], PLM_TYPE_Q2_K);
    assert_int_equal(read_types[1], PLM_TYPE_F16);
    const float *kld = imatrix_sensitivity(im, "blk.0.attn_q.weight");
    assert_non_null(kld);
    assert_float_equal(kld[0], 0.5, 1e-7);
    assert_float_equal(kld[1], 0.001, 1e-9);
    kld = imatrix_sensitivity(im, "token_embd.weight");
    assert_non_null(kld);
    assert_float_equal(kld[1], 0.125, 1e-9);
    assert_null(imatrix_sensitivity(im, "nothing"));
    imatrix_free(im);

    /* The llama.cpp metadata is there. */
    struct gguf_file *file;
    assert_int_equal(gguf_open(path, &file), PLM_OK);
    uint32_t value;
    assert_true(gguf_get_u32(file, "imatrix.chunk_count", &value));
    assert_int_equal(value, 2);
    assert_true(gguf_get_u32(file, "imatrix.chunk_size", &value));
    assert_int_equal(value, 4);
    const struct gguf_kv *datasets = gguf_find(file, "imatrix.datasets");
    assert_non_null(datasets);
    assert_int_equal(datasets->count, 1);
    const struct gguf_tensor *counts = gguf_find_tensor(file, "output.weight.counts");
    assert_non_null(counts);
    assert_int_equal(counts->ne[0], 1);
    gguf_free(file);
}

static void test_without_sensitivities(void **state)
{
    (void)state;
    double sums[32] = {0};
    sums[31] = 3.0;
    struct imatrix_entry entry = {"blk.0.ffn_down.weight", 32, sums, 3.0, NULL};
    struct imatrix_contents contents = {NULL, 1, 8, 1, &entry, 0, NULL};
    const char *path = temp_path("plain.imatrix.gguf");
    assert_int_equal(imatrix_write(path, &contents), PLM_OK);
    struct imatrix *im;
    assert_int_equal(imatrix_load(path, &im), PLM_OK);
    const int *types;
    assert_int_equal(imatrix_sensitivity_types(im, &types), 0);
    assert_null(imatrix_sensitivity(im, "blk.0.ffn_down.weight"));
    const float *importance = imatrix_importance(im, "blk.0.ffn_down.weight", 32);
    assert_non_null(importance);
    assert_float_equal(importance[31], 1.0, 0.0);
    imatrix_free(im);
}

static void test_writer_refuses_bad_contents(void **state)
{
    (void)state;
    double sums[4] = {0};
    const char *path = temp_path("refused.imatrix.gguf");
    struct imatrix_entry no_tokens = {"a.weight", 4, sums, 0.0, NULL};
    struct imatrix_contents contents = {NULL, 1, 8, 1, &no_tokens, 0, NULL};
    assert_int_equal(imatrix_write(path, &contents), PLM_ERR_ARG);
    struct imatrix_entry lookup_without_kld = {"a.weight", 4, NULL, 0.0, NULL};
    contents.entries = &lookup_without_kld;
    assert_int_equal(imatrix_write(path, &contents), PLM_ERR_ARG);
    contents.n_entries = 0;
    assert_int_equal(imatrix_write(path, &contents), PLM_ERR_ARG);
    const int bad_type = 4; /* removed from ggml */
    struct imatrix_entry fine = {"a.weight", 4, sums, 1.0, sums};
    struct imatrix_contents bad_types = {NULL, 1, 8, 1, &fine, 1, &bad_type};
    assert_int_equal(imatrix_write(path, &bad_types), PLM_ERR_ARG);
}

/* ------------------------------------------------------------ hostile files */

/* A file the test assembles tensor by tensor; each case breaks one thing.
 * Each tensor gets a copy of `values` as they are when it is added. */
struct hostile {
    struct gguf_writer *w;
    float values[64];
    float tensors[4][64];
    int n_tensors;
};

static void hostile_begin(struct hostile *h, const char *general_type)
{
    h->w = gguf_writer_new();
    assert_non_null(h->w);
    h->n_tensors = 0;
    for (int i = 0; i < 64; i++)
        h->values[i] = 1.0f;
    if (general_type)
        assert_int_equal(gguf_writer_set_str(h->w, "general.type", general_type), PLM_OK);
}

static void hostile_tensor(struct hostile *h, const char *name, int type, int64_t ne0, int64_t ne1)
{
    int64_t ne[2] = {ne0, ne1};
    assert_true(h->n_tensors < 4);
    float *copy = h->tensors[h->n_tensors++];
    memcpy(copy, h->values, sizeof h->values);
    assert_int_equal(gguf_writer_add_tensor(h->w, name, type, ne, 2, copy), PLM_OK);
}

/* Writes the file and expects imatrix_load to refuse it with a message containing `reason`. */
static void hostile_expect(struct hostile *h, const char *reason)
{
    const char *path = temp_path("hostile.imatrix.gguf");
    assert_int_equal(gguf_writer_write(h->w, path), PLM_OK);
    gguf_writer_free(h->w);
    struct imatrix *im = (struct imatrix *)1;
    int rc = imatrix_load(path, &im);
    if (rc != PLM_ERR_FORMAT || !strstr(plm_last_error(), reason))
        fail_msg("expected a format error about '%s', got %d: %s", reason, rc, plm_last_error());
    assert_null(im);
}

static void test_malformed_files(void **state)
{
    (void)state;
    struct hostile h;

    hostile_begin(&h, NULL);
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_expect(&h, "not an importance matrix");

    hostile_begin(&h, "model");
    hostile_expect(&h, "not an importance matrix");

    hostile_begin(&h, "imatrix");
    hostile_expect(&h, "holds no matrices");

    hostile_begin(&h, "imatrix");
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_expect(&h, "no matching .counts");

    hostile_begin(&h, "imatrix");
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_expect(&h, "no matching .in_sum2");

    hostile_begin(&h, "imatrix");
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 2, 1);
    hostile_expect(&h, "has 2 values, expected 1");

    hostile_begin(&h, "imatrix");
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F16, 8, 1);
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_expect(&h, "is F16, expected F32");

    hostile_begin(&h, "imatrix");
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 2); /* two experts */
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_expect(&h, "has 2 rows");

    hostile_begin(&h, "imatrix");
    h.values[3] = NAN;
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_expect(&h, "value 3 is nan");

    hostile_begin(&h, "imatrix");
    h.values[0] = -1.0f;
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    h.values[0] = 1.0f;
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_expect(&h, "expected finite and >= 0");

    hostile_begin(&h, "imatrix");
    h.values[0] = INFINITY;
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    h.values[0] = 1.0f;
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_expect(&h, "value 0 is inf");

    hostile_begin(&h, "imatrix");
    h.values[0] = 0.0f;
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_expect(&h, "counts no tokens");

    hostile_begin(&h, "imatrix");
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_tensor(&h, "a.weight.something", PLM_TYPE_F32, 1, 1);
    hostile_expect(&h, "unexpected tensor 'a.weight.something'");

    hostile_begin(&h, "imatrix");
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_tensor(&h, "a.weight.kld", PLM_TYPE_F32, 2, 1);
    hostile_expect(&h, "without 'pocketlm.sensitivity.types'");

    const char *two_types[2] = {"Q4_K", "F16"};
    hostile_begin(&h, "imatrix");
    assert_int_equal(gguf_writer_set_str_array(h.w, "pocketlm.sensitivity.types", two_types, NULL, 2), PLM_OK);
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_tensor(&h, "a.weight.kld", PLM_TYPE_F32, 3, 1);
    hostile_expect(&h, "has 3 values, expected 2");

    hostile_begin(&h, "imatrix");
    assert_int_equal(gguf_writer_set_str_array(h.w, "pocketlm.sensitivity.types", two_types, NULL, 2), PLM_OK);
    hostile_tensor(&h, "a.weight.in_sum2", PLM_TYPE_F32, 8, 1);
    hostile_tensor(&h, "a.weight.counts", PLM_TYPE_F32, 1, 1);
    hostile_expect(&h, "no matching .kld");

    const char *unknown_type[1] = {"Q9_Z"};
    hostile_begin(&h, "imatrix");
    assert_int_equal(gguf_writer_set_str_array(h.w, "pocketlm.sensitivity.types", unknown_type, NULL, 1), PLM_OK);
    hostile_expect(&h, "unknown type 'Q9_Z'");

    hostile_begin(&h, "imatrix");
    assert_int_equal(gguf_writer_set_u32(h.w, "pocketlm.sensitivity.types", 3), PLM_OK);
    hostile_expect(&h, "must be an array");
}

static void test_not_a_gguf(void **state)
{
    (void)state;
    const char *path = temp_path("garbage.imatrix.gguf");
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fputs("GGUF\3\0\0\0 truncated", f);
    fclose(f);
    struct imatrix *im;
    assert_true(imatrix_load(path, &im) < 0);
    assert_null(im);
    assert_true(imatrix_load("/nonexistent/dir/x.gguf", &im) < 0);
    assert_null(im);
}

/* ------------------------------------------------------------ calibration */

#define N_CTX 16

static struct tiny_model_spec calib_spec(int n_embd, bool tied)
{
    struct tiny_model_spec spec = {
        .arch = "llama",
        .n_embd = n_embd,
        .n_ff = 96,
        .n_layer = 2,
        .n_head = 4,
        .n_head_kv = 2,
        .head_dim = 16,
        .n_ctx_train = 64,
        .rope_freq_base = 10000.0f,
        .norm_eps = 1e-5f,
        .tied_output = tied,
        .weight_type = PLM_TYPE_F32,
        .seed = 7,
    };
    return spec;
}

static void random_tokens(int32_t *tokens, int n, uint64_t seed)
{
    struct test_rng rng = {seed};
    for (int i = 0; i < n; i++)
        tokens[i] = 3 + (int32_t)(rng_next(&rng) % (TINY_N_VOCAB - 3));
}

static plm_model *load(const char *path)
{
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    return model;
}

static struct plm_calibrate_params calib_params(const int32_t *tokens, int n_tokens, bool sensitivity)
{
    struct plm_calibrate_params p = {
        .tokens = tokens, .n_tokens = n_tokens, .n_ctx = N_CTX, .sensitivity = sensitivity, .n_threads = 2};
    return p;
}

static void calibrate_ok(plm_model *model, const struct plm_calibrate_params *p, const char *out)
{
    if (plm_calibrate(model, p, out) != PLM_OK)
        fail_msg("plm_calibrate: %s", plm_last_error());
}

/* Expected importance of a matrix whose input is rmsnorm(token embedding) *
 * norm: the mean over the chunks' tokens (the first of each chunk BOS) of
 * each channel's square, in double from the float weights. */
static void expected_from_embeddings(struct tiny_model *tm, const char *norm_name, const int32_t *tokens,
                                     int n_chunks, double *expected)
{
    int n_embd = tm->spec.n_embd;
    const float *embd = tiny_model_tensor(tm, "token_embd.weight")->values;
    const float *norm = tiny_model_tensor(tm, norm_name)->values;
    memset(expected, 0, (size_t)n_embd * sizeof *expected);
    for (int t = 0; t < n_chunks * N_CTX; t++) {
        int32_t token = t % N_CTX == 0 ? 1 : tokens[t];
        const float *x = embd + (size_t)token * n_embd;
        double sum_sq = 0.0;
        for (int i = 0; i < n_embd; i++)
            sum_sq += (double)x[i] * x[i];
        double scale = 1.0 / sqrt(sum_sq / n_embd + tm->spec.norm_eps);
        for (int i = 0; i < n_embd; i++) {
            double h = x[i] * scale * norm[i];
            expected[i] += h * h / (n_chunks * N_CTX);
        }
    }
}

static void assert_close_relative(const float *actual, const double *expected, int n, double tolerance)
{
    for (int i = 0; i < n; i++)
        if (fabs(actual[i] - expected[i]) > tolerance * fabs(expected[i]))
            fail_msg("channel %d: %.9g, expected %.9g", i, actual[i], expected[i]);
}

static float counts_of(const char *path, const char *tensor_name)
{
    struct gguf_file *file;
    assert_int_equal(gguf_open(path, &file), PLM_OK);
    char name[128];
    snprintf(name, sizeof name, "%s.counts", tensor_name);
    const struct gguf_tensor *t = gguf_find_tensor(file, name);
    float count = -1.0f;
    if (t)
        memcpy(&count, t->data, sizeof count);
    gguf_free(file);
    return count;
}

static void test_first_layer_inputs(void **state)
{
    (void)state;
    struct tiny_model_spec spec = calib_spec(64, false);
    struct tiny_model tm;
    assert_int_equal(tiny_model_build(&spec, &tm), PLM_OK);
    const char *model_path = temp_path("calib_first.gguf");
    assert_int_equal(tiny_model_save(&tm, model_path), PLM_OK);
    plm_model *model = load(model_path);

    /* 2 chunks; the 8 tokens past them are dropped. */
    int32_t tokens[2 * N_CTX + 8];
    random_tokens(tokens, 2 * N_CTX + 8, 11);
    struct plm_calibrate_params p = calib_params(tokens, 2 * N_CTX + 8, false);
    const char *out = temp_path("calib_first.imatrix.gguf");
    calibrate_ok(model, &p, out);

    double expected[64];
    expected_from_embeddings(&tm, "blk.0.attn_norm.weight", tokens, 2, expected);
    struct imatrix *im;
    assert_int_equal(imatrix_load(out, &im), PLM_OK);
    const char *same_input[] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.attn_v.weight"};
    for (int i = 0; i < 3; i++) {
        const float *importance = imatrix_importance(im, same_input[i], 64);
        assert_non_null(importance);
        assert_close_relative(importance, expected, 64, 1e-5);
        assert_float_equal(counts_of(out, same_input[i]), 2 * N_CTX, 0.0);
    }
    /* Every product saw every token, the output projection too. */
    const char *others[] = {"blk.0.attn_output.weight", "blk.1.ffn_gate.weight", "blk.1.ffn_down.weight",
                            "output.weight"};
    for (int i = 0; i < 4; i++)
        assert_float_equal(counts_of(out, others[i]), 2 * N_CTX, 0.0);
    assert_non_null(imatrix_importance(im, "blk.1.ffn_down.weight", 96));
    /* An untied embedding is a lookup: no entry. */
    assert_null(imatrix_importance(im, "token_embd.weight", 64));
    assert_float_equal(counts_of(out, "token_embd.weight"), -1.0f, 0.0);
    imatrix_free(im);
    plm_model_free(model);
    tiny_model_free(&tm);
}

/* With the layers' outputs zeroed, the final hidden state is the embedding,
 * so the tied output projection's input is rmsnorm(embedding) * output_norm. */
static void test_tied_output_inputs(void **state)
{
    (void)state;
    struct tiny_model_spec spec = calib_spec(64, true);
    struct tiny_model tm;
    assert_int_equal(tiny_model_build(&spec, &tm), PLM_OK);
    for (int l = 0; l < spec.n_layer; l++) {
        const char *silenced[] = {"attn_output.weight", "ffn_down.weight"};
        for (int i = 0; i < 2; i++) {
            char name[64];
            snprintf(name, sizeof name, "blk.%d.%s", l, silenced[i]);
            struct tiny_tensor *t = tiny_model_tensor(&tm, name);
            memset(t->values, 0, (size_t)t->ne[0] * t->ne[1] * sizeof(float));
        }
    }
    const char *model_path = temp_path("calib_tied.gguf");
    assert_int_equal(tiny_model_save(&tm, model_path), PLM_OK);
    plm_model *model = load(model_path);

    int32_t tokens[3 * N_CTX];
    random_tokens(tokens, 3 * N_CTX, 5);
    struct plm_calibrate_params p = calib_params(tokens, 3 * N_CTX, false);
    p.max_chunks = 2;
    const char *out = temp_path("calib_tied.imatrix.gguf");
    calibrate_ok(model, &p, out);

    double expected[64];
    expected_from_embeddings(&tm, "output_norm.weight", tokens, 2, expected);
    struct imatrix *im;
    assert_int_equal(imatrix_load(out, &im), PLM_OK);
    const float *importance = imatrix_importance(im, "token_embd.weight", 64);
    assert_non_null(importance);
    assert_close_relative(importance, expected, 64, 1e-5);
    assert_float_equal(counts_of(out, "token_embd.weight"), 2 * N_CTX, 0.0);
    assert_null(imatrix_importance(im, "output.weight", 64));
    imatrix_free(im);
    plm_model_free(model);
    tiny_model_free(&tm);
}

/* Every position's logits of a fixed sequence. */
static float *all_logits(plm_model *model)
{
    int32_t tokens[24];
    random_tokens(tokens, 24, 99);
    plm_session *session;
    struct plm_session_params sp = {.n_ctx = 32, .n_threads = 1};
    assert_int_equal(plm_session_new(model, &sp, &session), PLM_OK);
    float *logits = malloc(24 * TINY_N_VOCAB * sizeof *logits);
    assert_non_null(logits);
    assert_int_equal(plm_decode(session, tokens, 24, logits), PLM_OK);
    plm_session_free(session);
    return logits;
}

/* The model's matrix fields, copied. */
static int snapshot(plm_model *model, struct plm_matrix *copies, int max)
{
    struct plm_matrix *fields[64];
    int n = model_matrices(model, fields, 64);
    assert_true(n <= max);
    for (int i = 0; i < n; i++)
        copies[i] = *fields[i];
    return n;
}

static void assert_model_unchanged(plm_model *model, const float *logits_before, const struct plm_matrix *before,
                                   int n_before)
{
    struct plm_matrix after[64];
    assert_int_equal(snapshot(model, after, 64), n_before);
    assert_memory_equal(after, before, (size_t)n_before * sizeof *before);
    float *logits_after = all_logits(model);
    assert_memory_equal(logits_after, logits_before, 24 * TINY_N_VOCAB * sizeof(float));
    free(logits_after);
}

static void check_sensitivities(const char *path, const char *const *names, int n_names)
{
    struct imatrix *im;
    assert_int_equal(imatrix_load(path, &im), PLM_OK);
    const int *types;
    int n_types = imatrix_sensitivity_types(im, &types);
    assert_int_equal(n_types, 11);
    int q2 = -1, q8 = -1, f16 = -1;
    for (int k = 0; k < n_types; k++) {
        q2 = types[k] == PLM_TYPE_Q2_K ? k : q2;
        q8 = types[k] == PLM_TYPE_Q8_0 ? k : q8;
        f16 = types[k] == PLM_TYPE_F16 ? k : f16;
    }
    assert_true(q2 >= 0 && q8 >= 0 && f16 >= 0);
    for (int i = 0; i < n_names; i++) {
        const float *kld = imatrix_sensitivity(im, names[i]);
        if (!kld)
            fail_msg("no sensitivities for %s", names[i]);
        for (int k = 0; k < n_types; k++)
            assert_true(kld[k] >= 0.0f && isfinite(kld[k]));
        if (!(kld[f16] < 1e-5f && kld[q2] > kld[q8] && kld[q8] >= kld[f16]))
            fail_msg("%s: Q2_K %g, Q8_0 %g, F16 %g", names[i], kld[q2], kld[q8], kld[f16]);
    }
    imatrix_free(im);
}

static void test_sensitivities_and_model_unchanged(void **state)
{
    (void)state;
    /* n_embd 256 so that the K-quants fit the rows of the embedding-wide matrices. */
    struct tiny_model_spec spec = calib_spec(256, true);
    const char *model_path = temp_path("calib_sens.gguf");
    assert_int_equal(tiny_model_write(model_path, &spec), PLM_OK);
    plm_model *model = load(model_path);
    float *logits_before = all_logits(model);
    struct plm_matrix before[64];
    int n_fields = snapshot(model, before, 64);

    int32_t tokens[2 * N_CTX];
    random_tokens(tokens, 2 * N_CTX, 3);
    struct plm_calibrate_params p = calib_params(tokens, 2 * N_CTX, true);
    const char *out = temp_path("calib_sens.imatrix.gguf");
    calibrate_ok(model, &p, out);
    assert_model_unchanged(model, logits_before, before, n_fields);

    const char *names[] = {"token_embd.weight",     "blk.0.attn_q.weight",   "blk.0.attn_k.weight",
                           "blk.0.attn_v.weight",   "blk.0.attn_output.weight", "blk.0.ffn_gate.weight",
                           "blk.0.ffn_up.weight",   "blk.1.ffn_down.weight"};
    check_sensitivities(out, names, 8);

    /* A failure (unwritable output) after the measurements leaves the model as it was too. */
    assert_int_equal(plm_calibrate(model, &p, "/nonexistent/dir/x.imatrix.gguf"), PLM_ERR_IO);
    assert_model_unchanged(model, logits_before, before, n_fields);
    free(logits_before);
    plm_model_free(model);
}

/* Rows of 64 fit no K-quant block: those candidates fall back (Q2_K, Q3_K ->
 * Q4_0), are measured once, and report the fallback's divergence. An untied
 * embedding gets sensitivities without an importance. */
static void test_fallback_and_untied_embedding(void **state)
{
    (void)state;
    struct tiny_model_spec spec = calib_spec(64, false);
    const char *model_path = temp_path("calib_fallback.gguf");
    assert_int_equal(tiny_model_write(model_path, &spec), PLM_OK);
    plm_model *model = load(model_path);
    int32_t tokens[N_CTX];
    random_tokens(tokens, N_CTX, 8);
    struct plm_calibrate_params p = calib_params(tokens, N_CTX, true);
    const char *out = temp_path("calib_fallback.imatrix.gguf");
    calibrate_ok(model, &p, out);

    struct imatrix *im;
    assert_int_equal(imatrix_load(out, &im), PLM_OK);
    const int *types;
    int n_types = imatrix_sensitivity_types(im, &types);
    const float *kld = imatrix_sensitivity(im, "blk.0.attn_q.weight");
    assert_non_null(kld);
    int q2 = 0, q3 = 1, q4_0 = 2;
    assert_int_equal(types[q2], PLM_TYPE_Q2_K);
    assert_int_equal(types[q3], PLM_TYPE_Q3_K);
    assert_int_equal(types[q4_0], PLM_TYPE_Q4_0);
    assert_true(kld[q4_0] > 0.0f);
    assert_float_equal(kld[q2], kld[q4_0], 0.0);
    assert_float_equal(kld[q3], kld[q4_0], 0.0);
    assert_true(n_types == 11);
    assert_non_null(imatrix_sensitivity(im, "token_embd.weight"));
    assert_null(imatrix_importance(im, "token_embd.weight", 64));
    assert_non_null(imatrix_importance(im, "output.weight", 64));
    imatrix_free(im);
    plm_model_free(model);
}

static char *read_bytes(const char *path, size_t *size)
{
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    fseek(f, 0, SEEK_END);
    *size = (size_t)ftell(f);
    fseek(f, 0, SEEK_SET);
    char *bytes = malloc(*size);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, *size, f), *size);
    fclose(f);
    return bytes;
}

static void test_deterministic(void **state)
{
    (void)state;
    struct tiny_model_spec spec = calib_spec(64, true);
    const char *model_path = temp_path("calib_det.gguf");
    assert_int_equal(tiny_model_write(model_path, &spec), PLM_OK);
    plm_model *model = load(model_path);
    int32_t tokens[2 * N_CTX];
    random_tokens(tokens, 2 * N_CTX, 21);
    struct plm_calibrate_params p = calib_params(tokens, 2 * N_CTX, true);
    char first[512];
    snprintf(first, sizeof first, "%s", temp_path("calib_det_1.imatrix.gguf"));
    const char *second = temp_path("calib_det_2.imatrix.gguf");
    calibrate_ok(model, &p, first);
    p.n_threads = 1;
    calibrate_ok(model, &p, second);
    size_t size_a, size_b;
    char *a = read_bytes(first, &size_a), *b = read_bytes(second, &size_b);
    assert_int_equal(size_a, size_b);
    assert_memory_equal(a, b, size_a);
    free(a);
    free(b);
    plm_model_free(model);
}

struct progress_log {
    int calls, last_done, last_total;
    int matrices, n_types;
};

static void log_progress(void *user, const char *what, int done, int total)
{
    struct progress_log *log = user;
    assert_non_null(what);
    assert_true(done >= 1 && done <= total);
    log->calls++;
    log->last_done = done;
    log->last_total = total;
}

static void log_matrix(void *user, const char *tensor_name, const char *const *type_names, const float *kld,
                       int n_types)
{
    struct progress_log *log = user;
    assert_non_null(tensor_name);
    assert_true(n_types == 0 || (type_names && kld));
    log->matrices++;
    log->n_types = n_types;
}

static void test_callbacks(void **state)
{
    (void)state;
    struct tiny_model_spec spec = calib_spec(64, true);
    const char *model_path = temp_path("calib_cb.gguf");
    assert_int_equal(tiny_model_write(model_path, &spec), PLM_OK);
    plm_model *model = load(model_path);
    int32_t tokens[3 * N_CTX];
    random_tokens(tokens, 3 * N_CTX, 1);
    struct progress_log log = {0};
    struct plm_calibrate_params p = calib_params(tokens, 3 * N_CTX, false);
    p.on_progress = log_progress;
    p.on_matrix = log_matrix;
    p.user = &log;
    calibrate_ok(model, &p, temp_path("calib_cb.imatrix.gguf"));
    assert_int_equal(log.calls, 3);
    assert_int_equal(log.last_done, 3);
    /* Tied: token_embd (as the output) + 7 per layer. */
    assert_int_equal(log.matrices, 1 + 7 * 2);
    assert_int_equal(log.n_types, 0);
    plm_model_free(model);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct tiny_model_spec spec = calib_spec(64, true);
    const char *model_path = temp_path("calib_args.gguf");
    assert_int_equal(tiny_model_write(model_path, &spec), PLM_OK);
    plm_model *model = load(model_path);
    const char *out = temp_path("calib_args.imatrix.gguf");
    remove(out);
    int32_t tokens[N_CTX];
    random_tokens(tokens, N_CTX, 2);

    struct plm_calibrate_params p = calib_params(tokens, N_CTX - 1, false);
    assert_int_equal(plm_calibrate(model, &p, out), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "calibration needs at least 16 tokens (one chunk), the text has 15"));
    p = calib_params(tokens, 0, false);
    assert_int_equal(plm_calibrate(model, &p, out), PLM_ERR_ARG);
    p = calib_params(tokens, N_CTX, false);
    p.n_ctx = 3;
    assert_int_equal(plm_calibrate(model, &p, out), PLM_ERR_ARG);
    tokens[5] = TINY_N_VOCAB;
    p = calib_params(tokens, N_CTX, false);
    assert_int_equal(plm_calibrate(model, &p, out), PLM_ERR_ARG);
    tokens[5] = -1;
    assert_int_equal(plm_calibrate(model, &p, out), PLM_ERR_ARG);
    FILE *f = fopen(out, "rb");
    assert_null(f); /* nothing written */
    plm_model_free(model);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_round_trip),
        cmocka_unit_test(test_without_sensitivities),
        cmocka_unit_test(test_writer_refuses_bad_contents),
        cmocka_unit_test(test_malformed_files),
        cmocka_unit_test(test_not_a_gguf),
        cmocka_unit_test(test_first_layer_inputs),
        cmocka_unit_test(test_tied_output_inputs),
        cmocka_unit_test(test_sensitivities_and_model_unchanged),
        cmocka_unit_test(test_fallback_and_untied_embedding),
        cmocka_unit_test(test_deterministic),
        cmocka_unit_test(test_callbacks),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
