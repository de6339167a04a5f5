/*
 * Synthetic models (plm_synth). Every shape is written with two layers and read
 * back with the GGUF reader, checked against the real models' published
 * config.json values (typed here again, independently of the table in
 * src/model/synth.c), loaded with plm_model_load and run. Also: the weight
 * distributions, k-quant fallbacks, determinism, vocabularies (padded, exact,
 * too large, malformed, and the real ones in ../shared) and bad arguments.
 */
#include "test_util.h"

#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "model/synth.h"
#include "pocketlm.h"
#include "tensor/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------- expectations */

/* config.json of each model on the Hugging Face Hub. */
struct expected_model {
    const char *shape, *arch;
    int n_vocab, n_ctx, n_embd, n_layer, n_head, n_head_kv, head_dim, n_ff;
    float rope_base, norm_eps;
    bool head_dim_key;  /* config.json has head_dim: attention.key_length is written */
    bool rope_freqs;    /* llama3 rope scaling: rope_freqs.weight */
};

static const struct expected_model models[] = {
    {"smollm2-135m", "llama", 49152, 8192, 576, 30, 9, 3, 64, 1536, 100000.0f, 1e-5f, true, false},
    {"smollm2-360m", "llama", 49152, 8192, 960, 32, 15, 5, 64, 2560, 100000.0f, 1e-5f, true, false},
    {"qwen2.5-0.5b", "qwen2", 151936, 32768, 896, 24, 14, 2, 64, 4864, 1000000.0f, 1e-6f, false, false},
    {"llama-3.2-1b", "llama", 128256, 131072, 2048, 16, 32, 8, 64, 8192, 500000.0f, 1e-5f, true, true},
    {"qwen3-0.6b", "qwen3", 151936, 40960, 1024, 28, 16, 8, 128, 3072, 1000000.0f, 1e-6f, true, false},
};
#define N_MODELS (sizeof models / sizeof models[0])

/* ----------------------------------------------------------------- helpers */

static char notes[4][512];
static int n_notes;

static void record_note(void *user, const char *note)
{
    (void)user;
    if (n_notes < 4)
        snprintf(notes[n_notes], sizeof notes[n_notes], "%s", note);
    n_notes++;
}

static int synth(const char *shape, const char *type, const char *vocab, uint64_t seed, int n_layer,
                 const char *path)
{
    struct plm_synth_params params = {
        .shape = shape, .type = type, .vocab_path = vocab, .seed = seed, .n_layer = n_layer,
        .on_note = record_note,
    };
    n_notes = 0;
    return plm_synth(&params, path);
}

/* A fresh temporary path (temp_path reuses its buffer). */
static char *new_path(const char *tag)
{
    char *path = strdup(temp_path(tag));
    assert_non_null(path);
    return path;
}

static bool exists(const char *path)
{
    return access(path, F_OK) == 0;
}

/* Neither the output nor a leftover of it (".partial", ".partial.zeros"). */
static void assert_nothing_written(const char *path)
{
    char other[4200];
    assert_false(exists(path));
    snprintf(other, sizeof other, "%s.partial", path);
    assert_false(exists(other));
    snprintf(other, sizeof other, "%s.partial.zeros", path);
    assert_false(exists(other));
}

static uint32_t get_u32(const struct gguf_file *f, const char *key)
{
    uint32_t value = 0;
    if (!gguf_get_u32(f, key, &value))
        fail_msg("missing u32 key %s", key);
    return value;
}

static uint32_t get_arch_u32(const struct gguf_file *f, const char *arch, const char *suffix)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return get_u32(f, key);
}

static bool has_arch_key(const struct gguf_file *f, const char *arch, const char *suffix)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_find(f, key) != NULL;
}

static bool str_is(const struct gguf_str s, const char *text)
{
    return s.len == strlen(text) && memcmp(s.ptr, text, s.len) == 0;
}

static void assert_str_key(const struct gguf_file *f, const char *key, const char *want)
{
    struct gguf_str s;
    assert_true(gguf_get_str(f, key, &s));
    if (!str_is(s, want))
        fail_msg("%s is '%.*s', expected '%s'", key, (int)s.len, s.ptr, want);
}

static bool any_nonzero(const uint8_t *bytes, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (bytes[i])
            return true;
    return false;
}

/* The tensor exists with this type and shape, and its first and last rows
 * were filled in (the writer lays the file out with zeros first). */
static const struct gguf_tensor *check_tensor(const struct gguf_file *f, const char *name, int type,
                                              int64_t ne0, int64_t ne1)
{
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        fail_msg("missing tensor %s", name);
    if (t->type != type)
        fail_msg("%s is %s, expected %s", name, plm_type_name(t->type), plm_type_name(type));
    assert_int_equal(t->n_dims, ne1 == 1 ? 1 : 2);
    assert_int_equal(t->ne[0], ne0);
    assert_int_equal(t->ne[1], ne1);
    size_t row = plm_row_bytes(type, ne0);
    const uint8_t *data = t->data;
    if (!any_nonzero(data, row) || !any_nonzero(data + (ne1 - 1) * row, row))
        fail_msg("%s has an all-zero first or last row", name);
    return t;
}

static const struct gguf_tensor *check_layer_tensor(const struct gguf_file *f, int il, const char *suffix,
                                                    int type, int64_t ne0, int64_t ne1)
{
    char name[96];
    snprintf(name, sizeof name, "blk.%d.%s", il, suffix);
    return check_tensor(f, name, type, ne0, ne1);
}

/* Mean and standard deviation of an F32 tensor. */
static void moments(const struct gguf_tensor *t, double *mean, double *stddev)
{
    assert_int_equal(t->type, PLM_TYPE_F32);
    const float *x = t->data;
    int64_t n = t->ne[0] * t->ne[1];
    double sum = 0, sum2 = 0;
    for (int64_t i = 0; i < n; i++) {
        sum += x[i];
        sum2 += (double)x[i] * x[i];
    }
    *mean = sum / (double)n;
    *stddev = sqrt(sum2 / (double)n - *mean * *mean);
}

static void check_moments(const struct gguf_tensor *t, double want_mean, double want_stddev)
{
    double mean, stddev;
    moments(t, &mean, &stddev);
    double n = (double)(t->ne[0] * t->ne[1]);
    /* Five standard errors of the mean; four of the deviation (relative error
     * 1/sqrt(2n): 35% for the 64 weights of a qk norm), at least 2%. */
    if (fabs(mean - want_mean) > 5.0 * want_stddev / sqrt(n))
        fail_msg("%s: mean %g, expected %g", t->name, mean, want_mean);
    double tolerance = fmax(4.0 / sqrt(2.0 * n), 0.02);
    if (fabs(stddev / want_stddev - 1.0) > tolerance)
        fail_msg("%s: standard deviation %g, expected %g", t->name, stddev, want_stddev);
}

/* Llama 3 rope scaling (factor 32, low 1, high 4, original context 8192), in double. */
static double llama3_factor(int i, int head_dim, double base)
{
    double freq = pow(base, -2.0 * i / head_dim);
    double wavelen = 2.0 * M_PI / freq;
    if (wavelen < 8192.0 / 4.0)
        return 1.0;
    if (wavelen > 8192.0 / 1.0)
        return 32.0;
    double smooth = (8192.0 / wavelen - 1.0) / (4.0 - 1.0);
    return 1.0 / ((1.0 - smooth) / 32.0 + smooth);
}

/* Loads the file, decodes text and checks the logits are finite and varied;
 * the text also goes back through the tokenizer. */
static void run_model(const char *path, const struct expected_model *e, int n_layer)
{
    plm_model *model;
    if (plm_model_load(path, &model))
        fail_msg("plm_model_load: %s", plm_last_error());
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    assert_string_equal(info.architecture, e->arch);
    assert_int_equal(info.n_vocab, e->n_vocab);
    assert_int_equal(info.n_embd, e->n_embd);
    assert_int_equal(info.n_layer, n_layer);
    assert_int_equal(info.n_head, e->n_head);
    assert_int_equal(info.n_head_kv, e->n_head_kv);
    assert_int_equal(info.head_dim, e->head_dim);
    assert_int_equal(info.n_ff, e->n_ff);
    assert_int_equal(info.n_ctx_train, e->n_ctx);
    assert_true(info.rope_freq_base == e->rope_base);
    assert_true(info.norm_eps == e->norm_eps);

    const char *text = "Hello w\xc3\xb6rld, once upon a time";
    int32_t tokens[128];
    int n = plm_tokenize(model, text, strlen(text), true, false, tokens, 128);
    assert_true(n > 2 && n <= 128);
    char decoded[256] = "";
    size_t len = 0;
    for (int i = 0; i < n; i++) {
        int piece = plm_token_to_piece(model, tokens[i], decoded + len, sizeof decoded - 1 - len, false);
        assert_true(piece >= 0 && len + (size_t)piece < sizeof decoded);
        len += (size_t)piece;
    }
    decoded[len] = '\0';
    /* SentencePiece vocabularies decode the added leading space. */
    assert_string_equal(decoded[0] == ' ' && text[0] != ' ' ? decoded + 1 : decoded, text);

    plm_session *session;
    struct plm_session_params params = {.n_ctx = 64, .n_threads = 1};
    assert_int_equal(plm_session_new(model, &params, &session), PLM_OK);
    assert_int_equal(plm_decode(session, tokens, n, NULL), PLM_OK);
    int32_t next = 3;
    assert_int_equal(plm_decode(session, &next, 1, NULL), PLM_OK);
    const float *logits = plm_session_logits(session);
    double sum = 0, sum2 = 0;
    for (int i = 0; i < e->n_vocab; i++) {
        if (!isfinite(logits[i]))
            fail_msg("logit %d is %g", i, logits[i]);
        sum += logits[i];
        sum2 += (double)logits[i] * logits[i];
    }
    double mean = sum / e->n_vocab;
    assert_true(sum2 / e->n_vocab - mean * mean > 1e-3); /* not all the same */
    plm_session_free(session);
    plm_model_free(model);
}

/* ----------------------------------------------------------------- shapes */

static void test_shape_names(void **state)
{
    (void)state;
    for (size_t i = 0; i < N_MODELS; i++) {
        assert_non_null(plm_synth_shape_name((int)i));
        assert_string_equal(plm_synth_shape_name((int)i), models[i].shape);
    }
    assert_null(plm_synth_shape_name((int)N_MODELS));
    assert_null(plm_synth_shape_name(-1));
}

/* Writes the shape at Q8_0 with 2 layers and checks everything in the file. */
static void check_shape(const struct expected_model *e)
{
    const int n_layer = 2;
    char *path = new_path("shape.gguf");
    if (synth(e->shape, "Q8_0", NULL, 1, n_layer, path))
        fail_msg("plm_synth: %s", plm_last_error());
    assert_int_equal(n_notes, 0); /* every row length is a multiple of 32 */

    struct gguf_file *f;
    assert_int_equal(gguf_open(path, &f), PLM_OK);
    const char *a = e->arch;
    assert_str_key(f, "general.architecture", a);
    assert_int_equal(get_arch_u32(f, a, "block_count"), n_layer);
    assert_int_equal(get_arch_u32(f, a, "context_length"), e->n_ctx);
    assert_int_equal(get_arch_u32(f, a, "embedding_length"), e->n_embd);
    assert_int_equal(get_arch_u32(f, a, "feed_forward_length"), e->n_ff);
    assert_int_equal(get_arch_u32(f, a, "attention.head_count"), e->n_head);
    assert_int_equal(get_arch_u32(f, a, "attention.head_count_kv"), e->n_head_kv);
    char key[128];
    float value;
    snprintf(key, sizeof key, "%s.rope.freq_base", a);
    assert_true(gguf_get_f32(f, key, &value) && value == e->rope_base);
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", a);
    assert_true(gguf_get_f32(f, key, &value) && value == e->norm_eps);
    assert_int_equal(has_arch_key(f, a, "attention.key_length"), e->head_dim_key);
    assert_int_equal(has_arch_key(f, a, "attention.value_length"), e->head_dim_key);
    if (e->head_dim_key) {
        assert_int_equal(get_arch_u32(f, a, "attention.key_length"), e->head_dim);
        assert_int_equal(get_arch_u32(f, a, "attention.value_length"), e->head_dim);
    }
    /* The converter writes these for llama only. */
    bool llama = strcmp(a, "llama") == 0;
    assert_int_equal(has_arch_key(f, a, "vocab_size"), llama);
    assert_int_equal(has_arch_key(f, a, "rope.dimension_count"), llama);
    if (llama) {
        assert_int_equal(get_arch_u32(f, a, "vocab_size"), e->n_vocab);
        assert_int_equal(get_arch_u32(f, a, "rope.dimension_count"), e->head_dim);
    }
    assert_int_equal(get_u32(f, "general.file_type"), 7); /* MOSTLY_Q8_0 */
    assert_int_equal(get_u32(f, "general.quantization_version"), 2);
    assert_str_key(f, "tokenizer.ggml.model", "llama");

    /* The byte vocabulary, padded to the embedding's rows. */
    const struct gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    const struct gguf_kv *types = gguf_find(f, "tokenizer.ggml.token_type");
    assert_non_null(tokens);
    assert_non_null(types);
    assert_int_equal(tokens->count, e->n_vocab);
    assert_int_equal(types->count, e->n_vocab);
    assert_true(str_is(tokens->strings[3 + 'A'], "<0x41>"));
    assert_true(str_is(tokens->strings[259], "\xe2\x96\x81"));
    char pad[32];
    snprintf(pad, sizeof pad, "[PAD%d]", e->n_vocab - 1);
    assert_true(str_is(tokens->strings[e->n_vocab - 1], pad));
    int64_t type;
    assert_true(gguf_array_i64(types, (uint64_t)e->n_vocab - 1, &type) && type == 5);
    assert_true(gguf_array_i64(types, 3, &type) && type == 6);

    /* Every tensor, exactly. */
    const int q8 = PLM_TYPE_Q8_0, f32 = PLM_TYPE_F32;
    const int64_t q_dim = (int64_t)e->n_head * e->head_dim, kv_dim = (int64_t)e->n_head_kv * e->head_dim;
    bool qwen2 = strcmp(a, "qwen2") == 0, qwen3 = strcmp(a, "qwen3") == 0;
    uint64_t n_expected = 2 + (uint64_t)n_layer * (9 + (qwen2 ? 3 : 0) + (qwen3 ? 2 : 0)) + e->rope_freqs;
    assert_int_equal(f->n_tensors, n_expected);
    assert_null(gguf_find_tensor(f, "output.weight")); /* tied embeddings */
    check_moments(check_tensor(f, "output_norm.weight", f32, e->n_embd, 1), 1.0, 0.1);
    check_tensor(f, "token_embd.weight", q8, e->n_embd, e->n_vocab);
    for (int il = 0; il < n_layer; il++) {
        check_moments(check_layer_tensor(f, il, "attn_norm.weight", f32, e->n_embd, 1), 1.0, 0.1);
        check_layer_tensor(f, il, "attn_q.weight", q8, e->n_embd, q_dim);
        check_layer_tensor(f, il, "attn_k.weight", q8, e->n_embd, kv_dim);
        check_layer_tensor(f, il, "attn_v.weight", q8, e->n_embd, kv_dim);
        check_layer_tensor(f, il, "attn_output.weight", q8, q_dim, e->n_embd);
        check_moments(check_layer_tensor(f, il, "ffn_norm.weight", f32, e->n_embd, 1), 1.0, 0.1);
        check_layer_tensor(f, il, "ffn_gate.weight", q8, e->n_embd, e->n_ff);
        check_layer_tensor(f, il, "ffn_up.weight", q8, e->n_embd, e->n_ff);
        check_layer_tensor(f, il, "ffn_down.weight", q8, e->n_ff, e->n_embd);
        if (qwen2) {
            check_moments(check_layer_tensor(f, il, "attn_q.bias", f32, q_dim, 1), 0.0, 0.1);
            check_moments(check_layer_tensor(f, il, "attn_k.bias", f32, kv_dim, 1), 0.0, 0.1);
            check_moments(check_layer_tensor(f, il, "attn_v.bias", f32, kv_dim, 1), 0.0, 0.1);
        }
        if (qwen3) {
            check_moments(check_layer_tensor(f, il, "attn_q_norm.weight", f32, e->head_dim, 1), 1.0, 0.1);
            check_moments(check_layer_tensor(f, il, "attn_k_norm.weight", f32, e->head_dim, 1), 1.0, 0.1);
        }
    }
    if (e->rope_freqs) {
        const struct gguf_tensor *t = check_tensor(f, "rope_freqs.weight", f32, e->head_dim / 2, 1);
        const float *factors = t->data;
        for (int i = 0; i < e->head_dim / 2; i++) {
            double want = llama3_factor(i, e->head_dim, e->rope_base);
            if (fabs(factors[i] - want) > 1e-4 * want)
                fail_msg("rope factor %d is %g, expected %g", i, factors[i], want);
        }
        assert_true(factors[0] == 1.0f && factors[e->head_dim / 2 - 1] == 32.0f);
    }
    gguf_free(f);

    run_model(path, e, n_layer);
    unlink(path);
    free(path);
}

static void test_smollm2_135m(void **state) { (void)state; check_shape(&models[0]); }
static void test_smollm2_360m(void **state) { (void)state; check_shape(&models[1]); }
static void test_qwen2_5_0_5b(void **state) { (void)state; check_shape(&models[2]); }
static void test_llama_3_2_1b(void **state) { (void)state; check_shape(&models[3]); }
static void test_qwen3_0_6b(void **state) { (void)state; check_shape(&models[4]); }

/* ----------------------------------------------------------------- weights */

/* Matrices are normal / sqrt(row length): checked in F32 on smollm2-135m. */
static void test_matrix_values(void **state)
{
    (void)state;
    char *path = new_path("f32.gguf");
    assert_int_equal(synth("smollm2-135m", "f32", NULL, 5, 1, path), PLM_OK);
    struct gguf_file *f;
    assert_int_equal(gguf_open(path, &f), PLM_OK);
    assert_int_equal(get_u32(f, "general.file_type"), 0); /* ALL_F32 */
    check_moments(check_tensor(f, "token_embd.weight", PLM_TYPE_F32, 576, 49152), 0.0, 1.0 / sqrt(576));
    check_moments(check_tensor(f, "blk.0.attn_k.weight", PLM_TYPE_F32, 576, 192), 0.0, 1.0 / sqrt(576));
    check_moments(check_tensor(f, "blk.0.ffn_down.weight", PLM_TYPE_F32, 1536, 576), 0.0, 1.0 / sqrt(1536));
    /* Tails of a normal distribution: some weights beyond 4 sigma, none beyond 7. */
    const struct gguf_tensor *t = gguf_find_tensor(f, "token_embd.weight");
    const float *x = t->data;
    int64_t beyond4 = 0;
    for (int64_t i = 0; i < 576 * 49152; i++) {
        double z = fabs(x[i]) * sqrt(576);
        assert_true(z < 7.0);
        beyond4 += z > 4.0;
    }
    /* P(|z| > 4) = 6.3e-5: about 1790 of 28.3 million. */
    assert_in_range(beyond4, 1400, 2200);
    gguf_free(f);
    unlink(path);
    free(path);
}

/* Q4_K on SmolLM2-135M: rows of 576 fall back to Q5_0 (one note), rows of
 * 1536 (ffn_down) stay Q4_K, and the model runs. */
static void test_fallback_file(void **state)
{
    (void)state;
    char *path = new_path("q4k.gguf");
    assert_int_equal(synth("smollm2-135m", "q4_k", NULL, 1, 1, path), PLM_OK);
    assert_int_equal(n_notes, 1);
    assert_non_null(strstr(notes[0], "rows of 576"));
    assert_non_null(strstr(notes[0], "Q5_0"));
    assert_non_null(strstr(notes[0], "7 matrices"));
    struct gguf_file *f;
    assert_int_equal(gguf_open(path, &f), PLM_OK);
    assert_int_equal(get_u32(f, "general.file_type"), 14);
    check_tensor(f, "token_embd.weight", PLM_TYPE_Q5_0, 576, 49152);
    check_tensor(f, "blk.0.attn_q.weight", PLM_TYPE_Q5_0, 576, 576);
    check_tensor(f, "blk.0.ffn_up.weight", PLM_TYPE_Q5_0, 576, 1536);
    check_tensor(f, "blk.0.ffn_down.weight", PLM_TYPE_Q4_K, 1536, 576);
    check_tensor(f, "blk.0.ffn_norm.weight", PLM_TYPE_F32, 576, 1);
    gguf_free(f);
    run_model(path, &models[0], 1);
    unlink(path);
    free(path);
}

/* ------------------------------------------------------------- determinism */

static uint8_t *read_file(const char *path, size_t *size)
{
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    fseek(file, 0, SEEK_END);
    *size = (size_t)ftell(file);
    rewind(file);
    uint8_t *bytes = malloc(*size);
    assert_non_null(bytes);
    assert_int_equal(fread(bytes, 1, *size, file), *size);
    fclose(file);
    return bytes;
}

static bool same_tensor_data(const struct gguf_file *a, const struct gguf_file *b, const char *name)
{
    const struct gguf_tensor *ta = gguf_find_tensor(a, name), *tb = gguf_find_tensor(b, name);
    assert_non_null(ta);
    assert_non_null(tb);
    return ta->nbytes == tb->nbytes && memcmp(ta->data, tb->data, ta->nbytes) == 0;
}

static void test_determinism(void **state)
{
    (void)state;
    char *first = new_path("seed7a.gguf"), *again = new_path("seed7b.gguf");
    char *other_seed = new_path("seed8.gguf"), *more_layers = new_path("seed7-2layers.gguf");
    assert_int_equal(synth("smollm2-135m", "Q4_0", NULL, 7, 1, first), PLM_OK);
    assert_int_equal(synth("smollm2-135m", "Q4_0", NULL, 7, 1, again), PLM_OK);
    assert_int_equal(synth("smollm2-135m", "Q4_0", NULL, 8, 1, other_seed), PLM_OK);
    assert_int_equal(synth("smollm2-135m", "Q4_0", NULL, 7, 2, more_layers), PLM_OK);
    size_t size_a, size_b, size_c;
    uint8_t *a = read_file(first, &size_a), *b = read_file(again, &size_b), *c = read_file(other_seed, &size_c);
    assert_int_equal(size_a, size_b);
    assert_memory_equal(a, b, size_a);
    assert_int_equal(size_a, size_c);
    assert_memory_not_equal(a, c, size_a);

    /* Each tensor's values depend on the seed and its name only. */
    struct gguf_file *one, *two, *seed8;
    assert_int_equal(gguf_open(first, &one), PLM_OK);
    assert_int_equal(gguf_open(more_layers, &two), PLM_OK);
    assert_int_equal(gguf_open(other_seed, &seed8), PLM_OK);
    assert_true(same_tensor_data(one, two, "token_embd.weight"));
    assert_true(same_tensor_data(one, two, "blk.0.attn_q.weight"));
    assert_true(same_tensor_data(one, two, "output_norm.weight"));
    assert_false(same_tensor_data(one, seed8, "blk.0.attn_q.weight"));
    /* and differ between tensors of the same shape */
    const struct gguf_tensor *gate = gguf_find_tensor(two, "blk.0.ffn_gate.weight");
    const struct gguf_tensor *up = gguf_find_tensor(two, "blk.0.ffn_up.weight");
    const struct gguf_tensor *gate1 = gguf_find_tensor(two, "blk.1.ffn_gate.weight");
    assert_memory_not_equal(gate->data, up->data, gate->nbytes);
    assert_memory_not_equal(gate->data, gate1->data, gate->nbytes);
    gguf_free(one);
    gguf_free(two);
    gguf_free(seed8);
    free(a);
    free(b);
    free(c);
    char *paths[] = {first, again, other_seed, more_layers};
    for (int i = 0; i < 4; i++) {
        unlink(paths[i]);
        free(paths[i]);
    }
}

/* ------------------------------------------------------------ vocabularies */

enum vocab_flaw { VOCAB_GOOD, VOCAB_SHORT_SCORES, VOCAB_NUMERIC_TOKENS, VOCAB_NO_TOKENS };

/* A vocab-only GGUF of n tokens "t<i>" with scores, types (unless without_types),
 * a few special keys and one key that must not be copied. */
static char *write_vocab(int n, bool without_types, enum vocab_flaw flaw)
{
    char *path = new_path("vocab.gguf");
    char **texts = malloc((size_t)n * sizeof *texts);
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    assert_true(texts && scores && types);
    for (int i = 0; i < n; i++) {
        texts[i] = malloc(16);
        snprintf(texts[i], 16, "t%d", i);
        scores[i] = (float)-i;
        types[i] = i == 0 ? 3 : 1;
    }
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), PLM_OK);
    assert_int_equal(gguf_writer_set_str(w, "general.name", "test vocab"), PLM_OK);
    assert_int_equal(gguf_writer_set_u32(w, "llama.context_length", 77), PLM_OK);
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.ggml.model", "llama"), PLM_OK);
    if (flaw == VOCAB_NUMERIC_TOKENS)
        assert_int_equal(gguf_writer_set_array(w, "tokenizer.ggml.tokens", GGUF_TYPE_INT32, types, (uint64_t)n), PLM_OK);
    else if (flaw != VOCAB_NO_TOKENS)
        assert_int_equal(gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", (const char *const *)texts, NULL, (uint64_t)n), PLM_OK);
    uint64_t n_scores = flaw == VOCAB_SHORT_SCORES ? (uint64_t)n - 1 : (uint64_t)n;
    assert_int_equal(gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores, n_scores), PLM_OK);
    if (!without_types)
        assert_int_equal(gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types, (uint64_t)n), PLM_OK);
    assert_int_equal(gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 0), PLM_OK);
    assert_int_equal(gguf_writer_set_str(w, "tokenizer.chat_template", "{{ messages }}"), PLM_OK);
    assert_int_equal(gguf_writer_write(w, path), PLM_OK);
    gguf_writer_free(w);
    for (int i = 0; i < n; i++)
        free(texts[i]);
    free(texts);
    free(scores);
    free(types);
    return path;
}

/* A vocabulary smaller than the model's is padded; its tokenizer keys are
 * copied and nothing else of the file. */
static void test_vocab_padded(void **state)
{
    (void)state;
    char *vocab = write_vocab(1000, true, VOCAB_GOOD), *path = new_path("padded.gguf");
    assert_int_equal(synth("smollm2-135m", "F16", vocab, 1, 1, path), PLM_OK);
    struct gguf_file *f;
    assert_int_equal(gguf_open(path, &f), PLM_OK);
    assert_str_key(f, "general.name", "SmolLM2-135M (synthetic)");
    assert_int_equal(get_u32(f, "llama.context_length"), 8192); /* not the vocab file's 77 */
    assert_str_key(f, "tokenizer.chat_template", "{{ messages }}");
    assert_int_equal(get_u32(f, "tokenizer.ggml.bos_token_id"), 0);
    const struct gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    const struct gguf_kv *scores = gguf_find(f, "tokenizer.ggml.scores");
    const struct gguf_kv *types = gguf_find(f, "tokenizer.ggml.token_type");
    assert_true(tokens && scores && types);
    assert_int_equal(tokens->count, 49152);
    assert_int_equal(scores->count, 49152);
    assert_int_equal(types->count, 49152);
    assert_true(str_is(tokens->strings[999], "t999"));
    assert_true(str_is(tokens->strings[1000], "[PAD1000]"));
    assert_true(str_is(tokens->strings[49151], "[PAD49151]"));
    float score;
    int64_t type;
    assert_true(gguf_array_f32(scores, 999, &score) && score == -999.0f);
    assert_true(gguf_array_f32(scores, 1000, &score) && score == -1000.0f);
    /* Without types in the vocab file: normal, then unused for the padding. */
    assert_true(gguf_array_i64(types, 0, &type) && type == 1);
    assert_true(gguf_array_i64(types, 1000, &type) && type == 5);
    check_tensor(f, "token_embd.weight", PLM_TYPE_F16, 576, 49152);
    gguf_free(f);
    unlink(path);
    unlink(vocab);
    free(path);
    free(vocab);
}

/* Exactly the model's size: no padding. One token more: refused, naming both. */
static void test_vocab_sizes(void **state)
{
    (void)state;
    char *exact = write_vocab(49152, false, VOCAB_GOOD), *path = new_path("exact.gguf");
    assert_int_equal(synth("smollm2-135m", "Q8_0", exact, 1, 1, path), PLM_OK);
    struct gguf_file *f;
    assert_int_equal(gguf_open(path, &f), PLM_OK);
    const struct gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    assert_int_equal(tokens->count, 49152);
    assert_true(str_is(tokens->strings[49151], "t49151"));
    int64_t type;
    assert_true(gguf_array_i64(gguf_find(f, "tokenizer.ggml.token_type"), 0, &type) && type == 3);
    gguf_free(f);
    unlink(path);

    char *too_big = write_vocab(49153, false, VOCAB_GOOD);
    assert_int_equal(synth("smollm2-135m", "Q8_0", too_big, 1, 1, path), PLM_ERR_LIMIT);
    assert_non_null(strstr(plm_last_error(), "49153 tokens"));
    assert_non_null(strstr(plm_last_error(), "smollm2-135m's 49152"));
    assert_nothing_written(path);
    /* qwen2.5 has room for it */
    assert_int_equal(synth("qwen2.5-0.5b", "Q4_0", too_big, 1, 1, path), PLM_OK);
    unlink(path);
    unlink(exact);
    unlink(too_big);
    free(exact);
    free(too_big);
    free(path);
}

static void test_vocab_malformed(void **state)
{
    (void)state;
    char *path = new_path("bad-vocab.gguf");
    char *missing = new_path("missing-vocab.gguf");
    assert_int_equal(synth("smollm2-135m", "Q8_0", missing, 1, 1, path), PLM_ERR_IO);
    assert_non_null(strstr(plm_last_error(), "missing-vocab.gguf"));
    assert_nothing_written(path);

    char *text = new_path("text.gguf");
    FILE *file = fopen(text, "w");
    fputs("not a gguf file at all\n", file);
    fclose(file);
    assert_int_equal(synth("smollm2-135m", "Q8_0", text, 1, 1, path), PLM_ERR_FORMAT);
    assert_nothing_written(path);

    const enum vocab_flaw flaws[] = {VOCAB_SHORT_SCORES, VOCAB_NUMERIC_TOKENS, VOCAB_NO_TOKENS};
    const char *messages[] = {"tokenizer.ggml.scores is not a numeric array of 100 entries",
                              "no tokenizer.ggml.tokens", "no tokenizer.ggml.tokens"};
    for (int i = 0; i < 3; i++) {
        char *vocab = write_vocab(100, false, flaws[i]);
        assert_int_equal(synth("smollm2-135m", "Q8_0", vocab, 1, 1, path), PLM_ERR_FORMAT);
        if (!strstr(plm_last_error(), messages[i]))
            fail_msg("message '%s' lacks '%s'", plm_last_error(), messages[i]);
        assert_nothing_written(path);
        unlink(vocab);
        free(vocab);
    }
    unlink(text);
    free(text);
    free(missing);
    free(path);
}

/* The real vocabularies in ../shared: SentencePiece (32000) in SmolLM2's
 * 49152 rows, GPT-2 BPE (50257, merges) in Qwen2.5's 151936, and GPT-2 too
 * large for SmolLM2. */
static void test_real_vocabs(void **state)
{
    (void)state;
    const char *found = shared_path("models/gguf-vocab/ggml-vocab-gpt-2.gguf");
    if (!found)
        skip();
    char *gpt2 = strdup(found);
    found = shared_path("models/gguf-vocab/ggml-vocab-llama-spm.gguf");
    if (!found) {
        free(gpt2);
        skip();
    }
    char *spm = strdup(found), *path = new_path("real-vocab.gguf");

    assert_int_equal(synth("smollm2-135m", "Q8_0", gpt2, 1, 1, path), PLM_ERR_LIMIT);
    assert_non_null(strstr(plm_last_error(), "50257 tokens, more than smollm2-135m's 49152"));
    assert_nothing_written(path);

    assert_int_equal(synth("smollm2-135m", "Q8_0", spm, 1, 1, path), PLM_OK);
    struct gguf_file *f, *source;
    assert_int_equal(gguf_open(path, &f), PLM_OK);
    assert_int_equal(gguf_open(spm, &source), PLM_OK);
    const struct gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    const struct gguf_kv *source_tokens = gguf_find(source, "tokenizer.ggml.tokens");
    assert_int_equal(tokens->count, 49152);
    for (uint64_t i = 0; i < 32000; i++) {
        assert_int_equal(tokens->strings[i].len, source_tokens->strings[i].len);
        assert_memory_equal(tokens->strings[i].ptr, source_tokens->strings[i].ptr, tokens->strings[i].len);
    }
    assert_true(str_is(tokens->strings[32000], "[PAD32000]"));
    assert_true(gguf_find(f, "tokenizer.ggml.add_bos_token") != NULL);
    assert_int_equal(get_u32(f, "tokenizer.ggml.unknown_token_id"), 0);
    gguf_free(source);
    gguf_free(f);
    run_model(path, &models[0], 1);
    unlink(path);

    assert_int_equal(synth("qwen2.5-0.5b", "Q8_0", gpt2, 1, 1, path), PLM_OK);
    assert_int_equal(gguf_open(path, &f), PLM_OK);
    assert_int_equal(gguf_find(f, "tokenizer.ggml.tokens")->count, 151936);
    assert_int_equal(gguf_find(f, "tokenizer.ggml.merges")->count, 50000);
    assert_null(gguf_find(f, "tokenizer.ggml.scores")); /* the GPT-2 vocabulary has none */
    assert_str_key(f, "tokenizer.ggml.model", "gpt2");
    assert_str_key(f, "tokenizer.ggml.pre", "gpt-2");
    assert_int_equal(get_u32(f, "tokenizer.ggml.bos_token_id"), 50256);
    gguf_free(f);
    run_model(path, &models[2], 1);
    unlink(path);
    free(gpt2);
    free(spm);
    free(path);
}

/* ---------------------------------------------------------- bad arguments */

static void expect_arg_error(const char *shape, const char *type, int n_layer, const char *message)
{
    char *path = new_path("bad.gguf");
    assert_int_equal(synth(shape, type, NULL, 1, n_layer, path), PLM_ERR_ARG);
    if (!strstr(plm_last_error(), message))
        fail_msg("message '%s' lacks '%s'", plm_last_error(), message);
    assert_nothing_written(path);
    free(path);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    expect_arg_error("gpt-5", "Q8_0", 1, "unknown shape 'gpt-5'");
    expect_arg_error("gpt-5", "Q8_0", 1, "qwen3-0.6b"); /* the message lists the known shapes */
    expect_arg_error("SmolLM2-135M", "Q8_0", 1, "unknown shape");
    expect_arg_error(NULL, "Q8_0", 1, "unknown shape ''");
    expect_arg_error("smollm2-135m", "Q9_9", 1, "tensor type 'Q9_9'");
    expect_arg_error("smollm2-135m", "Q8_K", 1, "tensor type 'Q8_K'"); /* activations only */
    expect_arg_error("smollm2-135m", "Q8_1", 1, "tensor type 'Q8_1'");
    expect_arg_error("smollm2-135m", "", 1, "tensor type ''");
    expect_arg_error("smollm2-135m", NULL, 1, "tensor type ''");
    expect_arg_error("smollm2-135m", "Q8_0", 31, "smollm2-135m has 30 layers: cannot write 31");
    expect_arg_error("smollm2-135m", "Q8_0", -1, "cannot write -1");
    assert_int_equal(plm_synth(NULL, "x.gguf"), PLM_ERR_ARG);
    struct plm_synth_params params = {.shape = "smollm2-135m", .type = "Q8_0"};
    assert_int_equal(plm_synth(&params, NULL), PLM_ERR_ARG);

    /* An output directory that does not exist: nothing left behind. */
    char *dir = new_path("no-such-dir");
    char path[4200];
    snprintf(path, sizeof path, "%s/model.gguf", dir);
    assert_int_equal(synth("smollm2-135m", "Q8_0", NULL, 1, 1, path), PLM_ERR_IO);
    assert_non_null(strstr(plm_last_error(), "no-such-dir"));
    assert_nothing_written(path);
    free(dir);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_shape_names),
        cmocka_unit_test(test_smollm2_135m),
        cmocka_unit_test(test_smollm2_360m),
        cmocka_unit_test(test_qwen2_5_0_5b),
        cmocka_unit_test(test_llama_3_2_1b),
        cmocka_unit_test(test_qwen3_0_6b),
        cmocka_unit_test(test_matrix_values),
        cmocka_unit_test(test_fallback_file),
        cmocka_unit_test(test_determinism),
        cmocka_unit_test(test_vocab_padded),
        cmocka_unit_test(test_vocab_sizes),
        cmocka_unit_test(test_vocab_malformed),
        cmocka_unit_test(test_real_vocabs),
        cmocka_unit_test(test_bad_arguments),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
