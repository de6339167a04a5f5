#include "ref_forward.h"

#include "core/error.h"
#include "format/gguf.h"
#include "tensor/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* A weight matrix: n_out rows of n_in doubles (y = W x), and the block size of
 * its type in the file (1 for F32/F16/BF16), which is also the block in which
 * REF_ACTIVATIONS_Q8 rounds the vectors multiplied with it. */
struct ref_matrix {
    double *w;
    int block_size;
};

/* One decoder block. Optional vectors are NULL when the file has none. */
struct ref_layer {
    double *attn_norm;                 /* [n_embd] */
    struct ref_matrix wq, wk, wv;      /* [q_dim x n_embd], [kv_dim x n_embd] x 2 */
    double *bq, *bk, *bv;              /* qwen2 biases */
    double *q_norm, *k_norm;           /* qwen3 per-head norms, [head_dim] */
    struct ref_matrix wo;              /* [n_embd x q_dim] */
    double *ffn_norm;                  /* [n_embd] */
    struct ref_matrix w_gate, w_up;    /* [n_ff x n_embd] */
    struct ref_matrix w_down;          /* [n_embd x n_ff] */
};

struct ref_model {
    bool neox; /* rotary pairs (i, i + head_dim/2) instead of (2i, 2i+1) */
    int n_vocab, n_embd, n_ff, n_layer, n_head, n_head_kv, head_dim;
    double norm_eps, rope_freq_base;
    struct ref_matrix token_embd; /* [n_vocab x n_embd] */
    double *output_norm;          /* [n_embd] */
    struct ref_matrix output;     /* [n_vocab x n_embd], w NULL when tied to token_embd */
    double *rope_freqs;           /* [head_dim/2] or NULL */
    struct ref_layer *layers;
};

/* -------------------------------------------------------------- loading */

/* {arch}.{suffix} as a size; fallback (when >= 0) stands in for an absent key. */
static int get_size(const struct gguf_file *file, const char *arch, const char *suffix,
                    int fallback, int *value)
{
    char key[128];
    uint32_t number;
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    if (fallback >= 0 && !gguf_find(file, key)) {
        *value = fallback;
        return PLM_OK;
    }
    if (!gguf_get_u32(file, key, &number) || number > (1u << 24))
        return plm_fail(PLM_ERR_FORMAT, "reference: missing or bad %s", key);
    *value = (int)number;
    return PLM_OK;
}

/* Dequantizes tensor `name`, which must have shape [ne0, ne1], to doubles, and
 * gives its type's block size when block_size is not NULL. An absent optional
 * tensor gives *values = NULL. */
static int load_tensor(const struct gguf_file *file, const char *name, int64_t ne0, int64_t ne1,
                       bool required, double **values, int *block_size)
{
    *values = NULL;
    const struct gguf_tensor *tensor = gguf_find_tensor(file, name);
    if (!tensor)
        return required ? plm_fail(PLM_ERR_FORMAT, "reference: no tensor %s", name) : PLM_OK;
    if (tensor->ne[0] != ne0 || tensor->ne[1] != ne1 || tensor->ne[2] != 1 || tensor->ne[3] != 1)
        return plm_fail(PLM_ERR_FORMAT, "reference: %s is [%lld, %lld], expected [%lld, %lld]",
                        name, (long long)tensor->ne[0], (long long)tensor->ne[1], (long long)ne0,
                        (long long)ne1);
    size_t row_bytes = plm_row_bytes(tensor->type, ne0);
    if (!plm_type_traits(tensor->type) || row_bytes == 0 ||
        tensor->nbytes < row_bytes * (uint64_t)ne1)
        return plm_fail(PLM_ERR_FORMAT, "reference: %s has unusable type %s", name,
                        plm_type_name(tensor->type));

    double *out = malloc((size_t)(ne0 * ne1) * sizeof(double));
    float *row = malloc((size_t)ne0 * sizeof(float));
    if (!out || !row) {
        free(out);
        free(row);
        return plm_fail(PLM_ERR_NOMEM, "reference: out of memory for %s", name);
    }
    const uint8_t *bytes = tensor->data;
    for (int64_t r = 0; r < ne1; r++) {
        plm_dequantize_row(tensor->type, bytes + (size_t)r * row_bytes, row, ne0);
        for (int64_t i = 0; i < ne0; i++)
            out[r * ne0 + i] = row[i];
    }
    free(row);
    *values = out;
    if (block_size)
        *block_size = plm_type_traits(tensor->type)->block_size;
    return PLM_OK;
}

static int load_layer(const struct gguf_file *file, const struct ref_model *model, int index,
                      bool biases, bool qk_norms, struct ref_layer *layer)
{
    int64_t n_embd = model->n_embd, n_ff = model->n_ff, head_dim = model->head_dim;
    int64_t q_dim = model->n_head * head_dim, kv_dim = model->n_head_kv * head_dim;
    const struct {
        const char *suffix;
        int64_t ne0, ne1;
        bool required;
        double **values;
        int *block_size; /* matrices only */
    } tensors[] = {
        {"attn_norm.weight", n_embd, 1, true, &layer->attn_norm, NULL},
        {"attn_q.weight", n_embd, q_dim, true, &layer->wq.w, &layer->wq.block_size},
        {"attn_k.weight", n_embd, kv_dim, true, &layer->wk.w, &layer->wk.block_size},
        {"attn_v.weight", n_embd, kv_dim, true, &layer->wv.w, &layer->wv.block_size},
        {"attn_q.bias", q_dim, 1, biases, &layer->bq, NULL},
        {"attn_k.bias", kv_dim, 1, biases, &layer->bk, NULL},
        {"attn_v.bias", kv_dim, 1, biases, &layer->bv, NULL},
        {"attn_q_norm.weight", head_dim, 1, qk_norms, &layer->q_norm, NULL},
        {"attn_k_norm.weight", head_dim, 1, qk_norms, &layer->k_norm, NULL},
        {"attn_output.weight", q_dim, n_embd, true, &layer->wo.w, &layer->wo.block_size},
        {"ffn_norm.weight", n_embd, 1, true, &layer->ffn_norm, NULL},
        {"ffn_gate.weight", n_embd, n_ff, true, &layer->w_gate.w, &layer->w_gate.block_size},
        {"ffn_up.weight", n_embd, n_ff, true, &layer->w_up.w, &layer->w_up.block_size},
        {"ffn_down.weight", n_ff, n_embd, true, &layer->w_down.w, &layer->w_down.block_size},
    };
    for (size_t i = 0; i < sizeof tensors / sizeof tensors[0]; i++) {
        char name[96];
        snprintf(name, sizeof name, "blk.%d.%s", index, tensors[i].suffix);
        int status = load_tensor(file, name, tensors[i].ne0, tensors[i].ne1, tensors[i].required,
                                 tensors[i].values, tensors[i].block_size);
        if (status != PLM_OK)
            return status;
    }
    return PLM_OK;
}

static int read_hparams(const struct gguf_file *file, const char *arch, struct ref_model *model)
{
    int status = get_size(file, arch, "embedding_length", -1, &model->n_embd);
    if (status == PLM_OK)
        status = get_size(file, arch, "feed_forward_length", -1, &model->n_ff);
    if (status == PLM_OK)
        status = get_size(file, arch, "block_count", -1, &model->n_layer);
    if (status == PLM_OK)
        status = get_size(file, arch, "attention.head_count", -1, &model->n_head);
    if (status == PLM_OK)
        status = get_size(file, arch, "attention.head_count_kv", -1, &model->n_head_kv);
    if (status != PLM_OK)
        return status;
    if (model->n_head == 0 || model->n_head_kv == 0 || model->n_head % model->n_head_kv != 0)
        return plm_fail(PLM_ERR_FORMAT, "reference: %d heads cannot share %d kv heads",
                        model->n_head, model->n_head_kv);

    int rope_dims = 0;
    status = get_size(file, arch, "attention.key_length", model->n_embd / model->n_head,
                      &model->head_dim);
    if (status == PLM_OK)
        status = get_size(file, arch, "rope.dimension_count", model->head_dim, &rope_dims);
    if (status != PLM_OK)
        return status;
    if (model->head_dim <= 0 || model->head_dim % 2 != 0 || rope_dims != model->head_dim)
        return plm_fail(PLM_ERR_UNSUPPORTED, "reference: rotary dims %d with head_dim %d",
                        rope_dims, model->head_dim);

    char key[128];
    float value;
    snprintf(key, sizeof key, "%s.attention.layer_norm_rms_epsilon", arch);
    if (!gguf_get_f32(file, key, &value))
        return plm_fail(PLM_ERR_FORMAT, "reference: missing %s", key);
    model->norm_eps = value;
    snprintf(key, sizeof key, "%s.rope.freq_base", arch);
    model->rope_freq_base = gguf_get_f32(file, key, &value) ? value : 10000.0;
    return PLM_OK;
}

static int load_model(const struct gguf_file *file, struct ref_model *model)
{
    struct gguf_str arch_str;
    char arch[16] = "";
    if (gguf_get_str(file, "general.architecture", &arch_str) && arch_str.len < sizeof arch)
        memcpy(arch, arch_str.ptr, arch_str.len);
    bool qwen2 = strcmp(arch, "qwen2") == 0, qwen3 = strcmp(arch, "qwen3") == 0;
    if (!qwen2 && !qwen3 && strcmp(arch, "llama") != 0)
        return plm_fail(PLM_ERR_UNSUPPORTED, "reference: architecture '%s' not supported", arch);
    model->neox = qwen2 || qwen3;

    int status = read_hparams(file, arch, model);
    if (status != PLM_OK)
        return status;
    const struct gguf_tensor *embd = gguf_find_tensor(file, "token_embd.weight");
    if (!embd || embd->ne[1] <= 0 || embd->ne[1] > (1 << 24))
        return plm_fail(PLM_ERR_FORMAT, "reference: no usable token_embd.weight");
    model->n_vocab = (int)embd->ne[1];

    status = load_tensor(file, "token_embd.weight", model->n_embd, model->n_vocab, true,
                         &model->token_embd.w, &model->token_embd.block_size);
    if (status == PLM_OK)
        status = load_tensor(file, "output_norm.weight", model->n_embd, 1, true,
                             &model->output_norm, NULL);
    if (status == PLM_OK)
        status = load_tensor(file, "output.weight", model->n_embd, model->n_vocab, false,
                             &model->output.w, &model->output.block_size);
    if (status == PLM_OK)
        status = load_tensor(file, "rope_freqs.weight", model->head_dim / 2, 1, false,
                             &model->rope_freqs, NULL);
    if (status != PLM_OK)
        return status;

    model->layers = calloc((size_t)model->n_layer + 1, sizeof *model->layers);
    if (!model->layers)
        return plm_fail(PLM_ERR_NOMEM, "reference: out of memory");
    for (int i = 0; status == PLM_OK && i < model->n_layer; i++)
        status = load_layer(file, model, i, qwen2, qwen3, &model->layers[i]);
    return status;
}

int ref_model_load(const char *path, struct ref_model **model)
{
    *model = NULL;
    struct gguf_file *file;
    int status = gguf_open(path, &file);
    if (status != PLM_OK)
        return status;
    struct ref_model *loaded = calloc(1, sizeof *loaded);
    status = loaded ? load_model(file, loaded)
                    : plm_fail(PLM_ERR_NOMEM, "reference: out of memory");
    gguf_free(file);
    if (status != PLM_OK) {
        ref_model_free(loaded);
        return status;
    }
    *model = loaded;
    return PLM_OK;
}

void ref_model_free(struct ref_model *model)
{
    if (!model)
        return;
    for (int i = 0; model->layers && i < model->n_layer; i++) {
        struct ref_layer *layer = &model->layers[i];
        double *all[] = {layer->attn_norm, layer->wq.w,   layer->wk.w,     layer->wv.w,
                         layer->bq,        layer->bk,     layer->bv,       layer->q_norm,
                         layer->k_norm,    layer->wo.w,   layer->ffn_norm, layer->w_gate.w,
                         layer->w_up.w,    layer->w_down.w};
        for (size_t j = 0; j < sizeof all / sizeof all[0]; j++)
            free(all[j]);
    }
    free(model->layers);
    free(model->token_embd.w);
    free(model->output_norm);
    free(model->output.w);
    free(model->rope_freqs);
    free(model);
}

int ref_model_n_vocab(const struct ref_model *model)
{
    return model->n_vocab;
}

/* ------------------------------------------------------------------ math */

void ref_rmsnorm(double *out, const double *x, const double *weight, int n, double eps)
{
    double sum_squares = 0.0;
    for (int i = 0; i < n; i++)
        sum_squares += x[i] * x[i];
    double scale = 1.0 / sqrt(sum_squares / n + eps);
    for (int i = 0; i < n; i++)
        out[i] = x[i] * scale * (weight ? weight[i] : 1.0);
}

void ref_rope(double *head, int head_dim, int pos, double freq_base, const double *freq_factors,
              bool neox)
{
    int n_pairs = head_dim / 2;
    for (int i = 0; i < n_pairs; i++) {
        double freq = pow(freq_base, -2.0 * i / head_dim);
        if (freq_factors)
            freq /= freq_factors[i];
        double angle = pos * freq;
        int first = neox ? i : 2 * i;
        int second = neox ? i + n_pairs : 2 * i + 1;
        double a = head[first], b = head[second];
        head[first] = a * cos(angle) - b * sin(angle);
        head[second] = a * sin(angle) + b * cos(angle);
    }
}

/* Rounds each block of n values to 8 bits the way the engine's integer kernels
 * do: d = max|x| / 127, x -> d * round(x / d), halves away from zero. */
static void round_to_8_bits(double *x, int n, int block_size)
{
    for (int start = 0; start < n; start += block_size) {
        double max = 0.0;
        for (int i = start; i < start + block_size; i++)
            max = fmax(max, fabs(x[i]));
        double d = max / 127.0;
        for (int i = start; i < start + block_size; i++)
            x[i] = d > 0.0 ? d * round(x[i] / d) : 0.0;
    }
}

/* out = W x (+ bias), W being n_out rows of n_in. For REF_ACTIVATIONS_Q8 and a
 * quantized W, x is first rounded (a copy of it, in scratch). */
static void matvec(double *out, const struct ref_matrix *w, const double *bias, const double *x,
                   int n_in, int n_out, enum ref_activations activations, double *scratch)
{
    if (activations == REF_ACTIVATIONS_Q8 && w->block_size > 1) {
        memcpy(scratch, x, (size_t)n_in * sizeof(double));
        round_to_8_bits(scratch, n_in, w->block_size);
        x = scratch;
    }
    for (int r = 0; r < n_out; r++) {
        double sum = bias ? bias[r] : 0.0;
        for (int i = 0; i < n_in; i++)
            sum += w->w[(size_t)r * n_in + i] * x[i];
        out[r] = sum;
    }
}

static double silu(double z)
{
    return z / (1.0 + exp(-z));
}

/* Scratch for one forward pass; the caches hold k and v of every position. */
struct ref_state {
    enum ref_activations activations;
    double *x, *h, *q, *attn, *scores, *gate, *up;
    double *rounded; /* a matrix product's rounded input: max(n_embd, q_dim, n_ff) */
    double *k_cache, *v_cache; /* [n_layer][n_tokens][kv_dim] */
};

/* q: the rotated query of one head at position pos; k/v: that head's kv head at
 * positions 0..pos (rows of kv_dim, starting at its offset). */
static void attend_head(const struct ref_model *model, const double *q, const double *k,
                        const double *v, int pos, double *scores, double *out)
{
    int head_dim = model->head_dim, kv_dim = model->n_head_kv * head_dim;
    double max_score = -INFINITY;
    for (int j = 0; j <= pos; j++) {
        double dot = 0.0;
        for (int d = 0; d < head_dim; d++)
            dot += q[d] * k[(size_t)j * kv_dim + d];
        scores[j] = dot / sqrt((double)head_dim);
        max_score = fmax(max_score, scores[j]);
    }
    double total = 0.0;
    for (int j = 0; j <= pos; j++) {
        scores[j] = exp(scores[j] - max_score);
        total += scores[j];
    }
    for (int d = 0; d < head_dim; d++)
        out[d] = 0.0;
    for (int j = 0; j <= pos; j++)
        for (int d = 0; d < head_dim; d++)
            out[d] += scores[j] / total * v[(size_t)j * kv_dim + d];
}

static void attention(const struct ref_model *model, const struct ref_layer *layer,
                      struct ref_state *s, double *k_cache, double *v_cache, int pos)
{
    int head_dim = model->head_dim, n_embd = model->n_embd;
    int q_dim = model->n_head * head_dim, kv_dim = model->n_head_kv * head_dim;
    double *k = k_cache + (size_t)pos * kv_dim, *v = v_cache + (size_t)pos * kv_dim;

    ref_rmsnorm(s->h, s->x, layer->attn_norm, n_embd, model->norm_eps);
    matvec(s->q, &layer->wq, layer->bq, s->h, n_embd, q_dim, s->activations, s->rounded);
    matvec(k, &layer->wk, layer->bk, s->h, n_embd, kv_dim, s->activations, s->rounded);
    matvec(v, &layer->wv, layer->bv, s->h, n_embd, kv_dim, s->activations, s->rounded);
    for (int head = 0; head < model->n_head; head++) {
        double *q_head = s->q + head * head_dim;
        if (layer->q_norm)
            ref_rmsnorm(q_head, q_head, layer->q_norm, head_dim, model->norm_eps);
        ref_rope(q_head, head_dim, pos, model->rope_freq_base, model->rope_freqs, model->neox);
    }
    for (int head = 0; head < model->n_head_kv; head++) {
        double *k_head = k + head * head_dim;
        if (layer->k_norm)
            ref_rmsnorm(k_head, k_head, layer->k_norm, head_dim, model->norm_eps);
        ref_rope(k_head, head_dim, pos, model->rope_freq_base, model->rope_freqs, model->neox);
    }

    /* Grouped-query attention: consecutive query heads share one kv head. */
    int group = model->n_head / model->n_head_kv;
    for (int head = 0; head < model->n_head; head++) {
        int kv_head = head / group;
        attend_head(model, s->q + head * head_dim, k_cache + kv_head * head_dim,
                    v_cache + kv_head * head_dim, pos, s->scores, s->attn + head * head_dim);
    }
    matvec(s->h, &layer->wo, NULL, s->attn, q_dim, n_embd, s->activations, s->rounded);
    for (int i = 0; i < n_embd; i++)
        s->x[i] += s->h[i];
}

static void feed_forward(const struct ref_model *model, const struct ref_layer *layer,
                         struct ref_state *s)
{
    int n_embd = model->n_embd, n_ff = model->n_ff;
    ref_rmsnorm(s->h, s->x, layer->ffn_norm, n_embd, model->norm_eps);
    matvec(s->gate, &layer->w_gate, NULL, s->h, n_embd, n_ff, s->activations, s->rounded);
    matvec(s->up, &layer->w_up, NULL, s->h, n_embd, n_ff, s->activations, s->rounded);
    for (int i = 0; i < n_ff; i++)
        s->gate[i] = silu(s->gate[i]) * s->up[i];
    matvec(s->h, &layer->w_down, NULL, s->gate, n_ff, n_embd, s->activations, s->rounded);
    for (int i = 0; i < n_embd; i++)
        s->x[i] += s->h[i];
}

int ref_forward(const struct ref_model *model, const int32_t *tokens, int n_tokens,
                enum ref_activations activations, double *logits)
{
    int n_embd = model->n_embd, q_dim = model->n_head * model->head_dim;
    size_t kv_dim = (size_t)model->n_head_kv * model->head_dim;
    size_t cache_size = (size_t)model->n_layer * n_tokens * kv_dim;
    if (n_tokens <= 0)
        return plm_fail(PLM_ERR_ARG, "reference: no tokens");
    for (int t = 0; t < n_tokens; t++)
        if (tokens[t] < 0 || tokens[t] >= model->n_vocab)
            return plm_fail(PLM_ERR_ARG, "reference: token %d outside the vocabulary", tokens[t]);

    int widest = n_embd > q_dim ? n_embd : q_dim;
    widest = widest > model->n_ff ? widest : model->n_ff;
    struct ref_state s = {
        .activations = activations,
        .x = malloc(n_embd * sizeof(double)),
        .h = malloc(n_embd * sizeof(double)),
        .q = malloc(q_dim * sizeof(double)),
        .attn = malloc(q_dim * sizeof(double)),
        .scores = malloc(n_tokens * sizeof(double)),
        .gate = malloc(model->n_ff * sizeof(double)),
        .up = malloc(model->n_ff * sizeof(double)),
        .rounded = malloc(widest * sizeof(double)),
        .k_cache = malloc((cache_size + 1) * sizeof(double)), /* + 1: no malloc(0) at 0 layers */
        .v_cache = malloc((cache_size + 1) * sizeof(double)),
    };
    int status = PLM_OK;
    if (!s.x || !s.h || !s.q || !s.attn || !s.scores || !s.gate || !s.up || !s.rounded ||
        !s.k_cache || !s.v_cache)
        status = plm_fail(PLM_ERR_NOMEM, "reference: out of memory");

    const struct ref_matrix *output = model->output.w ? &model->output : &model->token_embd;
    for (int pos = 0; status == PLM_OK && pos < n_tokens; pos++) {
        memcpy(s.x, model->token_embd.w + (size_t)tokens[pos] * n_embd, n_embd * sizeof(double));
        for (int l = 0; l < model->n_layer; l++) {
            size_t layer_cache = (size_t)l * n_tokens * kv_dim;
            attention(model, &model->layers[l], &s, s.k_cache + layer_cache,
                      s.v_cache + layer_cache, pos);
            feed_forward(model, &model->layers[l], &s);
        }
        ref_rmsnorm(s.h, s.x, model->output_norm, n_embd, model->norm_eps);
        matvec(logits + (size_t)pos * model->n_vocab, output, NULL, s.h, n_embd, model->n_vocab,
               activations, s.rounded);
    }

    free(s.x);
    free(s.h);
    free(s.q);
    free(s.attn);
    free(s.scores);
    free(s.gate);
    free(s.up);
    free(s.rounded);
    free(s.k_cache);
    free(s.v_cache);
    return status;
}
