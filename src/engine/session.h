/*
 * A session: one conversation's KV cache and the scratch buffers of the
 * forward pass. Tokens are processed in batches of up to PLM_BATCH so that a
 * weight row, once read, serves every token of the batch.
 */
#ifndef PLM_ENGINE_SESSION_H
#define PLM_ENGINE_SESSION_H

#include "engine/threadpool.h"
#include "model/model.h"

#define PLM_BATCH 64
/* Threads split a matrix product into runs of rows, a multiple of this many. */
#define PLM_ROW_GRAIN 16

struct plm_session {
    struct plm_model *model;
    int n_ctx;
    struct plm_threadpool *pool;
    int n_past;          /* positions held in the cache */

    /* KV cache: [n_layer][n_ctx] rows of n_head_kv * head_dim values each, in
     * kv_type (an enum plm_type: F32, F16 or Q8_0), kv_row_bytes per row. */
    int kv_type;
    size_t kv_row_bytes;
    uint8_t *key_cache;
    uint8_t *value_cache;

    /* Activations of a batch, one row per token. */
    float *x;            /* residual stream        [PLM_BATCH][n_embd] */
    float *xb;           /* normed input / output  [PLM_BATCH][n_embd] */
    float *q;            /* queries                [PLM_BATCH][n_head * head_dim] */
    float *k;            /* keys of the batch      [PLM_BATCH][n_head_kv * head_dim] */
    float *v;            /* values of the batch    [PLM_BATCH][n_head_kv * head_dim] */
    float *attn_out;     /* heads concatenated     [PLM_BATCH][n_head * head_dim] */
    float *ffn_gate;     /* gate, then gate*up     [PLM_BATCH][n_ff] */
    float *ffn_up;       /*                        [PLM_BATCH][n_ff] */
    float *attention;    /* each thread's attention scratch (model/attention.c) */
    float *rope_inv_freq;/* per rotated pair       [head_dim / 2] */
    float *rope_cos;     /* one position's angles  [head_dim / 2] */
    float *rope_sin;
    float *logits;       /* after the last token   [n_vocab] */
    void *activations;   /* the input of the current matrix product as its kernel
                            reads it (plm_plan_activations) */
    size_t activations_bytes;

    /* Calibration sees every matrix product's input through this, called
     * before the product from the calling thread; NULL normally. */
    void (*observe_matmul)(void *user, const struct plm_matrix *w, const float *x, int n_tokens);
    void *observe_user;
};

/* Where one token of a batch belongs: the session whose KV cache it is
 * stored in and attends over, and its position there. plm_decode's rows are
 * one session's next positions; plm_decode_sessions' rows are one position of
 * each of several sessions. */
struct batch_row {
    struct plm_session *session;
    int pos;
};

/* Runs the transformer over n_tokens <= PLM_BATCH tokens, token t at
 * rows[t].pos of rows[t].session (the caller has checked that the position
 * fits that session's context). Stores each token's keys and values in its
 * session's cache, and writes next-token logits: every row into `logits`
 * when it is not NULL, else the last row only, into s->logits. s lends its scratch, thread pool and
 * observe_matmul hook; the model is s's, which must be every row's. Changes
 * no n_past. */
void forward_batch(struct plm_session *s, const int32_t *tokens, const struct batch_row *rows, int n_tokens,
                   float *logits);

#endif
