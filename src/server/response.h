/*
 * Response bodies in OpenAI's wire format, as malloc'd NUL-terminated strings.
 *
 *   chat, whole:      {"id":"chatcmpl-…","object":"chat.completion","created":…,"model":…,
 *                      "choices":[{"index":0,"message":{"role":"assistant","content":…,"refusal":null},
 *                                  "logprobs":…,"finish_reason":"stop"|"length"}],
 *                      "usage":{"prompt_tokens":…,"completion_tokens":…,"total_tokens":…}}
 *   chat, streamed:   "data: {…"object":"chat.completion.chunk",…"choices":[{"index":0,
 *                      "delta":{"role"?,"content"?},"logprobs":…,"finish_reason":…}]}\n\n" …
 *                      then "data: [DONE]\n\n"
 *   legacy, whole:    {"id":"cmpl-…","object":"text_completion",…"choices":[{"text":…,"index":0,
 *                      "logprobs":…,"finish_reason":…}],"usage":{…}}; streamed chunks have the same shape.
 *   error:            {"error":{"message":…,"type":…,"param":…|null,"code":…|null}}
 *
 * The last chunk, the usage chunk and whole bodies add "pocketlm":{"route":…} (below).
 * consent_required: {"error":{…,"type":"consent_required"},"consent":{"token",
 *                     "upstream","kind","model","host","rule","reason","messages","redactions"}}
 * Chat logprobs are {"content":[{"token","logprob","bytes","top_logprobs":[…]}],"refusal":null};
 * legacy logprobs are {"tokens":[…],"token_logprobs":[…],"top_logprobs":[{token:logprob}],"text_offset":[…]}.
 * Text is made valid UTF-8 (U+FFFD for invalid bytes) before it goes into JSON.
 */
#ifndef PLM_SERVER_RESPONSE_H
#define PLM_SERVER_RESPONSE_H

#include "server/logprob.h"
#include "server/request.h"

/* Where an answer came from: pocketlm's extension to OpenAI's bodies,
 * {"pocketlm":{"route":…}} in a whole response and in a stream's last chunk
 * (the one with the finish_reason) and its usage chunk, and the
 * X-Pocketlm-Route header. Without a policy only "route": "device" is written. */
struct response_route {
    const char *where; /* RESPONSE_ROUTE_DEVICE, or the upstream's name */
    char *reason;      /* why, from the router; NULL without a policy */
    bool fallback;     /* an upstream was chosen and failed; the device answered */
    char *error;       /* how it failed, or NULL */
    char *sent;        /* the messages sent, redacted, as a JSON array; NULL when nothing left */
    struct plm_redact_stats redactions;
    int64_t audit_id;  /* the audit entry of what was sent; 0 when nothing */
};
#define RESPONSE_ROUTE_DEVICE "device"

/* What every body of one completion repeats. */
struct response_meta {
    enum api_kind kind;
    char id[48];            /* "chatcmpl-<hex>" or "cmpl-<hex>" */
    long long created;      /* Unix seconds */
    const char *model_name;
    bool logprobs;          /* the request asked for logprobs */
    bool include_usage;     /* streamed: "usage": null in chunks, then a usage chunk */
    struct response_route route;
};

struct response_usage {
    int prompt_tokens;
    int completion_tokens;
};

/* The tokens' text comes from the model's vocabulary. */
char *response_complete(const plm_model *model, const struct response_meta *meta, const char *text, size_t len,
                        const struct token_logprob *logprobs, int n_logprobs, const char *finish_reason,
                        const struct response_usage *usage);

/* One server-sent event "data: {chunk}\n\n". first adds the assistant role to
 * a chat delta; finish_reason is NULL until the last chunk. */
char *response_chunk(const plm_model *model, const struct response_meta *meta, const char *text, size_t len,
                     bool first, const struct token_logprob *logprobs, int n_logprobs, const char *finish_reason);
/* The event with empty choices and the usage, after the last chunk. */
char *response_usage_chunk(const struct response_meta *meta, const struct response_usage *usage);
#define RESPONSE_STREAM_END "data: [DONE]\n\n"

char *response_error(const struct api_error *err);
/* The redacted messages as a JSON array [{"role","content"}…]. */
char *response_messages_json(const struct plm_chat_message *messages, int n);
/* The HTTP 403 answer to a request that needs the user's consent to leave:
 * what would be sent (messages_json, from response_messages_json), to whom,
 * why, and the token that agrees to it. */
char *response_consent_required(const struct plm_upstream *upstream, const char *rule, const char *reason,
                                const char *messages_json, const struct plm_redact_stats *redactions,
                                const char *token);
/* The error as a server-sent event, for a stream that fails after it started. */
char *response_error_event(const struct api_error *err);

/* GET /v1/models: the one model served. */
char *response_models(const char *model_name, long long created);
/* GET /v1/models/{id}: that model, when it is the one served. */
char *response_model(const char *model_name, long long created);

/* A token's text (malloc'd, not NUL-terminated), its length in *len; NULL
 * when out of memory. Control tokens give "". */
char *token_piece(const plm_model *model, int32_t token, int *len);

/* Copies text as valid UTF-8: each invalid or truncated sequence and each NUL
 * byte becomes U+FFFD. NULL when out of memory. */
char *utf8_sanitize(const char *text, size_t len);

#endif
