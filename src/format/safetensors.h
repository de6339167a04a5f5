/*
 * safetensors reader (the tensor container of Hugging Face checkpoints).
 *
 * File layout:
 *   u64 header_len                     little-endian
 *   header_len bytes of JSON           an object, optionally padded with spaces:
 *       { "<tensor name>": { "dtype": "F32", "shape": [rows, cols],
 *                            "data_offsets": [begin, end] },
 *         ...,
 *         "__metadata__": { "<key>": "<string>", ... } }     (optional, ignored)
 *   data                               the rest of the file
 * A tensor's bytes are data[begin, end): row-major (the last shape entry varies
 * fastest), little-endian. As the reference library requires, the tensors tile the
 * data exactly: no overlap, no gap, nothing after the last one.
 *
 * Every field is checked against the file before use (shape product x dtype size
 * == end - begin, offsets inside the data, tiling), so a malformed file gives
 * PLM_ERR_FORMAT with a one-line message naming the problem.
 *
 * A sharded checkpoint lists its files in model.safetensors.index.json:
 *   { "weight_map": { "<tensor name>": "model-00001-of-00002.safetensors", ... } }
 */
#ifndef PLM_FORMAT_SAFETENSORS_H
#define PLM_FORMAT_SAFETENSORS_H

#include "core/mapped_file.h"

#include <stddef.h>
#include <stdint.h>

enum safetensors_dtype {
    SAFETENSORS_BOOL,
    SAFETENSORS_U8,
    SAFETENSORS_I8,
    SAFETENSORS_F8_E4M3,
    SAFETENSORS_F8_E5M2,
    SAFETENSORS_U16,
    SAFETENSORS_I16,
    SAFETENSORS_F16,
    SAFETENSORS_BF16,
    SAFETENSORS_U32,
    SAFETENSORS_I32,
    SAFETENSORS_F32,
    SAFETENSORS_U64,
    SAFETENSORS_I64,
    SAFETENSORS_F64,
};

/* More dimensions than any checkpoint we convert uses; larger shapes are rejected. */
#define SAFETENSORS_MAX_DIMS 8

struct safetensors_tensor {
    char *name;
    enum safetensors_dtype dtype;
    int n_dims;                              /* 0 for a scalar */
    int64_t shape[SAFETENSORS_MAX_DIMS];     /* shape[0] is the outermost dimension */
    const uint8_t *data;                     /* points into the file; may be unaligned */
    uint64_t nbytes;
};

struct safetensors_file {
    struct mapped_file map; /* empty when parsed from a caller's buffer */
    size_t n_tensors;
    struct safetensors_tensor *tensors; /* in header order */
};

/* Maps and parses a file. The message of a failure starts with the path. */
int safetensors_open(const char *path, struct safetensors_file **file);
/* Parses a buffer that must outlive the result (tests). */
int safetensors_parse(const uint8_t *bytes, size_t size, struct safetensors_file **file);
void safetensors_free(struct safetensors_file *file);

const struct safetensors_tensor *safetensors_find(const struct safetensors_file *file,
                                                  const char *name);

const char *safetensors_dtype_name(enum safetensors_dtype dtype);
size_t safetensors_dtype_size(enum safetensors_dtype dtype);

/* All the tensors of a checkpoint directory: model.safetensors, or every shard
 * named by model.safetensors.index.json. A tensor name appears in one file only. */
struct safetensors_checkpoint {
    size_t n_files;
    struct safetensors_file **files;
};

int safetensors_checkpoint_open(const char *dir, struct safetensors_checkpoint **checkpoint);
void safetensors_checkpoint_free(struct safetensors_checkpoint *checkpoint);

const struct safetensors_tensor *
safetensors_checkpoint_find(const struct safetensors_checkpoint *checkpoint, const char *name);

#endif
