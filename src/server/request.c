/*
 * Request bodies: JSON -> struct api_request, every known field checked for
 * type and range. Sampling fields the request leaves out keep the library's
 * defaults (llama.cpp's: temperature 0.8, top-k 40, top-p 0.95, min-p 0.05).
 */
#include "server/request.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

bool api_fail(struct api_error *err, int status, const char *type, const char *code, const char *param,
              const char *fmt, ...)
{
    err->status = status;
    err->type = type;
    err->code = code;
    snprintf(err->param, sizeof err->param, "%s", param);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return false;
}

static bool bad_field(struct api_error *err, const char *field, const char *what)
{
    return api_fail(err, 400, "invalid_request_error", "invalid_value", field, "'%s' must be %s", field, what);
}

/* The field, or NULL when absent or null (both mean "use the default"). */
static const cJSON *field(const cJSON *object, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, name);
    return cJSON_IsNull(item) ? NULL : item;
}

static bool get_number(const cJSON *obj, const char *name, double lo, double hi, float *out, struct api_error *err)
{
    const cJSON *item = field(obj, name);
    if (!item)
        return true;
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= lo && item->valuedouble <= hi)) {
        char what[64];
        snprintf(what, sizeof what, "a number from %g to %g", lo, hi);
        return bad_field(err, name, what);
    }
    *out = (float)item->valuedouble;
    return true;
}

static bool get_integer(const cJSON *obj, const char *name, double lo, double hi, double *out,
                        struct api_error *err)
{
    const cJSON *item = field(obj, name);
    if (!item)
        return true;
    double v = cJSON_IsNumber(item) ? item->valuedouble : NAN;
    if (!(v >= lo && v <= hi) || v != floor(v)) {
        char what[64];
        snprintf(what, sizeof what, "an integer from %.0f to %.0f", lo, hi);
        return bad_field(err, name, what);
    }
    *out = v;
    return true;
}

static bool get_bool(const cJSON *obj, const char *name, bool *out, struct api_error *err)
{
    const cJSON *item = field(obj, name);
    if (!item)
        return true;
    if (!cJSON_IsBool(item))
        return bad_field(err, name, "a boolean");
    *out = cJSON_IsTrue(item);
    return true;
}

/* Content is a string or an array of parts; the text parts are joined. */
static char *message_content(const cJSON *content, const char *param, struct api_error *err)
{
    if (!content)
        return strdup("");
    if (cJSON_IsString(content))
        return strdup(content->valuestring);
    if (!cJSON_IsArray(content)) {
        bad_field(err, param, "a string or an array of text parts");
        return NULL;
    }
    size_t len = 0;
    const cJSON *part;
    cJSON_ArrayForEach(part, content) {
        const cJSON *type = cJSON_GetObjectItemCaseSensitive(part, "type");
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(type) || strcmp(type->valuestring, "text") != 0 || !cJSON_IsString(text)) {
            bad_field(err, param, "a string or an array of {\"type\": \"text\", \"text\": ...} parts");
            return NULL;
        }
        len += strlen(text->valuestring);
    }
    char *joined = malloc(len + 1);
    if (!joined)
        return NULL;
    joined[0] = '\0';
    cJSON_ArrayForEach(part, content)
        strcat(joined, cJSON_GetObjectItemCaseSensitive(part, "text")->valuestring);
    return joined;
}

/* OpenAI's "developer" role is the newer name of "system". */
static const char *known_role(const char *role)
{
    static const char *const roles[] = {"system", "user", "assistant"};
    if (strcmp(role, "developer") == 0)
        return "system";
    for (size_t i = 0; i < sizeof roles / sizeof roles[0]; i++)
        if (strcmp(role, roles[i]) == 0)
            return roles[i];
    return NULL;
}

static bool parse_messages(const cJSON *root, struct api_request *req, struct api_error *err)
{
    const cJSON *messages = field(root, "messages");
    if (!messages)
        return api_fail(err, 400, "invalid_request_error", "missing_required_parameter", "messages",
                        "'messages' is required");
    int n = cJSON_GetArraySize(messages);
    if (!cJSON_IsArray(messages) || n == 0)
        return bad_field(err, "messages", "a non-empty array");
    if (!(req->messages = calloc((size_t)n, sizeof *req->messages)))
        return api_fail(err, 500, "server_error", "", "", "out of memory");
    const cJSON *message;
    cJSON_ArrayForEach(message, messages) {
        char param[64];
        snprintf(param, sizeof param, "messages[%d]", req->n_messages);
        const cJSON *role = cJSON_GetObjectItemCaseSensitive(message, "role");
        if (!cJSON_IsObject(message) || !cJSON_IsString(role))
            return bad_field(err, param, "an object with a string 'role'");
        const char *known = known_role(role->valuestring);
        if (!known) {
            snprintf(param, sizeof param, "messages[%d].role", req->n_messages);
            return bad_field(err, param, "'system', 'developer', 'user' or 'assistant'");
        }
        snprintf(param, sizeof param, "messages[%d].content", req->n_messages);
        char *content = message_content(field(message, "content"), param, err);
        if (!content)
            return err->status ? false : api_fail(err, 500, "server_error", "", "", "out of memory");
        req->messages[req->n_messages++] = (struct plm_chat_message){known, content};
    }
    return true;
}

/* A prompt is a string, or an array holding one string. */
static bool parse_prompt(const cJSON *root, struct api_request *req, struct api_error *err)
{
    const cJSON *prompt = field(root, "prompt");
    if (!prompt)
        return api_fail(err, 400, "invalid_request_error", "missing_required_parameter", "prompt",
                        "'prompt' is required");
    if (cJSON_IsArray(prompt) && cJSON_GetArraySize(prompt) == 1)
        prompt = cJSON_GetArrayItem(prompt, 0);
    if (!cJSON_IsString(prompt))
        return bad_field(err, "prompt", "a string (or an array of one string)");
    if (!(req->prompt = strdup(prompt->valuestring)))
        return api_fail(err, 500, "server_error", "", "", "out of memory");
    return true;
}

static bool parse_stop(const cJSON *root, struct api_request *req, struct api_error *err)
{
    const cJSON *stop = field(root, "stop");
    if (!stop)
        return true;
    const char *what = "a string or an array of up to 4 strings";
    if (cJSON_IsString(stop)) {
        if (!(req->stop[req->n_stop++] = strdup(stop->valuestring)))
            return api_fail(err, 500, "server_error", "", "", "out of memory");
        return true;
    }
    if (!cJSON_IsArray(stop) || cJSON_GetArraySize(stop) > REQUEST_MAX_STOP)
        return bad_field(err, "stop", what);
    const cJSON *item;
    cJSON_ArrayForEach(item, stop) {
        if (!cJSON_IsString(item))
            return bad_field(err, "stop", what);
        if (!(req->stop[req->n_stop++] = strdup(item->valuestring)))
            return api_fail(err, 500, "server_error", "", "", "out of memory");
    }
    return true;
}

/* logprobs is a boolean with top_logprobs beside it for chat, and the number
 * of alternatives (0..5 in OpenAI's API, 0..20 here) for legacy completions. */
static bool parse_logprobs(const cJSON *root, struct api_request *req, struct api_error *err)
{
    double top = 0;
    if (req->kind == API_COMPLETION) {
        const cJSON *logprobs = field(root, "logprobs");
        if (!get_integer(root, "logprobs", 0, REQUEST_MAX_TOP_LOGPROBS, &top, err))
            return false;
        req->logprobs = logprobs != NULL;
        req->top_logprobs = (int)top;
        return true;
    }
    if (!get_bool(root, "logprobs", &req->logprobs, err) ||
        !get_integer(root, "top_logprobs", 0, REQUEST_MAX_TOP_LOGPROBS, &top, err))
        return false;
    if (top > 0 && !req->logprobs)
        return api_fail(err, 400, "invalid_request_error", "invalid_value", "top_logprobs",
                        "'top_logprobs' needs 'logprobs' set to true");
    req->top_logprobs = (int)top;
    return true;
}

/* "model" is kept: with a policy it may name an upstream (an "explicit" rule). */
static bool parse_model(const cJSON *root, struct api_request *req, struct api_error *err)
{
    const cJSON *model = field(root, "model");
    if (!model)
        return true;
    if (!cJSON_IsString(model))
        return bad_field(err, "model", "a string");
    if (!(req->model = strdup(model->valuestring)))
        return api_fail(err, 500, "server_error", "", "", "out of memory");
    return true;
}

/* pocketlm's own fields: {"pocketlm": {"consent": TOKEN}}, the token of a
 * consent_required answer, repeated to agree to the escalation it showed. */
static bool parse_extension(const cJSON *root, struct api_request *req, struct api_error *err)
{
    const cJSON *extension = field(root, "pocketlm");
    if (!extension)
        return true;
    if (!cJSON_IsObject(extension))
        return bad_field(err, "pocketlm", "an object");
    const cJSON *consent = cJSON_GetObjectItemCaseSensitive(extension, "consent");
    if (!consent)
        return true;
    if (!cJSON_IsString(consent) || strlen(consent->valuestring) >= sizeof req->consent)
        return bad_field(err, "pocketlm.consent", "the token string of a consent_required answer");
    memcpy(req->consent, consent->valuestring, strlen(consent->valuestring) + 1);
    return true;
}

static bool parse_fields(const cJSON *root, struct api_request *req, struct api_error *err)
{
    if (!(req->kind == API_CHAT ? parse_messages(root, req, err) : parse_prompt(root, req, err)))
        return false;
    if (!parse_model(root, req, err) || !parse_extension(root, req, err))
        return false;
    double max_tokens = -1, n = 1, seed = -1;
    const char *max_name = field(root, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
    struct plm_sampler_params *s = &req->sampling;
    if (!get_integer(root, max_name, 1, 2147483647.0, &max_tokens, err) ||
        !get_number(root, "temperature", 0, 2, &s->temperature, err) ||
        !get_number(root, "top_p", 0, 1, &s->top_p, err) ||
        !get_integer(root, "seed", -9007199254740991.0, 9007199254740991.0, &seed, err) ||
        !get_integer(root, "n", 1, 1, &n, err) || !get_bool(root, "stream", &req->stream, err) ||
        !parse_stop(root, req, err) || !parse_logprobs(root, req, err))
        return false;
    if (s->top_p <= 0)
        return bad_field(err, "top_p", "greater than 0");
    req->max_tokens = (int)max_tokens;
    if (field(root, "seed"))
        s->seed = (uint64_t)(int64_t)seed;
    const cJSON *options = field(root, "stream_options");
    if (options && !cJSON_IsObject(options))
        return bad_field(err, "stream_options", "an object");
    return get_bool(options, "include_usage", &req->include_usage, err);
}

bool request_parse(const char *body, size_t len, enum api_kind kind, struct api_request *req,
                   struct api_error *err)
{
    memset(req, 0, sizeof *req);
    memset(err, 0, sizeof *err);
    req->kind = kind;
    plm_sampler_params_default(&req->sampling);
    const char *end = NULL;
    cJSON *root = cJSON_ParseWithLengthOpts(body, len, &end, false);
    while (root && end < body + len && strchr(" \t\r\n", *end) && *end)
        end++;
    if (root && end != body + len) { /* something after the value */
        cJSON_Delete(root);
        root = NULL;
    }
    if (!root)
        return api_fail(err, 400, "invalid_request_error", "invalid_json", "",
                        "the request body is not valid JSON");
    bool ok = cJSON_IsObject(root) ? parse_fields(root, req, err)
                                   : api_fail(err, 400, "invalid_request_error", "invalid_json", "",
                                              "the request body must be a JSON object");
    cJSON_Delete(root);
    if (!ok)
        request_free(req);
    return ok;
}

void request_free(struct api_request *req)
{
    for (int i = 0; i < req->n_messages; i++)
        free((char *)req->messages[i].content);
    free(req->messages);
    free(req->prompt);
    free(req->model);
    for (int i = 0; i < req->n_stop; i++)
        free(req->stop[i]);
    memset(req, 0, sizeof *req);
}
