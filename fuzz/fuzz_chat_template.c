/*
 * The chat-template code: family detection and default-system extraction on
 * arbitrary template text, and rendering of arbitrary conversations.
 *
 * Input: a format byte (value % 8: 0 = the family detected from the template,
 * else that enum chat_format), a flags byte (bit 0 add_assistant), then
 * NUL-separated strings: the Jinja template, then role, content, role, content...
 */
#include "fuzz_common.h"

#include "chat/chat_template.h"

#include <stdlib.h>
#include <string.h>

#define MAX_MESSAGES 64

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 2)
        return 0;
    /* A NUL-terminated copy, so that the last string ends too. */
    char *text = malloc(size - 2 + 1);
    if (!text)
        return 0;
    memcpy(text, data + 2, size - 2);
    text[size - 2] = '\0';
    const char *end = text + size - 2;

    const char *jinja = text;
    enum chat_format format = (enum chat_format)(data[0] % 8);
    if (format == CHAT_FORMAT_UNKNOWN)
        format = chat_format_detect(jinja);
    chat_format_name(format);
    char *default_system = NULL;
    chat_template_default_system(jinja, &default_system);

    struct plm_chat_message messages[MAX_MESSAGES];
    int n_messages = 0;
    const char *p = jinja + strlen(jinja) + 1;
    while (p < end && n_messages < MAX_MESSAGES) {
        const char *role = p;
        p += strlen(p) + 1;
        const char *content = p < end ? p : "";
        if (p < end)
            p += strlen(p) + 1;
        messages[n_messages++] = (struct plm_chat_message){role, content};
    }

    struct chat_render_options options = {
        .bos_text = "<s>", .eos_text = "</s>", .date = "26 Jul 2024",
        .default_system = default_system};
    char *rendered = NULL;
    if (chat_render(format, messages, n_messages, data[1] & 1, &options, &rendered) == PLM_OK &&
        !rendered)
        fuzz_fail("chat_render succeeded without text");
    free(rendered);
    free(default_system);
    free(text);
    return 0;
}
