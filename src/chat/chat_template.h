/*
 * Chat templates. GGUF files carry the vendor's Jinja template in
 * tokenizer.chat_template; rather than run Jinja, pocketlm recognises the
 * template's family and renders it in C, byte for byte as the vendor's template
 * does (tests compare against the real templates rendered by Jinja).
 */
#ifndef PLM_CHAT_CHAT_TEMPLATE_H
#define PLM_CHAT_CHAT_TEMPLATE_H

#include "pocketlm.h"

enum chat_format {
    CHAT_FORMAT_UNKNOWN = 0,
    CHAT_FORMAT_CHATML,   /* plain ChatML: <|im_start|>role\n...<|im_end|>\n */
    CHAT_FORMAT_QWEN2,    /* ChatML with Qwen2.5's default system prompt */
    CHAT_FORMAT_QWEN3,    /* ChatML with Qwen3's think blocks */
    CHAT_FORMAT_SMOLLM3,  /* ChatML with SmolLM3's metadata system block */
    CHAT_FORMAT_LLAMA3,   /* <|start_header_id|>role<|end_header_id|>\n\n...<|eot_id|> */
    CHAT_FORMAT_LLAMA2,   /* <s>[INST] <<SYS>>...<</SYS>> ... [/INST] */
    CHAT_FORMAT_GEMMA,    /* <start_of_turn>user\n...<end_of_turn>\n */
};

/* Recognises a Jinja template's family; CHAT_FORMAT_UNKNOWN if none. */
enum chat_format chat_format_detect(const char *jinja_template);
/* By name: "chatml", "qwen2", "qwen3", "smollm3", "llama3", "llama2", "gemma". */
enum chat_format chat_format_from_name(const char *name);
const char *chat_format_name(enum chat_format format);

struct chat_render_options {
    const char *bos_text;  /* the BOS token's text, for templates that print it; NULL = none */
    const char *eos_text;  /* the EOS token's text (Llama 2 ends assistant turns with it); NULL = none */
    const char *date;      /* "26 Jul 2024" style date for templates that print one; NULL = today */
    /* ChatML and Qwen2 only: the system message to open with when the conversation
     * has none (see chat_template_default_system). NULL = none for ChatML, Qwen2.5's
     * own for Qwen2. */
    const char *default_system;
};

/* Finds the default system prompt a ChatML template prints when the conversation
 * has no system message: a string literal '<|im_start|>system\n...<|im_end|>'
 * (SmolLM2, Qwen2.5). *text is the malloc'd, unescaped prompt, or NULL if the
 * template has none. PLM_ERR_UNSUPPORTED for an escape sequence it cannot decode. */
int chat_template_default_system(const char *jinja_template, char **text);

/* Renders the conversation; *text is malloc'd. PLM_ERR_ARG for an empty
 * conversation, a role other than system/user/assistant, or an order the format
 * cannot express: a system message after the first message (SmolLM3, Llama 2,
 * Gemma), turns that do not alternate user/assistant (Llama 2, Gemma). Gemma's
 * leading system message is merged into the first user turn, as llama.cpp does. */
int chat_render(enum chat_format format, const struct plm_chat_message *messages, int n_messages,
                bool add_assistant, const struct chat_render_options *options, char **text);

#endif
