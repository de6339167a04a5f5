/*
 * Tiny random-weight models written as GGUF files, for testing the forward pass
 * against the float64 reference (ref_forward.h).
 *
 * A model is built in memory first (every tensor as floats), so a test can edit
 * weights before saving it: permute rows, duplicate heads, zero a bias. Saving
 * encodes the 2-D matrices in the spec's weight type; 1-D tensors (norms,
 * biases, rope factors) stay F32, as llama.cpp's converters write them.
 *
 * Weights are drawn from a per-tensor random stream seeded by (seed, tensor
 * name), so two specs with the same seed give the same values to every tensor
 * they share, whatever their architecture or tensor order.
 *
 * The vocabulary is synthetic and the same for every model: <unk>, <s>, </s>,
 * the 256 byte tokens <0x00>..<0xFF>, then "▁"-words of one letter and common
 * letter pairs (tokenizer.ggml.model "llama", BOS 1, EOS 2).
 */
#ifndef PLM_TEST_TINY_MODEL_H
#define PLM_TEST_TINY_MODEL_H

#include <stdbool.h>
#include <stdint.h>

/* Number of tokens in the synthetic vocabulary. */
#define TINY_N_VOCAB 300

struct tiny_model_spec {
    const char *arch; /* "llama", "qwen2" (q/k/v biases) or "qwen3" (q/k norms) */
    int n_embd;
    int n_ff;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;      /* may differ from n_embd / n_head */
    int n_ctx_train;
    float rope_freq_base;
    float norm_eps;
    bool tied_output;  /* no output.weight: the output projection is token_embd */
    bool rope_freqs;   /* llama 3 style rope_freqs.weight (head_dim/2 frequency divisors) */
    int weight_type;   /* enum plm_type of the 2-D matrices, token_embd included */
    uint64_t seed;
};

struct tiny_tensor {
    char name[64];
    int n_dims;        /* 1 or 2 */
    int64_t ne[2];     /* ne[0] = row length, ne[1] = rows (1 for vectors) */
    int type;          /* enum plm_type written to the file */
    float *values;     /* ne[0] * ne[1] floats, row after row */
};

struct tiny_model {
    struct tiny_model_spec spec;
    int n_tensors;
    struct tiny_tensor *tensors;
};

/* Draws every tensor of the model the spec describes. Fails with PLM_ERR_ARG on
 * inconsistent sizes, including a row length that is not a multiple of the
 * weight type's block size. */
int tiny_model_build(const struct tiny_model_spec *spec, struct tiny_model *model);
void tiny_model_free(struct tiny_model *model);

/* The tensor with that GGUF name, or NULL. */
struct tiny_tensor *tiny_model_tensor(struct tiny_model *model, const char *name);

/* Writes the model (metadata from model->spec, tensors as they are now). */
int tiny_model_save(const struct tiny_model *model, const char *path);

/* Build + save + free. */
int tiny_model_write(const char *path, const struct tiny_model_spec *spec);

#endif
