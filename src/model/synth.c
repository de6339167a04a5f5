/*
 * Synthetic models: random weights in the exact shape of real ones (see synth.h).
 *
 * Writing a model that may not fit in memory (Llama-3.2-1B is 5 GB in F32)
 * through a GGUF writer that borrows every tensor's data until it writes the
 * file takes two passes:
 *   1. the writer lays the file out (metadata, tensor infos, alignment), every
 *      tensor's data read from one mapping of a sparse scratch file, which
 *      reads as zeros;
 *   2. the file is reopened with the GGUF reader, which says where each
 *      tensor's data starts, and the weights are generated, converted and
 *      written in place a few rows at a time.
 * The process holds a few megabytes whatever the model size (plus clean,
 * reclaimable page cache for the zeros); the price is writing the file twice.
 * The file appears under its final name only when complete.
 */
#include "model/synth.h"
#include "quant/presets.h"
#include "quant/quantize.h"

#include "core/error.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "pocketlm.h"
#include "tensor/types.h"
#include "tokenizer/vocab.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <math.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

/* ------------------------------------------------------------------ shapes */

/* From each model's config.json on the Hugging Face Hub (docs/synth.md). */
static const struct synth_shape shapes[] = {
    {
        .name = "smollm2-135m", .hf_repo = "HuggingFaceTB/SmolLM2-135M", .arch = SYNTH_LLAMA,
        .n_vocab = 49152, .n_ctx_train = 8192, .n_embd = 576, .n_layer = 30, .n_head = 9,
        .n_head_kv = 3, .head_dim = 64, .head_dim_in_config = true, .n_ff = 1536,
        .rope_freq_base = 100000.0f, .norm_eps = 1e-5f,
    },
    {
        .name = "smollm2-360m", .hf_repo = "HuggingFaceTB/SmolLM2-360M", .arch = SYNTH_LLAMA,
        .n_vocab = 49152, .n_ctx_train = 8192, .n_embd = 960, .n_layer = 32, .n_head = 15,
        .n_head_kv = 5, .head_dim = 64, .head_dim_in_config = true, .n_ff = 2560,
        .rope_freq_base = 100000.0f, .norm_eps = 1e-5f,
    },
    {
        .name = "qwen2.5-0.5b", .hf_repo = "Qwen/Qwen2.5-0.5B", .arch = SYNTH_QWEN2,
        .n_vocab = 151936, .n_ctx_train = 32768, .n_embd = 896, .n_layer = 24, .n_head = 14,
        .n_head_kv = 2, .head_dim = 64, .head_dim_in_config = false, .n_ff = 4864,
        .rope_freq_base = 1000000.0f, .norm_eps = 1e-6f,
    },
    {
        .name = "llama-3.2-1b", .hf_repo = "meta-llama/Llama-3.2-1B", .arch = SYNTH_LLAMA,
        .n_vocab = 128256, .n_ctx_train = 131072, .n_embd = 2048, .n_layer = 16, .n_head = 32,
        .n_head_kv = 8, .head_dim = 64, .head_dim_in_config = true, .n_ff = 8192,
        .rope_freq_base = 500000.0f, .norm_eps = 1e-5f,
        .llama3_rope = {.factor = 32.0f, .low_freq_factor = 1.0f, .high_freq_factor = 4.0f,
                        .original_context = 8192},
    },
    {
        .name = "qwen3-0.6b", .hf_repo = "Qwen/Qwen3-0.6B", .arch = SYNTH_QWEN3,
        .n_vocab = 151936, .n_ctx_train = 40960, .n_embd = 1024, .n_layer = 28, .n_head = 16,
        .n_head_kv = 8, .head_dim = 128, .head_dim_in_config = true, .n_ff = 3072,
        .rope_freq_base = 1000000.0f, .norm_eps = 1e-6f,
    },
};
#define N_SHAPES ((int)(sizeof shapes / sizeof shapes[0]))

static const char *const arch_names[] = {
    [SYNTH_LLAMA] = "llama",
    [SYNTH_QWEN2] = "qwen2",
    [SYNTH_QWEN3] = "qwen3",
};

const struct synth_shape *synth_find_shape(const char *name)
{
    for (int i = 0; name && i < N_SHAPES; i++)
        if (strcmp(shapes[i].name, name) == 0)
            return &shapes[i];
    return NULL;
}

const struct synth_shape *synth_shape_at(int i)
{
    return i >= 0 && i < N_SHAPES ? &shapes[i] : NULL;
}

const char *plm_synth_shape_name(int i)
{
    const struct synth_shape *shape = synth_shape_at(i);
    return shape ? shape->name : NULL;
}

/* ---------------------------------------------------------- random numbers */

/* SplitMix64: a 64-bit state stepped by a constant and hashed; good enough
 * statistics for weights, and each row can start its own stream from a hash,
 * so the values never depend on how the work is chunked. */
static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

struct normal_rng {
    uint64_t state;
    bool has_spare;
    double spare;
};

static uint64_t rng_u64(struct normal_rng *rng)
{
    rng->state += 0x9E3779B97F4A7C15ull;
    return mix64(rng->state);
}

/* Uniform in [-1, 1). */
static double rng_signed_unit(struct normal_rng *rng)
{
    return (double)(rng_u64(rng) >> 11) * 0x1.0p-52 - 1.0;
}

/* Standard normal by Marsaglia's polar method: a point drawn uniformly in the
 * unit disc gives two independent normals with one log and one square root
 * (no sine or cosine, unlike Box-Muller). */
static double rng_normal(struct normal_rng *rng)
{
    if (rng->has_spare) {
        rng->has_spare = false;
        return rng->spare;
    }
    double u, v, radius2;
    do {
        u = rng_signed_unit(rng);
        v = rng_signed_unit(rng);
        radius2 = u * u + v * v;
    } while (radius2 >= 1.0 || radius2 == 0.0);
    double scale = sqrt(-2.0 * log(radius2) / radius2);
    rng->spare = v * scale;
    rng->has_spare = true;
    return u * scale;
}

/* FNV-1a of a tensor name, so each tensor has its own streams and keeps its
 * values when other tensors come or go (--layers). */
static uint64_t name_hash(const char *name)
{
    uint64_t h = 0xCBF29CE484222325ull;
    for (const unsigned char *p = (const unsigned char *)name; *p; p++)
        h = (h ^ *p) * 0x100000001B3ull;
    return h;
}

/* ------------------------------------------------------------ tensor plan */

enum tensor_init {
    INIT_MATRIX,     /* normal / sqrt(row length): unit-variance outputs for unit inputs */
    INIT_NORM,       /* 1 + 0.1 * normal: RMSNorm gains near 1 */
    INIT_BIAS,       /* 0.1 * normal */
    INIT_ROPE_FREQS, /* Llama 3 rope scaling factors, not random */
};

struct synth_tensor {
    char name[48];
    int type;
    int n_dims;
    int64_t ne[2];
    enum tensor_init init;
};

/* A layer has at most 12 tensors (qwen2); the model 3 more. */
#define MAX_LAYER_TENSORS 12
#define MAX_OTHER_TENSORS 3

struct synth_plan {
    struct synth_tensor *tensors;
    int n_tensors;
};

static void plan_add(struct synth_plan *plan, const char *name, int type, int64_t ne0,
                     int64_t ne1, enum tensor_init init)
{
    struct synth_tensor *t = &plan->tensors[plan->n_tensors++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->type = init == INIT_MATRIX ? plm_quant_storage_type(type, ne0) : PLM_TYPE_F32;
    t->n_dims = init == INIT_MATRIX ? 2 : 1;
    t->ne[0] = ne0;
    t->ne[1] = init == INIT_MATRIX ? ne1 : 1;
    t->init = init;
}

/* "blk.<il>.<suffix>" in buf, which holds 48 bytes. */
static const char *layer_name(char *buf, int il, const char *suffix)
{
    snprintf(buf, 48, "blk.%d.%s", il, suffix);
    return buf;
}

/* The converter's tensors, in its order: generated extras (rope_freqs) first,
 * then the checkpoint's, then the final norm. 1-D tensors are F32. */
static void plan_tensors(struct synth_plan *plan, const struct synth_shape *s, int n_layer,
                         int type)
{
    const int64_t q_dim = (int64_t)s->n_head * s->head_dim;
    const int64_t kv_dim = (int64_t)s->n_head_kv * s->head_dim;
    char name[48];
    plan->n_tensors = 0;
    if (s->llama3_rope.factor > 0)
        plan_add(plan, "rope_freqs.weight", type, s->head_dim / 2, 1, INIT_ROPE_FREQS);
    plan_add(plan, "token_embd.weight", type, s->n_embd, s->n_vocab, INIT_MATRIX);
    for (int il = 0; il < n_layer; il++) {
        plan_add(plan, layer_name(name, il, "attn_norm.weight"), type, s->n_embd, 1, INIT_NORM);
        plan_add(plan, layer_name(name, il, "attn_q.weight"), type, s->n_embd, q_dim, INIT_MATRIX);
        plan_add(plan, layer_name(name, il, "attn_k.weight"), type, s->n_embd, kv_dim, INIT_MATRIX);
        plan_add(plan, layer_name(name, il, "attn_v.weight"), type, s->n_embd, kv_dim, INIT_MATRIX);
        if (s->arch == SYNTH_QWEN2) {
            plan_add(plan, layer_name(name, il, "attn_q.bias"), type, q_dim, 1, INIT_BIAS);
            plan_add(plan, layer_name(name, il, "attn_k.bias"), type, kv_dim, 1, INIT_BIAS);
            plan_add(plan, layer_name(name, il, "attn_v.bias"), type, kv_dim, 1, INIT_BIAS);
        }
        if (s->arch == SYNTH_QWEN3) {
            plan_add(plan, layer_name(name, il, "attn_q_norm.weight"), type, s->head_dim, 1, INIT_NORM);
            plan_add(plan, layer_name(name, il, "attn_k_norm.weight"), type, s->head_dim, 1, INIT_NORM);
        }
        plan_add(plan, layer_name(name, il, "attn_output.weight"), type, q_dim, s->n_embd, INIT_MATRIX);
        plan_add(plan, layer_name(name, il, "ffn_norm.weight"), type, s->n_embd, 1, INIT_NORM);
        plan_add(plan, layer_name(name, il, "ffn_gate.weight"), type, s->n_embd, s->n_ff, INIT_MATRIX);
        plan_add(plan, layer_name(name, il, "ffn_up.weight"), type, s->n_embd, s->n_ff, INIT_MATRIX);
        plan_add(plan, layer_name(name, il, "ffn_down.weight"), type, s->n_ff, s->n_embd, INIT_MATRIX);
    }
    plan_add(plan, "output_norm.weight", type, s->n_embd, 1, INIT_NORM);
}

/* One note per distinct row length whose matrices fall back to another type. */
static void note_fallbacks(const struct synth_plan *plan, int type, const char *shape_name,
                           void (*on_note)(void *, const char *), void *user)
{
    int64_t noted[8];
    int n_noted = 0;
    for (int i = 0; i < plan->n_tensors && on_note; i++) {
        const struct synth_tensor *t = &plan->tensors[i];
        if (t->init != INIT_MATRIX || t->type == type)
            continue;
        bool seen = false;
        for (int j = 0; j < n_noted; j++)
            seen = seen || noted[j] == t->ne[0];
        if (seen || n_noted == 8)
            continue;
        noted[n_noted++] = t->ne[0];
        int count = 0;
        for (int j = 0; j < plan->n_tensors; j++)
            count += plan->tensors[j].init == INIT_MATRIX && plan->tensors[j].ne[0] == t->ne[0];
        char note[256];
        snprintf(note, sizeof note,
                 "%s: %d matrices have rows of %" PRId64 ", not a multiple of the %s block "
                 "size %d: stored as %s (llama.cpp's fallback)",
                 shape_name, count, t->ne[0], plm_type_name(type), plm_type_traits(type)->block_size,
                 plm_type_name(t->type));
        on_note(user, note);
    }
}

/* --------------------------------------------------------------- metadata */

/* "<arch>.<suffix>" = value */
static int set_arch_u32(struct gguf_writer *w, const char *arch, const char *suffix, int value)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_writer_set_u32(w, key, (uint32_t)value);
}

static int set_arch_f32(struct gguf_writer *w, const char *arch, const char *suffix, float value)
{
    char key[96];
    snprintf(key, sizeof key, "%s.%s", arch, suffix);
    return gguf_writer_set_f32(w, key, value);
}

/* The keys convert_hf_to_gguf.py writes, in its order (the tokenizer's and
 * general.quantization_version follow). */
static int set_model_metadata(struct gguf_writer *w, const struct synth_shape *s, int n_layer,
                              int type, uint64_t seed)
{
    const char *arch = arch_names[s->arch];
    const char *display_name = strchr(s->hf_repo, '/') + 1;
    char name[96], layers[64] = "", description[256];
    snprintf(name, sizeof name, "%s (synthetic)", display_name);
    if (n_layer != s->n_layer)
        snprintf(layers, sizeof layers, " (%d of its %d layers)", n_layer, s->n_layer);
    snprintf(description, sizeof description,
             "random weights (seed %" PRIu64 ") in the shape of %s%s, written by pocketlm synth",
             seed, s->hf_repo, layers);
    int rc = gguf_writer_set_str(w, "general.architecture", arch);
    if (!rc) rc = gguf_writer_set_str(w, "general.type", "model");
    if (!rc) rc = gguf_writer_set_str(w, "general.name", name);
    if (!rc) rc = gguf_writer_set_str(w, "general.description", description);
    if (!rc) rc = set_arch_u32(w, arch, "block_count", n_layer);
    if (!rc) rc = set_arch_u32(w, arch, "context_length", s->n_ctx_train);
    if (!rc) rc = set_arch_u32(w, arch, "embedding_length", s->n_embd);
    if (!rc) rc = set_arch_u32(w, arch, "feed_forward_length", s->n_ff);
    if (!rc) rc = set_arch_u32(w, arch, "attention.head_count", s->n_head);
    if (!rc) rc = set_arch_u32(w, arch, "attention.head_count_kv", s->n_head_kv);
    if (!rc) rc = set_arch_f32(w, arch, "rope.freq_base", s->rope_freq_base);
    if (!rc) rc = set_arch_f32(w, arch, "attention.layer_norm_rms_epsilon", s->norm_eps);
    if (!rc && s->head_dim_in_config) {
        rc = set_arch_u32(w, arch, "attention.key_length", s->head_dim);
        if (!rc) rc = set_arch_u32(w, arch, "attention.value_length", s->head_dim);
    }
    if (!rc) rc = gguf_writer_set_u32(w, "general.file_type", (uint32_t)quant_file_type_of(type));
    if (!rc && s->arch == SYNTH_LLAMA) {
        rc = set_arch_u32(w, arch, "vocab_size", s->n_vocab);
        if (!rc) rc = set_arch_u32(w, arch, "rope.dimension_count", s->head_dim);
    }
    return rc;
}

/* A vocabulary before padding: n tokens, scores and types optional (NULL). */
struct vocab_list {
    int n;
    const char **texts;
    size_t *lens;
    float *scores;
    int32_t *types;
};

static void vocab_list_free(struct vocab_list *v)
{
    free(v->texts);
    free(v->lens);
    free(v->scores);
    free(v->types);
}

/* Arrays for n_vocab entries, the first n filled by the caller. */
static int vocab_list_alloc(struct vocab_list *v, int n, int n_vocab, bool with_scores)
{
    *v = (struct vocab_list){.n = n};
    v->texts = calloc((size_t)n_vocab, sizeof *v->texts);
    v->lens = calloc((size_t)n_vocab, sizeof *v->lens);
    v->types = calloc((size_t)n_vocab, sizeof *v->types);
    v->scores = with_scores ? calloc((size_t)n_vocab, sizeof *v->scores) : NULL;
    if (!v->texts || !v->lens || !v->types || (with_scores && !v->scores)) {
        vocab_list_free(v);
        return plm_fail(PLM_ERR_NOMEM, "synth: out of memory for %d tokens", n_vocab);
    }
    return PLM_OK;
}

/* Writes tokens, scores (when the list has them) and token types, padded to
 * n_vocab with unused "[PAD<id>]" tokens as llama.cpp's converter pads a
 * vocabulary smaller than the embedding (score -1000, type unused). */
static int write_padded_vocab(struct gguf_writer *w, struct vocab_list *v, int n_vocab)
{
    enum { PAD_TEXT_MAX = 24 };
    char *pad_texts = malloc((size_t)(n_vocab - v->n) * PAD_TEXT_MAX + 1);
    if (!pad_texts)
        return plm_fail(PLM_ERR_NOMEM, "synth: out of memory for %d tokens", n_vocab);
    for (int id = v->n; id < n_vocab; id++) {
        char *text = pad_texts + (size_t)(id - v->n) * PAD_TEXT_MAX;
        v->lens[id] = (size_t)snprintf(text, PAD_TEXT_MAX, "[PAD%d]", id);
        v->texts[id] = text;
        v->types[id] = PLM_TOKEN_UNUSED;
        if (v->scores)
            v->scores[id] = -1000.0f;
    }
    int rc = gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", v->texts, v->lens, (uint64_t)n_vocab);
    if (!rc && v->scores)
        rc = gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, v->scores, (uint64_t)n_vocab);
    if (!rc)
        rc = gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, v->types, (uint64_t)n_vocab);
    free(pad_texts);
    return rc;
}

/* A numeric per-token array of the vocab file: absent, or one entry per token. */
static int per_token_array(const struct gguf_file *f, const char *path, const char *key, int n,
                           const struct gguf_kv **kv)
{
    *kv = gguf_find(f, key);
    if (*kv && ((*kv)->type != GGUF_TYPE_ARRAY || (*kv)->count != (uint64_t)n ||
                (*kv)->elem_type == GGUF_TYPE_STRING || (*kv)->elem_type == GGUF_TYPE_ARRAY))
        return plm_fail(PLM_ERR_FORMAT, "%s: %s is not a numeric array of %d entries", path, key, n);
    return PLM_OK;
}

/* Reads the tokens, scores and types of a vocab file into v (sized n_vocab). */
static int read_vocab_list(const struct gguf_file *f, const char *path, int n_vocab,
                           const char *shape_name, struct vocab_list *v)
{
    const struct gguf_kv *tokens = gguf_find(f, "tokenizer.ggml.tokens");
    if (!tokens || tokens->type != GGUF_TYPE_ARRAY || tokens->elem_type != GGUF_TYPE_STRING ||
        tokens->count == 0)
        return plm_fail(PLM_ERR_FORMAT, "%s: no tokenizer.ggml.tokens string array (not a vocab file?)", path);
    if (tokens->count > (uint64_t)n_vocab)
        return plm_fail(PLM_ERR_LIMIT,
                        "%s: the vocabulary has %" PRIu64 " tokens, more than %s's %d",
                        path, tokens->count, shape_name, n_vocab);
    int n = (int)tokens->count;
    const struct gguf_kv *scores, *types;
    int rc;
    if ((rc = per_token_array(f, path, "tokenizer.ggml.scores", n, &scores)) ||
        (rc = per_token_array(f, path, "tokenizer.ggml.token_type", n, &types)) ||
        (rc = vocab_list_alloc(v, n, n_vocab, scores != NULL)))
        return rc;
    for (int id = 0; id < n; id++) {
        int64_t type = PLM_TOKEN_NORMAL; /* llama.cpp's default when a file has no types */
        v->texts[id] = tokens->strings[id].ptr;
        v->lens[id] = tokens->strings[id].len;
        if (scores)
            gguf_array_f32(scores, (uint64_t)id, &v->scores[id]);
        if (types)
            gguf_array_i64(types, (uint64_t)id, &type);
        v->types[id] = (int32_t)type;
    }
    return PLM_OK;
}

/* Every tokenizer.* key of the vocab file, in its order, with the per-token
 * arrays padded to n_vocab. */
static int set_vocab_from_file(struct gguf_writer *w, const char *path, int n_vocab,
                               const char *shape_name)
{
    struct gguf_file *f;
    int rc = gguf_open(path, &f);
    if (rc)
        return rc;
    struct vocab_list v = {0};
    rc = read_vocab_list(f, path, n_vocab, shape_name, &v);
    for (uint64_t i = 0; !rc && i < f->n_kv; i++) {
        const char *key = f->kv[i].key;
        if (strncmp(key, "tokenizer.", 10) != 0 || strcmp(key, "tokenizer.ggml.scores") == 0 ||
            strcmp(key, "tokenizer.ggml.token_type") == 0)
            continue; /* the scores and types go with the tokens */
        if (strcmp(key, "tokenizer.ggml.tokens") == 0)
            rc = write_padded_vocab(w, &v, n_vocab);
        else
            rc = gguf_writer_copy_kv(w, &f->kv[i]);
    }
    vocab_list_free(&v);
    gguf_free(f);
    return rc;
}

/* Without a vocab file: a SentencePiece-style vocabulary of <unk>, <s>, </s>,
 * the 256 byte tokens <0x00>..<0xFF> and the word-boundary piece "▁", padded
 * to n_vocab. Any text tokenizes (spaces to "▁", everything else byte by byte)
 * and decodes back to itself; without "▁" a space would fall back to the bytes
 * of "▁" and decode as that character. */
static int set_byte_vocab(struct gguf_writer *w, int n_vocab)
{
    static const char *const specials[] = {"<unk>", "<s>", "</s>"};
    enum { FIRST_BYTE = 3, WORD_BOUNDARY = FIRST_BYTE + 256, N_TOKENS = WORD_BOUNDARY + 1 };
    char byte_texts[256][7];
    struct vocab_list v;
    int rc = vocab_list_alloc(&v, N_TOKENS, n_vocab, true);
    if (rc)
        return rc;
    for (int id = 0; id < FIRST_BYTE; id++) {
        v.texts[id] = specials[id];
        v.lens[id] = strlen(specials[id]);
        v.types[id] = id == 0 ? PLM_TOKEN_UNKNOWN : PLM_TOKEN_CONTROL;
    }
    for (int byte = 0; byte < 256; byte++) {
        snprintf(byte_texts[byte], sizeof byte_texts[byte], "<0x%02X>", byte);
        v.texts[FIRST_BYTE + byte] = byte_texts[byte];
        v.lens[FIRST_BYTE + byte] = 6;
        v.types[FIRST_BYTE + byte] = PLM_TOKEN_BYTE;
    }
    v.texts[WORD_BOUNDARY] = "\xe2\x96\x81"; /* U+2581 */
    v.lens[WORD_BOUNDARY] = 3;
    v.types[WORD_BOUNDARY] = PLM_TOKEN_NORMAL;
    rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
    if (!rc) rc = write_padded_vocab(w, &v, n_vocab);
    if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", 1);
    if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", 2);
    if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", 0);
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    vocab_list_free(&v);
    return rc;
}

/* ----------------------------------------------------------------- weights */

/* Llama 3's rope scaling as the converter computes rope_freqs.weight: for
 * each frequency of the head, 1 (short wavelengths), the scale factor (long
 * ones) or a smooth blend in between; the forward pass divides by it. */
static float llama3_rope_factor(const struct synth_shape *s, int i)
{
    float base = s->rope_freq_base, factor = s->llama3_rope.factor;
    float low = s->llama3_rope.low_freq_factor, high = s->llama3_rope.high_freq_factor;
    float old_context = (float)s->llama3_rope.original_context;
    float freq = 1.0f / powf(base, (float)(2 * i) / (float)s->head_dim);
    float wavelen = 2.0f * (float)M_PI / freq;
    if (wavelen < old_context / high)
        return 1.0f;
    if (wavelen > old_context / low)
        return factor;
    float smooth = (old_context / wavelen - low) / (high - low);
    return 1.0f / ((1.0f - smooth) / factor + smooth);
}

/* Values of rows [row0, row0 + n_rows) of a tensor; row r draws from its own
 * stream, seeded by the file seed, the tensor's name and r. */
static void fill_rows(const struct synth_shape *s, const struct synth_tensor *t, uint64_t seed,
                      int64_t row0, int64_t n_rows, float *values)
{
    const int64_t n = t->ne[0];
    const double matrix_scale = 1.0 / sqrt((double)n);
    const uint64_t tensor_seed = mix64(seed ^ name_hash(t->name));
    for (int64_t r = 0; r < n_rows; r++) {
        struct normal_rng rng = {.state = mix64(tensor_seed + (uint64_t)(row0 + r))};
        float *row = values + r * n;
        for (int64_t i = 0; i < n; i++) {
            switch (t->init) {
            case INIT_MATRIX: row[i] = (float)(rng_normal(&rng) * matrix_scale); break;
            case INIT_NORM: row[i] = (float)(1.0 + 0.1 * rng_normal(&rng)); break;
            case INIT_BIAS: row[i] = (float)(0.1 * rng_normal(&rng)); break;
            case INIT_ROPE_FREQS: row[i] = llama3_rope_factor(s, (int)i); break;
            }
        }
    }
}

static int write_at(int fd, const char *path, const void *bytes, size_t size, uint64_t offset)
{
    const uint8_t *p = bytes;
    while (size > 0) {
        ssize_t n = pwrite(fd, p, size, (off_t)offset);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return plm_fail(PLM_ERR_IO, "cannot write '%s': %s", path, n < 0 ? strerror(errno) : "short write");
        p += n;
        size -= (size_t)n;
        offset += (uint64_t)n;
    }
    return PLM_OK;
}

/* Elements each thread generates at a time: a few megabytes of floats and of
 * encoded rows. */
#define CHUNK_ELEMENTS (1 << 20)
#define MAX_THREADS 16

/* Rows [row0, row0 + n_rows) of a tensor, generated and encoded by one thread. */
struct row_job {
    const struct synth_shape *shape;
    const struct synth_tensor *tensor;
    uint64_t seed;
    int64_t row0, n_rows;
    float *values;    /* room for n_rows rows of floats */
    uint8_t *encoded; /* where the n_rows encoded rows go */
};

static void *encode_rows(void *arg)
{
    const struct row_job *job = arg;
    const int64_t n = job->tensor->ne[0];
    const size_t row_bytes = plm_row_bytes(job->tensor->type, n);
    fill_rows(job->shape, job->tensor, job->seed, job->row0, job->n_rows, job->values);
    for (int64_t r = 0; r < job->n_rows; r++)
        plm_quantize_row(job->tensor->type, job->values + r * n, job->encoded + (size_t)r * row_bytes, n);
    return NULL;
}

/* Buffers for n_threads threads, each CHUNK_ELEMENTS (or one row, if longer). */
struct work_buffers {
    int n_threads;
    size_t elements_per_thread;
    float *values;
    uint8_t *encoded; /* no type is wider than F32 */
};

/* Encodes rows [row0, row0 + n_rows), spread over the threads, into encoded.
 * Every row draws from its own stream, so the result does not depend on the
 * number of threads. */
static void encode_chunk(const struct work_buffers *work, const struct synth_shape *s,
                         const struct synth_tensor *t, uint64_t seed, int64_t row0, int64_t n_rows)
{
    const int64_t n = t->ne[0];
    const size_t row_bytes = plm_row_bytes(t->type, n);
    const int64_t rows_per_thread = (n_rows + work->n_threads - 1) / work->n_threads;
    struct row_job jobs[MAX_THREADS];
    pthread_t threads[MAX_THREADS];
    bool started[MAX_THREADS] = {false};
    int n_jobs = 0;
    for (int64_t first = 0; first < n_rows; first += rows_per_thread, n_jobs++) {
        jobs[n_jobs] = (struct row_job){
            .shape = s, .tensor = t, .seed = seed, .row0 = row0 + first,
            .n_rows = n_rows - first < rows_per_thread ? n_rows - first : rows_per_thread,
            .values = work->values + first * n,
            .encoded = work->encoded + (size_t)first * row_bytes,
        };
    }
    for (int j = 1; j < n_jobs; j++)
        started[j] = pthread_create(&threads[j], NULL, encode_rows, &jobs[j]) == 0;
    for (int j = 0; j < n_jobs; j++)
        if (!started[j])
            encode_rows(&jobs[j]); /* job 0, and any thread that could not start */
    for (int j = 1; j < n_jobs; j++)
        if (started[j])
            pthread_join(threads[j], NULL);
}

/* Generates and encodes a tensor a chunk of rows at a time, writing each chunk
 * at its place in the file (offset = where the tensor's data starts). */
static int write_tensor(int fd, const char *path, const struct work_buffers *work,
                        const struct synth_shape *s, const struct synth_tensor *t, uint64_t seed,
                        uint64_t offset)
{
    const int64_t n = t->ne[0];
    const size_t row_bytes = plm_row_bytes(t->type, n);
    const int64_t rows_per_chunk = (int64_t)(work->elements_per_thread / (size_t)n) * work->n_threads;
    for (int64_t row0 = 0; row0 < t->ne[1]; row0 += rows_per_chunk) {
        int64_t n_rows = t->ne[1] - row0 < rows_per_chunk ? t->ne[1] - row0 : rows_per_chunk;
        encode_chunk(work, s, t, seed, row0, n_rows);
        int rc = write_at(fd, path, work->encoded, (size_t)n_rows * row_bytes,
                          offset + (uint64_t)row0 * row_bytes);
        if (rc)
            return rc;
    }
    return PLM_OK;
}

static int work_buffers_init(struct work_buffers *work, const struct synth_plan *plan)
{
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    work->n_threads = cores < 1 ? 1 : cores > MAX_THREADS ? MAX_THREADS : (int)cores;
    work->elements_per_thread = CHUNK_ELEMENTS;
    for (int i = 0; i < plan->n_tensors; i++)
        if ((size_t)plan->tensors[i].ne[0] > work->elements_per_thread)
            work->elements_per_thread = (size_t)plan->tensors[i].ne[0];
    size_t elements = work->elements_per_thread * (size_t)work->n_threads;
    work->values = malloc(elements * sizeof(float));
    work->encoded = malloc(elements * sizeof(float));
    if (!work->values || !work->encoded)
        return plm_fail(PLM_ERR_NOMEM, "synth: out of memory");
    return PLM_OK;
}

/* Pass 2: fills in every tensor's data of the laid-out file. */
static int write_weights(const char *path, const struct synth_shape *s,
                         const struct synth_plan *plan, uint64_t seed)
{
    struct gguf_file *layout;
    int rc = gguf_open(path, &layout);
    if (rc)
        return rc;
    struct work_buffers work = {0};
    int fd = open(path, O_WRONLY);
    if (fd < 0)
        rc = plm_fail(PLM_ERR_IO, "cannot open '%s' for writing: %s", path, strerror(errno));
    else
        rc = work_buffers_init(&work, plan);
    for (int i = 0; !rc && i < plan->n_tensors; i++) {
        const struct gguf_tensor *t = gguf_find_tensor(layout, plan->tensors[i].name);
        rc = t ? write_tensor(fd, path, &work, s, &plan->tensors[i], seed, layout->data_offset + t->offset)
               : plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' vanished", path, plan->tensors[i].name);
    }
    if (fd >= 0 && close(fd) != 0 && !rc)
        rc = plm_fail(PLM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    free(work.values);
    free(work.encoded);
    gguf_free(layout);
    return rc;
}

/* *zeros = size zero bytes, read-only: a mapping of a sparse file beside
 * path, deleted at once. Its pages are page cache the kernel can drop at any
 * time, where reading an anonymous mapping commits memory on some kernels. */
static int map_zeros(const char *path, size_t size, void **zeros)
{
    *zeros = MAP_FAILED;
    size_t scratch_size = strlen(path) + sizeof ".zeros";
    char *scratch = malloc(scratch_size);
    if (!scratch)
        return plm_fail(PLM_ERR_NOMEM, "synth: out of memory");
    snprintf(scratch, scratch_size, "%s.zeros", path);
    int rc = PLM_OK;
    int fd = open(scratch, O_RDWR | O_CREAT | O_TRUNC, 0600);
    if (fd < 0) {
        rc = plm_fail(PLM_ERR_IO, "cannot create scratch file '%s': %s", scratch, strerror(errno));
    } else {
        unlink(scratch);
        if (ftruncate(fd, (off_t)size) == 0)
            *zeros = mmap(NULL, size, PROT_READ, MAP_SHARED, fd, 0);
        if (*zeros == MAP_FAILED)
            rc = plm_fail(PLM_ERR_IO, "cannot map %zu bytes of '%s': %s", size, scratch, strerror(errno));
        close(fd);
    }
    free(scratch);
    return rc;
}

/* Pass 1: metadata, tensor infos and zeroed data, written by the GGUF writer. */
static int write_layout(const char *path, const struct synth_shape *s, const struct synth_plan *plan,
                        const struct plm_synth_params *p, int n_layer, int type)
{
    struct gguf_writer *w = gguf_writer_new();
    if (!w)
        return plm_fail(PLM_ERR_NOMEM, "synth: out of memory");
    int rc = set_model_metadata(w, s, n_layer, type, p->seed);
    if (!rc)
        rc = p->vocab_path ? set_vocab_from_file(w, p->vocab_path, s->n_vocab, s->name)
                           : set_byte_vocab(w, s->n_vocab);
    if (!rc)
        rc = gguf_writer_set_u32(w, "general.quantization_version", 2);

    size_t largest = 0;
    for (int i = 0; i < plan->n_tensors; i++) {
        const struct synth_tensor *t = &plan->tensors[i];
        size_t bytes = plm_row_bytes(t->type, t->ne[0]) * (size_t)t->ne[1];
        largest = bytes > largest ? bytes : largest;
    }
    void *zeros = MAP_FAILED;
    if (!rc)
        rc = map_zeros(path, largest, &zeros);
    for (int i = 0; !rc && i < plan->n_tensors; i++) {
        const struct synth_tensor *t = &plan->tensors[i];
        rc = gguf_writer_add_tensor(w, t->name, t->type, t->ne, t->n_dims, zeros);
    }
    if (!rc)
        rc = gguf_writer_write(w, path);
    if (zeros != MAP_FAILED)
        munmap(zeros, largest);
    gguf_writer_free(w);
    return rc;
}

int plm_synth(const struct plm_synth_params *p, const char *out_path)
{
    if (!p || !out_path)
        return plm_fail(PLM_ERR_ARG, "synth: missing parameters or output path");
    const struct synth_shape *s = synth_find_shape(p->shape);
    if (!s) {
        char known[256] = "";
        for (int i = 0; i < N_SHAPES; i++)
            snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? ", " : "",
                     shapes[i].name);
        return plm_fail(PLM_ERR_ARG, "unknown shape '%s' (known: %s)", p->shape ? p->shape : "", known);
    }
    int type = plm_type_from_name(p->type);
    if (!plm_type_traits(type))
        return plm_fail(PLM_ERR_ARG,
                        "unknown or unsupported tensor type '%s' (use F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, "
                        "Q2_K, Q3_K, Q4_K, Q5_K, Q6_K)",
                        p->type ? p->type : "");
    int n_layer = p->n_layer ? p->n_layer : s->n_layer;
    if (n_layer < 1 || n_layer > s->n_layer)
        return plm_fail(PLM_ERR_ARG, "%s has %d layers: cannot write %d", s->name, s->n_layer, n_layer);

    struct synth_plan plan = {
        .tensors = calloc(MAX_OTHER_TENSORS + (size_t)n_layer * MAX_LAYER_TENSORS, sizeof *plan.tensors),
    };
    size_t partial_size = strlen(out_path) + sizeof ".partial";
    char *partial_path = malloc(partial_size);
    if (!plan.tensors || !partial_path) {
        free(plan.tensors);
        free(partial_path);
        return plm_fail(PLM_ERR_NOMEM, "synth: out of memory");
    }
    snprintf(partial_path, partial_size, "%s.partial", out_path);
    plan_tensors(&plan, s, n_layer, type);
    note_fallbacks(&plan, type, s->name, p->on_note, p->user);

    int rc = write_layout(partial_path, s, &plan, p, n_layer, type);
    if (!rc)
        rc = write_weights(partial_path, s, &plan, p->seed);
    if (!rc && rename(partial_path, out_path) != 0)
        rc = plm_fail(PLM_ERR_IO, "cannot rename '%s' to '%s': %s", partial_path, out_path, strerror(errno));
    if (rc)
        remove(partial_path);
    free(partial_path);
    free(plan.tensors);
    return rc;
}
