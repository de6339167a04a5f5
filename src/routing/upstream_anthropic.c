/*
 * Anthropic's Messages API.
 *
 *   POST {base_url}/v1/messages      x-api-key: KEY      anthropic-version: 2023-06-01
 *   {"model": M, "max_tokens": N (required), "system": TEXT,
 *    "messages": [{"role": "user"|"assistant", "content": TEXT}, ...], "temperature": T, "stream": true}
 *
 * The system prompt is a top-level field, not a message.
 * Answer: {"type": "message", "content": [{"type": "text", "text": TEXT}, ...],
 *          "stop_reason": "end_turn", "usage": {"input_tokens": P, "output_tokens": C}}
 * Stream: named events, in order
 *   message_start        {"message": {..., "usage": {"input_tokens": P, "output_tokens": 1}}}
 *   content_block_start  {"index": I, "content_block": {"type": "text", "text": ""}}
 *   content_block_delta  {"index": I, "delta": {"type": "text_delta", "text": PIECE}}   (repeated)
 *   content_block_stop   {"index": I}
 *   message_delta        {"delta": {"stop_reason": ...}, "usage": {"output_tokens": C}}
 *   message_stop         {}
 * with "ping" events anywhere and an "error" event ({"error": {"type", "message"}})
 * when the request fails mid-stream. Unknown events are ignored, as the API
 * reference asks of clients.
 */
#include "routing/upstream.h"

#include "core/error.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Anthropic requires max_tokens; this is used when neither request nor policy sets it. */
#define ANTHROPIC_DEFAULT_MAX_TOKENS 1024

static const struct finish_word finish_words[] = {
    {"end_turn", PLM_FINISH_STOP},
    {"stop_sequence", PLM_FINISH_STOP},
    {"max_tokens", PLM_FINISH_LENGTH},
    {"refusal", PLM_FINISH_FILTERED},
};

static int anthropic_path(const struct plm_upstream *upstream, bool stream, char *out, size_t size)
{
    (void)upstream;
    (void)stream;
    snprintf(out, size, "/v1/messages");
    return PLM_OK;
}

static int anthropic_body(const struct plm_upstream *upstream, const struct plm_upstream_request *request,
                          char **body)
{
    char *system = upstream_system_prompt(request);
    if (!system)
        return plm_fail(PLM_ERR_NOMEM, "upstream request: out of memory");
    cJSON *root = cJSON_CreateObject();
    cJSON_AddStringToObject(root, "model", upstream->model);
    cJSON_AddNumberToObject(root, "max_tokens", upstream_max_tokens(upstream, request, ANTHROPIC_DEFAULT_MAX_TOKENS));
    if (system[0])
        cJSON_AddStringToObject(root, "system", system);
    free(system);
    cJSON *messages = cJSON_AddArrayToObject(root, "messages");
    for (int i = 0; i < request->n_messages; i++) {
        if (strcmp(request->messages[i].role, "system") == 0)
            continue;
        cJSON *message = cJSON_CreateObject();
        cJSON_AddStringToObject(message, "role", request->messages[i].role);
        cJSON_AddStringToObject(message, "content", request->messages[i].content);
        cJSON_AddItemToArray(messages, message);
    }
    if (request->temperature >= 0)
        cJSON_AddNumberToObject(root, "temperature", upstream_temperature(request));
    if (request->stream)
        cJSON_AddBoolToObject(root, "stream", true);
    return upstream_print_body(root, body);
}

static void read_stop_reason(const cJSON *holder, struct upstream_reply *reply)
{
    const cJSON *stop = cJSON_GetObjectItemCaseSensitive(holder, "stop_reason");
    if (cJSON_IsString(stop))
        reply_finish_from_word(reply, stop->valuestring, finish_words,
                               (int)(sizeof finish_words / sizeof finish_words[0]));
}

static void read_usage(const cJSON *holder, struct upstream_reply *reply)
{
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(holder, "usage");
    upstream_read_count(usage, "input_tokens", &reply->prompt_tokens);
    upstream_read_count(usage, "output_tokens", &reply->completion_tokens);
}

/* A content block's text: only "text" blocks (and "text_delta" deltas) carry answer text. */
static int read_text(const cJSON *block, const char *text_type, struct upstream_reply *reply)
{
    const cJSON *type = cJSON_GetObjectItemCaseSensitive(block, "type");
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(block, "text");
    if (!cJSON_IsString(type) || strcmp(type->valuestring, text_type) != 0)
        return PLM_OK;
    if (!cJSON_IsString(text))
        return plm_fail(PLM_ERR_FORMAT, "upstream answer: a %s block without a text string", text_type);
    return reply_add_text(reply, text->valuestring, strlen(text->valuestring));
}

static int anthropic_parse_response(const char *json, size_t len, struct upstream_reply *reply)
{
    cJSON *root = upstream_parse_json(json, len);
    if (!root)
        return PLM_ERR_FORMAT;
    int rc = upstream_check_error(root);
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(root, "content");
    if (rc == PLM_OK && !cJSON_IsArray(content))
        rc = plm_fail(PLM_ERR_FORMAT, "upstream answer: no \"content\" array");
    const cJSON *block;
    cJSON_ArrayForEach(block, content) {
        if (rc == PLM_OK)
            rc = read_text(block, "text", reply);
    }
    if (rc == PLM_OK) {
        read_stop_reason(root, reply);
        read_usage(root, reply);
        reply->ended = true;
    }
    cJSON_Delete(root);
    return rc;
}

static int anthropic_parse_event(const char *event, const char *data, size_t len, struct upstream_reply *reply)
{
    cJSON *root = upstream_parse_json(data, len);
    if (!root)
        return PLM_ERR_FORMAT;
    int rc = upstream_check_error(root);
    if (rc == PLM_OK && strcmp(event, "message_start") == 0) {
        read_usage(cJSON_GetObjectItemCaseSensitive(root, "message"), reply);
    } else if (rc == PLM_OK && strcmp(event, "content_block_start") == 0) {
        rc = read_text(cJSON_GetObjectItemCaseSensitive(root, "content_block"), "text", reply);
    } else if (rc == PLM_OK && strcmp(event, "content_block_delta") == 0) {
        const cJSON *delta = cJSON_GetObjectItemCaseSensitive(root, "delta");
        rc = cJSON_IsObject(delta) ? read_text(delta, "text_delta", reply)
                                   : plm_fail(PLM_ERR_FORMAT, "upstream stream: content_block_delta without a delta");
    } else if (rc == PLM_OK && strcmp(event, "message_delta") == 0) {
        read_stop_reason(cJSON_GetObjectItemCaseSensitive(root, "delta"), reply);
        read_usage(root, reply);
    } else if (rc == PLM_OK && strcmp(event, "message_stop") == 0) {
        reply->ended = true;
    }
    cJSON_Delete(root);
    return rc;
}

const struct upstream_wire upstream_wire_anthropic = {
    .key_header = "x-api-key: ",
    .extra_header = "anthropic-version: 2023-06-01",
    .path = anthropic_path,
    .body = anthropic_body,
    .parse_response = anthropic_parse_response,
    .parse_event = anthropic_parse_event,
};
