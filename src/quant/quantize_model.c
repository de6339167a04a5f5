/*
 * plm_quantize: a GGUF model's weight matrices re-encoded in other types.
 *
 *   1. Plan: every tensor's output type. 1-D tensors (norms, biases) become
 *      F32; tensors of more than two dimensions are copied as they are. A
 *      matrix gets the preset's type (presets.c), then the last --tensor-type
 *      pattern that matches its name; with a target size, the matrices with
 *      measured sensitivities get the types the budget fit chooses
 *      (fit_budget.c); last, a type whose block does not divide the row length
 *      falls back to one that does (plm_quant_storage_type), with a note.
 *   2. Layout: the GGUF writer writes the metadata (copied, general.file_type
 *      updated), the tensor infos and placeholder data. The writer borrows
 *      every tensor's data until it writes the file, so instead of holding the
 *      whole converted model, every tensor borrows one buffer sized for the
 *      largest output tensor.
 *   3. Data: the laid-out file is reopened to learn where each tensor's data
 *      starts, and each tensor is converted into the buffer (rows dequantized
 *      to floats and encoded again, in chunks that a thread pool's threads
 *      claim) and written in place.
 * Peak memory is the mapped input plus one output tensor; the price is
 * writing the data twice. Each row is encoded on its own, so the file is
 * byte-identical for any thread count. It appears under its final name only
 * when complete.
 */
#include "core/error.h"
#include "engine/threadpool.h"
#include "format/gguf.h"
#include "format/gguf_writer.h"
#include "pocketlm.h"
#include "quant/fit_budget.h"
#include "quant/imatrix.h"
#include "quant/presets.h"
#include "quant/quantize.h"
#include "tensor/types.h"

#include <errno.h>
#include <fnmatch.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define MAX_THREADS 64
#define MAX_PATTERN 256

/* One --tensor-type PATTERN=TYPE. */
struct type_override {
    char pattern[MAX_PATTERN];
    int type;
};

/* What happens to one tensor of the input. */
struct tensor_plan {
    const struct gguf_tensor *in;
    bool matrix;             /* 2-D: encoded in `type` with the importance */
    bool overridden;         /* type set by a --tensor-type pattern */
    int asked;               /* type before the row-length fallback */
    int type;                /* type written */
    const float *importance; /* one weight per input channel, or NULL */
    double kld;              /* predicted by the budget fit, or -1 */
    uint64_t nbytes;         /* of the output data */
    uint64_t out_offset;     /* where the data goes in the output file */
};

struct quantize_job {
    const struct plm_quantize_params *params;
    const char *in_path;
    const char *partial_path; /* the output until complete; also the header probe */
    struct gguf_file *in;
    struct imatrix *imatrix;
    const struct quant_preset *preset; /* NULL: no type given (target size only) */
    struct type_override *overrides;
    int n_overrides;
    struct tensor_plan *plan;
    int n_tensors;
    int n_threads;
};

static void note(const struct quantize_job *job, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void note(const struct quantize_job *job, const char *fmt, ...)
{
    if (!job->params->on_note)
        return;
    char text[512];
    va_list args;
    va_start(args, fmt);
    vsnprintf(text, sizeof text, fmt, args);
    va_end(args);
    job->params->on_note(job->params->user, text);
}

static uint64_t align_up(uint64_t n, uint64_t alignment)
{
    return (n + alignment - 1) / alignment * alignment;
}

static int64_t n_rows_of(const struct gguf_tensor *t)
{
    return t->ne[1] * t->ne[2] * t->ne[3];
}

/* ------------------------------------------------------------- parameters */

static int unknown_type(const char *what, const char *name)
{
    char known[512] = "";
    const char *preset;
    for (int i = 0; (preset = plm_quantize_preset_name(i, NULL)) != NULL; i++)
        snprintf(known + strlen(known), sizeof known - strlen(known), "%s%s", i ? " " : "", preset);
    return plm_fail(PLM_ERR_ARG, "unknown %s '%s' (known: %s)", what, name, known);
}

/* fnmatch takes any pattern, treating a bracket that is never closed as a
 * literal '['; refuse that and a trailing backslash, which are typing errors. */
static int check_pattern(const char *text, const char *pattern)
{
    for (const char *p = pattern; *p; p++) {
        if (*p == '\\') {
            if (!*++p)
                return plm_fail(PLM_ERR_ARG, "tensor type '%s': the pattern ends with a backslash", text);
        } else if (*p == '[') {
            const char *q = p + 1;
            if (*q == '!' || *q == '^')
                q++;
            if (*q == ']')
                q++; /* a leading ']' is a member of the set */
            q = strchr(q, ']');
            if (!q)
                return plm_fail(PLM_ERR_ARG, "tensor type '%s': '[' without a closing ']'", text);
            p = q;
        }
    }
    return PLM_OK;
}

/* "PATTERN=TYPE": TYPE a single tensor type (not a mix); the last '=' splits. */
static int parse_override(const char *text, struct type_override *o)
{
    const char *eq = text ? strrchr(text, '=') : NULL;
    if (!eq || eq == text || !eq[1])
        return plm_fail(PLM_ERR_ARG, "tensor type '%s' is not PATTERN=TYPE", text ? text : "(null)");
    size_t len = (size_t)(eq - text);
    if (len >= sizeof o->pattern)
        return plm_fail(PLM_ERR_ARG, "tensor type pattern is longer than %d characters", MAX_PATTERN - 1);
    memcpy(o->pattern, text, len);
    o->pattern[len] = '\0';
    o->type = plm_type_from_name(eq + 1);
    if (!plm_type_traits(o->type))
        return plm_fail(PLM_ERR_ARG,
                        "tensor type '%s': '%s' is not a tensor type (F32 F16 BF16 Q8_0 Q6_K Q5_K Q5_1 Q5_0 "
                        "Q4_K Q4_1 Q4_0 Q3_K Q2_K)", text, eq + 1);
    return check_pattern(text, o->pattern);
}

static int check_params(struct quantize_job *job)
{
    const struct plm_quantize_params *p = job->params;
    if (!p->type && p->target_bytes == 0)
        return plm_fail(PLM_ERR_ARG, "no type given (a preset such as Q4_K_M, or a target size)");
    if (p->type && !(job->preset = quant_preset_find(p->type)))
        return unknown_type("type", p->type);
    if (p->target_bytes > 0 && !p->imatrix_path)
        return plm_fail(PLM_ERR_ARG, "a target size needs an importance matrix with sensitivities "
                                     "(from `pocketlm calibrate --sensitivity`)");
    if (p->n_threads < 0 || p->n_tensor_types < 0 || (p->n_tensor_types > 0 && !p->tensor_types))
        return plm_fail(PLM_ERR_ARG, "quantize: bad thread count or tensor type list");
    job->overrides = calloc((size_t)p->n_tensor_types + 1, sizeof *job->overrides);
    if (!job->overrides)
        return plm_fail(PLM_ERR_NOMEM, "quantize: out of memory");
    for (int i = 0; i < p->n_tensor_types; i++) {
        int rc = parse_override(p->tensor_types[i], &job->overrides[i]);
        if (rc)
            return rc;
    }
    job->n_overrides = p->n_tensor_types;
    long cores = sysconf(_SC_NPROCESSORS_ONLN);
    int n = p->n_threads > 0 ? p->n_threads : cores > 0 ? (int)cores : 1;
    job->n_threads = n > MAX_THREADS ? MAX_THREADS : n;
    return PLM_OK;
}

/* ------------------------------------------------------------------ layout */

/* llama.cpp's general.file_type: the preset's, or that of the type holding
 * most of the matrices' weights. */
static int file_type_of(const struct quantize_job *job)
{
    if (job->preset)
        return quant_preset_file_type(job->preset);
    uint64_t weights[PLM_TYPE_COUNT] = {0};
    int dominant = PLM_TYPE_F32;
    for (int i = 0; i < job->n_tensors; i++) {
        const struct tensor_plan *t = &job->plan[i];
        if (!t->matrix)
            continue;
        weights[t->type] += (uint64_t)(t->in->ne[0] * n_rows_of(t->in));
        if (weights[t->type] > weights[dominant])
            dominant = t->type;
    }
    int file_type = quant_file_type_of(dominant);
    return file_type < 0 ? 0 : file_type;
}

/* Fills a writer with the output's metadata and tensor infos, every tensor
 * borrowing `data`. A probe has every tensor F32 with all dimensions 1: its
 * header is the size of the real one (a tensor info's size depends only on
 * the name and the number of dimensions) and its data is tiny. */
static int fill_writer(const struct quantize_job *job, struct gguf_writer *w, bool probe, const void *data)
{
    static const float zero = 0.0f;
    static const int64_t ones[GGUF_MAX_DIMS] = {1, 1, 1, 1};
    int rc = PLM_OK;
    for (uint64_t i = 0; rc == PLM_OK && i < job->in->n_kv; i++)
        rc = gguf_writer_copy_kv(w, &job->in->kv[i]);
    if (rc == PLM_OK)
        rc = gguf_writer_set_u32(w, "general.file_type", probe ? 0 : (uint32_t)file_type_of(job));
    if (rc == PLM_OK)
        rc = gguf_writer_set_u32(w, "general.quantization_version", 2);
    for (int i = 0; rc == PLM_OK && i < job->n_tensors; i++) {
        const struct gguf_tensor *t = job->plan[i].in;
        rc = probe ? gguf_writer_add_tensor(w, t->name, PLM_TYPE_F32, ones, (int)t->n_dims, &zero)
                   : gguf_writer_add_tensor(w, t->name, job->plan[i].type, t->ne, (int)t->n_dims, data);
    }
    return rc;
}

static int write_layout(const struct quantize_job *job, bool probe, const void *data, const char *path)
{
    struct gguf_writer *w = gguf_writer_new();
    if (!w)
        return plm_fail(PLM_ERR_NOMEM, "quantize: out of memory");
    int rc = fill_writer(job, w, probe, data);
    if (rc == PLM_OK)
        rc = gguf_writer_write(w, path);
    gguf_writer_free(w);
    return rc;
}

/* The exact bytes before the tensor data in the output, from a probe file. */
static int measure_header(const struct quantize_job *job, uint64_t *bytes)
{
    struct gguf_file *probe = NULL;
    int rc = write_layout(job, true, NULL, job->partial_path);
    if (rc == PLM_OK)
        rc = gguf_open(job->partial_path, &probe);
    if (rc == PLM_OK)
        *bytes = probe->data_offset;
    gguf_free(probe);
    remove(job->partial_path);
    return rc;
}

/* ---------------------------------------------------------------- planning */

/* N of a "blk.N." name, or -1. */
static int layer_of(const char *name)
{
    if (strncmp(name, "blk.", 4) != 0)
        return -1;
    char *end;
    long il = strtol(name + 4, &end, 10);
    return end != name + 4 && *end == '.' && il >= 0 && il < 1000000 ? (int)il : -1;
}

/* The type of the last override whose pattern matches the name, or -1. */
static int override_type(const struct quantize_job *job, const char *name)
{
    int type = -1;
    for (int i = 0; i < job->n_overrides; i++)
        if (fnmatch(job->overrides[i].pattern, name, 0) == 0)
            type = job->overrides[i].type;
    return type;
}

/* Checks that every tensor's data can be read (the reader already checked
 * that it lies inside the file). */
static int check_input(const struct quantize_job *job)
{
    if (job->in->n_tensors == 0)
        return plm_fail(PLM_ERR_FORMAT, "%s: the file holds no tensors", job->in_path);
    if (job->in->n_tensors > INT32_MAX)
        return plm_fail(PLM_ERR_LIMIT, "%s: too many tensors", job->in_path);
    for (uint64_t i = 0; i < job->in->n_tensors; i++) {
        const struct gguf_tensor *t = &job->in->tensors[i];
        for (int d = 0; d < GGUF_MAX_DIMS; d++)
            if (t->ne[d] < 1)
                return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' has an empty dimension", job->in_path, t->name);
        if (plm_row_bytes(t->type, t->ne[0]) == 0)
            return plm_fail(PLM_ERR_UNSUPPORTED, "%s: tensor '%s' has type %s, which pocketlm cannot read",
                            job->in_path, t->name, plm_type_name(t->type));
    }
    return PLM_OK;
}

/* Preset and overrides; with no preset, a matrix keeps its type. */
static void plan_requested_types(struct quantize_job *job)
{
    int n_layer = 0;
    bool tied = gguf_find_tensor(job->in, "output.weight") == NULL;
    for (int i = 0; i < job->n_tensors; i++) {
        int il = layer_of(job->in->tensors[i].name);
        n_layer = il + 1 > n_layer ? il + 1 : n_layer;
    }
    for (int i = 0; i < job->n_tensors; i++) {
        struct tensor_plan *t = &job->plan[i];
        const char *name = t->in->name;
        t->matrix = t->in->n_dims == 2;
        t->kld = -1.0;
        t->asked = t->in->n_dims == 1 ? PLM_TYPE_F32 : t->in->type;
        if (!t->matrix)
            continue;
        struct matrix_place place = {name, layer_of(name), n_layer, tied};
        if (job->preset)
            t->asked = quant_preset_matrix_type(job->preset, &place);
        int forced = override_type(job, name);
        t->overridden = forced >= 0;
        if (t->overridden)
            t->asked = forced;
        if (job->imatrix)
            t->importance = imatrix_importance(job->imatrix, name, t->in->ne[0]);
    }
}

static uint64_t data_bytes(int type, const struct gguf_tensor *t)
{
    return plm_row_bytes(type, t->ne[0]) * (uint64_t)n_rows_of(t);
}

static bool is_candidate(const struct quantize_job *job, const struct tensor_plan *t)
{
    return t->matrix && !t->overridden && imatrix_sensitivity(job->imatrix, t->in->name) != NULL;
}

/* Chooses the types of the candidate matrices so that the file fits in the
 * target with the least summed sensitivity. */
static int fit_target(struct quantize_job *job)
{
    const int *types;
    int n_types = imatrix_sensitivity_types(job->imatrix, &types);
    if (n_types == 0)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s holds no sensitivities: run `pocketlm calibrate --sensitivity`",
                        job->params->imatrix_path);
    const uint64_t target = job->params->target_bytes, alignment = job->in->alignment;
    int n_items = 0;
    uint64_t fixed, smallest = 0;
    int rc = measure_header(job, &fixed);
    if (rc != PLM_OK)
        return rc;
    for (int i = 0; i < job->n_tensors; i++) {
        const struct tensor_plan *t = &job->plan[i];
        if (is_candidate(job, t))
            n_items++;
        else
            fixed += align_up(data_bytes(plm_quant_storage_type(t->asked, t->in->ne[0]), t->in), alignment);
    }
    if (n_items == 0)
        return plm_fail(PLM_ERR_UNSUPPORTED, "%s has no sensitivities for the matrices of %s",
                        job->params->imatrix_path, job->in_path);
    uint64_t *bytes = malloc((size_t)n_items * n_types * sizeof *bytes);
    double *loss = malloc((size_t)n_items * n_types * sizeof *loss);
    int *chosen = malloc((size_t)n_items * sizeof *chosen);
    int *items = malloc((size_t)n_items * sizeof *items);
    rc = bytes && loss && chosen && items ? PLM_OK : plm_fail(PLM_ERR_NOMEM, "quantize: out of memory");
    for (int i = 0, k = 0; rc == PLM_OK && i < job->n_tensors; i++) {
        const struct tensor_plan *t = &job->plan[i];
        if (!is_candidate(job, t))
            continue;
        const float *kld = imatrix_sensitivity(job->imatrix, t->in->name);
        uint64_t least = UINT64_MAX;
        for (int j = 0; j < n_types; j++) {
            int stored = plm_quant_storage_type(types[j], t->in->ne[0]);
            bytes[k * n_types + j] = align_up(data_bytes(stored, t->in), alignment);
            loss[k * n_types + j] = kld[j];
            least = bytes[k * n_types + j] < least ? bytes[k * n_types + j] : least;
        }
        smallest += least;
        items[k++] = i;
    }
    if (rc == PLM_OK && (fixed > target || smallest > target - fixed))
        rc = plm_fail(PLM_ERR_LIMIT,
                      "the smallest candidate types give a file of %" PRIu64 " bytes, over the target of %" PRIu64
                      " bytes (%" PRIu64 " of them metadata and matrices outside the choice)",
                      fixed + smallest, target, fixed);
    if (rc == PLM_OK) {
        note(job, "target %" PRIu64 " bytes: %" PRIu64 " for metadata and fixed tensors, %" PRIu64
                  " for %d matrices choosing among %d types", target, fixed, target - fixed, n_items, n_types);
        rc = fit_budget(n_items, n_types, bytes, loss, target - fixed, chosen);
    }
    for (int k = 0; rc == PLM_OK && k < n_items; k++) {
        struct tensor_plan *t = &job->plan[items[k]];
        t->asked = types[chosen[k]];
        t->kld = loss[k * n_types + chosen[k]];
    }
    free(bytes);
    free(loss);
    free(chosen);
    free(items);
    return rc;
}

/* The row-length fallback, with one note per (row length, asked, stored). */
static void apply_fallbacks(struct quantize_job *job)
{
    for (int i = 0; i < job->n_tensors; i++) {
        struct tensor_plan *t = &job->plan[i];
        t->type = t->matrix ? plm_quant_storage_type(t->asked, t->in->ne[0]) : t->asked;
        t->nbytes = data_bytes(t->type, t->in);
    }
    for (int i = 0; i < job->n_tensors; i++) {
        const struct tensor_plan *t = &job->plan[i];
        if (t->type == t->asked)
            continue;
        int same = 0, earlier = 0;
        for (int j = 0; j < job->n_tensors; j++) {
            const struct tensor_plan *u = &job->plan[j];
            bool match = u->in->ne[0] == t->in->ne[0] && u->asked == t->asked && u->type == t->type;
            same += match;
            earlier += match && j < i;
        }
        if (earlier > 0)
            continue;
        char others[64] = "";
        if (same > 1)
            snprintf(others, sizeof others, " (and %d more like it)", same - 1);
        note(job, "%s%s: %" PRId64 " columns are not a multiple of %d; %s -> %s", t->in->name, others,
             t->in->ne[0], plm_type_traits(t->asked)->block_size, plm_type_name(t->asked),
             plm_type_name(t->type));
    }
}

static void note_missing_importance(const struct quantize_job *job)
{
    int missing = 0;
    const char *example = NULL;
    for (int i = 0; i < job->n_tensors; i++) {
        if (job->plan[i].matrix && !job->plan[i].importance) {
            example = example ? example : job->plan[i].in->name;
            missing++;
        }
    }
    if (missing > 0)
        note(job, "%s has no importance for %d matrices (e.g. %s): they are quantized without",
             job->params->imatrix_path, missing, example);
}

static int plan_tensors(struct quantize_job *job)
{
    job->n_tensors = (int)job->in->n_tensors;
    job->plan = calloc((size_t)job->n_tensors, sizeof *job->plan);
    if (!job->plan)
        return plm_fail(PLM_ERR_NOMEM, "quantize: out of memory");
    for (int i = 0; i < job->n_tensors; i++)
        job->plan[i].in = &job->in->tensors[i];
    plan_requested_types(job);
    if (job->imatrix)
        note_missing_importance(job);
    int rc = job->params->target_bytes > 0 ? fit_target(job) : PLM_OK;
    if (rc == PLM_OK)
        apply_fallbacks(job);
    return rc;
}

/* Where each tensor's data starts in the laid-out file. */
static int read_offsets(struct quantize_job *job, const char *path)
{
    struct gguf_file *layout = NULL;
    int rc = gguf_open(path, &layout);
    for (int i = 0; rc == PLM_OK && i < job->n_tensors; i++) {
        const struct gguf_tensor *t = &layout->tensors[i];
        if (layout->n_tensors != (uint64_t)job->n_tensors || strcmp(t->name, job->plan[i].in->name) != 0 ||
            t->nbytes != job->plan[i].nbytes)
            rc = plm_fail(PLM_ERR_FORMAT, "%s: the laid-out file does not match the plan", path);
        else
            job->plan[i].out_offset = layout->data_offset + t->offset;
    }
    gguf_free(layout);
    return rc;
}

/* -------------------------------------------------------------- conversion */

/* One tensor being converted; the pool's threads claim chunks of its rows. */
struct tensor_work {
    const struct tensor_plan *tensor;
    float *values;     /* a row of floats per thread, each `widest` long */
    int64_t widest;
    uint8_t *out;      /* the tensor's output data */
};

static void convert_chunk(void *arg, int chunk, int n_chunks, int thread)
{
    const struct tensor_work *work = arg;
    const struct gguf_tensor *in = work->tensor->in;
    const int64_t n = in->ne[0], n_rows = n_rows_of(in);
    const size_t in_row = plm_row_bytes(in->type, n), out_row = plm_row_bytes(work->tensor->type, n);
    float *values = work->values + (size_t)thread * (size_t)work->widest;
    for (int64_t r = n_rows * chunk / n_chunks; r < n_rows * (chunk + 1) / n_chunks; r++) {
        plm_dequantize_row(in->type, (const uint8_t *)in->data + (size_t)r * in_row, values, n);
        plm_quantize_row_weighted(work->tensor->type, values, work->out + (size_t)r * out_row, n,
                                  work->tensor->importance);
    }
}

/* Converts a tensor into out. Every row is encoded on its own, so the bytes
 * do not depend on how the rows are spread over the threads. */
static void convert_tensor(struct plm_threadpool *pool, struct tensor_work *work)
{
    const struct tensor_plan *t = work->tensor;
    if (!t->matrix && t->type == t->in->type) {
        memcpy(work->out, t->in->data, t->nbytes);
        return;
    }
    int64_t n_chunks = 4 * (int64_t)threadpool_size(pool), n_rows = n_rows_of(t->in);
    n_chunks = n_chunks < n_rows ? n_chunks : n_rows;
    threadpool_run(pool, convert_chunk, work, n_chunks < THREADPOOL_MAX_CHUNKS ? (int)n_chunks : THREADPOOL_MAX_CHUNKS);
}

static void format_size(char *buf, size_t size, uint64_t bytes)
{
    if (bytes < (1u << 20))
        snprintf(buf, size, "%.1f KiB", (double)bytes / 1024.0);
    else
        snprintf(buf, size, "%.2f MiB", (double)bytes / (1024.0 * 1024.0));
}

static void note_tensor(const struct quantize_job *job, int i)
{
    const struct tensor_plan *t = &job->plan[i];
    char shape[64], size[32], kld[32] = "";
    if (t->in->n_dims == 1)
        snprintf(shape, sizeof shape, "%" PRId64, t->in->ne[0]);
    else
        snprintf(shape, sizeof shape, "%" PRId64 " x %" PRId64, t->in->ne[0], n_rows_of(t->in));
    format_size(size, sizeof size, t->nbytes);
    if (t->kld >= 0.0)
        snprintf(kld, sizeof kld, "  kld %.6f", t->kld);
    note(job, "[%3d/%3d] %-28s %-12s %5s -> %-5s %12s%s", i + 1, job->n_tensors, t->in->name, shape,
         plm_type_name(t->in->type), plm_type_name(t->type), size, kld);
}

static void note_total(const struct quantize_job *job, const char *path)
{
    uint64_t in_bytes = 0, out_bytes = 0, weights = 0;
    double kld = 0.0;
    bool predicted = false;
    for (int i = 0; i < job->n_tensors; i++) {
        const struct tensor_plan *t = &job->plan[i];
        in_bytes += t->in->nbytes;
        out_bytes += t->nbytes;
        weights += (uint64_t)(t->in->ne[0] * n_rows_of(t->in));
        if (t->kld >= 0.0) {
            kld += t->kld;
            predicted = true;
        }
    }
    char in_size[32], out_size[32], kld_text[64] = "";
    format_size(in_size, sizeof in_size, in_bytes);
    format_size(out_size, sizeof out_size, out_bytes);
    struct stat st;
    if (stat(path, &st) != 0)
        st.st_size = 0;
    if (predicted)
        snprintf(kld_text, sizeof kld_text, ", predicted KLD %.6f", kld);
    note(job, "total: %d tensors, %s -> %s (%.2f bits per weight); file %lld bytes%s", job->n_tensors, in_size,
         out_size, 8.0 * (double)out_bytes / (double)(weights ? weights : 1), (long long)st.st_size, kld_text);
}

static int write_at(FILE *f, const char *path, const void *data, uint64_t size, uint64_t offset)
{
    if (fseeko(f, (off_t)offset, SEEK_SET) != 0 || fwrite(data, 1, size, f) != size)
        return plm_fail(PLM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    return PLM_OK;
}

/* Converts every tensor and writes it at its place in the laid-out file. */
static int write_data(const struct quantize_job *job, uint8_t *buffer, const char *path)
{
    struct tensor_work work = {.out = buffer};
    for (int i = 0; i < job->n_tensors; i++)
        work.widest = job->plan[i].in->ne[0] > work.widest ? job->plan[i].in->ne[0] : work.widest;
    struct plm_threadpool *pool = NULL;
    work.values = malloc((size_t)work.widest * (size_t)job->n_threads * sizeof *work.values);
    int rc = work.values ? threadpool_new(job->n_threads, &pool) : plm_fail(PLM_ERR_NOMEM, "quantize: out of memory");
    FILE *f = rc == PLM_OK ? fopen(path, "r+b") : NULL;
    if (rc == PLM_OK && !f)
        rc = plm_fail(PLM_ERR_IO, "cannot open '%s' for writing: %s", path, strerror(errno));
    for (int i = 0; rc == PLM_OK && i < job->n_tensors; i++) {
        work.tensor = &job->plan[i];
        convert_tensor(pool, &work);
        rc = write_at(f, path, buffer, job->plan[i].nbytes, job->plan[i].out_offset);
        if (rc == PLM_OK)
            note_tensor(job, i);
    }
    if (f && fclose(f) != 0 && rc == PLM_OK)
        rc = plm_fail(PLM_ERR_IO, "cannot write '%s': %s", path, strerror(errno));
    threadpool_free(pool);
    free(work.values);
    return rc;
}

/* Layout, then data, into path. */
static int write_model(struct quantize_job *job, const char *path)
{
    uint64_t largest = 1;
    for (int i = 0; i < job->n_tensors; i++)
        largest = job->plan[i].nbytes > largest ? job->plan[i].nbytes : largest;
    uint8_t *buffer = largest <= SIZE_MAX ? calloc(1, (size_t)largest) : NULL;
    if (!buffer)
        return plm_fail(PLM_ERR_NOMEM, "quantize: out of memory for a tensor of %" PRIu64 " bytes", largest);
    int rc = write_layout(job, false, buffer, path);
    if (rc == PLM_OK)
        rc = read_offsets(job, path);
    if (rc == PLM_OK)
        rc = write_data(job, buffer, path);
    free(buffer);
    return rc;
}

/* Fails early, before any work or note, when the output cannot be created. */
static int check_writable(const char *out_path, const char *partial_path)
{
    FILE *f = fopen(partial_path, "wb");
    if (!f)
        return plm_fail(PLM_ERR_IO, "cannot write '%s': %s", out_path, strerror(errno));
    fclose(f);
    remove(partial_path);
    return PLM_OK;
}

int plm_quantize(const char *in_path, const char *out_path, const struct plm_quantize_params *params)
{
    if (!in_path || !out_path || !params)
        return plm_fail(PLM_ERR_ARG, "quantize: missing input path, output path or parameters");
    struct quantize_job job = {.params = params, .in_path = in_path};
    size_t partial_size = strlen(out_path) + sizeof ".partial";
    char *partial_path = malloc(partial_size);
    int rc = partial_path ? check_params(&job) : plm_fail(PLM_ERR_NOMEM, "quantize: out of memory");
    if (rc == PLM_OK) {
        snprintf(partial_path, partial_size, "%s.partial", out_path);
        job.partial_path = partial_path;
    }
    if (rc == PLM_OK)
        rc = check_writable(out_path, partial_path);
    if (rc == PLM_OK)
        rc = gguf_open(in_path, &job.in);
    if (rc == PLM_OK)
        rc = check_input(&job);
    if (rc == PLM_OK && params->imatrix_path)
        rc = imatrix_load(params->imatrix_path, &job.imatrix);
    if (rc == PLM_OK)
        rc = plan_tensors(&job);
    if (rc == PLM_OK) {
        rc = write_model(&job, partial_path);
        if (rc == PLM_OK && rename(partial_path, out_path) != 0)
            rc = plm_fail(PLM_ERR_IO, "cannot rename '%s' to '%s': %s", partial_path, out_path, strerror(errno));
        if (rc == PLM_OK)
            note_total(&job, out_path);
        else
            remove(partial_path);
    }
    free(partial_path);
    free(job.plan);
    free(job.overrides);
    imatrix_free(job.imatrix);
    gguf_free(job.in);
    return rc;
}
