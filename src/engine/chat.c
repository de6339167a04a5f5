/* plm_chat_render: picks the model's chat template family and renders it. */
#include "chat/chat_template.h"
#include "model/model.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

/* The text of a special token, e.g. "<s>" for BOS, into a NUL-terminated buffer. */
static void token_text(const struct plm_vocab *vocab, int32_t token, char *buf, size_t size)
{
    buf[0] = '\0';
    if (token < 0)
        return;
    struct gguf_str text = vocab_token_text(vocab, token);
    size_t n = text.len < size - 1 ? text.len : size - 1;
    memcpy(buf, text.ptr, n);
    buf[n] = '\0';
}

int plm_chat_render(const plm_model *m, const char *template_name, const struct plm_chat_message *messages,
                    int n_messages, bool add_assistant, char **text)
{
    *text = NULL;
    enum chat_format format;
    if (template_name) {
        format = chat_format_from_name(template_name);
        if (format == CHAT_FORMAT_UNKNOWN)
            return plm_fail(PLM_ERR_ARG,
                            "unknown chat template '%s' (known: chatml, qwen2, qwen3, smollm3, llama3, llama2, gemma)",
                            template_name);
    } else {
        if (!m->chat_template)
            return plm_fail(PLM_ERR_UNSUPPORTED,
                            "the model has no chat template (tokenizer.chat_template); name one with --chat-template");
        format = chat_format_detect(m->chat_template);
        if (format == CHAT_FORMAT_UNKNOWN)
            return plm_fail(PLM_ERR_UNSUPPORTED,
                            "the model's chat template is not one pocketlm knows; name one with --chat-template");
    }
    char bos[64], eos[64];
    token_text(m->vocab, vocab_bos(m->vocab), bos, sizeof bos);
    token_text(m->vocab, vocab_eos(m->vocab), eos, sizeof eos);
    /* Plain ChatML templates may open with a default system prompt of their own. */
    char *default_system = NULL;
    if (format == CHAT_FORMAT_CHATML && m->chat_template && !template_name)
        chat_template_default_system(m->chat_template, &default_system);
    struct chat_render_options options = {
        .bos_text = bos, .eos_text = eos, .date = NULL, .default_system = default_system};
    int rc = chat_render(format, messages, n_messages, add_assistant, &options, text);
    free(default_system);
    return rc;
}
