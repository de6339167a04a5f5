/*
 * Calibration (plm_calibrate): runs the model over sample text to learn which
 * input channels of each weight matrix matter, and optionally how much each
 * matrix's quantization alone costs in output quality.
 *
 * Importance: the session's matmul observer sees every product's input rows;
 * for each weight tensor we add up x[i]^2 per input channel over all tokens
 * (in double: a long text sums millions of terms). Quantizing row r of W with
 * error e changes output r by sum_i e[i] x[i]; its expected square is roughly
 * sum_i e[i]^2 E[x[i]^2], so E[x^2] is the weight each element's error gets.
 *
 * Sensitivity: the text is scored as perplexity scores it (chunks of n_ctx
 * from an empty cache, the second half of each chunk scored) and the model's
 * own next-token log-probabilities kept as the reference. Then each matrix in
 * turn is quantized to each candidate type (with the importance), swapped into
 * the loaded model, and the mean KL divergence from the reference measured.
 */
#include "engine/session.h"

#include "core/error.h"
#include "eval/log_sum_exp.h"
#include "quant/imatrix.h"
#include "quant/quantize.h"
#include "tensor/types.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The candidate types whose sensitivity is measured, in file order. */
static const int candidate_types[] = {
    PLM_TYPE_Q2_K, PLM_TYPE_Q3_K, PLM_TYPE_Q4_0, PLM_TYPE_Q4_1, PLM_TYPE_Q4_K, PLM_TYPE_Q5_0,
    PLM_TYPE_Q5_1, PLM_TYPE_Q5_K, PLM_TYPE_Q6_K, PLM_TYPE_Q8_0, PLM_TYPE_F16,
};
#define N_CANDIDATES ((int)(sizeof candidate_types / sizeof candidate_types[0]))

/* One weight tensor; several struct plm_matrix may point at it (a tied output). */
struct tracked_matrix {
    const struct gguf_tensor *tensor; /* name, stored type and data */
    int64_t n_in, n_out;
    double *in_sum2;                  /* [n_in] sum over tokens of x[i]^2 */
    double count;                     /* tokens seen; 0 for a lookup-only embedding */
    float *importance;                /* [n_in] in_sum2 / count, or NULL when count is 0 */
    double kld[N_CANDIDATES];         /* mean KLD with only this tensor in candidate_types[k] */
};

struct calibration {
    struct plm_model *model;
    const struct plm_calibrate_params *params;
    plm_session *session;
    int n_chunks;
    int n_scored;               /* scored positions per chunk */
    int32_t *chunk;             /* [n_ctx] the chunk being decoded */
    float *logits;              /* [n_ctx][n_vocab] */
    float *reference;           /* [n_chunks * n_scored][n_vocab] log-probabilities, or NULL */
    int n_fields;               /* struct plm_matrix fields of the model */
    struct plm_matrix **fields;
    struct plm_matrix *original;/* [n_fields] each field as loaded, restored after a swap */
    int n_tracked;
    struct tracked_matrix *tracked;
};

/* ------------------------------------------------------------- the matrices */

static struct tracked_matrix *find_tracked(struct calibration *c, const void *data)
{
    for (int i = 0; i < c->n_tracked; i++)
        if (c->tracked[i].tensor->data == data)
            return &c->tracked[i];
    return NULL;
}

static const struct gguf_tensor *tensor_of(const struct gguf_file *file, const void *data)
{
    for (uint64_t i = 0; i < file->n_tensors; i++)
        if (file->tensors[i].data == data)
            return &file->tensors[i];
    return NULL;
}

/* Lists the model's matrix fields and the distinct tensors behind them. */
static int track_matrices(struct calibration *c)
{
    c->n_fields = model_matrices(c->model, NULL, 0);
    c->fields = calloc((size_t)c->n_fields, sizeof *c->fields);
    c->original = calloc((size_t)c->n_fields, sizeof *c->original);
    c->tracked = calloc((size_t)c->n_fields, sizeof *c->tracked);
    if (!c->fields || !c->original || !c->tracked)
        return plm_fail(PLM_ERR_NOMEM, "calibration: out of memory");
    model_matrices(c->model, c->fields, c->n_fields);
    for (int i = 0; i < c->n_fields; i++) {
        const struct plm_matrix *m = c->fields[i];
        c->original[i] = *m;
        if (find_tracked(c, m->data))
            continue;
        struct tracked_matrix *t = &c->tracked[c->n_tracked++];
        t->tensor = tensor_of(c->model->gguf, m->data);
        t->n_in = m->n_in;
        t->n_out = m->n_out;
        t->in_sum2 = calloc((size_t)m->n_in, sizeof *t->in_sum2);
        if (!t->tensor)
            return plm_fail(PLM_ERR_UNSUPPORTED, "calibration: a weight matrix is not a tensor of the file");
        if (!t->in_sum2)
            return plm_fail(PLM_ERR_NOMEM, "calibration: out of memory");
    }
    return PLM_OK;
}

static void free_tracked(struct calibration *c)
{
    for (int i = 0; i < c->n_tracked; i++) {
        free(c->tracked[i].in_sum2);
        free(c->tracked[i].importance);
    }
    free(c->tracked);
    free(c->fields);
    free(c->original);
}

/* The session's matmul observer: adds each input channel's square. Called from
 * the decoding thread before the product, so no locking. */
static void observe_product(void *user, const struct plm_matrix *w, const float *x, int n_tokens)
{
    struct tracked_matrix *t = find_tracked(user, w->data);
    if (!t)
        return;
    for (int tok = 0; tok < n_tokens; tok++) {
        const float *row = x + (size_t)tok * w->n_in;
        for (int64_t i = 0; i < w->n_in; i++)
            t->in_sum2[i] += (double)row[i] * row[i];
    }
    t->count += n_tokens;
}

static int compute_importance(struct calibration *c)
{
    for (int i = 0; i < c->n_tracked; i++) {
        struct tracked_matrix *t = &c->tracked[i];
        if (t->count == 0)
            continue;
        t->importance = malloc((size_t)t->n_in * sizeof *t->importance);
        if (!t->importance)
            return plm_fail(PLM_ERR_NOMEM, "calibration: out of memory");
        for (int64_t j = 0; j < t->n_in; j++)
            t->importance[j] = (float)(t->in_sum2[j] / t->count);
    }
    return PLM_OK;
}

/* ------------------------------------------------------------------ decoding */

/* Decodes chunk i from an empty cache into c->logits (every position's). */
static int decode_chunk(struct calibration *c, int i)
{
    int n_ctx = c->params->n_ctx;
    memcpy(c->chunk, c->params->tokens + (size_t)i * n_ctx, (size_t)n_ctx * sizeof *c->chunk);
    int32_t bos = plm_token_bos(c->model);
    if (bos >= 0)
        c->chunk[0] = bos;
    plm_session_truncate(c->session, 0);
    return plm_decode(c->session, c->chunk, n_ctx, c->logits);
}

/* The logits row of scored position j of the chunk (as plm_perplexity: rows
 * n_ctx/2 .. n_ctx-2, which predict tokens n_ctx/2+1 .. n_ctx-1). */
static float *scored_row(const struct calibration *c, int j)
{
    return c->logits + (size_t)(c->params->n_ctx / 2 + j) * c->model->hp.n_vocab;
}

/* In place: logits -> log softmax. */
static void log_softmax(float *x, int n)
{
    float max;
    double log_sum = log_sum_exp(x, n, &max);
    for (int i = 0; i < n; i++)
        x[i] = (float)(((double)x[i] - max) - log_sum);
}

static void report(const struct calibration *c, const char *what, int done, int total)
{
    if (c->params->on_progress)
        c->params->on_progress(c->params->user, what, done, total);
}

/* Decodes every chunk with the observer set; keeps the reference log-probs
 * when sensitivities will be measured. */
static int collect(struct calibration *c)
{
    int n_vocab = c->model->hp.n_vocab, rc = PLM_OK;
    c->session->observe_matmul = observe_product;
    c->session->observe_user = c;
    for (int i = 0; i < c->n_chunks && rc == PLM_OK; i++) {
        rc = decode_chunk(c, i);
        for (int j = 0; j < c->n_scored && c->reference && rc == PLM_OK; j++) {
            float *ref = c->reference + ((size_t)i * c->n_scored + j) * n_vocab;
            memcpy(ref, scored_row(c, j), (size_t)n_vocab * sizeof *ref);
            log_softmax(ref, n_vocab);
        }
        if (rc == PLM_OK)
            report(c, "importance", i + 1, c->n_chunks);
    }
    c->session->observe_matmul = NULL;
    c->session->observe_user = NULL;
    return rc == PLM_OK ? compute_importance(c) : rc;
}

/* ------------------------------------------------------------- sensitivities */

/* Mean over scored positions of KL(reference || model as it is now). Each
 * position's divergence is clamped at 0: below that it is rounding noise. */
static int mean_kld(struct calibration *c, double *kld)
{
    int n_vocab = c->model->hp.n_vocab;
    double total = 0.0;
    for (int i = 0; i < c->n_chunks; i++) {
        int rc = decode_chunk(c, i);
        if (rc != PLM_OK)
            return rc;
        for (int j = 0; j < c->n_scored; j++) {
            float *logp = scored_row(c, j);
            const float *ref = c->reference + ((size_t)i * c->n_scored + j) * n_vocab;
            log_softmax(logp, n_vocab);
            double divergence = 0.0;
            for (int v = 0; v < n_vocab; v++)
                divergence += exp((double)ref[v]) * ((double)ref[v] - logp[v]);
            total += fmax(divergence, 0.0);
        }
    }
    *kld = total / ((double)c->n_chunks * c->n_scored);
    return PLM_OK;
}

/* t's weights encoded in `type` with its importance; *data is malloc'd. */
static int quantize_copy(const struct tracked_matrix *t, int type, void **data)
{
    size_t src_row = plm_row_bytes(t->tensor->type, t->n_in), dst_row = plm_row_bytes(type, t->n_in);
    if (dst_row == 0)
        return plm_fail(PLM_ERR_ARG, "calibration: rows of %lld do not fit %s blocks", (long long)t->n_in,
                        plm_type_name(type));
    uint8_t *out = malloc(dst_row * (size_t)t->n_out);
    float *row = malloc((size_t)t->n_in * sizeof *row);
    if (!out || !row) {
        free(out);
        free(row);
        return plm_fail(PLM_ERR_NOMEM, "calibration: out of memory quantizing '%s'", t->tensor->name);
    }
    const uint8_t *src = t->tensor->data;
    for (int64_t r = 0; r < t->n_out; r++) {
        plm_dequantize_row(t->tensor->type, src + (size_t)r * src_row, row, t->n_in);
        plm_quantize_row_weighted(type, row, out + (size_t)r * dst_row, t->n_in, t->importance);
    }
    free(row);
    *data = out;
    return PLM_OK;
}

/* Mean KLD with only t's tensor in `type`: every field pointing at it (a tied
 * output too) is swapped for the quantized copy, then all are restored. */
static int measure(struct calibration *c, const struct tracked_matrix *t, int type, double *kld)
{
    void *data = NULL;
    int rc = quantize_copy(t, type, &data);
    if (rc != PLM_OK)
        return rc;
    for (int i = 0; i < c->n_fields; i++)
        if (c->original[i].data == t->tensor->data) {
            c->fields[i]->type = type;
            c->fields[i]->data = data;
            c->fields[i]->packed = NULL;
        }
    rc = mean_kld(c, kld);
    for (int i = 0; i < c->n_fields; i++)
        *c->fields[i] = c->original[i];
    free(data);
    return rc;
}

/* Index of the first candidate of t stored like candidate k (k itself if none
 * earlier): identical storage types are measured once. */
static int first_same_storage(const struct tracked_matrix *t, int k)
{
    int storage = plm_quant_storage_type(candidate_types[k], t->n_in);
    for (int j = 0; j < k; j++)
        if (plm_quant_storage_type(candidate_types[j], t->n_in) == storage)
            return j;
    return k;
}

static int measure_sensitivities(struct calibration *c)
{
    int total = 0, done = 0;
    for (int i = 0; i < c->n_tracked; i++)
        for (int k = 0; k < N_CANDIDATES; k++)
            total += first_same_storage(&c->tracked[i], k) == k;
    for (int i = 0; i < c->n_tracked; i++) {
        struct tracked_matrix *t = &c->tracked[i];
        for (int k = 0; k < N_CANDIDATES; k++) {
            int same = first_same_storage(t, k);
            if (same < k) {
                t->kld[k] = t->kld[same];
                continue;
            }
            int type = plm_quant_storage_type(candidate_types[k], t->n_in);
            int rc = measure(c, t, type, &t->kld[k]);
            if (rc != PLM_OK)
                return rc;
            char what[160];
            snprintf(what, sizeof what, "sensitivity %s %s", t->tensor->name, plm_type_name(type));
            report(c, what, ++done, total);
        }
    }
    return PLM_OK;
}

/* ------------------------------------------------------------------- output */

static int write_imatrix(const struct calibration *c, const char *out_path)
{
    bool sensitivity = c->params->sensitivity;
    /* n_fields, not n_tracked: the same bound, which the compiler sees is not negative. */
    struct imatrix_entry *entries = calloc((size_t)c->n_fields, sizeof *entries);
    if (!entries)
        return plm_fail(PLM_ERR_NOMEM, "calibration: out of memory");
    int n_entries = 0;
    for (int i = 0; i < c->n_tracked; i++) {
        const struct tracked_matrix *t = &c->tracked[i];
        if (t->count == 0 && !sensitivity)
            continue; /* an untied embedding: nothing measured */
        entries[n_entries++] = (struct imatrix_entry){
            .tensor_name = t->tensor->name,
            .n_in = t->n_in,
            .in_sum2 = t->count > 0 ? t->in_sum2 : NULL,
            .count = t->count,
            .kld = sensitivity ? t->kld : NULL,
        };
    }
    struct imatrix_contents contents = {
        .chunk_count = c->n_chunks,
        .chunk_size = c->params->n_ctx,
        .n_entries = n_entries,
        .entries = entries,
        .n_sensitivity_types = sensitivity ? N_CANDIDATES : 0,
        .sensitivity_types = candidate_types,
    };
    int rc = imatrix_write(out_path, &contents);
    free(entries);
    return rc;
}

/* Tells the caller each matrix written, with its sensitivities. */
static void list_matrices(const struct calibration *c)
{
    if (!c->params->on_matrix)
        return;
    const char *names[N_CANDIDATES];
    for (int k = 0; k < N_CANDIDATES; k++)
        names[k] = plm_type_name(candidate_types[k]);
    bool sensitivity = c->params->sensitivity;
    for (int i = 0; i < c->n_tracked; i++) {
        const struct tracked_matrix *t = &c->tracked[i];
        float kld[N_CANDIDATES];
        for (int k = 0; k < N_CANDIDATES; k++)
            kld[k] = (float)t->kld[k];
        if (t->count > 0 || sensitivity)
            c->params->on_matrix(c->params->user, t->tensor->name, names, kld, sensitivity ? N_CANDIDATES : 0);
    }
}

/* ---------------------------------------------------------------- the driver */

static int check_params(const struct plm_model *m, const struct plm_calibrate_params *p)
{
    if (!p->tokens || p->n_tokens <= 0)
        return plm_fail(PLM_ERR_ARG, "calibration: the text has no tokens");
    if (p->n_ctx < 4)
        return plm_fail(PLM_ERR_ARG, "calibration context %d must be at least 4", p->n_ctx);
    if (p->n_tokens < p->n_ctx)
        return plm_fail(PLM_ERR_ARG, "calibration needs at least %d tokens (one chunk), the text has %d",
                        p->n_ctx, p->n_tokens);
    for (int i = 0; i < p->n_tokens; i++)
        if (p->tokens[i] < 0 || p->tokens[i] >= m->hp.n_vocab)
            return plm_fail(PLM_ERR_ARG, "calibration token %d (id %d) is outside the vocabulary of %d", i,
                            p->tokens[i], m->hp.n_vocab);
    return PLM_OK;
}

/* Allocates the session and buffers, then collects, measures and writes. */
static int calibrate(struct calibration *c, const char *out_path)
{
    const struct plm_calibrate_params *p = c->params;
    int n_vocab = c->model->hp.n_vocab;
    c->n_chunks = p->n_tokens / p->n_ctx;
    if (p->max_chunks > 0 && p->max_chunks < c->n_chunks)
        c->n_chunks = p->max_chunks;
    c->n_scored = p->n_ctx - 1 - p->n_ctx / 2;
    struct plm_session_params sp = {.n_ctx = p->n_ctx, .n_threads = p->n_threads, .kv_type = PLM_KV_F32};
    int rc = plm_session_new(c->model, &sp, &c->session);
    if (rc != PLM_OK)
        return rc;
    c->chunk = malloc((size_t)p->n_ctx * sizeof *c->chunk);
    c->logits = malloc((size_t)p->n_ctx * n_vocab * sizeof *c->logits);
    if (p->sensitivity)
        c->reference = malloc((size_t)c->n_chunks * c->n_scored * n_vocab * sizeof *c->reference);
    if (!c->chunk || !c->logits || (p->sensitivity && !c->reference))
        return plm_fail(PLM_ERR_NOMEM, "calibration: out of memory for %d chunks of %d tokens", c->n_chunks,
                        p->n_ctx);
    if ((rc = track_matrices(c)) || (rc = collect(c)))
        return rc;
    if (p->sensitivity && (rc = measure_sensitivities(c)))
        return rc;
    if ((rc = write_imatrix(c, out_path)))
        return rc;
    list_matrices(c);
    return PLM_OK;
}

int plm_calibrate(plm_model *model, const struct plm_calibrate_params *params, const char *out_path)
{
    int rc = check_params(model, params);
    if (rc != PLM_OK)
        return rc;
    struct calibration c = {.model = model, .params = params};
    rc = calibrate(&c, out_path);
    plm_session_free(c.session);
    free(c.chunk);
    free(c.logits);
    free(c.reference);
    free_tracked(&c);
    return rc;
}
