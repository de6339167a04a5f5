/*
 * GGUF writer (version 3, little-endian).
 *
 * Each key/value is encoded as soon as it is set (value type + value, exactly
 * the bytes that follow the key in the file), so writing is concatenation and
 * copying a value read from another file needs no knowledge of what it means.
 * Tensor data is borrowed and only read by gguf_writer_write.
 *
 * Layout of the output, as ggml writes it: header, key/values in insertion
 * order, tensor infos in insertion order, zero padding to the alignment, then
 * each tensor's data in the same order, each padded with zeros to a multiple of
 * the alignment (so every tensor starts aligned and the file ends aligned).
 */
#include "format/gguf_writer.h"

#include "core/error.h"
#include "tensor/types.h"

#include <errno.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Growable byte buffer for encoded values. Allocation failure is sticky and
 * checked once the value is complete, which keeps the encoders linear. */
struct byte_buffer {
    uint8_t *data;
    size_t size;
    size_t capacity;
    bool out_of_memory;
};

static void put_bytes(struct byte_buffer *b, const void *bytes, size_t n)
{
    if (b->out_of_memory || n == 0)
        return;
    if (n > b->capacity - b->size) {
        if (n > SIZE_MAX / 2 - b->size) {
            b->out_of_memory = true;
            return;
        }
        size_t capacity = b->capacity ? b->capacity : 64;
        while (capacity - b->size < n)
            capacity *= 2;
        uint8_t *grown = realloc(b->data, capacity);
        if (!grown) {
            b->out_of_memory = true;
            return;
        }
        b->data = grown;
        b->capacity = capacity;
    }
    memcpy(b->data + b->size, bytes, n);
    b->size += n;
}

/* Appends the low `size` bytes of value, least significant first. */
static void put_le(struct byte_buffer *b, uint64_t value, size_t size)
{
    uint8_t bytes[8];
    for (size_t i = 0; i < size; i++)
        bytes[i] = (uint8_t)(value >> (8 * i));
    put_bytes(b, bytes, size);
}

static void put_string(struct byte_buffer *b, const char *str, uint64_t len)
{
    put_le(b, len, 8);
    put_bytes(b, str, len);
}

struct writer_kv {
    char *key;
    struct byte_buffer value; /* u32 value type, then the value */
};

struct writer_tensor {
    char *name;
    int type;
    int n_dims;
    int64_t ne[GGUF_MAX_DIMS];
    const void *data; /* borrowed */
    uint64_t nbytes;
    uint64_t offset;  /* within the data section; set when writing */
};

struct gguf_writer {
    struct writer_kv *kv;
    size_t n_kv;
    struct writer_tensor *tensors;
    size_t n_tensors;
};

struct gguf_writer *gguf_writer_new(void) { return calloc(1, sizeof(struct gguf_writer)); }

void gguf_writer_free(struct gguf_writer *w)
{
    if (!w)
        return;
    for (size_t i = 0; i < w->n_kv; i++) {
        free(w->kv[i].key);
        free(w->kv[i].value.data);
    }
    for (size_t i = 0; i < w->n_tensors; i++)
        free(w->tensors[i].name);
    free(w->kv);
    free(w->tensors);
    free(w);
}

/* Takes ownership of an encoded value: replaces the key's value if it is
 * already set (keeping its position), else appends it. */
static int store_kv(struct gguf_writer *w, const char *key, struct byte_buffer *value)
{
    if (value->out_of_memory) {
        free(value->data);
        return plm_fail(PLM_ERR_NOMEM, "gguf writer: out of memory encoding '%s'", key);
    }
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, key) == 0) {
            free(w->kv[i].value.data);
            w->kv[i].value = *value;
            return PLM_OK;
        }
    }
    struct writer_kv *grown = realloc(w->kv, (w->n_kv + 1) * sizeof *grown);
    char *key_copy = strdup(key);
    if (grown)
        w->kv = grown;
    if (!grown || !key_copy) {
        free(key_copy);
        free(value->data);
        return plm_fail(PLM_ERR_NOMEM, "gguf writer: out of memory adding '%s'", key);
    }
    w->kv[w->n_kv++] = (struct writer_kv){key_copy, *value};
    return PLM_OK;
}

static int set_scalar(struct gguf_writer *w, const char *key, enum gguf_value_type type,
                      uint64_t bits, size_t size)
{
    if (!w || !key)
        return plm_fail(PLM_ERR_ARG, "gguf writer: missing writer or key");
    struct byte_buffer value = {0};
    put_le(&value, type, 4);
    put_le(&value, bits, size);
    return store_kv(w, key, &value);
}

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t value)
{
    return set_scalar(w, key, GGUF_TYPE_UINT32, value, 4);
}

int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t value)
{
    return set_scalar(w, key, GGUF_TYPE_INT32, (uint32_t)value, 4);
}

int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t value)
{
    return set_scalar(w, key, GGUF_TYPE_UINT64, value, 8);
}

int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float value)
{
    uint32_t bits;
    memcpy(&bits, &value, sizeof bits);
    return set_scalar(w, key, GGUF_TYPE_FLOAT32, bits, 4);
}

int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool value)
{
    return set_scalar(w, key, GGUF_TYPE_BOOL, value ? 1 : 0, 1);
}

int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *value)
{
    if (!w || !key || !value)
        return plm_fail(PLM_ERR_ARG, "gguf writer: missing writer, key or value");
    struct byte_buffer encoded = {0};
    put_le(&encoded, GGUF_TYPE_STRING, 4);
    put_string(&encoded, value, strlen(value));
    return store_kv(w, key, &encoded);
}

/* An integer of `size` bytes in host byte order (the file's is little-endian). */
static uint64_t host_value(const uint8_t *p, size_t size)
{
    uint16_t u16;
    uint32_t u32;
    uint64_t u64;
    switch (size) {
    case 1:
        return p[0];
    case 2:
        memcpy(&u16, p, 2);
        return u16;
    case 4:
        memcpy(&u32, p, 4);
        return u32;
    default:
        memcpy(&u64, p, 8);
        return u64;
    }
}

int gguf_writer_set_array(struct gguf_writer *w, const char *key, enum gguf_value_type elem_type,
                          const void *values, uint64_t count)
{
    size_t size = gguf_value_size(elem_type);
    if (!w || !key || (count > 0 && !values))
        return plm_fail(PLM_ERR_ARG, "gguf writer: missing writer, key or values");
    if (size == 0)
        return plm_fail(PLM_ERR_ARG, "gguf writer: '%s': %s is not a numeric element type", key,
                        gguf_value_type_name(elem_type));
    struct byte_buffer encoded = {0};
    put_le(&encoded, GGUF_TYPE_ARRAY, 4);
    put_le(&encoded, elem_type, 4);
    put_le(&encoded, count, 8);
    const uint8_t *p = values;
    for (uint64_t i = 0; i < count; i++, p += size) {
        uint64_t value = host_value(p, size);
        put_le(&encoded, elem_type == GGUF_TYPE_BOOL ? value != 0 : value, size);
    }
    return store_kv(w, key, &encoded);
}

int gguf_writer_set_str_array(struct gguf_writer *w, const char *key, const char *const *strings,
                              const size_t *lens, uint64_t count)
{
    if (!w || !key || (count > 0 && !strings))
        return plm_fail(PLM_ERR_ARG, "gguf writer: missing writer, key or strings");
    for (uint64_t i = 0; i < count; i++)
        if (!strings[i])
            return plm_fail(PLM_ERR_ARG, "gguf writer: '%s': string %" PRIu64 " is NULL", key, i);
    struct byte_buffer encoded = {0};
    put_le(&encoded, GGUF_TYPE_ARRAY, 4);
    put_le(&encoded, GGUF_TYPE_STRING, 4);
    put_le(&encoded, count, 8);
    for (uint64_t i = 0; i < count; i++)
        put_string(&encoded, strings[i], lens ? lens[i] : strlen(strings[i]));
    return store_kv(w, key, &encoded);
}

static uint32_t get_le32(const uint8_t *p)
{
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static uint64_t get_le64(const uint8_t *p) { return get_le32(p) | (uint64_t)get_le32(p + 4) << 32; }

/* Bytes taken by `count` arrays (element type, count, elements) in a value that
 * the reader has already validated. */
static uint64_t nested_arrays_size(const uint8_t *arrays, uint64_t count)
{
    const uint8_t *p = arrays;
    for (uint64_t i = 0; i < count; i++) {
        uint32_t elem_type = get_le32(p);
        uint64_t n_elems = get_le64(p + 4);
        p += 12;
        if (elem_type == GGUF_TYPE_STRING) {
            for (uint64_t j = 0; j < n_elems; j++)
                p += 8 + get_le64(p);
        } else if (elem_type == GGUF_TYPE_ARRAY) {
            p += nested_arrays_size(p, n_elems);
        } else {
            p += n_elems * gguf_value_size(elem_type);
        }
    }
    return (uint64_t)(p - arrays);
}

int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv)
{
    if (!w || !kv || !kv->key)
        return plm_fail(PLM_ERR_ARG, "gguf writer: missing writer or key/value");
    struct byte_buffer encoded = {0};
    put_le(&encoded, kv->type, 4);
    if (kv->type == GGUF_TYPE_ARRAY) {
        put_le(&encoded, kv->elem_type, 4);
        put_le(&encoded, kv->count, 8);
    }
    if (kv->elem_type == GGUF_TYPE_STRING) {
        for (uint64_t i = 0; i < kv->count; i++)
            put_string(&encoded, kv->strings[i].ptr, kv->strings[i].len);
    } else if (kv->elem_type == GGUF_TYPE_ARRAY) {
        put_bytes(&encoded, kv->data, nested_arrays_size(kv->data, kv->count));
    } else if (gguf_value_size(kv->elem_type) != 0) {
        /* Numbers as read from a file are already little-endian. */
        put_bytes(&encoded, kv->data, kv->count * gguf_value_size(kv->elem_type));
    } else {
        free(encoded.data);
        return plm_fail(PLM_ERR_ARG, "gguf writer: '%s' has invalid type %d", kv->key,
                        (int)kv->elem_type);
    }
    return store_kv(w, kv->key, &encoded);
}

/* Checks a tensor's type and shape as the reader will, and sizes its data. */
static int size_tensor(struct writer_tensor *t)
{
    const struct plm_type_traits *traits = plm_type_traits(t->type);
    if (!traits)
        return plm_fail(PLM_ERR_ARG, "gguf writer: tensor '%s' has unsupported type %d (%s)",
                        t->name, t->type, plm_type_name(t->type));
    if (t->n_dims < 1 || t->n_dims > GGUF_MAX_DIMS)
        return plm_fail(PLM_ERR_ARG, "gguf writer: tensor '%s' has %d dimensions (must be 1 to %d)",
                        t->name, t->n_dims, GGUF_MAX_DIMS);
    for (int d = 0; d < t->n_dims; d++)
        if (t->ne[d] < 1)
            return plm_fail(PLM_ERR_ARG,
                            "gguf writer: tensor '%s' dimension %d is %" PRId64 " (must be at least 1)",
                            t->name, d, t->ne[d]);
    if (t->ne[0] % traits->block_size != 0)
        return plm_fail(PLM_ERR_ARG,
                        "gguf writer: tensor '%s' row length %" PRId64 " is not a multiple of the "
                        "%s block size %d",
                        t->name, t->ne[0], traits->name, traits->block_size);
    uint64_t limit = INT64_MAX;
    if ((uint64_t)t->ne[0] / (uint64_t)traits->block_size > limit / traits->block_bytes)
        return plm_fail(PLM_ERR_ARG, "gguf writer: tensor '%s' is too large", t->name);
    t->nbytes = plm_row_bytes(t->type, t->ne[0]);
    for (int d = 1; d < t->n_dims; d++) {
        if ((uint64_t)t->ne[d] > limit / t->nbytes)
            return plm_fail(PLM_ERR_ARG, "gguf writer: tensor '%s' is too large", t->name);
        t->nbytes *= (uint64_t)t->ne[d];
    }
    return PLM_OK;
}

int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, int type, const int64_t *ne,
                           int n_dims, const void *data)
{
    if (!w || !name || !ne || !data)
        return plm_fail(PLM_ERR_ARG, "gguf writer: missing writer, tensor name, shape or data");
    for (size_t i = 0; i < w->n_tensors; i++)
        if (strcmp(w->tensors[i].name, name) == 0)
            return plm_fail(PLM_ERR_ARG, "gguf writer: tensor '%s' added twice", name);
    struct writer_tensor t = {.name = strdup(name), .type = type, .n_dims = n_dims, .data = data};
    struct writer_tensor *grown = realloc(w->tensors, (w->n_tensors + 1) * sizeof *grown);
    if (grown)
        w->tensors = grown;
    if (!grown || !t.name) {
        free(t.name);
        return plm_fail(PLM_ERR_NOMEM, "gguf writer: out of memory adding tensor '%s'", name);
    }
    for (int d = 0; d < GGUF_MAX_DIMS; d++)
        t.ne[d] = d < n_dims ? ne[d] : 1;
    int status = size_tensor(&t);
    if (status != PLM_OK) {
        free(t.name);
        return status;
    }
    w->tensors[w->n_tensors++] = t;
    return PLM_OK;
}

/* The alignment the file will declare: general.alignment if set, else the default. */
static int writer_alignment(const struct gguf_writer *w, uint64_t *alignment)
{
    *alignment = GGUF_DEFAULT_ALIGNMENT;
    for (size_t i = 0; i < w->n_kv; i++) {
        if (strcmp(w->kv[i].key, "general.alignment") != 0)
            continue;
        const uint8_t *encoded = w->kv[i].value.data;
        if (get_le32(encoded) != GGUF_TYPE_UINT32)
            return plm_fail(PLM_ERR_ARG, "gguf writer: general.alignment must be a uint32");
        uint32_t value = get_le32(encoded + 4);
        if (value == 0 || (value & (value - 1)) != 0)
            return plm_fail(PLM_ERR_ARG,
                            "gguf writer: general.alignment %" PRIu32 " is not a power of two", value);
        *alignment = value;
    }
    return PLM_OK;
}

static uint64_t align_up(uint64_t n, uint64_t alignment)
{
    return (n + alignment - 1) / alignment * alignment;
}

/* Output stream that counts bytes (for padding) and remembers the first failure. */
struct output {
    FILE *file;
    uint64_t pos;
    int error; /* errno of the first failed write, 0 if none */
};

static void emit(struct output *out, const void *bytes, size_t n)
{
    if (!out->error && n > 0 && fwrite(bytes, 1, n, out->file) != n)
        out->error = errno ? errno : EIO;
    out->pos += n;
}

static void emit_buffer(struct output *out, const struct byte_buffer *b)
{
    emit(out, b->data, b->size);
}

static void emit_padding(struct output *out, uint64_t alignment)
{
    static const uint8_t zeros[256];
    uint64_t n = align_up(out->pos, alignment) - out->pos;
    while (n > 0) {
        size_t chunk = n < sizeof zeros ? (size_t)n : sizeof zeros;
        emit(out, zeros, chunk);
        n -= chunk;
    }
}

/* Everything before the tensor data, encoded in memory. */
static void encode_head(const struct gguf_writer *w, struct byte_buffer *head)
{
    put_bytes(head, "GGUF", 4);
    put_le(head, 3, 4);
    put_le(head, w->n_tensors, 8);
    put_le(head, w->n_kv, 8);
    for (size_t i = 0; i < w->n_kv; i++) {
        put_string(head, w->kv[i].key, strlen(w->kv[i].key));
        put_bytes(head, w->kv[i].value.data, w->kv[i].value.size);
    }
    for (size_t i = 0; i < w->n_tensors; i++) {
        const struct writer_tensor *t = &w->tensors[i];
        put_string(head, t->name, strlen(t->name));
        put_le(head, (uint64_t)t->n_dims, 4);
        for (int d = 0; d < t->n_dims; d++)
            put_le(head, (uint64_t)t->ne[d], 8);
        put_le(head, (uint64_t)t->type, 4);
        put_le(head, t->offset, 8);
    }
}

static int write_file(const struct gguf_writer *w, const struct byte_buffer *head,
                      uint64_t alignment, const char *tmp_path)
{
    struct output out = {fopen(tmp_path, "wb"), 0, 0};
    if (!out.file)
        return plm_fail(PLM_ERR_IO, "cannot create '%s': %s", tmp_path, strerror(errno));
    emit_buffer(&out, head);
    emit_padding(&out, alignment);
    for (size_t i = 0; i < w->n_tensors; i++) {
        emit(&out, w->tensors[i].data, w->tensors[i].nbytes);
        emit_padding(&out, alignment);
    }
    if (fclose(out.file) != 0 && !out.error)
        out.error = errno;
    if (out.error)
        return plm_fail(PLM_ERR_IO, "cannot write '%s': %s", tmp_path, strerror(out.error));
    return PLM_OK;
}

int gguf_writer_write(struct gguf_writer *w, const char *path)
{
    if (!w || !path)
        return plm_fail(PLM_ERR_ARG, "gguf writer: missing writer or path");
    uint64_t alignment;
    int status = writer_alignment(w, &alignment);
    if (status != PLM_OK)
        return status;
    uint64_t offset = 0;
    for (size_t i = 0; i < w->n_tensors; i++) {
        w->tensors[i].offset = offset;
        offset += align_up(w->tensors[i].nbytes, alignment);
    }
    struct byte_buffer head = {0};
    encode_head(w, &head);
    if (head.out_of_memory) {
        free(head.data);
        return plm_fail(PLM_ERR_NOMEM, "gguf writer: out of memory writing '%s'", path);
    }

    /* A reader never sees a half-written file under the final name. */
    size_t tmp_size = strlen(path) + 32;
    char *tmp_path = malloc(tmp_size);
    if (!tmp_path) {
        free(head.data);
        return plm_fail(PLM_ERR_NOMEM, "gguf writer: out of memory writing '%s'", path);
    }
    snprintf(tmp_path, tmp_size, "%s.tmp.%ld", path, (long)getpid());
    status = write_file(w, &head, alignment, tmp_path);
    if (status == PLM_OK && rename(tmp_path, path) != 0)
        status = plm_fail(PLM_ERR_IO, "cannot rename '%s' to '%s': %s", tmp_path, path,
                          strerror(errno));
    if (status != PLM_OK)
        remove(tmp_path);
    free(tmp_path);
    free(head.data);
    return status;
}
