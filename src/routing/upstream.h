/*
 * Upstream clients: the HTTP transport (upstream.c: libcurl, timeouts,
 * retries) and one wire format per kind of upstream (upstream_openai.c,
 * upstream_anthropic.c, upstream_gemini.c), which writes a chat request as the
 * provider's JSON and reads its answer, whole or as server-sent events, into
 * an upstream_reply.
 */
#ifndef PLM_ROUTING_UPSTREAM_H
#define PLM_ROUTING_UPSTREAM_H

#include "pocketlm.h"

/* The answer as it arrives. Text goes through reply_add_text, which passes it
 * on to the caller's callback. */
struct upstream_reply {
    char *text;
    size_t text_len, text_cap;
    int prompt_tokens; /* -1 until the upstream says */
    int completion_tokens;
    enum plm_finish_reason finish_reason;
    char finish_detail[32];
    bool ended;     /* the stream's last event arrived ([DONE], message_stop, a finishReason) */
    bool cancelled; /* the callback asked to stop */
    bool delivered; /* some text reached the callback: the request may no longer be retried */
    plm_text_callback on_delta;
    void *user;
};

void reply_init(struct upstream_reply *reply, plm_text_callback on_delta, void *user);
void reply_free(struct upstream_reply *reply);
/* Appends text and hands it to the callback (nothing for len 0). */
int reply_add_text(struct upstream_reply *reply, const char *text, size_t len);
void reply_set_finish(struct upstream_reply *reply, enum plm_finish_reason reason, const char *detail);

/* One wire format. Every parser returns PLM_OK, PLM_ERR_FORMAT for JSON that
 * is not the format (message set), or PLM_ERR_IO for an error the upstream
 * reported inside a successful response. */
struct upstream_wire {
    const char *key_header;   /* the header carrying the key, up to the key: "x-api-key: " */
    const char *extra_header; /* a header every request carries, or NULL */
    /* The URL path after base_url: "/chat/completions". */
    int (*path)(const struct plm_upstream *upstream, bool stream, char *out, size_t size);
    /* The request body, malloc'd and NUL-terminated. */
    int (*body)(const struct plm_upstream *upstream, const struct plm_upstream_request *request, char **body);
    /* A whole JSON response (stream false, or an upstream that ignored stream). */
    int (*parse_response)(const char *json, size_t len, struct upstream_reply *reply);
    /* One server-sent event of a streamed response. */
    int (*parse_event)(const char *event, const char *data, size_t len, struct upstream_reply *reply);
};

extern const struct upstream_wire upstream_wire_openai;
extern const struct upstream_wire upstream_wire_anthropic;
extern const struct upstream_wire upstream_wire_gemini;
const struct upstream_wire *upstream_wire_for(enum plm_upstream_kind kind);

/* ------------------------------------------- shared by the wire formats */

struct cJSON;

/* Writes a request body (compact JSON, malloc'd) and frees root. */
int upstream_print_body(struct cJSON *root, char **body);
/* Parses an answer's JSON; NULL (PLM_ERR_FORMAT, message set) if it is not JSON. */
struct cJSON *upstream_parse_json(const char *json, size_t len);
/* PLM_ERR_IO with the upstream's message when root is an error object
 * ({"error": ...}, {"type": "error", ...}), else PLM_OK. */
int upstream_check_error(const struct cJSON *root);
/* Sets *value from object.key when that is a number (token counts). */
void upstream_read_count(const struct cJSON *object, const char *key, int *value);

/* How a provider's finish reasons map to ours; words not listed are OTHER. */
struct finish_word {
    const char *word;
    enum plm_finish_reason reason;
};
void reply_finish_from_word(struct upstream_reply *reply, const char *word, const struct finish_word *table,
                            int n_words);

/* The provider's message from an error body: {"error": {"message": ...}} (OpenAI,
 * Anthropic, Gemini), {"error": "..."} (Ollama, llama.cpp), {"message": ...}
 * (vLLM) or {"detail": ...}; else the body's first printable bytes. */
void upstream_error_message(const char *body, size_t len, char *out, size_t size);

/* The request's temperature rounded to 1/1000, so that 0.7f is written "0.7";
 * negative when the provider's default applies. */
double upstream_temperature(const struct plm_upstream_request *request);

/* The request's system messages joined with blank lines (malloc'd, "" when
 * none), for the formats that take the system prompt apart from the turns. */
char *upstream_system_prompt(const struct plm_upstream_request *request);

/* Gives the request's max_tokens, else the upstream's, else fallback (0 = none). */
int upstream_max_tokens(const struct plm_upstream *upstream, const struct plm_upstream_request *request,
                        int fallback);

#endif
