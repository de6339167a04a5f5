/*
 * The KV cache and attention over it (attention.c), for the forward pass.
 */
#ifndef PLM_MODEL_ATTENTION_H
#define PLM_MODEL_ATTENTION_H

#include "engine/session.h"

/* Stores one token's keys and values (n_head_kv * head_dim floats each) at
 * position pos of layer's rows in owner's cache, in owner's cache type. */
void attention_store(const struct plm_session *owner, int layer, int pos, const float *keys, const float *values);

/* Causal attention of the batch's queries (s->q) over their sessions'
 * caches, which hold every position up to each row's own: one row per token
 * into s->attn_out, on s's threads and scratch. */
void attention(struct plm_session *s, int layer, const struct batch_row *rows, int n_tokens);

/* Floats of one thread's attention scratch (session.c allocates
 * n_threads of them at s->attention). */
size_t attention_scratch_floats(const struct plm_hparams *hp);

#endif
