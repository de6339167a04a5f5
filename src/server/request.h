/*
 * The body of a completion request, checked and copied into a plain struct.
 *
 * Both routes share one struct: POST /v1/chat/completions fills `messages`,
 * POST /v1/completions fills `prompt`. Fields the server does not know are
 * ignored, as OpenAI's API does; a known field of the wrong type or out of
 * range is an error that names the field.
 */
#ifndef PLM_SERVER_REQUEST_H
#define PLM_SERVER_REQUEST_H

#include "pocketlm.h"

#define REQUEST_MAX_STOP 4         /* OpenAI's limit on stop strings */
#define REQUEST_MAX_TOP_LOGPROBS 20

enum api_kind {
    API_CHAT,       /* /v1/chat/completions */
    API_COMPLETION, /* /v1/completions (legacy) */
};

/* An OpenAI-shaped error: {"error":{"message","type","param","code"}} with an
 * HTTP status. type and code are static strings; param and code may be "". */
struct api_error {
    int status;
    const char *type;
    const char *code;
    char param[64];
    char message[256];
};

struct api_request {
    enum api_kind kind;
    struct plm_chat_message *messages; /* chat: role and content are owned copies */
    int n_messages;
    char *prompt;                      /* completion */
    int max_tokens;                    /* -1: until end of text or a full context */
    struct plm_sampler_params sampling;
    char *stop[REQUEST_MAX_STOP];
    int n_stop;
    bool stream;
    bool include_usage;                /* stream_options.include_usage */
    bool logprobs;                     /* report the chosen tokens' log-probabilities */
    int top_logprobs;                  /* and the n most likely alternatives (0..20) */
    char *model;                       /* "model", or NULL */
    char consent[80];                  /* "pocketlm": {"consent": TOKEN}, or "" */
};

/* Parses a JSON body. On failure fills *err (status 400) and returns false;
 * *req then holds nothing to free. */
bool request_parse(const char *body, size_t len, enum api_kind kind, struct api_request *req,
                   struct api_error *err);
void request_free(struct api_request *req);

/* Fills *err; fmt is printf-style. Returns false, for `return api_fail(...)`. */
bool api_fail(struct api_error *err, int status, const char *type, const char *code, const char *param,
              const char *fmt, ...) __attribute__((format(printf, 6, 7)));

#endif
