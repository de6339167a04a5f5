/*
 * Chat templates: detection, errors, hand-written renderings (Llama 2, ChatML),
 * and conformance with the vendors' Jinja templates rendered by Jinja itself
 * (tests/chat/render_jinja.py, run with Debian's python3-jinja2).
 *
 * The pure C tests always run. The conformance tests need /usr/bin/python3 with
 * jinja2 and the shared chat-templates directory; without them the program exits
 * 77 (skipped) after the pure tests pass.
 */
#include "test_util.h"

#include <cjson/cJSON.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "chat/chat_template.h"

#define N_OF(array) ((int)(sizeof(array) / sizeof((array)[0])))

static const char smollm2_template[] =
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\\nYou are a helpful AI assistant named SmolLM, trained by Hugging "
    "Face<|im_end|>\\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}"
    "{{ '<|im_start|>assistant\\n' }}{% endif %}";

static const char test_date[] = "03 Feb 2025";

/* Renders and returns the text, failing the test on an error. */
static char *render_ok(enum chat_format format, const struct plm_chat_message *messages,
                       int n_messages, bool add_assistant,
                       const struct chat_render_options *options)
{
    char *text = NULL;
    int status = chat_render(format, messages, n_messages, add_assistant, options, &text);
    if (status != PLM_OK)
        fail_msg("chat_render(%s) failed: %s", chat_format_name(format), plm_last_error());
    assert_non_null(text);
    return text;
}

static void assert_renders(enum chat_format format, const struct plm_chat_message *messages,
                           int n_messages, bool add_assistant,
                           const struct chat_render_options *options, const char *expected)
{
    char *text = render_ok(format, messages, n_messages, add_assistant, options);
    assert_string_equal(text, expected);
    free(text);
}

/* Expects PLM_ERR_ARG with a message that contains hint. */
static void assert_refused(enum chat_format format, const struct plm_chat_message *messages,
                           int n_messages, const char *hint)
{
    char untouched[] = "untouched";
    char *text = untouched;
    int status = chat_render(format, messages, n_messages, true, NULL, &text);
    assert_int_equal(status, PLM_ERR_ARG);
    assert_null(text);
    if (!strstr(plm_last_error(), hint))
        fail_msg("error '%s' does not mention '%s'", plm_last_error(), hint);
}

/* ---------------------------------------------------------------- Llama 2 */

static const struct chat_render_options llama2_tokens = {
    .bos_text = "<s>", .eos_text = "</s>", .date = test_date};

static void test_llama2_system_and_user(void **state)
{
    (void)state;
    const struct plm_chat_message chat[] = {
        {"system", "You are terse."},
        {"user", "  Hello there \n"},
    };
    /* The system block and the user text are stripped as one string, so the
     * user's leading spaces survive behind the block. */
    const char *expected = "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\n  Hello there [/INST]";
    assert_renders(CHAT_FORMAT_LLAMA2, chat, 2, true, &llama2_tokens, expected);
    /* [/INST] already opens the answer: add_assistant changes nothing. */
    assert_renders(CHAT_FORMAT_LLAMA2, chat, 2, false, &llama2_tokens, expected);
}

static void test_llama2_multi_turn(void **state)
{
    (void)state;
    const struct plm_chat_message chat[] = {
        {"user", "\tOne?"},
        {"assistant", " \nTwo. \n"},
        {"user", "Three?"},
        {"assistant", "Four."},
    };
    assert_renders(CHAT_FORMAT_LLAMA2, chat, 3, true, &llama2_tokens,
                   "<s>[INST] One? [/INST] Two. </s><s>[INST] Three? [/INST]");
    assert_renders(CHAT_FORMAT_LLAMA2, chat, 4, false, &llama2_tokens,
                   "<s>[INST] One? [/INST] Two. </s><s>[INST] Three? [/INST] Four. </s>");
    /* Without token texts the markers are left to the tokenizer. */
    assert_renders(CHAT_FORMAT_LLAMA2, chat, 2, false, NULL, "[INST] One? [/INST] Two. ");
}

static void test_llama2_strips_system_and_user_together(void **state)
{
    (void)state;
    /* The published template strips the system block and the first user message
     * as one string: an all-blank user message eats the blank lines after <</SYS>>,
     * and the system text keeps its own spaces. */
    const struct plm_chat_message chat[] = {
        {"system", " sys "},
        {"user", " \n\xe3\x80\x80"}, /* ends with U+3000, which Python counts as space */
    };
    assert_renders(CHAT_FORMAT_LLAMA2, chat, 2, true, &llama2_tokens,
                   "<s>[INST] <<SYS>>\n sys \n<</SYS>> [/INST]");
}

static void test_llama2_refuses_what_it_cannot_express(void **state)
{
    (void)state;
    const struct plm_chat_message assistant_first[] = {{"assistant", "hi"}, {"user", "hey"}};
    assert_refused(CHAT_FORMAT_LLAMA2, assistant_first, 2, "alternate");
    const struct plm_chat_message two_users[] = {{"user", "a"}, {"user", "b"}};
    assert_refused(CHAT_FORMAT_LLAMA2, two_users, 2, "message 1");
    const struct plm_chat_message system_only[] = {{"system", "s"}};
    assert_refused(CHAT_FORMAT_LLAMA2, system_only, 1, "user message");
    const struct plm_chat_message late_system[] = {
        {"user", "a"}, {"assistant", "b"}, {"system", "c"}, {"user", "d"}};
    assert_refused(CHAT_FORMAT_LLAMA2, late_system, 4, "system message only at the start");
}

/* ----------------------------------------------------------------- ChatML */

static void test_chatml_plain(void **state)
{
    (void)state;
    const struct plm_chat_message chat[] = {
        {"system", "Be kind."},
        {"user", " spaced\n"},
        {"assistant", ""},
    };
    assert_renders(CHAT_FORMAT_CHATML, chat, 3, false, NULL,
                   "<|im_start|>system\nBe kind.<|im_end|>\n"
                   "<|im_start|>user\n spaced\n<|im_end|>\n"
                   "<|im_start|>assistant\n<|im_end|>\n");
    assert_renders(CHAT_FORMAT_CHATML, chat + 1, 1, true, NULL,
                   "<|im_start|>user\n spaced\n<|im_end|>\n<|im_start|>assistant\n");
}

static void test_chatml_default_system(void **state)
{
    (void)state;
    const struct chat_render_options options = {.default_system = "Default."};
    const struct plm_chat_message user_only[] = {{"user", "Hi"}};
    assert_renders(CHAT_FORMAT_CHATML, user_only, 1, true, &options,
                   "<|im_start|>system\nDefault.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n"
                   "<|im_start|>assistant\n");
    /* The conversation's own system message replaces the default. */
    const struct plm_chat_message with_system[] = {{"system", "Mine."}, {"user", "Hi"}};
    assert_renders(CHAT_FORMAT_CHATML, with_system, 2, false, &options,
                   "<|im_start|>system\nMine.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    /* Qwen2 has its own default, which the option overrides. */
    assert_renders(CHAT_FORMAT_QWEN2, user_only, 1, false, NULL,
                   "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a "
                   "helpful assistant.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
    assert_renders(CHAT_FORMAT_QWEN2, user_only, 1, false, &options,
                   "<|im_start|>system\nDefault.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n");
}

static void test_default_system_extraction(void **state)
{
    (void)state;
    char *text = NULL;
    assert_int_equal(chat_template_default_system(smollm2_template, &text), PLM_OK);
    assert_non_null(text);
    assert_string_equal(text, "You are a helpful AI assistant named SmolLM, trained by Hugging Face");
    free(text);

    /* A literal that only opens the turn is not a default prompt. */
    const char *no_default =
        "{{ '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}";
    assert_int_equal(chat_template_default_system(no_default, &text), PLM_OK);
    assert_null(text);

    /* Escapes are decoded; the other quote character is plain text. */
    const char *escaped = "{{ \"<|im_start|>system\\nIt's \\\"quoted\\\"\\tand \\\\ done.<|im_end|>\" }}";
    assert_int_equal(chat_template_default_system(escaped, &text), PLM_OK);
    assert_non_null(text);
    assert_string_equal(text, "It's \"quoted\"\tand \\ done.");
    free(text);

    /* An escaped quote does not end the literal; an escape we cannot decode fails. */
    const char *hex_escape = "'<|im_start|>system\\n\\x41<|im_end|>'";
    assert_int_equal(chat_template_default_system(hex_escape, &text), PLM_ERR_UNSUPPORTED);
    assert_null(text);

    /* Hostile or truncated templates: no quote before, cut off mid-literal,
     * cut off after a backslash, the marker at the very start. */
    const char *hostile[] = {
        "<|im_start|>system\\nNo quote<|im_end|>",
        "x <|im_start|>system\\nNo quote<|im_end|>",
        "'<|im_start|>system\\nnever closed",
        "'<|im_start|>system\\nbackslash at the end\\",
        "'<|im_start|>system\\n<|im_end|>'",
        "'<|im_start|>system\\",
        "",
    };
    for (int i = 0; i < N_OF(hostile); i++) {
        assert_int_equal(chat_template_default_system(hostile[i], &text), PLM_OK);
        assert_null(text);
    }
    assert_int_equal(chat_template_default_system(NULL, &text), PLM_OK);
    assert_null(text);
    assert_int_equal(chat_template_default_system(smollm2_template, NULL), PLM_ERR_ARG);
}

/* ------------------------------------------------- other formats in plain C */

/* Today as Llama 3.2's template asks strftime_now for it. */
static void format_today(char today[32])
{
    time_t now = time(NULL);
    struct tm local;
    assert_non_null(localtime_r(&now, &local));
    assert_true(strftime(today, 32, "%d %b %Y", &local) > 0);
}

static void test_llama3_trims_unicode_space_and_prints_today(void **state)
{
    (void)state;
    const struct plm_chat_message chat[] = {{"user", "\xc2\xa0\xe2\x80\x83Hi\xe2\x80\xa8\n"}};
    const char *expected_format =
        "<|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n"
        "Today Date: %s\n\n<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n";
    char before[32], after[32], expected[512];
    format_today(before);
    char *text = render_ok(CHAT_FORMAT_LLAMA3, chat, 1, true, NULL);
    format_today(after);
    /* Midnight may pass while rendering: either day will do then. */
    snprintf(expected, sizeof expected, expected_format, before);
    if (strcmp(text, expected) != 0)
        snprintf(expected, sizeof expected, expected_format, after);
    assert_string_equal(text, expected);
    free(text);
}

static void test_gemma_merges_system_into_first_user_turn(void **state)
{
    (void)state;
    const struct chat_render_options options = {.bos_text = "<bos>"};
    const struct plm_chat_message chat[] = {
        {"system", " Answer in French. "},
        {"user", "Hello"},
        {"assistant", " Bonjour "},
    };
    assert_renders(CHAT_FORMAT_GEMMA, chat, 3, true, &options,
                   "<bos><start_of_turn>user\nAnswer in French.\n\nHello<end_of_turn>\n"
                   "<start_of_turn>model\nBonjour<end_of_turn>\n<start_of_turn>model\n");
    const struct plm_chat_message system_only[] = {{"system", "s"}};
    assert_refused(CHAT_FORMAT_GEMMA, system_only, 1, "user message");
    const struct plm_chat_message system_then_assistant[] = {{"system", "s"}, {"assistant", "a"}};
    assert_refused(CHAT_FORMAT_GEMMA, system_then_assistant, 2, "alternate");
}

static void test_smollm3_flags_and_second_system(void **state)
{
    (void)state;
    /* Removing /no_think first can join the pieces of a new /think, which the
     * template removes in its second pass; the mode comes from the original. */
    const struct plm_chat_message chat[] = {
        {"system", "Be brief /th/no_thinkink \t"},
        {"user", "Hi"},
        {"assistant", "\n\nHello"},
    };
    char *text = render_ok(CHAT_FORMAT_SMOLLM3, chat, 3, true, NULL);
    const char *expected_start =
        "<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\n"
        "Reasoning Mode: /no_think\n\n## Custom Instructions\n\nBe brief\n\n<|im_end|>\n"
        "<|im_start|>user\nHi<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\nHello<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n";
    assert_string_equal(text, expected_start);
    free(text);

    const struct plm_chat_message two_systems[] = {{"system", "a"}, {"user", "b"}, {"system", "c"}};
    assert_refused(CHAT_FORMAT_SMOLLM3, two_systems, 3, "message 2");
}

/* ------------------------------------------------------------- detection */

static void test_detect_inline_templates(void **state)
{
    (void)state;
    assert_int_equal(chat_format_detect(smollm2_template), CHAT_FORMAT_CHATML);
    assert_int_equal(chat_format_detect("{{ bos_token + '[INST] <<SYS>>\\n' }}"),
                     CHAT_FORMAT_LLAMA2);
    /* [INST] without <<SYS>> is Mistral's format, which is not Llama 2's. */
    assert_int_equal(chat_format_detect("{{ '[INST] ' + message['content'] + ' [/INST]' }}"),
                     CHAT_FORMAT_UNKNOWN);
    assert_int_equal(chat_format_detect(""), CHAT_FORMAT_UNKNOWN);
    assert_int_equal(chat_format_detect(NULL), CHAT_FORMAT_UNKNOWN);
    assert_int_equal(chat_format_detect("{% for m in messages %}{{ m.content }}{% endfor %}"),
                     CHAT_FORMAT_UNKNOWN);
}

static char *read_text_file(const char *path)
{
    FILE *file = fopen(path, "rb");
    assert_non_null(file);
    assert_int_equal(fseek(file, 0, SEEK_END), 0);
    long size = ftell(file);
    assert_true(size >= 0);
    rewind(file);
    char *text = malloc((size_t)size + 1);
    assert_non_null(text);
    assert_int_equal(fread(text, 1, (size_t)size, file), (size_t)size);
    text[size] = '\0';
    fclose(file);
    return text;
}

struct vendor_template {
    const char *file; /* under data/chat-templates/ */
    enum chat_format format;
    const char *bos_token; /* as the model defines them; NULL when it has none */
    const char *eos_token;
};

static const struct vendor_template vendor_templates[] = {
    {"Qwen-Qwen2.5-7B-Instruct.jinja", CHAT_FORMAT_QWEN2, NULL, "<|im_end|>"},
    {"Qwen-Qwen3-0.6B.jinja", CHAT_FORMAT_QWEN3, NULL, "<|im_end|>"},
    {"HuggingFaceTB-SmolLM3-3B.jinja", CHAT_FORMAT_SMOLLM3, NULL, "<|im_end|>"},
    {"meta-llama-Llama-3.2-3B-Instruct.jinja", CHAT_FORMAT_LLAMA3, "<|begin_of_text|>",
     "<|eot_id|>"},
    {"google-gemma-2-2b-it.jinja", CHAT_FORMAT_GEMMA, "<bos>", "<eos>"},
};

static const char *vendor_path(const struct vendor_template *vendor)
{
    char relative[256];
    snprintf(relative, sizeof relative, "data/chat-templates/%s", vendor->file);
    return shared_path(relative);
}

static void test_detect_vendor_templates(void **state)
{
    (void)state;
    for (int i = 0; i < N_OF(vendor_templates); i++) {
        const char *path = vendor_path(&vendor_templates[i]);
        if (!path)
            skip();
        char *source = read_text_file(path);
        if (chat_format_detect(source) != vendor_templates[i].format)
            fail_msg("%s detected as %s", vendor_templates[i].file,
                     chat_format_name(chat_format_detect(source)));
        /* Qwen2.5's default prompt is found generically too; the others have none. */
        char *default_system = NULL;
        assert_int_equal(chat_template_default_system(source, &default_system), PLM_OK);
        if (vendor_templates[i].format == CHAT_FORMAT_QWEN2)
            assert_string_equal(default_system,
                                "You are Qwen, created by Alibaba Cloud. You are a helpful "
                                "assistant.");
        else
            assert_null(default_system);
        free(default_system);
        free(source);
    }
}

static void test_format_names(void **state)
{
    (void)state;
    const char *names[] = {"chatml", "qwen2", "qwen3", "smollm3", "llama3", "llama2", "gemma"};
    for (int i = 0; i < N_OF(names); i++) {
        enum chat_format format = chat_format_from_name(names[i]);
        assert_int_not_equal(format, CHAT_FORMAT_UNKNOWN);
        assert_string_equal(chat_format_name(format), names[i]);
    }
    assert_int_equal(chat_format_from_name("unknown"), CHAT_FORMAT_UNKNOWN);
    assert_int_equal(chat_format_from_name("ChatML"), CHAT_FORMAT_UNKNOWN);
    assert_int_equal(chat_format_from_name(""), CHAT_FORMAT_UNKNOWN);
    assert_int_equal(chat_format_from_name(NULL), CHAT_FORMAT_UNKNOWN);
    assert_string_equal(chat_format_name(CHAT_FORMAT_UNKNOWN), "unknown");
    assert_string_equal(chat_format_name((enum chat_format)99), "unknown");
    assert_string_equal(chat_format_name((enum chat_format)-1), "unknown");
}

/* ---------------------------------------------------------------- errors */

static void test_bad_arguments(void **state)
{
    (void)state;
    const struct plm_chat_message user[] = {{"user", "hi"}};
    char *text = NULL;
    assert_int_equal(chat_render(CHAT_FORMAT_UNKNOWN, user, 1, true, NULL, &text), PLM_ERR_ARG);
    assert_non_null(strstr(plm_last_error(), "unknown chat format"));
    assert_null(text);
    assert_int_equal(chat_render((enum chat_format)42, user, 1, true, NULL, &text), PLM_ERR_ARG);
    assert_int_equal(chat_render((enum chat_format)-3, user, 1, true, NULL, &text), PLM_ERR_ARG);
    assert_int_equal(chat_render(CHAT_FORMAT_CHATML, user, 1, true, NULL, NULL), PLM_ERR_ARG);

    for (enum chat_format format = CHAT_FORMAT_CHATML; format <= CHAT_FORMAT_GEMMA; format++) {
        assert_refused(format, user, 0, "no messages");
        assert_refused(format, NULL, 1, "no messages");
        assert_refused(format, user, -1, "no messages");
        const struct plm_chat_message tool[] = {{"user", "hi"}, {"tool", "42"}};
        assert_refused(format, tool, 2, "role 'tool'");
        const struct plm_chat_message uppercase[] = {{"User", "hi"}};
        assert_refused(format, uppercase, 1, "role 'User'");
        const struct plm_chat_message no_role[] = {{NULL, "hi"}};
        assert_refused(format, no_role, 1, "no role");
        const struct plm_chat_message no_content[] = {{"user", NULL}};
        assert_refused(format, no_content, 1, "no content");
    }
}

/* Hostile content: truncated UTF-8 at the edges must not make trimming read
 * outside the string (ASan checks), and is kept as is. */
static void test_truncated_utf8_at_edges(void **state)
{
    (void)state;
    const struct plm_chat_message chat[] = {{"user", "\xe2\x80"}, {"assistant", "\xe3"},
                                            {"user", "\xc2"}};
    for (enum chat_format format = CHAT_FORMAT_CHATML; format <= CHAT_FORMAT_GEMMA; format++) {
        char *text = render_ok(format, chat, 3, true, NULL);
        assert_non_null(strstr(text, "\xe2\x80"));
        free(text);
    }
}

static void test_long_conversation(void **state)
{
    (void)state;
    enum { N_TURNS = 2000 };
    static struct plm_chat_message chat[N_TURNS];
    static char long_text[100000];
    memset(long_text, 'x', sizeof long_text - 1);
    for (int i = 0; i < N_TURNS; i++)
        chat[i] = (struct plm_chat_message){i % 2 ? "assistant" : "user", i == 7 ? long_text : "t"};
    for (enum chat_format format = CHAT_FORMAT_CHATML; format <= CHAT_FORMAT_GEMMA; format++) {
        char *text = render_ok(format, chat, N_TURNS, true, NULL);
        assert_true(strlen(text) > sizeof long_text + N_TURNS);
        free(text);
    }
}

/* ------------------------------------------------- conformance with Jinja */

static char renderer_script[4096];

/* The renderer sits beside this file: tests/chat/render_jinja.py. */
static const char *find_renderer(void)
{
    const char *from_env = getenv("POCKETLM_CHAT_RENDERER");
    if (from_env && *from_env) {
        snprintf(renderer_script, sizeof renderer_script, "%s", from_env);
    } else {
        const char *source = __FILE__;
        const char *slash = strrchr(source, '/');
        int dir_len = slash ? (int)(slash - source) : 1;
        snprintf(renderer_script, sizeof renderer_script, "%.*s/chat/render_jinja.py", dir_len,
                 slash ? source : ".");
    }
    return access(renderer_script, R_OK) == 0 ? renderer_script : NULL;
}

/* Why the conformance tests cannot run, or NULL if they can. */
static const char *conformance_unavailable(void)
{
    if (!shared_path("data/chat-templates/Qwen-Qwen3-0.6B.jinja"))
        return "the shared chat templates are absent";
    if (system("/usr/bin/python3 -c 'import jinja2' >/dev/null 2>&1") != 0)
        return "/usr/bin/python3 cannot import jinja2 (install python3-jinja2)";
    if (!find_renderer())
        return "tests/chat/render_jinja.py not found (set POCKETLM_CHAT_RENDERER)";
    return NULL;
}

struct conversation {
    const char *name;
    int n_messages;
    struct plm_chat_message messages[8];
};

/* Conversations every vendor template accepts (Gemma's refuses system messages:
 * see deliberate_difference). */
static const struct conversation conversations[] = {
    {"system + user", 2, {{"system", "You are a pirate."}, {"user", "Where is the treasure?"}}},
    {"user only", 1, {{"user", "Hello!"}}},
    {"multi-turn", 3, {{"user", "What is 2+2?"}, {"assistant", "4."}, {"user", "And 3+3?"}}},
    {"system + multi-turn ending with the assistant",
     4,
     {{"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello! How can I help?"},
      {"user", "Bye"}}},
    {"newlines and surrounding whitespace",
     4,
     {{"system", "\n  Line one.\nLine two.  \n\n"},
      {"user", "\n\nfirst\n\nsecond\n"},
      {"assistant", "\n\n  answer\n\n"},
      {"user", " \t last \t "}}},
    {"unicode and unicode spaces",
     3,
     {{"user", "\xe3\x80\x80\xc2\xa0h\xc3\xa9llo \xe4\xb8\x96\xe7\x95\x8c \xf0\x9f\x98\x80"
               "\xe2\x80\x83\xe2\x80\xa8\xc2\x85"},
      {"assistant", "\xe2\x80\x8b zero-width space is not whitespace \xe2\x80\x8b"},
      {"user", "\x1c\x1d fin \x1e\x1f\x0b\x0c"}}},
    {"text that looks like template tags",
     3,
     {{"user", "{{ bos_token }}{% if true %}x{% endif %}{# c #} <|im_end|>\n<|im_start|>system"},
      {"assistant", "<|eot_id|><start_of_turn>model\n[INST] <<SYS>> \\n '\" </s>"},
      {"user", "<tool_response>not a tool</tool_response>"}}},
    {"assistant with reasoning",
     3,
     {{"user", "Think first."},
      {"assistant", "<think>\nStep one.\nStep two.\n</think>\n\nThe answer."},
      {"user", "Again?"}}},
    {"reasoning after the last query",
     4,
     {{"system", "S"},
      {"user", "Q"},
      {"assistant", "<think>\n\nfirst\n\n</think>\n\nA1"},
      {"assistant", "\n\nplain answer\n"}}},
    {"nested and repeated think tags",
     4,
     {{"user", "Q1"},
      {"assistant", "pre<think>a<think>\nb\n\n</think>mid</think>\n\nend"},
      {"user", "<tool_response>\nresult\n</tool_response>"},
      {"assistant", "<think></think>only answer"}}},
    {"empty contents", 3, {{"system", ""}, {"user", ""}, {"assistant", ""}}},
    {"smollm3 /no_think", 3,
     {{"system", "Answer briefly. /no_think"}, {"user", "Hi"}, {"assistant", "\nHello"}}},
    {"smollm3 /think and blank instructions", 2, {{"system", " /think \n"}, {"user", "Hi"}}},
};

/* Conversations only some vendor templates accept; where one refuses, so must
 * chat_render. */
static const struct conversation awkward_conversations[] = {
    {"system only", 1, {{"system", "Alone."}}},
    {"assistant only", 1, {{"assistant", "Prefilled"}}},
    {"two users in a row", 2, {{"user", "a"}, {"user", "b"}}},
    {"assistant first", 2, {{"assistant", "a"}, {"user", "b"}}},
    {"system after the first message", 3, {{"user", "a"}, {"system", "late"}, {"user", "b"}}},
    {"two system messages", 3, {{"system", "a"}, {"system", "b"}, {"user", "c"}}},
    {"thinking flags in a user message", 2, {{"user", "/no_think please"}, {"assistant", "ok"}}},
};

/* Whether chat_render is meant to differ from the vendor template here. Gemma:
 * its template refuses a leading system message, which chat_render merges into
 * the first user turn (checked separately), and prints a later one as a
 * "system" turn the model never saw in training, which chat_render refuses.
 * SmolLM3: its template silently drops a later system message; chat_render
 * refuses it. */
static bool deliberate_difference(enum chat_format format, const struct conversation *chat)
{
    for (int i = 0; i < chat->n_messages; i++) {
        bool system = strcmp(chat->messages[i].role, "system") == 0;
        if (system && (format == CHAT_FORMAT_GEMMA || (format == CHAT_FORMAT_SMOLLM3 && i > 0)))
            return true;
    }
    return false;
}

/* One conversation to render with both Jinja and chat_render. */
struct conformance_case {
    const struct conversation *chat;
    bool add_generation_prompt;
    char *jinja_text; /* what Jinja rendered, or NULL if the template refused */
};

static char *read_all(FILE *pipe)
{
    size_t len = 0, cap = 1 << 16;
    char *text = malloc(cap);
    assert_non_null(text);
    size_t got;
    while ((got = fread(text + len, 1, cap - len - 1, pipe)) > 0) {
        len += got;
        if (len + 1 == cap) {
            cap *= 2;
            text = realloc(text, cap);
            assert_non_null(text);
        }
    }
    text[len] = '\0';
    return text;
}

/* Renders every case with Jinja in one run of the renderer (starting Python
 * costs far more than rendering) and fills in their jinja_text. */
static void render_with_jinja(const char *template_path, const struct vendor_template *vendor,
                              const char *date, struct conformance_case *cases, int n_cases)
{
    cJSON *requests = cJSON_CreateArray();
    for (int c = 0; c < n_cases; c++) {
        cJSON *request = cJSON_CreateObject();
        cJSON *messages = cJSON_AddArrayToObject(request, "messages");
        for (int i = 0; i < cases[c].chat->n_messages; i++) {
            cJSON *message = cJSON_CreateObject();
            cJSON_AddStringToObject(message, "role", cases[c].chat->messages[i].role);
            cJSON_AddStringToObject(message, "content", cases[c].chat->messages[i].content);
            cJSON_AddItemToArray(messages, message);
        }
        cJSON_AddBoolToObject(request, "add_generation_prompt", cases[c].add_generation_prompt);
        if (vendor->bos_token)
            cJSON_AddStringToObject(request, "bos_token", vendor->bos_token);
        if (vendor->eos_token)
            cJSON_AddStringToObject(request, "eos_token", vendor->eos_token);
        cJSON_AddStringToObject(request, "date", date);
        cJSON_AddItemToArray(requests, request);
    }
    char *json = cJSON_PrintUnformatted(requests);
    assert_non_null(json);
    cJSON_Delete(requests);

    char request_path[4096];
    snprintf(request_path, sizeof request_path, "%s", temp_path("chat-requests.json"));
    FILE *file = fopen(request_path, "wb");
    assert_non_null(file);
    assert_true(fputs(json, file) >= 0);
    assert_int_equal(fclose(file), 0);
    free(json);

    /* The paths are ours (no quotes in them), so single quotes suffice. */
    assert_null(strchr(template_path, '\''));
    assert_null(strchr(request_path, '\''));
    char command[3 * 4096 + 64];
    snprintf(command, sizeof command, "/usr/bin/python3 '%s' '%s' '%s'", renderer_script,
             template_path, request_path);
    FILE *pipe = popen(command, "r");
    assert_non_null(pipe);
    char *output = read_all(pipe);
    int status = pclose(pipe);
    remove(request_path);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
        fail_msg("render_jinja.py failed: %s", command);

    cJSON *results = cJSON_Parse(output);
    free(output);
    assert_non_null(results);
    assert_int_equal(cJSON_GetArraySize(results), n_cases);
    for (int c = 0; c < n_cases; c++) {
        cJSON *text = cJSON_GetObjectItemCaseSensitive(cJSON_GetArrayItem(results, c), "text");
        cases[c].jinja_text = cJSON_IsString(text) ? strdup(text->valuestring) : NULL;
    }
    cJSON_Delete(results);
}

enum conformance_outcome { SAME_TEXT, BOTH_REFUSE, DELIBERATE_DIFFERENCE };

/* Fails unless chat_render agrees with Jinja: the same text, or both refuse. */
static enum conformance_outcome compare_with_jinja(const struct vendor_template *vendor,
                                                   const struct conformance_case *one,
                                                   const struct chat_render_options *options)
{
    const struct conversation *chat = one->chat;
    char *text = NULL;
    int status = chat_render(vendor->format, chat->messages, chat->n_messages,
                             one->add_generation_prompt, options, &text);
    if (deliberate_difference(vendor->format, chat)) {
        free(text);
        return DELIBERATE_DIFFERENCE;
    }
    if (!one->jinja_text) {
        if (status != PLM_ERR_ARG)
            fail_msg("%s, '%s': the vendor template refuses it but chat_render returned %d",
                     vendor->file, chat->name, status);
        return BOTH_REFUSE;
    }
    if (status != PLM_OK)
        fail_msg("%s, '%s': chat_render failed: %s", vendor->file, chat->name, plm_last_error());
    if (strcmp(text, one->jinja_text) != 0)
        fail_msg("%s, '%s' (add_generation_prompt %d):\n--- jinja:\n%s\n--- chat_render:\n%s\n---",
                 vendor->file, chat->name, one->add_generation_prompt, one->jinja_text, text);
    free(text);
    return SAME_TEXT;
}

/* Checks each conversation, with and without the generation prompt. The
 * conversations in accepted_chats must be accepted by the template; those in
 * other_chats may be refused, as long as chat_render refuses them too. */
static void check_template(const struct vendor_template *vendor, const char *template_path,
                           const struct chat_render_options *options, const char *jinja_date,
                           const struct conversation *accepted_chats, int n_accepted,
                           const struct conversation *other_chats, int n_other)
{
    int n_cases = 2 * (n_accepted + n_other);
    struct conformance_case *cases = calloc((size_t)n_cases, sizeof *cases);
    assert_non_null(cases);
    for (int c = 0; c < n_cases; c++) {
        int chat = c / 2;
        cases[c].chat = chat < n_accepted ? &accepted_chats[chat] : &other_chats[chat - n_accepted];
        cases[c].add_generation_prompt = c % 2 == 1;
    }
    render_with_jinja(template_path, vendor, jinja_date, cases, n_cases);
    for (int c = 0; c < n_cases; c++) {
        enum conformance_outcome outcome = compare_with_jinja(vendor, &cases[c], options);
        if (c / 2 < n_accepted && outcome == BOTH_REFUSE)
            fail_msg("%s refuses '%s'", vendor->file, cases[c].chat->name);
        free(cases[c].jinja_text);
    }
    free(cases);
}

static void test_conformance_with_vendor_templates(void **state)
{
    (void)state;
    for (int v = 0; v < N_OF(vendor_templates); v++) {
        const struct vendor_template *vendor = &vendor_templates[v];
        char template_path[4096];
        snprintf(template_path, sizeof template_path, "%s", vendor_path(vendor));
        const struct chat_render_options options = {
            .bos_text = vendor->bos_token, .eos_text = vendor->eos_token, .date = test_date};
        check_template(vendor, template_path, &options, test_date, conversations,
                       N_OF(conversations), awkward_conversations, N_OF(awkward_conversations));
    }
}

/* Gemma's template refuses system messages; chat_render folds the system text
 * into the first user turn, which must equal what the template renders for that
 * merged conversation. */
static void test_gemma_system_merge_matches_jinja(void **state)
{
    (void)state;
    const struct vendor_template *gemma = &vendor_templates[4];
    assert_int_equal(gemma->format, CHAT_FORMAT_GEMMA);
    char template_path[4096];
    snprintf(template_path, sizeof template_path, "%s", vendor_path(gemma));
    const struct conversation chat = {
        "system", 3,
        {{"system", "\n Speak like a pirate. \n"}, {"user", " Hello "}, {"assistant", "Arr"}}};
    const struct conversation merged = {
        "merged", 2, {{"user", "Speak like a pirate.\n\nHello"}, {"assistant", "Arr"}}};
    struct conformance_case one = {.chat = &merged, .add_generation_prompt = true};
    render_with_jinja(template_path, gemma, test_date, &one, 1);
    assert_non_null(one.jinja_text);

    const struct chat_render_options options = {.bos_text = "<bos>", .eos_text = "<eos>"};
    char *text = render_ok(CHAT_FORMAT_GEMMA, chat.messages, chat.n_messages, true, &options);
    assert_string_equal(text, one.jinja_text);
    free(text);
    free(one.jinja_text);
}

/* Llama 3.2's template asks strftime_now for today's date; chat_render reads
 * the clock when options->date is NULL. */
static void test_llama3_today_matches_jinja(void **state)
{
    (void)state;
    const struct vendor_template *llama3 = &vendor_templates[3];
    assert_int_equal(llama3->format, CHAT_FORMAT_LLAMA3);
    char template_path[4096];
    snprintf(template_path, sizeof template_path, "%s", vendor_path(llama3));
    char today[32];
    format_today(today);
    const struct chat_render_options options = {.bos_text = llama3->bos_token};
    check_template(llama3, template_path, &options, today, conversations, 1, NULL, 0);
}

/* Plain ChatML with a default system prompt, against SmolLM2's template. */
static void test_chatml_default_system_matches_jinja(void **state)
{
    (void)state;
    char template_path[4096];
    snprintf(template_path, sizeof template_path, "%s", temp_path("smollm2.jinja"));
    FILE *file = fopen(template_path, "wb");
    assert_non_null(file);
    assert_true(fputs(smollm2_template, file) >= 0);
    assert_int_equal(fclose(file), 0);

    char *default_system = NULL;
    assert_int_equal(chat_template_default_system(smollm2_template, &default_system), PLM_OK);
    assert_non_null(default_system);
    const struct vendor_template smollm2 = {"SmolLM2 (inline)", CHAT_FORMAT_CHATML, NULL,
                                            "<|im_end|>"};
    const struct chat_render_options options = {.default_system = default_system};
    /* SmolLM2's template takes any order of roles, so every conversation must match. */
    check_template(&smollm2, template_path, &options, test_date, conversations,
                   N_OF(conversations), NULL, 0);
    check_template(&smollm2, template_path, &options, test_date, awkward_conversations,
                   N_OF(awkward_conversations), NULL, 0);
    free(default_system);
    remove(template_path);
}

int main(void)
{
    const struct CMUnitTest pure_tests[] = {
        cmocka_unit_test(test_llama2_system_and_user),
        cmocka_unit_test(test_llama2_multi_turn),
        cmocka_unit_test(test_llama2_strips_system_and_user_together),
        cmocka_unit_test(test_llama2_refuses_what_it_cannot_express),
        cmocka_unit_test(test_chatml_plain),
        cmocka_unit_test(test_chatml_default_system),
        cmocka_unit_test(test_default_system_extraction),
        cmocka_unit_test(test_llama3_trims_unicode_space_and_prints_today),
        cmocka_unit_test(test_gemma_merges_system_into_first_user_turn),
        cmocka_unit_test(test_smollm3_flags_and_second_system),
        cmocka_unit_test(test_detect_inline_templates),
        cmocka_unit_test(test_detect_vendor_templates),
        cmocka_unit_test(test_format_names),
        cmocka_unit_test(test_bad_arguments),
        cmocka_unit_test(test_truncated_utf8_at_edges),
        cmocka_unit_test(test_long_conversation),
    };
    int failed = cmocka_run_group_tests_name("chat templates", pure_tests, NULL, NULL);
    if (failed)
        return failed;

    const char *unavailable = conformance_unavailable();
    if (unavailable) {
        fprintf(stderr, "skipping the Jinja conformance tests: %s\n", unavailable);
        return PLM_TEST_SKIP;
    }
    const struct CMUnitTest conformance_tests[] = {
        cmocka_unit_test(test_conformance_with_vendor_templates),
        cmocka_unit_test(test_gemma_system_merge_matches_jinja),
        cmocka_unit_test(test_llama3_today_matches_jinja),
        cmocka_unit_test(test_chatml_default_system_matches_jinja),
    };
    return cmocka_run_group_tests_name("chat templates vs Jinja", conformance_tests, NULL, NULL);
}
