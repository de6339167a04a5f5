/*
 * llama2.c checkpoint + tokenizer.bin -> GGUF (architecture "llama").
 *
 * The weights map one to one onto GGUF tensors (w1 = gate, w2 = down, w3 = up)
 * and are already in the interleaved RoPE layout, so no row is reordered.
 * llama2.c fixes what the header does not say: RoPE base 10000, RMSNorm eps 1e-5,
 * and a SentencePiece vocabulary whose first tokens are <unk>, <s>, </s>.
 */
#include "convert/convert.h"

#include "core/error.h"
#include "format/llama2c.h"
#include "tensor/types.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA2C_ROPE_FREQ_BASE 10000.0f
#define LLAMA2C_RMS_EPS 1e-5f
#define LLAMA2C_UNK_ID 0
#define LLAMA2C_BOS_ID 1
#define LLAMA2C_EOS_ID 2

/* ------------------------------------------------------------- vocabulary */

/* tokenizer.bin stores the text as the decoder prints it; GGUF wants the
 * SentencePiece piece: spaces back to "▁", and BOS/EOS without the newlines
 * llama2.c's exporter wrapped them in. */
static size_t piece_from_llama2c(const struct llama2c_token *t, char *piece)
{
    static const char *const unwrapped[][2] = {{"\n<s>\n", "<s>"}, {"\n</s>\n", "</s>"}};
    for (size_t i = 0; i < 2; i++)
        if ((size_t)t->len == strlen(unwrapped[i][0]) &&
            memcmp(t->text, unwrapped[i][0], (size_t)t->len) == 0) {
            strcpy(piece, unwrapped[i][1]);
            return strlen(piece);
        }
    size_t n = 0;
    for (int i = 0; i < t->len; i++) {
        if (t->text[i] == ' ') {
            memcpy(piece + n, "\xE2\x96\x81", 3); /* U+2581 "▁" */
            n += 3;
        } else {
            piece[n++] = t->text[i];
        }
    }
    piece[n] = '\0';
    return n;
}

static int token_type_of(int id, const char *piece, size_t len)
{
    if (id == LLAMA2C_UNK_ID)
        return GGUF_TOKEN_UNKNOWN;
    if (id == LLAMA2C_BOS_ID || id == LLAMA2C_EOS_ID)
        return GGUF_TOKEN_CONTROL;
    return convert_is_byte_token(piece, len) ? GGUF_TOKEN_BYTE : GGUF_TOKEN_NORMAL;
}

static int write_vocab(struct gguf_writer *w, const struct llama2c_vocab *vocab)
{
    int n = vocab->n_tokens;
    /* Each byte of a token grows to at most 3 ("▁"), plus a NUL. */
    size_t arena_size = 0;
    for (int i = 0; i < n; i++)
        arena_size += 3 * (size_t)vocab->tokens[i].len + 8;
    char *arena = malloc(arena_size);
    const char **pieces = malloc((size_t)n * sizeof *pieces);
    size_t *piece_lens = malloc((size_t)n * sizeof *piece_lens); /* texts may hold NUL bytes */
    float *scores = malloc((size_t)n * sizeof *scores);
    int32_t *types = malloc((size_t)n * sizeof *types);
    int rc = PLM_OK;
    if (!arena || !pieces || !piece_lens || !scores || !types)
        rc = plm_fail(PLM_ERR_NOMEM, "out of memory for the vocabulary");

    char *next = arena;
    for (int i = 0; i < n && !rc; i++) {
        size_t len = piece_from_llama2c(&vocab->tokens[i], next);
        pieces[i] = next;
        piece_lens[i] = len;
        scores[i] = vocab->tokens[i].score;
        types[i] = token_type_of(i, next, len);
        next += len + 1;
    }
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
    if (!rc) rc = gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", pieces, piece_lens,
                                            (uint64_t)n);
    if (!rc) rc = gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores,
                                        (uint64_t)n);
    if (!rc) rc = gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32, types,
                                        (uint64_t)n);
    free(arena);
    free(pieces);
    free(piece_lens);
    free(scores);
    free(types);
    return rc;
}

/* llama2.c's SentencePiece conventions: fixed special ids, BOS before every
 * prompt, and a space before the first word. */
static int write_vocab_flags(struct gguf_writer *w, int n_tokens)
{
    int rc = PLM_OK;
    if (n_tokens > LLAMA2C_EOS_ID) {
        if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.unknown_token_id", LLAMA2C_UNK_ID);
        if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.bos_token_id", LLAMA2C_BOS_ID);
        if (!rc) rc = gguf_writer_set_u32(w, "tokenizer.ggml.eos_token_id", LLAMA2C_EOS_ID);
    }
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", true);
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", false);
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix", true);
    return rc;
}

/* ---------------------------------------------------------------- weights */

static int write_hparams(struct gguf_writer *w, const struct llama2c_config *c, const char *name)
{
    int rc = gguf_writer_set_str(w, "general.architecture", "llama");
    if (!rc) rc = gguf_writer_set_str(w, "general.name", name);
    if (!rc) rc = gguf_writer_set_u32(w, "llama.vocab_size", (uint32_t)c->vocab_size);
    if (!rc) rc = gguf_writer_set_u32(w, "llama.context_length", (uint32_t)c->seq_len);
    if (!rc) rc = gguf_writer_set_u32(w, "llama.embedding_length", (uint32_t)c->dim);
    if (!rc) rc = gguf_writer_set_u32(w, "llama.block_count", (uint32_t)c->n_layers);
    if (!rc) rc = gguf_writer_set_u32(w, "llama.feed_forward_length", (uint32_t)c->hidden_dim);
    if (!rc) rc = gguf_writer_set_u32(w, "llama.attention.head_count", (uint32_t)c->n_heads);
    if (!rc) rc = gguf_writer_set_u32(w, "llama.attention.head_count_kv", (uint32_t)c->n_kv_heads);
    if (!rc) rc = gguf_writer_set_f32(w, "llama.attention.layer_norm_rms_epsilon", LLAMA2C_RMS_EPS);
    if (!rc) rc = gguf_writer_set_f32(w, "llama.rope.freq_base", LLAMA2C_ROPE_FREQ_BASE);
    if (!rc) rc = gguf_writer_set_u32(w, "llama.rope.dimension_count",
                                      (uint32_t)(c->dim / c->n_heads));
    return rc;
}

/* One matrix of rows x cols (GGUF ne = {cols, rows}) or, with rows == 0, a vector. */
static int add_f32(struct convert_out *out, const char *name, const float *data, int64_t cols,
                   int64_t rows)
{
    int64_t ne[2] = {cols, rows};
    return convert_add_tensor(out, name, PLM_TYPE_F32, data, ne, rows ? 2 : 1, 0);
}

static const char *blk_name(char *buf, size_t size, int layer, const char *suffix)
{
    snprintf(buf, size, "blk.%d.%s", layer, suffix);
    return buf;
}

static int write_layer(struct convert_out *out, const struct llama2c_checkpoint *ckpt, int l)
{
    const struct llama2c_config *c = &ckpt->config;
    const struct llama2c_weights *wt = &ckpt->weights;
    int64_t dim = c->dim, hidden = c->hidden_dim;
    int64_t kv_dim = (int64_t)c->n_kv_heads * (dim / c->n_heads);
    char n[64];
    int rc;
    if ((rc = add_f32(out, blk_name(n, sizeof n, l, "attn_norm.weight"), wt->rms_att + l * dim,
                      dim, 0)) ||
        (rc = add_f32(out, blk_name(n, sizeof n, l, "attn_q.weight"), wt->wq + l * dim * dim,
                      dim, dim)) ||
        (rc = add_f32(out, blk_name(n, sizeof n, l, "attn_k.weight"), wt->wk + l * kv_dim * dim,
                      dim, kv_dim)) ||
        (rc = add_f32(out, blk_name(n, sizeof n, l, "attn_v.weight"), wt->wv + l * kv_dim * dim,
                      dim, kv_dim)) ||
        (rc = add_f32(out, blk_name(n, sizeof n, l, "attn_output.weight"),
                      wt->wo + l * dim * dim, dim, dim)) ||
        (rc = add_f32(out, blk_name(n, sizeof n, l, "ffn_norm.weight"), wt->rms_ffn + l * dim,
                      dim, 0)) ||
        (rc = add_f32(out, blk_name(n, sizeof n, l, "ffn_gate.weight"),
                      wt->w1 + l * hidden * dim, dim, hidden)) ||
        (rc = add_f32(out, blk_name(n, sizeof n, l, "ffn_down.weight"),
                      wt->w2 + l * dim * hidden, hidden, dim)) ||
        (rc = add_f32(out, blk_name(n, sizeof n, l, "ffn_up.weight"), wt->w3 + l * hidden * dim,
                      dim, hidden)))
        return rc;
    return PLM_OK;
}

static int write_tensors(struct convert_out *out, const struct llama2c_checkpoint *ckpt)
{
    const struct llama2c_config *c = &ckpt->config;
    int rc = add_f32(out, "token_embd.weight", ckpt->weights.token_embedding, c->dim,
                     c->vocab_size);
    for (int l = 0; l < c->n_layers && !rc; l++)
        rc = write_layer(out, ckpt, l);
    if (!rc)
        rc = add_f32(out, "output_norm.weight", ckpt->weights.rms_final, c->dim, 0);
    /* A shared classifier is the embedding: the runtime uses token_embd. */
    if (!rc && !c->shared_classifier)
        rc = add_f32(out, "output.weight", ckpt->weights.wcls, c->dim, c->vocab_size);
    return rc;
}

/* ------------------------------------------------------------------ driver */

/* general.name: the file name without directory and ".bin". */
static void model_name(const char *path, char *name, size_t size)
{
    const char *base = strrchr(path, '/');
    base = base ? base + 1 : path;
    size_t len = strlen(base);
    if (len > 4 && strcmp(base + len - 4, ".bin") == 0)
        len -= 4;
    snprintf(name, size, "%.*s", (int)len, base);
}

/* tokenizer.bin in the checkpoint's directory. */
static int default_vocab_path(const char *path, char *vocab_path, size_t size)
{
    const char *slash = strrchr(path, '/');
    int n = slash ? snprintf(vocab_path, size, "%.*s/tokenizer.bin", (int)(slash - path), path)
                  : snprintf(vocab_path, size, "tokenizer.bin");
    if (n < 0 || (size_t)n >= size)
        return plm_fail(PLM_ERR_ARG, "path '%s' is too long", path);
    return PLM_OK;
}

int convert_llama2c(const char *path, const char *vocab_path, const char *out_path, int out_type)
{
    char default_vocab[4096], name[256];
    int rc;
    if (!vocab_path) {
        if ((rc = default_vocab_path(path, default_vocab, sizeof default_vocab)))
            return rc;
        vocab_path = default_vocab;
    }
    model_name(path, name, sizeof name);

    struct llama2c_checkpoint ckpt;
    struct llama2c_vocab vocab;
    struct convert_out out;
    if ((rc = llama2c_checkpoint_open(path, &ckpt)))
        return rc;
    if ((rc = llama2c_vocab_open(vocab_path, ckpt.config.vocab_size, &vocab))) {
        llama2c_checkpoint_close(&ckpt);
        return rc;
    }
    /* The checkpoint is f32; that is also the default output. */
    rc = convert_out_init(&out, out_type < 0 ? PLM_TYPE_F32 : out_type);
    if (!rc) rc = write_hparams(out.writer, &ckpt.config, name);
    if (!rc) rc = convert_set_file_type(&out);
    if (!rc) rc = write_vocab(out.writer, &vocab);
    if (!rc) rc = write_vocab_flags(out.writer, vocab.n_tokens);
    if (!rc) rc = write_tensors(&out, &ckpt);
    if (!rc) rc = gguf_writer_write(out.writer, out_path);
    convert_out_free(&out);
    llama2c_vocab_close(&vocab);
    llama2c_checkpoint_close(&ckpt);
    return rc;
}
