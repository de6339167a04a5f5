/*
 * A slow, plain float64 forward pass of the llama / qwen2 / qwen3 decoder, written
 * from the math to check the optimized model code against. Every tensor is
 * dequantized once (with the library's plm_dequantize_row) and widened to
 * double, so for a quantized model the reference runs the very same weights and
 * the only differences left are the engine's float32 arithmetic and its
 * rounding of activations to 8 bits, which REF_ACTIVATIONS_Q8 can imitate.
 *
 * Per position p, with rmsnorm(x) = x / sqrt(mean(x^2) + eps):
 *   x = token_embd[token]
 *   each layer:
 *     h = rmsnorm(x) * attn_norm
 *     q = Wq h (+ bq), k = Wk h (+ bk), v = Wv h (+ bv)        biases: qwen2
 *     q, k = rmsnorm per head * attn_q_norm / attn_k_norm        qwen3
 *     RoPE on each head of q and k at angle p * freq_i,
 *       freq_i = base^(-2i/head_dim) (/ rope_freqs[i] when present), i < head_dim/2,
 *       pairs (2i, 2i+1) for llama, (i, i + head_dim/2) for qwen2/qwen3
 *     head hq attends with kv head hq / (n_head / n_head_kv) over positions 0..p,
 *       softmax(q.k / sqrt(head_dim)) weighting v
 *     x += Wo concat(heads)
 *     h = rmsnorm(x) * ffn_norm
 *     x += Wdown (silu(Wgate h) * (Wup h)),  silu(z) = z / (1 + e^-z)
 *   logits = Wout (rmsnorm(x) * output_norm), Wout = output or token_embd
 */
#ifndef PLM_TEST_REF_FORWARD_H
#define PLM_TEST_REF_FORWARD_H

#include <stdbool.h>
#include <stdint.h>

struct ref_model;

/* Loads a GGUF model file. Fails (PLM_ERR_*, message in plm_last_error())
 * on a missing key or tensor, or a tensor of the wrong shape. */
int ref_model_load(const char *path, struct ref_model **model);
void ref_model_free(struct ref_model *model);
int ref_model_n_vocab(const struct ref_model *model);

/* What a matrix product multiplies its weights with. */
enum ref_activations {
    REF_ACTIVATIONS_EXACT, /* the vector as computed */
    REF_ACTIVATIONS_Q8,    /* for a quantized weight type, the vector rounded to 8 bits in
                              blocks of the type's block size (32 or 256): x -> d round(x / d),
                              d = max|x| / 127, as integer dot-product kernels see it */
};

/* Logits after each of n_tokens tokens at positions 0..n_tokens-1:
 * n_tokens rows of n_vocab doubles. */
int ref_forward(const struct ref_model *model, const int32_t *tokens, int n_tokens,
                enum ref_activations activations, double *logits);

/* The steps with conventions worth testing on their own. */

/* out = x / sqrt(mean(x^2) + eps) * weight (weight NULL: 1). out may be x. */
void ref_rmsnorm(double *out, const double *x, const double *weight, int n, double eps);

/* Rotates one head of head_dim values for position pos. freq_factors (NULL: none)
 * divides the frequency of pair i; neox selects the (i, i + head_dim/2) pairs. */
void ref_rope(double *head, int head_dim, int pos, double freq_base, const double *freq_factors,
              bool neox);

#endif
