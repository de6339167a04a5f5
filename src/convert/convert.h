/*
 * Importers that turn other checkpoint formats into GGUF (`pocketlm convert`):
 *   convert.c          plm_convert (picks the importer) and the tensor helpers below
 *   convert_hf.c       Hugging Face directories: config.json + safetensors
 *   hf_tokenizer.c     tokenizer.json (+ tokenizer_config.json) -> tokenizer.* metadata
 *   convert_llama2c.c  llama2.c checkpoints + tokenizer.bin
 *
 * Tensors are streamed: the GGUF writer borrows each tensor's data until the file
 * is written. Data already in the output type and layout is borrowed straight
 * from the memory-mapped source; anything converted or reordered goes to a buffer
 * owned by struct convert_out, so memory stays about one model in size.
 */
#ifndef PLM_CONVERT_CONVERT_H
#define PLM_CONVERT_CONVERT_H

#include "format/gguf_writer.h"

#include <cjson/cJSON.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* GGUF token types (tokenizer.ggml.token_type). */
enum gguf_token_type {
    GGUF_TOKEN_NORMAL = 1,
    GGUF_TOKEN_UNKNOWN = 2,
    GGUF_TOKEN_CONTROL = 3,
    GGUF_TOKEN_USER_DEFINED = 4,
    GGUF_TOKEN_UNUSED = 5,
    GGUF_TOKEN_BYTE = 6,
};

/* "<0xAB>" (two upper-case hex digits): SentencePiece's byte-fallback tokens. */
bool convert_is_byte_token(const char *text, size_t len);

/* The file being built and the buffers its tensors borrow. */
struct convert_out {
    struct gguf_writer *writer;
    int matrix_type; /* enum plm_type of 2-D tensors: F32, F16 or BF16; 1-D stay F32 */
    void **buffers;
    size_t n_buffers;
};

int convert_out_init(struct convert_out *out, int matrix_type);
void convert_out_free(struct convert_out *out);

/* A zeroed buffer that lives until convert_out_free; NULL (message set) when out of memory. */
void *convert_alloc(struct convert_out *out, size_t size);

/* Adds a tensor of shape ne[0..n_dims) (ne[0] = row length) whose source holds
 * rows of src_type (F32, F16 or BF16, possibly unaligned). 1-D tensors are
 * written as F32, others as out->matrix_type.
 * rope_heads > 0 reorders rows from the rotate-half RoPE layout of Hugging Face
 * checkpoints to the interleaved one of GGUF's llama, within each of rope_heads
 * heads (for a 1-D tensor, a bias, each element is a row). */
int convert_add_tensor(struct convert_out *out, const char *name, int src_type, const void *src,
                       const int64_t *ne, int n_dims, int rope_heads);

/* Sets general.file_type (llama_ftype numbering) from out->matrix_type. */
int convert_set_file_type(struct convert_out *out);

/* Parses dir/file. A missing file is PLM_ERR_IO when required, else *json = NULL. */
int convert_read_json(const char *dir, const char *file, bool required, cJSON **json);

/* out_type is an enum plm_type, or -1 to keep the checkpoint's own precision. */
int convert_hf(const char *dir, const char *out_path, int out_type);
int convert_llama2c(const char *path, const char *vocab_path, const char *out_path, int out_type);

/* Writes the tokenizer.* metadata from dir/tokenizer.json and, when present,
 * dir/tokenizer_config.json (special tokens, add_bos/add_eos, chat template).
 * config is the parsed config.json (fallback special token ids). The vocabulary
 * is padded with unused "[PADn]" tokens to n_vocab, the embedding's row count. */
int hf_tokenizer_convert(const char *dir, const cJSON *config, int n_vocab,
                         struct gguf_writer *writer);

#endif
