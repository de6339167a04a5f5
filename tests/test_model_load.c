/*
 * Loading a model refuses, with a clear message and the right status, files
 * that are valid GGUF but not a usable model: an unsupported architecture,
 * missing or misshapen tensors, inconsistent or absurd hyperparameters.
 * Each case is a real tiny model rewritten with one thing wrong. A loaded
 * model reports the memory it keeps besides the weights (host_bytes).
 */
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "pocketlm.h"
#include "tensor/types.h"
#include "test_util.h"
#include "tiny_model.h"

#include <malloc.h>
#include <stdio.h>
#include <stdlib.h>
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
    int extra_tokens;         /* append this many unused tokens (and embedding rows) */
};

/* The vocabulary arrays of src with n_extra unused "[PAD<id>]" tokens appended,
 * as llama.cpp's converter pads a vocabulary. */
static void set_padded_vocab(struct gguf_writer *w, const struct gguf_file *src, int n_extra)
{
    const struct gguf_kv *tokens = gguf_find(src, "tokenizer.ggml.tokens");
    const struct gguf_kv *scores = gguf_find(src, "tokenizer.ggml.scores");
    const struct gguf_kv *types = gguf_find(src, "tokenizer.ggml.token_type");
    enum { TEXT_MAX = 32 };
    size_t n = (size_t)tokens->count + (size_t)n_extra;
    char *texts = malloc(n * TEXT_MAX);
    const char **text_ptrs = malloc(n * sizeof *text_ptrs);
    float *score_values = malloc(n * sizeof *score_values);
    int32_t *type_values = malloc(n * sizeof *type_values);
    assert_true(texts && text_ptrs && score_values && type_values);
    for (size_t id = 0; id < n; id++) {
        char *text = texts + id * TEXT_MAX;
        int64_t type = 5; /* unused */
        score_values[id] = -1000.0f;
        if (id < tokens->count) {
            snprintf(text, TEXT_MAX, "%.*s", (int)tokens->strings[id].len, tokens->strings[id].ptr);
            assert_true(gguf_array_f32(scores, id, &score_values[id]) && gguf_array_i64(types, id, &type));
        } else {
            snprintf(text, TEXT_MAX, "[PAD%zu]", id);
        }
        text_ptrs[id] = text;
        type_values[id] = (int32_t)type;
    }
    assert_int_equal(gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", text_ptrs, NULL, n), PLM_OK);
    assert_int_equal(gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, score_values, n), PLM_OK);
    assert_int_equal(gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, type_values, n), PLM_OK);
    free(texts), free(text_ptrs), free(score_values), free(type_values);
}

/* A copy of a vocabulary-sized matrix's data with n_extra zero rows after it. */
static void *padded_rows(const struct gguf_tensor *t, int n_extra)
{
    size_t row_bytes = plm_row_bytes(t->type, t->ne[0]);
    uint8_t *data = calloc(1, t->nbytes + (size_t)n_extra * row_bytes);
    assert_non_null(data);
    memcpy(data, t->data, t->nbytes);
    return data;
}

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
    if (v->extra_tokens)
        set_padded_vocab(w, src, v->extra_tokens);
    void *padded[2] = {NULL, NULL}; /* token_embd and output rows for the extra tokens */
    int n_padded = 0;
    for (uint64_t i = 0; i < src->n_tensors; i++) {
        const struct gguf_tensor *t = &src->tensors[i];
        if (v->drop_tensor && strcmp(t->name, v->drop_tensor) == 0)
            continue;
        int64_t ne[GGUF_MAX_DIMS];
        memcpy(ne, t->ne, sizeof ne);
        if (v->shrink_tensor && strcmp(t->name, v->shrink_tensor) == 0)
            ne[t->n_dims - 1]--;
        const void *data = t->data;
        if (v->extra_tokens && (strcmp(t->name, "token_embd.weight") == 0 || strcmp(t->name, "output.weight") == 0)) {
            data = padded[n_padded++] = padded_rows(t, v->extra_tokens);
            ne[1] += v->extra_tokens;
        }
        assert_int_equal(gguf_writer_add_tensor(w, t->name, t->type, ne, (int)t->n_dims, data), PLM_OK);
    }
    assert_int_equal(gguf_writer_write(w, path), PLM_OK);
    gguf_writer_free(w);
    gguf_free(src);
    free(padded[0]), free(padded[1]);
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
    const char *path = write_variant(&(struct variant){0});
    assert_int_equal(plm_model_load(path, &model), PLM_OK);
    remove(path);
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

/* Bytes malloc has handed out and not taken back (glibc's counters), or 0 where
 * they are unavailable or unused (AddressSanitizer brings its own malloc). */
static size_t heap_in_use(void)
{
#if defined(__GLIBC__) && !defined(__SANITIZE_ADDRESS__)
    struct mallinfo2 info = mallinfo2();
    return info.uordblks + info.hblkhd;
#else
    return 0;
#endif
}

/* host_bytes is the loader's heap, counted where it allocates, plus the file's
 * metadata: it grows with the vocabulary and matches what malloc reports.
 * Packing is off here: host_bytes would count the padding of the packed
 * copies the first session makes (their bulk takes the place of mapped pages
 * and counts with the weights), which malloc has not seen at load;
 * tests/test_pack_weights.c checks that count. */
/* The cost of a token, counted by hand for the valid model (untied, so the
 * embedding is one row): per layer q, k, v, o and the three feed-forward
 * matrices, then the output; attention reads every head's keys and values. */
static void test_token_cost_counts_every_product(void **state)
{
    (void)state;
    plm_model *model;
    assert_int_equal(plm_model_load(valid_path, &model), PLM_OK);
    struct plm_token_cost cost;
    plm_model_token_cost(model, 9, &cost);
    const uint64_t layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128, output = 64 * TINY_N_VOCAB;
    const uint64_t attention = 2 * 2 * 2 * 4 * 16 * 10; /* 2 products, 2 layers, 4 heads, 10 positions */
    assert_int_equal(cost.flops, 2 * (2 * layer + output) + attention);
    assert_int_equal(cost.output_flops, 2 * output);
    assert_int_equal(cost.kv_bytes, 2 * 2 * 10 * 32 * sizeof(float));
    assert_true(cost.quantized);
    plm_model_free(model);
}

static void test_host_bytes_count_what_the_model_keeps(void **state)
{
    (void)state;
    setenv("POCKETLM_REPACK", "0", 1);
    const int extra_tokens[] = {0, 2000, 20000};
    uint64_t previous = 0;
    for (size_t i = 0; i < sizeof extra_tokens / sizeof extra_tokens[0]; i++) {
        const char *path = write_variant(&(struct variant){.extra_tokens = extra_tokens[i]});
        struct gguf_file *file;
        assert_int_equal(gguf_open(path, &file), PLM_OK);
        uint64_t metadata = file->data_offset, n_allocations = file->n_kv + file->n_tensors;
        gguf_free(file);

        size_t heap_before = heap_in_use();
        plm_model *model;
        assert_int_equal(plm_model_load(path, &model), PLM_OK);
        size_t heap = heap_in_use() - heap_before;
        remove(path);
        struct plm_model_info info;
        plm_model_get_info(model, &info);
        assert_int_equal(info.n_vocab, TINY_N_VOCAB + extra_tokens[i]);
        uint64_t counted_heap = info.host_bytes - metadata;
        print_message("%d tokens: host %llu bytes (%llu heap, %llu metadata); malloc reports %zu\n", info.n_vocab,
                      (unsigned long long)info.host_bytes, (unsigned long long)counted_heap,
                      (unsigned long long)metadata, heap);
        /* Each allocation costs malloc up to 16 bytes of header and rounding, and
         * a large one is rounded to pages. */
        if (heap > 0) {
            assert_true(heap >= counted_heap);
            assert_true(heap <= counted_heap + 32 * (n_allocations + 64) + 8 * 4096);
        }
        /* Every token costs at least its text, length, score and type in the
         * file and its entry in the vocabulary. */
        if (i > 0)
            assert_true(info.host_bytes - previous >= 32 * (uint64_t)(extra_tokens[i] - extra_tokens[i - 1]));
        previous = info.host_bytes;
        plm_model_free(model);
        remove(path);
    }
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
        cmocka_unit_test(test_host_bytes_count_what_the_model_keeps),
        cmocka_unit_test(test_token_cost_counts_every_product),
    };
    return cmocka_run_group_tests(tests, write_valid_model, remove_valid_model);
}
