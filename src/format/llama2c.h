/*
 * llama2.c checkpoints and tokenizers (karpathy/llama2.c, the "legacy" export
 * that run.c reads).
 *
 * Checkpoint layout (little-endian):
 *   7 x int32 header: dim, hidden_dim, n_layers, n_heads, n_kv_heads,
 *                     vocab_size (negative: the classifier is not shared with the
 *                     embedding and is stored at the end), seq_len
 *   f32 tensors, back to back, each row-major [rows][cols], layers stacked:
 *     token_embedding  [vocab][dim]
 *     rms_att          [n_layers][dim]
 *     wq               [n_layers][dim][dim]          (rows: n_heads * head_size)
 *     wk               [n_layers][kv_dim][dim]       kv_dim = n_kv_heads * head_size
 *     wv               [n_layers][kv_dim][dim]
 *     wo               [n_layers][dim][dim]
 *     rms_ffn          [n_layers][dim]
 *     w1               [n_layers][hidden_dim][dim]   (gate)
 *     w2               [n_layers][dim][hidden_dim]   (down)
 *     w3               [n_layers][hidden_dim][dim]   (up)
 *     rms_final        [dim]
 *     freq_cis_real    [seq_len][head_size / 2]      (unused: RoPE is computed)
 *     freq_cis_imag    [seq_len][head_size / 2]      (unused)
 *     wcls             [vocab][dim]                  (only when vocab_size < 0)
 * The file must end exactly there. q/k rows are already in the interleaved RoPE
 * layout GGUF uses, so they need no permutation.
 *
 * Tokenizer layout (tokenizer.bin):
 *   int32 max_token_length
 *   per token: f32 score | int32 len | len bytes of text (no NUL)
 * The token count is not stored: it is the model's vocab_size.
 */
#ifndef PLM_FORMAT_LLAMA2C_H
#define PLM_FORMAT_LLAMA2C_H

#include "core/mapped_file.h"

#include <stdbool.h>
#include <stdint.h>

struct llama2c_config {
    int dim;
    int hidden_dim;
    int n_layers;
    int n_heads;
    int n_kv_heads;
    int vocab_size;  /* always positive here */
    int seq_len;
    bool shared_classifier;
};

/* Pointers into the mapped file; layer tensors are stacked (layer l of wq is at
 * wq + l * dim * dim). */
struct llama2c_weights {
    const float *token_embedding;
    const float *rms_att;
    const float *wq, *wk, *wv, *wo;
    const float *rms_ffn;
    const float *w1, *w2, *w3;
    const float *rms_final;
    const float *wcls; /* == token_embedding when shared */
};

struct llama2c_checkpoint {
    struct mapped_file map;
    struct llama2c_config config;
    struct llama2c_weights weights;
};

/* Maps and validates a checkpoint (header values, and that the file size is
 * exactly what they imply). Failure messages start with the path. */
int llama2c_checkpoint_open(const char *path, struct llama2c_checkpoint *checkpoint);
void llama2c_checkpoint_close(struct llama2c_checkpoint *checkpoint);

struct llama2c_token {
    const char *text; /* into the mapped file: not NUL-terminated */
    int len;
    float score;
};

struct llama2c_vocab {
    struct mapped_file map;
    int max_token_length;
    int n_tokens;
    struct llama2c_token *tokens;
};

/* Reads a tokenizer.bin of exactly n_tokens tokens. */
int llama2c_vocab_open(const char *path, int n_tokens, struct llama2c_vocab *vocab);
void llama2c_vocab_close(struct llama2c_vocab *vocab);

#endif
