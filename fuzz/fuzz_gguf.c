/*
 * The GGUF reader on arbitrary bytes: parse, then use everything the parse
 * returned (every key through the typed getters, every string and tensor byte),
 * build the vocabulary when there is one, and load the bytes as a model, which
 * covers the model loader's checks of absurd metadata (PLM_MAX_* in model.h);
 * a model that loads and is small runs one token.
 */
#include "fuzz_common.h"

#include "format/gguf.h"
#include "pocketlm.h"
#include "tokenizer/vocab.h"

#include <stdlib.h>

static void use_kv(const struct gguf_file *file, const struct gguf_kv *kv)
{
    if (gguf_find(file, kv->key) == NULL)
        fuzz_fail("gguf_find misses a key the parse returned");
    uint32_t u32;
    uint64_t u64;
    int32_t i32;
    float f32;
    bool flag;
    struct gguf_str str;
    gguf_get_u32(file, kv->key, &u32);
    gguf_get_u64(file, kv->key, &u64);
    gguf_get_i32(file, kv->key, &i32);
    gguf_get_f32(file, kv->key, &f32);
    gguf_get_bool(file, kv->key, &flag);
    if (gguf_get_str(file, kv->key, &str))
        fuzz_touch(str.ptr, str.len);
    if (kv->strings)
        for (uint64_t i = 0; i < kv->count; i++)
            fuzz_touch(kv->strings[i].ptr, kv->strings[i].len);
    else if (kv->data)
        fuzz_touch(kv->data, kv->count * gguf_value_size(kv->elem_type));
    /* Two past the end, to check the range test. */
    for (uint64_t i = 0; i < kv->count + 2 && i < 64; i++) {
        int64_t i64;
        gguf_array_f32(kv, i, &f32);
        gguf_array_i64(kv, i, &i64);
    }
}

static void use_vocab(const struct gguf_file *file)
{
    struct plm_vocab *vocab;
    if (vocab_load(file, &vocab) != PLM_OK)
        return;
    int32_t *tokens;
    size_t n_tokens;
    static const char text[] = "Hello world! <s> \xE2\x96\x81\xC3\xA9\xFF";
    if (vocab_encode(vocab, text, sizeof text - 1, true, true, &tokens, &n_tokens) == PLM_OK) {
        char piece[64];
        for (size_t i = 0; i < n_tokens; i++)
            if (vocab_token_to_piece(vocab, tokens[i], piece, sizeof piece, true) < 0)
                fuzz_fail("an encoded token does not decode");
        free(tokens);
    }
    vocab_free(vocab);
}

/* A model that loads runs one token, if its session is small: the forward pass
 * must cope with whatever weights passed the loader's checks. The memory estimate
 * must grow with the context (an overflow would show as a smaller figure). */
static void run_model(plm_model *model)
{
    struct plm_model_info info;
    plm_model_get_info(model, &info);
    struct plm_session_params small = {.n_ctx = 4, .n_threads = 1, .kv_type = PLM_KV_F32};
    struct plm_session_params full = small;
    full.n_ctx = 0;
    uint64_t small_bytes = plm_session_memory_needed(model, &small);
    if (plm_session_memory_needed(model, &full) < small_bytes && info.n_ctx_train >= small.n_ctx)
        fuzz_fail("session memory estimate shrinks as the context grows");
    if (small_bytes > (64u << 20) || info.weight_bytes > (64u << 20))
        return;
    plm_session *session;
    if (plm_session_new(model, &small, &session) != PLM_OK)
        return;
    int32_t token = 0;
    plm_decode(session, &token, 1, NULL);
    plm_session_free(session);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    struct gguf_file *file;
    if (gguf_parse(data, size, &file) == PLM_OK) {
        for (uint64_t i = 0; i < file->n_kv; i++)
            use_kv(file, &file->kv[i]);
        for (uint64_t i = 0; i < file->n_tensors; i++) {
            const struct gguf_tensor *t = &file->tensors[i];
            if (gguf_find_tensor(file, t->name) == NULL)
                fuzz_fail("gguf_find_tensor misses a tensor the parse returned");
            fuzz_touch(t->data, t->nbytes);
        }
        use_vocab(file);
        gguf_free(file);
    }

    plm_model *model;
    if (plm_model_load(fuzz_memfd_path(data, size), &model) == PLM_OK) {
        run_model(model);
        plm_model_free(model);
    }
    return 0;
}
