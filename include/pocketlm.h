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
    uint64_t host_bytes;   /* the rest the model keeps resident: the loader's heap (vocabulary,
                            * merge and lookup tables, tensor table), the file's metadata and
                            * the padding of weights repacked for the kernels */
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
 * bytes together with the model (weight_bytes + host_bytes; 0 when not even
 * one position fits). */
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

/* Decodes one token for each of n sessions of the same model in one forward
 * pass, reading each weight matrix once for all of them: tokens[i] goes to
 * sessions[i] at that session's own position, and afterwards
 * plm_session_logits(sessions[i]) holds its next-token logits, as after
 * plm_decode(sessions[i], &tokens[i], 1, NULL) (up to float rounding). The
 * pass runs on sessions[0]'s threads and scratch, and calls its calibration
 * hook with all n rows. Takes 1..PLM_DECODE_SESSIONS_MAX distinct sessions.
 * Fails, changing no session,
 * with PLM_ERR_ARG (n out of range, a session given twice or of another model,
 * a token outside the vocabulary), PLM_ERR_CONTEXT_FULL (a session's context
 * is full) or PLM_ERR_NOMEM. */
#define PLM_DECODE_SESSIONS_MAX 64
int plm_decode_sessions(plm_session *const *sessions, const int32_t *tokens, int n);

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
    /* Called with each sampled token (end-of-generation ones too) and the
     * logits it was sampled from, before its text; the `user` of on_text.
     * Return false to stop (PLM_STOP_CALLBACK). May be NULL. */
    bool (*on_token)(void *user, int32_t token, const float *logits);
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
 * resident memory it needs (the weights, which every token reads, the model's
 * host_bytes and plm_session_memory_needed) against the device's app memory,
 * and the decode speed the device's bandwidth allows (bandwidth / bytes read
 * per token at the middle of the context, KV cache in params->kv_type: an
 * upper bound).
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
 * and the floating-point operations it needs (a multiply-add counts as 2), of
 * which output_flops are the output product's. A prompt's tokens skip that
 * product but for the last one, whose logits are the prompt's. */
struct plm_token_cost {
    uint64_t weight_bytes;
    uint64_t kv_bytes;
    uint64_t flops;
    uint64_t output_flops;
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
    /* Escalation (docs/escalation.md): NULL policy = every request on the
     * device. With a policy, audit must be open: every request sent upstream
     * is recorded there first. Both must outlive the server. */
    const struct plm_policy *policy;
    struct plm_audit *audit;
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

/* --------------------------------------------------------------- audit log */

/* The record of every request that leaves the device (docs/audit.md): an
 * SQLite database, one entry per request written and committed before the
 * request is sent, one more after its response, each entry holding the hash of
 * the one before so that an edit, a deletion or a reordering shows. Escalation:
 *     plm_audit_begin(audit, &request, &id);    committed, then send
 *     plm_audit_finish(audit, id, &result);     after the response or failure
 * A handle may be shared by threads, and several processes may append to one
 * file. When POCKETLM_AUDIT_KEY is set, a new log's hashes are HMAC-SHA-256
 * with that key, so that they cannot be forged without it. */
typedef struct plm_audit plm_audit;

/* $POCKETLM_HOME/audit.db, else $XDG_DATA_HOME/pocketlm/audit.db, else
 * $HOME/.local/share/pocketlm/audit.db. PLM_ERR_LIMIT if it does not fit. */
int plm_audit_default_path(char *path, size_t capacity);

/* Opens the log at path, creating the file (mode 0600) and its directory. */
int plm_audit_open(const char *path, plm_audit **audit);
/* Opens an existing log; a missing file or one that is not an audit log is an error. */
int plm_audit_open_existing(const char *path, plm_audit **audit);
void plm_audit_close(plm_audit *audit);

/* What an audit entry says was redacted from a request: a type ("email",
 * "api-key"; letters, digits, '-', '_', '.') and how many. Never the values. */
struct plm_audit_redaction {
    const char *type;
    int count;
};

/* A request about to be sent. Text is UTF-8. */
struct plm_audit_request {
    const char *upstream;     /* the upstream's configured name */
    const char *url;          /* its URL: only the host[:port] is stored */
    const char *rule;         /* the routing rule that escalated */
    const char *reason;       /* why it escalated, or NULL */
    const char *head;         /* request line and headers as sent ("POST /v1/... HTTP/1.1\r\n..."),
                                 or NULL; secrets in them are stored as "[KEY]" */
    const void *body;         /* the request body exactly as sent */
    size_t body_len;
    const struct plm_audit_redaction *redactions;
    int n_redactions;
};

/* Records the request and commits it; *id identifies it for plm_audit_finish.
 * The request must not be sent if this fails. */
int plm_audit_begin(plm_audit *audit, const struct plm_audit_request *request, int64_t *id);

enum plm_audit_outcome {
    PLM_AUDIT_OK,             /* the upstream answered and its answer was used */
    PLM_AUDIT_UPSTREAM_ERROR, /* the upstream failed, and the client was told */
    PLM_AUDIT_FALLBACK,       /* the upstream failed, and the device answered instead */
    PLM_AUDIT_CANCELLED,      /* the client went away or the server stopped */
};

/* How the request ended. */
struct plm_audit_result {
    int http_status;      /* 0 when no HTTP response came */
    const char *error;    /* the transport error ("connection refused"), or NULL */
    uint64_t bytes_sent;  /* on the wire, as the HTTP client counted them */
    uint64_t bytes_received;
    double duration_s;
    enum plm_audit_outcome outcome;
};

/* Records the end of request id (once per request). */
int plm_audit_finish(plm_audit *audit, int64_t id, const struct plm_audit_result *result);

/* One entry of the chain as stored. Pointers are valid during the callback. */
struct plm_audit_entry {
    int64_t seq;       /* 1, 2, 3, ... in chain order; a request's seq is its id */
    const char *kind;  /* "request" or "completion" */
    const char *time;  /* UTC, "2025-01-31T12:00:00.123Z" */
    /* kind "request" (else NULL / 0): */
    const char *upstream, *host, *rule, *reason;
    const uint8_t *head; /* request line and headers, secrets masked */
    size_t head_len;
    const uint8_t *body;
    size_t body_len;
    const char *redactions; /* JSON object: {"email": 2, ...} */
    /* kind "completion" (else 0 / NULL): */
    int64_t request_seq;
    int64_t http_status; /* 0: none */
    const char *error;   /* "" when none */
    int64_t bytes_sent, bytes_received, duration_ms;
    const char *outcome; /* "ok", "upstream-error", "fallback-to-device", "cancelled" */
    const char *prev_hash, *hash; /* 64 hex digits */
};

/* Every entry from seq first_seq on, in chain order; a callback returning
 * false stops the walk. The callbacks of the reading functions run under the
 * handle's lock and must not call plm_audit functions on the same handle. */
int plm_audit_entries(plm_audit *audit, int64_t first_seq,
                      bool (*on_entry)(void *user, const struct plm_audit_entry *entry), void *user);

/* Which requests plm_audit_requests reports (zero: all). */
struct plm_audit_filter {
    int64_t id;           /* only this request (or the request that entry completes) */
    const char *since;    /* only requests at or after this UTC time ("2025-01-31", "2025-01-31T12:00") */
    const char *upstream; /* only requests to this upstream */
};

/* The requests that match, oldest first, each with its completion (NULL while
 * unfinished, or when the process died before it finished). */
int plm_audit_requests(plm_audit *audit, const struct plm_audit_filter *filter,
                       bool (*on_request)(void *user, const struct plm_audit_entry *request,
                                          const struct plm_audit_entry *completion),
                       void *user);

/* The chain's head, as kept beside the entries. */
struct plm_audit_head {
    int64_t n_entries;
    char hash[65];         /* the last entry's hash (the genesis value when empty) */
    const char *hash_kind; /* "sha256" or "hmac-sha256" */
    int schema_version;
};
int plm_audit_get_head(plm_audit *audit, struct plm_audit_head *head);

/* What plm_audit_verify found. */
struct plm_audit_verdict {
    bool intact;
    int64_t n_entries, n_requests, n_completions;
    int64_t first_bad_seq; /* when not intact: the first entry that is wrong or missing */
    char problem[256];     /* when not intact: what is wrong with it */
    char head_hash[65];    /* the last entry's hash */
};

/* Checks the whole chain: every entry's hash, its link to the one before,
 * numbering, the completions' requests, and the head. Returns PLM_OK with the
 * verdict (broken or not), or an error when the log cannot be read. */
int plm_audit_verify(plm_audit *audit, struct plm_audit_verdict *verdict);

/* -------------------------------------------------------------- escalation */

/* Upstreams: larger models a request may be escalated to, named in a policy
 * file (JSON, docs/escalation.md) together with the rules that decide when. */
enum plm_upstream_kind {
    PLM_UPSTREAM_OPENAI = 0, /* POST {base_url}/chat/completions (OpenAI, vLLM, llama.cpp, Ollama, pocketlm serve) */
    PLM_UPSTREAM_ANTHROPIC,  /* POST {base_url}/v1/messages */
    PLM_UPSTREAM_GEMINI,     /* POST {base_url}/models/{model}:generateContent */
};

/* Whether the user agrees to send a request to an upstream. */
enum plm_consent {
    PLM_CONSENT_NEVER = 0, /* nothing is ever sent there */
    PLM_CONSENT_ASK,       /* the user is asked each time */
    PLM_CONSENT_ALWAYS,    /* agreed in advance */
};

struct plm_upstream {
    const char *name;
    enum plm_upstream_kind kind;
    const char *base_url;    /* no trailing slash */
    const char *model;
    const char *api_key_env; /* the environment variable holding the key; NULL = send no key */
    enum plm_consent consent;
    double timeout_s;         /* one attempt, from connecting to the last byte */
    double connect_timeout_s;
    double stall_timeout_s;   /* an attempt fails when nothing arrives for this long */
    int max_retries;          /* attempts after the first, on 429, 5xx and transport errors */
    int max_tokens;           /* 0 = not set */
};

typedef struct plm_policy plm_policy;

/* Reads and validates a policy file. Keys are not looked up here, so a policy
 * loads without them; plm_upstream_ready checks one when it is about to be used. */
int plm_policy_load(const char *path, plm_policy **policy);
void plm_policy_free(plm_policy *policy);
int plm_policy_upstream_count(const plm_policy *policy);
const struct plm_upstream *plm_policy_upstream(const plm_policy *policy, int i);
/* By name; NULL (with a message listing the names) if none. */
const struct plm_upstream *plm_policy_find_upstream(const plm_policy *policy, const char *name);
/* Whether the policy forbids every escalation ("escalation": "never"). */
bool plm_policy_never(const plm_policy *policy);
/* Why nothing may be sent to upstream under policy (the policy says
 * "escalation": "never", or the upstream's consent is "never"), or NULL when
 * it may be: consent "ask" is the caller's to settle. */
const char *plm_policy_refusal(const plm_policy *policy, const struct plm_upstream *upstream);

/* PLM_OK if the upstream can be called now (its key's variable is set), else
 * PLM_ERR_ARG with a message naming the variable (never the key). */
int plm_upstream_ready(const struct plm_upstream *upstream);

struct plm_upstream_request {
    const struct plm_chat_message *messages; /* roles "system", "user", "assistant" */
    int n_messages;
    int max_tokens;    /* 0 = the upstream's max_tokens, else the provider's default (1024 for Anthropic, which needs one) */
    float temperature; /* negative = the provider's default */
    bool stream;
};

enum plm_finish_reason {
    PLM_FINISH_UNKNOWN = 0, /* the upstream did not say */
    PLM_FINISH_STOP,        /* a natural end or a stop sequence */
    PLM_FINISH_LENGTH,      /* max_tokens was reached */
    PLM_FINISH_FILTERED,    /* cut or refused by the provider's filters */
    PLM_FINISH_OTHER,       /* tool calls and other reasons; finish_detail says which */
    PLM_FINISH_CANCELLED,   /* the delta callback asked to stop */
};

struct plm_upstream_result {
    char *text; /* the answer, NUL-terminated (malloc'd; plm_upstream_result_free) */
    size_t text_len;
    int prompt_tokens;     /* as the upstream counted them; -1 if it did not say */
    int completion_tokens;
    enum plm_finish_reason finish_reason;
    char finish_detail[32]; /* the upstream's own word: "end_turn", "MAX_TOKENS", ... */
    int http_status;        /* of the last attempt; 0 when none got an answer */
    int attempts;
    uint64_t bytes_sent;     /* headers and bodies of every attempt */
    uint64_t bytes_received;
};

/* What the caller sees of the traffic, for the audit log. before_send runs
 * before each attempt with the URL, the request head exactly as it goes on the
 * wire (HTTP/1.1 request line and headers, each ended by CRLF, then the empty
 * line) except that the key reads "[KEY]", and the exact body; a non-zero
 * return (a plm_status, message set) cancels the call before anything is sent.
 * after_attempt gets each attempt's status (0 without an answer) and byte
 * counts. Either may be NULL. */
struct plm_upstream_observer {
    int (*before_send)(void *user, const struct plm_upstream *upstream, int attempt, const char *url,
                       const char *head, const char *body, size_t body_len);
    void (*after_attempt)(void *user, const struct plm_upstream *upstream, int attempt, int http_status,
                          uint64_t bytes_sent, uint64_t bytes_received);
    void *user;
};

/* Sends a chat request to an upstream and waits for the answer, passing its
 * text to on_delta (may be NULL) as it arrives: piece by piece when streamed,
 * whole otherwise; on_delta returning false stops it (PLM_FINISH_CANCELLED).
 * Failed attempts (429, 5xx, transport errors, timeouts) are retried up to
 * upstream->max_retries times with exponential backoff and jitter, waiting
 * as Retry-After asks, but never once text has reached on_delta. Failures are
 * PLM_ERR_IO (no answer, or an HTTP error: the message names the upstream, the
 * status and the upstream's own message), PLM_ERR_FORMAT (an answer that is not
 * the wire format) or PLM_ERR_ARG (no key); *result is filled either way and
 * holds any text that arrived. Safe to call from several threads at once. */
int plm_upstream_chat(const struct plm_upstream *upstream, const struct plm_upstream_request *request,
                      plm_text_callback on_delta, void *user, const struct plm_upstream_observer *observer,
                      struct plm_upstream_result *result);
void plm_upstream_result_free(struct plm_upstream_result *result);
/* "openai", "anthropic", "gemini"; "stop", "length", ... */
const char *plm_upstream_kind_name(enum plm_upstream_kind kind);
const char *plm_finish_reason_name(enum plm_finish_reason reason);

/* Routing: when a request leaves the device (docs/routing.md). The policy's
 * rules are evaluated in order; "never" wins over all of them. An "uncertain"
 * rule looks at the device's own first tokens: how sure it was of each. */

/* How sure the model was of one token it chose, from the logits it chose it from. */
struct plm_token_uncertainty {
    double prob;    /* the chosen token's probability under the softmax of the logits */
    double entropy; /* of that distribution, in nats: 0 (one-hot) .. log(n_vocab) (uniform) */
};
int plm_token_uncertainty(const float *logits, int n_vocab, int32_t chosen, struct plm_token_uncertainty *u);

/* The q-quantile (0..1) of the tokens' probabilities (entropy false) or
 * entropies, by linear interpolation between order statistics (NumPy's
 * default), over n >= 1 tokens in any order; the mean with plm_uncertainty_mean. */
double plm_uncertainty_quantile(const struct plm_token_uncertainty *tokens, int n, bool entropy, double q);
double plm_uncertainty_mean(const struct plm_token_uncertainty *tokens, int n, bool entropy);

struct plm_route_request {
    const char *model;   /* the request's "model", or NULL */
    int n_prompt_tokens; /* the prompt as the device model tokenizes it */
    int max_tokens;      /* the answer's length limit; 0 = none (one token must fit) */
    int n_ctx;           /* the device session's context */
    /* The device's answer so far (uncertain rules only): its first n_tokens
     * tokens, and whether it ended there. NULL/0/false before it starts. */
    const struct plm_token_uncertainty *tokens;
    int n_tokens;
    bool answer_done;
};

enum plm_route_action {
    PLM_ROUTE_DEVICE = 0,  /* the device answers */
    PLM_ROUTE_UPSTREAM,    /* send the request to decision.upstream */
    PLM_ROUTE_NEED_TOKENS, /* an uncertain rule needs the device's first decision.first_tokens
                              tokens: generate them and ask again with request.tokens */
};

struct plm_route_decision {
    enum plm_route_action action;
    int rule;                            /* index of the deciding rule; -1 for none or "never" */
    const struct plm_upstream *upstream; /* PLM_ROUTE_UPSTREAM only */
    int first_tokens;                    /* PLM_ROUTE_NEED_TOKENS only: K */
    char reason[256];                    /* with the numbers: "uncertain: p10 of chosen-token
                                            probability 0.12 < 0.2 over the first 16 tokens" */
};

/* Evaluates the policy's rules for a request. Deterministic: asking again
 * with the device's tokens re-evaluates the earlier rules the same way. */
int plm_route(const plm_policy *policy, const struct plm_route_request *request,
              struct plm_route_decision *decision);

/* Calibration (pocketlm route-eval): for each prompt, an uncertainty
 * statistic of the device's answer and the quality of the device's and the
 * upstream's answers; escalating the prompts whose statistic crosses a
 * threshold trades the escalation rate against the quality of the answers. */
struct plm_cascade_item {
    double statistic;
    double quality_device;   /* higher is better (mean log-likelihood under the upstream) */
    double quality_upstream;
};

struct plm_cascade_point {
    double threshold;  /* escalate when the statistic is below it (or above, per the sweep):
                          the smallest (largest) value, a midpoint between two
                          neighbouring values, or just past the last */
    int n_escalated;
    double rate;       /* n_escalated / n */
    double quality;    /* mean quality of the final answers */
    double random;     /* expected mean quality escalating n_escalated prompts at random */
    double oracle;     /* escalating the n_escalated prompts that gain the most */
};

struct plm_cascade_curve {
    struct plm_cascade_point *points; /* rates ascending from 0 to 1, one per distinct statistic and one more */
    int n_points;
    int n_items;
    bool below;              /* escalating when the statistic is below the threshold */
    double quality_device;   /* mean quality at rate 0 */
    double quality_upstream; /* at rate 1 */
    double area_over_random; /* integral over the rate of (quality - random), trapezoids */
};

/* Sweeps every threshold that changes the escalated set: below = true for a
 * statistic that is low when the model is unsure (a probability), false for
 * one that is high (an entropy). n >= 1 items with finite values. */
int plm_cascade_sweep(const struct plm_cascade_item *items, int n, bool below, struct plm_cascade_curve *curve);
void plm_cascade_curve_free(struct plm_cascade_curve *curve);
/* The point escalating the most prompts without exceeding the rate (the
 * recommended threshold for that target); the rate-0 point when none. */
const struct plm_cascade_point *plm_cascade_at_rate(const struct plm_cascade_curve *curve, double rate);

/* ----------------------------------------------------------------- privacy */

/* Redaction of personal data before text leaves the device (docs/privacy.md
 * gives each detector's exact rule). Every match is replaced by a placeholder
 * "[TYPE_N]" (TYPE from plm_redact_type_name, N counting from 1 per type); a
 * redactor lives for one conversation, so the same value gets the same
 * placeholder in every message, and placeholders in the answer are turned back
 * into the values locally (plm_restore, or plm_restorer when streamed). The
 * values stay in the redactor's memory only and are wiped when it is freed.
 * A redactor and its restorers belong to one thread at a time. */
enum plm_redact_type {
    PLM_REDACT_EMAIL = 0,
    PLM_REDACT_PHONE,
    PLM_REDACT_CARD,   /* payment card numbers, Luhn-checked */
    PLM_REDACT_IBAN,   /* mod-97-checked */
    PLM_REDACT_SSN,    /* US social security numbers */
    PLM_REDACT_IP,     /* IPv4 and IPv6 addresses */
    PLM_REDACT_MAC,
    PLM_REDACT_URL,    /* URLs carrying credentials or tokens */
    PLM_REDACT_SECRET, /* API keys, private keys, JWTs, high-entropy tokens */
    PLM_REDACT_TERM,   /* terms the user listed (names, addresses) */
    PLM_REDACT_N_TYPES
};

/* "EMAIL", "PHONE", "CARD", "IBAN", "SSN", "IP", "MAC", "URL", "SECRET", "TERM";
 * NULL for a value outside the enum. */
const char *plm_redact_type_name(int type);

struct plm_redact_config {
    uint32_t types;           /* bit (1u << type) enables a detector; 0 = all */
    const char *const *terms; /* matched case-insensitively as whole words; may be NULL */
    int n_terms;
};

/* Matches found (and replaced) per type by one call; counts, never values. */
struct plm_redact_stats {
    int counts[PLM_REDACT_N_TYPES];
};

typedef struct plm_redactor plm_redactor;

/* config may be NULL (every detector, no terms). The terms are copied. */
int plm_redactor_new(const struct plm_redact_config *config, plm_redactor **redactor);
/* Wipes every value it holds, then frees it. */
void plm_redactor_free(plm_redactor *redactor);

/* Replaces every match in text[0..len) by its placeholder. *out is malloc'd,
 * NUL-terminated, of length *out_len (the caller frees it; it holds no value).
 * Bytes outside matches, invalid UTF-8 included, are copied unchanged. stats
 * may be NULL. */
int plm_redact(plm_redactor *redactor, const char *text, size_t len, char **out, size_t *out_len,
               struct plm_redact_stats *stats);

/* A match: bytes [start, end) of the text. */
struct plm_redact_span {
    int type; /* enum plm_redact_type */
    size_t start, end;
};
/* The matches plm_redact would replace, in text order, without replacing or
 * remembering them. *spans is malloc'd (NULL when *n_spans is 0). */
int plm_redact_find(const plm_redactor *redactor, const char *text, size_t len,
                    struct plm_redact_span **spans, size_t *n_spans);

/* Replaces the placeholders this redactor handed out by their values;
 * anything else, unknown placeholders included, is copied unchanged. *out is
 * malloc'd and NUL-terminated; it holds the values, so wipe it when done. */
int plm_restore(const plm_redactor *redactor, const char *text, size_t len, char **out, size_t *out_len);

/* The same for text that arrives in chunks split anywhere: a possible partial
 * placeholder at the end of a chunk ("[EMA") is held back until the next chunk
 * decides it. The output of every call concatenated is exactly what
 * plm_restore gives for the whole text, however it was split. *out points into
 * the restorer's buffer and is valid until its next call. The redactor must
 * outlive the restorer; placeholders it hands out later are restored too. */
typedef struct plm_restorer plm_restorer;
int plm_restorer_new(const plm_redactor *redactor, plm_restorer **restorer);
int plm_restorer_feed(plm_restorer *restorer, const char *chunk, size_t len, const char **out,
                      size_t *out_len);
/* Ends the text: whatever was held back is given out. The restorer can then
 * take a new text. */
int plm_restorer_finish(plm_restorer *restorer, const char **out, size_t *out_len);
void plm_restorer_free(plm_restorer *restorer);

/* Recall and precision of the detectors on a labelled corpus (JSON lines:
 * {"text": ..., "spans": [{"type": "EMAIL", "start": B, "end": E}], "terms":
 * [...], "near_miss": "CARD"}, offsets in bytes; docs/privacy.md). A span is
 * found when a match of the same type has exactly its bounds. */
struct plm_redact_type_eval {
    int n_gold;      /* labelled spans */
    int n_found;     /* labelled spans matched exactly */
    int n_predicted; /* matches of this type */
    int n_leaked;    /* labelled spans not covered by any match of any type */
    int n_near_miss; /* items marked near_miss of this type */
    int n_near_miss_redacted; /* ... with a match of this type */
};
struct plm_redact_eval {
    int n_items;
    struct plm_redact_type_eval types[PLM_REDACT_N_TYPES];
    double seconds; /* time spent detecting */
};
/* on_miss (may be NULL) hears of every labelled span not found ("missed") and
 * every match not labelled ("spurious"), with the item's line number. */
int plm_redact_evaluate(const char *corpus_path, struct plm_redact_eval *eval,
                        void (*on_miss)(void *user, int line, const char *what, int type,
                                        const char *text, size_t start, size_t end),
                        void *user);
/* The result as a Markdown table (malloc'd): per type gold, found, predicted,
 * recall, precision, leaks, near misses redacted, and a total row. */
char *plm_redact_eval_table(const struct plm_redact_eval *eval);

/* ------------------------------------------------------ escalated requests */

/* One request on its way to an upstream, as the policy says (docs/escalation.md,
 * "Sending"): the conversation redacted with the policy's settings, each
 * attempt recorded in the audit log and committed before it is sent (a
 * request the log cannot record is not sent), and the answer's placeholders
 * restored before the caller sees it. An upstream whose consent is "never", or
 * a policy that says "never", is refused; "ask" is the caller's to settle,
 * showing the user plm_escalation_messages before sending. */
typedef struct plm_escalation plm_escalation;

/* Redacts messages for upstream. rule and reason are recorded in the audit log
 * ("uncertain", and the router's reason). redactor: the conversation's, so
 * that placeholders stay the same across its turns (it must outlive the
 * escalation), or NULL for a new one with the policy's redaction settings. */
int plm_escalation_new(const plm_policy *policy, const struct plm_upstream *upstream, const char *rule,
                       const char *reason, const struct plm_chat_message *messages, int n_messages,
                       plm_redactor *redactor, plm_escalation **escalation);
/* Exactly the messages that will be sent: redacted copies. */
const struct plm_chat_message *plm_escalation_messages(const plm_escalation *escalation, int *n_messages);
/* How many values of each type were redacted from them. */
const struct plm_redact_stats *plm_escalation_redactions(const plm_escalation *escalation);
const struct plm_upstream *plm_escalation_upstream(const plm_escalation *escalation);

/* Sends the redacted messages with options' limits (its messages are
 * ignored), streaming the restored answer to on_text; result->text is the
 * restored answer. on_failure is what the audit records when the upstream
 * fails: PLM_AUDIT_FALLBACK when the caller will answer on the device,
 * PLM_AUDIT_UPSTREAM_ERROR otherwise. audit must not be NULL. Errors as
 * plm_upstream_chat's. One send per escalation. */
int plm_escalation_send(plm_escalation *escalation, plm_audit *audit, const struct plm_upstream_request *options,
                        enum plm_audit_outcome on_failure, plm_text_callback on_text, void *user,
                        struct plm_upstream_result *result);
/* The audit id of the last attempt sent; 0 before any. */
int64_t plm_escalation_audit_id(const plm_escalation *escalation);
void plm_escalation_free(plm_escalation *escalation);

/* ------------------------------------------------- answering with a policy */

/* The device answers first; the policy's rules decide whether the request
 * goes to an upstream instead (plm_route): before the device starts, or after
 * its first K tokens, which are held back from on_text until the decision.
 * An upstream that fails before any of its text was passed on is replaced by
 * the device's answer, flagged as a fallback. */

/* Asked before anything is sent to an upstream whose consent is "ask", with
 * exactly the redacted messages that would be sent; true sends them. */
typedef bool (*plm_consent_callback)(void *user, const struct plm_upstream *upstream, const char *reason,
                                     const struct plm_chat_message *redacted, int n_messages);

struct plm_escalation_context {
    const plm_policy *policy;
    plm_audit *audit;         /* where every request that leaves is recorded */
    plm_redactor *redactor;   /* the conversation's, or NULL for one per request */
    plm_consent_callback consent; /* NULL: "ask" upstreams are never sent anything */
    void *consent_user;
};

struct plm_answer_request {
    const struct plm_chat_message *messages; /* the conversation, as an upstream gets it */
    int n_messages;
    const int32_t *prompt; /* the same conversation as the device's prompt tokens */
    int n_prompt;
    int n_cached;          /* leading prompt tokens the session already holds (it was truncated to them) */
    const char *model;     /* the model the request names (for "explicit" rules), or NULL */
    const struct plm_generate_params *generate; /* the device's; n_predict limits an upstream's answer too */
    float temperature;     /* an upstream's; negative: its default */
    bool stream;           /* ask an upstream to stream its answer */
};

struct plm_answer_result {
    const struct plm_upstream *upstream; /* who answered: NULL for the device */
    bool fallback;                       /* an upstream was chosen, failed, and the device answered */
    int rule;                            /* the deciding rule; -1 for none */
    char reason[256];                    /* why it went where it went */
    char error[256];                     /* fallback: how the upstream failed */
    int64_t audit_id;                    /* the audit entry of the last attempt sent; 0: nothing left */
    struct plm_redact_stats redactions;  /* what was redacted from what was sent */
    struct plm_generate_result device;   /* the device's generation (n_generated 0 when it did not answer) */
    int upstream_completion_tokens;      /* as the upstream counted them; -1 if it did not say */
    uint64_t bytes_sent, bytes_received; /* on the wire, all attempts */
};

/* Answers the conversation: on the device (session and sampler) or where the
 * policy sends it. PLM_ERR_CONTEXT_FULL when the prompt does not fit the
 * device and no upstream answered it. */
int plm_answer(plm_session *session, plm_sampler *sampler, const struct plm_escalation_context *context,
               const struct plm_answer_request *request, plm_text_callback on_text, void *user,
               struct plm_answer_result *result);

/* A redactor with the policy's redaction settings, for context->redactor: one
 * per conversation, so that a value gets the same placeholder in every turn. */
int plm_policy_redactor_new(const plm_policy *policy, plm_redactor **redactor);

#ifdef __cplusplus
}
#endif

#endif
