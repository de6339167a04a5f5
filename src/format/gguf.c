/*
 * GGUF reader. The layout is described in gguf.h; versions 2 and 3 share it
 * (version 3 only added big-endian files, which are rejected here).
 *
 * Parsing happens in one forward pass over the bytes with a bounds-checked
 * cursor, then the tensor placement is checked as a whole (alignment, inside
 * the file, no overlaps). Nothing is allocated before the count that sizes it
 * has been checked against the bytes that remain, so a hostile header cannot
 * make the reader allocate more than a small multiple of the file size.
 */
#include "format/gguf.h"

#include "core/error.h"
#include "tensor/types.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Smallest encodings, used to reject counts that cannot fit in the bytes left:
 * a key/value is at least a key length, a value type and a one-byte value; a
 * tensor info at least a name length, n_dims, one dimension, a type and an offset;
 * a string is at least its length; an array element of an array is at least its
 * element type and count. */
#define MIN_KV_BYTES (8 + 4 + 1)
#define MIN_TENSOR_INFO_BYTES (8 + 4 + 8 + 4 + 8)
#define MIN_STRING_BYTES 8
#define MIN_ARRAY_BYTES (4 + 8)

/* Arrays of arrays are legal GGUF but unused in practice; the limit keeps the
 * recursion that skips them shallow whatever the file says. */
#define MAX_ARRAY_DEPTH 8

/* Bounds-checked cursor over the file. `what` names the item being read so
 * that a truncation error can say where it happened. */
struct reader {
    const uint8_t *bytes;
    size_t size;
    size_t pos;
    char what[96];
    uint64_t heap_bytes; /* kept allocated by what has been read: names and string tables */
};

static uint16_t le16(const uint8_t *p) { return (uint16_t)(p[0] | p[1] << 8); }

static uint32_t le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t le64(const uint8_t *p) { return le32(p) | (uint64_t)le32(p + 4) << 32; }

static uint64_t remaining(const struct reader *r) { return r->size - r->pos; }

static int read_bytes(struct reader *r, uint64_t n, const uint8_t **out)
{
    *out = NULL;
    if (n > remaining(r))
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: %s: needs %" PRIu64 " bytes at offset %zu but the file ends at %zu",
                        r->what, n, r->pos, r->size);
    *out = r->bytes + r->pos;
    r->pos += n;
    return PLM_OK;
}

static int read_u32(struct reader *r, uint32_t *value)
{
    const uint8_t *p;
    int status = read_bytes(r, 4, &p);
    if (status == PLM_OK)
        *value = le32(p);
    return status;
}

static int read_u64(struct reader *r, uint64_t *value)
{
    const uint8_t *p;
    int status = read_bytes(r, 8, &p);
    if (status == PLM_OK)
        *value = le64(p);
    return status;
}

static int read_string(struct reader *r, struct gguf_str *str)
{
    uint64_t len;
    int status = read_u64(r, &len);
    if (status != PLM_OK)
        return status;
    if (len > remaining(r))
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: %s: string length %" PRIu64 " at offset %zu runs past the end of "
                        "the file (%zu bytes)",
                        r->what, len, r->pos - 8, r->size);
    str->ptr = (const char *)r->bytes + r->pos;
    str->len = len;
    r->pos += len;
    return PLM_OK;
}

/* Keys and tensor names are kept as C strings, so an embedded NUL would
 * silently shorten them (and could hide a duplicate). */
static int copy_name(struct reader *r, struct gguf_str str, char **name)
{
    if (memchr(str.ptr, '\0', str.len))
        return plm_fail(PLM_ERR_FORMAT, "gguf: %s: name contains a NUL byte", r->what);
    *name = strndup(str.ptr, str.len);
    if (!*name)
        return plm_fail(PLM_ERR_NOMEM, "gguf: out of memory");
    r->heap_bytes += str.len + 1;
    return PLM_OK;
}

size_t gguf_value_size(uint32_t type)
{
    switch (type) {
    case GGUF_TYPE_UINT8:
    case GGUF_TYPE_INT8:
    case GGUF_TYPE_BOOL:
        return 1;
    case GGUF_TYPE_UINT16:
    case GGUF_TYPE_INT16:
        return 2;
    case GGUF_TYPE_UINT32:
    case GGUF_TYPE_INT32:
    case GGUF_TYPE_FLOAT32:
        return 4;
    case GGUF_TYPE_UINT64:
    case GGUF_TYPE_INT64:
    case GGUF_TYPE_FLOAT64:
        return 8;
    default:
        return 0;
    }
}

/* Reads count values of a fixed-size type; returns where they start. */
static int read_fixed_values(struct reader *r, uint32_t type, uint64_t count, const uint8_t **values)
{
    uint64_t size = gguf_value_size(type);
    if (count > remaining(r) / size)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: %s: %" PRIu64 " values of type %s at offset %zu run past the end "
                        "of the file (%zu bytes)",
                        r->what, count, gguf_value_type_name(type), r->pos, r->size);
    int status = read_bytes(r, count * size, values);
    if (status != PLM_OK || type != GGUF_TYPE_BOOL)
        return status;
    /* The spec makes any byte other than 0 and 1 invalid for a bool. */
    for (uint64_t i = 0; i < count; i++)
        if ((*values)[i] > 1)
            return plm_fail(PLM_ERR_FORMAT, "gguf: %s: bool value %u is neither 0 nor 1",
                            r->what, (*values)[i]);
    return PLM_OK;
}

/* Checks that a count of variable-size elements could fit at all, before any
 * loop or allocation sized by it. */
static int check_count_fits(const struct reader *r, uint64_t count, uint64_t min_bytes,
                            const char *elements)
{
    if (count > remaining(r) / min_bytes)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: %s: %" PRIu64 " %s cannot fit in the %" PRIu64 " bytes left",
                        r->what, count, elements, remaining(r));
    return PLM_OK;
}

static int invalid_type(const struct reader *r, uint32_t type)
{
    return plm_fail(PLM_ERR_FORMAT, "gguf: %s: invalid value type %" PRIu32, r->what, type);
}

/* Steps over one array (element type, count, elements) inside an array value,
 * validating it as thoroughly as a top-level value. */
static int skip_array(struct reader *r, int depth)
{
    if (depth > MAX_ARRAY_DEPTH)
        return plm_fail(PLM_ERR_FORMAT, "gguf: %s: arrays nested more than %d deep", r->what,
                        MAX_ARRAY_DEPTH);
    uint32_t elem_type;
    uint64_t count;
    int status = read_u32(r, &elem_type);
    if (status == PLM_OK)
        status = read_u64(r, &count);
    if (status != PLM_OK)
        return status;
    if (elem_type == GGUF_TYPE_STRING) {
        status = check_count_fits(r, count, MIN_STRING_BYTES, "strings");
        for (uint64_t i = 0; i < count && status == PLM_OK; i++) {
            struct gguf_str str;
            status = read_string(r, &str);
        }
        return status;
    }
    if (elem_type == GGUF_TYPE_ARRAY) {
        status = check_count_fits(r, count, MIN_ARRAY_BYTES, "arrays");
        for (uint64_t i = 0; i < count && status == PLM_OK; i++)
            status = skip_array(r, depth + 1);
        return status;
    }
    if (gguf_value_size(elem_type) == 0)
        return invalid_type(r, elem_type);
    const uint8_t *values;
    return read_fixed_values(r, elem_type, count, &values);
}

/* Reads the elements of kv (a scalar is an array of one), whose type, element
 * type and count are set. */
static int read_elements(struct reader *r, struct gguf_kv *kv)
{
    if (kv->elem_type == GGUF_TYPE_STRING) {
        int status = check_count_fits(r, kv->count, MIN_STRING_BYTES, "strings");
        if (status != PLM_OK)
            return status;
        kv->data = r->bytes + r->pos;
        size_t n_strings = kv->count ? kv->count : 1;
        kv->strings = calloc(n_strings, sizeof *kv->strings);
        if (!kv->strings)
            return plm_fail(PLM_ERR_NOMEM, "gguf: out of memory");
        r->heap_bytes += n_strings * sizeof *kv->strings;
        for (uint64_t i = 0; i < kv->count && status == PLM_OK; i++)
            status = read_string(r, &kv->strings[i]);
        return status;
    }
    if (kv->elem_type == GGUF_TYPE_ARRAY) {
        /* Kept as raw bytes: nothing in a model needs arrays of arrays. */
        int status = check_count_fits(r, kv->count, MIN_ARRAY_BYTES, "arrays");
        kv->data = r->bytes + r->pos;
        for (uint64_t i = 0; i < kv->count && status == PLM_OK; i++)
            status = skip_array(r, 2);
        return status;
    }
    if (gguf_value_size(kv->elem_type) == 0)
        return invalid_type(r, kv->elem_type);
    return read_fixed_values(r, kv->elem_type, kv->count, &kv->data);
}

static int read_kv(struct reader *r, uint64_t index, struct gguf_kv *kv)
{
    snprintf(r->what, sizeof r->what, "key/value %" PRIu64, index);
    struct gguf_str key;
    int status = read_string(r, &key);
    if (status == PLM_OK)
        status = copy_name(r, key, &kv->key);
    if (status != PLM_OK)
        return status;
    snprintf(r->what, sizeof r->what, "key '%.64s'", kv->key);

    uint32_t type;
    status = read_u32(r, &type);
    if (status != PLM_OK)
        return status;
    kv->type = type;
    kv->elem_type = type;
    kv->count = 1;
    if (type == GGUF_TYPE_ARRAY) {
        uint32_t elem_type;
        status = read_u32(r, &elem_type);
        if (status == PLM_OK)
            status = read_u64(r, &kv->count);
        if (status != PLM_OK)
            return status;
        kv->elem_type = elem_type;
    }
    return read_elements(r, kv);
}

static void format_shape(char *buf, size_t size, const struct gguf_tensor *t)
{
    int n = snprintf(buf, size, "[");
    for (uint32_t d = 0; d < t->n_dims && n > 0 && (size_t)n < size; d++)
        n += snprintf(buf + n, size - (size_t)n, "%s%" PRId64, d ? ", " : "", t->ne[d]);
    if (n > 0 && (size_t)n < size)
        snprintf(buf + n, size - (size_t)n, "]");
}

/* Checks the tensor's type and shape and computes its size in bytes. */
static int size_tensor(struct gguf_tensor *t)
{
    const struct plm_type_traits *traits = plm_type_traits(t->type);
    if (!traits) {
        const char *name = plm_type_name(t->type);
        if (strcmp(name, "unknown") == 0)
            return plm_fail(PLM_ERR_FORMAT, "gguf: tensor '%s' has unknown type %d", t->name,
                            t->type);
        return plm_fail(PLM_ERR_UNSUPPORTED, "gguf: tensor '%s' has type %s, which is not supported",
                        t->name, name);
    }
    char shape[128];
    format_shape(shape, sizeof shape, t);
    if (t->ne[0] % traits->block_size != 0)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: tensor '%s' row length %" PRId64 " is not a multiple of the %s "
                        "block size %d",
                        t->name, t->ne[0], traits->name, traits->block_size);
    /* Everything is kept below INT64_MAX so that later sums of offsets cannot wrap. */
    uint64_t limit = INT64_MAX;
    uint64_t n_blocks = (uint64_t)t->ne[0] / (uint64_t)traits->block_size;
    if (n_blocks > limit / traits->block_bytes)
        return plm_fail(PLM_ERR_FORMAT, "gguf: tensor '%s' shape %s is too large", t->name, shape);
    uint64_t nbytes = plm_row_bytes(t->type, t->ne[0]);
    for (uint32_t d = 1; d < t->n_dims; d++) {
        if ((uint64_t)t->ne[d] > limit / nbytes)
            return plm_fail(PLM_ERR_FORMAT, "gguf: tensor '%s' shape %s is too large", t->name,
                            shape);
        nbytes *= (uint64_t)t->ne[d];
    }
    t->nbytes = nbytes;
    return PLM_OK;
}

static int read_tensor_info(struct reader *r, uint64_t index, struct gguf_tensor *t)
{
    snprintf(r->what, sizeof r->what, "tensor info %" PRIu64, index);
    struct gguf_str name;
    int status = read_string(r, &name);
    if (status == PLM_OK)
        status = copy_name(r, name, &t->name);
    if (status == PLM_OK)
        status = read_u32(r, &t->n_dims);
    if (status != PLM_OK)
        return status;
    snprintf(r->what, sizeof r->what, "tensor '%.64s'", t->name);
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return plm_fail(PLM_ERR_FORMAT, "gguf: tensor '%s' has %" PRIu32 " dimensions (must be 1 to %d)",
                        t->name, t->n_dims, GGUF_MAX_DIMS);
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t->ne[d] = 1;
    for (uint32_t d = 0; d < t->n_dims; d++) {
        uint64_t ne;
        status = read_u64(r, &ne);
        if (status != PLM_OK)
            return status;
        if (ne == 0 || ne > INT64_MAX)
            return plm_fail(PLM_ERR_FORMAT, "gguf: tensor '%s' dimension %" PRIu32 " is %" PRId64
                            " (must be at least 1)", t->name, d, (int64_t)ne);
        t->ne[d] = (int64_t)ne;
    }
    uint32_t type;
    status = read_u32(r, &type);
    if (status == PLM_OK)
        status = read_u64(r, &t->offset);
    if (status != PLM_OK)
        return status;
    /* Type values past INT32_MAX are simply unknown; keep them from turning negative. */
    t->type = type > INT32_MAX ? INT32_MAX : (int)type;
    return size_tensor(t);
}

static int compare_strings(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Finds a name that appears twice, by sorting pointers to them. */
static int check_unique(char **names, uint64_t count, const char *what)
{
    if (count < 2)
        return PLM_OK;
    char **sorted = malloc(count * sizeof *sorted);
    if (!sorted)
        return plm_fail(PLM_ERR_NOMEM, "gguf: out of memory");
    memcpy(sorted, names, count * sizeof *sorted);
    qsort(sorted, count, sizeof *sorted, compare_strings);
    int status = PLM_OK;
    for (uint64_t i = 1; i < count && status == PLM_OK; i++)
        if (strcmp(sorted[i - 1], sorted[i]) == 0)
            status = plm_fail(PLM_ERR_FORMAT, "gguf: duplicate %s '%s'", what, sorted[i]);
    free(sorted);
    return status;
}

static int check_unique_keys(const struct gguf_file *file)
{
    char **keys = malloc((file->n_kv ? file->n_kv : 1) * sizeof *keys);
    if (!keys)
        return plm_fail(PLM_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < file->n_kv; i++)
        keys[i] = file->kv[i].key;
    int status = check_unique(keys, file->n_kv, "key");
    free(keys);
    return status;
}

static int check_unique_tensor_names(const struct gguf_file *file)
{
    char **names = malloc((file->n_tensors ? file->n_tensors : 1) * sizeof *names);
    if (!names)
        return plm_fail(PLM_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < file->n_tensors; i++)
        names[i] = file->tensors[i].name;
    int status = check_unique(names, file->n_tensors, "tensor name");
    free(names);
    return status;
}

static int read_alignment(struct gguf_file *file)
{
    file->alignment = GGUF_DEFAULT_ALIGNMENT;
    const struct gguf_kv *kv = gguf_find(file, "general.alignment");
    if (!kv)
        return PLM_OK;
    if (kv->type != GGUF_TYPE_UINT32)
        return plm_fail(PLM_ERR_FORMAT, "gguf: general.alignment has type %s (must be uint32)",
                        gguf_value_type_name(kv->type));
    uint32_t alignment = le32(kv->data);
    if (alignment == 0 || (alignment & (alignment - 1)) != 0)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: general.alignment %" PRIu32 " is not a power of two", alignment);
    file->alignment = alignment;
    return PLM_OK;
}

/* Each tensor must lie, aligned, inside the data section of the file. */
static int place_tensor(struct gguf_file *file, struct gguf_tensor *t)
{
    if (t->offset % file->alignment != 0)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: tensor '%s' offset %" PRIu64 " is not a multiple of the alignment %" PRIu64,
                        t->name, t->offset, file->alignment);
    if (file->data_offset > file->size || t->offset > file->size - file->data_offset)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: tensor '%s' data offset %" PRIu64 " starts past the end of the file "
                        "(%zu bytes)", t->name, t->offset, file->size);
    uint64_t start = file->data_offset + t->offset;
    if (t->nbytes > file->size - start)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: tensor '%s' data [%" PRIu64 ", %" PRIu64 ") extends past the end of "
                        "the file (%zu bytes)", t->name, start, start + t->nbytes, file->size);
    t->data = file->bytes + start;
    return PLM_OK;
}

static int compare_tensor_offsets(const void *a, const void *b)
{
    const struct gguf_tensor *x = *(const struct gguf_tensor *const *)a;
    const struct gguf_tensor *y = *(const struct gguf_tensor *const *)b;
    return (x->offset > y->offset) - (x->offset < y->offset);
}

/* Tensors may be stored in any order, but no two may share bytes. */
static int check_no_overlap(const struct gguf_file *file)
{
    if (file->n_tensors < 2)
        return PLM_OK;
    const struct gguf_tensor **by_offset = malloc(file->n_tensors * sizeof *by_offset);
    if (!by_offset)
        return plm_fail(PLM_ERR_NOMEM, "gguf: out of memory");
    for (uint64_t i = 0; i < file->n_tensors; i++)
        by_offset[i] = &file->tensors[i];
    qsort(by_offset, file->n_tensors, sizeof *by_offset, compare_tensor_offsets);
    int status = PLM_OK;
    for (uint64_t i = 1; i < file->n_tensors && status == PLM_OK; i++) {
        const struct gguf_tensor *prev = by_offset[i - 1], *next = by_offset[i];
        if (prev->offset + prev->nbytes > next->offset)
            status = plm_fail(PLM_ERR_FORMAT,
                              "gguf: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64
                              ", %" PRIu64 ") overlap in the data section",
                              prev->name, prev->offset, prev->offset + prev->nbytes, next->name,
                              next->offset, next->offset + next->nbytes);
    }
    free(by_offset);
    return status;
}

static int read_header(struct reader *r, struct gguf_file *file)
{
    snprintf(r->what, sizeof r->what, "header");
    const uint8_t *magic;
    int status = read_bytes(r, 4, &magic);
    if (status != PLM_OK)
        return status;
    if (memcmp(magic, "GGUF", 4) != 0)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: not a GGUF file (magic bytes %02x %02x %02x %02x, expected \"GGUF\")",
                        magic[0], magic[1], magic[2], magic[3]);
    status = read_u32(r, &file->version);
    if (status != PLM_OK)
        return status;
    if (file->version == 0x02000000 || file->version == 0x03000000)
        return plm_fail(PLM_ERR_FORMAT, "gguf: big-endian GGUF files are not supported");
    if (file->version != 2 && file->version != 3)
        return plm_fail(PLM_ERR_FORMAT, "gguf: version %" PRIu32 " is not supported (only 2 and 3)",
                        file->version);
    status = read_u64(r, &file->n_tensors);
    if (status == PLM_OK)
        status = read_u64(r, &file->n_kv);
    if (status != PLM_OK)
        return status;
    if (file->n_tensors > remaining(r) / MIN_TENSOR_INFO_BYTES)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: header claims %" PRIu64 " tensors, more than the %zu-byte file can hold",
                        file->n_tensors, r->size);
    uint64_t left = remaining(r) - file->n_tensors * MIN_TENSOR_INFO_BYTES;
    if (file->n_kv > left / MIN_KV_BYTES)
        return plm_fail(PLM_ERR_FORMAT,
                        "gguf: header claims %" PRIu64 " key/values, more than the %zu-byte file can hold",
                        file->n_kv, r->size);
    return PLM_OK;
}

static int parse(struct gguf_file *file)
{
    struct reader r = {.bytes = file->bytes, .size = file->size};
    int status = read_header(&r, file);
    if (status != PLM_OK)
        return status;

    /* The counts were checked against the file size, so these allocations are bounded by it. */
    size_t n_kv = file->n_kv ? file->n_kv : 1, n_tensors = file->n_tensors ? file->n_tensors : 1;
    file->kv = calloc(n_kv, sizeof *file->kv);
    file->tensors = calloc(n_tensors, sizeof *file->tensors);
    if (!file->kv || !file->tensors)
        return plm_fail(PLM_ERR_NOMEM, "gguf: out of memory");
    file->heap_bytes += n_kv * sizeof *file->kv + n_tensors * sizeof *file->tensors;
    for (uint64_t i = 0; i < file->n_kv && status == PLM_OK; i++)
        status = read_kv(&r, i, &file->kv[i]);
    if (status == PLM_OK)
        status = check_unique_keys(file);
    for (uint64_t i = 0; i < file->n_tensors && status == PLM_OK; i++)
        status = read_tensor_info(&r, i, &file->tensors[i]);
    if (status == PLM_OK)
        status = check_unique_tensor_names(file);
    if (status == PLM_OK)
        status = read_alignment(file);
    if (status != PLM_OK)
        return status;

    /* The data section starts at the next multiple of the alignment. A file
     * without tensors may end before it (vocab-only files do). */
    file->data_offset = (r.pos + file->alignment - 1) / file->alignment * file->alignment;
    for (uint64_t i = 0; i < file->n_tensors && status == PLM_OK; i++)
        status = place_tensor(file, &file->tensors[i]);
    if (status == PLM_OK)
        status = check_no_overlap(file);
    file->heap_bytes += r.heap_bytes;
    return status;
}

int gguf_parse(const uint8_t *bytes, size_t size, struct gguf_file **file)
{
    *file = NULL;
    struct gguf_file *parsed = calloc(1, sizeof *parsed);
    if (!parsed)
        return plm_fail(PLM_ERR_NOMEM, "gguf: out of memory");
    parsed->bytes = bytes;
    parsed->size = size;
    parsed->heap_bytes = sizeof *parsed;
    int status = parse(parsed);
    if (status != PLM_OK) {
        gguf_free(parsed);
        return status;
    }
    *file = parsed;
    return PLM_OK;
}

int gguf_open(const char *path, struct gguf_file **file)
{
    *file = NULL;
    struct mapped_file map;
    int status = mapped_file_open(&map, path);
    if (status != PLM_OK)
        return status;
    status = gguf_parse(map.data, map.size, file);
    if (status != PLM_OK) {
        mapped_file_close(&map);
        return plm_fail_context(status, "%s", path);
    }
    (*file)->map = map;
    return PLM_OK;
}

void gguf_free(struct gguf_file *file)
{
    if (!file)
        return;
    for (uint64_t i = 0; file->kv && i < file->n_kv; i++) {
        free(file->kv[i].key);
        free(file->kv[i].strings);
    }
    for (uint64_t i = 0; file->tensors && i < file->n_tensors; i++)
        free(file->tensors[i].name);
    free(file->kv);
    free(file->tensors);
    mapped_file_close(&file->map);
    free(file);
}

const struct gguf_kv *gguf_find(const struct gguf_file *file, const char *key)
{
    for (uint64_t i = 0; i < file->n_kv; i++)
        if (strcmp(file->kv[i].key, key) == 0)
            return &file->kv[i];
    return NULL;
}

const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *file, const char *name)
{
    for (uint64_t i = 0; i < file->n_tensors; i++)
        if (strcmp(file->tensors[i].name, name) == 0)
            return &file->tensors[i];
    return NULL;
}

/* ------------------------------------------------------------ typed access */

/* One numeric value widened without loss: each integer type fits int64 or
 * uint64, each float type fits double. */
struct number {
    enum { NUMBER_SIGNED, NUMBER_UNSIGNED, NUMBER_FLOAT } kind;
    int64_t i;
    uint64_t u;
    double f;
};

/* Decodes element i of kv; false when out of range or not a number (bools,
 * strings and arrays are not numbers). */
static bool element_number(const struct gguf_kv *kv, uint64_t i, struct number *n)
{
    uint64_t size = gguf_value_size(kv->elem_type);
    if (i >= kv->count || size == 0 || kv->elem_type == GGUF_TYPE_BOOL)
        return false;
    const uint8_t *p = kv->data + i * size;
    uint64_t bits = size == 1 ? p[0] : size == 2 ? le16(p) : size == 4 ? le32(p) : le64(p);
    uint32_t bits32 = (uint32_t)bits;
    float f32;
    switch (kv->elem_type) {
    case GGUF_TYPE_INT8:
        n->kind = NUMBER_SIGNED;
        n->i = (int8_t)bits;
        break;
    case GGUF_TYPE_INT16:
        n->kind = NUMBER_SIGNED;
        n->i = (int16_t)bits;
        break;
    case GGUF_TYPE_INT32:
        n->kind = NUMBER_SIGNED;
        n->i = (int32_t)bits;
        break;
    case GGUF_TYPE_INT64:
        n->kind = NUMBER_SIGNED;
        n->i = (int64_t)bits;
        break;
    case GGUF_TYPE_FLOAT32:
        memcpy(&f32, &bits32, sizeof f32);
        n->kind = NUMBER_FLOAT;
        n->f = f32;
        break;
    case GGUF_TYPE_FLOAT64:
        memcpy(&n->f, &bits, sizeof n->f);
        n->kind = NUMBER_FLOAT;
        break;
    default: /* the unsigned integer types */
        n->kind = NUMBER_UNSIGNED;
        n->u = bits;
        break;
    }
    return true;
}

/* n as an integer in [0, max]; floats are not integers here. */
static bool number_to_u64(const struct number *n, uint64_t max, uint64_t *value)
{
    if (n->kind == NUMBER_FLOAT || (n->kind == NUMBER_SIGNED && n->i < 0))
        return false;
    *value = n->kind == NUMBER_SIGNED ? (uint64_t)n->i : n->u;
    return *value <= max;
}

/* n as an integer in [min, max]; floats are not integers here. */
static bool number_to_i64(const struct number *n, int64_t min, int64_t max, int64_t *value)
{
    if (n->kind == NUMBER_FLOAT || (n->kind == NUMBER_UNSIGNED && n->u > (uint64_t)max))
        return false;
    *value = n->kind == NUMBER_SIGNED ? n->i : (int64_t)n->u;
    return *value >= min && *value <= max;
}

static bool scalar_number(const struct gguf_file *file, const char *key, struct number *n)
{
    const struct gguf_kv *kv = gguf_find(file, key);
    return kv && kv->type != GGUF_TYPE_ARRAY && element_number(kv, 0, n);
}

bool gguf_get_u32(const struct gguf_file *file, const char *key, uint32_t *value)
{
    struct number n;
    uint64_t wide;
    if (!scalar_number(file, key, &n) || !number_to_u64(&n, UINT32_MAX, &wide))
        return false;
    *value = (uint32_t)wide;
    return true;
}

bool gguf_get_u64(const struct gguf_file *file, const char *key, uint64_t *value)
{
    struct number n;
    return scalar_number(file, key, &n) && number_to_u64(&n, UINT64_MAX, value);
}

bool gguf_get_i32(const struct gguf_file *file, const char *key, int32_t *value)
{
    struct number n;
    int64_t wide;
    if (!scalar_number(file, key, &n) || !number_to_i64(&n, INT32_MIN, INT32_MAX, &wide))
        return false;
    *value = (int32_t)wide;
    return true;
}

static float number_as_float(const struct number *n)
{
    switch (n->kind) {
    case NUMBER_SIGNED: return (float)n->i;
    case NUMBER_UNSIGNED: return (float)n->u;
    default: return (float)n->f;
    }
}

bool gguf_get_f32(const struct gguf_file *file, const char *key, float *value)
{
    struct number n;
    if (!scalar_number(file, key, &n))
        return false;
    *value = number_as_float(&n);
    return true;
}

bool gguf_get_bool(const struct gguf_file *file, const char *key, bool *value)
{
    const struct gguf_kv *kv = gguf_find(file, key);
    if (!kv || kv->type != GGUF_TYPE_BOOL)
        return false;
    *value = kv->data[0] != 0;
    return true;
}

bool gguf_get_str(const struct gguf_file *file, const char *key, struct gguf_str *value)
{
    const struct gguf_kv *kv = gguf_find(file, key);
    if (!kv || kv->type != GGUF_TYPE_STRING)
        return false;
    *value = kv->strings[0];
    return true;
}

bool gguf_array_f32(const struct gguf_kv *kv, uint64_t i, float *value)
{
    struct number n;
    if (!element_number(kv, i, &n))
        return false;
    *value = number_as_float(&n);
    return true;
}

/* Floats convert only when they hold a whole number that fits. */
bool gguf_array_i64(const struct gguf_kv *kv, uint64_t i, int64_t *value)
{
    struct number n;
    if (!element_number(kv, i, &n))
        return false;
    if (n.kind != NUMBER_FLOAT)
        return number_to_i64(&n, INT64_MIN, INT64_MAX, value);
    /* 2^63 is exact as a double; every whole number in [-2^63, 2^63) fits. */
    if (!(n.f >= -9223372036854775808.0 && n.f < 9223372036854775808.0) || n.f != floor(n.f))
        return false;
    *value = (int64_t)n.f;
    return true;
}

const char *gguf_value_type_name(enum gguf_value_type type)
{
    switch (type) {
    case GGUF_TYPE_UINT8: return "uint8";
    case GGUF_TYPE_INT8: return "int8";
    case GGUF_TYPE_UINT16: return "uint16";
    case GGUF_TYPE_INT16: return "int16";
    case GGUF_TYPE_UINT32: return "uint32";
    case GGUF_TYPE_INT32: return "int32";
    case GGUF_TYPE_FLOAT32: return "float32";
    case GGUF_TYPE_BOOL: return "bool";
    case GGUF_TYPE_STRING: return "string";
    case GGUF_TYPE_ARRAY: return "array";
    case GGUF_TYPE_UINT64: return "uint64";
    case GGUF_TYPE_INT64: return "int64";
    case GGUF_TYPE_FLOAT64: return "float64";
    }
    return "invalid";
}
