#include "format/safetensors.h"

#include "core/error.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* The reference implementation refuses headers above 100 MB; so do we, before parsing. */
#define SAFETENSORS_MAX_HEADER (100u * 1000 * 1000)

/* JSON numbers are doubles: integers above 2^53 cannot be represented exactly. */
#define JSON_MAX_EXACT_INT 9007199254740992.0

static const struct {
    const char *name;
    size_t size;
} dtype_info[] = {
    [SAFETENSORS_BOOL] = {"BOOL", 1},       [SAFETENSORS_U8] = {"U8", 1},
    [SAFETENSORS_I8] = {"I8", 1},           [SAFETENSORS_F8_E4M3] = {"F8_E4M3", 1},
    [SAFETENSORS_F8_E5M2] = {"F8_E5M2", 1}, [SAFETENSORS_U16] = {"U16", 2},
    [SAFETENSORS_I16] = {"I16", 2},         [SAFETENSORS_F16] = {"F16", 2},
    [SAFETENSORS_BF16] = {"BF16", 2},       [SAFETENSORS_U32] = {"U32", 4},
    [SAFETENSORS_I32] = {"I32", 4},         [SAFETENSORS_F32] = {"F32", 4},
    [SAFETENSORS_U64] = {"U64", 8},         [SAFETENSORS_I64] = {"I64", 8},
    [SAFETENSORS_F64] = {"F64", 8},
};
#define N_DTYPES (sizeof dtype_info / sizeof dtype_info[0])

const char *safetensors_dtype_name(enum safetensors_dtype dtype)
{
    return (size_t)dtype < N_DTYPES ? dtype_info[dtype].name : "unknown";
}

size_t safetensors_dtype_size(enum safetensors_dtype dtype)
{
    return (size_t)dtype < N_DTYPES ? dtype_info[dtype].size : 0;
}

static int dtype_from_name(const char *name)
{
    for (size_t i = 0; i < N_DTYPES; i++)
        if (strcmp(dtype_info[i].name, name) == 0)
            return (int)i;
    return -1;
}

/* A JSON number that is a whole number in [0, 2^53], as shapes and offsets must be. */
static int json_to_u64(const cJSON *item, uint64_t *value)
{
    if (!cJSON_IsNumber(item))
        return -1;
    double d = item->valuedouble;
    if (!(d >= 0 && d <= JSON_MAX_EXACT_INT) || floor(d) != d)
        return -1;
    *value = (uint64_t)d;
    return 0;
}

static int parse_shape(const cJSON *shape, struct safetensors_tensor *t, uint64_t *n_elements)
{
    if (!cJSON_IsArray(shape))
        return plm_fail(PLM_ERR_FORMAT, "safetensors: tensor '%s' has no \"shape\" array", t->name);
    int n_dims = cJSON_GetArraySize(shape);
    if (n_dims > SAFETENSORS_MAX_DIMS)
        return plm_fail(PLM_ERR_FORMAT, "safetensors: tensor '%s' has %d dimensions (at most %d)",
                        t->name, n_dims, SAFETENSORS_MAX_DIMS);
    uint64_t count = 1;
    int i = 0;
    const cJSON *dim;
    cJSON_ArrayForEach(dim, shape) {
        uint64_t n;
        if (json_to_u64(dim, &n) != 0)
            return plm_fail(PLM_ERR_FORMAT,
                            "safetensors: tensor '%s' has a shape entry that is not a "
                            "non-negative integer", t->name);
        if (n != 0 && count > UINT64_MAX / n)
            return plm_fail(PLM_ERR_FORMAT, "safetensors: tensor '%s' shape overflows", t->name);
        count *= n;
        t->shape[i++] = (int64_t)n;
    }
    t->n_dims = n_dims;
    *n_elements = count;
    return PLM_OK;
}

/* Fills t from its header entry and checks its byte range against the data size. */
static int parse_tensor(const cJSON *entry, const uint8_t *data, uint64_t data_size,
                        struct safetensors_tensor *t, uint64_t *begin)
{
    if (!cJSON_IsObject(entry))
        return plm_fail(PLM_ERR_FORMAT, "safetensors: entry '%s' is not an object", t->name);

    const cJSON *dtype = cJSON_GetObjectItemCaseSensitive(entry, "dtype");
    if (!cJSON_IsString(dtype))
        return plm_fail(PLM_ERR_FORMAT, "safetensors: tensor '%s' has no \"dtype\" string",
                        t->name);
    int dt = dtype_from_name(dtype->valuestring);
    if (dt < 0)
        return plm_fail(PLM_ERR_FORMAT, "safetensors: tensor '%s' has unknown dtype '%s'", t->name,
                        dtype->valuestring);
    t->dtype = (enum safetensors_dtype)dt;

    uint64_t n_elements = 0;
    int rc = parse_shape(cJSON_GetObjectItemCaseSensitive(entry, "shape"), t, &n_elements);
    if (rc)
        return rc;
    if (n_elements > UINT64_MAX / dtype_info[dt].size)
        return plm_fail(PLM_ERR_FORMAT, "safetensors: tensor '%s' shape overflows", t->name);

    const cJSON *offsets = cJSON_GetObjectItemCaseSensitive(entry, "data_offsets");
    uint64_t end;
    if (!cJSON_IsArray(offsets) || cJSON_GetArraySize(offsets) != 2 ||
        json_to_u64(cJSON_GetArrayItem(offsets, 0), begin) != 0 ||
        json_to_u64(cJSON_GetArrayItem(offsets, 1), &end) != 0)
        return plm_fail(PLM_ERR_FORMAT,
                        "safetensors: tensor '%s' needs \"data_offsets\": [begin, end] of "
                        "non-negative integers", t->name);
    if (*begin > end || end > data_size)
        return plm_fail(PLM_ERR_FORMAT,
                        "safetensors: tensor '%s' data [%llu, %llu) lies outside the data "
                        "section (%llu bytes)", t->name, (unsigned long long)*begin,
                        (unsigned long long)end, (unsigned long long)data_size);
    t->nbytes = end - *begin;
    if (t->nbytes != n_elements * dtype_info[dt].size)
        return plm_fail(PLM_ERR_FORMAT,
                        "safetensors: tensor '%s' spans %llu bytes but its shape and dtype %s "
                        "need %llu", t->name, (unsigned long long)t->nbytes, dtype_info[dt].name,
                        (unsigned long long)(n_elements * dtype_info[dt].size));
    t->data = data + *begin;
    return PLM_OK;
}

struct tensor_span {
    uint64_t begin, end;
    const char *name;
};

static int compare_spans(const void *a, const void *b)
{
    const struct tensor_span *x = a, *y = b;
    if (x->begin != y->begin)
        return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* The tensors must cover the data section exactly once, in any header order. */
static int check_tiling(struct tensor_span *spans, size_t n, uint64_t data_size)
{
    qsort(spans, n, sizeof *spans, compare_spans);
    uint64_t covered = 0;
    for (size_t i = 0; i < n; i++) {
        if (spans[i].begin < covered)
            return plm_fail(PLM_ERR_FORMAT, "safetensors: tensor '%s' overlaps tensor '%s'",
                            spans[i].name, spans[i - 1].name);
        if (spans[i].begin > covered)
            return plm_fail(PLM_ERR_FORMAT,
                            "safetensors: %llu unused bytes before tensor '%s'",
                            (unsigned long long)(spans[i].begin - covered), spans[i].name);
        covered = spans[i].end;
    }
    if (covered != data_size)
        return plm_fail(PLM_ERR_FORMAT, "safetensors: %llu bytes after the last tensor",
                        (unsigned long long)(data_size - covered));
    return PLM_OK;
}

static int compare_names(const void *a, const void *b)
{
    return strcmp(*(const char *const *)a, *(const char *const *)b);
}

/* JSON objects may repeat a key; a tensor name must name one tensor. */
static int check_unique_names(const char **names, size_t n)
{
    qsort(names, n, sizeof *names, compare_names);
    for (size_t i = 1; i < n; i++)
        if (strcmp(names[i - 1], names[i]) == 0)
            return plm_fail(PLM_ERR_FORMAT, "safetensors: tensor '%s' appears twice", names[i]);
    return PLM_OK;
}

/* Parses the header's tensor entries into file->tensors. */
static int parse_entries(const cJSON *header, const uint8_t *data, uint64_t data_size,
                         struct safetensors_file *file)
{
    size_t n = 0;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, header)
        if (strcmp(entry->string, "__metadata__") != 0)
            n++;

    file->tensors = calloc(n ? n : 1, sizeof *file->tensors);
    struct tensor_span *spans = calloc(n ? n : 1, sizeof *spans);
    const char **names = calloc(n ? n : 1, sizeof *names);
    int rc = PLM_OK;
    if (!file->tensors || !spans || !names)
        rc = plm_fail(PLM_ERR_NOMEM, "safetensors: out of memory for %zu tensors", n);

    cJSON_ArrayForEach(entry, header) {
        if (rc)
            break;
        if (strcmp(entry->string, "__metadata__") == 0)
            continue;
        struct safetensors_tensor *t = &file->tensors[file->n_tensors];
        if (!(t->name = strdup(entry->string))) {
            rc = plm_fail(PLM_ERR_NOMEM, "safetensors: out of memory");
            break;
        }
        file->n_tensors++;
        uint64_t begin = 0;
        rc = parse_tensor(entry, data, data_size, t, &begin);
        spans[file->n_tensors - 1] = (struct tensor_span){begin, begin + t->nbytes, t->name};
        names[file->n_tensors - 1] = t->name;
    }
    if (!rc)
        rc = check_unique_names(names, n);
    if (!rc)
        rc = check_tiling(spans, n, data_size);
    free(spans);
    free(names);
    return rc;
}

static int parse_into(const uint8_t *bytes, size_t size, struct safetensors_file *file)
{
    if (size < 8)
        return plm_fail(PLM_ERR_FORMAT, "safetensors: file of %zu bytes is too short for a header",
                        size);
    uint64_t header_len = 0;
    for (int i = 7; i >= 0; i--)
        header_len = header_len << 8 | bytes[i];
    if (header_len > size - 8)
        return plm_fail(PLM_ERR_FORMAT,
                        "safetensors: header length %llu exceeds the %zu bytes after it",
                        (unsigned long long)header_len, size - 8);
    if (header_len > SAFETENSORS_MAX_HEADER)
        return plm_fail(PLM_ERR_FORMAT, "safetensors: header length %llu exceeds the %u byte limit",
                        (unsigned long long)header_len, SAFETENSORS_MAX_HEADER);

    const char *text = (const char *)bytes + 8;
    const char *json_end = NULL;
    cJSON *header = cJSON_ParseWithLengthOpts(text, (size_t)header_len, &json_end, 0);
    if (!header)
        return plm_fail(PLM_ERR_FORMAT, "safetensors: header is not valid JSON");
    int rc = PLM_OK;
    for (const char *p = json_end; p < text + header_len && !rc; p++)
        if (*p != ' ' && *p != '\t' && *p != '\n' && *p != '\r')
            rc = plm_fail(PLM_ERR_FORMAT, "safetensors: unexpected bytes after the JSON header");
    if (!rc && !cJSON_IsObject(header))
        rc = plm_fail(PLM_ERR_FORMAT, "safetensors: header is not a JSON object");
    if (!rc) {
        const uint8_t *data = bytes + 8 + header_len;
        rc = parse_entries(header, data, size - 8 - header_len, file);
    }
    cJSON_Delete(header);
    return rc;
}

int safetensors_parse(const uint8_t *bytes, size_t size, struct safetensors_file **file)
{
    *file = calloc(1, sizeof **file);
    if (!*file)
        return plm_fail(PLM_ERR_NOMEM, "safetensors: out of memory");
    int rc = parse_into(bytes, size, *file);
    if (rc) {
        safetensors_free(*file);
        *file = NULL;
    }
    return rc;
}

int safetensors_open(const char *path, struct safetensors_file **file)
{
    *file = NULL;
    struct mapped_file map;
    int rc = mapped_file_open(&map, path);
    if (rc)
        return rc;
    rc = safetensors_parse(map.data, map.size, file);
    if (rc) {
        mapped_file_close(&map);
        return plm_fail_context(rc, "%s", path);
    }
    (*file)->map = map;
    return PLM_OK;
}

void safetensors_free(struct safetensors_file *file)
{
    if (!file)
        return;
    for (size_t i = 0; i < file->n_tensors; i++)
        free(file->tensors[i].name);
    free(file->tensors);
    mapped_file_close(&file->map);
    free(file);
}

const struct safetensors_tensor *safetensors_find(const struct safetensors_file *file,
                                                  const char *name)
{
    for (size_t i = 0; i < file->n_tensors; i++)
        if (strcmp(file->tensors[i].name, name) == 0)
            return &file->tensors[i];
    return NULL;
}

/* ------------------------------------------------------------ checkpoints */

static int add_file(struct safetensors_checkpoint *ckpt, const char *dir, const char *name)
{
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/%s", dir, name) >= sizeof path)
        return plm_fail(PLM_ERR_ARG, "path '%s/%s' is too long", dir, name);
    struct safetensors_file **grown = realloc(ckpt->files, (ckpt->n_files + 1) * sizeof *grown);
    if (!grown)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    ckpt->files = grown;
    int rc = safetensors_open(path, &ckpt->files[ckpt->n_files]);
    if (rc)
        return rc;
    ckpt->n_files++;
    return PLM_OK;
}

/* Index of name in names[0..n), or -1. */
static long find_name(const char *const *names, size_t n, const char *name)
{
    for (size_t i = 0; i < n; i++)
        if (strcmp(names[i], name) == 0)
            return (long)i;
    return -1;
}

/* Opens every shard the index names (each once, in order of first mention) and
 * checks that each tensor of the weight map is in the shard it names.
 * shard_names has room for one entry per weight map entry. */
static int open_shards(struct safetensors_checkpoint *ckpt, const char *dir,
                       const cJSON *weight_map, const char **shard_names)
{
    const cJSON *entry;
    cJSON_ArrayForEach(entry, weight_map) {
        if (!cJSON_IsString(entry) || !*entry->valuestring || strchr(entry->valuestring, '/'))
            return plm_fail(PLM_ERR_FORMAT,
                            "model.safetensors.index.json: tensor '%s' must map to a file name "
                            "in the same directory", entry->string);
        if (find_name(shard_names, ckpt->n_files, entry->valuestring) >= 0)
            continue;
        shard_names[ckpt->n_files] = entry->valuestring;
        int rc = add_file(ckpt, dir, entry->valuestring);
        if (rc)
            return rc;
    }
    cJSON_ArrayForEach(entry, weight_map) {
        long shard = find_name(shard_names, ckpt->n_files, entry->valuestring);
        if (!safetensors_find(ckpt->files[shard], entry->string))
            return plm_fail(PLM_ERR_FORMAT,
                            "model.safetensors.index.json: tensor '%s' is not in '%s'",
                            entry->string, entry->valuestring);
    }
    return PLM_OK;
}

static int open_index(struct safetensors_checkpoint *ckpt, const char *dir, const char *index_path)
{
    char *text;
    size_t size;
    int rc = read_whole_file(index_path, &text, &size);
    if (rc)
        return rc;
    cJSON *index = cJSON_ParseWithLength(text, size);
    free(text);
    if (!index)
        return plm_fail(PLM_ERR_FORMAT, "%s: not valid JSON", index_path);
    const cJSON *weight_map = cJSON_GetObjectItemCaseSensitive(index, "weight_map");
    int n_entries = cJSON_GetArraySize(weight_map);
    const char **shard_names = calloc(n_entries ? (size_t)n_entries : 1, sizeof *shard_names);
    if (!cJSON_IsObject(weight_map) || n_entries == 0)
        rc = plm_fail(PLM_ERR_FORMAT, "%s: no \"weight_map\" entries", index_path);
    else if (!shard_names)
        rc = plm_fail(PLM_ERR_NOMEM, "out of memory");
    else
        rc = open_shards(ckpt, dir, weight_map, shard_names);
    free(shard_names);
    cJSON_Delete(index);
    return rc;
}

/* Shards are checked one by one; a name must also not repeat across them. */
static int check_unique_across_files(const struct safetensors_checkpoint *ckpt)
{
    size_t n = 0;
    for (size_t i = 0; i < ckpt->n_files; i++)
        n += ckpt->files[i]->n_tensors;
    const char **names = malloc((n ? n : 1) * sizeof *names);
    if (!names)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    n = 0;
    for (size_t i = 0; i < ckpt->n_files; i++)
        for (size_t j = 0; j < ckpt->files[i]->n_tensors; j++)
            names[n++] = ckpt->files[i]->tensors[j].name;
    int rc = check_unique_names(names, n);
    free(names);
    return rc;
}

int safetensors_checkpoint_open(const char *dir, struct safetensors_checkpoint **checkpoint)
{
    char index_path[4096];
    *checkpoint = NULL;
    if ((size_t)snprintf(index_path, sizeof index_path, "%s/model.safetensors.index.json", dir) >=
        sizeof index_path)
        return plm_fail(PLM_ERR_ARG, "path '%s' is too long", dir);
    *checkpoint = calloc(1, sizeof **checkpoint);
    if (!*checkpoint)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    /* A sharded checkpoint is recognised by its index; otherwise one file. */
    FILE *probe = fopen(index_path, "rb");
    int rc;
    if (probe) {
        fclose(probe);
        rc = open_index(*checkpoint, dir, index_path);
        if (!rc)
            rc = check_unique_across_files(*checkpoint);
    } else {
        rc = add_file(*checkpoint, dir, "model.safetensors");
    }
    if (rc) {
        safetensors_checkpoint_free(*checkpoint);
        *checkpoint = NULL;
    }
    return rc;
}

void safetensors_checkpoint_free(struct safetensors_checkpoint *checkpoint)
{
    if (!checkpoint)
        return;
    for (size_t i = 0; i < checkpoint->n_files; i++)
        safetensors_free(checkpoint->files[i]);
    free(checkpoint->files);
    free(checkpoint);
}

const struct safetensors_tensor *
safetensors_checkpoint_find(const struct safetensors_checkpoint *checkpoint, const char *name)
{
    for (size_t i = 0; i < checkpoint->n_files; i++) {
        const struct safetensors_tensor *t = safetensors_find(checkpoint->files[i], name);
        if (t)
            return t;
    }
    return NULL;
}
