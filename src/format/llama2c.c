#include "format/llama2c.h"

#include "core/error.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define LLAMA2C_HEADER_BYTES (7 * 4)

/* Newer llama2.c exports (export.py --version 1/2) start with this magic instead
 * of the legacy header; run.c does not read them and neither do we. */
#define LLAMA2C_EXPORT_MAGIC 0x616b3432 /* "ak42" */

/* A sanity bound on every header value: far above any llama2.c model, low enough
 * that products of two values cannot overflow 64 bits. */
#define LLAMA2C_MAX_VALUE (1 << 24)

static int32_t read_i32(const uint8_t *p)
{
    return (int32_t)((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 |
                     (uint32_t)p[3] << 24);
}

static int check_config(const struct llama2c_config *c)
{
    const struct {
        const char *name;
        int value;
    } fields[] = {
        {"dim", c->dim},         {"hidden_dim", c->hidden_dim}, {"n_layers", c->n_layers},
        {"n_heads", c->n_heads}, {"n_kv_heads", c->n_kv_heads}, {"vocab_size", c->vocab_size},
        {"seq_len", c->seq_len},
    };
    for (size_t i = 0; i < sizeof fields / sizeof fields[0]; i++)
        if (fields[i].value < 1 || fields[i].value > LLAMA2C_MAX_VALUE)
            return plm_fail(PLM_ERR_FORMAT, "llama2.c: header %s = %d is outside 1..%d",
                            fields[i].name, fields[i].value, LLAMA2C_MAX_VALUE);
    if (c->dim % c->n_heads != 0)
        return plm_fail(PLM_ERR_FORMAT, "llama2.c: dim %d is not a multiple of n_heads %d", c->dim,
                        c->n_heads);
    if (c->n_kv_heads > c->n_heads || c->n_heads % c->n_kv_heads != 0)
        return plm_fail(PLM_ERR_FORMAT, "llama2.c: %d heads cannot share %d key/value heads",
                        c->n_heads, c->n_kv_heads);
    if ((c->dim / c->n_heads) % 2 != 0)
        return plm_fail(PLM_ERR_FORMAT, "llama2.c: head size %d is odd (RoPE rotates pairs)",
                        c->dim / c->n_heads);
    return PLM_OK;
}

/* Where each tensor starts, in floats from the end of the header. */
struct weight_offsets {
    uint64_t token_embedding, rms_att, wq, wk, wv, wo, rms_ffn, w1, w2, w3, rms_final, wcls;
    uint64_t end; /* floats the file must hold */
};

/* Lays the tensors out from the header as run.c's memory_map_weights does.
 * Offsets first, pointers only once the file is known to be large enough. */
static void layout_weights(const struct llama2c_config *c, struct weight_offsets *o)
{
    uint64_t dim = (uint64_t)c->dim, hidden = (uint64_t)c->hidden_dim;
    uint64_t layers = (uint64_t)c->n_layers, vocab = (uint64_t)c->vocab_size;
    uint64_t head_size = dim / (uint64_t)c->n_heads;
    uint64_t kv_dim = (uint64_t)c->n_kv_heads * head_size;
    uint64_t at = 0;

    o->token_embedding = at, at += vocab * dim;
    o->rms_att = at, at += layers * dim;
    o->wq = at, at += layers * dim * dim;
    o->wk = at, at += layers * kv_dim * dim;
    o->wv = at, at += layers * kv_dim * dim;
    o->wo = at, at += layers * dim * dim;
    o->rms_ffn = at, at += layers * dim;
    o->w1 = at, at += layers * hidden * dim;
    o->w2 = at, at += layers * dim * hidden;
    o->w3 = at, at += layers * hidden * dim;
    o->rms_final = at, at += dim;
    at += (uint64_t)c->seq_len * head_size / 2; /* freq_cis_real */
    at += (uint64_t)c->seq_len * head_size / 2; /* freq_cis_imag */
    if (c->shared_classifier) {
        o->wcls = o->token_embedding;
    } else {
        o->wcls = at;
        at += vocab * dim;
    }
    o->end = at;
}

static void point_weights(const float *base, const struct weight_offsets *o,
                          struct llama2c_weights *w)
{
    w->token_embedding = base + o->token_embedding;
    w->rms_att = base + o->rms_att;
    w->wq = base + o->wq;
    w->wk = base + o->wk;
    w->wv = base + o->wv;
    w->wo = base + o->wo;
    w->rms_ffn = base + o->rms_ffn;
    w->w1 = base + o->w1;
    w->w2 = base + o->w2;
    w->w3 = base + o->w3;
    w->rms_final = base + o->rms_final;
    w->wcls = base + o->wcls;
}

static int parse_checkpoint(struct llama2c_checkpoint *ckpt)
{
    const uint8_t *bytes = ckpt->map.data;
    size_t size = ckpt->map.size;
    if (size < LLAMA2C_HEADER_BYTES)
        return plm_fail(PLM_ERR_FORMAT, "llama2.c: file of %zu bytes is shorter than the header",
                        size);
    if (read_i32(bytes) == LLAMA2C_EXPORT_MAGIC)
        return plm_fail(PLM_ERR_UNSUPPORTED,
                        "llama2.c: export version %d files are not supported (export with "
                        "--version 0, the legacy format)", read_i32(bytes + 4));

    struct llama2c_config *c = &ckpt->config;
    c->dim = read_i32(bytes);
    c->hidden_dim = read_i32(bytes + 4);
    c->n_layers = read_i32(bytes + 8);
    c->n_heads = read_i32(bytes + 12);
    c->n_kv_heads = read_i32(bytes + 16);
    int32_t vocab = read_i32(bytes + 20);
    c->seq_len = read_i32(bytes + 24);
    /* The sign of vocab_size says whether the classifier has its own weights. */
    c->shared_classifier = vocab > 0;
    c->vocab_size = vocab == INT32_MIN ? 0 : abs(vocab);
    int rc = check_config(c);
    if (rc)
        return rc;

    struct weight_offsets offsets;
    layout_weights(c, &offsets);
    uint64_t expected = LLAMA2C_HEADER_BYTES + offsets.end * sizeof(float);
    if (expected != size)
        return plm_fail(PLM_ERR_FORMAT,
                        "llama2.c: file is %zu bytes but its header (dim %d, hidden %d, %d "
                        "layers, %d heads, %d kv heads, vocab %d%s, seq %d) implies %llu",
                        size, c->dim, c->hidden_dim, c->n_layers, c->n_heads, c->n_kv_heads,
                        c->vocab_size, c->shared_classifier ? "" : " unshared", c->seq_len,
                        (unsigned long long)expected);
    /* The mapping is page-aligned and the header is 28 bytes: floats are aligned. */
    point_weights((const float *)(bytes + LLAMA2C_HEADER_BYTES), &offsets, &ckpt->weights);
    return PLM_OK;
}

int llama2c_checkpoint_open(const char *path, struct llama2c_checkpoint *checkpoint)
{
    memset(checkpoint, 0, sizeof *checkpoint);
    int rc = mapped_file_open(&checkpoint->map, path);
    if (rc)
        return rc;
    rc = parse_checkpoint(checkpoint);
    if (rc) {
        llama2c_checkpoint_close(checkpoint);
        return plm_fail_context(rc, "%s", path);
    }
    return PLM_OK;
}

void llama2c_checkpoint_close(struct llama2c_checkpoint *checkpoint)
{
    mapped_file_close(&checkpoint->map);
    memset(checkpoint, 0, sizeof *checkpoint);
}

/* ---------------------------------------------------------------- tokenizer */

static int parse_vocab(struct llama2c_vocab *vocab, int n_tokens)
{
    const uint8_t *bytes = vocab->map.data;
    size_t size = vocab->map.size, at = 4;
    if (size < 4)
        return plm_fail(PLM_ERR_FORMAT, "llama2.c tokenizer: file of %zu bytes is too short", size);
    vocab->max_token_length = read_i32(bytes);
    if (vocab->max_token_length < 1)
        return plm_fail(PLM_ERR_FORMAT, "llama2.c tokenizer: max_token_length %d is not positive",
                        vocab->max_token_length);
    vocab->tokens = calloc((size_t)n_tokens, sizeof *vocab->tokens);
    if (!vocab->tokens)
        return plm_fail(PLM_ERR_NOMEM, "out of memory for %d tokens", n_tokens);

    for (int i = 0; i < n_tokens; i++) {
        struct llama2c_token *t = &vocab->tokens[i];
        if (size - at < 8)
            return plm_fail(PLM_ERR_FORMAT,
                            "llama2.c tokenizer: file ends at token %d of the model's %d", i,
                            n_tokens);
        memcpy(&t->score, bytes + at, sizeof t->score);
        t->len = read_i32(bytes + at + 4);
        at += 8;
        if (!isfinite(t->score))
            return plm_fail(PLM_ERR_FORMAT, "llama2.c tokenizer: token %d has a non-finite score",
                            i);
        if (t->len < 0 || t->len > vocab->max_token_length)
            return plm_fail(PLM_ERR_FORMAT,
                            "llama2.c tokenizer: token %d has length %d (max_token_length %d)", i,
                            t->len, vocab->max_token_length);
        if (size - at < (size_t)t->len)
            return plm_fail(PLM_ERR_FORMAT,
                            "llama2.c tokenizer: token %d's %d bytes run past the end of the file",
                            i, t->len);
        t->text = (const char *)bytes + at;
        at += (size_t)t->len;
    }
    if (at != size)
        return plm_fail(PLM_ERR_FORMAT,
                        "llama2.c tokenizer: %zu bytes left after the model's %d tokens (a "
                        "tokenizer for a larger vocabulary?)", size - at, n_tokens);
    vocab->n_tokens = n_tokens;
    return PLM_OK;
}

int llama2c_vocab_open(const char *path, int n_tokens, struct llama2c_vocab *vocab)
{
    memset(vocab, 0, sizeof *vocab);
    if (n_tokens < 1)
        return plm_fail(PLM_ERR_ARG, "llama2.c tokenizer: %d tokens requested", n_tokens);
    int rc = mapped_file_open(&vocab->map, path);
    if (rc)
        return rc;
    rc = parse_vocab(vocab, n_tokens);
    if (rc) {
        llama2c_vocab_close(vocab);
        return plm_fail_context(rc, "%s", path);
    }
    return PLM_OK;
}

void llama2c_vocab_close(struct llama2c_vocab *vocab)
{
    free(vocab->tokens);
    mapped_file_close(&vocab->map);
    memset(vocab, 0, sizeof *vocab);
}
