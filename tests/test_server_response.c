/*
 * The server's pure parts: OpenAI-shaped JSON bodies and chunks, UTF-8
 * repair and log-probabilities. (The text held back for stop strings and
 * unfinished characters is tested in test_text_stream.c.)
 */
#include "server/logprob.h"
#include "server/response.h"
#include "test_util.h"
#include "tiny_model.h"
#include "tensor/types.h"

#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* --------------------------------------------------------------- UTF-8 */

static void expect_sanitized(const char *in, size_t len, const char *want)
{
    char *out = utf8_sanitize(in, len);
    assert_non_null(out);
    assert_string_equal(out, want);
    free(out);
}

static void test_utf8_sanitize(void **state)
{
    (void)state;
    const char *valid = "a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80z"; /* a é € 😀 z */
    expect_sanitized(valid, strlen(valid), valid);
    expect_sanitized("", 0, "");
    expect_sanitized("a\x80z", 3, "a\xEF\xBF\xBDz");                  /* stray continuation */
    expect_sanitized("a\xE2\x82", 3, "a\xEF\xBF\xBD\xEF\xBF\xBD");     /* truncated at the end */
    expect_sanitized("\xC0\x80", 2, "\xEF\xBF\xBD\xEF\xBF\xBD");       /* overlong NUL */
    expect_sanitized("\xED\xA0\x80", 3, "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* surrogate */
    expect_sanitized("\xF4\x90\x80\x80", 4,
                     "\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"); /* above U+10FFFF */
    expect_sanitized("a\0b", 3, "a\xEF\xBF\xBD" "b");                 /* NUL would cut the string */
    expect_sanitized("\xFF", 1, "\xEF\xBF\xBD");
}

/* ------------------------------------------------------------- logprobs */

static void test_logprob_values(void **state)
{
    (void)state;
    float logits[5] = {1.0f, 3.0f, -INFINITY, 3.0f, 2.0f};
    struct token_logprob lp;
    token_logprob_compute(logits, 5, 4, 4, &lp);
    double norm = log(exp(1.0) + 2 * exp(3.0) + exp(2.0));
    assert_true(fabs(lp.logprob - (2.0 - norm)) < 1e-6);
    assert_int_equal(lp.n_top, 4);
    int32_t want[4] = {1, 3, 4, 0}; /* ties keep the lower id first; -inf comes last */
    for (int i = 0; i < 4; i++)
        assert_int_equal(lp.top_token[i], want[i]);
    assert_true(fabs(lp.top_logprob[0] - (3.0 - norm)) < 1e-6);
    double sum = 0;
    for (int i = 0; i < 4; i++)
        sum += exp(lp.top_logprob[i]);
    assert_true(fabs(sum - 1.0) < 1e-6);
    token_logprob_compute(logits, 5, 2, 5, &lp); /* a masked token: still a finite number for JSON */
    assert_true(isfinite(lp.logprob) && lp.logprob < -1000);
    assert_true(isfinite(lp.top_logprob[4]));
    token_logprob_compute(logits, 5, 0, 0, &lp);
    assert_int_equal(lp.n_top, 0);
}

/* Large logits do not overflow the softmax. */
static void test_logprob_large_logits(void **state)
{
    (void)state;
    float logits[3] = {1000.0f, 1000.0f, 999.0f};
    struct token_logprob lp;
    token_logprob_compute(logits, 3, 0, 1, &lp);
    assert_true(fabs(lp.logprob - (-log(2.0 + exp(-1.0)))) < 1e-5);
}

/* --------------------------------------------------------------- bodies */

static cJSON *parse_json(char *text)
{
    assert_non_null(text);
    cJSON *root = cJSON_Parse(text);
    assert_non_null(root);
    free(text);
    return root;
}

/* "data: {...}\n\n" -> the JSON. */
static cJSON *parse_event(char *event)
{
    assert_non_null(event);
    assert_memory_equal(event, "data: ", 6);
    size_t n = strlen(event);
    assert_true(n > 8 && event[n - 1] == '\n' && event[n - 2] == '\n' && !memchr(event, '\n', n - 2));
    cJSON *root = cJSON_Parse(event + 6);
    assert_non_null(root);
    free(event);
    return root;
}

static const char *get_string(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    assert_true(cJSON_IsString(item));
    return item->valuestring;
}

static double get_number(const cJSON *obj, const char *name)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(obj, name);
    assert_true(cJSON_IsNumber(item));
    return item->valuedouble;
}

static bool is_null(const cJSON *obj, const char *name)
{
    return cJSON_IsNull(cJSON_GetObjectItemCaseSensitive(obj, name));
}

static const cJSON *only_choice(const cJSON *root)
{
    const cJSON *choices = cJSON_GetObjectItemCaseSensitive(root, "choices");
    assert_int_equal(cJSON_GetArraySize(choices), 1);
    const cJSON *choice = cJSON_GetArrayItem(choices, 0);
    assert_int_equal(get_number(choice, "index"), 0);
    return choice;
}

static const struct response_meta chat_meta = {API_CHAT, "chatcmpl-1", 1700000000, "m.gguf", false, false,
                                               {.where = RESPONSE_ROUTE_DEVICE}};

/* pocketlm's extension {"pocketlm":{"route":"device"}}, or its absence. */
static void expect_route(const cJSON *root, const char *route)
{
    const cJSON *extension = cJSON_GetObjectItemCaseSensitive(root, "pocketlm");
    if (!route) {
        assert_null(extension);
        return;
    }
    assert_int_equal(cJSON_GetArraySize(extension), 1);
    assert_string_equal(get_string(extension, "route"), route);
}

static void test_chat_completion_body(void **state)
{
    (void)state;
    struct response_usage usage = {5, 3};
    cJSON *root = parse_json(response_complete(NULL, &chat_meta, "Hi\xFF there", 6, NULL, 0, "stop", &usage));
    assert_string_equal(get_string(root, "id"), "chatcmpl-1");
    assert_string_equal(get_string(root, "object"), "chat.completion");
    assert_int_equal(get_number(root, "created"), 1700000000);
    assert_string_equal(get_string(root, "model"), "m.gguf");
    const cJSON *choice = only_choice(root);
    const cJSON *message = cJSON_GetObjectItemCaseSensitive(choice, "message");
    assert_string_equal(get_string(message, "role"), "assistant");
    assert_string_equal(get_string(message, "content"), "Hi\xEF\xBF\xBD th"); /* len 6, repaired */
    assert_true(is_null(message, "refusal") && is_null(choice, "logprobs"));
    assert_string_equal(get_string(choice, "finish_reason"), "stop");
    const cJSON *u = cJSON_GetObjectItemCaseSensitive(root, "usage");
    assert_int_equal(get_number(u, "prompt_tokens"), 5);
    assert_int_equal(get_number(u, "completion_tokens"), 3);
    assert_int_equal(get_number(u, "total_tokens"), 8);
    expect_route(root, "device");
    cJSON_Delete(root);
}

static void test_chat_chunks(void **state)
{
    (void)state;
    struct response_meta meta = chat_meta;
    meta.include_usage = true;
    cJSON *first = parse_event(response_chunk(NULL, &meta, "", 0, true, NULL, 0, NULL));
    assert_string_equal(get_string(first, "object"), "chat.completion.chunk");
    const cJSON *delta = cJSON_GetObjectItemCaseSensitive(only_choice(first), "delta");
    assert_string_equal(get_string(delta, "role"), "assistant");
    assert_string_equal(get_string(delta, "content"), "");
    assert_true(is_null(only_choice(first), "finish_reason") && is_null(first, "usage"));
    expect_route(first, NULL); /* only the chunks that end the stream carry it */
    cJSON_Delete(first);

    cJSON *middle = parse_event(response_chunk(NULL, &meta, "ab\ncd", 5, false, NULL, 0, NULL));
    delta = cJSON_GetObjectItemCaseSensitive(only_choice(middle), "delta");
    assert_null(cJSON_GetObjectItemCaseSensitive(delta, "role"));
    assert_string_equal(get_string(delta, "content"), "ab\ncd"); /* escaped: one line on the wire */
    expect_route(middle, NULL);
    cJSON_Delete(middle);

    cJSON *last = parse_event(response_chunk(NULL, &meta, "", 0, false, NULL, 0, "length"));
    delta = cJSON_GetObjectItemCaseSensitive(only_choice(last), "delta");
    assert_int_equal(cJSON_GetArraySize(delta), 0); /* {} */
    assert_string_equal(get_string(only_choice(last), "finish_reason"), "length");
    expect_route(last, "device");
    cJSON_Delete(last);

    struct response_usage usage = {4, 2};
    cJSON *tail = parse_event(response_usage_chunk(&meta, &usage));
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(tail, "choices")), 0);
    assert_int_equal(get_number(cJSON_GetObjectItemCaseSensitive(tail, "usage"), "total_tokens"), 6);
    expect_route(tail, "device");
    cJSON_Delete(tail);
}

static void test_legacy_bodies(void **state)
{
    (void)state;
    struct response_meta meta = {API_COMPLETION, "cmpl-9", 1, "m", false, false, {.where = RESPONSE_ROUTE_DEVICE}};
    struct response_usage usage = {1, 1};
    cJSON *root = parse_json(response_complete(NULL, &meta, "xyz", 3, NULL, 0, "length", &usage));
    assert_string_equal(get_string(root, "object"), "text_completion");
    assert_string_equal(get_string(only_choice(root), "text"), "xyz");
    assert_true(is_null(only_choice(root), "logprobs"));
    cJSON_Delete(root);
    cJSON *chunk = parse_event(response_chunk(NULL, &meta, "q", 1, true, NULL, 0, NULL));
    assert_string_equal(get_string(chunk, "object"), "text_completion");
    assert_string_equal(get_string(only_choice(chunk), "text"), "q");
    assert_null(cJSON_GetObjectItemCaseSensitive(chunk, "usage")); /* include_usage off */
    cJSON_Delete(chunk);
}

/* Logprob shapes need token text: a tiny model's vocabulary (byte tokens included). */
static void test_logprob_shapes(void **state)
{
    (void)state;
    struct tiny_model_spec spec = {.arch = "llama", .n_embd = 32, .n_ff = 64, .n_layer = 1, .n_head = 2,
                                   .n_head_kv = 1, .head_dim = 16, .n_ctx_train = 64, .rope_freq_base = 10000.0f,
                                   .norm_eps = 1e-5f, .weight_type = PLM_TYPE_F32, .seed = 3};
    const char *path = temp_path("response.gguf");
    assert_int_equal(tiny_model_write(path, &spec), PLM_OK);
    plm_model *model;
    assert_int_equal(plm_model_load(path, &model), PLM_OK);

    int32_t byte_e2 = 3 + 0xE2; /* <0xE2>: half a character on its own */
    struct token_logprob lp[2] = {
        {.token = byte_e2, .logprob = -0.5f, .n_top = 2, .top_token = {byte_e2, 3 + 'a'}, .top_logprob = {-0.5f, -1.5f}},
        {.token = 3 + 'a', .logprob = -0.25f, .n_top = 0, .text_offset = 1},
    };
    struct response_meta meta = chat_meta;
    meta.logprobs = true;
    cJSON *chunk = parse_event(response_chunk(model, &meta, "x", 1, false, lp, 2, NULL));
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(only_choice(chunk), "logprobs"), "content");
    assert_int_equal(cJSON_GetArraySize(content), 2);
    const cJSON *entry = cJSON_GetArrayItem(content, 0);
    assert_string_equal(get_string(entry, "token"), "\xEF\xBF\xBD"); /* the text is repaired ... */
    const cJSON *bytes = cJSON_GetObjectItemCaseSensitive(entry, "bytes");
    assert_int_equal(cJSON_GetArraySize(bytes), 1);
    assert_int_equal(cJSON_GetArrayItem(bytes, 0)->valueint, 0xE2); /* ... the bytes are exact */
    assert_true(get_number(entry, "logprob") == -0.5);
    const cJSON *top = cJSON_GetObjectItemCaseSensitive(entry, "top_logprobs");
    assert_int_equal(cJSON_GetArraySize(top), 2);
    assert_string_equal(get_string(cJSON_GetArrayItem(top, 1), "token"), "a");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(content, 1), "top_logprobs")), 0);
    cJSON_Delete(chunk);

    /* Chunks without tokens carry null; a whole body carries an empty list. */
    chunk = parse_event(response_chunk(model, &meta, "", 0, false, NULL, 0, "stop"));
    assert_true(is_null(only_choice(chunk), "logprobs"));
    cJSON_Delete(chunk);

    struct response_meta legacy = {API_COMPLETION, "cmpl-1", 1, "m", true, false, {.where = RESPONSE_ROUTE_DEVICE}};
    struct response_usage usage = {1, 2};
    cJSON *root = parse_json(response_complete(model, &legacy, "\xE2" "a", 2, lp, 2, "length", &usage));
    const cJSON *logprobs = cJSON_GetObjectItemCaseSensitive(only_choice(root), "logprobs");
    assert_int_equal(cJSON_GetArraySize(cJSON_GetObjectItemCaseSensitive(logprobs, "tokens")), 2);
    assert_int_equal(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(logprobs, "text_offset"), 1)->valueint, 1);
    const cJSON *top0 = cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(logprobs, "top_logprobs"), 0);
    assert_true(get_number(top0, "a") == -1.5);
    cJSON_Delete(root);
    plm_model_free(model);
}

static void test_error_bodies(void **state)
{
    (void)state;
    struct api_error err;
    assert_false(api_fail(&err, 400, "invalid_request_error", "invalid_value", "top_p", "'%s' is \"bad\"", "top_p"));
    cJSON *root = parse_json(response_error(&err));
    const cJSON *e = cJSON_GetObjectItemCaseSensitive(root, "error");
    assert_int_equal(cJSON_GetArraySize(e), 4);
    assert_string_equal(get_string(e, "message"), "'top_p' is \"bad\"");
    assert_string_equal(get_string(e, "type"), "invalid_request_error");
    assert_string_equal(get_string(e, "param"), "top_p");
    assert_string_equal(get_string(e, "code"), "invalid_value");
    cJSON_Delete(root);

    api_fail(&err, 503, "server_error", "", "", "busy");
    root = parse_event(response_error_event(&err));
    e = cJSON_GetObjectItemCaseSensitive(root, "error");
    assert_true(is_null(e, "param") && is_null(e, "code"));
    cJSON_Delete(root);

    /* A message longer than the buffer is cut, not overflowed. */
    char long_text[1000];
    memset(long_text, 'x', sizeof long_text - 1);
    long_text[sizeof long_text - 1] = '\0';
    api_fail(&err, 400, "t", "", long_text, "%s", long_text);
    assert_int_equal(strlen(err.message), sizeof err.message - 1);
    assert_int_equal(strlen(err.param), sizeof err.param - 1);
}

static void test_models_body(void **state)
{
    (void)state;
    cJSON *root = parse_json(response_models("tiny \"model\"", 42));
    assert_string_equal(get_string(root, "object"), "list");
    const cJSON *data = cJSON_GetObjectItemCaseSensitive(root, "data");
    assert_int_equal(cJSON_GetArraySize(data), 1);
    const cJSON *m = cJSON_GetArrayItem(data, 0);
    assert_string_equal(get_string(m, "id"), "tiny \"model\"");
    assert_string_equal(get_string(m, "object"), "model");
    assert_int_equal(get_number(m, "created"), 42);
    assert_string_equal(get_string(m, "owned_by"), "pocketlm");
    cJSON_Delete(root);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_utf8_sanitize),
        cmocka_unit_test(test_logprob_values),
        cmocka_unit_test(test_logprob_large_logits),
        cmocka_unit_test(test_chat_completion_body),
        cmocka_unit_test(test_chat_chunks),
        cmocka_unit_test(test_legacy_bodies),
        cmocka_unit_test(test_logprob_shapes),
        cmocka_unit_test(test_error_bodies),
        cmocka_unit_test(test_models_body),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
