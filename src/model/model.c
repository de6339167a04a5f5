/*
 * Loading a model from GGUF: architecture, hyperparameters, tokenizer, and
 * every weight checked for presence, type and exact shape before use, so the
 * forward pass can trust them.
 */
#include "model/model.h"

#include "core/error.h"
#include "tensor/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct arch_desc {
    const char *name;
    enum plm_arch arch;
    bool rope_neox;
};

static const struct arch_desc supported_archs[] = {
    {"llama", PLM_ARCH_LLAMA, false},
    {"qwen2", PLM_ARCH_QWEN2, true},
    {"qwen3", PLM_ARCH_QWEN3, true},
};
#define N_SUPPORTED_ARCHS (sizeof supported_archs / sizeof supported_archs[0])

static char *model_strdup(struct plm_model *m, struct gguf_str s)
{
    char *copy = malloc(s.len + 1);
    if (copy) {
        memcpy(copy, s.ptr, s.len);
        copy[s.len] = '\0';
        m->heap_bytes += s.len + 1;
    }
    return copy;
}

/* Reads "<arch>.<suffix>" as a positive int no larger than max. */
static int read_arch_int(const struct plm_model *m, const char *suffix, bool required, int fallback,
                         int max, int *value)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    uint32_t v;
    if (!gguf_get_u32(m->gguf, key, &v)) {
        if (required)
            return plm_fail(PLM_ERR_FORMAT, "missing or invalid metadata '%s'", key);
        *value = fallback;
        return PLM_OK;
    }
    if (v == 0 || v > (uint32_t)max)
        return plm_fail(PLM_ERR_LIMIT, "metadata '%s' = %u is outside 1..%d", key, v, max);
    *value = (int)v;
    return PLM_OK;
}

static int read_arch_float(const struct plm_model *m, const char *suffix, float fallback, float *value)
{
    char key[128];
    snprintf(key, sizeof key, "%s.%s", m->arch_name, suffix);
    if (!gguf_get_f32(m->gguf, key, value))
        *value = fallback;
    if (!(*value > 0.0f))
        return plm_fail(PLM_ERR_FORMAT, "metadata '%s' must be positive", key);
    return PLM_OK;
}

static int find_arch(struct plm_model *m)
{
    struct gguf_str arch;
    if (!gguf_get_str(m->gguf, "general.architecture", &arch))
        return plm_fail(PLM_ERR_FORMAT, "missing metadata 'general.architecture'");
    for (size_t i = 0; i < N_SUPPORTED_ARCHS; i++) {
        if (arch.len == strlen(supported_archs[i].name) &&
            memcmp(arch.ptr, supported_archs[i].name, arch.len) == 0) {
            m->arch = supported_archs[i].arch;
            m->arch_name = supported_archs[i].name;
            m->hp.rope_neox = supported_archs[i].rope_neox;
            return PLM_OK;
        }
    }
    return plm_fail(PLM_ERR_UNSUPPORTED, "unsupported architecture '%.*s' (supported: llama, qwen2, qwen3)",
                    (int)(arch.len > 64 ? 64 : arch.len), arch.ptr);
}

static int read_hparams(struct plm_model *m)
{
    struct plm_hparams *hp = &m->hp;
    int rc;
    if ((rc = read_arch_int(m, "embedding_length", true, 0, PLM_MAX_EMBD, &hp->n_embd)) ||
        (rc = read_arch_int(m, "block_count", true, 0, PLM_MAX_LAYERS, &hp->n_layer)) ||
        (rc = read_arch_int(m, "feed_forward_length", true, 0, PLM_MAX_FF, &hp->n_ff)) ||
        (rc = read_arch_int(m, "attention.head_count", true, 0, PLM_MAX_HEADS, &hp->n_head)) ||
        (rc = read_arch_int(m, "attention.head_count_kv", false, hp->n_head, PLM_MAX_HEADS,
                            &hp->n_head_kv)) ||
        (rc = read_arch_int(m, "context_length", false, 2048, PLM_MAX_CTX, &hp->n_ctx_train)))
        return rc;
    int default_head_dim = hp->n_embd / hp->n_head;
    if ((rc = read_arch_int(m, "attention.key_length", false, default_head_dim, PLM_MAX_HEAD_DIM,
                            &hp->head_dim)))
        return rc;
    int value_dim = 0;
    if ((rc = read_arch_int(m, "attention.value_length", false, hp->head_dim, PLM_MAX_HEAD_DIM,
                            &value_dim)))
        return rc;
    if (value_dim != hp->head_dim)
        return plm_fail(PLM_ERR_UNSUPPORTED, "key length %d differs from value length %d",
                        hp->head_dim, value_dim);
    if (hp->head_dim % 2 != 0 || hp->head_dim == 0)
        return plm_fail(PLM_ERR_FORMAT, "head dimension %d must be even", hp->head_dim);
    if (hp->n_head % hp->n_head_kv != 0)
        return plm_fail(PLM_ERR_FORMAT, "%d attention heads cannot share %d key/value heads",
                        hp->n_head, hp->n_head_kv);
    int rope_dims = 0;
    if ((rc = read_arch_int(m, "rope.dimension_count", false, hp->head_dim, PLM_MAX_HEAD_DIM,
                            &rope_dims)))
        return rc;
    if (rope_dims != hp->head_dim)
        return plm_fail(PLM_ERR_UNSUPPORTED, "partial rotary embeddings (%d of %d dims) are not supported",
                        rope_dims, hp->head_dim);
    if ((rc = read_arch_float(m, "rope.freq_base", 10000.0f, &hp->rope_freq_base)) ||
        (rc = read_arch_float(m, "attention.layer_norm_rms_epsilon", 1e-5f, &hp->norm_eps)))
        return rc;
    return PLM_OK;
}

/* Unused GGUF dimensions are 1, so a vector of n has shape [n, 1, 1, 1]. */
static int check_shape(const struct gguf_tensor *t, int64_t ne0, int64_t ne1)
{
    if (t->ne[0] == ne0 && t->ne[1] == ne1 && t->ne[2] == 1 && t->ne[3] == 1)
        return PLM_OK;
    return plm_fail(PLM_ERR_FORMAT, "tensor '%s' has shape [%lld, %lld, %lld, %lld], expected [%lld, %lld]",
                    t->name, (long long)t->ne[0], (long long)t->ne[1], (long long)t->ne[2],
                    (long long)t->ne[3], (long long)ne0, (long long)ne1);
}

static const struct gguf_tensor *find_tensor(const struct plm_model *m, const char *name, bool required,
                                             int *rc)
{
    const struct gguf_tensor *t = gguf_find_tensor(m->gguf, name);
    *rc = PLM_OK;
    if (!t && required)
        *rc = plm_fail(PLM_ERR_FORMAT, "missing tensor '%s'", name);
    return t;
}

/* A weight matrix with n_out rows of n_in; left zeroed when optional and absent. */
static int bind_matrix(struct plm_model *m, const char *name, int64_t n_in, int64_t n_out,
                       bool required, struct plm_matrix *out)
{
    int rc;
    memset(out, 0, sizeof *out);
    const struct gguf_tensor *t = find_tensor(m, name, required, &rc);
    if (!t)
        return rc;
    if ((rc = check_shape(t, n_in, n_out)))
        return rc;
    /* The kernels read 16- and 32-bit fields in place. */
    if ((uintptr_t)t->data % 4 != 0)
        return plm_fail(PLM_ERR_UNSUPPORTED, "tensor '%s' data is not 4-byte aligned (general.alignment too small)", name);
    if (!plm_type_traits(t->type))
        return plm_fail(PLM_ERR_UNSUPPORTED, "tensor '%s' has unsupported type %s", name,
                        plm_type_name(t->type));
    *out = (struct plm_matrix){.type = t->type, .data = t->data, .n_in = n_in, .n_out = n_out};
    return PLM_OK;
}

/* A 1-D weight as floats: used in place when stored as F32, else expanded once. */
static int bind_vector(struct plm_model *m, const char *name, int64_t n, bool required,
                       const float **out)
{
    int rc;
    *out = NULL;
    const struct gguf_tensor *t = find_tensor(m, name, required, &rc);
    if (!t)
        return rc;
    if ((rc = check_shape(t, n, 1)))
        return rc;
    if (t->type == PLM_TYPE_F32 && (uintptr_t)t->data % sizeof(float) == 0) {
        *out = t->data;
        return PLM_OK;
    }
    if (!plm_type_traits(t->type))
        return plm_fail(PLM_ERR_UNSUPPORTED, "tensor '%s' has unsupported type %s", name,
                        plm_type_name(t->type));
    float *expanded = malloc((size_t)n * sizeof(float));
    float **grown = realloc(m->owned_vectors, (size_t)(m->n_owned_vectors + 1) * sizeof *grown);
    if (!expanded || !grown) {
        free(expanded);
        if (grown)
            m->owned_vectors = grown;
        return plm_fail(PLM_ERR_NOMEM, "out of memory expanding '%s'", name);
    }
    m->owned_vectors = grown;
    m->owned_vectors[m->n_owned_vectors++] = expanded;
    m->heap_bytes += (size_t)n * sizeof(float) + sizeof *grown; /* the array grew by one pointer */
    plm_dequantize_row(t->type, t->data, expanded, n);
    *out = expanded;
    return PLM_OK;
}

/* "blk.<il>.<suffix>" in buf, which holds 96 bytes. */
static const char *blk_name(char *buf, int il, const char *suffix)
{
    snprintf(buf, 96, "blk.%d.%s", il, suffix);
    return buf;
}

static int bind_layer(struct plm_model *m, int il)
{
    const struct plm_hparams *hp = &m->hp;
    struct plm_layer *l = &m->layers[il];
    int64_t q_dim = (int64_t)hp->n_head * hp->head_dim;
    int64_t kv_dim = (int64_t)hp->n_head_kv * hp->head_dim;
    bool has_bias = m->arch == PLM_ARCH_QWEN2;
    bool has_qk_norm = m->arch == PLM_ARCH_QWEN3;
    char name[96];
    int rc;
    if ((rc = bind_vector(m, blk_name(name, il, "attn_norm.weight"), hp->n_embd, true, &l->attn_norm)) ||
        (rc = bind_matrix(m, blk_name(name, il, "attn_q.weight"), hp->n_embd, q_dim, true, &l->wq)) ||
        (rc = bind_matrix(m, blk_name(name, il, "attn_k.weight"), hp->n_embd, kv_dim, true, &l->wk)) ||
        (rc = bind_matrix(m, blk_name(name, il, "attn_v.weight"), hp->n_embd, kv_dim, true, &l->wv)) ||
        (rc = bind_matrix(m, blk_name(name, il, "attn_output.weight"), q_dim, hp->n_embd, true, &l->wo)) ||
        (rc = bind_vector(m, blk_name(name, il, "attn_q.bias"), q_dim, has_bias, &l->bq)) ||
        (rc = bind_vector(m, blk_name(name, il, "attn_k.bias"), kv_dim, has_bias, &l->bk)) ||
        (rc = bind_vector(m, blk_name(name, il, "attn_v.bias"), kv_dim, has_bias, &l->bv)) ||
        (rc = bind_vector(m, blk_name(name, il, "attn_q_norm.weight"), hp->head_dim, has_qk_norm, &l->q_norm)) ||
        (rc = bind_vector(m, blk_name(name, il, "attn_k_norm.weight"), hp->head_dim, has_qk_norm, &l->k_norm)) ||
        (rc = bind_vector(m, blk_name(name, il, "ffn_norm.weight"), hp->n_embd, true, &l->ffn_norm)) ||
        (rc = bind_matrix(m, blk_name(name, il, "ffn_gate.weight"), hp->n_embd, hp->n_ff, true, &l->w_gate)) ||
        (rc = bind_matrix(m, blk_name(name, il, "ffn_up.weight"), hp->n_embd, hp->n_ff, true, &l->w_up)) ||
        (rc = bind_matrix(m, blk_name(name, il, "ffn_down.weight"), hp->n_ff, hp->n_embd, true, &l->w_down)))
        return rc;
    return PLM_OK;
}

static int bind_weights(struct plm_model *m)
{
    const struct plm_hparams *hp = &m->hp;
    int rc;
    if ((rc = bind_matrix(m, "token_embd.weight", hp->n_embd, hp->n_vocab, true, &m->token_embd)) ||
        (rc = bind_vector(m, "output_norm.weight", hp->n_embd, true, &m->output_norm)) ||
        (rc = bind_matrix(m, "output.weight", hp->n_embd, hp->n_vocab, false, &m->output)) ||
        (rc = bind_vector(m, "rope_freqs.weight", hp->head_dim / 2, false, &m->rope_freq_factors)))
        return rc;
    if (!m->output.data)
        m->output = m->token_embd; /* tied embeddings */
    m->layers = calloc((size_t)hp->n_layer, sizeof *m->layers);
    if (!m->layers)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    m->heap_bytes += (size_t)hp->n_layer * sizeof *m->layers;
    for (int il = 0; il < hp->n_layer; il++)
        if ((rc = bind_layer(m, il)))
            return rc;
    return PLM_OK;
}

static int read_strings(struct plm_model *m)
{
    struct gguf_str s;
    m->name = model_strdup(m, gguf_get_str(m->gguf, "general.name", &s) ? s : (struct gguf_str){"", 0});
    m->tokenizer_model = model_strdup(m, gguf_get_str(m->gguf, "tokenizer.ggml.model", &s)
                                             ? s : (struct gguf_str){"", 0});
    m->pre_tokenizer = model_strdup(m, gguf_get_str(m->gguf, "tokenizer.ggml.pre", &s)
                                           ? s : (struct gguf_str){"default", 7});
    if (gguf_get_str(m->gguf, "tokenizer.chat_template", &s) && !(m->chat_template = model_strdup(m, s)))
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    if (!m->name || !m->tokenizer_model || !m->pre_tokenizer)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    return PLM_OK;
}

static int load(struct plm_model *m, const char *path)
{
    int rc;
    if ((rc = gguf_open(path, &m->gguf)))
        return rc;
    if ((rc = find_arch(m)) || (rc = read_hparams(m)) || (rc = read_strings(m)))
        return plm_fail_context(rc, "%s", path);
    if ((rc = vocab_load(m->gguf, &m->vocab)))
        return plm_fail_context(rc, "%s: tokenizer", path);
    m->hp.n_vocab = vocab_n_tokens(m->vocab);
    if ((rc = bind_weights(m)))
        return plm_fail_context(rc, "%s", path);
    model_plan_packing(m);
    return PLM_OK;
}

int plm_model_load(const char *path, plm_model **model)
{
    *model = NULL;
    struct plm_model *m = calloc(1, sizeof *m);
    if (!m)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    m->heap_bytes = sizeof *m;
    pthread_mutex_init(&m->packing_lock, NULL);
    int rc = load(m, path);
    if (rc) {
        plm_model_free(m);
        return rc;
    }
    *model = m;
    return PLM_OK;
}

void plm_model_free(plm_model *m)
{
    if (!m)
        return;
    model_free_packed(m);
    pthread_mutex_destroy(&m->packing_lock);
    for (int i = 0; i < m->n_owned_vectors; i++)
        free(m->owned_vectors[i]);
    free(m->owned_vectors);
    free(m->layers);
    free(m->name);
    free(m->chat_template);
    free(m->tokenizer_model);
    free(m->pre_tokenizer);
    vocab_free(m->vocab);
    gguf_free(m->gguf);
    free(m);
}

/* Everything but the weights: the heap the loader keeps, the metadata at
 * the start of the file, whose pages loading reads and so makes resident,
 * and the padding of packed matrices. */
static uint64_t host_bytes(const struct plm_model *m)
{
    uint64_t metadata = m->gguf->data_offset < m->gguf->size ? m->gguf->data_offset : m->gguf->size;
    return m->heap_bytes + vocab_heap_bytes(m->vocab) + m->gguf->heap_bytes + metadata + m->packed_padding;
}

void plm_model_get_info(const plm_model *m, struct plm_model_info *info)
{
    const struct plm_hparams *hp = &m->hp;
    uint64_t n_params = 0, bytes = 0;
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const struct gguf_tensor *t = &m->gguf->tensors[i];
        n_params += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        bytes += t->nbytes;
    }
    *info = (struct plm_model_info){
        .architecture = m->arch_name,
        .name = m->name,
        .n_vocab = hp->n_vocab,
        .n_ctx_train = hp->n_ctx_train,
        .n_embd = hp->n_embd,
        .n_layer = hp->n_layer,
        .n_head = hp->n_head,
        .n_head_kv = hp->n_head_kv,
        .head_dim = hp->head_dim,
        .n_ff = hp->n_ff,
        .rope_freq_base = hp->rope_freq_base,
        .norm_eps = hp->norm_eps,
        .n_params = n_params,
        .weight_bytes = bytes,
        .host_bytes = host_bytes(m),
        .chat_template = m->chat_template,
        .tokenizer = m->tokenizer_model,
        .pre_tokenizer = m->pre_tokenizer,
    };
}

int plm_model_type_stats(const plm_model *m, struct plm_type_stat *stats, int max)
{
    struct plm_type_stat by_type[PLM_TYPE_COUNT] = {0};
    for (uint64_t i = 0; i < m->gguf->n_tensors; i++) {
        const struct gguf_tensor *t = &m->gguf->tensors[i];
        struct plm_type_stat *s = &by_type[t->type];
        s->type_name = plm_type_name(t->type);
        s->n_tensors++;
        s->n_elements += (uint64_t)(t->ne[0] * t->ne[1] * t->ne[2] * t->ne[3]);
        s->bytes += t->nbytes;
    }
    int n = 0;
    for (int type = 0; type < PLM_TYPE_COUNT; type++) {
        if (by_type[type].n_tensors == 0)
            continue;
        if (n < max)
            stats[n] = by_type[type];
        n++;
    }
    return n;
}
