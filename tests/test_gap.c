/*
 * The gap between a model and a reference (src/eval/gap.c): every metric on a
 * 3-token vocabulary worked out by hand, the quantile on known arrays, the
 * reference file written, read back and refused when malformed, and whole
 * comparisons of tiny models: a model against itself (exactly no gap, the
 * perplexity of plm_perplexity), and a Q4_0 model against its F32 twin, checked
 * against the same metrics computed directly from the float64 reference
 * forward pass.
 */
#include "test_util.h"

#include "eval/gap.h"
#include "pocketlm.h"
#include "ref_forward.h"
#include "tensor/types.h"
#include "tiny_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static void assert_close(double got, double want, double tolerance)
{
    if (!(fabs(got - want) <= tolerance))
        fail_msg("got %.17g, want %.17g (tolerance %g)", got, want, tolerance);
}

/* ------------------------------------------------- metrics by hand */

/* Logits {0, 0, 0}: p = 1/3 each. Logits {ln 2, 0, 0}: exp sum 4, p = {1/2, 1/4, 1/4}. */
static void test_log_softmax_by_hand(void **state)
{
    (void)state;
    double lp[3];
    gap_log_softmax((const float[]){0.0f, 0.0f, 0.0f}, 3, lp);
    for (int i = 0; i < 3; i++)
        assert_close(lp[i], -log(3.0), 1e-15);
    gap_log_softmax((const float[]){(float)log(2.0), 0.0f, 0.0f}, 3, lp);
    /* ln 2 rounded to float shifts the probabilities by ~1e-8. */
    assert_close(lp[0], log(0.5), 1e-7);
    assert_close(lp[1], log(0.25), 1e-7);
    assert_close(lp[2], log(0.25), 1e-7);
    /* Huge logits must not overflow: only differences matter. */
    gap_log_softmax((const float[]){1000.0f, 1000.0f, -1000.0f}, 3, lp);
    assert_close(lp[0], log(0.5), 1e-15);
    assert_close(lp[1], log(0.5), 1e-15);
    assert_true(lp[2] < -1999.0);
}

static void test_argmax_ties_go_to_lowest_index(void **state)
{
    (void)state;
    assert_int_equal(gap_argmax((const double[]){1.0, 1.0, 1.0}, 3), 0);
    assert_int_equal(gap_argmax((const double[]){1.0, 3.0, 3.0}, 3), 1);
    assert_int_equal(gap_argmax((const double[]){-5.0, -4.0, -3.0}, 3), 2);
    assert_int_equal(gap_argmax((const double[]){-INFINITY, -INFINITY, -1.0}, 3), 2);
    assert_int_equal(gap_argmax((const double[]){7.0}, 1), 0);
}

/* ref p = {1/3, 1/3, 1/3}, model p = {1/2, 1/4, 1/4}:
 *   KL = 1/3 ln((1/3)/(1/2)) + 2/3 ln((1/3)/(1/4)) = 1/3 ln(2/3 * 16/9) = ln(32/27) / 3.
 * Top-1: the reference ties everywhere (index 0), the model picks 0: agree.
 * Correct token 1: p_ref = 1/3, p_model = 1/4. */
static void test_position_by_hand(void **state)
{
    (void)state;
    double ref[3] = {log(1.0 / 3), log(1.0 / 3), log(1.0 / 3)};
    double model[3] = {log(0.5), log(0.25), log(0.25)};
    struct gap_position pos;
    gap_score_position(ref, model, 3, 1, &pos);
    assert_close(pos.kld, log(32.0 / 27.0) / 3.0, 1e-15);
    assert_true(pos.same_top1);
    assert_close(pos.p_ref, 1.0 / 3, 1e-15);
    assert_close(pos.p_model, 0.25, 1e-15);

    /* The other direction: KL(model || ref) = 1/2 ln(3/2) + 1/2 ln(3/4) = 1/2 ln(9/8). */
    assert_close(gap_kl_divergence(model, ref, 3), 0.5 * log(9.0 / 8.0), 1e-15);

    /* ref p = {3/5, 1/5, 1/5}, model p = {1/5, 3/5, 1/5}: they disagree on the
     * top token; KL = 3/5 ln 3 + 1/5 ln(1/3) = 2/5 ln 3. */
    double ref2[3] = {log(0.6), log(0.2), log(0.2)};
    double model2[3] = {log(0.2), log(0.6), log(0.2)};
    gap_score_position(ref2, model2, 3, 2, &pos);
    assert_close(pos.kld, 0.4 * log(3.0), 1e-15);
    assert_false(pos.same_top1);
    assert_close(pos.p_model - pos.p_ref, 0.0, 1e-15);
}

static void test_identical_distributions_give_exactly_zero(void **state)
{
    (void)state;
    struct test_rng rng = {11};
    enum { N = 1000 };
    float logits[N];
    double lp[N];
    for (int i = 0; i < N; i++)
        logits[i] = 5.0f * rng_normal(&rng);
    gap_log_softmax(logits, N, lp);
    struct gap_position pos;
    gap_score_position(lp, lp, N, 17, &pos);
    assert_true(pos.kld == 0.0);
    assert_true(pos.same_top1);
    assert_true(pos.p_model == pos.p_ref);
}

/* Tokens the reference rules out contribute nothing, not 0 * inf = NaN:
 * ref p = {1, 0, 0}, model p = {1/2, 1/4, 1/4} gives KL = ln 2. */
static void test_zero_reference_probability(void **state)
{
    (void)state;
    double ref[3] = {0.0, -INFINITY, -INFINITY};
    double model[3] = {log(0.5), log(0.25), log(0.25)};
    assert_close(gap_kl_divergence(ref, model, 3), log(2.0), 1e-15);
    /* A model that rules out what the reference expects is infinitely far. */
    assert_true(isinf(gap_kl_divergence(model, ref, 3)));
}

static void test_quantile_on_known_arrays(void **state)
{
    (void)state;
    const double five[] = {1, 2, 3, 4, 5};
    assert_close(gap_quantile(five, 5, 0.0), 1.0, 0);
    assert_close(gap_quantile(five, 5, 0.5), 3.0, 0);
    assert_close(gap_quantile(five, 5, 1.0), 5.0, 0);
    /* h = 0.99 * 4 = 3.96: 4 + 0.96 * (5 - 4). */
    assert_close(gap_quantile(five, 5, 0.99), 4.96, 1e-12);
    const double four[] = {1, 2, 3, 10};
    assert_close(gap_quantile(four, 4, 0.5), 2.5, 0);
    assert_close(gap_quantile((const double[]){42.0}, 1, 0.99), 42.0, 0);
    double hundred[100];
    for (int i = 0; i < 100; i++)
        hundred[i] = i + 1;
    /* h = 0.99 * 99 = 98.01: 99 + 0.01. */
    assert_close(gap_quantile(hundred, 100, 0.99), 99.01, 1e-9);
    assert_close(gap_quantile(hundred, 100, 0.5), 50.5, 1e-12);
}

static void test_log_distribution_check(void **state)
{
    (void)state;
    float third = (float)log(1.0 / 3);
    assert_true(gap_is_log_distribution((const float[]){third, third, third}, 3));
    assert_true(gap_is_log_distribution((const float[]){0.0f, -INFINITY, -INFINITY}, 3));
    assert_false(gap_is_log_distribution((const float[]){-1.0f, -1.0f, -1.0f}, 3)); /* sums to 1.10 */
    assert_false(gap_is_log_distribution((const float[]){third, NAN, third}, 3));
    assert_false(gap_is_log_distribution((const float[]){0.5f, -INFINITY, -INFINITY}, 3));
    assert_false(gap_is_log_distribution((const float[]){INFINITY, third, third}, 3));
}

/* ------------------------------------------------- reference files by hand */

/* Writes a reference file of uniform distributions over n_vocab tokens, with
 * tokens 1, 2, 3, ... (mod n_vocab); returns its size. */
static long write_uniform_reference(const char *path, uint32_t n_vocab, uint32_t n_ctx, uint32_t n_chunks)
{
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    uint32_t fields[4] = {GAP_REF_VERSION, n_vocab, n_ctx, n_chunks};
    fwrite(GAP_REF_MAGIC, 1, 8, f);
    fwrite(fields, sizeof fields, 1, f);
    for (uint32_t i = 0; i < n_chunks * n_ctx; i++) {
        int32_t token = (int32_t)((i + 1) % n_vocab);
        fwrite(&token, sizeof token, 1, f);
    }
    float uniform = (float)-log((double)n_vocab);
    for (uint32_t i = 0; i < n_chunks * (uint32_t)gap_scored_per_chunk((int)n_ctx) * n_vocab; i++)
        fwrite(&uniform, sizeof uniform, 1, f);
    long size = ftell(f);
    assert_int_equal(fclose(f), 0);
    return size;
}

/* Overwrites bytes at an offset of an existing file. */
static void patch_file(const char *path, long offset, const void *bytes, size_t n)
{
    FILE *f = fopen(path, "r+b");
    assert_non_null(f);
    assert_int_equal(fseek(f, offset, SEEK_SET), 0);
    assert_int_equal(fwrite(bytes, 1, n, f), n);
    assert_int_equal(fclose(f), 0);
}

static void expect_refused(const char *path, const char *what)
{
    struct gap_reference ref;
    int rc = gap_reference_open(&ref, path);
    if (rc != PLM_ERR_FORMAT)
        fail_msg("%s: status %d, expected PLM_ERR_FORMAT (%s)", what, rc, plm_last_error());
    assert_null(ref.file.data);
}

static void test_reference_file_layout(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s", temp_path("layout.ref"));
    long size = write_uniform_reference(path, 7, 10, 3);
    /* 24 header bytes, 3 * 10 tokens, 3 chunks * 4 scored rows * 7 floats. */
    assert_int_equal(size, 24 + 3 * 10 * 4 + 3 * 4 * 7 * 4);
    struct gap_reference ref;
    assert_int_equal(gap_reference_open(&ref, path), PLM_OK);
    assert_int_equal(ref.n_vocab, 7);
    assert_int_equal(ref.n_ctx, 10);
    assert_int_equal(ref.n_chunks, 3);
    assert_int_equal(ref.n_scored, 4); /* positions 6..9, from the logits at 5..8 */
    assert_int_equal(ref.tokens[29], 30 % 7);
    assert_true(ref.log_probs[3 * 4 * 7 - 1] == (float)-log(7.0));
    gap_reference_close(&ref);
    assert_int_equal(gap_scored_per_chunk(4), 1);
    assert_int_equal(gap_scored_per_chunk(5), 2);
    assert_int_equal(gap_scored_per_chunk(512), 255);
    remove(path);
}

static void test_malformed_references_refused(void **state)
{
    (void)state;
    char path[4096];
    snprintf(path, sizeof path, "%s", temp_path("bad.ref"));
    long size = write_uniform_reference(path, 7, 10, 3);

    /* Truncated anywhere: in the header, in the tokens, by one float. */
    long cuts[] = {1, 8, 23, 24, 100, size - 1};
    for (size_t i = 0; i < sizeof cuts / sizeof cuts[0]; i++) {
        write_uniform_reference(path, 7, 10, 3);
        assert_int_equal(truncate(path, cuts[i]), 0);
        expect_refused(path, "truncated");
    }
    /* One byte too many. */
    write_uniform_reference(path, 7, 10, 3);
    FILE *f = fopen(path, "ab");
    fputc(0, f);
    fclose(f);
    expect_refused(path, "trailing byte");

    write_uniform_reference(path, 7, 10, 3);
    patch_file(path, 0, "GGUF", 4);
    expect_refused(path, "bad magic");

    struct { long offset; uint32_t value; const char *what; } fields[] = {
        {8, 2, "version 2"},
        {12, 1, "one-token vocabulary"},
        {12, 0x80000000u, "vocabulary over INT32_MAX"},
        {16, 3, "chunks of 3 tokens"},
        {16, 0xFFFFFFFFu, "huge chunks"},
        {20, 0, "no chunks"},
        {20, 0x7FFFFFFFu, "huge chunk count"},
        {20, 4, "one chunk more than the data"},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++) {
        write_uniform_reference(path, 7, 10, 3);
        patch_file(path, fields[i].offset, &fields[i].value, 4);
        expect_refused(path, fields[i].what);
    }
    /* Counts whose sizes overflow 64 bits must not wrap around to the file size. */
    write_uniform_reference(path, 7, 10, 3);
    uint32_t huge[3] = {0x7FFFFFFFu, 0x7FFFFFFFu, 0x7FFFFFFFu};
    patch_file(path, 12, huge, sizeof huge);
    expect_refused(path, "overflowing counts");

    int32_t tokens[] = {7, -1};
    for (int i = 0; i < 2; i++) {
        write_uniform_reference(path, 7, 10, 3);
        patch_file(path, 24 + 4 * 13, &tokens[i], 4);
        expect_refused(path, "token outside the vocabulary");
    }

    struct gap_reference ref;
    assert_int_equal(gap_reference_open(&ref, "/nonexistent/gap.ref"), PLM_ERR_IO);
    f = fopen(path, "wb");
    fclose(f);
    expect_refused(path, "empty file");
    remove(path);
}

/* ------------------------------------------------- tiny models */

static const char *write_tiny_model(const char *tag, int weight_type)
{
    struct tiny_model_spec spec = {.arch = "llama", .n_embd = 64, .n_ff = 128, .n_layer = 2, .n_head = 4,
                                   .n_head_kv = 2, .head_dim = 16, .n_ctx_train = 256,
                                   .rope_freq_base = 10000.0f, .norm_eps = 1e-5f,
                                   .weight_type = weight_type, .seed = 7};
    const char *path = temp_path(tag);
    assert_int_equal(tiny_model_write(path, &spec), PLM_OK);
    return path;
}

struct loaded {
    char path[4096];
    plm_model *model;
    plm_session *session;
};

static void load(struct loaded *m, const char *tag, int weight_type, int n_ctx)
{
    snprintf(m->path, sizeof m->path, "%s", write_tiny_model(tag, weight_type));
    assert_int_equal(plm_model_load(m->path, &m->model), PLM_OK);
    struct plm_session_params params = {.n_ctx = n_ctx, .n_threads = 2};
    assert_int_equal(plm_session_new(m->model, &params, &m->session), PLM_OK);
}

static void unload(struct loaded *m)
{
    plm_session_free(m->session);
    plm_model_free(m->model);
    remove(m->path);
}

static int32_t *random_tokens(int n, uint64_t seed)
{
    struct test_rng rng = {seed};
    int32_t *tokens = malloc((size_t)n * sizeof *tokens);
    assert_non_null(tokens);
    for (int i = 0; i < n; i++)
        tokens[i] = 3 + (int32_t)(rng_next(&rng) % (TINY_N_VOCAB - 3));
    return tokens;
}

static int progress_calls;
static void count_progress(void *user, int done, int total)
{
    assert_int_equal(done, ++progress_calls);
    assert_int_equal(total, *(int *)user);
}

/* The file holds the chunks (BOS first) and, for each scored position, the
 * log-softmax of the logits a plain decode of the chunk gives there. */
static void test_reference_round_trip(void **state)
{
    (void)state;
    struct loaded m;
    load(&m, "roundtrip.gguf", PLM_TYPE_F32, 256);
    const int n_ctx = 128, n_tokens = 3 * n_ctx + 50;
    int32_t *tokens = random_tokens(n_tokens, 3);
    char ref_path[4096];
    snprintf(ref_path, sizeof ref_path, "%s", temp_path("roundtrip.ref"));
    int expected_chunks = 2;
    progress_calls = 0;
    assert_int_equal(plm_gap_save_reference(m.session, tokens, n_tokens, n_ctx, 2, ref_path, count_progress,
                                            &expected_chunks),
                     PLM_OK);
    assert_int_equal(progress_calls, 2);

    struct gap_reference ref;
    assert_int_equal(gap_reference_open(&ref, ref_path), PLM_OK);
    assert_int_equal(ref.n_vocab, TINY_N_VOCAB);
    assert_int_equal(ref.n_ctx, n_ctx);
    assert_int_equal(ref.n_chunks, 2);
    assert_int_equal(ref.n_scored, 63);
    float *logits = malloc((size_t)n_ctx * TINY_N_VOCAB * sizeof *logits);
    double lp[TINY_N_VOCAB];
    for (int c = 0; c < 2; c++) {
        const int32_t *chunk = ref.tokens + c * n_ctx;
        assert_int_equal(chunk[0], plm_token_bos(m.model));
        assert_memory_equal(chunk + 1, tokens + c * n_ctx + 1, (n_ctx - 1) * sizeof(int32_t));
        plm_session_truncate(m.session, 0);
        assert_int_equal(plm_decode(m.session, chunk, n_ctx, logits), PLM_OK);
        for (int row = 0; row < ref.n_scored; row++) {
            gap_log_softmax(logits + (size_t)(n_ctx / 2 + row) * TINY_N_VOCAB, TINY_N_VOCAB, lp);
            const float *stored = ref.log_probs + ((size_t)c * ref.n_scored + row) * TINY_N_VOCAB;
            for (int v = 0; v < TINY_N_VOCAB; v++)
                if (stored[v] != (float)lp[v])
                    fail_msg("chunk %d row %d token %d: stored %.9g, decoded %.9g", c, row, v, stored[v], lp[v]);
        }
    }
    gap_reference_close(&ref);
    free(logits);
    free(tokens);
    remove(ref_path);
    unload(&m);
}

static void test_save_reference_errors(void **state)
{
    (void)state;
    struct loaded m;
    load(&m, "saveerr.gguf", PLM_TYPE_F32, 64);
    int32_t *tokens = random_tokens(200, 5);
    const char *ref_path = temp_path("saveerr.ref");
    assert_int_equal(plm_gap_save_reference(m.session, tokens, 63, 64, 0, ref_path, NULL, NULL), PLM_ERR_ARG);
    assert_int_equal(plm_gap_save_reference(m.session, tokens, 200, 128, 0, ref_path, NULL, NULL), PLM_ERR_ARG);
    assert_int_equal(plm_gap_save_reference(m.session, tokens, 200, 3, 0, ref_path, NULL, NULL), PLM_ERR_ARG);
    assert_int_equal(plm_gap_save_reference(m.session, tokens, 200, 64, 0, "/nonexistent/dir/x.ref", NULL, NULL),
                     PLM_ERR_IO);
    /* A token outside the vocabulary fails the decode, and no partial file is left. */
    tokens[100] = TINY_N_VOCAB;
    assert_int_equal(plm_gap_save_reference(m.session, tokens, 200, 64, 0, ref_path, NULL, NULL), PLM_ERR_ARG);
    assert_int_equal(access(ref_path, F_OK), -1);
    free(tokens);
    unload(&m);
}

/* A model against its own reference: no gap at all, and its perplexity is
 * plm_perplexity's on the same tokens and chunking. */
static void test_model_against_itself(void **state)
{
    (void)state;
    struct loaded m;
    load(&m, "self.gguf", PLM_TYPE_F32, 256);
    const int n_ctx = 128, n_tokens = 3 * n_ctx + 7;
    int32_t *tokens = random_tokens(n_tokens, 9);
    const char *ref_path = temp_path("self.ref");
    assert_int_equal(plm_gap_save_reference(m.session, tokens, n_tokens, n_ctx, 0, ref_path, NULL, NULL), PLM_OK);
    struct plm_gap_metrics g;
    int n_chunks = 3;
    progress_calls = 0;
    assert_int_equal(plm_gap_compare(m.session, ref_path, count_progress, &n_chunks, &g), PLM_OK);
    assert_int_equal(progress_calls, 3);
    struct plm_perplexity_result p;
    assert_int_equal(plm_perplexity(m.session, tokens, n_tokens, n_ctx, NULL, NULL, &p), PLM_OK);

    assert_int_equal(g.n_chunks, 3);
    assert_int_equal(g.n_ctx, n_ctx);
    assert_int_equal(g.n_scored, p.n_scored);
    assert_true(g.ppl == p.ppl);
    assert_close(g.ref_ppl, p.ppl, 1e-6 * p.ppl); /* from the F32-rounded log-probabilities */
    assert_close(g.ppl_ratio, 1.0, 1e-6);
    assert_true(g.kld_mean == 0.0 && g.kld_median == 0.0 && g.kld_p99 == 0.0 && g.kld_max == 0.0);
    assert_true(g.top1_agreement == 1.0);
    assert_true(g.dp_mean == 0.0 && g.dp_rms == 0.0);

    /* The same reference through a session with a larger context gives the same. */
    plm_session *big;
    struct plm_session_params params = {.n_ctx = 200, .n_threads = 1};
    assert_int_equal(plm_session_new(m.model, &params, &big), PLM_OK);
    struct plm_gap_metrics again;
    assert_int_equal(plm_gap_compare(big, ref_path, NULL, NULL, &again), PLM_OK);
    assert_true(again.kld_max == 0.0 && again.ppl == g.ppl);
    plm_session_free(big);
    free(tokens);
    remove(ref_path);
    unload(&m);
}

static void test_compare_refuses_mismatches(void **state)
{
    (void)state;
    struct loaded m;
    load(&m, "mismatch.gguf", PLM_TYPE_F32, 64);
    char path[4096];
    snprintf(path, sizeof path, "%s", temp_path("mismatch.ref"));
    struct plm_gap_metrics g;

    write_uniform_reference(path, TINY_N_VOCAB - 1, 16, 2);
    assert_int_equal(plm_gap_compare(m.session, path, NULL, NULL, &g), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "vocabulary"));

    write_uniform_reference(path, TINY_N_VOCAB, 128, 1);
    assert_int_equal(plm_gap_compare(m.session, path, NULL, NULL, &g), PLM_ERR_ARG);

    /* A well-formed file whose stored rows are not distributions. */
    write_uniform_reference(path, TINY_N_VOCAB, 16, 2);
    assert_int_equal(plm_gap_compare(m.session, path, NULL, NULL, &g), PLM_OK);
    float nan = NAN;
    long row_1_of_chunk_1 = 24 + 2 * 16 * 4 + (7 + 1) * TINY_N_VOCAB * 4;
    patch_file(path, row_1_of_chunk_1 + 40, &nan, sizeof nan);
    assert_int_equal(plm_gap_compare(m.session, path, NULL, NULL, &g), PLM_ERR_FORMAT);
    assert_non_null(strstr(plm_last_error(), "row 1 of chunk 1"));
    remove(path);
    unload(&m);
}

/* The metrics of a model against a reference, computed directly from the
 * float64 forward passes of both, the way the definitions read. */
static void direct_metrics(const char *ref_model_path, const char *model_path, const int32_t *tokens, int n_ctx,
                           int n_chunks, int32_t bos, struct plm_gap_metrics *m)
{
    struct ref_model *ref_model, *model;
    assert_int_equal(ref_model_load(ref_model_path, &ref_model), PLM_OK);
    assert_int_equal(ref_model_load(model_path, &model), PLM_OK);
    double *ref_logits = malloc((size_t)n_ctx * TINY_N_VOCAB * sizeof(double));
    double *logits = malloc((size_t)n_ctx * TINY_N_VOCAB * sizeof(double));
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    double nll = 0, ref_nll = 0, kld = 0, dp = 0, dp2 = 0, agree = 0;
    int n = 0;
    for (int c = 0; c < n_chunks; c++) {
        memcpy(chunk, tokens + c * n_ctx, (size_t)n_ctx * sizeof *chunk);
        chunk[0] = bos;
        assert_int_equal(ref_forward(ref_model, chunk, n_ctx, REF_ACTIVATIONS_EXACT, ref_logits), PLM_OK);
        assert_int_equal(ref_forward(model, chunk, n_ctx, REF_ACTIVATIONS_Q8, logits), PLM_OK);
        for (int pos = n_ctx / 2; pos < n_ctx - 1; pos++, n++) {
            const double *r = ref_logits + (size_t)pos * TINY_N_VOCAB, *q = logits + (size_t)pos * TINY_N_VOCAB;
            double r_sum = 0, q_sum = 0;
            int r_best = 0, q_best = 0;
            for (int v = 0; v < TINY_N_VOCAB; v++) {
                r_sum += exp(r[v]);
                q_sum += exp(q[v]);
                r_best = r[v] > r[r_best] ? v : r_best;
                q_best = q[v] > q[q_best] ? v : q_best;
            }
            for (int v = 0; v < TINY_N_VOCAB; v++)
                kld += exp(r[v]) / r_sum * ((r[v] - log(r_sum)) - (q[v] - log(q_sum)));
            int32_t next = chunk[pos + 1];
            nll += log(q_sum) - q[next];
            ref_nll += log(r_sum) - r[next];
            double d = exp(q[next]) / q_sum - exp(r[next]) / r_sum;
            dp += d;
            dp2 += d * d;
            agree += r_best == q_best;
        }
    }
    m->n_scored = n;
    m->ppl = exp(nll / n);
    m->ref_ppl = exp(ref_nll / n);
    m->kld_mean = kld / n;
    m->top1_agreement = agree / n;
    m->dp_mean = dp / n;
    m->dp_rms = sqrt(dp2 / n);
    free(ref_logits);
    free(logits);
    free(chunk);
    ref_model_free(ref_model);
    ref_model_free(model);
}

/* A Q4_0 model against its F32 twin (same weights before rounding): a real,
 * small gap, whose every figure matches the direct computation. */
static void test_quantized_twin(void **state)
{
    (void)state;
    struct loaded full, q4;
    load(&full, "twin-f32.gguf", PLM_TYPE_F32, 128);
    load(&q4, "twin-q4.gguf", PLM_TYPE_Q4_0, 128);
    const int n_ctx = 128, n_chunks = 2, n_tokens = n_chunks * n_ctx;
    int32_t *tokens = random_tokens(n_tokens, 21);
    char ref_path[4096];
    snprintf(ref_path, sizeof ref_path, "%s", temp_path("twin.ref"));
    assert_int_equal(plm_gap_save_reference(full.session, tokens, n_tokens, n_ctx, 0, ref_path, NULL, NULL), PLM_OK);
    struct plm_gap_metrics g;
    assert_int_equal(plm_gap_compare(q4.session, ref_path, NULL, NULL, &g), PLM_OK);
    struct plm_perplexity_result q4_ppl, full_ppl;
    assert_int_equal(plm_perplexity(q4.session, tokens, n_tokens, n_ctx, NULL, NULL, &q4_ppl), PLM_OK);
    assert_int_equal(plm_perplexity(full.session, tokens, n_tokens, n_ctx, NULL, NULL, &full_ppl), PLM_OK);
    print_message("  Q4_0 vs F32: ppl %.4f / %.4f, KLD mean %.3g median %.3g p99 %.3g max %.3g, top-1 %.3f, "
                  "dp %.3g rms %.3g\n", g.ppl, g.ref_ppl, g.kld_mean, g.kld_median, g.kld_p99, g.kld_max,
                  g.top1_agreement, g.dp_mean, g.dp_rms);

    assert_close(g.ppl, q4_ppl.ppl, 1e-9 * q4_ppl.ppl);
    assert_close(g.ref_ppl, full_ppl.ppl, 1e-6 * full_ppl.ppl);
    assert_close(g.ppl_ratio, g.ppl / g.ref_ppl, 1e-12);
    assert_true(g.kld_mean > 0.0);
    assert_true(g.kld_median > 0.0 && g.kld_median <= g.kld_p99 && g.kld_p99 <= g.kld_max);
    assert_true(g.top1_agreement > 0.0 && g.top1_agreement <= 1.0);
    assert_true(g.dp_rms > 0.0 && g.dp_rms >= fabs(g.dp_mean));

    struct plm_gap_metrics want;
    direct_metrics(full.path, q4.path, tokens, n_ctx, n_chunks, plm_token_bos(full.model), &want);
    assert_int_equal(g.n_scored, want.n_scored);
    assert_close(g.ppl, want.ppl, 1e-3 * want.ppl);
    assert_close(g.ref_ppl, want.ref_ppl, 1e-4 * want.ref_ppl);
    assert_close(g.kld_mean, want.kld_mean, 0.02 * want.kld_mean);
    assert_close(g.dp_mean, want.dp_mean, 0.02 * want.dp_rms);
    assert_close(g.dp_rms, want.dp_rms, 0.02 * want.dp_rms);
    /* A near tie can flip between float and double arithmetic: one position in 50. */
    assert_close(g.top1_agreement, want.top1_agreement, 0.02);
    free(tokens);
    remove(ref_path);
    unload(&full);
    unload(&q4);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_log_softmax_by_hand),
        cmocka_unit_test(test_argmax_ties_go_to_lowest_index),
        cmocka_unit_test(test_position_by_hand),
        cmocka_unit_test(test_identical_distributions_give_exactly_zero),
        cmocka_unit_test(test_zero_reference_probability),
        cmocka_unit_test(test_quantile_on_known_arrays),
        cmocka_unit_test(test_log_distribution_check),
        cmocka_unit_test(test_reference_file_layout),
        cmocka_unit_test(test_malformed_references_refused),
        cmocka_unit_test(test_reference_round_trip),
        cmocka_unit_test(test_save_reference_errors),
        cmocka_unit_test(test_model_against_itself),
        cmocka_unit_test(test_compare_refuses_mismatches),
        cmocka_unit_test(test_quantized_twin),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
