/*
 * A loaded model: hyperparameters read from GGUF metadata and weight matrices
 * that point into the memory-mapped file.
 *
 * The three supported architectures share one decoder-only transformer:
 *   llama  (Llama 2/3, TinyLlama, SmolLM, Mistral): RMSNorm, RoPE on interleaved
 *          pairs, grouped-query attention, SwiGLU feed-forward; Llama 3.x rope
 *          scaling arrives as per-frequency factors in `rope_freqs.weight`.
 *   qwen2  as llama, plus biases on the q/k/v projections; RoPE on halves (NEOX).
 *   qwen3  as qwen2 without biases, plus RMSNorm of each q and k head before RoPE.
 */
#ifndef PLM_MODEL_MODEL_H
#define PLM_MODEL_MODEL_H

#include "format/gguf.h"
#include "pocketlm.h"
#include "kernels/matmul.h"
#include "tokenizer/vocab.h"

#include <pthread.h>
#include <stdbool.h>

enum plm_arch {
    PLM_ARCH_LLAMA,
    PLM_ARCH_QWEN2,
    PLM_ARCH_QWEN3,
};

struct plm_hparams {
    int n_vocab;
    int n_ctx_train;
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;
    int n_ff;
    float rope_freq_base;
    float norm_eps;
    bool rope_neox; /* rotate (i, i + head_dim/2) pairs instead of (2i, 2i+1) */
};

struct plm_layer {
    const float *attn_norm;         /* [n_embd] */
    struct plm_matrix wq, wk, wv;   /* n_embd -> n_head*head_dim, n_head_kv*head_dim */
    const float *bq, *bk, *bv;      /* qwen2 biases, else NULL */
    const float *q_norm, *k_norm;   /* qwen3 per-head norms [head_dim], else NULL */
    struct plm_matrix wo;           /* n_head*head_dim -> n_embd */
    const float *ffn_norm;          /* [n_embd] */
    struct plm_matrix w_gate, w_up; /* n_embd -> n_ff */
    struct plm_matrix w_down;       /* n_ff -> n_embd */
};

struct plm_model {
    struct gguf_file *gguf;
    struct plm_vocab *vocab;
    enum plm_arch arch;
    const char *arch_name;
    char *name;
    char *chat_template;  /* NULL when the file has none */
    char *tokenizer_model;
    char *pre_tokenizer;
    struct plm_hparams hp;

    struct plm_matrix token_embd;   /* n_vocab rows of n_embd */
    const float *output_norm;       /* [n_embd] */
    struct plm_matrix output;       /* n_embd -> n_vocab (token_embd when tied) */
    const float *rope_freq_factors; /* [head_dim/2] or NULL */
    struct plm_layer *layers;

    /* 1-D weights stored in a type other than F32 are expanded here. */
    float **owned_vectors;
    int n_owned_vectors;

    /* This struct, its strings, layers and expanded vectors; the vocabulary and
     * the parsed file count their own. */
    uint64_t heap_bytes;
    /* The packed copies of matrices (pack_weights.c), in one allocation,
     * made by the first session (commands that only read the model, such as
     * info, never pay for them); what they hold beyond the mapped bytes they
     * replace (each one's padding to whole groups of rows and to 64 bytes),
     * known from the load on. */
    void *packed_arena;
    uint64_t packed_padding;
    bool packing_done;
    pthread_mutex_t packing_lock;
};

/* Pointers to every weight matrix of the model: token_embd, output (the same
 * data as token_embd when tied), then each layer's wq, wk, wv, wo, w_gate,
 * w_up, w_down. Writes at most max and returns how many there are. */
int model_matrices(struct plm_model *m, struct plm_matrix **out, int max);

/* Weight packing (pack_weights.c): model_plan_packing sets packed_padding at
 * load; model_pack_weights repacks the matrices of the products for this
 * CPU's kernels where they have a packed layout, once (later calls, from any
 * thread, return at once); model_free_packed frees the copies. */
void model_plan_packing(struct plm_model *m);
void model_pack_weights(struct plm_model *m);
void model_free_packed(struct plm_model *m);

/* Bounds that reject absurd metadata before anything is allocated. */
#define PLM_MAX_EMBD 65536
#define PLM_MAX_LAYERS 512
#define PLM_MAX_HEADS 1024
#define PLM_MAX_HEAD_DIM 1024
#define PLM_MAX_FF (1 << 20)
#define PLM_MAX_CTX (1 << 24)

#endif
