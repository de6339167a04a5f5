/*
 * GGUF reader (versions 2 and 3).
 *
 * File layout (little-endian):
 *   magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv x  { string key | u32 value_type | value }
 *   n_tensors x { string name | u32 n_dims | u64 ne[n_dims] | u32 type | u64 offset }
 *   padding to `general.alignment` (default 32)
 *   tensor data; each tensor at data_start + offset, offset a multiple of the alignment
 * A string is u64 length + bytes (no NUL). An array value is u32 element type +
 * u64 count + elements. Version 1 (u32 counts) is not accepted.
 *
 * The reader never trusts the file: every length, count, offset and type is
 * checked against the bytes that remain before it is used, so a malformed file
 * gives PLM_ERR_FORMAT with a message naming the problem, never an
 * out-of-bounds read.
 */
#ifndef PLM_FORMAT_GGUF_H
#define PLM_FORMAT_GGUF_H

#include "core/mapped_file.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum gguf_value_type {
    GGUF_TYPE_UINT8 = 0,
    GGUF_TYPE_INT8 = 1,
    GGUF_TYPE_UINT16 = 2,
    GGUF_TYPE_INT16 = 3,
    GGUF_TYPE_UINT32 = 4,
    GGUF_TYPE_INT32 = 5,
    GGUF_TYPE_FLOAT32 = 6,
    GGUF_TYPE_BOOL = 7,
    GGUF_TYPE_STRING = 8,
    GGUF_TYPE_ARRAY = 9,
    GGUF_TYPE_UINT64 = 10,
    GGUF_TYPE_INT64 = 11,
    GGUF_TYPE_FLOAT64 = 12,
};

#define GGUF_DEFAULT_ALIGNMENT 32
#define GGUF_MAX_DIMS 4

/* A string inside the file: not NUL-terminated. */
struct gguf_str {
    const char *ptr;
    uint64_t len;
};

struct gguf_kv {
    char *key;                     /* NUL-terminated copy */
    enum gguf_value_type type;     /* GGUF_TYPE_ARRAY for arrays */
    enum gguf_value_type elem_type;/* arrays: element type; scalars: same as type */
    uint64_t count;                /* arrays: element count; scalars: 1 */
    const uint8_t *data;           /* numeric scalars/arrays: the raw values in the file */
    struct gguf_str *strings;      /* string scalars and string arrays: count entries */
};

struct gguf_tensor {
    char *name;                    /* NUL-terminated copy */
    uint32_t n_dims;
    int64_t ne[GGUF_MAX_DIMS];     /* ne[0] is the row length; unused dims are 1 */
    int type;                      /* enum plm_type */
    uint64_t offset;               /* from the start of the data section */
    const void *data;              /* points into the file */
    uint64_t nbytes;
};

struct gguf_file {
    struct mapped_file map;        /* empty when parsed from a caller's buffer */
    const uint8_t *bytes;
    size_t size;
    uint32_t version;
    uint64_t alignment;
    uint64_t data_offset;          /* start of the tensor data section */
    uint64_t n_kv;
    struct gguf_kv *kv;
    uint64_t n_tensors;
    struct gguf_tensor *tensors;
    uint64_t heap_bytes;           /* what this struct, kv and tensors hold on the heap */
};

/* Maps and parses a file. The message of a failure starts with the path. */
int gguf_open(const char *path, struct gguf_file **file);
/* Parses a buffer that must outlive the result (tests, fuzzing). */
int gguf_parse(const uint8_t *bytes, size_t size, struct gguf_file **file);
void gguf_free(struct gguf_file *file);

const struct gguf_kv *gguf_find(const struct gguf_file *file, const char *key);
const struct gguf_tensor *gguf_find_tensor(const struct gguf_file *file, const char *name);

/* Typed getters: false when the key is absent or its value does not convert
 * (integers convert between widths when the value fits; floats accept any number). */
bool gguf_get_u32(const struct gguf_file *file, const char *key, uint32_t *value);
bool gguf_get_u64(const struct gguf_file *file, const char *key, uint64_t *value);
bool gguf_get_i32(const struct gguf_file *file, const char *key, int32_t *value);
bool gguf_get_f32(const struct gguf_file *file, const char *key, float *value);
bool gguf_get_bool(const struct gguf_file *file, const char *key, bool *value);
bool gguf_get_str(const struct gguf_file *file, const char *key, struct gguf_str *value);

/* Element i of a numeric array, converted; false if out of range or not numeric. */
bool gguf_array_f32(const struct gguf_kv *kv, uint64_t i, float *value);
bool gguf_array_i64(const struct gguf_kv *kv, uint64_t i, int64_t *value);

const char *gguf_value_type_name(enum gguf_value_type type);
/* Bytes of one value of a fixed-size type; 0 for strings, arrays and invalid types. */
size_t gguf_value_size(uint32_t type);

#endif
