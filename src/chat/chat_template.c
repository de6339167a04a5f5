/*
 * Chat templates rendered in C.
 *
 * Each family below reproduces what its vendor's Jinja template prints for a
 * conversation of system/user/assistant messages, without tools: the same
 * separators, the same default system prompts, and the same trimming. Jinja's
 * `trim` filter and Python's str.strip() remove Unicode whitespace, not only
 * ASCII, so the trimming here decodes the few UTF-8 spaces Python knows.
 *
 * Where a vendor template refuses a conversation (Gemma and Llama 2 insist on
 * alternating user/assistant turns) chat_render refuses it too, with
 * PLM_ERR_ARG. The one deliberate difference is Gemma's system message: the
 * vendor template raises an error, but like llama.cpp we fold the system text
 * into the first user turn, since a system prompt is too useful to reject.
 */
#include "chat/chat_template.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/error.h"

/* ------------------------------------------------------------ text building */

/* A growing NUL-terminated string. An allocation failure is remembered and
 * later appends do nothing, so renderers need not check every append. */
struct text_builder {
    char *data;
    size_t len;
    size_t cap;
    bool out_of_memory;
};

/* A piece of a string that is not NUL-terminated. */
struct span {
    const char *start;
    size_t len;
};

static struct span span_of(const char *text)
{
    return (struct span){text, strlen(text)};
}

static void append_bytes(struct text_builder *out, const char *bytes, size_t n)
{
    if (out->out_of_memory)
        return;
    if (n >= SIZE_MAX / 2 - out->len) {
        out->out_of_memory = true;
        return;
    }
    if (out->len + n + 1 > out->cap) {
        size_t cap = out->cap ? out->cap : 256;
        while (cap < out->len + n + 1)
            cap *= 2;
        char *grown = realloc(out->data, cap);
        if (!grown) {
            out->out_of_memory = true;
            return;
        }
        out->data = grown;
        out->cap = cap;
    }
    memcpy(out->data + out->len, bytes, n);
    out->len += n;
    out->data[out->len] = '\0';
}

static void append(struct text_builder *out, const char *text)
{
    append_bytes(out, text, strlen(text));
}

static void append_span(struct text_builder *out, struct span text)
{
    append_bytes(out, text.start, text.len);
}

/* Appends text with every occurrence of needle removed, scanning left to right
 * as Python's str.replace(needle, "") does. */
static void append_without(struct text_builder *out, struct span text, const char *needle)
{
    size_t needle_len = strlen(needle);
    const char *end = text.start + text.len;
    const char *from = text.start;
    const char *found;
    while ((found = memmem(from, (size_t)(end - from), needle, needle_len)) != NULL) {
        append_bytes(out, from, (size_t)(found - from));
        from = found + needle_len;
    }
    append_bytes(out, from, (size_t)(end - from));
}

/* ------------------------------------------------------- Python-like strip */

/* Length of the whitespace character starting at text (at most avail bytes),
 * or 0. Whitespace is what Python's str.isspace() accepts: ASCII \t..\r, space,
 * the separators \x1c..\x1f, and the Unicode spaces U+0085, U+00A0, U+1680,
 * U+2000..U+200A, U+2028, U+2029, U+202F, U+205F and U+3000. */
static size_t space_length(const char *text, size_t avail)
{
    const unsigned char *b = (const unsigned char *)text;
    if (avail == 0)
        return 0;
    if (b[0] == ' ' || (b[0] >= 0x09 && b[0] <= 0x0d) || (b[0] >= 0x1c && b[0] <= 0x1f))
        return 1;
    if (avail >= 2 && b[0] == 0xc2 && (b[1] == 0x85 || b[1] == 0xa0))
        return 2;
    if (avail < 3)
        return 0;
    if (b[0] == 0xe1 && b[1] == 0x9a && b[2] == 0x80)
        return 3;
    if (b[0] == 0xe2 && b[1] == 0x80 &&
        ((b[2] >= 0x80 && b[2] <= 0x8a) || b[2] == 0xa8 || b[2] == 0xa9 || b[2] == 0xaf))
        return 3;
    if (b[0] == 0xe2 && b[1] == 0x81 && b[2] == 0x9f)
        return 3;
    if (b[0] == 0xe3 && b[1] == 0x80 && b[2] == 0x80)
        return 3;
    return 0;
}

/* Length of the whitespace character that ends text, or 0. */
static size_t space_length_before_end(struct span text)
{
    const char *end = text.start + text.len;
    for (size_t n = 1; n <= 3 && n <= text.len; n++)
        if (space_length(end - n, n) == n)
            return n;
    return 0;
}

static struct span strip_left(struct span text)
{
    size_t n;
    while ((n = space_length(text.start, text.len)) > 0) {
        text.start += n;
        text.len -= n;
    }
    return text;
}

static struct span strip_right(struct span text)
{
    size_t n;
    while ((n = space_length_before_end(text)) > 0)
        text.len -= n;
    return text;
}

/* Jinja's `trim` filter and Python's str.strip(). */
static struct span strip(struct span text)
{
    return strip_right(strip_left(text));
}

/* str.lstrip('\n') and str.rstrip('\n'): only newlines. */
static struct span strip_newlines_left(struct span text)
{
    while (text.len > 0 && text.start[0] == '\n') {
        text.start++;
        text.len--;
    }
    return text;
}

static struct span strip_newlines_right(struct span text)
{
    while (text.len > 0 && text.start[text.len - 1] == '\n')
        text.len--;
    return text;
}

/* Strips whitespace from both ends of what was appended since offset start, in
 * place: for templates that strip a string they built by concatenation. */
static void strip_appended_since(struct text_builder *out, size_t start)
{
    if (out->out_of_memory)
        return;
    struct span appended = {out->data + start, out->len - start};
    struct span kept = strip(appended);
    memmove(out->data + start, kept.start, kept.len);
    out->len = start + kept.len;
    out->data[out->len] = '\0';
}

/* Last occurrence of needle in text, or NULL. */
static const char *find_last(struct span text, const char *needle)
{
    size_t needle_len = strlen(needle);
    const char *last = NULL;
    const char *from = text.start;
    const char *end = text.start + text.len;
    const char *found;
    while ((found = memmem(from, (size_t)(end - from), needle, needle_len)) != NULL) {
        last = found;
        from = found + 1;
    }
    return last;
}

static bool starts_with(const char *text, const char *prefix)
{
    return strncmp(text, prefix, strlen(prefix)) == 0;
}

static bool ends_with(const char *text, const char *suffix)
{
    size_t len = strlen(text), suffix_len = strlen(suffix);
    return len >= suffix_len && memcmp(text + len - suffix_len, suffix, suffix_len) == 0;
}

/* ----------------------------------------------------------------- roles */

static bool has_role(const struct plm_chat_message *message, const char *role)
{
    return strcmp(message->role, role) == 0;
}

static bool is_known_role(const char *role)
{
    return strcmp(role, "system") == 0 || strcmp(role, "user") == 0 ||
           strcmp(role, "assistant") == 0;
}

/* Number of leading messages the template takes out of the turn loop: 1 when
 * the conversation opens with a system message. */
static int leading_system(const struct plm_chat_message *messages)
{
    return has_role(&messages[0], "system") ? 1 : 0;
}

/* ----------------------------------------------------------------- ChatML */

/* SmolLM, SmolLM2, Qwen2.5 and others: <|im_start|>role\ncontent<|im_end|>\n
 * per message, untrimmed. default_system (may be NULL) opens the conversation
 * when it has no system message of its own. */
static void append_chatml_turn(struct text_builder *out, const char *role, struct span content)
{
    append(out, "<|im_start|>");
    append(out, role);
    append(out, "\n");
    append_span(out, content);
    append(out, "<|im_end|>\n");
}

static void render_chatml(struct text_builder *out, const struct plm_chat_message *messages,
                          int n_messages, bool add_assistant, const char *default_system)
{
    if (default_system && !leading_system(messages))
        append_chatml_turn(out, "system", span_of(default_system));
    for (int i = 0; i < n_messages; i++)
        append_chatml_turn(out, messages[i].role, span_of(messages[i].content));
    if (add_assistant)
        append(out, "<|im_start|>assistant\n");
}

static const char qwen25_default_system[] =
    "You are Qwen, created by Alibaba Cloud. You are a helpful assistant.";

/* ------------------------------------------------------------------ Qwen3 */

/* Qwen3 keeps the reasoning (<think>...</think>) only of the assistant turns
 * that answer the latest user query; earlier turns lose it to save context.
 * The latest query is the last user message that is not a tool response
 * wrapped in <tool_response> tags, or the last message if there is none. */
static int qwen3_last_query(const struct plm_chat_message *messages, int n_messages)
{
    for (int i = n_messages - 1; i >= 0; i--) {
        const char *content = messages[i].content;
        bool tool_response =
            starts_with(content, "<tool_response>") && ends_with(content, "</tool_response>");
        if (has_role(&messages[i], "user") && !tool_response)
            return i;
    }
    return n_messages - 1;
}

/* An assistant message split the way Qwen3's template splits it: the answer
 * follows the last </think>; the reasoning is what precedes the first </think>,
 * from the last <think> before it. Without </think> it is all answer. */
struct qwen3_turn {
    struct span reasoning;
    struct span answer;
};

static struct qwen3_turn qwen3_split(const char *text)
{
    struct qwen3_turn turn = {.reasoning = {text, 0}, .answer = span_of(text)};
    const char *first_close = strstr(text, "</think>");
    if (!first_close)
        return turn;
    const char *last_close = find_last(turn.answer, "</think>");
    turn.answer = strip_newlines_left(span_of(last_close + strlen("</think>")));

    struct span reasoning = strip_newlines_right((struct span){text, (size_t)(first_close - text)});
    const char *open = find_last(reasoning, "<think>");
    if (open) {
        const char *after_open = open + strlen("<think>");
        reasoning.len -= (size_t)(after_open - reasoning.start);
        reasoning.start = after_open;
    }
    turn.reasoning = strip_newlines_left(reasoning);
    return turn;
}

static void render_qwen3(struct text_builder *out, const struct plm_chat_message *messages,
                         int n_messages, bool add_assistant)
{
    int last_query = qwen3_last_query(messages, n_messages);
    for (int i = 0; i < n_messages; i++) {
        if (!has_role(&messages[i], "assistant")) {
            append_chatml_turn(out, messages[i].role, span_of(messages[i].content));
            continue;
        }
        /* A turn after the latest query shows a think block (an empty one if it
         * did not reason) when it is the last message or actually reasoned. */
        struct qwen3_turn turn = qwen3_split(messages[i].content);
        bool shows_reasoning = i > last_query && (i == n_messages - 1 || turn.reasoning.len > 0);
        append(out, "<|im_start|>assistant\n");
        if (shows_reasoning) {
            append(out, "<think>\n");
            append_span(out, strip_newlines_right(turn.reasoning));
            append(out, "\n</think>\n\n");
            append_span(out, strip_newlines_left(turn.answer));
        } else {
            append_span(out, turn.answer);
        }
        append(out, "<|im_end|>\n");
    }
    if (add_assistant)
        append(out, "<|im_start|>assistant\n");
}

/* ---------------------------------------------------------------- SmolLM3 */

static const char smollm3_thinking_system[] =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face. Your role as an "
    "assistant involves thoroughly exploring questions through a systematic thinking process "
    "before providing the final precise and accurate solutions. This requires engaging in a "
    "comprehensive cycle of analysis, summarizing, exploration, reassessment, reflection, "
    "backtracking, and iteration to develop well-considered thinking process. Please structure "
    "your response into two main sections: Thought and Solution using the specified format: "
    "<think> Thought section </think> Solution section. In the Thought section, detail your "
    "reasoning process in steps. Each step should include detailed considerations such as "
    "analysing questions, summarizing relevant findings, brainstorming new ideas, verifying the "
    "accuracy of the current steps, refining any errors, and revisiting previous steps. In the "
    "Solution section, based on various attempts, explorations, and reflections from the Thought "
    "section, systematically present the final solution that you deem correct. The Solution "
    "section should be logical, accurate, and concise and detail necessary steps needed to reach "
    "the conclusion.";

static const char smollm3_plain_system[] =
    "You are a helpful AI assistant named SmolLM, trained by Hugging Face.";

/* SmolLM3 always opens with a metadata block. Reasoning is on unless the system
 * message says /no_think; the flags themselves are cut out of the instructions.
 * Without reasoning, assistant turns carry an empty think block. */
static void render_smollm3(struct text_builder *out, const struct plm_chat_message *messages,
                           int n_messages, bool add_assistant)
{
    bool thinking = true;
    struct text_builder without_no_think = {0}, without_flags = {0};
    struct span instructions = {"", 0};
    if (leading_system(messages)) {
        const char *system = messages[0].content;
        if (strstr(system, "/no_think"))
            thinking = false;
        append_without(&without_no_think, span_of(system), "/no_think");
        append_without(&without_flags, (struct span){without_no_think.data, without_no_think.len},
                       "/think");
        if (without_no_think.out_of_memory || without_flags.out_of_memory)
            out->out_of_memory = true;
        else if (without_flags.data)
            instructions = strip_right((struct span){without_flags.data, without_flags.len});
    }

    append(out, "<|im_start|>system\n## Metadata\n\nKnowledge Cutoff Date: June 2025\n");
    append(out, thinking ? "Reasoning Mode: /think\n\n" : "Reasoning Mode: /no_think\n\n");
    append(out, "## Custom Instructions\n\n");
    if (instructions.len > 0)
        append_span(out, instructions);
    else
        append(out, thinking ? smollm3_thinking_system : smollm3_plain_system);
    append(out, "\n\n<|im_end|>\n");
    free(without_no_think.data);
    free(without_flags.data);

    const char *empty_think = thinking ? "" : "<think>\n\n</think>\n";
    for (int i = leading_system(messages); i < n_messages; i++) {
        if (has_role(&messages[i], "user")) {
            append_chatml_turn(out, "user", span_of(messages[i].content));
        } else {
            append(out, "<|im_start|>assistant\n");
            append(out, empty_think);
            append_span(out, strip_newlines_left(span_of(messages[i].content)));
            append(out, "<|im_end|>\n");
        }
    }
    if (add_assistant) {
        append(out, "<|im_start|>assistant\n");
        append(out, empty_think);
    }
}

/* ---------------------------------------------------------------- Llama 3 */

/* Llama 3.2: the system turn always exists and starts with the knowledge cutoff
 * and today's date; every content is trimmed. */
static void append_llama3_turn(struct text_builder *out, const char *role, struct span content)
{
    append(out, "<|start_header_id|>");
    append(out, role);
    append(out, "<|end_header_id|>\n\n");
    append_span(out, strip(content));
    append(out, "<|eot_id|>");
}

static void render_llama3(struct text_builder *out, const struct plm_chat_message *messages,
                          int n_messages, bool add_assistant, const char *bos, const char *date)
{
    int first = leading_system(messages);
    append(out, bos);
    append(out, "<|start_header_id|>system<|end_header_id|>\n\n"
                "Cutting Knowledge Date: December 2023\nToday Date: ");
    append(out, date);
    append(out, "\n\n");
    if (first)
        append_span(out, strip(span_of(messages[0].content)));
    append(out, "<|eot_id|>");
    for (int i = first; i < n_messages; i++)
        append_llama3_turn(out, messages[i].role, span_of(messages[i].content));
    if (add_assistant)
        append(out, "<|start_header_id|>assistant<|end_header_id|>\n\n");
}

/* ---------------------------------------------------------------- Llama 2 */

/* Llama-2-chat as its published template renders it:
 *     <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] user [/INST]
 * The system block is glued to the first user message and the pair is stripped
 * as a whole. The prompt already ends with [/INST], which opens the assistant's
 * answer, so add_assistant adds nothing. */
static void render_llama2(struct text_builder *out, const struct plm_chat_message *messages,
                          int n_messages, const char *bos, const char *eos)
{
    int first = leading_system(messages);
    for (int i = first; i < n_messages; i++) {
        if (has_role(&messages[i], "user")) {
            append(out, bos);
            append(out, "[INST] ");
            size_t start = out->len;
            if (first && i == first) {
                append(out, "<<SYS>>\n");
                append(out, messages[0].content);
                append(out, "\n<</SYS>>\n\n");
            }
            append(out, messages[i].content);
            strip_appended_since(out, start);
            append(out, " [/INST]");
        } else {
            append(out, " ");
            append_span(out, strip(span_of(messages[i].content)));
            append(out, " ");
            append(out, eos);
        }
    }
}

/* ------------------------------------------------------------------ Gemma */

/* Gemma 2: user and model turns, trimmed. Gemma has no system role; the system
 * text (trimmed) opens the first user turn, followed by a blank line. */
static void render_gemma(struct text_builder *out, const struct plm_chat_message *messages,
                         int n_messages, bool add_assistant, const char *bos)
{
    int first = leading_system(messages);
    append(out, bos);
    for (int i = first; i < n_messages; i++) {
        bool is_user = has_role(&messages[i], "user");
        append(out, is_user ? "<start_of_turn>user\n" : "<start_of_turn>model\n");
        if (first && i == first) {
            append_span(out, strip(span_of(messages[0].content)));
            append(out, "\n\n");
        }
        append_span(out, strip(span_of(messages[i].content)));
        append(out, "<end_of_turn>\n");
    }
    if (add_assistant)
        append(out, "<start_of_turn>model\n");
}

/* ------------------------------------------------------------ validation */

static const char *const format_names[] = {
    [CHAT_FORMAT_UNKNOWN] = "unknown", [CHAT_FORMAT_CHATML] = "chatml",
    [CHAT_FORMAT_QWEN2] = "qwen2",     [CHAT_FORMAT_QWEN3] = "qwen3",
    [CHAT_FORMAT_SMOLLM3] = "smollm3", [CHAT_FORMAT_LLAMA3] = "llama3",
    [CHAT_FORMAT_LLAMA2] = "llama2",   [CHAT_FORMAT_GEMMA] = "gemma",
};
#define N_FORMATS ((int)(sizeof format_names / sizeof format_names[0]))

/* The shape every format needs: messages with known roles and some content. */
static int check_messages(const struct plm_chat_message *messages, int n_messages)
{
    if (n_messages <= 0 || !messages)
        return plm_fail(PLM_ERR_ARG, "chat: the conversation has no messages");
    for (int i = 0; i < n_messages; i++) {
        if (!messages[i].role || !messages[i].content)
            return plm_fail(PLM_ERR_ARG, "chat: message %d has no %s", i,
                            messages[i].role ? "content" : "role");
        if (!is_known_role(messages[i].role))
            return plm_fail(PLM_ERR_ARG,
                            "chat: message %d has role '%s' (expected system, user or assistant)",
                            i, messages[i].role);
    }
    return PLM_OK;
}

/* SmolLM3, Llama 2 and Gemma have a place for one system message, at the start;
 * Llama 2 and Gemma then need user and assistant turns to alternate, starting
 * with the user (their vendor templates raise an error otherwise). */
static int check_turn_order(enum chat_format format, const struct plm_chat_message *messages,
                            int n_messages)
{
    bool alternating = format == CHAT_FORMAT_LLAMA2 || format == CHAT_FORMAT_GEMMA;
    if (!alternating && format != CHAT_FORMAT_SMOLLM3)
        return PLM_OK;
    int first = leading_system(messages);
    for (int i = first; i < n_messages; i++) {
        if (has_role(&messages[i], "system"))
            return plm_fail(PLM_ERR_ARG,
                            "chat: %s takes a system message only at the start, message %d is one",
                            format_names[format], i);
        if (!alternating)
            continue;
        const char *expected = (i - first) % 2 == 0 ? "user" : "assistant";
        if (!has_role(&messages[i], expected))
            return plm_fail(PLM_ERR_ARG,
                            "chat: %s needs user and assistant turns to alternate, starting with "
                            "the user; message %d is '%s'",
                            format_names[format], i, messages[i].role);
    }
    if (alternating && first == n_messages)
        return plm_fail(PLM_ERR_ARG, "chat: %s needs a user message to carry the system message",
                        format_names[format]);
    return PLM_OK;
}

/* ----------------------------------------------------------------- public */

int chat_render(enum chat_format format, const struct plm_chat_message *messages, int n_messages,
                bool add_assistant, const struct chat_render_options *options, char **text)
{
    if (!text)
        return plm_fail(PLM_ERR_ARG, "chat: no place for the rendered text");
    *text = NULL;
    if ((int)format <= CHAT_FORMAT_UNKNOWN || (int)format >= N_FORMATS)
        return plm_fail(PLM_ERR_ARG, "chat: unknown chat format %d", (int)format);
    int status = check_messages(messages, n_messages);
    if (status == PLM_OK)
        status = check_turn_order(format, messages, n_messages);
    if (status != PLM_OK)
        return status;

    const struct chat_render_options no_options = {0};
    if (!options)
        options = &no_options;
    const char *bos = options->bos_text ? options->bos_text : "";
    const char *eos = options->eos_text ? options->eos_text : "";
    char today[32];
    const char *date = options->date;
    if (!date) {
        /* The format Llama 3.2's template asks strftime for. */
        time_t now = time(NULL);
        struct tm local;
        if (!localtime_r(&now, &local) || !strftime(today, sizeof today, "%d %b %Y", &local))
            return plm_fail(PLM_ERR_ARG, "chat: cannot format today's date");
        date = today;
    }

    struct text_builder out = {0};
    switch (format) {
    case CHAT_FORMAT_CHATML:
        render_chatml(&out, messages, n_messages, add_assistant, options->default_system);
        break;
    case CHAT_FORMAT_QWEN2:
        render_chatml(&out, messages, n_messages, add_assistant,
                      options->default_system ? options->default_system : qwen25_default_system);
        break;
    case CHAT_FORMAT_QWEN3:
        render_qwen3(&out, messages, n_messages, add_assistant);
        break;
    case CHAT_FORMAT_SMOLLM3:
        render_smollm3(&out, messages, n_messages, add_assistant);
        break;
    case CHAT_FORMAT_LLAMA3:
        render_llama3(&out, messages, n_messages, add_assistant, bos, date);
        break;
    case CHAT_FORMAT_LLAMA2:
        render_llama2(&out, messages, n_messages, bos, eos);
        break;
    case CHAT_FORMAT_GEMMA:
        render_gemma(&out, messages, n_messages, add_assistant, bos);
        break;
    case CHAT_FORMAT_UNKNOWN:
        break;
    }
    if (out.out_of_memory) {
        free(out.data);
        return plm_fail(PLM_ERR_NOMEM, "chat: out of memory rendering %d messages", n_messages);
    }
    *text = out.data;
    return PLM_OK;
}

/* Distinctive pieces of each family's template, most specific first: SmolLM3 and
 * Qwen3 are ChatML too, so they must be recognised before plain ChatML. */
enum chat_format chat_format_detect(const char *jinja_template)
{
    if (!jinja_template)
        return CHAT_FORMAT_UNKNOWN;
    const char *t = jinja_template;
    if (strstr(t, "<start_of_turn>"))
        return CHAT_FORMAT_GEMMA;
    if (strstr(t, "<|start_header_id|>"))
        return CHAT_FORMAT_LLAMA3;
    if (strstr(t, "[INST]") && strstr(t, "<<SYS>>"))
        return CHAT_FORMAT_LLAMA2;
    if (!strstr(t, "<|im_start|>"))
        return CHAT_FORMAT_UNKNOWN;
    if (strstr(t, "Reasoning Mode: ") || strstr(t, "/no_think"))
        return CHAT_FORMAT_SMOLLM3;
    if (strstr(t, "</think>"))
        return CHAT_FORMAT_QWEN3;
    if (strstr(t, "You are Qwen, created by Alibaba Cloud."))
        return CHAT_FORMAT_QWEN2;
    return CHAT_FORMAT_CHATML;
}

enum chat_format chat_format_from_name(const char *name)
{
    if (!name)
        return CHAT_FORMAT_UNKNOWN;
    for (int format = CHAT_FORMAT_UNKNOWN + 1; format < N_FORMATS; format++)
        if (strcmp(name, format_names[format]) == 0)
            return (enum chat_format)format;
    return CHAT_FORMAT_UNKNOWN;
}

const char *chat_format_name(enum chat_format format)
{
    if ((int)format < 0 || (int)format >= N_FORMATS)
        return format_names[CHAT_FORMAT_UNKNOWN];
    return format_names[format];
}

/* Decodes the body of a Jinja string literal (Python escapes) up to end. */
static int unescape_literal(const char *body, const char *end, char **text)
{
    struct text_builder out = {0};
    for (const char *c = body; c < end; c++) {
        if (*c != '\\') {
            append_bytes(&out, c, 1);
            continue;
        }
        c++;
        switch (*c) {
        case 'n': append(&out, "\n"); break;
        case 't': append(&out, "\t"); break;
        case 'r': append(&out, "\r"); break;
        case '\\': append(&out, "\\"); break;
        case '\'': append(&out, "'"); break;
        case '"': append(&out, "\""); break;
        default:
            free(out.data);
            return plm_fail(PLM_ERR_UNSUPPORTED,
                            "chat: default system prompt uses the escape '\\%c'", *c);
        }
    }
    if (out.out_of_memory) {
        free(out.data);
        return plm_fail(PLM_ERR_NOMEM, "chat: out of memory reading the default system prompt");
    }
    *text = out.data;
    return PLM_OK;
}

int chat_template_default_system(const char *jinja_template, char **text)
{
    if (!text)
        return plm_fail(PLM_ERR_ARG, "chat: no place for the default system prompt");
    *text = NULL;
    if (!jinja_template)
        return PLM_OK;
    /* As written in the template source, the newline is the two characters \n. */
    static const char opening[] = "<|im_start|>system\\n";
    static const char closing[] = "<|im_end|>";
    for (const char *at = strstr(jinja_template, opening); at; at = strstr(at + 1, opening)) {
        /* Only a literal that starts with the system header and holds the whole
         * turn counts: '<|im_start|>system\n' + messages[0]['content'] does not. */
        if (at == jinja_template || (at[-1] != '\'' && at[-1] != '"'))
            continue;
        char quote = at[-1];
        const char *body = at + strlen(opening);
        const char *c = body;
        while (*c && *c != quote && *c != '\n' && !starts_with(c, closing))
            c += (c[0] == '\\' && c[1] != '\0') ? 2 : 1;
        if (c > body && starts_with(c, closing))
            return unescape_literal(body, c, text);
    }
    return PLM_OK;
}
