/*
 * The upstream wire formats: requests written for OpenAI's chat completions,
 * Anthropic's Messages and Gemini's generateContent, and their answers read,
 * whole and streamed, from fixtures in tests/data/upstream/ written in the
 * shapes the providers' API references document. Streams must give the same
 * text pieces however the bytes are split; malformed answers must be refused
 * with a message, never crash. Also the SSE parser alone, and the client's
 * checks that need no network (keys, roles, a refused connection, the head
 * the audit sees).
 */
#include "core/error.h"
#include "routing/sse.h"
#include "routing/upstream.h"
#include "test_util.h"

#include <cjson/cJSON.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ helpers */

static char fixture_file[4096];

/* The fixture's text (malloc'd); fixtures sit in tests/data/upstream beside this file. */
static char *read_fixture(const char *name, size_t *len)
{
    const char *slash = strrchr(__FILE__, '/');
    snprintf(fixture_file, sizeof fixture_file, "%.*s/data/upstream/%s", slash ? (int)(slash - __FILE__) : 1,
             slash ? __FILE__ : ".", name);
    FILE *f = fopen(fixture_file, "rb");
    assert_non_null(f);
    char *text = malloc(1 << 16);
    assert_non_null(text);
    *len = fread(text, 1, (1 << 16) - 1, f);
    text[*len] = '\0';
    fclose(f);
    return text;
}

/* Every piece of text handed to the caller, each followed by '|'. */
struct deltas {
    char joined[4096];
    int count;
    int stop_after; /* > 0: return false on this delta */
};

static bool record_delta(void *user, const char *text, size_t len)
{
    struct deltas *d = user;
    size_t used = strlen(d->joined);
    assert_true(used + len + 2 < sizeof d->joined);
    memcpy(d->joined + used, text, len);
    d->joined[used + len] = '|';
    d->joined[used + len + 1] = '\0';
    d->count++;
    return d->stop_after == 0 || d->count < d->stop_after;
}

struct stream_run {
    const struct upstream_wire *wire;
    struct upstream_reply reply;
    struct deltas deltas;
};

static int feed_event(void *user, const char *event, const char *data, size_t len)
{
    struct stream_run *run = user;
    int rc = run->wire->parse_event(event, data, len, &run->reply);
    return rc ? rc : run->reply.cancelled ? 1 : PLM_OK;
}

/* Parses a stream given in pieces cut at the offsets in cuts (ascending). */
static int parse_stream_cut(const struct upstream_wire *wire, const char *stream, size_t len, const size_t *cuts,
                            int n_cuts, struct stream_run *run)
{
    memset(run, 0, sizeof *run);
    run->wire = wire;
    reply_init(&run->reply, record_delta, &run->deltas);
    struct sse_parser parser;
    sse_init(&parser, feed_event, run);
    size_t start = 0;
    int rc = PLM_OK;
    for (int i = 0; i <= n_cuts && rc == PLM_OK; i++) {
        size_t end = i < n_cuts ? cuts[i] : len;
        rc = sse_feed(&parser, stream + start, end - start);
        start = end;
    }
    sse_free(&parser);
    return rc;
}

static int parse_stream(const struct upstream_wire *wire, const char *stream, size_t len, struct stream_run *run)
{
    return parse_stream_cut(wire, stream, len, NULL, 0, run);
}

/* The stream, whole, then cut in two at every byte, then byte by byte: the
 * same pieces of text, usage and finish each time. */
static void check_every_split(const struct upstream_wire *wire, const char *fixture)
{
    size_t len;
    char *stream = read_fixture(fixture, &len);
    struct stream_run whole, cut;
    assert_int_equal(parse_stream(wire, stream, len, &whole), PLM_OK);
    assert_true(whole.deltas.count >= 2);
    for (size_t at = 0; at <= len; at++) {
        assert_int_equal(parse_stream_cut(wire, stream, len, &at, 1, &cut), PLM_OK);
        assert_string_equal(cut.deltas.joined, whole.deltas.joined);
        assert_int_equal(cut.reply.prompt_tokens, whole.reply.prompt_tokens);
        assert_int_equal(cut.reply.completion_tokens, whole.reply.completion_tokens);
        assert_int_equal(cut.reply.finish_reason, whole.reply.finish_reason);
        assert_int_equal(cut.reply.ended, whole.reply.ended);
        reply_free(&cut.reply);
    }
    size_t *every = malloc(len * sizeof *every);
    for (size_t i = 0; i < len; i++)
        every[i] = i;
    assert_int_equal(parse_stream_cut(wire, stream, len, every, (int)len, &cut), PLM_OK);
    assert_string_equal(cut.deltas.joined, whole.deltas.joined);
    reply_free(&cut.reply);
    reply_free(&whole.reply);
    free(every);
    free(stream);
}

/* ------------------------------------------------------ request bodies */

static const struct plm_chat_message conversation[] = {
    {"system", "You are terse."},
    {"user", "Hi"},
    {"assistant", "Hello."},
    {"system", "Answer in French."},
    {"user", "Caf\xc3\xa9 \"au lait\"?\n"},
};

static struct plm_upstream test_upstream(enum plm_upstream_kind kind)
{
    return (struct plm_upstream){.name = "up", .kind = kind, .base_url = "http://127.0.0.1:1", .model = "m-1",
                                 .timeout_s = 5, .connect_timeout_s = 5, .stall_timeout_s = 5};
}

/* Builds the body and parses it back. */
static cJSON *build_body(const struct plm_upstream *up, const struct plm_upstream_request *request, char **text)
{
    const struct upstream_wire *wire = upstream_wire_for(up->kind);
    assert_int_equal(wire->body(up, request, text), PLM_OK);
    cJSON *root = cJSON_Parse(*text);
    assert_non_null(root);
    return root;
}

static const char *string_at(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    assert_true(cJSON_IsString(item));
    return item->valuestring;
}

static void openai_request(void **state)
{
    (void)state;
    struct plm_upstream up = test_upstream(PLM_UPSTREAM_OPENAI);
    struct plm_upstream_request request = {conversation, 5, 77, 0.7f, true};
    char *text, path[256];
    cJSON *root = build_body(&up, &request, &text);
    assert_string_equal(string_at(root, "model"), "m-1");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    assert_int_equal(cJSON_GetArraySize(messages), 5); /* roles as they are, system messages in place */
    for (int i = 0; i < 5; i++) {
        assert_string_equal(string_at(cJSON_GetArrayItem(messages, i), "role"), conversation[i].role);
        assert_string_equal(string_at(cJSON_GetArrayItem(messages, i), "content"), conversation[i].content);
    }
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(root, "max_tokens")->valueint, 77);
    assert_non_null(strstr(text, "\"temperature\":0.7,")); /* not 0.699999988 */
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream")));
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "stream_options"),
                                                              "include_usage")));
    upstream_wire_openai.path(&up, true, path, sizeof path);
    assert_string_equal(path, "/chat/completions");
    cJSON_Delete(root);
    free(text);

    /* Defaults: no max_tokens, no temperature, no stream fields. */
    request = (struct plm_upstream_request){conversation + 1, 1, 0, -1.0f, false};
    root = build_body(&up, &request, &text);
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "max_tokens"));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "temperature"));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "stream"));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "stream_options"));
    cJSON_Delete(root);
    free(text);

    up.max_tokens = 33; /* the policy's max_tokens when the request has none */
    root = build_body(&up, &request, &text);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(root, "max_tokens")->valueint, 33);
    cJSON_Delete(root);
    free(text);
}

static void anthropic_request(void **state)
{
    (void)state;
    struct plm_upstream up = test_upstream(PLM_UPSTREAM_ANTHROPIC);
    struct plm_upstream_request request = {conversation, 5, 0, 0.25f, true};
    char *text, path[256];
    cJSON *root = build_body(&up, &request, &text);
    /* The system prompt is a top-level field: both system messages, in order. */
    assert_string_equal(string_at(root, "system"), "You are terse.\n\nAnswer in French.");
    const cJSON *messages = cJSON_GetObjectItemCaseSensitive(root, "messages");
    assert_int_equal(cJSON_GetArraySize(messages), 3);
    assert_string_equal(string_at(cJSON_GetArrayItem(messages, 0), "role"), "user");
    assert_string_equal(string_at(cJSON_GetArrayItem(messages, 1), "role"), "assistant");
    assert_string_equal(string_at(cJSON_GetArrayItem(messages, 2), "content"), conversation[4].content);
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(root, "max_tokens")->valueint, 1024); /* required */
    assert_true(cJSON_GetObjectItemCaseSensitive(root, "temperature")->valuedouble == 0.25);
    assert_true(cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(root, "stream")));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "stream_options"));
    upstream_wire_anthropic.path(&up, true, path, sizeof path);
    assert_string_equal(path, "/v1/messages");
    assert_string_equal(upstream_wire_anthropic.extra_header, "anthropic-version: 2023-06-01");
    assert_string_equal(upstream_wire_anthropic.key_header, "x-api-key: ");
    cJSON_Delete(root);
    free(text);

    request = (struct plm_upstream_request){conversation + 1, 1, 5, -1.0f, false};
    root = build_body(&up, &request, &text);
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "system"));
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(root, "max_tokens")->valueint, 5);
    cJSON_Delete(root);
    free(text);
}

static void gemini_request(void **state)
{
    (void)state;
    struct plm_upstream up = test_upstream(PLM_UPSTREAM_GEMINI);
    up.model = "gemini-2.0-flash";
    struct plm_upstream_request request = {conversation, 5, 64, 1.0f, true};
    char *text, path[256];
    cJSON *root = build_body(&up, &request, &text);
    const cJSON *system = cJSON_GetObjectItemCaseSensitive(root, "systemInstruction");
    assert_string_equal(string_at(cJSON_GetArrayItem(cJSON_GetObjectItemCaseSensitive(system, "parts"), 0), "text"),
                        "You are terse.\n\nAnswer in French.");
    const cJSON *contents = cJSON_GetObjectItemCaseSensitive(root, "contents");
    assert_int_equal(cJSON_GetArraySize(contents), 3);
    const char *roles[] = {"user", "model", "user"};
    for (int i = 0; i < 3; i++)
        assert_string_equal(string_at(cJSON_GetArrayItem(contents, i), "role"), roles[i]);
    const cJSON *last_parts = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(contents, 2), "parts");
    assert_string_equal(string_at(cJSON_GetArrayItem(last_parts, 0), "text"), conversation[4].content);
    const cJSON *config = cJSON_GetObjectItemCaseSensitive(root, "generationConfig");
    assert_int_equal(cJSON_GetObjectItemCaseSensitive(config, "maxOutputTokens")->valueint, 64);
    assert_true(cJSON_GetObjectItemCaseSensitive(config, "temperature")->valuedouble == 1.0);
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "stream")); /* streaming is in the URL */
    upstream_wire_gemini.path(&up, true, path, sizeof path);
    assert_string_equal(path, "/models/gemini-2.0-flash:streamGenerateContent?alt=sse");
    upstream_wire_gemini.path(&up, false, path, sizeof path);
    assert_string_equal(path, "/models/gemini-2.0-flash:generateContent");
    assert_string_equal(upstream_wire_gemini.key_header, "x-goog-api-key: ");
    cJSON_Delete(root);
    free(text);

    request = (struct plm_upstream_request){conversation + 1, 1, 0, -1.0f, false};
    root = build_body(&up, &request, &text);
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "generationConfig"));
    assert_null(cJSON_GetObjectItemCaseSensitive(root, "systemInstruction"));
    cJSON_Delete(root);
    free(text);
}

/* ------------------------------------------------------ whole answers */

static void parse_whole(const struct upstream_wire *wire, const char *fixture, struct upstream_reply *reply,
                        struct deltas *deltas)
{
    size_t len;
    char *json = read_fixture(fixture, &len);
    memset(deltas, 0, sizeof *deltas);
    reply_init(reply, record_delta, deltas);
    assert_int_equal(wire->parse_response(json, len, reply), PLM_OK);
    free(json);
}

static void whole_answers(void **state)
{
    (void)state;
    struct upstream_reply reply;
    struct deltas deltas;

    parse_whole(&upstream_wire_openai, "openai_response.json", &reply, &deltas);
    assert_string_equal(reply.text, "Hello! How can I assist you today?");
    assert_int_equal(deltas.count, 1); /* the whole text, once */
    assert_int_equal(reply.prompt_tokens, 19);
    assert_int_equal(reply.completion_tokens, 10);
    assert_int_equal(reply.finish_reason, PLM_FINISH_STOP);
    assert_string_equal(reply.finish_detail, "stop");
    reply_free(&reply);

    parse_whole(&upstream_wire_anthropic, "anthropic_response.json", &reply, &deltas);
    assert_string_equal(reply.text, "Hi! My name is Claude.");
    assert_int_equal(reply.prompt_tokens, 2095);
    assert_int_equal(reply.completion_tokens, 503);
    assert_int_equal(reply.finish_reason, PLM_FINISH_STOP);
    assert_string_equal(reply.finish_detail, "end_turn");
    reply_free(&reply);

    parse_whole(&upstream_wire_gemini, "gemini_response.json", &reply, &deltas);
    assert_string_equal(reply.text, "AI learns patterns from data to make predictions or decisions.");
    assert_int_equal(reply.prompt_tokens, 8);
    assert_int_equal(reply.completion_tokens, 12);
    assert_int_equal(reply.finish_reason, PLM_FINISH_LENGTH);
    assert_string_equal(reply.finish_detail, "MAX_TOKENS");
    reply_free(&reply);
}

/* ------------------------------------------------------------- streams */

static void openai_stream(void **state)
{
    (void)state;
    size_t len;
    char *stream = read_fixture("openai_stream.sse", &len);
    struct stream_run run;
    assert_int_equal(parse_stream(&upstream_wire_openai, stream, len, &run), PLM_OK);
    assert_string_equal(run.deltas.joined, "Hello|! Caf\xc3\xa9| time?|");
    assert_string_equal(run.reply.text, "Hello! Caf\xc3\xa9 time?");
    assert_int_equal(run.reply.finish_reason, PLM_FINISH_LENGTH);
    assert_int_equal(run.reply.prompt_tokens, 9);
    assert_int_equal(run.reply.completion_tokens, 4);
    assert_true(run.reply.ended);
    reply_free(&run.reply);
    free(stream);
    check_every_split(&upstream_wire_openai, "openai_stream.sse");
}

static void anthropic_stream(void **state)
{
    (void)state;
    size_t len;
    char *stream = read_fixture("anthropic_stream.sse", &len);
    struct stream_run run;
    assert_int_equal(parse_stream(&upstream_wire_anthropic, stream, len, &run), PLM_OK);
    assert_string_equal(run.deltas.joined, "Hello|!|");
    assert_int_equal(run.reply.prompt_tokens, 25);
    assert_int_equal(run.reply.completion_tokens, 15); /* message_delta's count replaces message_start's */
    assert_int_equal(run.reply.finish_reason, PLM_FINISH_STOP);
    assert_true(run.reply.ended);
    reply_free(&run.reply);
    free(stream);
    check_every_split(&upstream_wire_anthropic, "anthropic_stream.sse");
}

static void gemini_stream(void **state)
{
    (void)state;
    size_t len;
    char *stream = read_fixture("gemini_stream.sse", &len);
    assert_non_null(strstr(stream, "\r\n\r\n")); /* Google ends its events with CRLF */
    struct stream_run run;
    assert_int_equal(parse_stream(&upstream_wire_gemini, stream, len, &run), PLM_OK);
    assert_string_equal(run.deltas.joined, "The| quick brown fox jumps over the lazy| dog.\n|");
    assert_int_equal(run.reply.prompt_tokens, 8);
    assert_int_equal(run.reply.completion_tokens, 10);
    assert_int_equal(run.reply.finish_reason, PLM_FINISH_STOP);
    assert_true(run.reply.ended);
    reply_free(&run.reply);
    free(stream);
    check_every_split(&upstream_wire_gemini, "gemini_stream.sse");
}

/* A stream that ends early has no end marker: the transport calls it truncated. */
static void truncated_stream_has_no_end(void **state)
{
    (void)state;
    size_t len;
    char *stream = read_fixture("anthropic_stream.sse", &len);
    const char *stop = strstr(stream, "event: message_delta");
    struct stream_run run;
    assert_int_equal(parse_stream(&upstream_wire_anthropic, stream, (size_t)(stop - stream), &run), PLM_OK);
    assert_string_equal(run.reply.text, "Hello!");
    assert_false(run.reply.ended);
    assert_int_equal(run.reply.finish_reason, PLM_FINISH_UNKNOWN);
    reply_free(&run.reply);
    free(stream);
}

static void cancelling_stops_the_deltas(void **state)
{
    (void)state;
    size_t len;
    char *stream = read_fixture("openai_stream.sse", &len);
    struct stream_run run;
    memset(&run, 0, sizeof run);
    run.wire = &upstream_wire_openai;
    run.deltas.stop_after = 1;
    reply_init(&run.reply, record_delta, &run.deltas);
    struct sse_parser parser;
    sse_init(&parser, feed_event, &run);
    assert_int_equal(sse_feed(&parser, stream, len), 1);
    assert_string_equal(run.deltas.joined, "Hello|");
    assert_true(run.reply.cancelled);
    sse_free(&parser);
    reply_free(&run.reply);
    free(stream);
}

/* ------------------------------------------------------------- hostile */

static void malformed_answers_are_refused(void **state)
{
    (void)state;
    static const struct {
        const struct upstream_wire *wire;
        const char *json;
        int status;
        const char *message; /* part of plm_last_error() */
    } cases[] = {
        {&upstream_wire_openai, "{\"choices\": [", PLM_ERR_FORMAT, "not a JSON object"},
        {&upstream_wire_openai, "[1, 2]", PLM_ERR_FORMAT, "not a JSON object"},
        {&upstream_wire_openai, "", PLM_ERR_FORMAT, "not a JSON object"},
        {&upstream_wire_openai, "{\"choices\": []}", PLM_ERR_FORMAT, "no choices[0].message"},
        {&upstream_wire_openai, "{\"choices\": [{\"message\": \"hi\"}]}", PLM_ERR_FORMAT, "no choices[0].message"},
        {&upstream_wire_openai, "{\"choices\": [{\"message\": {\"content\": 7}}]}", PLM_ERR_FORMAT, "not a string"},
        {&upstream_wire_openai, "{\"error\": {\"message\": \"model overloaded\"}}", PLM_ERR_IO, "model overloaded"},
        {&upstream_wire_anthropic, "{\"content\": \"text\"}", PLM_ERR_FORMAT, "no \"content\" array"},
        {&upstream_wire_anthropic, "{\"content\": [{\"type\": \"text\", \"text\": null}]}", PLM_ERR_FORMAT, "text"},
        {&upstream_wire_anthropic, "{\"type\": \"error\", \"error\": {\"type\": \"overloaded_error\", \"message\": "
                                   "\"Overloaded\"}}", PLM_ERR_IO, "Overloaded"},
        {&upstream_wire_gemini, "{\"candidates\": []}", PLM_ERR_FORMAT, "no candidates"},
        {&upstream_wire_gemini, "{}", PLM_ERR_FORMAT, "no candidates"},
        {&upstream_wire_gemini, "{\"error\": {\"code\": 400, \"message\": \"API key not valid.\"}}", PLM_ERR_IO,
         "API key not valid."},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct upstream_reply reply;
        reply_init(&reply, NULL, NULL);
        assert_int_equal(cases[i].wire->parse_response(cases[i].json, strlen(cases[i].json), &reply), cases[i].status);
        if (!strstr(plm_last_error(), cases[i].message))
            fail_msg("case %zu: '%s' lacks '%s'", i, plm_last_error(), cases[i].message);
        reply_free(&reply);
    }
}

static void malformed_streams_are_refused(void **state)
{
    (void)state;
    static const struct {
        const struct upstream_wire *wire;
        const char *stream;
        int status;
        const char *message;
    } cases[] = {
        {&upstream_wire_openai, "data: {\"choices\": [{\"delta\": {\"content\": \"a\"}}]}\n\ndata: {\"choi\n\n",
         PLM_ERR_FORMAT, "not a JSON object"},
        {&upstream_wire_openai, "data: {\"choices\": \"x\"}\n\n", PLM_ERR_FORMAT, "choices[0].delta"},
        {&upstream_wire_openai, "data: {\"choices\": [{\"delta\": 3}]}\n\n", PLM_ERR_FORMAT, "choices[0].delta"},
        {&upstream_wire_openai, "data: {\"error\": {\"message\": \"server shutting down\"}}\n\n", PLM_ERR_IO,
         "server shutting down"},
        {&upstream_wire_anthropic, "event: error\ndata: {\"type\": \"error\", \"error\": {\"type\": "
                                   "\"overloaded_error\", \"message\": \"Overloaded\"}}\n\n", PLM_ERR_IO, "Overloaded"},
        {&upstream_wire_anthropic, "event: content_block_delta\ndata: {\"delta\": []}\n\n", PLM_ERR_FORMAT,
         "without a delta"},
        {&upstream_wire_anthropic, "event: ping\ndata: not json\n\n", PLM_ERR_FORMAT, "not a JSON object"},
        {&upstream_wire_gemini, "data: {\"candidates\": 5}\n\n", PLM_ERR_FORMAT, "no candidates"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        struct stream_run run;
        int rc = parse_stream(cases[i].wire, cases[i].stream, strlen(cases[i].stream), &run);
        if (rc != cases[i].status || !strstr(plm_last_error(), cases[i].message))
            fail_msg("case %zu: status %d, '%s'", i, rc, plm_last_error());
        reply_free(&run.reply);
    }
}

/* Random bytes and bit flips of the fixtures: an error or a result, never a crash. */
static void corrupted_streams_never_crash(void **state)
{
    (void)state;
    const char *fixtures[] = {"openai_stream.sse", "anthropic_stream.sse", "gemini_stream.sse"};
    const struct upstream_wire *wires[] = {&upstream_wire_openai, &upstream_wire_anthropic, &upstream_wire_gemini};
    struct test_rng rng = {12345};
    for (int f = 0; f < 3; f++) {
        size_t len;
        char *stream = read_fixture(fixtures[f], &len);
        for (int trial = 0; trial < 300; trial++) {
            char *copy = malloc(len);
            memcpy(copy, stream, len);
            for (int flips = 0; flips < 3; flips++)
                copy[rng_next(&rng) % len] ^= (char)(1u << (rng_next(&rng) % 8));
            struct stream_run run;
            parse_stream(wires[f], copy, len, &run);
            reply_free(&run.reply);
            struct upstream_reply reply;
            reply_init(&reply, NULL, NULL);
            wires[f]->parse_response(copy, len, &reply);
            reply_free(&reply);
            free(copy);
        }
        free(stream);
    }
}

/* ----------------------------------------------------------- SSE alone */

struct collected {
    char text[1024];
};

static int collect_event(void *user, const char *event, const char *data, size_t len)
{
    struct collected *c = user;
    size_t used = strlen(c->text);
    snprintf(c->text + used, sizeof c->text - used, "<%s:%.*s>", event, (int)len, data);
    return PLM_OK;
}

static void sse_collect(const char *stream, char *out, size_t size)
{
    struct collected c = {""};
    struct sse_parser parser;
    sse_init(&parser, collect_event, &c);
    assert_int_equal(sse_feed(&parser, stream, strlen(stream)), PLM_OK);
    sse_free(&parser);
    snprintf(out, size, "%s", c.text);
}

static void sse_format_rules(void **state)
{
    (void)state;
    static const struct {
        const char *stream, *events;
    } cases[] = {
        {"data: a\n\n", "<message:a>"},
        {"data:a\n\n", "<message:a>"},                       /* the space is optional */
        {"data:  a\n\n", "<message: a>"},                    /* only one is dropped */
        {"data: a\ndata: b\n\n", "<message:a\nb>"},          /* data lines join with LF */
        {"data: a\r\ndata: b\r\n\r\n", "<message:a\nb>"},    /* CRLF */
        {"data: a\rdata: b\r\r", "<message:a\nb>"},          /* lone CR */
        {": comment\ndata: x\n: another\n\n", "<message:x>"},
        {"event: e1\ndata: 1\n\nevent: e2\ndata: 2\n\n", "<e1:1><e2:2>"},
        {"event: e1\n\ndata: 2\n\n", "<message:2>"},         /* no data: nothing sent, type forgotten */
        {"data\n\n", "<message:>"},                          /* a field name alone: empty data */
        {"data: \n\n", "<message:>"},
        {"id: 7\nretry: 100\nfoo: bar\ndata: x\n\n", "<message:x>"},
        {"data: complete\n\ndata: never finished\n", "<message:complete>"},
        {"\xEF\xBB\xBF" "data: bom\n\n", "<message:bom>"},
        {"data: a:b: c\n\n", "<message:a:b: c>"},
        {"\n\n\ndata: x\n\n\n\n", "<message:x>"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char got[1024];
        sse_collect(cases[i].stream, got, sizeof got);
        if (strcmp(got, cases[i].events) != 0)
            fail_msg("case %zu: got '%s', expected '%s'", i, got, cases[i].events);
    }
}

/* A CRLF split between two chunks is one line end, not two (which would
 * dispatch an event early). */
static void sse_crlf_split_across_chunks(void **state)
{
    (void)state;
    struct collected c = {""};
    struct sse_parser parser;
    sse_init(&parser, collect_event, &c);
    assert_int_equal(sse_feed(&parser, "data: a\r", 8), PLM_OK);
    assert_int_equal(sse_feed(&parser, "\ndata: b\r", 9), PLM_OK);
    assert_int_equal(sse_feed(&parser, "\n\r", 2), PLM_OK);
    assert_int_equal(sse_feed(&parser, "\n", 1), PLM_OK);
    assert_string_equal(c.text, "<message:a\nb>");
    sse_free(&parser);
}

static void sse_refuses_endless_events(void **state)
{
    (void)state;
    struct collected c = {""};
    struct sse_parser parser;
    sse_init(&parser, collect_event, &c);
    size_t chunk = 1 << 20;
    char *junk = malloc(chunk);
    memset(junk, 'x', chunk);
    memcpy(junk, "data: ", 6);
    int rc = PLM_OK;
    for (int i = 0; i < 20 && rc == PLM_OK; i++)
        rc = sse_feed(&parser, junk, chunk);
    assert_int_equal(rc, PLM_ERR_LIMIT);
    assert_non_null(strstr(plm_last_error(), "longer than"));
    assert_int_equal(sse_feed(&parser, "\n\n", 2), PLM_ERR_LIMIT); /* it stays failed */
    assert_string_equal(c.text, "");
    sse_free(&parser);
    free(junk);
}

/* ------------------------------------------------------ error messages */

static void upstream_error_shapes(void **state)
{
    (void)state;
    static const struct {
        const char *body, *message;
    } cases[] = {
        {"{\"error\": {\"message\": \"Incorrect API key\", \"type\": \"invalid_request_error\"}}", "Incorrect API key"},
        {"{\"type\": \"error\", \"error\": {\"type\": \"rate_limit_error\", \"message\": \"Slow down\"}}", "Slow down"},
        {"{\"error\": {\"code\": 429, \"message\": \"Quota exceeded\", \"status\": \"RESOURCE_EXHAUSTED\"}}",
         "Quota exceeded"},
        {"{\"error\": \"model 'llama9' not found\"}", "model 'llama9' not found"},          /* Ollama */
        {"{\"object\": \"error\", \"message\": \"max_tokens too large\"}", "max_tokens too large"}, /* vLLM */
        {"{\"detail\": \"Not Found\"}", "Not Found"},
        {"<html>\n<body>Bad Gateway</body></html>", "<html> <body>Bad Gateway</body></html>"},
        {"", "(empty body)"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char message[256];
        upstream_error_message(cases[i].body, strlen(cases[i].body), message, sizeof message);
        assert_string_equal(message, cases[i].message);
    }
    size_t len;
    char *body = read_fixture("gemini_error.json", &len);
    char message[256];
    upstream_error_message(body, len, message, sizeof message);
    assert_string_equal(message, "API key not valid. Please pass a valid API key.");
    free(body);
    body = read_fixture("openai_error.json", &len);
    upstream_error_message(body, len, message, sizeof message);
    assert_non_null(strstr(message, "Incorrect API key provided"));
    free(body);
}

/* --------------------------------------- the client, without a network */

struct observed {
    char head[2048];
    char url[512];
    int sends;
    int afters;
    int refuse; /* before_send returns this */
};

static int observe_send(void *user, const struct plm_upstream *upstream, int attempt, const char *url,
                        const char *head, const char *body, size_t body_len)
{
    struct observed *o = user;
    (void)upstream;
    (void)body;
    assert_int_equal(attempt, o->sends + 1);
    assert_true(body_len > 0);
    snprintf(o->head, sizeof o->head, "%s", head);
    snprintf(o->url, sizeof o->url, "%s", url);
    o->sends++;
    return o->refuse ? plm_fail(o->refuse, "the audit log is not writable") : PLM_OK;
}

static void observe_after(void *user, const struct plm_upstream *upstream, int attempt, int http_status,
                          uint64_t bytes_sent, uint64_t bytes_received)
{
    struct observed *o = user;
    (void)upstream;
    (void)bytes_sent;
    (void)bytes_received;
    assert_int_equal(attempt, o->sends);
    assert_int_equal(http_status, 0); /* nobody answered */
    o->afters++;
}

#define SECRET "sk-test-0123456789abcdef"

static void client_checks_before_sending(void **state)
{
    (void)state;
    struct plm_upstream up = test_upstream(PLM_UPSTREAM_OPENAI);
    up.api_key_env = "PLM_TEST_UPSTREAM_KEY";
    struct plm_chat_message user_turn = {"user", "hi"};
    struct plm_upstream_request request = {&user_turn, 1, 0, -1, false};
    struct plm_upstream_result result;

    unsetenv("PLM_TEST_UPSTREAM_KEY");
    assert_int_equal(plm_upstream_ready(&up), PLM_ERR_ARG);
    assert_int_equal(plm_upstream_chat(&up, &request, NULL, NULL, NULL, &result), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "PLM_TEST_UPSTREAM_KEY"));
    assert_int_equal(result.attempts, 0);
    plm_upstream_result_free(&result);

    setenv("PLM_TEST_UPSTREAM_KEY", "sk-line\nbreak", 1);
    assert_int_equal(plm_upstream_ready(&up), PLM_ERR_ARG);
    assert_null(strstr(plm_last_error(), "sk-line"));

    setenv("PLM_TEST_UPSTREAM_KEY", SECRET, 1);
    assert_int_equal(plm_upstream_ready(&up), PLM_OK);

    struct plm_chat_message bad_role = {"tool", "x"};
    request.messages = &bad_role;
    assert_int_equal(plm_upstream_chat(&up, &request, NULL, NULL, NULL, &result), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "role 'tool'"));
    struct plm_chat_message only_system = {"system", "x"};
    request.messages = &only_system;
    assert_int_equal(plm_upstream_chat(&up, &request, NULL, NULL, NULL, &result), PLM_ERR_ARG);
    request.messages = &user_turn;

    /* The observer refuses (the audit could not record it): nothing is sent. */
    struct observed seen = {.refuse = PLM_ERR_IO};
    struct plm_upstream_observer observer = {observe_send, observe_after, &seen};
    assert_int_equal(plm_upstream_chat(&up, &request, NULL, NULL, &observer, &result), PLM_ERR_IO);
    assert_non_null(strstr(plm_last_error(), "the audit log is not writable"));
    assert_int_equal(seen.sends, 1);
    assert_int_equal(seen.afters, 0);
    assert_int_equal(result.attempts, 0);
    assert_true(result.bytes_sent == 0);
    /* What it saw: the head as it goes out, key masked. */
    assert_string_equal(seen.url, "http://127.0.0.1:1/chat/completions");
    assert_non_null(strstr(seen.head, "POST /chat/completions HTTP/1.1\r\nHost: 127.0.0.1:1\r\n"));
    assert_non_null(strstr(seen.head, "\r\nAuthorization: Bearer [KEY]\r\n"));
    assert_non_null(strstr(seen.head, "\r\nContent-Type: application/json\r\n"));
    assert_non_null(strstr(seen.head, "\r\nContent-Length: "));
    assert_null(strstr(seen.head, SECRET));
    size_t head_len = strlen(seen.head);
    assert_true(head_len > 4 && strcmp(seen.head + head_len - 4, "\r\n\r\n") == 0);
    unsetenv("PLM_TEST_UPSTREAM_KEY");
}

/* Port 1 on loopback refuses connections at once: a transport error, retried. */
static void refused_connection_is_retried(void **state)
{
    (void)state;
    struct plm_upstream up = test_upstream(PLM_UPSTREAM_ANTHROPIC);
    up.api_key_env = "PLM_TEST_UPSTREAM_KEY";
    up.max_retries = 1;
    setenv("PLM_TEST_UPSTREAM_KEY", SECRET, 1);
    struct plm_chat_message user_turn = {"user", "hi"};
    struct plm_upstream_request request = {&user_turn, 1, 0, -1, true};
    struct plm_upstream_result result;
    struct observed seen = {0};
    struct plm_upstream_observer observer = {observe_send, observe_after, &seen};
    assert_int_equal(plm_upstream_chat(&up, &request, NULL, NULL, &observer, &result), PLM_ERR_IO);
    const char *message = plm_last_error();
    assert_non_null(strstr(message, "upstream 'up' (anthropic): http://127.0.0.1:1/v1/messages"));
    assert_non_null(strstr(message, "(after 2 attempts)"));
    assert_null(strstr(message, SECRET));
    assert_int_equal(result.attempts, 2);
    assert_int_equal(seen.sends, 2);
    assert_int_equal(seen.afters, 2);
    assert_int_equal(result.http_status, 0);
    assert_non_null(strstr(seen.head, "\r\nx-api-key: [KEY]\r\nanthropic-version: 2023-06-01\r\n"));
    assert_non_null(strstr(seen.head, "\r\nAccept: text/event-stream\r\n"));
    assert_int_equal(result.text_len, 0);
    plm_upstream_result_free(&result);
    unsetenv("PLM_TEST_UPSTREAM_KEY");
}

/* Calls from several threads at once (curl initialised once, errors per thread). */
struct threaded_call {
    pthread_t thread;
    char name[16];
    int status;
    char message[512];
};

static void *call_in_thread(void *arg)
{
    struct threaded_call *call = arg;
    struct plm_upstream up = test_upstream(PLM_UPSTREAM_GEMINI);
    up.name = call->name;
    struct plm_chat_message user_turn = {"user", "hi"};
    struct plm_upstream_request request = {&user_turn, 1, 0, -1, false};
    struct plm_upstream_result result;
    call->status = plm_upstream_chat(&up, &request, NULL, NULL, NULL, &result);
    snprintf(call->message, sizeof call->message, "%s", plm_last_error());
    plm_upstream_result_free(&result);
    return NULL;
}

static void concurrent_calls(void **state)
{
    (void)state;
    struct threaded_call calls[6];
    for (int i = 0; i < 6; i++) {
        snprintf(calls[i].name, sizeof calls[i].name, "thread-%d", i);
        assert_int_equal(pthread_create(&calls[i].thread, NULL, call_in_thread, &calls[i]), 0);
    }
    for (int i = 0; i < 6; i++) {
        char want[128];
        pthread_join(calls[i].thread, NULL);
        assert_int_equal(calls[i].status, PLM_ERR_IO);
        snprintf(want, sizeof want, "upstream '%s' (gemini): http://127.0.0.1:1/models/m-1:generateContent", calls[i].name);
        if (!strstr(calls[i].message, want))
            fail_msg("thread %d: '%s'", i, calls[i].message);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(openai_request),
        cmocka_unit_test(anthropic_request),
        cmocka_unit_test(gemini_request),
        cmocka_unit_test(whole_answers),
        cmocka_unit_test(openai_stream),
        cmocka_unit_test(anthropic_stream),
        cmocka_unit_test(gemini_stream),
        cmocka_unit_test(truncated_stream_has_no_end),
        cmocka_unit_test(cancelling_stops_the_deltas),
        cmocka_unit_test(malformed_answers_are_refused),
        cmocka_unit_test(malformed_streams_are_refused),
        cmocka_unit_test(corrupted_streams_never_crash),
        cmocka_unit_test(sse_format_rules),
        cmocka_unit_test(sse_crlf_split_across_chunks),
        cmocka_unit_test(sse_refuses_endless_events),
        cmocka_unit_test(upstream_error_shapes),
        cmocka_unit_test(client_checks_before_sending),
        cmocka_unit_test(refused_connection_is_retried),
        cmocka_unit_test(concurrent_calls),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
