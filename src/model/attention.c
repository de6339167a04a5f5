/*
 * The KV cache and causal attention over it, a tile of tokens and one
 * key-value head at a time.
 *
 * A tile is up to ATTENTION_TOKENS consecutive tokens of one session. Its
 * rows are every query head of those tokens that reads the key-value head
 * (the heads of a group share it), so each block of PLM_ATTENTION_BLOCK
 * cached positions is fetched (and its keys transposed) once for all of
 * them. The softmax runs along the blocks ("online"): each row keeps the
 * largest score so far and the sum of exp(score - max), and rescales its
 * output when a block raises the max, so a row needs no buffer of n_ctx
 * scores. Blocks start at multiples of the block size and every row's sums
 * are its own, so a token gets the same bits in any tile.
 */
#include "model/attention.h"

#include "kernels/attention.h"
#include "tensor/types.h"

#include <math.h>
#include <string.h>

#define ATTENTION_TOKENS 8
#define BLOCK PLM_ATTENTION_BLOCK

/* The row of `owner`'s key or value cache for a layer and position. The cache
 * functions take the session that owns the cache, which for a row of
 * plm_decode_sessions is not the one lending the scratch. */
static uint8_t *cache_row(uint8_t *cache, const struct plm_session *owner, int layer, int pos)
{
    return cache + ((size_t)layer * owner->n_ctx + pos) * owner->kv_row_bytes;
}

/* Stores one token's keys or values in the owner's cache type. */
static void store_row(const struct plm_session *owner, uint8_t *row, const float *values)
{
    int64_t kv_dim = (int64_t)owner->model->hp.n_head_kv * owner->model->hp.head_dim;
    if (owner->kv_type == PLM_TYPE_F32)
        memcpy(row, values, (size_t)kv_dim * sizeof(float));
    else
        plm_quantize_row(owner->kv_type, values, row, kv_dim);
}

/* One head of a cached row as floats: in place for F32, else expanded into tmp. */
static const float *cache_head(const struct plm_session *owner, const uint8_t *row, int head, float *tmp)
{
    int head_dim = owner->model->hp.head_dim;
    if (owner->kv_type == PLM_TYPE_F32) /* the common case, for every position of every head */
        return (const float *)row + (size_t)head * head_dim;
    plm_dequantize_row(owner->kv_type, row + plm_row_bytes(owner->kv_type, (int64_t)head * head_dim), tmp, head_dim);
    return tmp;
}

void attention_store(const struct plm_session *owner, int layer, int pos, const float *keys, const float *values)
{
    store_row(owner, cache_row(owner->key_cache, owner, layer, pos), keys);
    store_row(owner, cache_row(owner->value_cache, owner, layer, pos), values);
}

/* A thread's share of s->attention (sized by attention_scratch_floats). */
struct attention_scratch {
    float *queries; /* the tile's query rows      [rows][head_dim] */
    float *scores;  /* a block's scores, then weights [rows][BLOCK] */
    float *max;     /* each row's largest score   [rows] */
    float *sum;     /* each row's sum of weights  [rows] */
    float *keys_t;  /* a block's keys, transposed [head_dim][BLOCK] */
    float *values;  /* a block's values when the cache is not F32 [BLOCK][head_dim] */
    float *key;     /* one key expanded to floats [head_dim] */
};

static int group_size(const struct plm_hparams *hp) { return hp->n_head / hp->n_head_kv; }

size_t attention_scratch_floats(const struct plm_hparams *hp)
{
    size_t rows = (size_t)ATTENTION_TOKENS * group_size(hp), head_dim = (size_t)hp->head_dim;
    return rows * (head_dim + BLOCK + 2) + 2 * BLOCK * head_dim + head_dim;
}

static struct attention_scratch attention_scratch(const struct plm_session *s, int thread)
{
    const struct plm_hparams *hp = &s->model->hp;
    size_t rows = (size_t)ATTENTION_TOKENS * group_size(hp), head_dim = (size_t)hp->head_dim;
    float *cursor = s->attention + (size_t)thread * attention_scratch_floats(hp);
    struct attention_scratch w;
    w.queries = cursor, cursor += rows * head_dim;
    w.scores = cursor, cursor += rows * BLOCK;
    w.max = cursor, cursor += rows;
    w.sum = cursor, cursor += rows;
    w.keys_t = cursor, cursor += BLOCK * head_dim;
    w.values = cursor, cursor += BLOCK * head_dim;
    w.key = cursor;
    return w;
}

/* Keys of positions [first, first + n) of key-value head kv_head into
 * keys_t[d][j]; the columns from n on are zero. */
static void load_keys(const struct plm_session *owner, int layer, int kv_head, int first, int n,
                      const struct attention_scratch *w)
{
    int head_dim = owner->model->hp.head_dim;
    for (int j = 0; j < BLOCK; j++) {
        const float *key = NULL;
        if (j < n)
            key = cache_head(owner, cache_row(owner->key_cache, owner, layer, first + j), kv_head, w->key);
        for (int d = 0; d < head_dim; d++)
            w->keys_t[d * BLOCK + j] = key ? key[d] : 0.0f;
    }
}

/* Values of positions [first, first + n) of key-value head kv_head: in the
 * cache itself when it holds floats, else expanded into w->values. Sets
 * *stride to the floats from one value to the next. */
static const float *load_values(const struct plm_session *owner, int layer, int kv_head, int first, int n,
                                const struct attention_scratch *w, size_t *stride)
{
    int head_dim = owner->model->hp.head_dim;
    const uint8_t *row = cache_row(owner->value_cache, owner, layer, first);
    if (owner->kv_type == PLM_TYPE_F32) {
        *stride = owner->kv_row_bytes / sizeof(float);
        return (const float *)row + (size_t)kv_head * head_dim;
    }
    for (int j = 0; j < n; j++) {
        float *value = w->values + (size_t)j * head_dim;
        cache_head(owner, row + j * owner->kv_row_bytes, kv_head, value);
    }
    *stride = (size_t)head_dim;
    return w->values;
}

/* Where token t's query heads of group kv_head start, in q or attn_out. */
static size_t group_offset(const struct plm_hparams *hp, int t, int kv_head)
{
    return (size_t)t * hp->n_head * hp->head_dim + (size_t)kv_head * group_size(hp) * hp->head_dim;
}

/* Causal attention of tokens [first, first + n) (one session, positions
 * increasing) for the query heads of key-value head kv_head, into attn_out. */
static void attend_tile(const struct plm_session *s, const struct batch_row *rows, int layer, int first, int n,
                        int kv_head, const struct attention_scratch *w)
{
    const struct plm_hparams *hp = &s->model->hp;
    const struct plm_session *owner = rows[first].session;
    int group = group_size(hp), head_dim = hp->head_dim, row_floats = group * head_dim;
    float scale = 1.0f / sqrtf((float)head_dim);
    for (int i = 0; i < n; i++) {
        memcpy(w->queries + (size_t)i * row_floats, s->q + group_offset(hp, first + i, kv_head),
               row_floats * sizeof(float));
        memset(s->attn_out + group_offset(hp, first + i, kv_head), 0, row_floats * sizeof(float));
    }
    for (int r = 0; r < n * group; r++)
        w->max[r] = -INFINITY, w->sum[r] = 0.0f;

    int last = rows[first + n - 1].pos, reader = 0; /* the tile's first token that reads the block */
    for (int block = 0; block <= last; block += BLOCK) {
        int n_pos = last + 1 - block < BLOCK ? last + 1 - block : BLOCK;
        while (rows[first + reader].pos < block)
            reader++;
        load_keys(owner, layer, kv_head, block, n_pos, w);
        plm_attention_scores(w->queries + (size_t)reader * row_floats, (n - reader) * group, head_dim, w->keys_t,
                             scale, w->scores + (size_t)reader * group * BLOCK);
        size_t stride;
        const float *values = load_values(owner, layer, kv_head, block, n_pos, w, &stride);
        for (int i = reader; i < n; i++) {
            int n_read = rows[first + i].pos + 1 - block < n_pos ? rows[first + i].pos + 1 - block : n_pos;
            float *out = s->attn_out + group_offset(hp, first + i, kv_head);
            float *weights = w->scores + (size_t)i * group * BLOCK;
            for (int h = 0; h < group; h++) {
                int r = i * group + h;
                plm_attention_softmax(weights + h * BLOCK, n_read, &w->max[r], &w->sum[r], out + h * head_dim,
                                      head_dim);
            }
            plm_attention_values(out, group, head_dim, weights, values, stride, n_read);
        }
    }
    for (int i = 0; i < n; i++) {
        float *out = s->attn_out + group_offset(hp, first + i, kv_head);
        for (int h = 0; h < group; h++)
            for (int d = 0; d < head_dim; d++)
                out[h * head_dim + d] /= w->sum[i * group + h];
    }
}

/* Tokens [first, first + n) of the batch, and the positions they read. */
struct attention_tile {
    int first, n;
    int64_t work;
};

struct attention_job {
    const struct plm_session *s;
    const struct batch_row *rows;
    int layer;
    struct attention_tile tiles[PLM_BATCH];
    int n_tiles;
    int64_t total_work; /* of all the tiles */
};

/* Cuts the batch into tiles: runs of one session's tokens at increasing
 * positions, at most ATTENTION_TOKENS long. A tile's work is the positions
 * its tokens read, plus a fixed share per token (its softmax and output). */
static void cut_tiles(struct attention_job *job, int n_tokens)
{
    job->n_tiles = 0;
    job->total_work = 0;
    for (int t = 0; t < n_tokens; t++) {
        bool extends = t > 0 && job->tiles[job->n_tiles - 1].n < ATTENTION_TOKENS &&
                       job->rows[t].session == job->rows[t - 1].session && job->rows[t].pos > job->rows[t - 1].pos;
        if (!extends)
            job->tiles[job->n_tiles++] = (struct attention_tile){t, 0, 0};
        struct attention_tile *tile = &job->tiles[job->n_tiles - 1];
        tile->n++;
        tile->work += job->rows[t].pos + 1 + 16;
        job->total_work += job->rows[t].pos + 1 + 16;
    }
}

/* The first (tile, key-value head) item of chunk `chunk` of n_chunks, the
 * items split so that every chunk has about the same work: in a prompt the
 * last tokens read hundreds of positions and the first a few. */
static int first_item(const struct attention_job *job, int chunk, int n_chunks)
{
    int n_head_kv = job->s->model->hp.n_head_kv;
    int64_t target = job->total_work * n_head_kv * chunk / n_chunks, before = 0;
    for (int i = 0; i < job->n_tiles; i++) {
        int64_t work = job->tiles[i].work;
        if (before + work * n_head_kv > target) /* the chunk starts within tile i */
            return i * n_head_kv + (int)((target - before + work - 1) / work);
        before += work * n_head_kv;
    }
    return job->n_tiles * n_head_kv;
}

static void attention_chunk(void *arg, int chunk, int n_chunks, int thread)
{
    const struct attention_job *job = arg;
    int n_head_kv = job->s->model->hp.n_head_kv;
    struct attention_scratch w = attention_scratch(job->s, thread);
    int begin = first_item(job, chunk, n_chunks), end = first_item(job, chunk + 1, n_chunks);
    for (int i = begin; i < end; i++) {
        const struct attention_tile *tile = &job->tiles[i / n_head_kv];
        attend_tile(job->s, job->rows, job->layer, tile->first, tile->n, i % n_head_kv, &w);
    }
}

void attention(struct plm_session *s, int layer, const struct batch_row *rows, int n_tokens)
{
    struct attention_job job = {.s = s, .rows = rows, .layer = layer};
    cut_tiles(&job, n_tokens);
    int n_items = job.n_tiles * s->model->hp.n_head_kv, n_threads = threadpool_size(s->pool);
    threadpool_run(s->pool, attention_chunk, &job, n_items < n_threads ? n_items : n_threads);
}
