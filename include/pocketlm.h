/*
 * pocketlm: an open C runtime for on-device language models.
 *
 * This is the whole public API. Programs (the `pocketlm` CLI, the server, the
 * tests) use only what is declared here or in clearly internal headers.
 *
 * Conventions
 *   - Fallible functions return int: PLM_OK (0) or a negative plm_status, and
 *     leave a one-line message in plm_last_error() (thread-local).
 *   - Objects are opaque; *_free(NULL) is a no-op.
 *   - Text is UTF-8, passed with an explicit length where it may contain NULs.
 *   - A model is read-only after loading and can be shared by several sessions;
 *     a session (KV cache + scratch) belongs to one thread at a time.
 */
#ifndef POCKETLM_H
#define POCKETLM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define PLM_VERSION "0.1.0"

enum plm_status {
    PLM_OK = 0,
    PLM_ERR_IO = -1,           /* a file could not be opened, read or written */
    PLM_ERR_FORMAT = -2,       /* malformed input: a model file, a checkpoint, JSON */
    PLM_ERR_UNSUPPORTED = -3,  /* well-formed but not supported: architecture, tensor type */
    PLM_ERR_NOMEM = -4,        /* allocation failed */
    PLM_ERR_ARG = -5,          /* bad argument from the caller */
    PLM_ERR_CONTEXT_FULL = -6, /* the tokens do not fit the session's context */
    PLM_ERR_LIMIT = -7,        /* a size limit (memory budget, metadata sanity bound) */
};

/* The message of the last failure on this thread ("" if none). */
const char *plm_last_error(void);

/* ------------------------------------------------------------------ models */

typedef struct plm_model plm_model;

/* Loads a GGUF file (weights are memory-mapped and used in place). */
int plm_model_load(const char *path, plm_model **model);
void plm_model_free(plm_model *model);

struct plm_model_info {
    const char *architecture; /* "llama", "qwen2", "qwen3" */
    const char *name;         /* general.name, or "" */
    int n_vocab;
    int n_ctx_train;  /* context length the model was trained with */
    int n_embd;
    int n_layer;
    int n_head;
    int n_head_kv;
    int head_dim;
    int n_ff;
    float rope_freq_base;
    float norm_eps;
    uint64_t n_params;     /* number of weights */
    uint64_t weight_bytes; /* bytes of tensor data */
    const char *chat_template; /* tokenizer.chat_template, or NULL */
    const char *tokenizer;     /* tokenizer.ggml.model: "llama" or "gpt2" */
    const char *pre_tokenizer; /* tokenizer.ggml.pre, or "default" */
};
void plm_model_get_info(const plm_model *model, struct plm_model_info *info);

/* Per-tensor-type totals, for `pocketlm info`. */
struct plm_type_stat {
    const char *type_name; /* "Q4_K", "F32", ... */
    int n_tensors;
    uint64_t n_elements;
    uint64_t bytes;
};
/* Fills up to max entries, returns how many types the model uses. */
int plm_model_type_stats(const plm_model *model, struct plm_type_stat *stats, int max);


/* -------------------------------------------------------------- tokenizer */

int32_t plm_token_bos(const plm_model *model); /* -1 if the vocabulary has none */
int32_t plm_token_eos(const plm_model *model);
bool plm_token_is_eog(const plm_model *model, int32_t token); /* EOS, EOT, <|im_end|>, ... */
bool plm_add_bos(const plm_model *model); /* whether prompts start with BOS */

/* Tokenizes text. add_special adds BOS/EOS as the model's flags ask;
 * parse_special lets special-token text such as "<|im_start|>" become that token.
 * Writes at most max_tokens ids and returns the number the text needs
 * (call again with a larger buffer when the result exceeds max_tokens),
 * or a negative plm_status. */
int plm_tokenize(const plm_model *model, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t *tokens, int max_tokens);

/* The bytes of one token as the decoder would print them (byte tokens give their
 * byte, "▁" becomes a space). Control tokens give "" unless render_special.
 * Writes at most size bytes and returns the length the piece needs, or a negative
 * plm_status for an id outside the vocabulary. Not NUL-terminated. */
int plm_token_to_piece(const plm_model *model, int32_t token, char *buf, size_t size,
                       bool render_special);

/* ---------------------------------------------------------------- sessions */

typedef struct plm_session plm_session;

/* How the KV cache stores keys and values. F16 halves its size; Q8_0 (8-bit
 * blocks of 32 with a scale) nearly quarters it, and needs a head size that is
 * a multiple of 32. */
enum plm_kv_type {
    PLM_KV_F32 = 0,
    PLM_KV_F16,
    PLM_KV_Q8_0,
};

struct plm_session_params {
    int n_ctx;     /* positions in the KV cache; 0 = the model's training context */
    int n_threads; /* 0 = all cores */
    enum plm_kv_type kv_type;
};

/* Bytes of memory a session needs beyond the mapped weights (KV cache,
 * activations, logits), and the largest context that fits within `budget`
 * bytes together with the weights (0 when not even one position fits). */
uint64_t plm_session_memory_needed(const plm_model *model, const struct plm_session_params *params);
int plm_session_max_ctx(const plm_model *model, const struct plm_session_params *params, uint64_t budget);

int plm_session_new(plm_model *model, const struct plm_session_params *params,
                    plm_session **session);
void plm_session_free(plm_session *session);

int plm_session_n_ctx(const plm_session *session);
int plm_session_n_past(const plm_session *session); /* positions already in the cache */
/* Forgets cached positions from n_keep on (0 clears the cache). */
void plm_session_truncate(plm_session *session, int n_keep);

/* Runs the model over n_tokens tokens at positions n_past.. and appends them to
 * the cache. If logits is not NULL it receives n_tokens rows of n_vocab floats
 * (the next-token logits after each token); the last row is always kept and
 * available from plm_session_logits(). Fails with PLM_ERR_CONTEXT_FULL, leaving
 * the cache untouched, when the tokens do not fit. */
int plm_decode(plm_session *session, const int32_t *tokens, int n_tokens, float *logits);
const float *plm_session_logits(const plm_session *session);

/* ---------------------------------------------------------------- sampling */

struct plm_sampler_params {
    float temperature;    /* 0 = greedy */
    int top_k;            /* 0 = off */
    float top_p;          /* 1 = off */
    float min_p;          /* 0 = off */
    float repeat_penalty; /* 1 = off */
    int repeat_last_n;    /* how many recent tokens the penalty looks at */
    uint64_t seed;
};
/* llama.cpp's defaults: temp 0.8, top-k 40, top-p 0.95, min-p 0.05,
 * repeat penalty 1.0 over the last 64 tokens, a seed from the clock. */
void plm_sampler_params_default(struct plm_sampler_params *params);

typedef struct plm_sampler plm_sampler;
int plm_sampler_new(const struct plm_sampler_params *params, int n_vocab, plm_sampler **sampler);
void plm_sampler_free(plm_sampler *sampler);
/* Picks the next token from logits (not modified). Same seed, same logits,
 * same history -> same token. Returns a negative plm_status when no logit is
 * finite. */
int32_t plm_sampler_sample(plm_sampler *sampler, const float *logits);
/* Records a token (prompt or generated) in the repetition-penalty history. */
void plm_sampler_accept(plm_sampler *sampler, int32_t token);
void plm_sampler_reset(plm_sampler *sampler);

/* -------------------------------------------------------------- generation */

enum plm_stop_reason {
    PLM_STOP_LENGTH = 0, /* n_predict tokens were generated */
    PLM_STOP_EOG,        /* the model produced an end-of-generation token */
    PLM_STOP_STRING,     /* a user stop string appeared */
    PLM_STOP_CONTEXT,    /* the context is full */
    PLM_STOP_CALLBACK,   /* the callback asked to stop */
};

struct plm_generate_params {
    int n_predict;                /* -1 = until EOG or the context is full */
    const char *const *stop;      /* stop strings (not printed) */
    int n_stop;
};

struct plm_generate_result {
    enum plm_stop_reason stop_reason;
    int n_prompt;        /* prompt tokens decoded */
    int n_generated;     /* tokens sampled */
    double prompt_seconds;
    double generate_seconds;
};

/* Called with each piece of generated text as soon as it can no longer be part
 * of a stop string. Return false to stop generating. */
typedef bool (*plm_text_callback)(void *user, const char *text, size_t len);

/* Decodes the prompt (appended to what the session holds), then samples until a
 * stop condition, streaming text through on_text. */
int plm_generate(plm_session *session, plm_sampler *sampler, const int32_t *prompt, int n_prompt,
                 const struct plm_generate_params *params, plm_text_callback on_text, void *user,
                 struct plm_generate_result *result);

/* -------------------------------------------------------------------- chat */

struct plm_chat_message {
    const char *role; /* "system", "user" or "assistant" */
    const char *content;
};

/* Renders messages with the model's chat template (tokenizer.chat_template,
 * recognised by family: ChatML, Llama 3, Llama 2, Gemma, ...), or with
 * template_name ("chatml", "llama3", "llama2", "gemma", ...) when not NULL.
 * add_assistant ends the text with the header of an assistant turn.
 * *text is malloc'd and NUL-terminated. */
int plm_chat_render(const plm_model *model, const char *template_name,
                    const struct plm_chat_message *messages, int n_messages, bool add_assistant,
                    char **text);

/* ------------------------------------------------------------- evaluation */

struct plm_perplexity_result {
    double ppl;
    double nll_mean;   /* mean negative log-likelihood per scored token (nats) */
    double nll_stderr; /* standard error of nll_mean */
    int n_chunks;
    int n_scored;      /* tokens scored */
};

/* Perplexity as llama.cpp's `perplexity` tool computes it, so figures compare:
 * the tokens (normally the whole text tokenized with BOS) are cut into
 * n_tokens / n_ctx chunks of n_ctx tokens (a partial last chunk is dropped), the
 * first token of each chunk replaced by BOS. Each chunk is decoded from an empty
 * cache; the first half is context only, and the tokens at chunk positions
 * n_ctx/2 + 1 .. n_ctx - 1 are scored, each from the logits of the position
 * before it. ppl = exp(mean negative log-likelihood over all scored tokens).
 * progress (may be NULL) is called after each chunk with the running result. */
int plm_perplexity(plm_session *session, const int32_t *tokens, int n_tokens, int n_ctx,
                   void (*progress)(void *user, const struct plm_perplexity_result *so_far),
                   void *user, struct plm_perplexity_result *result);

/* -------------------------------------------------------------- conversion */

/* Converts a Hugging Face checkpoint directory (config.json, *.safetensors,
 * tokenizer.json) or a llama2.c checkpoint file to GGUF. vocab is the llama2.c
 * tokenizer.bin (NULL: tokenizer.bin beside the checkpoint); outtype is
 * "f32", "f16" or "bf16" (NULL: f32, or the checkpoint's own 16-bit type). */
int plm_convert(const char *src, const char *out_path, const char *vocab, const char *outtype);

/* ------------------------------------------------------------ benchmarking */

/* What one generated token costs at the given context position: the bytes of
 * weights and KV cache it reads (every matrix once; one row of the embedding)
 * and the floating-point operations it needs (a multiply-add counts as 2). */
struct plm_token_cost {
    uint64_t weight_bytes;
    uint64_t kv_bytes;
    uint64_t flops;
    bool quantized; /* most weight bytes are in block-quantized (integer) types */
};
void plm_model_token_cost(const plm_model *model, int position, struct plm_token_cost *cost);

/* This machine's limits, measured now (each takes about a quarter second):
 * read bandwidth of main memory in bytes/s, and the peak rate of float and of
 * 8-bit integer multiply-adds in operations/s (2 per multiply-add), with
 * n_threads threads, using the widest vector instructions the kernels use. */
double plm_measure_read_bandwidth(int n_threads);
double plm_measure_peak_float_ops(int n_threads);
double plm_measure_peak_int8_ops(int n_threads);

/* -------------------------------------------------------- synthetic models */

/* Writes a GGUF file with random weights and the exact shape, metadata and
 * tensor names of a real model (what llama.cpp's converter writes for it), to
 * measure speed and memory at real sizes. Matrices are in `type` (1-D tensors
 * F32; rows that are not whole k-quant blocks fall back as llama.cpp does,
 * reported through on_note); the same parameters give a byte-identical file.
 * Fails with PLM_ERR_ARG for an unknown shape or type or a bad layer count. */
struct plm_synth_params {
    const char *shape;      /* a name from plm_synth_shape_name: "qwen2.5-0.5b", ... */
    const char *type;       /* matrix type: "F32", "F16", "BF16", "Q8_0", "Q4_K", ... */
    const char *vocab_path; /* vocab-only GGUF whose tokenizer.* keys are copied (padded
                               to the model's vocabulary size); NULL: a byte vocabulary */
    uint64_t seed;
    int n_layer;            /* 0 = the real model's; fewer for quick tests */
    void (*on_note)(void *user, const char *note); /* one-line notes, or NULL */
    void *user;
};
int plm_synth(const struct plm_synth_params *params, const char *out_path);
/* The i-th known shape ("smollm2-135m", ...), NULL past the last. */
const char *plm_synth_shape_name(int i);

#ifdef __cplusplus
}
#endif

#endif
