/*
 * OpenAI's chat completions wire format, which OpenAI, vLLM, llama.cpp's
 * server, Ollama's /v1 endpoint and `pocketlm serve` all speak.
 *
 *   POST {base_url}/chat/completions      Authorization: Bearer KEY
 *   {"model": M, "messages": [{"role": "system"|"user"|"assistant", "content": TEXT}, ...],
 *    "max_tokens": N, "temperature": T, "stream": true, "stream_options": {"include_usage": true}}
 *
 * Answer: {"choices": [{"message": {"content": TEXT}, "finish_reason": "stop"}],
 *          "usage": {"prompt_tokens": P, "completion_tokens": C}}
 * Stream: "data: {chunk}" events, each {"choices": [{"delta": {"content": PIECE},
 * "finish_reason": null | "stop" | ...}]}; with include_usage a last chunk with
 * empty "choices" and the "usage"; then "data: [DONE]".
 */
#include "routing/upstream.h"

#include "core/error.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct finish_word finish_words[] = {
    {"stop", PLM_FINISH_STOP},
    {"length", PLM_FINISH_LENGTH},
    {"content_filter", PLM_FINISH_FILTERED},
};

static int openai_path(const struct plm_upstream *upstream, bool stream, char *out, size_t size)
{
    (void)upstream;
    (void)stream;
    snprintf(out, size, "/chat/completions");
    return PLM_OK;
}

static int openai_body(const struct plm_upstream *upstream, const struct plm_upstream_request *request, char **body)
{
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", upstream->model);
    cJSON *messages = cJSON_AddArrayToObject(root, "messages");
    for (int i = 0; i < request->n_messages; i++) {
        cJSON *message = cJSON_CreateObject();
        cJSON_AddStringToObject(message, "role", request->messages[i].role);
        cJSON_AddStringToObject(message, "content", request->messages[i].content);
        cJSON_AddItemToArray(messages, message);
    }
    int max_tokens = upstream_max_tokens(upstream, request, 0);
    if (max_tokens > 0)
        cJSON_AddNumberToObject(root, "max_tokens", max_tokens);
    if (request->temperature >= 0)
        cJSON_AddNumberToObject(root, "temperature", upstream_temperature(request));
    if (request->stream) {
        cJSON_AddBoolToObject(root, "stream", true);
        cJSON_AddBoolToObject(cJSON_AddObjectToObject(root, "stream_options"), "include_usage", true);
    }
    return upstream_print_body(root, body);
}

static void read_usage(const cJSON *root, struct upstream_reply *reply)
{
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usage");
    upstream_read_count(usage, "prompt_tokens", &reply->prompt_tokens);
    upstream_read_count(usage, "completion_tokens", &reply->completion_tokens);
}

static void read_finish(const cJSON *choice, struct upstream_reply *reply)
{
    const cJSON *finish = cJSON_GetObjectItemCaseSensitive(choice, "finish_reason");
    if (cJSON_IsString(finish))
        reply_finish_from_word(reply, finish->valuestring, finish_words,
                               (int)(sizeof finish_words / sizeof finish_words[0]));
}

/* The text of message.content or delta.content: a string, or null when there is none. */
static int read_content(const cJSON *holder, const char *what, struct upstream_reply *reply)
{
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(holder, "content");
    if (cJSON_IsString(content))
        return reply_add_text(reply, content->valuestring, strlen(content->valuestring));
    if (content && !cJSON_IsNull(content))
        return plm_fail(PLM_ERR_FORMAT, "upstream answer: choices[0].%s.content is not a string", what);
    return PLM_OK;
}

static int openai_parse_response(const char *json, size_t len, struct upstream_reply *reply)
{
    cJSON *root = upstream_parse_json(json, len);
    if (!root)
        return PLM_ERR_FORMAT;
    int rc = upstream_check_error(root);
    const cJSON *choice = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(root, "choices"), 0);
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(choice, "message");
    if (rc == PLM_OK && !cJSON_IsObject(message))
        rc = plm_fail(PLM_ERR_FORMAT, "upstream answer: no choices[0].message");
    if (rc == PLM_OK && (rc = read_content(message, "message", reply)) == PLM_OK) {
        read_finish(choice, reply);
        read_usage(root, reply);
        reply->ended = true;
    }
    cJSON_Delete(root);
    return rc;
}

static int openai_parse_event(const char *event, const char *data, size_t len, struct upstream_reply *reply)
{
    (void)event;
    if (len == 6 && memcmp(data, "[DONE]", 6) == 0) {
        reply->ended = true;
        return PLM_OK;
    }
    cJSON *root = upstream_parse_json(data, len);
    if (!root)
        return PLM_ERR_FORMAT;
    int rc = upstream_check_error(root);
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    const cJSON *choice = cJSON_GetArrayItem(choices, 0);
    if (rc == PLM_OK && ((choices && !cJSON_IsArray(choices) && !cJSON_IsNull(choices)) ||
                         (choice && !cJSON_IsObject(cJSON_GetObjectItemCaseSensitive(choice, "delta")))))
        rc = plm_fail(PLM_ERR_FORMAT, "upstream stream: a chunk without choices[0].delta");
    if (rc == PLM_OK && choice && (rc = read_content(cJSON_GetObjectItemCaseSensitive(choice, "delta"), "delta",
                                                     reply)) == PLM_OK)
        read_finish(choice, reply);
    if (rc == PLM_OK)
        read_usage(root, reply);
    cJSON_Delete(root);
    return rc;
}

const struct upstream_wire upstream_wire_openai = {
    .key_header = "Authorization: Bearer ",
    .extra_header = NULL,
    .path = openai_path,
    .body = openai_body,
    .parse_response = openai_parse_response,
    .parse_event = openai_parse_event,
};
