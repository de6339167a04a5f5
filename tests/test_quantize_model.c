/* plm_quantize: types, presets, overrides, fallbacks, importance, target size, bad input. */
#include "test_util.h"

#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "pocketlm.h"
#include "quant/fit_budget.h"
#include "quant/presets.h"
#include "quant/quantize.h"
#include "tensor/types.h"
#include "tiny_model.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* ------------------------------------------------------------------ helpers */

/* A llama model whose rows are whole k-quant blocks (256), so nothing falls back. */
static struct tiny_model_spec k_spec(void)
{
    return (struct tiny_model_spec){
        .arch = "llama", .n_embd = 256, .n_ff = 256, .n_layer = 2, .n_head = 4, .n_head_kv = 2,
        .head_dim = 64, .n_ctx_train = 64, .rope_freq_base = 10000.0f, .norm_eps = 1e-5f,
        .weight_type = PLM_TYPE_F32, .seed = 11,
    };
}

/* A small model whose rows are 64 (and 96 for ffn_down): blocks of 32 only. */
static struct tiny_model_spec small_spec(void)
{
    return (struct tiny_model_spec){
        .arch = "llama", .n_embd = 64, .n_ff = 96, .n_layer = 1, .n_head = 4, .n_head_kv = 2,
        .head_dim = 16, .n_ctx_train = 64, .rope_freq_base = 10000.0f, .norm_eps = 1e-5f,
        .tied_output = true, .weight_type = PLM_TYPE_F32, .seed = 5,
    };
}

static char *write_model(const char *tag, const struct tiny_model_spec *spec)
{
    char *path = strdup(temp_path(tag));
    assert_non_null(path);
    assert_int_equal(tiny_model_write(path, spec), PLM_OK);
    return path;
}

/* Notes collected from plm_quantize. */
struct notes {
    char text[64][512];
    int count;
};

static void collect_note(void *user, const char *note)
{
    struct notes *n = user;
    if (n->count < 64)
        snprintf(n->text[n->count++], sizeof n->text[0], "%s", note);
}

static int count_notes_with(const struct notes *n, const char *needle)
{
    int count = 0;
    for (int i = 0; i < n->count; i++)
        count += strstr(n->text[i], needle) != NULL;
    return count;
}

/* Quantizes in to a fresh temporary file; returns its path (malloc'd). */
static char *quantize_to(const char *in, const struct plm_quantize_params *params)
{
    char *out = strdup(temp_path("q.gguf"));
    assert_non_null(out);
    int rc = plm_quantize(in, out, params);
    if (rc != PLM_OK)
        fail_msg("plm_quantize: %s", plm_last_error());
    return out;
}

static char *quantize_with(const char *in, const char *type, const char *const *overrides, int n_overrides)
{
    struct plm_quantize_params p = {.type = type, .tensor_types = overrides, .n_tensor_types = n_overrides,
                                    .n_threads = 2};
    return quantize_to(in, &p);
}

static int tensor_type(const char *path, const char *name)
{
    struct gguf_file *f;
    assert_int_equal(gguf_open(path, &f), PLM_OK);
    const struct gguf_tensor *t = gguf_find_tensor(f, name);
    if (!t)
        fail_msg("%s has no tensor %s", path, name);
    int type = t->type;
    gguf_free(f);
    return type;
}

static void assert_tensor_type(const char *path, const char *name, int type)
{
    int got = tensor_type(path, name);
    if (got != type)
        fail_msg("%s: %s, expected %s", name, plm_type_name(got), plm_type_name(type));
}

static void remove_and_free(char *path)
{
    remove(path);
    free(path);
}

static const int32_t prompt[] = {1, 40, 90, 140, 200, 7};
#define N_PROMPT 6

/* The logits of every prompt position. */
static float *model_logits(const char *path)
{
    plm_model *model;
    if (plm_model_load(path, &model) != PLM_OK)
        fail_msg("loading %s: %s", path, plm_last_error());
    struct plm_session_params sp = {.n_ctx = 16, .n_threads = 1};
    plm_session *session;
    assert_int_equal(plm_session_new(model, &sp, &session), PLM_OK);
    float *logits = malloc(N_PROMPT * TINY_N_VOCAB * sizeof *logits);
    assert_non_null(logits);
    assert_int_equal(plm_decode(session, prompt, N_PROMPT, logits), PLM_OK);
    plm_session_free(session);
    plm_model_free(model);
    return logits;
}

/* Root-mean-square difference relative to the reference's RMS. */
static double relative_error(const float *got, const float *ref, int n)
{
    double diff = 0.0, norm = 0.0;
    for (int i = 0; i < n; i++) {
        diff += ((double)got[i] - ref[i]) * ((double)got[i] - ref[i]);
        norm += (double)ref[i] * ref[i];
    }
    return sqrt(diff / norm);
}

static bool same_bytes(const char *a, const char *b)
{
    size_t na, nb;
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    assert_non_null(fa);
    assert_non_null(fb);
    bool same = true;
    char ba[4096], bb[4096];
    do {
        na = fread(ba, 1, sizeof ba, fa);
        nb = fread(bb, 1, sizeof bb, fb);
        same = na == nb && memcmp(ba, bb, na) == 0;
    } while (same && na > 0);
    fclose(fa);
    fclose(fb);
    return same;
}

static uint64_t file_size(const char *path)
{
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    return (uint64_t)st.st_size;
}

/* ----------------------------------------------------- every type round-trips */

struct type_tolerance {
    int type;
    double max_error; /* relative RMS error of the logits */
};

static void test_every_type_round_trips(void **state)
{
    (void)state;
    struct tiny_model_spec spec = k_spec();
    char *f32 = write_model("f32.gguf", &spec);
    float *ref = model_logits(f32);
    /* A random-weight model amplifies errors (weights and activations are both
     * quantized): measured errors are about two thirds of these, roughly
     * doubling per bit removed. */
    const struct type_tolerance types[] = {
        {PLM_TYPE_F32, 0.0},    {PLM_TYPE_F16, 0.002}, {PLM_TYPE_BF16, 0.01}, {PLM_TYPE_Q8_0, 0.04},
        {PLM_TYPE_Q6_K, 0.1},   {PLM_TYPE_Q5_K, 0.2},  {PLM_TYPE_Q5_1, 0.2},  {PLM_TYPE_Q5_0, 0.22},
        {PLM_TYPE_Q4_K, 0.36},  {PLM_TYPE_Q4_1, 0.4},  {PLM_TYPE_Q4_0, 0.4},  {PLM_TYPE_Q3_K, 0.75},
        {PLM_TYPE_Q2_K, 1.2},
    };
    double error_of[PLM_TYPE_COUNT] = {0};
    for (size_t i = 0; i < sizeof types / sizeof types[0]; i++) {
        char every[32];
        snprintf(every, sizeof every, "*=%s", plm_type_name(types[i].type));
        const char *overrides[] = {every};
        char *out = quantize_with(f32, "F32", overrides, 1);
        const char *matrices[] = {"token_embd.weight", "output.weight", "blk.0.attn_q.weight",
                                  "blk.1.attn_v.weight", "blk.1.ffn_down.weight"};
        for (int m = 0; m < 5; m++)
            assert_tensor_type(out, matrices[m], types[i].type);
        assert_tensor_type(out, "blk.0.attn_norm.weight", PLM_TYPE_F32);
        float *logits = model_logits(out);
        double error = relative_error(logits, ref, N_PROMPT * TINY_N_VOCAB);
        print_message("%-5s relative logit error %.5f\n", plm_type_name(types[i].type), error);
        if (error > types[i].max_error)
            fail_msg("%s: relative logit error %g over %g", plm_type_name(types[i].type), error,
                     types[i].max_error);
        error_of[types[i].type] = error;
        free(logits);
        remove_and_free(out);
    }
    /* More bits, less error. */
    assert_true(error_of[PLM_TYPE_F16] < error_of[PLM_TYPE_Q8_0]);
    assert_true(error_of[PLM_TYPE_Q8_0] < error_of[PLM_TYPE_Q6_K]);
    assert_true(error_of[PLM_TYPE_Q6_K] < error_of[PLM_TYPE_Q5_K]);
    assert_true(error_of[PLM_TYPE_Q5_K] < error_of[PLM_TYPE_Q4_K]);
    assert_true(error_of[PLM_TYPE_Q4_K] < error_of[PLM_TYPE_Q3_K]);
    assert_true(error_of[PLM_TYPE_Q3_K] < error_of[PLM_TYPE_Q2_K]);
    free(ref);
    remove_and_free(f32);
}

/* A quantized input is read (dequantized) and re-encoded: Q8_0 -> Q4_0 is close to F32 -> Q4_0. */
static void test_quantized_input(void **state)
{
    (void)state;
    struct tiny_model_spec spec = k_spec();
    char *f32 = write_model("f32.gguf", &spec);
    const char *every_q8[] = {"*=Q8_0"}, *every_q4[] = {"*=Q4_0"};
    char *q8 = quantize_with(f32, "F32", every_q8, 1);
    char *q4_from_q8 = quantize_with(q8, "F32", every_q4, 1);
    char *q4 = quantize_with(f32, "F32", every_q4, 1);
    assert_tensor_type(q4_from_q8, "blk.0.ffn_up.weight", PLM_TYPE_Q4_0);
    float *ref = model_logits(f32), *direct = model_logits(q4), *twice = model_logits(q4_from_q8);
    double e_direct = relative_error(direct, ref, N_PROMPT * TINY_N_VOCAB);
    double e_twice = relative_error(twice, ref, N_PROMPT * TINY_N_VOCAB);
    assert_true(e_twice < 1.5 * e_direct);
    free(ref);
    free(direct);
    free(twice);
    remove_and_free(q8);
    remove_and_free(q4_from_q8);
    remove_and_free(q4);
    remove_and_free(f32);
}

/* ------------------------------------------------------------------ presets */

static int preset_type(const char *preset, const char *name, int n_layer, bool tied)
{
    const struct quant_preset *p = quant_preset_find(preset);
    assert_non_null(p);
    int layer = -1;
    sscanf(name, "blk.%d.", &layer);
    struct matrix_place place = {name, layer, n_layer, tied};
    return quant_preset_matrix_type(p, &place);
}

static void test_preset_rules(void **state)
{
    (void)state;
    /* Q4_K_M with 8 layers: use_more_bits picks layers 0, 3, 6 and 7. */
    const bool more_bits[8] = {true, false, false, true, false, false, true, true};
    for (int il = 0; il < 8; il++) {
        char v[32], down[32], q[32];
        snprintf(v, sizeof v, "blk.%d.attn_v.weight", il);
        snprintf(down, sizeof down, "blk.%d.ffn_down.weight", il);
        snprintf(q, sizeof q, "blk.%d.attn_q.weight", il);
        int want = more_bits[il] ? PLM_TYPE_Q6_K : PLM_TYPE_Q4_K;
        assert_int_equal(preset_type("Q4_K_M", v, 8, false), want);
        assert_int_equal(preset_type("Q4_K_M", down, 8, false), want);
        assert_int_equal(preset_type("Q4_K_M", q, 8, false), PLM_TYPE_Q4_K);
        /* Q3_K_M: Q5_K attn_v in the first two layers, Q4_K after. */
        assert_int_equal(preset_type("Q3_K_M", v, 8, false), il < 2 ? PLM_TYPE_Q5_K : PLM_TYPE_Q4_K);
        assert_int_equal(preset_type("Q3_K_M", q, 8, false), PLM_TYPE_Q3_K);
        /* Q4_K_S: Q5_K attn_v in the first four layers, ffn_down in the first eighth. */
        assert_int_equal(preset_type("Q4_K_S", v, 8, false), il < 4 ? PLM_TYPE_Q5_K : PLM_TYPE_Q4_K);
        assert_int_equal(preset_type("q4_k_s", down, 8, false), il < 1 ? PLM_TYPE_Q5_K : PLM_TYPE_Q4_K);
        /* Single types: everything the same. */
        assert_int_equal(preset_type("Q4_K", v, 8, false), PLM_TYPE_Q4_K);
        assert_int_equal(preset_type("Q2_K", down, 8, false), PLM_TYPE_Q3_K);
        assert_int_equal(preset_type("Q2_K", q, 8, false), PLM_TYPE_Q2_K);
    }
    /* Output and embedding; a tied embedding follows the output rule. */
    assert_int_equal(preset_type("Q4_K_M", "output.weight", 8, false), PLM_TYPE_Q6_K);
    assert_int_equal(preset_type("Q4_K_M", "token_embd.weight", 8, false), PLM_TYPE_Q4_K);
    assert_int_equal(preset_type("Q4_K_M", "token_embd.weight", 8, true), PLM_TYPE_Q6_K);
    assert_int_equal(preset_type("Q4_0", "output.weight", 8, false), PLM_TYPE_Q6_K);
    assert_int_equal(preset_type("Q4_0", "token_embd.weight", 8, false), PLM_TYPE_Q4_0);
    assert_int_equal(preset_type("Q8_0", "output.weight", 8, false), PLM_TYPE_Q8_0);
    assert_int_equal(preset_type("F16", "output.weight", 8, false), PLM_TYPE_F16);
    assert_int_equal(preset_type("Q4_K", "output.weight", 8, false), PLM_TYPE_Q4_K);
    assert_int_equal(preset_type("Q3_K_L", "blk.5.attn_output.weight", 8, false), PLM_TYPE_Q5_K);
    /* Names only look like layer tensors when they are. */
    assert_int_equal(preset_type("Q4_K_M", "blkx.attn_v.weight", 8, false), PLM_TYPE_Q4_K);
    assert_int_equal(preset_type("Q4_K_M", "blk.7.attn_v.weight.extra", 8, false), PLM_TYPE_Q4_K);
    assert_null(quant_preset_find("Q4_K_X"));
    assert_null(quant_preset_find(""));
    assert_int_equal(quant_preset_file_type(quant_preset_find("Q4_K_M")), 15);
    assert_int_equal(quant_preset_file_type(quant_preset_find("BF16")), 32);
}

static void test_preset_names(void **state)
{
    (void)state;
    const char *wanted[] = {"Q2_K", "Q3_K_S", "Q3_K_M", "Q3_K_L", "Q4_K_S", "Q4_K_M", "Q5_K_S", "Q5_K_M", "Q6_K",
                            "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1", "F16", "BF16", "F32", "Q3_K", "Q4_K", "Q5_K"};
    int n = 0;
    const char *name, *description;
    while ((name = plm_quantize_preset_name(n, &description)) != NULL) {
        assert_true(strlen(description) > 5);
        n++;
    }
    assert_int_equal(n, (int)(sizeof wanted / sizeof wanted[0]));
    for (int i = 0; i < n; i++)
        assert_string_equal(plm_quantize_preset_name(i, NULL), wanted[i]);
    assert_null(plm_quantize_preset_name(-1, NULL));
}

static void test_preset_file(void **state)
{
    (void)state;
    struct tiny_model_spec spec = k_spec();
    char *f32 = write_model("f32.gguf", &spec);
    char *out = quantize_with(f32, "Q4_K_M", NULL, 0);
    /* Two layers: use_more_bits picks layer 1 only. */
    assert_tensor_type(out, "token_embd.weight", PLM_TYPE_Q4_K);
    assert_tensor_type(out, "output.weight", PLM_TYPE_Q6_K);
    assert_tensor_type(out, "blk.0.attn_v.weight", PLM_TYPE_Q4_K);
    assert_tensor_type(out, "blk.1.attn_v.weight", PLM_TYPE_Q6_K);
    assert_tensor_type(out, "blk.0.ffn_down.weight", PLM_TYPE_Q4_K);
    assert_tensor_type(out, "blk.1.ffn_down.weight", PLM_TYPE_Q6_K);
    assert_tensor_type(out, "blk.1.attn_q.weight", PLM_TYPE_Q4_K);
    assert_tensor_type(out, "output_norm.weight", PLM_TYPE_F32);
    struct gguf_file *f;
    assert_int_equal(gguf_open(out, &f), PLM_OK);
    uint32_t file_type = 0, version = 0;
    assert_true(gguf_get_u32(f, "general.file_type", &file_type));
    assert_int_equal(file_type, 15);
    assert_true(gguf_get_u32(f, "general.quantization_version", &version));
    assert_int_equal(version, 2);
    assert_non_null(gguf_find(f, "tokenizer.ggml.tokens")); /* metadata copied */
    assert_non_null(gguf_find(f, "llama.block_count"));
    gguf_free(f);
    remove_and_free(out);

    /* Tied output: the embedding is the output and gets its type. */
    spec.tied_output = true;
    char *tied = write_model("tied.gguf", &spec);
    out = quantize_with(tied, "Q4_K_M", NULL, 0);
    assert_tensor_type(out, "token_embd.weight", PLM_TYPE_Q6_K);
    float *logits = model_logits(out);
    free(logits);
    remove_and_free(out);
    remove_and_free(tied);
    remove_and_free(f32);
}

/* ---------------------------------------------------------------- overrides */

static void test_overrides_last_match_wins(void **state)
{
    (void)state;
    struct tiny_model_spec spec = k_spec();
    char *f32 = write_model("f32.gguf", &spec);
    const char *overrides[] = {"blk.*.ffn_*=Q8_0", "blk.1.ffn_down.weight=q4_0", "*attn_[qk].weight=F16",
                               "output.weight=BF16"};
    char *out = quantize_with(f32, "Q4_K", overrides, 4);
    assert_tensor_type(out, "blk.0.ffn_down.weight", PLM_TYPE_Q8_0);
    assert_tensor_type(out, "blk.0.ffn_gate.weight", PLM_TYPE_Q8_0);
    assert_tensor_type(out, "blk.1.ffn_down.weight", PLM_TYPE_Q4_0);
    assert_tensor_type(out, "blk.1.attn_q.weight", PLM_TYPE_F16);
    assert_tensor_type(out, "blk.1.attn_k.weight", PLM_TYPE_F16);
    assert_tensor_type(out, "blk.1.attn_v.weight", PLM_TYPE_Q4_K);
    assert_tensor_type(out, "output.weight", PLM_TYPE_BF16);
    /* Patterns apply to matrices only: norms stay F32 even under "*". */
    assert_tensor_type(out, "blk.0.ffn_norm.weight", PLM_TYPE_F32);
    remove_and_free(out);

    /* The order decides: the broad pattern last wins everywhere. */
    const char *reversed[] = {"blk.1.ffn_down.weight=Q4_0", "blk.*.ffn_*=Q8_0"};
    out = quantize_with(f32, "Q4_K", reversed, 2);
    assert_tensor_type(out, "blk.1.ffn_down.weight", PLM_TYPE_Q8_0);
    remove_and_free(out);
    remove_and_free(f32);
}

static void test_bad_arguments(void **state)
{
    (void)state;
    struct tiny_model_spec spec = small_spec();
    char *f32 = write_model("f32.gguf", &spec);
    char *out = strdup(temp_path("never.gguf"));
    const char *bad_overrides[] = {"noequals", "=Q4_0", "blk.*=", "x=Q4_K_M", "x=Q9_0", "blk.[0.weight=Q4_0",
                                   "blk.0\\=Q4_0", "x=Q8_1"};
    for (size_t i = 0; i < sizeof bad_overrides / sizeof bad_overrides[0]; i++) {
        struct plm_quantize_params p = {.type = "Q8_0", .tensor_types = &bad_overrides[i], .n_tensor_types = 1};
        assert_int_equal(plm_quantize(f32, out, &p), PLM_ERR_ARG);
        assert_true(strstr(plm_last_error(), "tensor type") != NULL);
    }
    const char *bad_types[] = {"Q4_K_X", "", "q9", "IQ4_NL"};
    for (size_t i = 0; i < sizeof bad_types / sizeof bad_types[0]; i++) {
        struct plm_quantize_params p = {.type = bad_types[i]};
        assert_int_equal(plm_quantize(f32, out, &p), PLM_ERR_ARG);
        assert_true(strstr(plm_last_error(), "Q4_K_M") != NULL); /* lists what is known */
    }
    struct plm_quantize_params none = {0};
    assert_int_equal(plm_quantize(f32, out, &none), PLM_ERR_ARG);
    struct plm_quantize_params target_without_imatrix = {.target_bytes = 100000};
    assert_int_equal(plm_quantize(f32, out, &target_without_imatrix), PLM_ERR_ARG);
    struct plm_quantize_params negative_threads = {.type = "Q8_0", .n_threads = -1};
    assert_int_equal(plm_quantize(f32, out, &negative_threads), PLM_ERR_ARG);
    assert_int_equal(plm_quantize(NULL, out, &none), PLM_ERR_ARG);
    assert_int_equal(access(out, F_OK), -1);
    /* A bracket set with a leading ']' is a valid pattern. */
    const char *odd[] = {"blk.[]0].attn_q.weight=F16", "blk.0.attn_[!q]*=Q8_0"};
    char *ok = quantize_with(f32, "Q4_0", odd, 2);
    assert_tensor_type(ok, "blk.0.attn_q.weight", PLM_TYPE_F16);
    assert_tensor_type(ok, "blk.0.attn_k.weight", PLM_TYPE_Q8_0);
    remove_and_free(ok);
    free(out);
    remove_and_free(f32);
}

/* ---------------------------------------------------------------- fallbacks */

static void test_fallback_to_blocks_of_32(void **state)
{
    (void)state;
    struct tiny_model_spec spec = small_spec(); /* rows of 64 and 96 */
    char *f32 = write_model("f32.gguf", &spec);
    const int asked[] = {PLM_TYPE_Q2_K, PLM_TYPE_Q3_K, PLM_TYPE_Q4_K, PLM_TYPE_Q5_K, PLM_TYPE_Q6_K};
    const int stored[] = {PLM_TYPE_Q4_0, PLM_TYPE_Q4_0, PLM_TYPE_Q5_0, PLM_TYPE_Q5_1, PLM_TYPE_Q8_0};
    for (int i = 0; i < 5; i++) {
        char every[32];
        snprintf(every, sizeof every, "*=%s", plm_type_name(asked[i]));
        const char *overrides[] = {every};
        struct notes notes = {0};
        struct plm_quantize_params p = {.type = "F32", .tensor_types = overrides, .n_tensor_types = 1,
                                        .on_note = collect_note, .user = &notes};
        char *out = quantize_to(f32, &p);
        assert_tensor_type(out, "blk.0.attn_q.weight", stored[i]);
        assert_tensor_type(out, "blk.0.ffn_down.weight", stored[i]);
        assert_tensor_type(out, "token_embd.weight", stored[i]);
        /* One note per row length: 64 (token_embd and six layer matrices) and 96 (ffn_down). */
        char expect64[128], expect96[128];
        snprintf(expect64, sizeof expect64, "64 columns are not a multiple of 256; %s -> %s",
                 plm_type_name(asked[i]), plm_type_name(stored[i]));
        snprintf(expect96, sizeof expect96, "blk.0.ffn_down.weight: 96 columns are not a multiple of 256; %s -> %s",
                 plm_type_name(asked[i]), plm_type_name(stored[i]));
        assert_int_equal(count_notes_with(&notes, expect64), 1);
        assert_int_equal(count_notes_with(&notes, "(and 6 more like it)"), 1);
        assert_int_equal(count_notes_with(&notes, expect96), 1);
        assert_int_equal(count_notes_with(&notes, "columns are not"), 2);
        float *logits = model_logits(out);
        for (int k = 0; k < N_PROMPT * TINY_N_VOCAB; k++)
            assert_true(isfinite(logits[k]));
        free(logits);
        remove_and_free(out);
    }
    remove_and_free(f32);
}

static void test_fallback_to_f16(void **state)
{
    (void)state;
    struct tiny_model_spec spec = small_spec();
    spec.n_ff = 172; /* stories260K's hidden size: not a multiple of 32 */
    char *f32 = write_model("f32.gguf", &spec);
    struct notes notes = {0};
    struct plm_quantize_params p = {.type = "Q4_K_M", .on_note = collect_note, .user = &notes};
    char *out = quantize_to(f32, &p);
    assert_tensor_type(out, "blk.0.ffn_down.weight", PLM_TYPE_F16);
    assert_tensor_type(out, "blk.0.ffn_up.weight", PLM_TYPE_Q5_0);
    assert_tensor_type(out, "token_embd.weight", PLM_TYPE_Q8_0); /* tied: Q6_K -> Q8_0 */
    assert_int_equal(count_notes_with(&notes, "blk.0.ffn_down.weight: 172 columns are not a multiple of 256; Q6_K -> F16"), 1);
    assert_int_equal(count_notes_with(&notes, "Q6_K -> Q8_0"), 1);
    remove_and_free(out);

    const char *legacy[] = {"*=Q4_1"};
    notes.count = 0;
    p = (struct plm_quantize_params){.type = "F32", .tensor_types = legacy, .n_tensor_types = 1,
                                     .on_note = collect_note, .user = &notes};
    out = quantize_to(f32, &p);
    assert_tensor_type(out, "blk.0.ffn_down.weight", PLM_TYPE_F16);
    assert_tensor_type(out, "blk.0.ffn_gate.weight", PLM_TYPE_Q4_1);
    assert_int_equal(count_notes_with(&notes, "172 columns are not a multiple of 32; Q4_1 -> F16"), 1);
    float *ref = model_logits(f32), *logits = model_logits(out);
    assert_true(relative_error(logits, ref, N_PROMPT * TINY_N_VOCAB) < 0.4);
    free(ref);
    free(logits);
    remove_and_free(out);
    remove_and_free(f32);
}

/* -------------------------------------------------------------- determinism */

static void test_deterministic_for_any_thread_count(void **state)
{
    (void)state;
    struct tiny_model_spec spec = k_spec();
    char *f32 = write_model("f32.gguf", &spec);
    const char *types[] = {"Q4_K_M", "Q5_0"};
    for (int i = 0; i < 2; i++) {
        struct plm_quantize_params one = {.type = types[i], .n_threads = 1};
        struct plm_quantize_params three = {.type = types[i], .n_threads = 3};
        char *a = quantize_to(f32, &one), *b = quantize_to(f32, &three), *c = quantize_to(f32, &three);
        assert_true(same_bytes(a, b));
        assert_true(same_bytes(b, c));
        remove_and_free(a);
        remove_and_free(b);
        remove_and_free(c);
    }
    remove_and_free(f32);
}

/* ------------------------------------------------------------------ imatrix */

/* An importance matrix for every matrix of the model at model_path:
 * importance(channel) as in_sum2 with counts 10, and, when n_types > 0, the
 * sensitivity kld(tensor index, type index) of each candidate type. */
struct imatrix_spec {
    float (*importance)(int64_t channel);
    const char *const *types;
    int n_types;
    double (*kld)(int matrix, int type);
};

static void write_imatrix(const char *model_path, const char *path, const struct imatrix_spec *spec)
{
    struct gguf_file *model;
    assert_int_equal(gguf_open(model_path, &model), PLM_OK);
    struct gguf_writer *w = gguf_writer_new();
    assert_int_equal(gguf_writer_set_str(w, "general.type", "imatrix"), PLM_OK);
    if (spec->n_types > 0)
        assert_int_equal(gguf_writer_set_str_array(w, "pocketlm.sensitivity.types", spec->types, NULL,
                                                   (uint64_t)spec->n_types), PLM_OK);
    float *buffers[3 * 64];
    int n_buffers = 0, matrix = 0;
    static const float counts = 10.0f;
    for (uint64_t i = 0; i < model->n_tensors; i++) {
        const struct gguf_tensor *t = &model->tensors[i];
        if (t->n_dims != 2)
            continue;
        char name[160];
        float *sum2 = malloc((size_t)t->ne[0] * sizeof *sum2);
        for (int64_t c = 0; c < t->ne[0]; c++)
            sum2[c] = spec->importance(c) * counts;
        buffers[n_buffers++] = sum2;
        snprintf(name, sizeof name, "%s.in_sum2", t->name);
        assert_int_equal(gguf_writer_add_tensor(w, name, PLM_TYPE_F32, &t->ne[0], 1, sum2), PLM_OK);
        snprintf(name, sizeof name, "%s.counts", t->name);
        const int64_t one = 1;
        assert_int_equal(gguf_writer_add_tensor(w, name, PLM_TYPE_F32, &one, 1, &counts), PLM_OK);
        if (spec->n_types > 0) {
            float *kld = malloc((size_t)spec->n_types * sizeof *kld);
            for (int j = 0; j < spec->n_types; j++)
                kld[j] = (float)spec->kld(matrix, j);
            buffers[n_buffers++] = kld;
            const int64_t n = spec->n_types;
            snprintf(name, sizeof name, "%s.kld", t->name);
            assert_int_equal(gguf_writer_add_tensor(w, name, PLM_TYPE_F32, &n, 1, kld), PLM_OK);
        }
        matrix++;
    }
    assert_int_equal(gguf_writer_write(w, path), PLM_OK);
    gguf_writer_free(w);
    for (int i = 0; i < n_buffers; i++)
        free(buffers[i]);
    gguf_free(model);
}

/* Every eighth input channel matters a thousand times more than the others. */
static float skewed_importance(int64_t channel) { return channel % 8 == 0 ? 100.0f : 0.1f; }

/* sum over rows and channels of importance * (quantized - original)^2 */
static double weighted_error(const char *original, const char *quantized, const char *name)
{
    struct gguf_file *a, *b;
    assert_int_equal(gguf_open(original, &a), PLM_OK);
    assert_int_equal(gguf_open(quantized, &b), PLM_OK);
    const struct gguf_tensor *ta = gguf_find_tensor(a, name), *tb = gguf_find_tensor(b, name);
    assert_non_null(ta);
    assert_non_null(tb);
    const int64_t n = ta->ne[0];
    float *row = malloc((size_t)n * sizeof *row);
    double error = 0.0;
    for (int64_t r = 0; r < ta->ne[1]; r++) {
        plm_dequantize_row(tb->type, (const uint8_t *)tb->data + r * plm_row_bytes(tb->type, n), row, n);
        const float *x = (const float *)ta->data + r * n;
        for (int64_t c = 0; c < n; c++)
            error += skewed_importance(c) * ((double)row[c] - x[c]) * ((double)row[c] - x[c]);
    }
    free(row);
    gguf_free(a);
    gguf_free(b);
    return error;
}

static void test_imatrix_lowers_weighted_error(void **state)
{
    (void)state;
    struct tiny_model_spec spec = k_spec();
    char *f32 = write_model("f32.gguf", &spec);
    char *imatrix = strdup(temp_path("imatrix.gguf"));
    struct imatrix_spec im = {.importance = skewed_importance};
    write_imatrix(f32, imatrix, &im);
    const char *types[] = {"Q4_K", "Q3_K", "Q4_0", "Q5_1"};
    for (int i = 0; i < 4; i++) {
        struct plm_quantize_params plain = {.type = types[i]};
        struct plm_quantize_params weighted = {.type = types[i], .imatrix_path = imatrix};
        char *a = quantize_to(f32, &plain), *b = quantize_to(f32, &weighted);
        assert_false(same_bytes(a, b));
        const char *names[] = {"blk.0.attn_q.weight", "blk.1.ffn_down.weight", "token_embd.weight"};
        for (int k = 0; k < 3; k++) {
            double e_plain = weighted_error(f32, a, names[k]), e_weighted = weighted_error(f32, b, names[k]);
            print_message("%s %s: weighted error %.4f without, %.4f with the imatrix\n", types[i], names[k],
                          e_plain, e_weighted);
            assert_true(e_weighted < 0.9 * e_plain);
        }
        remove_and_free(a);
        remove_and_free(b);
    }
    /* An imatrix that is not one is refused. */
    struct plm_quantize_params wrong = {.type = "Q4_K", .imatrix_path = f32};
    char *out = strdup(temp_path("never.gguf"));
    assert_int_equal(plm_quantize(f32, out, &wrong), PLM_ERR_FORMAT);
    assert_int_equal(access(out, F_OK), -1);
    free(out);
    remove_and_free(imatrix);
    remove_and_free(f32);
}

/* -------------------------------------------------------------- target size */

static float flat_importance(int64_t channel)
{
    (void)channel;
    return 1.0f;
}

/* A made-up sensitivity table: fewer bits, more loss; some matrices far more
 * sensitive than others, so the best assignment is not uniform. Q2_K falls
 * back to Q4_0 on rows of 64 (same bytes), so it must never beat Q4_0 there. */
static const char *const candidate_names[] = {"Q2_K", "Q4_0", "Q8_0", "F16"};
#define N_CANDIDATES 4

static double made_up_kld(int matrix, int type)
{
    static const double base[N_CANDIDATES] = {0.09, 0.05, 0.004, 0.0001};
    double weight = 1.0 + (double)((matrix * 7) % 5) * (matrix % 2 ? 3.0 : 0.5);
    return base[type] * weight;
}

static uint64_t align32(uint64_t n) { return (n + 31) / 32 * 32; }

/* The best summed KLD over every assignment that fits `budget` bytes of
 * matrix data, by enumeration. bytes[m][t], kld[m][t]. */
static double brute_force(int n, const uint64_t bytes[][N_CANDIDATES], const double kld[][N_CANDIDATES],
                          uint64_t budget)
{
    double best = INFINITY;
    int choice[16] = {0};
    for (;;) {
        uint64_t total = 0;
        double loss = 0.0;
        for (int m = 0; m < n; m++) {
            total += bytes[m][choice[m]];
            loss += kld[m][choice[m]];
        }
        if (total <= budget && loss < best)
            best = loss;
        int m = 0;
        while (m < n && ++choice[m] == N_CANDIDATES)
            choice[m++] = 0;
        if (m == n)
            return best;
    }
}

static void test_target_size_is_optimal(void **state)
{
    (void)state;
    struct tiny_model_spec spec = small_spec();
    char *raw = write_model("raw.gguf", &spec);
    /* Through quantize once, so the input already has the keys quantize sets:
     * the output's header is then the input's, whose size the test knows. */
    char *f32 = quantize_with(raw, "F32", NULL, 0);
    char *imatrix = strdup(temp_path("imatrix.gguf"));
    struct imatrix_spec im = {flat_importance, candidate_names, N_CANDIDATES, made_up_kld};
    write_imatrix(f32, imatrix, &im);

    struct gguf_file *in;
    assert_int_equal(gguf_open(f32, &in), PLM_OK);
    int n = 0;
    uint64_t fixed = in->data_offset;
    uint64_t bytes[16][N_CANDIDATES];
    double kld[16][N_CANDIDATES];
    const char *matrix_names[16];
    for (uint64_t i = 0; i < in->n_tensors; i++) {
        const struct gguf_tensor *t = &in->tensors[i];
        if (t->n_dims != 2) {
            fixed += align32(t->nbytes);
            continue;
        }
        for (int j = 0; j < N_CANDIDATES; j++) {
            int type = plm_type_from_name(candidate_names[j]);
            int stored = plm_row_bytes(type, t->ne[0]) ? type : PLM_TYPE_Q4_0; /* Q2_K on rows of 64/96 */
            bytes[n][j] = align32(plm_row_bytes(stored, t->ne[0]) * (uint64_t)t->ne[1]);
            kld[n][j] = (float)made_up_kld(n, j);
        }
        matrix_names[n++] = t->name;
    }
    assert_int_equal(n, 8);
    uint64_t smallest = fixed, largest = fixed;
    for (int m = 0; m < n; m++) {
        smallest += bytes[m][1];
        largest += bytes[m][3];
    }
    for (int step = 0; step <= 10; step++) {
        uint64_t target = smallest + (largest - smallest) * (uint64_t)step / 10;
        struct notes notes = {0};
        struct plm_quantize_params p = {.target_bytes = target, .imatrix_path = imatrix, .n_threads = 2,
                                        .on_note = collect_note, .user = &notes};
        char *out = quantize_to(f32, &p);
        assert_true(file_size(out) <= target);
        double loss = 0.0;
        for (int m = 0; m < n; m++) {
            int type = tensor_type(out, matrix_names[m]);
            double best = INFINITY; /* the least KLD among the candidates stored this way */
            for (int j = 0; j < N_CANDIDATES; j++) {
                int candidate = plm_type_from_name(candidate_names[j]);
                int stored = candidate == PLM_TYPE_Q2_K ? PLM_TYPE_Q4_0 : candidate;
                if (stored == type && kld[m][j] < best)
                    best = kld[m][j];
            }
            assert_true(isfinite(best));
            loss += best;
        }
        double optimum = brute_force(n, bytes, kld, target - fixed);
        print_message("target %llu: loss %.6f, optimum %.6f, file %llu\n", (unsigned long long)target, loss,
                      optimum, (unsigned long long)file_size(out));
        assert_true(fabs(loss - optimum) < 1e-6);
        assert_int_equal(count_notes_with(&notes, "predicted KLD"), 1);
        assert_int_equal(count_notes_with(&notes, "kld "), n);
        remove_and_free(out);
    }
    gguf_free(in);

    /* An override stays fixed; the rest is still chosen. */
    const char *fixed_q[] = {"blk.0.attn_q.weight=Q8_0"};
    struct plm_quantize_params with_override = {.target_bytes = largest, .imatrix_path = imatrix,
                                                .tensor_types = fixed_q, .n_tensor_types = 1};
    char *out = quantize_to(f32, &with_override);
    assert_tensor_type(out, "blk.0.attn_q.weight", PLM_TYPE_Q8_0);
    assert_tensor_type(out, "blk.0.attn_k.weight", PLM_TYPE_F16);
    remove_and_free(out);

    /* Too small for even the smallest types: an error, no file. */
    out = strdup(temp_path("never.gguf"));
    struct plm_quantize_params too_small = {.target_bytes = smallest - 1, .imatrix_path = imatrix};
    assert_int_equal(plm_quantize(f32, out, &too_small), PLM_ERR_LIMIT);
    assert_true(strstr(plm_last_error(), "over the target") != NULL);
    assert_int_equal(access(out, F_OK), -1);

    /* An importance matrix without sensitivities cannot choose. */
    struct imatrix_spec plain = {.importance = flat_importance};
    write_imatrix(f32, imatrix, &plain);
    struct plm_quantize_params no_sensitivity = {.target_bytes = largest, .imatrix_path = imatrix};
    assert_int_equal(plm_quantize(f32, out, &no_sensitivity), PLM_ERR_UNSUPPORTED);
    assert_true(strstr(plm_last_error(), "pocketlm calibrate --sensitivity") != NULL);
    assert_int_equal(access(out, F_OK), -1);
    free(out);
    remove_and_free(imatrix);
    remove_and_free(f32);
    remove_and_free(raw);
}

/* fit_budget against enumeration on random small instances, and on a large
 * one whose frontiers must be thinned: still within the budget. */
static void test_fit_budget(void **state)
{
    (void)state;
    struct test_rng rng = {12345};
    enum { N = 6, C = N_CANDIDATES };
    for (int trial = 0; trial < 200; trial++) {
        uint64_t bytes[N][C];
        double kld[N][C];
        uint64_t min_total = 0, max_total = 0;
        for (int i = 0; i < N; i++) {
            uint64_t b = 0;
            double l = 1.0 + rng_uniform(&rng);
            uint64_t lo = UINT64_MAX, hi = 0;
            for (int j = 0; j < C; j++) {
                b += 1 + rng_next(&rng) % 1000;
                l *= 0.2 + 0.7 * rng_uniform(&rng);
                /* Shuffle sometimes, so an option may be dominated. */
                bytes[i][j] = trial % 3 == 0 ? 1 + rng_next(&rng) % 3000 : b;
                kld[i][j] = l;
                lo = bytes[i][j] < lo ? bytes[i][j] : lo;
                hi = bytes[i][j] > hi ? bytes[i][j] : hi;
            }
            min_total += lo;
            max_total += hi;
        }
        uint64_t budget = min_total + rng_next(&rng) % (max_total - min_total + 1);
        int chosen[N];
        assert_int_equal(fit_budget(N, C, &bytes[0][0], &kld[0][0], budget, chosen), PLM_OK);
        uint64_t total = 0;
        double loss = 0.0;
        for (int i = 0; i < N; i++) {
            assert_true(chosen[i] >= 0 && chosen[i] < C);
            total += bytes[i][chosen[i]];
            loss += kld[i][chosen[i]];
        }
        assert_true(total <= budget);
        assert_true(fabs(loss - brute_force(N, bytes, kld, budget)) < 1e-12);
        int again[N];
        assert_int_equal(fit_budget(N, C, &bytes[0][0], &kld[0][0], min_total - 1, again), PLM_ERR_LIMIT);
    }

    /* 300 items of 8 options with distinct sizes: frontiers overflow. */
    enum { BIG = 300, BC = 8 };
    uint64_t *bytes = malloc(BIG * BC * sizeof *bytes);
    double *loss = malloc(BIG * BC * sizeof *loss);
    int *chosen = malloc(BIG * sizeof *chosen), *uniform = malloc(BIG * sizeof *uniform);
    uint64_t min_total = 0, mid_total = 0;
    for (int i = 0; i < BIG; i++) {
        uint64_t size = 1000 + rng_next(&rng) % 100000;
        for (int j = 0; j < BC; j++) {
            bytes[i * BC + j] = size * (uint64_t)(j + 2) / 4;
            loss[i * BC + j] = (double)size * pow(0.5, j) * (0.5 + rng_uniform(&rng));
        }
        min_total += bytes[i * BC];
        mid_total += bytes[i * BC + 4];
    }
    assert_int_equal(fit_budget(BIG, BC, bytes, loss, mid_total, chosen), PLM_OK);
    uint64_t total = 0;
    double best = 0.0, plain = 0.0;
    for (int i = 0; i < BIG; i++) {
        total += bytes[i * BC + chosen[i]];
        best += loss[i * BC + chosen[i]];
        plain += loss[i * BC + 4];
    }
    assert_true(total <= mid_total);
    assert_true(best <= plain); /* at least as good as option 4 everywhere, which fits exactly */
    assert_true(total > min_total);
    free(bytes);
    free(loss);
    free(chosen);
    free(uniform);
}

/* ------------------------------------------------------------ hostile input */

static void test_malformed_inputs(void **state)
{
    (void)state;
    struct tiny_model_spec spec = small_spec();
    char *f32 = write_model("f32.gguf", &spec);
    char *out = strdup(temp_path("never.gguf"));
    struct plm_quantize_params p = {.type = "Q4_0"};

    assert_int_equal(plm_quantize("/nonexistent/model.gguf", out, &p), PLM_ERR_IO);
    assert_true(strstr(plm_last_error(), "/nonexistent/model.gguf") != NULL);

    /* Truncations of a valid file at many points: errors, never crashes. */
    FILE *f = fopen(f32, "rb");
    assert_non_null(f);
    size_t size = (size_t)file_size(f32);
    uint8_t *bytes = malloc(size);
    assert_int_equal(fread(bytes, 1, size, f), size);
    fclose(f);
    char *cut = strdup(temp_path("cut.gguf"));
    for (size_t len = 0; len < size; len += 1 + len / 3) {
        f = fopen(cut, "wb");
        fwrite(bytes, 1, len, f);
        fclose(f);
        int rc = plm_quantize(cut, out, &p);
        assert_true(rc == PLM_ERR_FORMAT || rc == PLM_ERR_IO);
        assert_int_equal(access(out, F_OK), -1);
    }
    /* Garbage. */
    f = fopen(cut, "wb");
    fputs("not a gguf file at all, just text", f);
    fclose(f);
    assert_int_equal(plm_quantize(cut, out, &p), PLM_ERR_FORMAT);
    remove_and_free(cut);
    free(bytes);

    /* A GGUF without tensors (a vocabulary file). */
    char *empty = strdup(temp_path("empty.gguf"));
    struct gguf_writer *w = gguf_writer_new();
    assert_int_equal(gguf_writer_set_str(w, "general.architecture", "llama"), PLM_OK);
    assert_int_equal(gguf_writer_write(w, empty), PLM_OK);
    gguf_writer_free(w);
    assert_int_equal(plm_quantize(empty, out, &p), PLM_ERR_FORMAT);
    assert_true(strstr(plm_last_error(), "no tensors") != NULL);
    remove_and_free(empty);

    /* An output nobody can write: an error, and no partial file left behind. */
    assert_int_equal(plm_quantize(f32, "/nonexistent/dir/out.gguf", &p), PLM_ERR_IO);
    assert_int_equal(access("/nonexistent/dir/out.gguf.partial", F_OK), -1);
    assert_int_equal(access(out, F_OK), -1);
    free(out);
    remove_and_free(f32);
}

static void test_storage_and_file_types(void **state)
{
    (void)state;
    /* 576 (SmolLM2-135M's width) is a multiple of 32, not of 256. */
    assert_int_equal(plm_quant_storage_type(PLM_TYPE_Q2_K, 576), PLM_TYPE_Q4_0);
    assert_int_equal(plm_quant_storage_type(PLM_TYPE_Q3_K, 576), PLM_TYPE_Q4_0);
    assert_int_equal(plm_quant_storage_type(PLM_TYPE_Q4_K, 576), PLM_TYPE_Q5_0);
    assert_int_equal(plm_quant_storage_type(PLM_TYPE_Q5_K, 576), PLM_TYPE_Q5_1);
    assert_int_equal(plm_quant_storage_type(PLM_TYPE_Q6_K, 576), PLM_TYPE_Q8_0);
    const int kept[] = {PLM_TYPE_F32, PLM_TYPE_F16, PLM_TYPE_BF16, PLM_TYPE_Q8_0, PLM_TYPE_Q4_0,
                        PLM_TYPE_Q4_1, PLM_TYPE_Q5_0, PLM_TYPE_Q5_1};
    for (size_t i = 0; i < sizeof kept / sizeof kept[0]; i++)
        assert_int_equal(plm_quant_storage_type(kept[i], 576), kept[i]);
    /* Whole k-quant blocks: kept. */
    for (int type = PLM_TYPE_Q2_K; type <= PLM_TYPE_Q6_K; type++)
        assert_int_equal(plm_quant_storage_type(type, 1536), type);
    /* Not even whole 32-blocks: F16, as llama.cpp does. */
    assert_int_equal(plm_quant_storage_type(PLM_TYPE_Q4_K, 48), PLM_TYPE_F16);
    assert_int_equal(plm_quant_storage_type(PLM_TYPE_Q8_0, 48), PLM_TYPE_F16);
    assert_int_equal(plm_quant_storage_type(PLM_TYPE_F32, 48), PLM_TYPE_F32);
    assert_int_equal(plm_quant_storage_type(PLM_TYPE_BF16, 1), PLM_TYPE_BF16);

    /* llama.cpp's file types. */
    assert_int_equal(quant_file_type_of(PLM_TYPE_F32), 0);
    assert_int_equal(quant_file_type_of(PLM_TYPE_F16), 1);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q4_0), 2);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q4_1), 3);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q8_0), 7);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q5_0), 8);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q5_1), 9);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q2_K), 10);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q3_K), 11);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q4_K), 14);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q5_K), 16);
    assert_int_equal(quant_file_type_of(PLM_TYPE_Q6_K), 18);
    assert_int_equal(quant_file_type_of(PLM_TYPE_BF16), 32);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_storage_and_file_types),
        cmocka_unit_test(test_every_type_round_trips),
        cmocka_unit_test(test_quantized_input),
        cmocka_unit_test(test_preset_rules),
        cmocka_unit_test(test_preset_names),
        cmocka_unit_test(test_preset_file),
        cmocka_unit_test(test_overrides_last_match_wins),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_fallback_to_blocks_of_32),
        cmocka_unit_test(test_fallback_to_f16),
        cmocka_unit_test(test_deterministic_for_any_thread_count),
        cmocka_unit_test(test_imatrix_lowers_weighted_error),
        cmocka_unit_test(test_target_size_is_optimal),
        cmocka_unit_test(test_fit_budget),
        cmocka_unit_test(test_malformed_inputs),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
