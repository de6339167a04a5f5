/*
 * Server request bodies: every field read and checked, unknown fields ignored,
 * and every kind of bad input answered with a 400 that names the field.
 */
#include "server/request.h"
#include "test_util.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static bool parse(const char *json, enum api_kind kind, struct api_request *req, struct api_error *err)
{
    return request_parse(json, strlen(json), kind, req, err);
}

/* The body must fail with 400 and name `param` ("" for none). */
static void expect_rejected(const char *json, enum api_kind kind, const char *param)
{
    struct api_request req;
    struct api_error err;
    if (parse(json, kind, &req, &err)) {
        request_free(&req);
        fail_msg("accepted: %s", json);
    }
    assert_int_equal(err.status, 400);
    assert_string_equal(err.type, "invalid_request_error");
    assert_string_equal(err.param, param);
    assert_true(strlen(err.message) > 0);
}

static void test_chat_fields(void **state)
{
    (void)state;
    const char *json = "{\"model\":\"m\",\"messages\":[{\"role\":\"developer\",\"content\":\"Be brief.\"},"
                       "{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"Hel\"},{\"type\":\"text\",\"text\":\"lo\"}]},"
                       "{\"role\":\"assistant\",\"content\":null}],"
                       "\"max_tokens\":7,\"temperature\":0.5,\"top_p\":0.9,\"stop\":[\"a\",\"bc\"],\"seed\":-3,"
                       "\"logprobs\":true,\"top_logprobs\":4,\"n\":1,\"stream\":true,"
                       "\"stream_options\":{\"include_usage\":true}}";
    struct api_request req;
    struct api_error err;
    assert_true(parse(json, API_CHAT, &req, &err));
    assert_int_equal(req.n_messages, 3);
    assert_string_equal(req.messages[0].role, "system"); /* developer is the new name of system */
    assert_string_equal(req.messages[1].content, "Hello");
    assert_string_equal(req.messages[2].content, "");
    assert_int_equal(req.max_tokens, 7);
    assert_true(req.sampling.temperature == 0.5f);
    assert_true(req.sampling.top_p == 0.9f);
    assert_int_equal(req.sampling.seed, (uint64_t)(int64_t)-3);
    assert_int_equal(req.n_stop, 2);
    assert_string_equal(req.stop[1], "bc");
    assert_true(req.logprobs && req.stream && req.include_usage);
    assert_int_equal(req.top_logprobs, 4);
    request_free(&req);
}

/* Absent and null fields keep the defaults; unknown fields are ignored. */
static void test_defaults_and_unknown_fields(void **state)
{
    (void)state;
    struct plm_sampler_params defaults;
    plm_sampler_params_default(&defaults);
    struct api_request req;
    struct api_error err;
    assert_true(parse("{\"prompt\":\"x\",\"temperature\":null,\"frequency_penalty\":1,"
                      "\"tools\":[{\"deep\":{\"er\":[1,2,{}]}}],\"user\":\"u\"}",
                      API_COMPLETION, &req, &err));
    assert_string_equal(req.prompt, "x");
    assert_int_equal(req.max_tokens, -1);
    assert_true(req.sampling.temperature == defaults.temperature);
    assert_int_equal(req.sampling.top_k, defaults.top_k);
    assert_false(req.stream || req.logprobs || req.include_usage);
    assert_int_equal(req.n_stop, 0);
    request_free(&req);

    /* max_completion_tokens is the newer name and wins. */
    assert_true(parse("{\"prompt\":\"x\",\"max_tokens\":5,\"max_completion_tokens\":9}", API_COMPLETION, &req, &err));
    assert_int_equal(req.max_tokens, 9);
    request_free(&req);
    /* A prompt may be an array of one string; stop may be one string. */
    assert_true(parse("{\"prompt\":[\"y\"],\"stop\":\"\\n\"}", API_COMPLETION, &req, &err));
    assert_string_equal(req.prompt, "y");
    assert_int_equal(req.n_stop, 1);
    assert_string_equal(req.stop[0], "\n");
    request_free(&req);
}

/* Legacy logprobs is the number of alternatives, and its presence asks for logprobs. */
static void test_legacy_logprobs(void **state)
{
    (void)state;
    struct api_request req;
    struct api_error err;
    assert_true(parse("{\"prompt\":\"x\",\"logprobs\":0}", API_COMPLETION, &req, &err));
    assert_true(req.logprobs);
    assert_int_equal(req.top_logprobs, 0);
    request_free(&req);
    assert_true(parse("{\"prompt\":\"x\",\"logprobs\":20}", API_COMPLETION, &req, &err));
    assert_int_equal(req.top_logprobs, 20);
    request_free(&req);
    expect_rejected("{\"prompt\":\"x\",\"logprobs\":true}", API_COMPLETION, "logprobs");
    expect_rejected("{\"prompt\":\"x\",\"logprobs\":21}", API_COMPLETION, "logprobs");
    expect_rejected("{\"prompt\":\"x\",\"logprobs\":-1}", API_COMPLETION, "logprobs");
}

static void test_wrong_types_name_the_field(void **state)
{
    (void)state;
    const char *m = "\"messages\":[{\"role\":\"user\",\"content\":\"hi\"}]";
    struct {
        const char *fields;
        const char *param;
    } cases[] = {
        {"\"temperature\":\"hot\"", "temperature"},
        {"\"temperature\":2.5", "temperature"},
        {"\"temperature\":-0.1", "temperature"},
        {"\"top_p\":0", "top_p"},
        {"\"top_p\":1.5", "top_p"},
        {"\"max_tokens\":0", "max_tokens"},
        {"\"max_tokens\":1.5", "max_tokens"},
        {"\"max_tokens\":\"10\"", "max_tokens"},
        {"\"max_tokens\":1e300", "max_tokens"},
        {"\"max_completion_tokens\":-4", "max_completion_tokens"},
        {"\"seed\":0.5", "seed"},
        {"\"seed\":1e30", "seed"},
        {"\"n\":2", "n"},
        {"\"n\":0", "n"},
        {"\"stream\":\"yes\"", "stream"},
        {"\"stream\":1", "stream"},
        {"\"stream_options\":true", "stream_options"},
        {"\"stream_options\":{\"include_usage\":1}", "include_usage"},
        {"\"stop\":5", "stop"},
        {"\"stop\":[\"a\",null]", "stop"},
        {"\"stop\":[\"a\",\"b\",\"c\",\"d\",\"e\"]", "stop"},
        {"\"logprobs\":1", "logprobs"},
        {"\"top_logprobs\":3", "top_logprobs"}, /* without logprobs: true */
        {"\"logprobs\":true,\"top_logprobs\":21", "top_logprobs"},
        {"\"model\":7", "model"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char json[512];
        snprintf(json, sizeof json, "{%s,%s}", m, cases[i].fields);
        expect_rejected(json, API_CHAT, cases[i].param);
    }
}

static void test_bad_messages(void **state)
{
    (void)state;
    expect_rejected("{}", API_CHAT, "messages");
    expect_rejected("{\"messages\":null}", API_CHAT, "messages");
    expect_rejected("{\"messages\":[]}", API_CHAT, "messages");
    expect_rejected("{\"messages\":{\"role\":\"user\"}}", API_CHAT, "messages");
    expect_rejected("{\"messages\":[\"hi\"]}", API_CHAT, "messages[0]");
    expect_rejected("{\"messages\":[{\"content\":\"hi\"}]}", API_CHAT, "messages[0]");
    expect_rejected("{\"messages\":[{\"role\":\"user\",\"content\":\"a\"},{\"role\":\"tool\",\"content\":\"b\"}]}",
                    API_CHAT, "messages[1].role");
    expect_rejected("{\"messages\":[{\"role\":\"user\",\"content\":42}]}", API_CHAT, "messages[0].content");
    expect_rejected("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"image_url\",\"image_url\":{}}]}]}",
                    API_CHAT, "messages[0].content");
    expect_rejected("{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\"}]}]}", API_CHAT,
                    "messages[0].content");
    expect_rejected("{\"prompt\":null}", API_COMPLETION, "prompt");
    expect_rejected("{\"prompt\":[\"a\",\"b\"]}", API_COMPLETION, "prompt");
    expect_rejected("{\"prompt\":[1,2,3]}", API_COMPLETION, "prompt");
}

static void test_malformed_json(void **state)
{
    (void)state;
    const char *bad[] = {"", "{", "{\"prompt\":", "nul", "{\"prompt\":\"x\",}", "{'prompt':'x'}", "[1,2]", "\"x\"",
                         "42", "null", "{\"prompt\":\"x\"} trailing"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        expect_rejected(bad[i], API_COMPLETION, "");
    /* A body with a NUL inside: only the given length counts. */
    struct api_request req;
    struct api_error err;
    assert_false(request_parse("{\"prompt\":\"x\"}\0junk", 19, API_COMPLETION, &req, &err));
    assert_int_equal(err.status, 400);
}

/* Every truncation of a valid body is refused cleanly (ASan watches the reads). */
static void test_every_truncation(void **state)
{
    (void)state;
    const char *json = "{\"messages\":[{\"role\":\"user\",\"content\":[{\"type\":\"text\",\"text\":\"h\\u00e9\"}]}],"
                       "\"stop\":[\"a\"],\"temperature\":0.1,\"stream_options\":{\"include_usage\":true}}";
    size_t len = strlen(json);
    for (size_t n = 0; n < len; n++) {
        char *copy = malloc(n ? n : 1); /* exactly n bytes, no terminator to lean on */
        assert_non_null(copy);
        memcpy(copy, json, n);
        struct api_request req;
        struct api_error err;
        assert_false(request_parse(copy, n, API_CHAT, &req, &err));
        assert_int_equal(err.status, 400);
        free(copy);
    }
    struct api_request req;
    struct api_error err;
    assert_true(request_parse(json, len, API_CHAT, &req, &err));
    assert_string_equal(req.messages[0].content, "h\xC3\xA9");
    request_free(&req);
}

/* Deep nesting (in an ignored field) is refused by the parser's depth limit, not a stack overflow. */
static void test_deep_nesting(void **state)
{
    (void)state;
    size_t depth = 100000;
    char *json = malloc(2 * depth + 64);
    assert_non_null(json);
    size_t n = (size_t)sprintf(json, "{\"prompt\":\"x\",\"junk\":");
    memset(json + n, '[', depth);
    memset(json + n + depth, ']', depth);
    strcpy(json + n + 2 * depth, "}");
    expect_rejected(json, API_COMPLETION, "");
    free(json);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_chat_fields),
        cmocka_unit_test(test_defaults_and_unknown_fields),
        cmocka_unit_test(test_legacy_logprobs),
        cmocka_unit_test(test_wrong_types_name_the_field),
        cmocka_unit_test(test_bad_messages),
        cmocka_unit_test(test_malformed_json),
        cmocka_unit_test(test_every_truncation),
        cmocka_unit_test(test_deep_nesting),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
