/*
 * The transformer forward pass, top to bottom. One function per step; each
 * works on a batch of token rows so matrix products read each weight once.
 * Matrix products and attention are split across the session's threads.
 *
 * Rows meet only in the matrix products. Everything that depends on where a
 * token is (its RoPE rotation, the cache row its keys and values go to, the
 * positions its attention reads) comes from its struct batch_row, so a batch
 * can be one session's next tokens (plm_decode) or one token of each of
 * several sessions (plm_decode_sessions).
 */
#include "engine/session.h"

#include "kernels/swiglu.h"
#include "model/attention.h"
#include "tensor/types.h"

#include <math.h>
#include <string.h>

/* Products of one input: y[i] = w[i] x for i < n, the matrices all of one
 * type, so the input is prepared once. */
struct matmul_job {
    int n;
    const struct plm_matrix *w[3];
    float *y[3];
    const struct plm_activations *xq;
};

/* Chunks of a step: one per thread, of at least `grain` items. Threads claim
 * chunks as they arrive, so a thread the OS has not scheduled yet leaves its
 * chunk to the others. (More, smaller chunks measured slower on a quiet
 * machine and no faster on a busy one.) */
static int chunk_count(const struct plm_session *s, int64_t n_items, int64_t grain)
{
    int64_t n = n_items / grain, n_threads = threadpool_size(s->pool);
    return n < 1 ? 1 : n > n_threads ? (int)n_threads : (int)n;
}

/* Chunk `chunk` of n_chunks of rows [0, n_rows), in whole runs of
 * PLM_ROW_GRAIN rows. */
static void chunk_rows(int64_t n_rows, int chunk, int n_chunks, int64_t *begin, int64_t *end)
{
    int64_t per_chunk = (n_rows + n_chunks - 1) / n_chunks;
    per_chunk = (per_chunk + PLM_ROW_GRAIN - 1) / PLM_ROW_GRAIN * PLM_ROW_GRAIN;
    *begin = chunk * per_chunk < n_rows ? chunk * per_chunk : n_rows;
    *end = *begin + per_chunk < n_rows ? *begin + per_chunk : n_rows;
}

static int64_t total_rows(const struct matmul_job *job)
{
    int64_t rows = 0;
    for (int i = 0; i < job->n; i++)
        rows += job->w[i]->n_out;
    return rows;
}

/* A chunk of the job's rows, the matrices' rows counted one after the
 * other, written straight into each y. */
static void matmul_chunk(void *arg, int chunk, int n_chunks, int thread)
{
    (void)thread;
    const struct matmul_job *job = arg;
    int64_t begin, end;
    chunk_rows(total_rows(job), chunk, n_chunks, &begin, &end);
    int64_t first_row = 0; /* of matrix i */
    for (int i = 0; i < job->n; first_row += job->w[i]->n_out, i++) {
        int64_t from = begin - first_row, to = end - first_row, n_out = job->w[i]->n_out;
        if (from < n_out && to > 0)
            plm_matmul_prepared(job->w[i], job->xq, job->y[i], from > 0 ? from : 0, to < n_out ? to : n_out);
    }
}

/* A chunk of the tokens' conversion to the kernels' format. */
static void convert_chunk(void *arg, int chunk, int n_chunks, int thread)
{
    (void)thread;
    const struct plm_activations *xq = arg;
    int begin = (int)((int64_t)xq->n_tokens * chunk / n_chunks);
    int end = (int)((int64_t)xq->n_tokens * (chunk + 1) / n_chunks);
    plm_convert_activations(xq, begin, end);
}

/* x as w's kernels read it, in the session's scratch. The threads share a
 * batch's conversion: on one thread it took a tenth of a prompt's time,
 * while the others waited. One token is not worth a parallel step. */
static struct plm_activations prepare(const struct plm_session *s, const struct plm_matrix *w, const float *x,
                                      int n_tokens)
{
    struct plm_activations xq;
    plm_plan_activations(w, x, n_tokens, s->activations, s->activations_bytes, &xq);
    if (n_tokens > 1 && xq.converted)
        threadpool_run(s->pool, convert_chunk, &xq, chunk_count(s, n_tokens, 1));
    else
        plm_convert_activations(&xq, 0, n_tokens);
    return xq;
}

/* The kernels read the same activations for a and b: one type, and both
 * packed or both as stored. */
static bool same_activations(const struct plm_matrix *a, const struct plm_matrix *b)
{
    return a->type == b->type && (a->packed != NULL) == (b->packed != NULL);
}

/* y[i] = w[i] x for n_tokens tokens and i < n (at most 3). Matrices that
 * read the same activations run as one parallel step over all their rows:
 * the activations are quantized once, in the session's scratch, and the
 * threads meet once. */
static void matmul_shared_input(const struct plm_session *s, const struct plm_matrix *const *w, float *const *y,
                                int n, const float *x, int n_tokens)
{
    for (int first = 0, next; first < n; first = next) {
        struct matmul_job job = {.n = 0};
        for (next = first; next < n && same_activations(w[next], w[first]); next++) {
            if (s->observe_matmul)
                s->observe_matmul(s->observe_user, w[next], x, n_tokens);
            job.w[job.n] = w[next];
            job.y[job.n++] = y[next];
        }
        struct plm_activations xq = prepare(s, w[first], x, n_tokens);
        job.xq = &xq;
        threadpool_run(s->pool, matmul_chunk, &job, chunk_count(s, total_rows(&job), PLM_ROW_GRAIN));
    }
}

/* y = W x for n_tokens tokens. */
static void matmul(const struct plm_session *s, const struct plm_matrix *w, const float *x, float *y,
                   int n_tokens)
{
    matmul_shared_input(s, &w, &y, 1, x, n_tokens);
}

/* out = x / sqrt(mean(x^2) + eps) * weight, for each of n_rows rows of n. */
static void rmsnorm_rows(float *out, const float *x, const float *weight, int n_rows, int n, float eps)
{
    for (int r = 0; r < n_rows; r++) {
        const float *xr = x + (size_t)r * n;
        float *or = out + (size_t)r * n;
        double sum_sq = 0.0;
        for (int i = 0; i < n; i++)
            sum_sq += (double)xr[i] * xr[i];
        float scale = 1.0f / sqrtf((float)(sum_sq / n) + eps);
        for (int i = 0; i < n; i++)
            or[i] = xr[i] * scale * weight[i];
    }
}

static void add_bias_rows(float *x, const float *bias, int n_rows, int n)
{
    for (int r = 0; r < n_rows; r++)
        for (int i = 0; i < n; i++)
            x[(size_t)r * n + i] += bias[i];
}

/* Fills rope_cos/rope_sin with the rotation of each pair at one position. */
static void rope_angles(struct plm_session *s, int pos)
{
    int n_pairs = s->model->hp.head_dim / 2;
    for (int i = 0; i < n_pairs; i++) {
        double angle = (double)pos * s->rope_inv_freq[i];
        s->rope_cos[i] = (float)cos(angle);
        s->rope_sin[i] = (float)sin(angle);
    }
}

/* Rotates each head of one token's vector. llama files pair dimensions
 * (2i, 2i+1); NEOX-style files (qwen) pair (i, i + head_dim/2). */
static void rope_heads(const struct plm_session *s, float *vec, int n_heads)
{
    int head_dim = s->model->hp.head_dim, n_pairs = head_dim / 2;
    bool neox = s->model->hp.rope_neox;
    for (int h = 0; h < n_heads; h++) {
        float *head = vec + (size_t)h * head_dim;
        for (int i = 0; i < n_pairs; i++) {
            int a = neox ? i : 2 * i;
            int b = neox ? i + n_pairs : 2 * i + 1;
            float x0 = head[a], x1 = head[b];
            head[a] = x0 * s->rope_cos[i] - x1 * s->rope_sin[i];
            head[b] = x0 * s->rope_sin[i] + x1 * s->rope_cos[i];
        }
    }
}

/* Queries, keys and values of the batch; each row's keys and values go into
 * its own session's cache at its position. */
static void attention_qkv(struct plm_session *s, const struct plm_layer *l, int layer,
                          const struct batch_row *rows, int n_tokens)
{
    const struct plm_hparams *hp = &s->model->hp;
    int q_dim = hp->n_head * hp->head_dim, kv_dim = hp->n_head_kv * hp->head_dim;
    const struct plm_matrix *w[3] = {&l->wq, &l->wk, &l->wv};
    float *y[3] = {s->q, s->k, s->v};
    matmul_shared_input(s, w, y, 3, s->xb, n_tokens);
    if (l->bq) {
        add_bias_rows(s->q, l->bq, n_tokens, q_dim);
        add_bias_rows(s->k, l->bk, n_tokens, kv_dim);
        add_bias_rows(s->v, l->bv, n_tokens, kv_dim);
    }
    if (l->q_norm) {
        rmsnorm_rows(s->q, s->q, l->q_norm, n_tokens * hp->n_head, hp->head_dim, hp->norm_eps);
        rmsnorm_rows(s->k, s->k, l->k_norm, n_tokens * hp->n_head_kv, hp->head_dim, hp->norm_eps);
    }
    for (int t = 0; t < n_tokens; t++) {
        const struct plm_session *owner = rows[t].session;
        int pos = rows[t].pos;
        rope_angles(s, pos);
        rope_heads(s, s->q + (size_t)t * q_dim, hp->n_head);
        rope_heads(s, s->k + (size_t)t * kv_dim, hp->n_head_kv);
        attention_store(owner, layer, pos, s->k + (size_t)t * kv_dim, s->v + (size_t)t * kv_dim);
    }
}

static void add_rows(float *x, const float *delta, size_t n)
{
    for (size_t i = 0; i < n; i++)
        x[i] += delta[i];
}

/* gate = silu(gate) * up on rows [begin, end) of every token's n_ff. */
static void swiglu_rows(float *gate, const float *up, int n_tokens, int64_t n_ff, int64_t begin, int64_t end)
{
    for (int t = 0; t < n_tokens; t++)
        plm_swiglu(gate + (size_t)t * n_ff + begin, up + (size_t)t * n_ff + begin, end - begin);
}

/* The same rows of the gate and up products, then their SwiGLU: the
 * threads meet once for all three, and the SwiGLU is split as well. */
static void gate_up_chunk(void *arg, int chunk, int n_chunks, int thread)
{
    (void)thread;
    const struct matmul_job *job = arg;
    int64_t begin, end, n_ff = job->w[0]->n_out;
    chunk_rows(n_ff, chunk, n_chunks, &begin, &end);
    plm_matmul_prepared(job->w[0], job->xq, job->y[0], begin, end);
    plm_matmul_prepared(job->w[1], job->xq, job->y[1], begin, end);
    swiglu_rows(job->y[0], job->y[1], job->xq->n_tokens, n_ff, begin, end);
}

/* ffn_gate = silu(W_gate xb) * (W_up xb). */
static void gate_up(struct plm_session *s, const struct plm_layer *l, int n_tokens)
{
    int64_t n_ff = s->model->hp.n_ff;
    if (!same_activations(&l->w_gate, &l->w_up)) { /* two preparations of xb: two steps */
        matmul(s, &l->w_gate, s->xb, s->ffn_gate, n_tokens);
        matmul(s, &l->w_up, s->xb, s->ffn_up, n_tokens);
        swiglu_rows(s->ffn_gate, s->ffn_up, n_tokens, n_ff, 0, n_ff);
        return;
    }
    if (s->observe_matmul) {
        s->observe_matmul(s->observe_user, &l->w_gate, s->xb, n_tokens);
        s->observe_matmul(s->observe_user, &l->w_up, s->xb, n_tokens);
    }
    struct plm_activations xq = prepare(s, &l->w_gate, s->xb, n_tokens);
    struct matmul_job job = {2, {&l->w_gate, &l->w_up}, {s->ffn_gate, s->ffn_up}, &xq};
    threadpool_run(s->pool, gate_up_chunk, &job, chunk_count(s, n_ff, PLM_ROW_GRAIN));
}

/* SwiGLU: x += W_down (silu(W_gate h) * (W_up h)), h = rmsnorm(x). */
static void feed_forward(struct plm_session *s, const struct plm_layer *l, int n_tokens)
{
    const struct plm_hparams *hp = &s->model->hp;
    rmsnorm_rows(s->xb, s->x, l->ffn_norm, n_tokens, hp->n_embd, hp->norm_eps);
    gate_up(s, l, n_tokens);
    matmul(s, &l->w_down, s->ffn_gate, s->xb, n_tokens);
    add_rows(s->x, s->xb, (size_t)n_tokens * hp->n_embd);
}

static void transformer_layer(struct plm_session *s, int layer, const struct batch_row *rows, int n_tokens)
{
    const struct plm_hparams *hp = &s->model->hp;
    const struct plm_layer *l = &s->model->layers[layer];
    rmsnorm_rows(s->xb, s->x, l->attn_norm, n_tokens, hp->n_embd, hp->norm_eps);
    attention_qkv(s, l, layer, rows, n_tokens);
    attention(s, layer, rows, n_tokens);
    matmul(s, &l->wo, s->attn_out, s->xb, n_tokens);
    add_rows(s->x, s->xb, (size_t)n_tokens * hp->n_embd);
    feed_forward(s, l, n_tokens);
}

void forward_batch(struct plm_session *s, const int32_t *tokens, const struct batch_row *rows, int n_tokens,
                   float *logits)
{
    const struct plm_model *m = s->model;
    const struct plm_hparams *hp = &m->hp;
    for (int t = 0; t < n_tokens; t++)
        plm_matrix_get_row(&m->token_embd, tokens[t], s->x + (size_t)t * hp->n_embd);
    for (int layer = 0; layer < hp->n_layer; layer++)
        transformer_layer(s, layer, rows, n_tokens);

    /* Only the rows the caller wants go through the (large) output matrix. */
    int first = logits ? 0 : n_tokens - 1;
    int n_out = n_tokens - first;
    rmsnorm_rows(s->xb, s->x + (size_t)first * hp->n_embd, m->output_norm, n_out, hp->n_embd,
                 hp->norm_eps);
    matmul(s, &m->output, s->xb, logits ? logits : s->logits, n_out);
}
