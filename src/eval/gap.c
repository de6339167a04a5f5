/*
 * The gap between a compressed model and its reference on the same text
 * (plm_gap_save_reference, plm_gap_compare in pocketlm.h; method in docs/gap.md).
 *
 * The reference pass stores, for every scored position, the reference's whole
 * next-token distribution (gap.h documents the file). A comparison decodes the
 * same chunks with the model under test and sets its distribution against the
 * stored one position by position, reading the file through a mapping one
 * chunk at a time, so memory stays bounded however large the vocabulary.
 */
#include "eval/gap.h"

#include "core/error.h"
#include "eval/log_sum_exp.h"
#include "engine/session.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the metrics */

int gap_scored_per_chunk(int n_ctx)
{
    return n_ctx - 1 - n_ctx / 2;
}

void gap_log_softmax(const float *logits, int n_vocab, double *log_probs)
{
    float max;
    double log_sum = log_sum_exp(logits, n_vocab, &max);
    for (int i = 0; i < n_vocab; i++)
        log_probs[i] = ((double)logits[i] - max) - log_sum;
}

int gap_argmax(const double *values, int n)
{
    int best = 0;
    for (int i = 1; i < n; i++)
        if (values[i] > values[best])
            best = i;
    return best;
}

double gap_kl_divergence(const double *ref_log_probs, const double *model_log_probs, int n_vocab)
{
    double kld = 0.0;
    for (int v = 0; v < n_vocab; v++) {
        if (ref_log_probs[v] == -INFINITY) /* p log p -> 0 as p -> 0 */
            continue;
        kld += exp(ref_log_probs[v]) * (ref_log_probs[v] - model_log_probs[v]);
    }
    /* KL divergence is never negative; a sum just below 0 is the rounding of
     * nearly equal distributions (the stored probabilities sum to 1 only
     * within float precision). */
    return fmax(kld, 0.0);
}

void gap_score_position(const double *ref_log_probs, const double *model_log_probs, int n_vocab,
                        int32_t correct, struct gap_position *position)
{
    position->kld = gap_kl_divergence(ref_log_probs, model_log_probs, n_vocab);
    position->same_top1 = gap_argmax(ref_log_probs, n_vocab) == gap_argmax(model_log_probs, n_vocab);
    position->p_ref = exp(ref_log_probs[correct]);
    position->p_model = exp(model_log_probs[correct]);
}

bool gap_is_log_distribution(const float *row, int n_vocab)
{
    double sum = 0.0;
    for (int v = 0; v < n_vocab; v++) {
        if (!(row[v] <= 0.0f)) /* also refuses NaN */
            return false;
        sum += exp((double)row[v]);
    }
    /* Each stored value is rounded to float (relative error 6e-8), so the
     * probabilities sum to 1 within far less than this. */
    return fabs(sum - 1.0) < 1e-3;
}

double gap_quantile(const double *sorted, size_t n, double q)
{
    double h = q * (double)(n - 1);
    size_t below = (size_t)floor(h);
    if (below + 1 >= n)
        return sorted[n - 1];
    return sorted[below] + (h - (double)below) * (sorted[below + 1] - sorted[below]);
}

/* --------------------------------------------------------- the reference file */

static bool multiply_size(uint64_t a, uint64_t b, uint64_t *product)
{
    return !__builtin_mul_overflow(a, b, product);
}

static int parse_reference(struct gap_reference *ref, const char *path)
{
    const uint8_t *data = ref->file.data;
    size_t size = ref->file.size;
    if (size < GAP_REF_HEADER_BYTES || memcmp(data, GAP_REF_MAGIC, 8) != 0)
        return plm_fail(PLM_ERR_FORMAT, "'%s' is not a gap reference file (no %s magic)", path, GAP_REF_MAGIC);
    uint32_t version, n_vocab, n_ctx, n_chunks;
    memcpy(&version, data + 8, 4);
    memcpy(&n_vocab, data + 12, 4);
    memcpy(&n_ctx, data + 16, 4);
    memcpy(&n_chunks, data + 20, 4);
    if (version != GAP_REF_VERSION)
        return plm_fail(PLM_ERR_FORMAT, "'%s': gap reference version %u, this build reads %d", path, version,
                        GAP_REF_VERSION);
    if (n_vocab < 2 || n_vocab > INT32_MAX || n_ctx < 4 || n_ctx > INT32_MAX || n_chunks < 1 || n_chunks > INT32_MAX)
        return plm_fail(PLM_ERR_FORMAT, "'%s': gap reference with %u chunks of %u tokens over %u tokens is malformed",
                        path, n_chunks, n_ctx, n_vocab);
    uint64_t n_scored = (uint64_t)gap_scored_per_chunk((int)n_ctx);
    uint64_t n_positions, n_tokens, n_log_probs, token_bytes, log_prob_bytes, expected;
    bool sizes_fit = multiply_size(n_chunks, n_scored, &n_positions) && n_positions <= INT32_MAX &&
                     multiply_size(n_chunks, n_ctx, &n_tokens) &&
                     multiply_size(n_tokens, sizeof(int32_t), &token_bytes) &&
                     multiply_size(n_positions, n_vocab, &n_log_probs) &&
                     multiply_size(n_log_probs, sizeof(float), &log_prob_bytes) &&
                     !__builtin_add_overflow(token_bytes, log_prob_bytes, &expected) &&
                     !__builtin_add_overflow(expected, (uint64_t)GAP_REF_HEADER_BYTES, &expected);
    if (!sizes_fit)
        return plm_fail(PLM_ERR_FORMAT, "'%s': gap reference counts (%u chunks of %u tokens, %u-token vocabulary) "
                        "are too large", path, n_chunks, n_ctx, n_vocab);
    if (expected != size)
        return plm_fail(PLM_ERR_FORMAT, "'%s' has %zu bytes; its counts (%u chunks of %u tokens, %u-token "
                        "vocabulary) need %llu", path, size, n_chunks, n_ctx, n_vocab, (unsigned long long)expected);
    ref->n_vocab = (int)n_vocab;
    ref->n_ctx = (int)n_ctx;
    ref->n_chunks = (int)n_chunks;
    ref->n_scored = (int)n_scored;
    /* The mapping is page-aligned and the header 24 bytes, so both arrays are
     * aligned for their element types. */
    ref->tokens = (const int32_t *)(data + GAP_REF_HEADER_BYTES);
    ref->log_probs = (const float *)(data + GAP_REF_HEADER_BYTES + token_bytes);
    for (uint64_t i = 0; i < n_tokens; i++)
        if (ref->tokens[i] < 0 || ref->tokens[i] >= ref->n_vocab)
            return plm_fail(PLM_ERR_FORMAT, "'%s': token %d (index %llu) is outside the %d-token vocabulary", path,
                            ref->tokens[i], (unsigned long long)i, ref->n_vocab);
    return PLM_OK;
}

int gap_reference_open(struct gap_reference *ref, const char *path)
{
    memset(ref, 0, sizeof *ref);
    int rc = mapped_file_open(&ref->file, path);
    if (rc == PLM_OK && (rc = parse_reference(ref, path)) != PLM_OK)
        gap_reference_close(ref);
    return rc;
}

void gap_reference_close(struct gap_reference *ref)
{
    mapped_file_close(&ref->file);
    memset(ref, 0, sizeof *ref);
}

/* ------------------------------------------------------------- decoding */

/* Called with each scored row of a chunk: row j holds the logits at chunk
 * position n_ctx/2 + j. */
typedef int (*row_handler)(void *user, int row, const float *logits);

/* Decodes one chunk from an empty cache: the first half without logits, then
 * the rest PLM_BATCH tokens at a time into `logits` (PLM_BATCH rows), so the
 * buffer stays small whatever the context. The last token is decoded too,
 * though its logits look past the chunk: when n_ctx/2 is a multiple of
 * PLM_BATCH these are then exactly the batches of plm_perplexity's single
 * call, hence the same logits. */
static int decode_chunk(plm_session *s, const int32_t *chunk, int n_ctx, float *logits, row_handler handle_row,
                        void *user)
{
    int n_vocab = s->model->hp.n_vocab, first = n_ctx / 2, n_scored = gap_scored_per_chunk(n_ctx);
    plm_session_truncate(s, 0);
    int rc = plm_decode(s, chunk, first, NULL);
    for (int start = first; rc == PLM_OK && start < n_ctx; start += PLM_BATCH) {
        int n = n_ctx - start < PLM_BATCH ? n_ctx - start : PLM_BATCH;
        rc = plm_decode(s, chunk + start, n, logits);
        for (int i = 0; rc == PLM_OK && i < n && start - first + i < n_scored; i++)
            rc = handle_row(user, start - first + i, logits + (size_t)i * n_vocab);
    }
    return rc;
}

static int check_context(const plm_session *s, int n_ctx)
{
    if (n_ctx < 4)
        return plm_fail(PLM_ERR_ARG, "gap: chunks of %d tokens are too short (4 at least)", n_ctx);
    if (n_ctx > s->n_ctx)
        return plm_fail(PLM_ERR_ARG, "gap: chunks of %d tokens do not fit the session's context of %d", n_ctx,
                        s->n_ctx);
    return PLM_OK;
}

/* ---------------------------------------------------- saving a reference */

struct save_state {
    FILE *out;
    const char *path;
    int n_vocab;
    double *log_probs; /* [n_vocab] */
    float *row;        /* [n_vocab], as written */
};

static int write_row(void *user, int row, const float *logits)
{
    (void)row;
    struct save_state *st = user;
    gap_log_softmax(logits, st->n_vocab, st->log_probs);
    for (int v = 0; v < st->n_vocab; v++)
        st->row[v] = (float)st->log_probs[v];
    if (fwrite(st->row, sizeof *st->row, (size_t)st->n_vocab, st->out) != (size_t)st->n_vocab)
        return plm_fail(PLM_ERR_IO, "cannot write '%s': %s", st->path, strerror(errno));
    return PLM_OK;
}

/* The c-th chunk of the text as plm_perplexity cuts it: first token replaced by BOS. */
static void make_chunk(const int32_t *tokens, int c, int n_ctx, int32_t bos, int32_t *chunk)
{
    memcpy(chunk, tokens + (size_t)c * n_ctx, (size_t)n_ctx * sizeof *chunk);
    if (bos >= 0)
        chunk[0] = bos;
}

static int write_header_and_tokens(FILE *out, const char *path, const int32_t *tokens, int n_ctx, int n_chunks,
                                   int n_vocab, int32_t bos, int32_t *chunk)
{
    uint32_t fields[4] = {GAP_REF_VERSION, (uint32_t)n_vocab, (uint32_t)n_ctx, (uint32_t)n_chunks};
    bool ok = fwrite(GAP_REF_MAGIC, 1, 8, out) == 8 && fwrite(fields, sizeof fields, 1, out) == 1;
    for (int c = 0; ok && c < n_chunks; c++) {
        make_chunk(tokens, c, n_ctx, bos, chunk);
        ok = fwrite(chunk, sizeof *chunk, (size_t)n_ctx, out) == (size_t)n_ctx;
    }
    return ok ? PLM_OK : plm_fail(PLM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
}

int plm_gap_save_reference(plm_session *s, const int32_t *tokens, int n_tokens, int n_ctx, int max_chunks,
                           const char *path, void (*on_progress)(void *user, int done, int total), void *user)
{
    int rc = check_context(s, n_ctx);
    if (rc)
        return rc;
    int n_vocab = s->model->hp.n_vocab;
    int n_chunks = n_tokens / n_ctx;
    if (max_chunks > 0 && max_chunks < n_chunks)
        n_chunks = max_chunks;
    if (n_chunks == 0)
        return plm_fail(PLM_ERR_ARG, "gap: the text has %d tokens, fewer than one chunk of %d", n_tokens, n_ctx);
    FILE *out = fopen(path, "wb");
    if (!out)
        return plm_fail(PLM_ERR_IO, "cannot create '%s': %s", path, strerror(errno));
    int32_t bos = plm_token_bos(s->model);
    struct save_state st = {out, path, n_vocab, malloc((size_t)n_vocab * sizeof(double)),
                            malloc((size_t)n_vocab * sizeof(float))};
    float *logits = malloc((size_t)PLM_BATCH * n_vocab * sizeof *logits);
    int32_t *chunk = malloc((size_t)n_ctx * sizeof *chunk);
    if (!st.log_probs || !st.row || !logits || !chunk)
        rc = plm_fail(PLM_ERR_NOMEM, "gap: out of memory for a %d-token vocabulary", n_vocab);
    if (rc == PLM_OK)
        rc = write_header_and_tokens(out, path, tokens, n_ctx, n_chunks, n_vocab, bos, chunk);
    for (int c = 0; rc == PLM_OK && c < n_chunks; c++) {
        make_chunk(tokens, c, n_ctx, bos, chunk);
        rc = decode_chunk(s, chunk, n_ctx, logits, write_row, &st);
        if (rc == PLM_OK && on_progress)
            on_progress(user, c + 1, n_chunks);
    }
    if (fclose(out) != 0 && rc == PLM_OK)
        rc = plm_fail(PLM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    if (rc)
        remove(path);
    free(st.log_probs);
    free(st.row);
    free(logits);
    free(chunk);
    return rc;
}

/* ------------------------------------------------------ comparing a model */

/* Running sums over the scored positions. */
struct gap_totals {
    double nll;        /* the model's negative log-likelihood of the correct tokens */
    double ref_nll;    /* the reference's, from the stored log-probabilities */
    double dp, dp_squared;
    long same_top1;
    long count;
    double *klds;      /* every position's KL divergence, for the quantiles */
};

struct compare_state {
    const struct gap_reference *ref;
    int chunk;
    double *ref_log_probs;   /* [n_vocab] */
    double *model_log_probs; /* [n_vocab] */
    struct gap_totals *totals;
};

static int compare_row(void *user, int row, const float *logits)
{
    struct compare_state *st = user;
    const struct gap_reference *ref = st->ref;
    int n_vocab = ref->n_vocab;
    const float *stored = ref->log_probs + ((size_t)st->chunk * ref->n_scored + row) * n_vocab;
    if (!gap_is_log_distribution(stored, n_vocab))
        return plm_fail(PLM_ERR_FORMAT, "gap reference: row %d of chunk %d is not a log-probability distribution",
                        row, st->chunk);
    int32_t correct = ref->tokens[(size_t)st->chunk * ref->n_ctx + ref->n_ctx / 2 + row + 1];
    gap_log_softmax(logits, n_vocab, st->model_log_probs);
    struct gap_totals *t = st->totals;
    t->nll -= st->model_log_probs[correct];
    t->ref_nll -= stored[correct];
    /* The model's log-probabilities are rounded to float as the reference's
     * were when stored, so both sides carry the same rounding: a model
     * compared with its own reference gives exactly 0, not rounding noise. */
    for (int v = 0; v < n_vocab; v++) {
        st->ref_log_probs[v] = stored[v];
        st->model_log_probs[v] = (float)st->model_log_probs[v];
    }
    struct gap_position position;
    gap_score_position(st->ref_log_probs, st->model_log_probs, n_vocab, correct, &position);
    double dp = position.p_model - position.p_ref;
    t->dp += dp;
    t->dp_squared += dp * dp;
    t->same_top1 += position.same_top1;
    t->klds[t->count++] = position.kld;
    return PLM_OK;
}

static int compare_doubles(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static void summarize(struct gap_totals *t, const struct gap_reference *ref, struct plm_gap_metrics *m)
{
    double n = (double)t->count, kld_sum = 0.0;
    for (long i = 0; i < t->count; i++)
        kld_sum += t->klds[i];
    qsort(t->klds, (size_t)t->count, sizeof *t->klds, compare_doubles);
    m->n_chunks = ref->n_chunks;
    m->n_scored = (int)t->count;
    m->n_ctx = ref->n_ctx;
    m->ppl = exp(t->nll / n);
    m->ref_ppl = exp(t->ref_nll / n);
    m->ppl_ratio = m->ppl / m->ref_ppl;
    m->kld_mean = kld_sum / n;
    m->kld_median = gap_quantile(t->klds, (size_t)t->count, 0.5);
    m->kld_p99 = gap_quantile(t->klds, (size_t)t->count, 0.99);
    m->kld_max = t->klds[t->count - 1];
    m->top1_agreement = (double)t->same_top1 / n;
    m->dp_mean = t->dp / n;
    m->dp_rms = sqrt(t->dp_squared / n);
}

static int compare_chunks(plm_session *s, const struct gap_reference *ref,
                          void (*on_progress)(void *user, int done, int total), void *user,
                          struct plm_gap_metrics *metrics)
{
    int n_vocab = ref->n_vocab;
    struct gap_totals totals = {0};
    totals.klds = malloc((size_t)ref->n_chunks * ref->n_scored * sizeof *totals.klds);
    struct compare_state st = {ref, 0, malloc((size_t)n_vocab * sizeof(double)),
                               malloc((size_t)n_vocab * sizeof(double)), &totals};
    float *logits = malloc((size_t)PLM_BATCH * n_vocab * sizeof *logits);
    int rc = PLM_OK;
    if (!totals.klds || !st.ref_log_probs || !st.model_log_probs || !logits)
        rc = plm_fail(PLM_ERR_NOMEM, "gap: out of memory for %d chunks over a %d-token vocabulary",
                      ref->n_chunks, n_vocab);
    size_t chunk_floats = (size_t)ref->n_scored * n_vocab;
    for (int c = 0; rc == PLM_OK && c < ref->n_chunks; c++) {
        st.chunk = c;
        rc = decode_chunk(s, ref->tokens + (size_t)c * ref->n_ctx, ref->n_ctx, logits, compare_row, &st);
        /* The file holds n_vocab floats per position and can outgrow RAM: a
         * finished chunk's log-probabilities leave memory. */
        mapped_file_release(&ref->file, ref->log_probs + c * chunk_floats, chunk_floats * sizeof(float));
        if (rc == PLM_OK && on_progress)
            on_progress(user, c + 1, ref->n_chunks);
    }
    if (rc == PLM_OK)
        summarize(&totals, ref, metrics);
    free(totals.klds);
    free(st.ref_log_probs);
    free(st.model_log_probs);
    free(logits);
    return rc;
}

int plm_gap_compare(plm_session *s, const char *reference_path,
                    void (*on_progress)(void *user, int done, int total), void *user,
                    struct plm_gap_metrics *metrics)
{
    memset(metrics, 0, sizeof *metrics);
    struct gap_reference ref;
    int rc = gap_reference_open(&ref, reference_path);
    if (rc)
        return rc;
    if (ref.n_vocab != s->model->hp.n_vocab)
        rc = plm_fail(PLM_ERR_ARG, "gap: the reference '%s' has a %d-token vocabulary, the model %d",
                      reference_path, ref.n_vocab, s->model->hp.n_vocab);
    else
        rc = check_context(s, ref.n_ctx);
    if (rc == PLM_OK)
        rc = compare_chunks(s, &ref, on_progress, user, metrics);
    gap_reference_close(&ref);
    return rc;
}
