/* OpenAI-shaped response bodies (see response.h for the shapes), built with cJSON. */
#include "server/response.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Length of the valid UTF-8 sequence at s (1..4), or 0 if the bytes there are
 * not one: a stray continuation byte, a truncated sequence, an overlong form,
 * a surrogate or a code point above U+10FFFF. */
static size_t utf8_sequence_len(const unsigned char *s, size_t avail)
{
    unsigned c = s[0];
    size_t n;
    unsigned cp, min;
    if (c < 0x80)
        return c ? 1 : 0;
    if ((c & 0xE0) == 0xC0) { n = 2; cp = c & 0x1F; min = 0x80; }
    else if ((c & 0xF0) == 0xE0) { n = 3; cp = c & 0x0F; min = 0x800; }
    else if ((c & 0xF8) == 0xF0) { n = 4; cp = c & 0x07; min = 0x10000; }
    else return 0;
    if (n > avail)
        return 0;
    for (size_t i = 1; i < n; i++) {
        if ((s[i] & 0xC0) != 0x80)
            return 0;
        cp = cp << 6 | (s[i] & 0x3F);
    }
    if (cp < min || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF))
        return 0;
    return n;
}

char *utf8_sanitize(const char *text, size_t len)
{
    static const char replacement[] = "\xEF\xBF\xBD";
    char *out = malloc(3 * len + 1); /* each bad byte grows to 3 */
    if (!out)
        return NULL;
    const unsigned char *s = (const unsigned char *)text;
    size_t o = 0;
    for (size_t i = 0; i < len;) {
        size_t n = utf8_sequence_len(s + i, len - i);
        if (n == 0) {
            memcpy(out + o, replacement, 3);
            o += 3;
            i++;
            continue;
        }
        memcpy(out + o, s + i, n);
        o += n;
        i += n;
    }
    out[o] = '\0';
    return out;
}

static cJSON *text_string(const char *text, size_t len)
{
    char *clean = utf8_sanitize(text, len);
    cJSON *item = clean ? cJSON_CreateString(clean) : NULL;
    free(clean);
    return item;
}

/* Prints and frees the tree; NULL when out of memory. */
static char *print_tree(cJSON *root)
{
    char *json = root ? cJSON_PrintUnformatted(root) : NULL;
    cJSON_Delete(root);
    return json;
}

/* "data: JSON\n\n" from a tree (freed). */
static char *print_event(cJSON *root)
{
    char *json = print_tree(root);
    if (!json)
        return NULL;
    char *event = malloc(strlen(json) + 9);
    if (event)
        sprintf(event, "data: %s\n\n", json);
    free(json);
    return event;
}

/* ------------------------------------------------------------- logprobs */

char *token_piece(const plm_model *model, int32_t token, int *len)
{
    char small[256];
    int n = plm_token_to_piece(model, token, small, sizeof small, false);
    char *piece = malloc(n > 0 ? (size_t)n : 1);
    if (!piece)
        return NULL;
    *len = n > 0 ? n : 0;
    if (n > (int)sizeof small)
        plm_token_to_piece(model, token, piece, (size_t)n, false);
    else if (n > 0)
        memcpy(piece, small, (size_t)n);
    return piece;
}

/* {"token": text, "logprob": lp, "bytes": [...]} */
static cJSON *chat_token_entry(const plm_model *model, int32_t token, float logprob)
{
    int len;
    char *piece = token_piece(model, token, &len);
    cJSON *entry = cJSON_CreateObject();
    if (!piece || !entry) {
        free(piece);
        cJSON_Delete(entry);
        return NULL;
    }
    cJSON_AddItemToObject(entry, "token", text_string(piece, (size_t)len));
    cJSON_AddNumberToObject(entry, "logprob", logprob);
    cJSON *bytes = cJSON_AddArrayToObject(entry, "bytes");
    for (int i = 0; i < len; i++)
        cJSON_AddItemToArray(bytes, cJSON_CreateNumber((unsigned char)piece[i]));
    free(piece);
    return entry;
}

static cJSON *chat_logprobs(const plm_model *model, const struct token_logprob *lp, int n)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *content = cJSON_AddArrayToObject(root, "content");
    for (int i = 0; i < n; i++) {
        cJSON *entry = chat_token_entry(model, lp[i].token, lp[i].logprob);
        cJSON *top = cJSON_AddArrayToObject(entry, "top_logprobs");
        for (int k = 0; k < lp[i].n_top; k++)
            cJSON_AddItemToArray(top, chat_token_entry(model, lp[i].top_token[k], lp[i].top_logprob[k]));
        cJSON_AddItemToArray(content, entry);
    }
    cJSON_AddNullToObject(root, "refusal");
    return root;
}

static cJSON *legacy_logprobs(const plm_model *model, const struct token_logprob *lp, int n)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *tokens = cJSON_AddArrayToObject(root, "tokens");
    cJSON *token_logprobs = cJSON_AddArrayToObject(root, "token_logprobs");
    cJSON *top_logprobs = cJSON_AddArrayToObject(root, "top_logprobs");
    cJSON *text_offset = cJSON_AddArrayToObject(root, "text_offset");
    for (int i = 0; i < n; i++) {
        int len;
        char *piece = token_piece(model, lp[i].token, &len);
        cJSON_AddItemToArray(tokens, piece ? text_string(piece, (size_t)len) : NULL);
        free(piece);
        cJSON_AddItemToArray(token_logprobs, cJSON_CreateNumber(lp[i].logprob));
        cJSON *top = cJSON_CreateObject();
        for (int k = 0; k < lp[i].n_top; k++) {
            piece = token_piece(model, lp[i].top_token[k], &len);
            char *key = piece ? utf8_sanitize(piece, (size_t)len) : NULL;
            if (key)
                cJSON_AddNumberToObject(top, key, lp[i].top_logprob[k]);
            free(key);
            free(piece);
        }
        cJSON_AddItemToArray(top_logprobs, top);
        cJSON_AddItemToArray(text_offset, cJSON_CreateNumber((double)lp[i].text_offset));
    }
    return root;
}

/* Chunks without tokens (the role, the finish) carry null, as OpenAI's do. */
static void add_logprobs(cJSON *choice, const plm_model *model, const struct response_meta *meta,
                         const struct token_logprob *lp, int n, bool chunk)
{
    if (!meta->logprobs || (chunk && n == 0))
        cJSON_AddNullToObject(choice, "logprobs");
    else
        cJSON_AddItemToObject(choice, "logprobs", meta->kind == API_CHAT ? chat_logprobs(model, lp, n)
                                                                          : legacy_logprobs(model, lp, n));
}

/* ---------------------------------------------------------------- bodies */

/* The fields every completion body starts with; returns the choices array. */
static cJSON *completion_header(cJSON *root, const struct response_meta *meta, const char *object)
{
    cJSON_AddStringToObject(root, "id", meta->id);
    cJSON_AddStringToObject(root, "object", object);
    cJSON_AddNumberToObject(root, "created", (double)meta->created);
    cJSON_AddStringToObject(root, "model", meta->model_name);
    return cJSON_AddArrayToObject(root, "choices");
}

static void add_finish_reason(cJSON *choice, const char *finish_reason)
{
    if (finish_reason)
        cJSON_AddStringToObject(choice, "finish_reason", finish_reason);
    else
        cJSON_AddNullToObject(choice, "finish_reason");
}

static cJSON *redactions_object(const struct plm_redact_stats *redactions)
{
    cJSON *counts = cJSON_CreateObject();
    for (int t = 0; t < PLM_REDACT_N_TYPES; t++)
        if (redactions->counts[t] > 0)
            cJSON_AddNumberToObject(counts, plm_redact_type_name(t), redactions->counts[t]);
    return counts;
}

static void add_text(cJSON *object, const char *name, const char *text)
{
    if (text)
        cJSON_AddItemToObject(object, name, text_string(text, strlen(text)));
}

/* {"pocketlm":{"route":…}}: where the answer ran, and why (see response.h). */
static void add_extension(cJSON *root, const struct response_meta *meta)
{
    const struct response_route *r = &meta->route;
    cJSON *extension = cJSON_AddObjectToObject(root, "pocketlm");
    cJSON_AddStringToObject(extension, "route", r->where);
    add_text(extension, "reason", r->reason);
    if (r->fallback)
        cJSON_AddTrueToObject(extension, "fallback");
    add_text(extension, "upstream_error", r->error);
    if (!r->sent)
        return;
    cJSON *sent = cJSON_Parse(r->sent);
    if (sent)
        cJSON_AddItemToObject(extension, "sent", sent);
    cJSON_AddItemToObject(extension, "redactions", redactions_object(&r->redactions));
    cJSON_AddNumberToObject(extension, "audit_id", (double)r->audit_id);
}

static cJSON *usage_object(const struct response_usage *usage)
{
    cJSON *u = cJSON_CreateObject();
    cJSON_AddNumberToObject(u, "prompt_tokens", usage->prompt_tokens);
    cJSON_AddNumberToObject(u, "completion_tokens", usage->completion_tokens);
    cJSON_AddNumberToObject(u, "total_tokens", usage->prompt_tokens + usage->completion_tokens);
    return u;
}

char *response_complete(const plm_model *model, const struct response_meta *meta, const char *text, size_t len,
                        const struct token_logprob *logprobs, int n_logprobs, const char *finish_reason,
                        const struct response_usage *usage)
{
    bool chat = meta->kind == API_CHAT;
    cJSON *root = cJSON_CreateObject();
    cJSON *choices = completion_header(root, meta, chat ? "chat.completion" : "text_completion");
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, choice);
    if (chat) {
        cJSON_AddNumberToObject(choice, "index", 0);
        cJSON *message = cJSON_AddObjectToObject(choice, "message");
        cJSON_AddStringToObject(message, "role", "assistant");
        cJSON_AddItemToObject(message, "content", text_string(text, len));
        cJSON_AddNullToObject(message, "refusal");
    } else {
        cJSON_AddItemToObject(choice, "text", text_string(text, len));
        cJSON_AddNumberToObject(choice, "index", 0);
    }
    add_logprobs(choice, model, meta, logprobs, n_logprobs, false);
    add_finish_reason(choice, finish_reason);
    cJSON_AddItemToObject(root, "usage", usage_object(usage));
    add_extension(root, meta);
    return print_tree(root);
}

char *response_chunk(const plm_model *model, const struct response_meta *meta, const char *text, size_t len,
                     bool first, const struct token_logprob *logprobs, int n_logprobs, const char *finish_reason)
{
    bool chat = meta->kind == API_CHAT;
    cJSON *root = cJSON_CreateObject();
    cJSON *choices = completion_header(root, meta, chat ? "chat.completion.chunk" : "text_completion");
    cJSON *choice = cJSON_CreateObject();
    cJSON_AddItemToArray(choices, choice);
    cJSON_AddNumberToObject(choice, "index", 0);
    if (chat) {
        cJSON *delta = cJSON_AddObjectToObject(choice, "delta");
        if (first)
            cJSON_AddStringToObject(delta, "role", "assistant");
        if (len > 0 || (first && !finish_reason))
            cJSON_AddItemToObject(delta, "content", text_string(text, len));
    } else {
        cJSON_AddItemToObject(choice, "text", text_string(text, len));
    }
    add_logprobs(choice, model, meta, logprobs, n_logprobs, true);
    add_finish_reason(choice, finish_reason);
    if (meta->include_usage)
        cJSON_AddNullToObject(root, "usage");
    if (finish_reason)
        add_extension(root, meta);
    return print_event(root);
}

char *response_usage_chunk(const struct response_meta *meta, const struct response_usage *usage)
{
    cJSON *root = cJSON_CreateObject();
    completion_header(root, meta, meta->kind == API_CHAT ? "chat.completion.chunk" : "text_completion");
    cJSON_AddItemToObject(root, "usage", usage_object(usage));
    add_extension(root, meta);
    return print_event(root);
}

static cJSON *error_tree(const struct api_error *err)
{
    cJSON *root = cJSON_CreateObject();
    cJSON *e = cJSON_AddObjectToObject(root, "error");
    cJSON_AddItemToObject(e, "message", text_string(err->message, strlen(err->message)));
    cJSON_AddStringToObject(e, "type", err->type);
    if (err->param[0])
        cJSON_AddItemToObject(e, "param", text_string(err->param, strlen(err->param)));
    else
        cJSON_AddNullToObject(e, "param");
    if (err->code && err->code[0])
        cJSON_AddStringToObject(e, "code", err->code);
    else
        cJSON_AddNullToObject(e, "code");
    return root;
}

char *response_error(const struct api_error *err) { return print_tree(error_tree(err)); }

char *response_error_event(const struct api_error *err) { return print_event(error_tree(err)); }

char *response_messages_json(const struct plm_chat_message *messages, int n)
{
    cJSON *array = cJSON_CreateArray();
    for (int i = 0; i < n; i++) {
        cJSON *message = cJSON_CreateObject();
        cJSON_AddStringToObject(message, "role", messages[i].role);
        add_text(message, "content", messages[i].content);
        cJSON_AddItemToArray(array, message);
    }
    return print_tree(array);
}

char *response_consent_required(const struct plm_upstream *upstream, const char *rule, const char *reason,
                                const char *messages_json, const struct plm_redact_stats *redactions,
                                const char *token)
{
    struct api_error err;
    api_fail(&err, 403, "consent_required", "consent_required", "",
             "this request would be sent to upstream '%s' (%s, model %s); repeat it with "
             "\"pocketlm\": {\"consent\": \"<consent.token>\"} to agree",
             upstream->name, plm_upstream_kind_name(upstream->kind), upstream->model);
    cJSON *root = error_tree(&err);
    cJSON *consent = cJSON_AddObjectToObject(root, "consent");
    cJSON_AddStringToObject(consent, "token", token);
    add_text(consent, "upstream", upstream->name);
    cJSON_AddStringToObject(consent, "kind", plm_upstream_kind_name(upstream->kind));
    add_text(consent, "model", upstream->model);
    add_text(consent, "base_url", upstream->base_url);
    cJSON_AddStringToObject(consent, "rule", rule);
    add_text(consent, "reason", reason);
    cJSON *messages = cJSON_Parse(messages_json);
    if (messages)
        cJSON_AddItemToObject(consent, "messages", messages);
    cJSON_AddItemToObject(consent, "redactions", redactions_object(redactions));
    return print_tree(root);
}

static cJSON *model_object(const char *model_name, long long created)
{
    cJSON *model = cJSON_CreateObject();
    cJSON_AddItemToObject(model, "id", text_string(model_name, strlen(model_name)));
    cJSON_AddStringToObject(model, "object", "model");
    cJSON_AddNumberToObject(model, "created", (double)created);
    cJSON_AddStringToObject(model, "owned_by", "pocketlm");
    return model;
}

char *response_models(const char *model_name, long long created)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "object", "list");
    cJSON *data = cJSON_AddArrayToObject(root, "data");
    cJSON_AddItemToArray(data, model_object(model_name, created));
    return print_tree(root);
}

char *response_model(const char *model_name, long long created)
{
    return print_tree(model_object(model_name, created));
}
