/*
 * Google's Gemini API (generativelanguage.googleapis.com).
 *
 *   POST {base_url}/models/{model}:generateContent                   x-goog-api-key: KEY
 *   POST {base_url}/models/{model}:streamGenerateContent?alt=sse     (streamed)
 *   {"systemInstruction": {"parts": [{"text": TEXT}]},
 *    "contents": [{"role": "user"|"model", "parts": [{"text": TEXT}]}, ...],
 *    "generationConfig": {"maxOutputTokens": N, "temperature": T}}
 *
 * The assistant's role is "model"; the system prompt is apart from the turns.
 * Answer: {"candidates": [{"content": {"role": "model", "parts": [{"text": TEXT}, ...]},
 *          "finishReason": "STOP"}], "usageMetadata": {"promptTokenCount": P, "candidatesTokenCount": C}}
 * Stream: "data: {answer}" events, each a partial answer of the same shape
 * whose texts add up; the last one has the finishReason. There is no end
 * marker. A prompt the filters block gets no candidates and a
 * promptFeedback.blockReason.
 */
#include "routing/upstream.h"

#include "core/error.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const struct finish_word finish_words[] = {
    {"STOP", PLM_FINISH_STOP},
    {"MAX_TOKENS", PLM_FINISH_LENGTH},
    {"SAFETY", PLM_FINISH_FILTERED},
    {"RECITATION", PLM_FINISH_FILTERED},
    {"BLOCKLIST", PLM_FINISH_FILTERED},
    {"PROHIBITED_CONTENT", PLM_FINISH_FILTERED},
    {"SPII", PLM_FINISH_FILTERED},
    {"IMAGE_SAFETY", PLM_FINISH_FILTERED},
};

static int gemini_path(const struct plm_upstream *upstream, bool stream, char *out, size_t size)
{
    int n = snprintf(out, size, "/models/%s:%s", upstream->model,
                     stream ? "streamGenerateContent?alt=sse" : "generateContent");
    if (n < 0 || (size_t)n >= size)
        return plm_fail(PLM_ERR_LIMIT, "upstream '%s': the model name is too long", upstream->name);
    return PLM_OK;
}

static cJSON *text_parts(const char *text)
{
    cJSON *holder = cJSON_CreateObject();
    cJSON *part = cJSON_CreateObject();
    cJSON_AddStringToObject(part, "text", text);
    cJSON_AddItemToArray(cJSON_AddArrayToObject(holder, "parts"), part);
    return holder;
}

static int gemini_body(const struct plm_upstream *upstream, const struct plm_upstream_request *request, char **body)
{
    char *system = upstream_system_prompt(request);
    if (!system)
        return plm_fail(PLM_ERR_NOMEM, "upstream request: out of memory");
    cJSON *root = cJSON_CreateObject();
    if (system[0])
        cJSON_AddItemToObject(root, "systemInstruction", text_parts(system));
    free(system);
    cJSON *contents = cJSON_AddArrayToObject(root, "contents");
    for (int i = 0; i < request->n_messages; i++) {
        const char *role = request->messages[i].role;
        if (strcmp(role, "system") == 0)
            continue;
        cJSON *turn = text_parts(request->messages[i].content);
        cJSON_AddStringToObject(turn, "role", strcmp(role, "assistant") == 0 ? "model" : "user");
        cJSON_AddItemToArray(contents, turn);
    }
    int max_tokens = upstream_max_tokens(upstream, request, 0);
    if (max_tokens > 0 || request->temperature >= 0) {
        cJSON *config = cJSON_AddObjectToObject(root, "generationConfig");
        if (max_tokens > 0)
            cJSON_AddNumberToObject(config, "maxOutputTokens", max_tokens);
        if (request->temperature >= 0)
            cJSON_AddNumberToObject(config, "temperature", upstream_temperature(request));
    }
    return upstream_print_body(root, body);
}

/* One answer, whole or a streamed piece: the first candidate's texts, its
 * finish reason, the usage. Parts marked "thought" are the model's reasoning,
 * not its answer. */
static int read_answer(const cJSON *root, struct upstream_reply *reply)
{
    const cJSON *usage = cJSON_GetObjectItemCaseSensitive(root, "usageMetadata");
    upstream_read_count(usage, "promptTokenCount", &reply->prompt_tokens);
    upstream_read_count(usage, "candidatesTokenCount", &reply->completion_tokens);
    const cJSON *candidates = cJSON_GetObjectItemCaseSensitive(root, "candidates");
    const cJSON *candidate = cJSON_GetArrayItem(candidates, 0);
    if (!candidate) {
        const cJSON *feedback = cJSON_GetObjectItemCaseSensitive(root, "promptFeedback");
        const cJSON *blocked = cJSON_GetObjectItemCaseSensitive(feedback, "blockReason");
        if (cJSON_IsString(blocked)) {
            reply_set_finish(reply, PLM_FINISH_FILTERED, blocked->valuestring);
            return PLM_OK;
        }
        /* A streamed piece may carry only the usage. */
        return usage ? PLM_OK : plm_fail(PLM_ERR_FORMAT, "upstream answer: no candidates");
    }
    const cJSON *parts = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(candidate, "content"), "parts");
    const cJSON *part;
    cJSON_ArrayForEach(part, parts) {
        const cJSON *text = cJSON_GetObjectItemCaseSensitive(part, "text");
        if (!cJSON_IsString(text) || cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(part, "thought")))
            continue;
        int rc = reply_add_text(reply, text->valuestring, strlen(text->valuestring));
        if (rc)
            return rc;
    }
    const cJSON *finish = cJSON_GetObjectItemCaseSensitive(candidate, "finishReason");
    if (cJSON_IsString(finish) && strcmp(finish->valuestring, "FINISH_REASON_UNSPECIFIED") != 0) {
        reply_finish_from_word(reply, finish->valuestring, finish_words,
                               (int)(sizeof finish_words / sizeof finish_words[0]));
        reply->ended = true;
    }
    return PLM_OK;
}

/* A streamed piece has the shape of a whole answer. */
static int gemini_parse_event(const char *event, const char *data, size_t len, struct upstream_reply *reply)
{
    (void)event;
    cJSON *root = upstream_parse_json(data, len);
    if (!root)
        return PLM_ERR_FORMAT;
    int rc = upstream_check_error(root);
    if (rc == PLM_OK)
        rc = read_answer(root, reply);
    cJSON_Delete(root);
    return rc;
}

static int gemini_parse_response(const char *json, size_t len, struct upstream_reply *reply)
{
    int rc = gemini_parse_event("message", json, len, reply);
    reply->ended = rc == PLM_OK;
    return rc;
}

const struct upstream_wire upstream_wire_gemini = {
    .key_header = "x-goog-api-key: ",
    .extra_header = NULL,
    .path = gemini_path,
    .body = gemini_body,
    .parse_response = gemini_parse_response,
    .parse_event = gemini_parse_event,
};
