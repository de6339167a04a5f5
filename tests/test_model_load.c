/*
 * Loading a model refuses, with a clear message and the right status, files
 * that are valid GGUF but not a usable model: an unsupported architecture,
 * missing or misshapen tensors, inconsistent or absurd hyperparameters.
 * Each case is a real tiny model rewritten with one thing wrong.
 */
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "pocketlm.h"
#include "tensor/types.h"
#include "test_util.h"
#include "tiny_model.h"

#include <stdio.h>
#include <string.h>

static char valid_path[4096];

static int write_valid_model(void **state)
{
    (void)state;
    struct tiny_model_spec spec = {.arch = "llama", .n_embd = 64, .n_ff = 128, .n_layer = 2, .n_head = 4,
                                   .n_head_kv = 2, .head_dim = 16, .n_ctx_train = 128,
                                   .rope_freq_base = 10000.0f, .norm_eps = 1e-5f,
                                   .weight_type = PLM_TYPE_Q8_0, .seed = 3};
    snprintf(valid_path, sizeof valid_path, "%s", temp_path("valid.gguf"));
    return tiny_model_write(valid_path, &spec);
}

static int remove_valid_model(void **state)
{
    (void)state;
    remove(valid_path);
    return 0;
}

/* What to change when copying the valid model. */
struct variant {
    const char *drop_tensor;  /* leave this tensor out */
    const char *key;          /* replace this key's value ... */
    const char *str_value;    /* ... with a string, or */
    uint32_t u32_value;       /* ... with a u32 */
    const char *shrink_tensor;/* write this tensor with one row fewer */
};

static const char *write_variant(const struct variant *v)
{
    static char path[4096];
    snprintf(path, sizeof path, "%s", temp_path("variant.gguf"));
    struct gguf_file *src;
    assert_int_equal(gguf_open(valid_path, &src), PLM_OK);
    struct gguf_writer *w = gguf_writer_new();
    assert_non_null(w);
    for (uint64_t i = 0; i < src->n_kv; i++)
        assert_int_equal(gguf_writer_copy_kv(w, &src->kv[i]), PLM_OK);
    if (v->key && v->str_value)
        assert_int_equal(gguf_writer_set_str(w, v->key, v->str_value), PLM_OK);
    else if (v->key)
        assert_int_equal(gguf_writer_set_u32(w, v->key, v->u32_value), PLM_OK);
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const struct gguf_tensor *t = &src->tensors[i];
        if (v->drop_tensor && strcmp(t->name, v->drop_tensor) == 0)
            continue;
        int64_t ne[GGUF_MAX_DIMS];
        memcpy(ne, t->ne, sizeof ne);
        if (v->shrink_tensor && strcmp(t->name, v->shrink_tensor) == 0)
            ne[t->n_dims - 1]--;
        assert_int_equal(gguf_writer_add_tensor(w, t->name, t->type, ne, (int)t->n_dims, t->data), PLM_OK);
    }
    assert_int_equal(gguf_writer_write(w, path), PLM_OK);
    gguf_writer_free(w);
    gguf_free(src);
    return path;
}

/* Loading the variant fails with status, and the message contains text. */
static void expect_refused(const struct variant *v, int status, const char *text)
{
    const char *path = write_variant(v);
    plm_model *model = (plm_model *)1;
    int rc = plm_model_load(path, &model);
    if (rc != status || !strstr(plm_last_error(), text))
        fail_msg("expected status %d and '%s', got %d: %s", status, text, rc, plm_last_error());
    assert_null(model);
    assert_null(strchr(plm_last_error(), '\n')); /* one line */
    remove(path);
}

static void test_valid_model_loads(void **state)
{
    (void)state;
    plm_model *model;
    assert_int_equal(plm_model_load(write_variant(&(struct variant){0}), &model), PLM_OK);
    plm_model_free(model);
}

static void test_unsupported_architecture_lists_the_supported(void **state)
{
    (void)state;
    expect_refused(&(struct variant){.key = "general.architecture", .str_value = "gemma2"}, PLM_ERR_UNSUPPORTED,
                   "unsupported architecture 'gemma2' (supported: llama, qwen2, qwen3)");
}

static void test_missing_tensor_is_named(void **state)
{
    (void)state;
    expect_refused(&(struct variant){.drop_tensor = "blk.1.ffn_up.weight"}, PLM_ERR_FORMAT,
                   "missing tensor 'blk.1.ffn_up.weight'");
    expect_refused(&(struct variant){.drop_tensor = "output_norm.weight"}, PLM_ERR_FORMAT,
                   "missing tensor 'output_norm.weight'");
}

static void test_misshapen_tensor_is_named(void **state)
{
    (void)state;
    expect_refused(&(struct variant){.shrink_tensor = "blk.0.attn_k.weight"}, PLM_ERR_FORMAT,
                   "tensor 'blk.0.attn_k.weight' has shape [64, 31, 1, 1], expected [64, 32]");
}

static void test_metadata_that_disagrees_with_the_tensors(void **state)
{
    (void)state;
    /* One more layer than the file holds. */
    expect_refused(&(struct variant){.key = "llama.block_count", .u32_value = 3}, PLM_ERR_FORMAT,
                   "missing tensor 'blk.2.attn_norm.weight'");
    /* Query heads that cannot share the key/value heads evenly. */
    expect_refused(&(struct variant){.key = "llama.attention.head_count_kv", .u32_value = 3}, PLM_ERR_FORMAT,
                   "4 attention heads cannot share 3 key/value heads");
}

/* Absurd sizes are refused from the metadata alone, before any allocation. */
static void test_absurd_sizes_are_refused_up_front(void **state)
{
    (void)state;
    expect_refused(&(struct variant){.key = "llama.block_count", .u32_value = 100000000}, PLM_ERR_LIMIT,
                   "llama.block_count' = 100000000 is outside 1..512");
    expect_refused(&(struct variant){.key = "llama.embedding_length", .u32_value = 0}, PLM_ERR_LIMIT,
                   "llama.embedding_length' = 0");
    expect_refused(&(struct variant){.key = "llama.context_length", .u32_value = 4000000000u}, PLM_ERR_LIMIT,
                   "llama.context_length");
    expect_refused(&(struct variant){.key = "llama.attention.head_count", .u32_value = 1u << 30}, PLM_ERR_LIMIT,
                   "llama.attention.head_count");
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid_model_loads),
        cmocka_unit_test(test_unsupported_architecture_lists_the_supported),
        cmocka_unit_test(test_missing_tensor_is_named),
        cmocka_unit_test(test_misshapen_tensor_is_named),
        cmocka_unit_test(test_metadata_that_disagrees_with_the_tensors),
        cmocka_unit_test(test_absurd_sizes_are_refused_up_front),
    };
    return cmocka_run_group_tests(tests, write_valid_model, remove_valid_model);
}
