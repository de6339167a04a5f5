/*
 * Sessions: allocation of the KV cache and scratch; plm_decode, which feeds
 * one session's tokens through the forward pass in batches, and
 * plm_decode_sessions, which feeds one token of each of several sessions
 * through a single pass.
 */
#include "engine/session.h"

#include "core/error.h"
#include "model/attention.h"
#include "tensor/types.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* What a session allocates, by buffer, for its parameters. */
struct session_sizes {
    size_t kv_cache;    /* bytes of each of the key and value caches */
    size_t batch;       /* floats: x, xb, q, k, v, attn_out, ffn_gate, ffn_up together */
    size_t activations; /* floats: a batch's activations as the kernels read them */
    size_t other;       /* floats: attention scratch, rope tables, logits */
};

static size_t max_size(size_t a, size_t b) { return a > b ? a : b; }

static int default_threads(void)
{
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

/* The session's parameters with defaults filled in. */
static struct plm_session_params resolve_params(const plm_model *m, const struct plm_session_params *params)
{
    struct plm_session_params p = params ? *params : (struct plm_session_params){0};
    if (p.n_ctx <= 0)
        p.n_ctx = m->hp.n_ctx_train;
    if (p.n_threads <= 0)
        p.n_threads = default_threads();
    return p;
}

static int kv_plm_type(enum plm_kv_type kv_type)
{
    switch (kv_type) {
    case PLM_KV_F16: return PLM_TYPE_F16;
    case PLM_KV_Q8_0: return PLM_TYPE_Q8_0;
    case PLM_KV_F32: break;
    }
    return PLM_TYPE_F32;
}

static struct session_sizes session_sizes(const struct plm_model *m, const struct plm_session_params *p)
{
    const struct plm_hparams *hp = &m->hp;
    size_t q_dim = (size_t)hp->n_head * hp->head_dim;
    size_t kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    size_t widest_input = max_size(hp->n_ff, max_size(q_dim, hp->n_embd));
    struct session_sizes z;
    z.kv_cache = (size_t)hp->n_layer * p->n_ctx * plm_row_bytes(kv_plm_type(p->kv_type), (int64_t)kv_dim);
    z.batch = PLM_BATCH * (2 * (size_t)hp->n_embd + 2 * q_dim + 2 * kv_dim + 2 * (size_t)hp->n_ff);
    z.activations = (plm_activations_max_bytes((int64_t)widest_input, PLM_BATCH) + sizeof(float) - 1) /
                    sizeof(float);
    z.other = (size_t)p->n_threads * attention_scratch_floats(hp) + 3 * (size_t)(hp->head_dim / 2) +
              (size_t)hp->n_vocab;
    return z;
}

uint64_t plm_session_memory_needed(const plm_model *m, const struct plm_session_params *params)
{
    struct plm_session_params p = resolve_params(m, params);
    struct session_sizes z = session_sizes(m, &p);
    size_t floats = z.batch + z.activations + z.other;
    return 2 * (uint64_t)z.kv_cache + (uint64_t)floats * sizeof(float) + sizeof(struct plm_session);
}

int plm_session_max_ctx(const plm_model *m, const struct plm_session_params *params, uint64_t budget)
{
    struct plm_session_params p = resolve_params(m, params);
    struct plm_model_info info;
    plm_model_get_info(m, &info);
    uint64_t model_bytes = info.weight_bytes + info.host_bytes;
    /* Memory grows with the context, so the largest fitting one is found by bisection. */
    int lo = 0, hi = PLM_MAX_CTX;
    while (lo < hi) {
        p.n_ctx = lo + (hi - lo + 1) / 2;
        if (model_bytes + plm_session_memory_needed(m, &p) <= budget)
            lo = p.n_ctx;
        else
            hi = p.n_ctx - 1;
    }
    return lo;
}

/* Inverse frequency of each rotated pair: base^(-2i/head_dim), divided by the
 * model's per-pair factor when it has one (Llama 3.x rope scaling). */
static void init_rope(struct plm_session *s)
{
    const struct plm_model *m = s->model;
    int head_dim = m->hp.head_dim;
    for (int i = 0; i < head_dim / 2; i++) {
        double inv_freq = pow(m->hp.rope_freq_base, -2.0 * i / head_dim);
        if (m->rope_freq_factors)
            inv_freq /= m->rope_freq_factors[i];
        s->rope_inv_freq[i] = (float)inv_freq;
    }
}

static float *take(float **cursor, size_t n)
{
    float *p = *cursor;
    *cursor += n;
    return p;
}

static int allocate_buffers(struct plm_session *s, const struct plm_session_params *p)
{
    const struct plm_hparams *hp = &s->model->hp;
    int n_threads = p->n_threads;
    struct session_sizes z = session_sizes(s->model, p);
    s->key_cache = calloc(z.kv_cache, 1);
    s->value_cache = calloc(z.kv_cache, 1);
    float *scratch = calloc(z.batch + z.activations + z.other, sizeof(float));
    if (!s->key_cache || !s->value_cache || !scratch) {
        free(scratch);
        return plm_fail(PLM_ERR_NOMEM, "out of memory allocating a %d-position context", s->n_ctx);
    }
    size_t q_dim = (size_t)hp->n_head * hp->head_dim, kv_dim = (size_t)hp->n_head_kv * hp->head_dim;
    float *cursor = scratch;
    s->x = take(&cursor, PLM_BATCH * (size_t)hp->n_embd);
    s->xb = take(&cursor, PLM_BATCH * (size_t)hp->n_embd);
    s->q = take(&cursor, PLM_BATCH * q_dim);
    s->k = take(&cursor, PLM_BATCH * kv_dim);
    s->v = take(&cursor, PLM_BATCH * kv_dim);
    s->attn_out = take(&cursor, PLM_BATCH * q_dim);
    s->ffn_gate = take(&cursor, PLM_BATCH * (size_t)hp->n_ff);
    s->ffn_up = take(&cursor, PLM_BATCH * (size_t)hp->n_ff);
    s->attention = take(&cursor, (size_t)n_threads * attention_scratch_floats(hp));
    s->rope_inv_freq = take(&cursor, (size_t)hp->head_dim / 2);
    s->rope_cos = take(&cursor, (size_t)hp->head_dim / 2);
    s->rope_sin = take(&cursor, (size_t)hp->head_dim / 2);
    s->logits = take(&cursor, (size_t)hp->n_vocab);
    s->activations_bytes = z.activations * sizeof(float);
    s->activations = take(&cursor, z.activations);
    return PLM_OK;
}

int plm_session_new(plm_model *model, const struct plm_session_params *params, plm_session **session)
{
    *session = NULL;
    struct plm_session_params p = resolve_params(model, params);
    if (p.n_ctx > PLM_MAX_CTX)
        return plm_fail(PLM_ERR_ARG, "context of %d positions exceeds the limit of %d", p.n_ctx, PLM_MAX_CTX);
    if (p.kv_type != PLM_KV_F32 && p.kv_type != PLM_KV_F16 && p.kv_type != PLM_KV_Q8_0)
        return plm_fail(PLM_ERR_ARG, "unknown KV cache type %d", (int)p.kv_type);
    int kv_type = kv_plm_type(p.kv_type);
    if (plm_row_bytes(kv_type, model->hp.head_dim) == 0)
        return plm_fail(PLM_ERR_ARG, "a %s KV cache needs a head size that is a multiple of %d; this model's is %d",
                        plm_type_name(kv_type), plm_type_traits(kv_type)->block_size, model->hp.head_dim);
    model_pack_weights(model); /* the first session packs the weights, for every later one */
    struct plm_session *s = calloc(1, sizeof *s);
    if (!s)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    s->model = model;
    s->n_ctx = p.n_ctx;
    s->kv_type = kv_type;
    s->kv_row_bytes = plm_row_bytes(kv_type, (int64_t)model->hp.n_head_kv * model->hp.head_dim);
    int rc = threadpool_new(p.n_threads, &s->pool);
    if (rc == PLM_OK)
        rc = allocate_buffers(s, &p);
    if (rc) {
        plm_session_free(s);
        return rc;
    }
    init_rope(s);
    *session = s;
    return PLM_OK;
}

void plm_session_free(plm_session *s)
{
    if (!s)
        return;
    free(s->key_cache);
    free(s->value_cache);
    free(s->x); /* the start of the scratch block */
    threadpool_free(s->pool);
    free(s);
}

int plm_session_n_ctx(const plm_session *s) { return s->n_ctx; }
int plm_session_n_past(const plm_session *s) { return s->n_past; }
const float *plm_session_logits(const plm_session *s) { return s->logits; }

void plm_session_truncate(plm_session *s, int n_keep)
{
    if (n_keep >= 0 && n_keep < s->n_past)
        s->n_past = n_keep;
}

/* PLM_OK if every token is in the model's vocabulary. */
static int check_tokens(const struct plm_model *m, const int32_t *tokens, int n_tokens)
{
    for (int i = 0; i < n_tokens; i++)
        if (tokens[i] < 0 || tokens[i] >= m->hp.n_vocab)
            return plm_fail(PLM_ERR_ARG, "token id %d is outside the vocabulary (0..%d)", tokens[i],
                            m->hp.n_vocab - 1);
    return PLM_OK;
}

int plm_decode(plm_session *s, const int32_t *tokens, int n_tokens, float *logits)
{
    const struct plm_hparams *hp = &s->model->hp;
    if (n_tokens <= 0)
        return plm_fail(PLM_ERR_ARG, "nothing to decode");
    if (n_tokens > s->n_ctx - s->n_past)
        return plm_fail(PLM_ERR_CONTEXT_FULL,
                        "%d tokens do not fit the context: %d of %d positions are free",
                        n_tokens, s->n_ctx - s->n_past, s->n_ctx);
    int rc = check_tokens(s->model, tokens, n_tokens);
    if (rc)
        return rc;
    struct batch_row rows[PLM_BATCH];
    for (int start = 0; start < n_tokens; start += PLM_BATCH) {
        int n = n_tokens - start < PLM_BATCH ? n_tokens - start : PLM_BATCH;
        for (int t = 0; t < n; t++)
            rows[t] = (struct batch_row){s, s->n_past + t};
        float *batch_logits = logits ? logits + (size_t)start * hp->n_vocab : NULL;
        forward_batch(s, tokens + start, rows, n, batch_logits);
        s->n_past += n;
    }
    if (logits)
        memcpy(s->logits, logits + (size_t)(n_tokens - 1) * hp->n_vocab, hp->n_vocab * sizeof(float));
    return PLM_OK;
}

_Static_assert(PLM_DECODE_SESSIONS_MAX <= PLM_BATCH, "one forward pass holds every session's token");

/* PLM_OK if the sessions can share one pass (which uses the first one's
 * scratch and threads). */
static int check_sessions(plm_session *const *sessions, const int32_t *tokens, int n)
{
    if (n < 1 || n > PLM_DECODE_SESSIONS_MAX)
        return plm_fail(PLM_ERR_ARG, "%d sessions to decode: from 1 to %d can share a pass", n,
                        PLM_DECODE_SESSIONS_MAX);
    const struct plm_session *first = sessions[0];
    for (int i = 0; i < n; i++) {
        const struct plm_session *s = sessions[i];
        if (s->model != first->model)
            return plm_fail(PLM_ERR_ARG, "session %d runs another model than session 0", i);
        for (int j = 0; j < i; j++)
            if (sessions[j] == s)
                return plm_fail(PLM_ERR_ARG, "session %d is also session %d: one token per session", i, j);
        if (s->n_past >= s->n_ctx)
            return plm_fail(PLM_ERR_CONTEXT_FULL, "session %d's context is full (%d positions)", i, s->n_ctx);
    }
    return check_tokens(first->model, tokens, n);
}

int plm_decode_sessions(plm_session *const *sessions, const int32_t *tokens, int n)
{
    int rc = check_sessions(sessions, tokens, n);
    if (rc)
        return rc;
    plm_session *first = sessions[0];
    int n_vocab = first->model->hp.n_vocab;
    /* Every row goes through the output matrix together; their logits then
     * move to their own sessions. */
    float *logits = malloc((size_t)n * n_vocab * sizeof *logits);
    if (!logits)
        return plm_fail(PLM_ERR_NOMEM, "out of memory for the logits of %d sessions", n);
    struct batch_row rows[PLM_DECODE_SESSIONS_MAX];
    for (int i = 0; i < n; i++)
        rows[i] = (struct batch_row){sessions[i], sessions[i]->n_past};
    forward_batch(first, tokens, rows, n, logits);
    for (int i = 0; i < n; i++) {
        memcpy(sessions[i]->logits, logits + (size_t)i * n_vocab, (size_t)n_vocab * sizeof *logits);
        sessions[i]->n_past++;
    }
    free(logits);
    return PLM_OK;
}
