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

/* Seconds on a monotonic clock (for measuring durations and speeds). */
double plm_seconds_now(void);

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
    bool ignore_eog;              /* never sample end-of-generation tokens (benchmarks) */
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

/* ------------------------------------------------------------ quantization */

/* Re-encodes a GGUF model's weight matrices in other tensor types (metadata,
 * tokenizer and 1-D tensors are copied; general.file_type is updated).
 *
 * `type` is a single tensor type for every matrix ("Q8_0", "Q4_K", "F16", ...)
 * or a named mix in llama.cpp's style ("Q4_K_M": more precise token embedding,
 * output and attention-value tensors); plm_quantize_preset_name lists them.
 * tensor_types are "PATTERN=TYPE" overrides (PATTERN a glob matched against
 * the whole tensor name, e.g. "blk.*.ffn_down.weight=Q6_K"); the last matching
 * one wins. A matrix whose row length is not a multiple of the chosen type's
 * block size falls back to the nearest type that fits, reported through on_note.
 * With imatrix_path (a file written by plm_calibrate) the rounding error is
 * weighted by each input channel's importance. With target_bytes > 0 the types
 * are chosen per tensor so that the file fits in target_bytes with the least
 * measured loss; this needs the sensitivities that plm_calibrate measures
 * (params.sensitivity) in imatrix_path, and `type` and tensor_types then only
 * constrain what the choice may not change (overrides stay fixed).
 * The same input and parameters give a byte-identical file. */
struct plm_quantize_params {
    const char *type;
    const char *const *tensor_types;
    int n_tensor_types;
    const char *imatrix_path;
    uint64_t target_bytes;
    int n_threads;
    void (*on_note)(void *user, const char *note); /* one-line notes, or NULL */
    void *user;
};
int plm_quantize(const char *in_path, const char *out_path, const struct plm_quantize_params *params);
/* The i-th named mix ("Q4_K_M", ...) or single type plm_quantize accepts, NULL
 * past the last; *description (may be NULL) receives a one-line summary. */
const char *plm_quantize_preset_name(int i, const char **description);

/* Calibration: runs the model over sample text and writes an importance matrix
 * (GGUF, llama.cpp's imatrix layout: for each matrix `NAME.in_sum2`, the sum over
 * tokens of each input channel's squared activation, and `NAME.counts`, the
 * number of tokens) to out_path. With sensitivity set it also measures, for
 * every matrix and candidate type, the mean KL divergence of the model's
 * next-token distribution when only that matrix is quantized (with the
 * importance), which plm_quantize's target_bytes uses; this costs one
 * evaluation of the text per matrix and type. */
struct plm_calibrate_params {
    const int32_t *tokens; /* the text tokenized with BOS */
    int n_tokens;
    int n_ctx;             /* chunk length; the text is cut into n_tokens / n_ctx chunks */
    int max_chunks;        /* 0 = all */
    bool sensitivity;
    int n_threads;
    void (*on_progress)(void *user, const char *what, int done, int total); /* or NULL */
    /* Called once per matrix written, in file order, with its sensitivities:
     * kld[i] for candidate type_names[i] (n_types 0 without sensitivity). Or NULL. */
    void (*on_matrix)(void *user, const char *tensor_name, const char *const *type_names,
                      const float *kld, int n_types);
    void *user;
};
int plm_calibrate(plm_model *model, const struct plm_calibrate_params *params, const char *out_path);

/* -------------------------------------------------------------------- gap */

/* How far a compressed model's predictions are from a reference model's on
 * the same text. The reference pass stores, for every scored position, the
 * reference's log-probabilities of all tokens (F32) together with the tokens
 * and the chunking, so it is computed once and reused (`gap --save-ref`).
 * Chunking and scored positions are plm_perplexity's: chunks of n_ctx tokens
 * starting with BOS, positions n_ctx/2+1 .. n_ctx-1 scored. */
int plm_gap_save_reference(plm_session *session, const int32_t *tokens, int n_tokens, int n_ctx,
                           int max_chunks, const char *path,
                           void (*on_progress)(void *user, int done, int total), void *user);

struct plm_gap_metrics {
    int n_chunks;
    int n_scored;
    int n_ctx;
    double ppl;             /* of the model evaluated */
    double ref_ppl;         /* of the reference, from the stored log-probabilities */
    double ppl_ratio;       /* ppl / ref_ppl */
    double kld_mean;        /* mean over positions of KL(reference || model), nats */
    double kld_median;
    double kld_p99;         /* 99th percentile */
    double kld_max;
    double top1_agreement;  /* share of positions whose most likely token is the same, 0..1 */
    double dp_mean;         /* mean of p_model(correct) - p_ref(correct) */
    double dp_rms;          /* root mean square of the same */
};
/* Evaluates the session's model on the stored reference's chunks. Fails with
 * PLM_ERR_ARG if the vocabularies' sizes differ or the context is too small. */
int plm_gap_compare(plm_session *session, const char *reference_path,
                    void (*on_progress)(void *user, int done, int total), void *user,
                    struct plm_gap_metrics *metrics);

/* ----------------------------------------------------------------- devices */

/* A device an on-device model must fit, from a profile file (JSON; NULL = the
 * profiles built into the library, docs/devices.md lists them with sources). */
struct plm_device {
    const char *id;           /* "pixel-8" */
    const char *name;         /* "Google Pixel 8" */
    uint64_t ram_bytes;       /* installed memory */
    uint64_t app_memory_bytes;/* what one app may use before the OS stops it */
    double bandwidth;         /* peak memory read bandwidth, bytes/s */
    const char *source;       /* where the figures come from */
    const char *soc;          /* "Google Tensor G3", or "" */
    const char *memory_type;  /* "LPDDR5X-8533, 64-bit", or "" */
    const char *notes;        /* caveats, or "" */
};
typedef struct plm_device_list plm_device_list;
int plm_devices_load(const char *path, plm_device_list **devices);
void plm_devices_free(plm_device_list *devices);
int plm_devices_count(const plm_device_list *devices);
const struct plm_device *plm_devices_get(const plm_device_list *devices, int i);
/* By id, case-insensitive; NULL (with a message listing the known ids) if none. */
const struct plm_device *plm_devices_find(const plm_device_list *devices, const char *id);

/* Whether a model with a session of the given parameters fits a device: the
 * resident memory it needs (the weights, which every token reads, plus
 * plm_session_memory_needed) against the device's app memory, and the decode
 * speed the device's bandwidth allows (bandwidth / bytes read per token at the
 * middle of the context, KV cache in params->kv_type: an upper bound).
 * params->n_ctx 0 means the model's training context. */
struct plm_device_fit {
    uint64_t memory_needed;
    bool fits;
    double max_tokens_per_s;
};
void plm_device_fit(const struct plm_device *device, const plm_model *model,
                    const struct plm_session_params *params, struct plm_device_fit *fit);

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

/* ------------------------------------------------------------------ server */

/* An OpenAI-compatible HTTP server (docs/server.md): POST /v1/chat/completions
 * and /v1/completions (streamed as server-sent events on request), GET
 * /v1/models, /health and /metrics. n_parallel slots, each with its own
 * session, generate at once; further requests wait in a queue of max_queue.
 * The strings must outlive the server. */
struct plm_server_params {
    const char *host;          /* address to bind; NULL = "127.0.0.1" */
    int port;                  /* 0 = a free port, see plm_server_port */
    const char *api_key;       /* NULL = none; else "Authorization: Bearer KEY" on /v1/ */
    const char *model_name;    /* the model's id in /v1/models and in responses */
    const char *chat_template; /* NULL = the model's (see plm_chat_render) */
    int n_parallel;            /* slots (>= 1) */
    int max_queue;             /* requests that may wait for a slot (>= 0); beyond, 503 */
    size_t max_body;           /* largest request body in bytes; beyond, 413 */
    struct plm_session_params session; /* of each slot */
};

typedef struct plm_server plm_server;

/* Creates the slots and starts listening; requests are served from threads of
 * the server's own until plm_server_stop. */
int plm_server_start(plm_model *model, const struct plm_server_params *params, plm_server **server);
/* The port listened on (the one chosen when params.port was 0). */
int plm_server_port(const plm_server *server);
/* Stops accepting connections, lets the requests under way (and queued) finish
 * for up to grace_seconds, cancels the rest, and frees the server. Returns how
 * many requests had to be cancelled. */
int plm_server_stop(plm_server *server, double grace_seconds);

#ifdef __cplusplus
}
#endif

#endif
