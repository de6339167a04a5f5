/*
 * Importance matrix files: reading what quantize uses, writing what calibrate
 * measures. The layout is described in imatrix.h.
 *
 * The reader trusts nothing: every tensor must be one of NAME.in_sum2,
 * NAME.counts or NAME.kld, in F32, of the expected length, with finite
 * non-negative values, so quantize never weighs a row by garbage.
 */
#include "quant/imatrix.h"

#include "core/error.h"
#include "format/gguf_writer.h"
#include "tensor/types.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#define KEY_DATASETS "imatrix.datasets"
#define KEY_CHUNK_COUNT "imatrix.chunk_count"
#define KEY_CHUNK_SIZE "imatrix.chunk_size"
#define KEY_SENSITIVITY_TYPES "pocketlm.sensitivity.types"
#define SUFFIX_SUM2 ".in_sum2"
#define SUFFIX_COUNTS ".counts"
#define SUFFIX_KLD ".kld"

/* One weight matrix's statistics as loaded. */
struct imatrix_matrix {
    char *name;        /* the weight tensor's name */
    int64_t n_in;
    float *importance; /* [n_in] mean squared activation: in_sum2 / counts;
                          NULL for a lookup-only matrix (kld alone) */
    float *kld;        /* [n_types] or NULL */
};

struct imatrix {
    int n_matrices;
    struct imatrix_matrix *matrices;
    int n_types;
    int *types;        /* enum plm_type of each sensitivity candidate */
};

/* ------------------------------------------------------------------ reading */

static bool has_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && strcmp(name + n - s, suffix) == 0;
}

/* Element i of an F32 tensor; memcpy because a caller's buffer may be unaligned. */
static float f32_at(const struct gguf_tensor *t, int64_t i)
{
    float value;
    memcpy(&value, (const uint8_t *)t->data + i * sizeof(float), sizeof value);
    return value;
}

/* An F32 tensor of n_elements values along ne[0] (every other dimension 1),
 * each finite and >= 0; n_elements < 0 accepts any length. */
static int check_vector(const char *path, const struct gguf_tensor *t, int64_t n_elements)
{
    if (t->type != PLM_TYPE_F32)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' is %s, expected F32", path, t->name,
                        plm_type_name(t->type));
    for (int d = 1; d < GGUF_MAX_DIMS; d++)
        if (t->ne[d] != 1)
            return plm_fail(PLM_ERR_FORMAT,
                            "%s: tensor '%s' has %lld rows; only one matrix per tensor is supported",
                            path, t->name, (long long)t->ne[d]);
    if (n_elements >= 0 && t->ne[0] != n_elements)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' has %lld values, expected %lld", path, t->name,
                        (long long)t->ne[0], (long long)n_elements);
    for (int64_t i = 0; i < t->ne[0]; i++) {
        float v = f32_at(t, i);
        if (!isfinite(v) || v < 0.0f)
            return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' value %lld is %g, expected finite and >= 0",
                            path, t->name, (long long)i, v);
    }
    return PLM_OK;
}

/* The tensor named base + suffix, or NULL. */
static const struct gguf_tensor *find_part(const struct gguf_file *file, const char *base, size_t base_len,
                                           const char *suffix)
{
    char name[512];
    if (base_len + strlen(suffix) >= sizeof name)
        return NULL;
    memcpy(name, base, base_len);
    strcpy(name + base_len, suffix);
    return gguf_find_tensor(file, name);
}

static int read_sensitivity_types(const char *path, const struct gguf_file *file, struct imatrix *im)
{
    const struct gguf_kv *kv = gguf_find(file, KEY_SENSITIVITY_TYPES);
    if (!kv)
        return PLM_OK;
    if (kv->type != GGUF_TYPE_ARRAY || kv->elem_type != GGUF_TYPE_STRING || kv->count == 0 ||
        kv->count > PLM_TYPE_COUNT)
        return plm_fail(PLM_ERR_FORMAT, "%s: '%s' must be an array of 1 to %d type names", path,
                        KEY_SENSITIVITY_TYPES, PLM_TYPE_COUNT);
    im->types = malloc(kv->count * sizeof *im->types);
    if (!im->types)
        return plm_fail(PLM_ERR_NOMEM, "%s: out of memory", path);
    for (uint64_t i = 0; i < kv->count; i++) {
        char name[16] = "";
        if (kv->strings[i].len < sizeof name)
            memcpy(name, kv->strings[i].ptr, kv->strings[i].len);
        int type = plm_type_from_name(name);
        if (type < 0 || !plm_type_traits(type))
            return plm_fail(PLM_ERR_FORMAT, "%s: '%s' names an unknown type '%.*s'", path,
                            KEY_SENSITIVITY_TYPES, (int)(kv->strings[i].len > 32 ? 32 : kv->strings[i].len),
                            kv->strings[i].ptr);
        im->types[i] = type;
    }
    im->n_types = (int)kv->count;
    return PLM_OK;
}

static int copy_kld(const char *path, const struct gguf_tensor *kld, int n_types, struct imatrix_matrix *m)
{
    int rc = check_vector(path, kld, n_types);
    if (rc != PLM_OK)
        return rc;
    m->kld = malloc((size_t)n_types * sizeof *m->kld);
    if (!m->kld)
        return plm_fail(PLM_ERR_NOMEM, "%s: out of memory", path);
    for (int i = 0; i < n_types; i++)
        m->kld[i] = f32_at(kld, i);
    return PLM_OK;
}

/* A NAME.kld without NAME.in_sum2: the sensitivities of a lookup-only matrix. */
static int read_lookup_matrix(const char *path, const struct gguf_tensor *kld, int n_types,
                              struct imatrix_matrix *m)
{
    if (n_types == 0)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' without '%s'", path, kld->name, KEY_SENSITIVITY_TYPES);
    m->name = strndup(kld->name, strlen(kld->name) - strlen(SUFFIX_KLD));
    if (!m->name)
        return plm_fail(PLM_ERR_NOMEM, "%s: out of memory", path);
    return copy_kld(path, kld, n_types, m);
}

/* Reads the statistics of the matrix whose in_sum2 tensor is `sum2`. */
static int read_matrix(const char *path, const struct gguf_file *file, const struct gguf_tensor *sum2,
                       int n_types, struct imatrix_matrix *m)
{
    size_t base_len = strlen(sum2->name) - strlen(SUFFIX_SUM2);
    const struct gguf_tensor *counts = find_part(file, sum2->name, base_len, SUFFIX_COUNTS);
    const struct gguf_tensor *kld = find_part(file, sum2->name, base_len, SUFFIX_KLD);
    if (!counts)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' has no matching %s", path, sum2->name, SUFFIX_COUNTS);
    if (n_types > 0 && !kld)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' has no matching %s", path, sum2->name, SUFFIX_KLD);
    if (n_types == 0 && kld)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' without '%s'", path, kld->name, KEY_SENSITIVITY_TYPES);
    int rc = check_vector(path, sum2, -1);
    if (rc == PLM_OK)
        rc = check_vector(path, counts, 1);
    if (rc != PLM_OK)
        return rc;
    float count = f32_at(counts, 0);
    if (!(count > 0.0f))
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' counts no tokens", path, counts->name);

    m->n_in = sum2->ne[0];
    m->name = strndup(sum2->name, base_len);
    m->importance = malloc((size_t)m->n_in * sizeof *m->importance);
    if (!m->name || !m->importance)
        return plm_fail(PLM_ERR_NOMEM, "%s: out of memory", path);
    for (int64_t i = 0; i < m->n_in; i++)
        m->importance[i] = f32_at(sum2, i) / count;
    return kld ? copy_kld(path, kld, n_types, m) : PLM_OK;
}

/* Every tensor is NAME.in_sum2, or NAME.counts / NAME.kld beside it, or a
 * lookup-only NAME.kld; each in_sum2 and lone kld becomes a matrix. */
static int read_tensor(const char *path, const struct gguf_file *file, const struct gguf_tensor *t,
                       struct imatrix *im)
{
    if (has_suffix(t->name, SUFFIX_SUM2))
        return read_matrix(path, file, t, im->n_types, &im->matrices[im->n_matrices++]);
    bool is_counts = has_suffix(t->name, SUFFIX_COUNTS);
    if (!is_counts && !has_suffix(t->name, SUFFIX_KLD))
        return plm_fail(PLM_ERR_FORMAT, "%s: unexpected tensor '%s' (expected NAME.in_sum2, .counts or .kld)",
                        path, t->name);
    size_t base_len = strlen(t->name) - strlen(is_counts ? SUFFIX_COUNTS : SUFFIX_KLD);
    if (find_part(file, t->name, base_len, SUFFIX_SUM2))
        return PLM_OK; /* read with its in_sum2 */
    if (is_counts)
        return plm_fail(PLM_ERR_FORMAT, "%s: tensor '%s' has no matching %s", path, t->name, SUFFIX_SUM2);
    return read_lookup_matrix(path, t, im->n_types, &im->matrices[im->n_matrices++]);
}

static int read_imatrix(const char *path, const struct gguf_file *file, struct imatrix *im)
{
    struct gguf_str type;
    if (!gguf_get_str(file, "general.type", &type) || type.len != strlen("imatrix") ||
        memcmp(type.ptr, "imatrix", type.len) != 0)
        return plm_fail(PLM_ERR_FORMAT, "%s: not an importance matrix (general.type is not \"imatrix\")", path);
    int rc = read_sensitivity_types(path, file, im);
    if (rc != PLM_OK)
        return rc;
    im->matrices = calloc(file->n_tensors ? file->n_tensors : 1, sizeof *im->matrices);
    if (!im->matrices)
        return plm_fail(PLM_ERR_NOMEM, "%s: out of memory", path);
    for (uint64_t i = 0; i < file->n_tensors && rc == PLM_OK; i++)
        rc = read_tensor(path, file, &file->tensors[i], im);
    if (rc == PLM_OK && im->n_matrices == 0)
        rc = plm_fail(PLM_ERR_FORMAT, "%s: the importance matrix holds no matrices", path);
    return rc;
}

int imatrix_load(const char *path, struct imatrix **imatrix)
{
    *imatrix = NULL;
    struct gguf_file *file;
    int rc = gguf_open(path, &file);
    if (rc != PLM_OK)
        return rc;
    struct imatrix *im = calloc(1, sizeof *im);
    rc = im ? read_imatrix(path, file, im) : plm_fail(PLM_ERR_NOMEM, "%s: out of memory", path);
    gguf_free(file);
    if (rc != PLM_OK) {
        imatrix_free(im);
        return rc;
    }
    *imatrix = im;
    return PLM_OK;
}

void imatrix_free(struct imatrix *im)
{
    if (!im)
        return;
    for (int i = 0; i < im->n_matrices; i++) {
        free(im->matrices[i].name);
        free(im->matrices[i].importance);
        free(im->matrices[i].kld);
    }
    free(im->matrices);
    free(im->types);
    free(im);
}

static const struct imatrix_matrix *find_matrix(const struct imatrix *im, const char *tensor_name)
{
    for (int i = 0; i < im->n_matrices; i++)
        if (strcmp(im->matrices[i].name, tensor_name) == 0)
            return &im->matrices[i];
    return NULL;
}

const float *imatrix_importance(const struct imatrix *im, const char *tensor_name, int64_t n_in)
{
    const struct imatrix_matrix *m = find_matrix(im, tensor_name);
    return m && m->importance && m->n_in == n_in ? m->importance : NULL;
}

int imatrix_sensitivity_types(const struct imatrix *im, const int **types)
{
    *types = im->types;
    return im->n_types;
}

const float *imatrix_sensitivity(const struct imatrix *im, const char *tensor_name)
{
    const struct imatrix_matrix *m = find_matrix(im, tensor_name);
    return m ? m->kld : NULL;
}

/* ------------------------------------------------------------------ writing */

static int check_contents(const struct imatrix_contents *c)
{
    if (c->n_entries <= 0 || c->chunk_count < 0 || c->chunk_size < 0 || c->n_sensitivity_types < 0 ||
        c->n_sensitivity_types > PLM_TYPE_COUNT)
        return plm_fail(PLM_ERR_ARG, "imatrix: nothing to write or bad counts");
    for (int i = 0; i < c->n_sensitivity_types; i++)
        if (!plm_type_traits(c->sensitivity_types[i]))
            return plm_fail(PLM_ERR_ARG, "imatrix: sensitivity type %d is not a known type",
                            c->sensitivity_types[i]);
    for (int i = 0; i < c->n_entries; i++) {
        const struct imatrix_entry *e = &c->entries[i];
        bool lookup_only = !e->in_sum2;
        if (e->n_in <= 0 || (!lookup_only && !(e->count > 0.0)) || (c->n_sensitivity_types > 0 && !e->kld) ||
            (lookup_only && c->n_sensitivity_types == 0))
            return plm_fail(PLM_ERR_ARG, "imatrix: entry '%s' has no inputs, no tokens or no sensitivities",
                            e->tensor_name);
    }
    return PLM_OK;
}

/* Every entry's values converted to F32, back to back in the order written:
 * in_sum2, count, then kld when measured. */
static float *pack_values(const struct imatrix_contents *c)
{
    size_t total = 0;
    for (int i = 0; i < c->n_entries; i++)
        total += (c->entries[i].in_sum2 ? (size_t)c->entries[i].n_in + 1 : 0) + (size_t)c->n_sensitivity_types;
    float *values = malloc((total ? total : 1) * sizeof *values);
    if (!values)
        return NULL;
    float *v = values;
    for (int i = 0; i < c->n_entries; i++) {
        const struct imatrix_entry *e = &c->entries[i];
        for (int64_t j = 0; e->in_sum2 && j < e->n_in; j++)
            *v++ = (float)e->in_sum2[j];
        if (e->in_sum2)
            *v++ = (float)e->count;
        for (int j = 0; j < c->n_sensitivity_types; j++)
            *v++ = (float)e->kld[j];
    }
    return values;
}

static int add_metadata(struct gguf_writer *w, const struct imatrix_contents *c)
{
    const char *names[PLM_TYPE_COUNT];
    for (int i = 0; i < c->n_sensitivity_types; i++)
        names[i] = plm_type_name(c->sensitivity_types[i]);
    int rc = gguf_writer_set_str(w, "general.type", "imatrix");
    if (rc == PLM_OK)
        rc = gguf_writer_set_str_array(w, KEY_DATASETS, &c->dataset, NULL, c->dataset ? 1 : 0);
    if (rc == PLM_OK)
        rc = gguf_writer_set_u32(w, KEY_CHUNK_COUNT, (uint32_t)c->chunk_count);
    if (rc == PLM_OK)
        rc = gguf_writer_set_u32(w, KEY_CHUNK_SIZE, (uint32_t)c->chunk_size);
    if (rc == PLM_OK && c->n_sensitivity_types > 0)
        rc = gguf_writer_set_str_array(w, KEY_SENSITIVITY_TYPES, names, NULL,
                                       (uint64_t)c->n_sensitivity_types);
    return rc;
}

/* Adds NAME + suffix as an F32 tensor; llama.cpp's shapes: in_sum2 [n_in, 1],
 * counts [1, 1] (the second dimension counts experts, always one here). */
static int add_part(struct gguf_writer *w, const char *name, const char *suffix, int64_t n, int n_dims,
                    const float *values)
{
    char full[512];
    if (strlen(name) + strlen(suffix) >= sizeof full)
        return plm_fail(PLM_ERR_ARG, "imatrix: tensor name '%s' is too long", name);
    strcpy(full, name);
    strcat(full, suffix);
    int64_t ne[2] = {n, 1};
    return gguf_writer_add_tensor(w, full, PLM_TYPE_F32, ne, n_dims, values);
}

int imatrix_write(const char *path, const struct imatrix_contents *c)
{
    int rc = check_contents(c);
    if (rc != PLM_OK)
        return rc;
    struct gguf_writer *w = gguf_writer_new();
    float *values = pack_values(c);
    if (!w || !values)
        rc = plm_fail(PLM_ERR_NOMEM, "imatrix: out of memory writing %s", path);
    if (rc == PLM_OK)
        rc = add_metadata(w, c);
    const float *v = values;
    for (int i = 0; i < c->n_entries && rc == PLM_OK; i++) {
        const struct imatrix_entry *e = &c->entries[i];
        if (e->in_sum2) {
            rc = add_part(w, e->tensor_name, SUFFIX_SUM2, e->n_in, 2, v);
            if (rc == PLM_OK)
                rc = add_part(w, e->tensor_name, SUFFIX_COUNTS, 1, 2, v + e->n_in);
            v += e->n_in + 1;
        }
        if (rc == PLM_OK && c->n_sensitivity_types > 0)
            rc = add_part(w, e->tensor_name, SUFFIX_KLD, c->n_sensitivity_types, 1, v);
        v += c->n_sensitivity_types;
    }
    if (rc == PLM_OK)
        rc = gguf_writer_write(w, path);
    gguf_writer_free(w);
    free(values);
    return rc;
}
