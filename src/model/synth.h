/*
 * Synthetic models (`pocketlm synth`, plm_synth): GGUF files with random
 * weights and the exact shapes, metadata and tensor names of real models, so
 * that speed and memory can be measured at real sizes without the real weights.
 *
 * A file is what llama.cpp's convert_hf_to_gguf.py writes for the model's
 * Hugging Face checkpoint (same architecture name, keys, tensor names, shapes,
 * 1-D tensors in F32), with every matrix in the requested type, the vocabulary
 * of a vocab-only GGUF padded to the model's vocabulary size, and weights drawn
 * from a seeded generator (the same seed gives a byte-identical file).
 */
#ifndef PLM_MODEL_SYNTH_H
#define PLM_MODEL_SYNTH_H

#include <stdbool.h>
#include <stdint.h>

/* What differs between the architectures in the files the converter writes. */
enum synth_arch {
    SYNTH_LLAMA, /* "llama": also writes llama.vocab_size and llama.rope.dimension_count */
    SYNTH_QWEN2, /* "qwen2": biases on the q, k and v projections */
    SYNTH_QWEN3, /* "qwen3": RMSNorm of each q and k head (attn_q_norm, attn_k_norm) */
};

/* The published configuration (config.json) of a real model. Every listed
 * model ties its output projection to the token embedding, so no file has
 * output.weight. docs/synth.md gives the source of each figure. */
struct synth_shape {
    const char *name;    /* "smollm2-135m": what `pocketlm synth` is given */
    const char *hf_repo; /* "HuggingFaceTB/SmolLM2-135M": where the figures come from */
    enum synth_arch arch;
    int n_vocab;         /* vocab_size: rows of the token embedding */
    int n_ctx_train;     /* max_position_embeddings */
    int n_embd;          /* hidden_size */
    int n_layer;         /* num_hidden_layers */
    int n_head;          /* num_attention_heads */
    int n_head_kv;       /* num_key_value_heads */
    int head_dim;        /* head_dim, or hidden_size / num_attention_heads */
    bool head_dim_in_config; /* config.json states head_dim: the converter then
                                writes attention.key_length and value_length */
    int n_ff;            /* intermediate_size */
    float rope_freq_base; /* rope_theta */
    float norm_eps;      /* rms_norm_eps */
    /* rope_scaling of type "llama3" (Llama 3.1/3.2), turned into the per-frequency
     * factors of rope_freqs.weight; factor 0 when the model has no rope scaling. */
    struct {
        float factor, low_freq_factor, high_freq_factor;
        int original_context;
    } llama3_rope;
};

/* The shape called name, or NULL. */
const struct synth_shape *synth_find_shape(const char *name);
/* The i-th known shape, NULL past the last. */
const struct synth_shape *synth_shape_at(int i);

#endif
