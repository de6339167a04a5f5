/*
 * GGUF writer (version 3). Collects metadata and tensors, then writes the file
 * in one pass: header, key/values in insertion order, tensor infos, padding,
 * tensor data each aligned to `general.alignment` (32 unless set).
 * Setting a key twice replaces the earlier value in place.
 */
#ifndef PLM_FORMAT_GGUF_WRITER_H
#define PLM_FORMAT_GGUF_WRITER_H

#include "format/gguf.h"

struct gguf_writer;

struct gguf_writer *gguf_writer_new(void); /* NULL on out of memory */
void gguf_writer_free(struct gguf_writer *writer);

int gguf_writer_set_u32(struct gguf_writer *w, const char *key, uint32_t value);
int gguf_writer_set_i32(struct gguf_writer *w, const char *key, int32_t value);
int gguf_writer_set_u64(struct gguf_writer *w, const char *key, uint64_t value);
int gguf_writer_set_f32(struct gguf_writer *w, const char *key, float value);
int gguf_writer_set_bool(struct gguf_writer *w, const char *key, bool value);
int gguf_writer_set_str(struct gguf_writer *w, const char *key, const char *value);
/* A numeric array (elem_type not STRING/ARRAY); values are copied. */
int gguf_writer_set_array(struct gguf_writer *w, const char *key, enum gguf_value_type elem_type,
                          const void *values, uint64_t count);
/* A string array; lens may be NULL for NUL-terminated strings; strings are copied. */
int gguf_writer_set_str_array(struct gguf_writer *w, const char *key, const char *const *strings,
                              const size_t *lens, uint64_t count);
/* Copies a key/value read from another file (any type, arrays included). */
int gguf_writer_copy_kv(struct gguf_writer *w, const struct gguf_kv *kv);

/* Adds a tensor of the given enum plm_type and shape (ne[0] = row length).
 * data is borrowed and must stay valid until gguf_writer_write returns;
 * its size is derived from the type and shape. */
int gguf_writer_add_tensor(struct gguf_writer *w, const char *name, int type, const int64_t *ne,
                           int n_dims, const void *data);

/* Writes the file (to a temporary name, renamed into place when complete). */
int gguf_writer_write(struct gguf_writer *w, const char *path);

#endif
