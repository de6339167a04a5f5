/*
 * Hugging Face checkpoint directory -> GGUF.
 *
 * config.json gives the architecture and hyperparameters; the safetensors
 * tensors are renamed to GGUF's names (model.layers.N.self_attn.q_proj.weight ->
 * blk.N.attn_q.weight, ...) and checked against the shapes config.json implies.
 * For llama, q and k rows are reordered from Hugging Face's rotate-half RoPE
 * layout to the interleaved layout GGUF's llama uses; qwen2/qwen3 keep
 * rotate-half (NEOX) RoPE in GGUF and need no reordering.
 */
#include "convert/convert.h"

#include "core/error.h"
#include "format/safetensors.h"
#include "tensor/types.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct hf_arch {
    const char *hf_name; /* config.json "architectures" entry */
    const char *gguf_name;
    bool permute_qk;     /* reorder q/k rows to interleaved RoPE */
    bool qkv_bias;       /* q/k/v projections have biases */
    bool qk_norm;        /* per-head RMSNorm of q and k */
};

static const struct hf_arch hf_archs[] = {
    {"LlamaForCausalLM", "llama", true, false, false},
    {"MistralForCausalLM", "llama", true, false, false},
    {"Qwen2ForCausalLM", "qwen2", false, true, false},
    {"Qwen3ForCausalLM", "qwen3", false, false, true},
};
#define N_HF_ARCHS (sizeof hf_archs / sizeof hf_archs[0])

/* A sanity bound on config.json integers; far above any real model. */
#define HF_MAX_VALUE (1 << 24)

enum rope_scaling_type { ROPE_SCALING_NONE, ROPE_SCALING_LLAMA3 };

struct hf_config {
    const struct hf_arch *arch;
    int n_vocab, n_ctx, n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim;
    float rope_theta, rms_eps;
    bool tie_embeddings;
    /* Llama 3.x "llama3" RoPE scaling */
    enum rope_scaling_type rope_scaling;
    float rope_factor, low_freq_factor, high_freq_factor;
    float original_ctx;
};

/* ---------------------------------------------------------------- config */

/* An integer field in 1..HF_MAX_VALUE; absent or null gives def (or an error when def < 0). */
static int config_int(const cJSON *json, const char *key, int def, int *value)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    if (!item || cJSON_IsNull(item)) {
        if (def < 0)
            return plm_fail(PLM_ERR_FORMAT, "config.json: missing \"%s\"", key);
        *value = def;
        return PLM_OK;
    }
    double d = cJSON_IsNumber(item) ? item->valuedouble : -1;
    if (!(d >= 1 && d <= HF_MAX_VALUE) || floor(d) != d)
        return plm_fail(PLM_ERR_FORMAT, "config.json: \"%s\" must be an integer in 1..%d", key,
                        HF_MAX_VALUE);
    *value = (int)d;
    return PLM_OK;
}

/* A positive number field; absent or null gives def. */
static int config_float(const cJSON *json, const char *key, float def, float *value)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(json, key);
    if (!item || cJSON_IsNull(item)) {
        *value = def;
        return PLM_OK;
    }
    /* Checked as the float the model stores: 1e-50 would round to 0 and 1e50
     * to infinity, and the loader refuses both. */
    float as_float = cJSON_IsNumber(item) ? (float)item->valuedouble : 0.0f;
    if (!(as_float > 0) || !isfinite(as_float))
        return plm_fail(PLM_ERR_FORMAT, "config.json: \"%s\" must be a positive number within float range", key);
    *value = as_float;
    return PLM_OK;
}

static int find_arch(const cJSON *json, const struct hf_arch **arch)
{
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(json, "architectures");
    const cJSON *name = cJSON_IsArray(list) ? cJSON_GetArrayItem(list, 0) : NULL;
    if (!cJSON_IsString(name))
        return plm_fail(PLM_ERR_FORMAT, "config.json: no \"architectures\" list");
    for (size_t i = 0; i < N_HF_ARCHS; i++)
        if (strcmp(name->valuestring, hf_archs[i].hf_name) == 0) {
            *arch = &hf_archs[i];
            return PLM_OK;
        }
    return plm_fail(PLM_ERR_UNSUPPORTED,
                    "config.json: architecture '%s' is not supported (supported: "
                    "LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)",
                    name->valuestring);
}

/* rope_scaling (or rope_parameters in newer configs): none, "default", or "llama3". */
static int parse_rope_scaling(const cJSON *json, struct hf_config *c)
{
    const cJSON *scaling = cJSON_GetObjectItemCaseSensitive(json, "rope_scaling");
    if (!cJSON_IsObject(scaling))
        scaling = cJSON_GetObjectItemCaseSensitive(json, "rope_parameters");
    c->rope_scaling = ROPE_SCALING_NONE;
    if (!cJSON_IsObject(scaling))
        return PLM_OK;
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(scaling, "rope_type");
    if (!cJSON_IsString(type))
        type = cJSON_GetObjectItemCaseSensitive(scaling, "type");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, "default") == 0)
        return PLM_OK;
    if (strcmp(type->valuestring, "llama3") != 0)
        return plm_fail(PLM_ERR_UNSUPPORTED,
                        "config.json: rope scaling '%s' is not supported (supported: llama3)",
                        type->valuestring);
    int original_ctx;
    int rc;
    c->rope_scaling = ROPE_SCALING_LLAMA3;
    if ((rc = config_float(scaling, "factor", 8.0f, &c->rope_factor)) ||
        (rc = config_float(scaling, "low_freq_factor", 1.0f, &c->low_freq_factor)) ||
        (rc = config_float(scaling, "high_freq_factor", 4.0f, &c->high_freq_factor)) ||
        (rc = config_int(scaling, "original_max_position_embeddings", 8192, &original_ctx)))
        return plm_fail_context(rc, "rope_scaling");
    if (c->high_freq_factor == c->low_freq_factor)
        return plm_fail(PLM_ERR_FORMAT,
                        "config.json: llama3 rope scaling needs high_freq_factor != "
                        "low_freq_factor");
    c->original_ctx = (float)original_ctx;
    return PLM_OK;
}

static int parse_config(const cJSON *json, struct hf_config *c)
{
    memset(c, 0, sizeof *c);
    int rc;
    if ((rc = find_arch(json, &c->arch)) ||
        (rc = config_int(json, "vocab_size", -1, &c->n_vocab)) ||
        (rc = config_int(json, "hidden_size", -1, &c->n_embd)) ||
        (rc = config_int(json, "intermediate_size", -1, &c->n_ff)) ||
        (rc = config_int(json, "num_hidden_layers", -1, &c->n_layer)) ||
        (rc = config_int(json, "num_attention_heads", -1, &c->n_head)) ||
        (rc = config_int(json, "num_key_value_heads", c->n_head, &c->n_head_kv)) ||
        (rc = config_int(json, "max_position_embeddings", 2048, &c->n_ctx)) ||
        (rc = config_int(json, "head_dim", c->n_embd / c->n_head, &c->head_dim)))
        return rc;
    const cJSON *params = cJSON_GetObjectItemCaseSensitive(json, "rope_parameters");
    if ((rc = config_float(json, "rope_theta", 10000.0f, &c->rope_theta)) ||
        (cJSON_IsObject(params) &&
         (rc = config_float(params, "rope_theta", c->rope_theta, &c->rope_theta))) ||
        (rc = config_float(json, "rms_norm_eps", 1e-6f, &c->rms_eps)) ||
        (rc = parse_rope_scaling(json, c)))
        return rc;
    const cJSON *tie = cJSON_GetObjectItemCaseSensitive(json, "tie_word_embeddings");
    c->tie_embeddings = cJSON_IsTrue(tie);

    if (c->n_head % c->n_head_kv != 0)
        return plm_fail(PLM_ERR_FORMAT, "config.json: %d attention heads cannot share %d "
                        "key/value heads", c->n_head, c->n_head_kv);
    if (c->head_dim < 2 || c->head_dim % 2 != 0)
        return plm_fail(PLM_ERR_FORMAT, "config.json: head dimension %d is odd (RoPE rotates "
                        "pairs)", c->head_dim);
    return PLM_OK;
}

static int write_hparams(struct gguf_writer *w, const struct hf_config *c, const char *name)
{
    const char *arch = c->arch->gguf_name;
    const struct {
        const char *suffix;
        int value;
    } ints[] = {
        {"vocab_size", c->n_vocab},
        {"context_length", c->n_ctx},
        {"embedding_length", c->n_embd},
        {"block_count", c->n_layer},
        {"feed_forward_length", c->n_ff},
        {"attention.head_count", c->n_head},
        {"attention.head_count_kv", c->n_head_kv},
        {"rope.dimension_count", c->head_dim},
        /* Only needed when heads are not n_embd / n_head wide (e.g. Qwen3). */
        {"attention.key_length", c->head_dim * c->n_head != c->n_embd ? c->head_dim : 0},
        {"attention.value_length", c->head_dim * c->n_head != c->n_embd ? c->head_dim : 0},
    };
    char key[128];
    int rc = gguf_writer_set_str(w, "general.architecture", arch);
    if (!rc) rc = gguf_writer_set_str(w, "general.name", name);
    for (size_t i = 0; i < sizeof ints / sizeof ints[0] && !rc; i++) {
        if (ints[i].value == 0)
            continue;
        snprintf(key, sizeof key, "%s.%s", arch, ints[i].suffix);
        rc = gguf_writer_set_u32(w, key, (uint32_t)ints[i].value);
    }
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    if (!rc) rc = gguf_writer_set_f32(w, key, c->rms_eps);
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    if (!rc) rc = gguf_writer_set_f32(w, key, c->rope_theta);
    return rc;
}

/* --------------------------------------------------------------- tensors */

struct hf_converter {
    struct hf_config config;
    struct safetensors_checkpoint *ckpt;
    struct convert_out out;
    /* Checkpoint tensors already converted; anything left over is unexpected. */
    const struct safetensors_tensor **used;
    size_t n_used, cap_used;
};

static int source_type(const struct safetensors_tensor *t)
{
    switch (t->dtype) {
    case SAFETENSORS_F32: return PLM_TYPE_F32;
    case SAFETENSORS_F16: return PLM_TYPE_F16;
    case SAFETENSORS_BF16: return PLM_TYPE_BF16;
    default: return -1;
    }
}

static int mark_used(struct hf_converter *cv, const struct safetensors_tensor *t)
{
    if (cv->n_used == cv->cap_used) {
        size_t cap = cv->cap_used ? 2 * cv->cap_used : 64;
        const struct safetensors_tensor **grown = realloc(cv->used, cap * sizeof *grown);
        if (!grown)
            return plm_fail(PLM_ERR_NOMEM, "out of memory");
        cv->used = grown;
        cv->cap_used = cap;
    }
    cv->used[cv->n_used++] = t;
    return PLM_OK;
}

static bool is_used(const struct hf_converter *cv, const struct safetensors_tensor *t)
{
    for (size_t i = 0; i < cv->n_used; i++)
        if (cv->used[i] == t)
            return true;
    return false;
}

/* Looks up a checkpoint tensor and checks it is a float tensor of shape [rows, cols]
 * (cols == 0: a vector of rows). NULL with *rc = PLM_OK when absent and optional. */
static const struct safetensors_tensor *find_checked(struct hf_converter *cv, const char *name,
                                                     int64_t rows, int64_t cols, bool required,
                                                     int *rc)
{
    *rc = PLM_OK;
    const struct safetensors_tensor *t = safetensors_checkpoint_find(cv->ckpt, name);
    if (!t) {
        if (required)
            *rc = plm_fail(PLM_ERR_FORMAT, "checkpoint has no tensor '%s'", name);
        return NULL;
    }
    if (source_type(t) < 0) {
        *rc = plm_fail(PLM_ERR_UNSUPPORTED, "tensor '%s' has dtype %s (supported: F32, F16, BF16)",
                       name, safetensors_dtype_name(t->dtype));
        return NULL;
    }
    int n_dims = cols ? 2 : 1;
    if (t->n_dims != n_dims || t->shape[0] != rows || (cols && t->shape[1] != cols)) {
        char shape[128] = "";
        for (int d = 0, n = 0; d < t->n_dims && n < (int)sizeof shape; d++)
            n += snprintf(shape + n, sizeof shape - (size_t)n, d ? ", %lld" : "%lld",
                          (long long)t->shape[d]);
        if (cols)
            *rc = plm_fail(PLM_ERR_FORMAT, "tensor '%s' has shape [%s], config.json implies "
                           "[%lld, %lld]", name, shape, (long long)rows, (long long)cols);
        else
            *rc = plm_fail(PLM_ERR_FORMAT, "tensor '%s' has shape [%s], config.json implies "
                           "[%lld]", name, shape, (long long)rows);
        return NULL;
    }
    *rc = mark_used(cv, t);
    return *rc ? NULL : t;
}

/* Adds t as GGUF tensor gguf_name; a [rows, cols] tensor becomes ne = {cols, rows}. */
static int add_tensor(struct hf_converter *cv, const char *gguf_name,
                      const struct safetensors_tensor *t, int rope_heads)
{
    int64_t ne[2] = {t->n_dims == 2 ? t->shape[1] : t->shape[0], t->shape[0]};
    return convert_add_tensor(&cv->out, gguf_name, source_type(t), t->data, ne, t->n_dims,
                              rope_heads);
}

static int convert_one(struct hf_converter *cv, const char *hf_name, const char *gguf_name,
                       int64_t rows, int64_t cols, int rope_heads)
{
    int rc;
    const struct safetensors_tensor *t = find_checked(cv, hf_name, rows, cols, true, &rc);
    return rc ? rc : add_tensor(cv, gguf_name, t, rope_heads);
}

/* The sizes a layer tensor's shape is made of. */
enum layer_dim { DIM_NONE, DIM_EMBD, DIM_Q, DIM_KV, DIM_FF, DIM_HEAD };

/* Which architectures have a tensor. */
enum layer_need { NEED_ALWAYS, NEED_QKV_BIAS, NEED_QK_NORM };

/* Which heads a tensor's rows are reordered within (llama only). */
enum layer_rope { ROPE_NONE, ROPE_Q_HEADS, ROPE_KV_HEADS };

/* "model.layers.N.<hf>" [rows, cols] -> "blk.N.<gguf>"; cols DIM_NONE: a vector. */
static const struct layer_tensor {
    const char *hf;
    const char *gguf;
    enum layer_dim rows, cols;
    enum layer_need need;
    enum layer_rope rope;
} layer_tensors[] = {
    {"input_layernorm.weight", "attn_norm.weight", DIM_EMBD, DIM_NONE, NEED_ALWAYS, ROPE_NONE},
    {"self_attn.q_proj.weight", "attn_q.weight", DIM_Q, DIM_EMBD, NEED_ALWAYS, ROPE_Q_HEADS},
    {"self_attn.k_proj.weight", "attn_k.weight", DIM_KV, DIM_EMBD, NEED_ALWAYS, ROPE_KV_HEADS},
    {"self_attn.v_proj.weight", "attn_v.weight", DIM_KV, DIM_EMBD, NEED_ALWAYS, ROPE_NONE},
    {"self_attn.o_proj.weight", "attn_output.weight", DIM_EMBD, DIM_Q, NEED_ALWAYS, ROPE_NONE},
    {"self_attn.q_proj.bias", "attn_q.bias", DIM_Q, DIM_NONE, NEED_QKV_BIAS, ROPE_Q_HEADS},
    {"self_attn.k_proj.bias", "attn_k.bias", DIM_KV, DIM_NONE, NEED_QKV_BIAS, ROPE_KV_HEADS},
    {"self_attn.v_proj.bias", "attn_v.bias", DIM_KV, DIM_NONE, NEED_QKV_BIAS, ROPE_NONE},
    {"self_attn.q_norm.weight", "attn_q_norm.weight", DIM_HEAD, DIM_NONE, NEED_QK_NORM, ROPE_NONE},
    {"self_attn.k_norm.weight", "attn_k_norm.weight", DIM_HEAD, DIM_NONE, NEED_QK_NORM, ROPE_NONE},
    {"post_attention_layernorm.weight", "ffn_norm.weight", DIM_EMBD, DIM_NONE, NEED_ALWAYS,
     ROPE_NONE},
    {"mlp.gate_proj.weight", "ffn_gate.weight", DIM_FF, DIM_EMBD, NEED_ALWAYS, ROPE_NONE},
    {"mlp.up_proj.weight", "ffn_up.weight", DIM_FF, DIM_EMBD, NEED_ALWAYS, ROPE_NONE},
    {"mlp.down_proj.weight", "ffn_down.weight", DIM_EMBD, DIM_FF, NEED_ALWAYS, ROPE_NONE},
};

static int64_t dim_size(const struct hf_config *c, enum layer_dim dim)
{
    switch (dim) {
    case DIM_EMBD: return c->n_embd;
    case DIM_Q: return (int64_t)c->n_head * c->head_dim;
    case DIM_KV: return (int64_t)c->n_head_kv * c->head_dim;
    case DIM_FF: return c->n_ff;
    case DIM_HEAD: return c->head_dim;
    default: return 0;
    }
}

static bool arch_has(const struct hf_arch *arch, enum layer_need need)
{
    return need == NEED_ALWAYS || (need == NEED_QKV_BIAS && arch->qkv_bias) ||
           (need == NEED_QK_NORM && arch->qk_norm);
}

static int rope_heads(const struct hf_config *c, enum layer_rope rope)
{
    if (!c->arch->permute_qk || rope == ROPE_NONE)
        return 0;
    return rope == ROPE_Q_HEADS ? c->n_head : c->n_head_kv;
}

static int convert_layers(struct hf_converter *cv)
{
    const struct hf_config *c = &cv->config;
    for (int l = 0; l < c->n_layer; l++)
        for (size_t i = 0; i < sizeof layer_tensors / sizeof layer_tensors[0]; i++) {
            const struct layer_tensor *lt = &layer_tensors[i];
            if (!arch_has(c->arch, lt->need))
                continue;
            char hf_name[160], gguf_name[64];
            snprintf(hf_name, sizeof hf_name, "model.layers.%d.%s", l, lt->hf);
            snprintf(gguf_name, sizeof gguf_name, "blk.%d.%s", l, lt->gguf);
            int rc = convert_one(cv, hf_name, gguf_name, dim_size(c, lt->rows),
                                 dim_size(c, lt->cols), rope_heads(c, lt->rope));
            if (rc)
                return rc;
        }
    return PLM_OK;
}

/* token_embd and output. With tied embeddings GGUF stores only token_embd and the
 * runtime reuses it as the classifier. Some tied checkpoints store the shared
 * matrix only as lm_head.weight (TinyStories-656K): it is then the embedding. */
static int convert_embeddings(struct hf_converter *cv)
{
    const struct hf_config *c = &cv->config;
    int rc;
    const struct safetensors_tensor *embed =
        find_checked(cv, "model.embed_tokens.weight", c->n_vocab, c->n_embd, false, &rc);
    if (rc)
        return rc;
    const struct safetensors_tensor *head =
        find_checked(cv, "lm_head.weight", c->n_vocab, c->n_embd, false, &rc);
    if (rc)
        return rc;
    if (!embed && !head)
        return plm_fail(PLM_ERR_FORMAT,
                        "checkpoint has neither model.embed_tokens.weight nor lm_head.weight");
    if (!c->tie_embeddings && !(embed && head))
        return plm_fail(PLM_ERR_FORMAT, "checkpoint has no %s but config.json does not tie the "
                        "embeddings", embed ? "lm_head.weight" : "model.embed_tokens.weight");
    if ((rc = add_tensor(cv, "token_embd.weight", embed ? embed : head, 0)))
        return rc;
    if (!c->tie_embeddings)
        return add_tensor(cv, "output.weight", head, 0);
    return PLM_OK;
}

/* Llama 3.x RoPE scaling as per-frequency factors (rope_freqs.weight), computed
 * as llama.cpp's converter does, in f32: frequencies whose wavelength is short
 * compared with the original context keep factor 1, long ones get `factor`, and
 * those between are interpolated smoothly. */
static int convert_rope_freqs(struct hf_converter *cv)
{
    const struct hf_config *c = &cv->config;
    if (c->rope_scaling != ROPE_SCALING_LLAMA3)
        return PLM_OK;
    int n = c->head_dim / 2;
    float *factors = convert_alloc(&cv->out, (size_t)n * sizeof *factors);
    if (!factors)
        return PLM_ERR_NOMEM;
    float low_freq_wavelen = c->original_ctx / c->low_freq_factor;
    float high_freq_wavelen = c->original_ctx / c->high_freq_factor;
    for (int i = 0; i < n; i++) {
        float freq = 1.0f / powf(c->rope_theta, (float)(2 * i) / (float)c->head_dim);
        float wavelen = 2.0f * (float)M_PI / freq;
        if (wavelen < high_freq_wavelen) {
            factors[i] = 1.0f;
        } else if (wavelen > low_freq_wavelen) {
            factors[i] = c->rope_factor;
        } else {
            float smooth = (c->original_ctx / wavelen - c->low_freq_factor) /
                           (c->high_freq_factor - c->low_freq_factor);
            factors[i] = 1.0f / ((1.0f - smooth) / c->rope_factor + smooth);
        }
    }
    int64_t ne[1] = {n};
    return convert_add_tensor(&cv->out, "rope_freqs.weight", PLM_TYPE_F32, factors, ne, 1, 0);
}

/* Every checkpoint tensor must have found a place; old checkpoints also carry the
 * RoPE inverse frequencies, which are recomputed at run time. */
static int check_all_used(const struct hf_converter *cv)
{
    static const char inv_freq[] = ".rotary_emb.inv_freq";
    for (size_t f = 0; f < cv->ckpt->n_files; f++)
        for (size_t i = 0; i < cv->ckpt->files[f]->n_tensors; i++) {
            const struct safetensors_tensor *t = &cv->ckpt->files[f]->tensors[i];
            size_t len = strlen(t->name);
            if (len >= sizeof inv_freq - 1 &&
                strcmp(t->name + len - (sizeof inv_freq - 1), inv_freq) == 0)
                continue;
            if (!is_used(cv, t))
                return plm_fail(PLM_ERR_UNSUPPORTED,
                                "tensor '%s' is not part of a %s model as converted here",
                                t->name, cv->config.arch->hf_name);
        }
    return PLM_OK;
}

/* Without --outtype the output keeps the checkpoint's precision: 16-bit when every
 * matrix is in the same 16-bit type, else f32. */
static int checkpoint_matrix_type(const struct safetensors_checkpoint *ckpt)
{
    int type = -1;
    for (size_t f = 0; f < ckpt->n_files; f++)
        for (size_t i = 0; i < ckpt->files[f]->n_tensors; i++) {
            const struct safetensors_tensor *t = &ckpt->files[f]->tensors[i];
            if (t->n_dims != 2)
                continue;
            int this_type = source_type(t);
            if (type >= 0 && this_type != type)
                return PLM_TYPE_F32;
            type = this_type;
        }
    return type == PLM_TYPE_F16 || type == PLM_TYPE_BF16 ? type : PLM_TYPE_F32;
}

/* ------------------------------------------------------------------ driver */

/* general.name: the directory's last component ("." resolved to its real name). */
static void model_name(const char *dir, char *name, size_t size)
{
    char resolved[PATH_MAX];
    if (realpath(dir, resolved))
        dir = resolved;
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/')
        len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/')
        start--;
    snprintf(name, size, "%.*s", (int)(len - start), dir + start);
}

static int convert_tensors(struct hf_converter *cv)
{
    int rc;
    if ((rc = convert_embeddings(cv)) || (rc = convert_layers(cv)) ||
        (rc = convert_one(cv, "model.norm.weight", "output_norm.weight", cv->config.n_embd, 0,
                          0)) ||
        (rc = convert_rope_freqs(cv)))
        return rc;
    return check_all_used(cv);
}

int convert_hf(const char *dir, const char *out_path, int out_type)
{
    struct hf_converter cv = {0};
    cJSON *json;
    char name[256];
    int rc = convert_read_json(dir, "config.json", true, &json);
    if (!rc)
        rc = parse_config(json, &cv.config);
    if (!rc)
        rc = safetensors_checkpoint_open(dir, &cv.ckpt);
    if (!rc)
        rc = convert_out_init(&cv.out, out_type >= 0 ? out_type : checkpoint_matrix_type(cv.ckpt));
    model_name(dir, name, sizeof name);
    if (!rc) rc = write_hparams(cv.out.writer, &cv.config, name);
    if (!rc) rc = convert_set_file_type(&cv.out);
    if (!rc) rc = convert_tensors(&cv);
    if (!rc) rc = hf_tokenizer_convert(dir, json, cv.config.n_vocab, cv.out.writer);
    if (!rc) rc = gguf_writer_write(cv.out.writer, out_path);
    convert_out_free(&cv.out);
    safetensors_checkpoint_free(cv.ckpt);
    free(cv.used);
    cJSON_Delete(json);
    return rc;
}
