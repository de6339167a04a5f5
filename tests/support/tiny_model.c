#include "tiny_model.h"

#include "core/error.h"
#include "format/gguf_writer.h"
#include "tensor/types.h"
#include "test_util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- weights */

/* FNV-1a: a tensor's random stream depends on its name, not its position. */
static uint64_t name_hash(const char *name)
{
    uint64_t hash = 0xcbf29ce484222325ull;
    for (const char *c = name; *c; c++)
        hash = (hash ^ (uint8_t)*c) * 0x100000001b3ull;
    return hash;
}

static struct test_rng tensor_rng(uint64_t seed, const char *name)
{
    struct test_rng rng = {name_hash(name) ^ (seed * 0x9E3779B97F4A7C15ull)};
    rng_next(&rng); /* stir, so nearby seeds do not give nearby first values */
    return rng;
}

/* Appends a tensor of mean + deviation * N(0, 1) values. */
static int add_tensor(struct tiny_model *model, const char *name, int64_t ne0, int64_t ne1,
                      int type, float mean, float deviation)
{
    struct tiny_tensor *tensor = &model->tensors[model->n_tensors];
    snprintf(tensor->name, sizeof tensor->name, "%s", name);
    tensor->n_dims = ne1 > 1 ? 2 : 1;
    tensor->ne[0] = ne0;
    tensor->ne[1] = ne1;
    tensor->type = type;
    tensor->values = malloc((size_t)(ne0 * ne1) * sizeof(float));
    if (!tensor->values)
        return plm_fail(PLM_ERR_NOMEM, "tiny model: out of memory for %s", name);
    model->n_tensors++;

    struct test_rng rng = tensor_rng(model->spec.seed, name);
    for (int64_t i = 0; i < ne0 * ne1; i++)
        tensor->values[i] = mean + deviation * rng_normal(&rng);
    return PLM_OK;
}

/* A weight matrix y = W x with n_out rows of n_in. The 1/sqrt(n_in) deviation
 * keeps every output element of unit size when x has unit-size elements, so
 * activations stay O(1) through the layers and the logits are O(1) too. */
static int add_matrix(struct tiny_model *model, const char *name, int64_t n_in, int64_t n_out)
{
    return add_tensor(model, name, n_in, n_out, model->spec.weight_type, 0.0f,
                      1.0f / sqrtf((float)n_in));
}

/* Norm weights near 1, so the norms scale by something but do not flip signs. */
static int add_norm(struct tiny_model *model, const char *name, int64_t n)
{
    return add_tensor(model, name, n, 1, PLM_TYPE_F32, 1.0f, 0.1f);
}

/* Llama 3 divides each rotary frequency by a factor between 1 (fast pairs) and 8
 * (slow pairs); random factors in that range make a pair/factor mix-up visible. */
static int add_rope_freqs(struct tiny_model *model, int n_pairs)
{
    int status = add_tensor(model, "rope_freqs.weight", n_pairs, 1, PLM_TYPE_F32, 0.0f, 0.0f);
    if (status != PLM_OK)
        return status;
    struct tiny_tensor *tensor = &model->tensors[model->n_tensors - 1];
    struct test_rng rng = tensor_rng(model->spec.seed, tensor->name);
    for (int i = 0; i < n_pairs; i++)
        tensor->values[i] = 1.0f + 7.0f * rng_uniform(&rng);
    return PLM_OK;
}

static bool is_multiple(int64_t n, int block)
{
    return n > 0 && n % block == 0;
}

static int check_spec(const struct tiny_model_spec *spec)
{
    if (!spec->arch || (strcmp(spec->arch, "llama") && strcmp(spec->arch, "qwen2") &&
                        strcmp(spec->arch, "qwen3")))
        return plm_fail(PLM_ERR_ARG, "tiny model: unknown architecture");
    if (spec->n_embd <= 0 || spec->n_ff <= 0 || spec->n_layer < 0 || spec->n_head <= 0 ||
        spec->n_head_kv <= 0 || spec->n_head % spec->n_head_kv != 0 || spec->head_dim <= 0 ||
        spec->head_dim % 2 != 0 || spec->n_ctx_train <= 0)
        return plm_fail(PLM_ERR_ARG, "tiny model: inconsistent sizes");
    const struct plm_type_traits *traits = plm_type_traits(spec->weight_type);
    if (!traits)
        return plm_fail(PLM_ERR_ARG, "tiny model: unsupported weight type %d", spec->weight_type);
    /* The row lengths of all the matrices: n_embd (token_embd, q, k, v, gate, up,
     * output), q_dim (attn_output) and n_ff (ffn_down). */
    if (!is_multiple(spec->n_embd, traits->block_size) ||
        !is_multiple((int64_t)spec->n_head * spec->head_dim, traits->block_size) ||
        !is_multiple(spec->n_ff, traits->block_size))
        return plm_fail(PLM_ERR_ARG, "tiny model: row lengths must be multiples of %d for %s",
                        traits->block_size, traits->name);
    return PLM_OK;
}

enum tensor_kind { KIND_MATRIX, KIND_NORM, KIND_BIAS };

struct layer_tensor {
    const char *suffix; /* name after "blk.N." */
    enum tensor_kind kind;
    int64_t ne0, ne1;   /* for matrices: n_in, n_out */
    bool present;
};

static int add_layer(struct tiny_model *model, int layer)
{
    const struct tiny_model_spec *spec = &model->spec;
    int64_t n_embd = spec->n_embd, n_ff = spec->n_ff, head_dim = spec->head_dim;
    int64_t q_dim = spec->n_head * head_dim;
    int64_t kv_dim = spec->n_head_kv * head_dim;
    bool qwen2 = strcmp(spec->arch, "qwen2") == 0;
    bool qwen3 = strcmp(spec->arch, "qwen3") == 0;
    const struct layer_tensor tensors[] = {
        {"attn_norm.weight", KIND_NORM, n_embd, 1, true},
        {"attn_q.weight", KIND_MATRIX, n_embd, q_dim, true},
        {"attn_k.weight", KIND_MATRIX, n_embd, kv_dim, true},
        {"attn_v.weight", KIND_MATRIX, n_embd, kv_dim, true},
        {"attn_q.bias", KIND_BIAS, q_dim, 1, qwen2},
        {"attn_k.bias", KIND_BIAS, kv_dim, 1, qwen2},
        {"attn_v.bias", KIND_BIAS, kv_dim, 1, qwen2},
        {"attn_q_norm.weight", KIND_NORM, head_dim, 1, qwen3},
        {"attn_k_norm.weight", KIND_NORM, head_dim, 1, qwen3},
        {"attn_output.weight", KIND_MATRIX, q_dim, n_embd, true},
        {"ffn_norm.weight", KIND_NORM, n_embd, 1, true},
        {"ffn_gate.weight", KIND_MATRIX, n_embd, n_ff, true},
        {"ffn_up.weight", KIND_MATRIX, n_embd, n_ff, true},
        {"ffn_down.weight", KIND_MATRIX, n_ff, n_embd, true},
    };

    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
        const struct layer_tensor *t = &tensors[i];
        char name[64];
        snprintf(name, sizeof name, "blk.%d.%s", layer, t->suffix);
        int status = PLM_OK;
        if (!t->present)
            continue;
        if (t->kind == KIND_MATRIX)
            status = add_matrix(model, name, t->ne0, t->ne1);
        else if (t->kind == KIND_NORM)
            status = add_norm(model, name, t->ne0);
        else /* biases of unit-ish size shift q/k/v visibly, so a dropped bias shows */
            status = add_tensor(model, name, t->ne0, 1, PLM_TYPE_F32, 0.0f, 0.5f);
        if (status != PLM_OK)
            return status;
    }
    return PLM_OK;
}

int tiny_model_build(const struct tiny_model_spec *spec, struct tiny_model *model)
{
    memset(model, 0, sizeof *model);
    int status = check_spec(spec);
    if (status != PLM_OK)
        return status;
    model->spec = *spec;

    int max_tensors = 4 + 14 * spec->n_layer;
    model->tensors = calloc((size_t)max_tensors, sizeof *model->tensors);
    if (!model->tensors)
        return plm_fail(PLM_ERR_NOMEM, "tiny model: out of memory");

    status = add_matrix(model, "token_embd.weight", spec->n_embd, TINY_N_VOCAB);
    if (status == PLM_OK)
        status = add_norm(model, "output_norm.weight", spec->n_embd);
    if (status == PLM_OK && !spec->tied_output)
        status = add_matrix(model, "output.weight", spec->n_embd, TINY_N_VOCAB);
    if (status == PLM_OK && spec->rope_freqs)
        status = add_rope_freqs(model, spec->head_dim / 2);
    for (int layer = 0; status == PLM_OK && layer < spec->n_layer; layer++)
        status = add_layer(model, layer);

    if (status != PLM_OK)
        tiny_model_free(model);
    return status;
}

void tiny_model_free(struct tiny_model *model)
{
    for (int i = 0; i < model->n_tensors; i++)
        free(model->tensors[i].values);
    free(model->tensors);
    memset(model, 0, sizeof *model);
}

struct tiny_tensor *tiny_model_tensor(struct tiny_model *model, const char *name)
{
    for (int i = 0; i < model->n_tensors; i++)
        if (strcmp(model->tensors[i].name, name) == 0)
            return &model->tensors[i];
    return NULL;
}

/* ---------------------------------------------------------- vocabulary */

/* SentencePiece token types (llama.cpp's numbering). */
enum { TOKEN_NORMAL = 1, TOKEN_UNKNOWN = 2, TOKEN_CONTROL = 3, TOKEN_BYTE = 6 };

struct tiny_vocab {
    char text[TINY_N_VOCAB][16];
    const char *texts[TINY_N_VOCAB];
    float scores[TINY_N_VOCAB];
    int32_t types[TINY_N_VOCAB];
};

static void build_vocab(struct tiny_vocab *vocab)
{
    static const char *const pairs[] = {"th", "he", "in", "er", "an", "re", "on", "at",
                                        "en", "nd", "ti", "es", "or", "te", "of"};
    static const char *const specials[] = {"<unk>", "<s>", "</s>"};
    static const int32_t special_types[] = {TOKEN_UNKNOWN, TOKEN_CONTROL, TOKEN_CONTROL};
    int n = 0;
    for (int i = 0; i < 3; i++, n++) {
        snprintf(vocab->text[n], sizeof vocab->text[n], "%s", specials[i]);
        vocab->scores[n] = 0.0f;
        vocab->types[n] = special_types[i];
    }
    for (int byte = 0; byte < 256; byte++, n++) {
        snprintf(vocab->text[n], sizeof vocab->text[n], "<0x%02X>", byte);
        vocab->scores[n] = 0.0f;
        vocab->types[n] = TOKEN_BYTE;
    }
    /* "▁" (U+2581) marks a word start; earlier (higher-scored) pieces merge first. */
    for (int letter = 0; letter < 26; letter++, n++) {
        snprintf(vocab->text[n], sizeof vocab->text[n], "\xE2\x96\x81%c", 'a' + letter);
        vocab->scores[n] = -(float)(n - 259);
        vocab->types[n] = TOKEN_NORMAL;
    }
    for (size_t i = 0; i < sizeof pairs / sizeof pairs[0]; i++, n++) {
        snprintf(vocab->text[n], sizeof vocab->text[n], "%s", pairs[i]);
        vocab->scores[n] = -(float)(n - 259);
        vocab->types[n] = TOKEN_NORMAL;
    }
    for (int i = 0; i < TINY_N_VOCAB; i++)
        vocab->texts[i] = vocab->text[i];
}

/* --------------------------------------------------------------- saving */

static int set_metadata(struct gguf_writer *w, const struct tiny_model_spec *spec,
                        const struct tiny_vocab *vocab)
{
    const struct {
        const char *suffix; /* key after "{arch}." */
        int value;
    } sizes[] = {
        {"context_length", spec->n_ctx_train},
        {"embedding_length", spec->n_embd},
        {"block_count", spec->n_layer},
        {"feed_forward_length", spec->n_ff},
        {"attention.head_count", spec->n_head},
        {"attention.head_count_kv", spec->n_head_kv},
        {"rope.dimension_count", spec->head_dim},
        {"attention.key_length", spec->head_dim},
        {"attention.value_length", spec->head_dim},
        {"vocab_size", TINY_N_VOCAB},
    };
    char key[96], name[64];
    snprintf(name, sizeof name, "tiny-%s", spec->arch);
    int status = gguf_writer_set_str(w, "general.architecture", spec->arch);
    if (status == PLM_OK)
        status = gguf_writer_set_str(w, "general.name", name);
    for (size_t i = 0; status == PLM_OK && i < sizeof sizes / sizeof sizes[0]; i++) {
        snprintf(key, sizeof key, "%s.%s", spec->arch, sizes[i].suffix);
        status = gguf_writer_set_u32(w, key, (uint32_t)sizes[i].value);
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", spec->arch);
    if (status == PLM_OK)
        status = gguf_writer_set_f32(w, key, spec->norm_eps);
    snprintf(key, sizeof key, "%s.rope.freq_base", spec->arch);
    if (status == PLM_OK)
        status = gguf_writer_set_f32(w, key, spec->rope_freq_base);

    if (status == PLM_OK)
        status = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (status == PLM_OK)
        status = gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", vocab->texts, NULL,
                                           TINY_N_VOCAB);
    if (status == PLM_OK)
        status = gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32,
                                       vocab->scores, TINY_N_VOCAB);
    if (status == PLM_OK)
        status = gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32,
                                       vocab->types, TINY_N_VOCAB);
    if (status == PLM_OK)
        status = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (status == PLM_OK)
        status = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (status == PLM_OK)
        status = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (status == PLM_OK)
        status = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (status == PLM_OK)
        status = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    return status;
}

/* The tensor's bytes in its file type, row by row. */
static void *encode_tensor(const struct tiny_tensor *tensor)
{
    size_t row_bytes = plm_row_bytes(tensor->type, tensor->ne[0]);
    uint8_t *bytes = malloc(row_bytes * (size_t)tensor->ne[1]);
    if (!bytes)
        return NULL;
    for (int64_t row = 0; row < tensor->ne[1]; row++)
        plm_quantize_row(tensor->type, tensor->values + row * tensor->ne[0],
                         bytes + (size_t)row * row_bytes, tensor->ne[0]);
    return bytes;
}

int tiny_model_save(const struct tiny_model *model, const char *path)
{
    struct gguf_writer *writer = gguf_writer_new();
    struct tiny_vocab *vocab = malloc(sizeof *vocab);
    void **encoded = calloc((size_t)model->n_tensors + 1, sizeof *encoded);
    int status = writer && vocab && encoded ? PLM_OK
                                            : plm_fail(PLM_ERR_NOMEM, "tiny model: out of memory");
    if (status == PLM_OK) {
        build_vocab(vocab);
        status = set_metadata(writer, &model->spec, vocab);
    }
    /* The writer borrows tensor data until it has written the file. */
    for (int i = 0; status == PLM_OK && i < model->n_tensors; i++) {
        const struct tiny_tensor *tensor = &model->tensors[i];
        encoded[i] = encode_tensor(tensor);
        if (!encoded[i])
            status = plm_fail(PLM_ERR_NOMEM, "tiny model: out of memory for %s", tensor->name);
        else
            status = gguf_writer_add_tensor(writer, tensor->name, tensor->type, tensor->ne,
                                            tensor->n_dims, encoded[i]);
    }
    if (status == PLM_OK)
        status = gguf_writer_write(writer, path);

    for (int i = 0; encoded && i < model->n_tensors; i++)
        free(encoded[i]);
    free(encoded);
    free(vocab);
    gguf_writer_free(writer);
    return status;
}

int tiny_model_write(const char *path, const struct tiny_model_spec *spec)
{
    struct tiny_model model;
    int status = tiny_model_build(spec, &model);
    if (status != PLM_OK)
        return status;
    status = tiny_model_save(&model, path);
    tiny_model_free(&model);
    return status;
}
