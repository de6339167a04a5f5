/*
 * Vocabulary loading, special tokens, and the encode/decode entry points.
 * The two tokenizer models live in spm.c and bpe.c.
 *
 * Encoding first cuts special tokens out of the text (leftmost, longest
 * first, as Hugging Face's added-token matcher does): user-defined tokens
 * always, control and unknown tokens only with parse_special. The stretches
 * of text between them go through the model's tokenizer.
 */
#include "core/error.h"
#include "tokenizer/vocab_internal.h"

#include <stdlib.h>
#include <string.h>

#define KEY_MODEL "tokenizer.ggml.model"
#define KEY_PRE "tokenizer.ggml.pre"
#define KEY_TOKENS "tokenizer.ggml.tokens"
#define KEY_SCORES "tokenizer.ggml.scores"
#define KEY_TOKEN_TYPE "tokenizer.ggml.token_type"
#define KEY_MERGES "tokenizer.ggml.merges"

/* Texts that end a turn in common chat formats; EOG when they are control tokens. */
static const char *const EOG_TEXTS[] = {
    "<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<end_of_turn>",
    "<|endoftext|>", "<|end|>", "</s>",
};

/* tokenizer.ggml.pre values: the split regex; whether a piece that is a
 * whole token skips merging (Llama 3's tokenizer.json sets ignore_merges);
 * and the add_bos default when the file has no add_bos_token, which older
 * Llama 3 GGUFs lack although the model needs BOS. Several names share a
 * regex; the list follows llama.cpp's. */
static const struct {
    const char *name;
    enum pretokenizer rules;
    bool ignore_merges;
    bool add_bos;
} PRETOKENIZERS[] = {
    {"default", PRETOK_GPT2, false, false},
    {"gpt-2", PRETOK_GPT2, false, false},
    {"phi-2", PRETOK_GPT2, false, false},
    {"mpt", PRETOK_GPT2, false, false},
    {"olmo", PRETOK_GPT2, false, false},
    {"llama-bpe", PRETOK_LLAMA3, true, true},
    {"llama3", PRETOK_LLAMA3, true, true},
    {"llama-v3", PRETOK_LLAMA3, true, true},
    {"falcon3", PRETOK_LLAMA3, true, true},
    {"pixtral", PRETOK_LLAMA3, true, true},
    {"dbrx", PRETOK_LLAMA3, false, false},
    {"smaug-bpe", PRETOK_LLAMA3, false, false},
    {"qwen2", PRETOK_QWEN2, false, false},
    {"deepseek-r1-qwen", PRETOK_QWEN2, false, false},
    {"stablelm2", PRETOK_QWEN2, false, false},
    {"megrez", PRETOK_QWEN2, false, false},
    {"smollm", PRETOK_SMOLLM, false, false},
    {"starcoder", PRETOK_SMOLLM, false, false},
    {"refact", PRETOK_SMOLLM, false, false},
    {"command-r", PRETOK_SMOLLM, false, false},
    {"codeshell", PRETOK_SMOLLM, false, false},
    {"exaone", PRETOK_SMOLLM, false, false},
};

int token_list_push(struct token_list *list, int32_t id)
{
    if (list->count == list->capacity) {
        size_t capacity = list->capacity ? 2 * list->capacity : 64;
        int32_t *ids = realloc(list->ids, capacity * sizeof *ids);
        if (!ids)
            return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory for %zu tokens", capacity);
        list->ids = ids;
        list->capacity = capacity;
    }
    list->ids[list->count++] = id;
    return PLM_OK;
}

/* ------------------------------------------------------------ token table */

/* FNV-1a */
static uint32_t text_hash(const char *text, size_t len)
{
    uint32_t h = 2166136261u;
    for (size_t i = 0; i < len; i++)
        h = (h ^ (unsigned char)text[i]) * 16777619u;
    return h;
}

int32_t token_table_find(const struct plm_vocab *vocab, const char *text, size_t len)
{
    const struct token_table *table = &vocab->table;
    for (uint32_t i = text_hash(text, len) & table->mask;; i = (i + 1) & table->mask) {
        int32_t id = table->slots[i];
        if (id < 0)
            return -1;
        const struct vocab_token *token = &vocab->tokens[id];
        if (token->text_len == len && memcmp(vocab_text_of(vocab, id), text, len) == 0)
            return id;
    }
}

/* Ids are inserted in order, so a duplicated text finds its lowest id. Empty
 * texts are left out: nothing can be looked up by them. */
static int build_token_table(struct plm_vocab *vocab)
{
    uint32_t n_slots = 16;
    while (n_slots < 2 * (uint32_t)vocab->n_tokens)
        n_slots *= 2;
    vocab->table.slots = malloc(n_slots * sizeof *vocab->table.slots);
    if (!vocab->table.slots)
        return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory for %d tokens", vocab->n_tokens);
    vocab->table.mask = n_slots - 1;
    vocab->heap_bytes += n_slots * sizeof *vocab->table.slots;
    memset(vocab->table.slots, 0xFF, n_slots * sizeof *vocab->table.slots); /* all -1 */
    for (int32_t id = 0; id < vocab->n_tokens; id++) {
        const struct vocab_token *token = &vocab->tokens[id];
        const char *text = vocab_text_of(vocab, id);
        if (token->text_len == 0 || token_table_find(vocab, text, token->text_len) >= 0)
            continue;
        uint32_t i = text_hash(text, token->text_len) & vocab->table.mask;
        while (vocab->table.slots[i] >= 0)
            i = (i + 1) & vocab->table.mask;
        vocab->table.slots[i] = id;
    }
    return PLM_OK;
}

/* ------------------------------------------------------------------ load */

static bool str_equals(struct gguf_str s, const char *text)
{
    return s.len == strlen(text) && memcmp(s.ptr, text, s.len) == 0;
}

/* "<0xAB>" -> 0xAB; -1 when the text is not of that form. */
static int parse_byte_token(const char *text, size_t len)
{
    if (len != 6 || memcmp(text, "<0x", 3) != 0 || text[5] != '>')
        return -1;
    int value = 0;
    for (int i = 3; i < 5; i++) {
        char c = text[i];
        int digit = c >= '0' && c <= '9'   ? c - '0'
                    : c >= 'A' && c <= 'F' ? c - 'A' + 10
                    : c >= 'a' && c <= 'f' ? c - 'a' + 10
                                           : -1;
        if (digit < 0)
            return -1;
        value = value * 16 + digit;
    }
    return value;
}

/* A per-token array (scores, token types): absent is fine, otherwise it must
 * be numeric with one entry per token. */
static int check_token_array(const struct gguf_kv *kv, const char *key, int32_t n_tokens)
{
    if (!kv)
        return PLM_OK;
    if (kv->type != GGUF_TYPE_ARRAY || kv->elem_type == GGUF_TYPE_STRING ||
        kv->elem_type == GGUF_TYPE_ARRAY)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %s is not a numeric array", key);
    if (kv->count != (uint64_t)n_tokens)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %s has %llu entries for %d tokens", key,
                        (unsigned long long)kv->count, n_tokens);
    return PLM_OK;
}

static int load_token_type(const struct gguf_kv *types, int32_t id, unsigned char *type)
{
    int64_t value = PLM_TOKEN_NORMAL;
    if (types && !gguf_array_i64(types, (uint64_t)id, &value))
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: cannot read the type of token %d", id);
    if (value < 0 || value > PLM_TOKEN_BYTE)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: token %d has type %lld (expected 1..6)", id,
                        (long long)value);
    /* 0 is "undefined" in llama.cpp's numbering; nothing gives it a meaning. */
    *type = value == 0 ? PLM_TOKEN_NORMAL : (unsigned char)value;
    return PLM_OK;
}

/* Copies the token texts, scores and types out of the file. */
static int load_tokens(struct plm_vocab *vocab, const struct gguf_file *file)
{
    const struct gguf_kv *tokens = gguf_find(file, KEY_TOKENS);
    if (!tokens)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %s is missing", KEY_TOKENS);
    if (tokens->type != GGUF_TYPE_ARRAY || tokens->elem_type != GGUF_TYPE_STRING)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %s is not a string array", KEY_TOKENS);
    if (tokens->count == 0 || tokens->count > VOCAB_MAX_TOKENS)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %llu tokens (expected 1..%d)",
                        (unsigned long long)tokens->count, VOCAB_MAX_TOKENS);
    int32_t n = (int32_t)tokens->count;
    const struct gguf_kv *scores = gguf_find(file, KEY_SCORES);
    const struct gguf_kv *types = gguf_find(file, KEY_TOKEN_TYPE);
    int status = check_token_array(scores, KEY_SCORES, n);
    if (!status)
        status = check_token_array(types, KEY_TOKEN_TYPE, n);
    if (status)
        return status;

    uint64_t text_bytes = 0;
    for (int32_t id = 0; id < n; id++) {
        if (tokens->strings[id].len > VOCAB_MAX_TOKEN_BYTES)
            return plm_fail(PLM_ERR_FORMAT, "tokenizer: token %d is %llu bytes long (limit %d)",
                            id, (unsigned long long)tokens->strings[id].len,
                            VOCAB_MAX_TOKEN_BYTES);
        text_bytes += tokens->strings[id].len;
    }
    if (text_bytes > UINT32_MAX)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %llu bytes of token text",
                        (unsigned long long)text_bytes);
    vocab->n_tokens = n;
    vocab->tokens = calloc((size_t)n, sizeof *vocab->tokens);
    vocab->text = malloc(text_bytes + 1);
    if (!vocab->tokens || !vocab->text)
        return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory for %d tokens", n);
    vocab->heap_bytes += (size_t)n * sizeof *vocab->tokens + text_bytes + 1;

    uint32_t offset = 0;
    for (int32_t id = 0; id < n; id++) {
        struct vocab_token *token = &vocab->tokens[id];
        struct gguf_str text = tokens->strings[id];
        memcpy(vocab->text + offset, text.ptr, text.len);
        token->text_offset = offset;
        token->text_len = (uint32_t)text.len;
        offset += (uint32_t)text.len;
        if (scores && !gguf_array_f32(scores, (uint64_t)id, &token->score))
            return plm_fail(PLM_ERR_FORMAT, "tokenizer: cannot read the score of token %d", id);
        status = load_token_type(types, id, &token->type);
        if (status)
            return status;
        token->byte_value = (int16_t)(token->type == PLM_TOKEN_BYTE
                                          ? parse_byte_token(text.ptr, text.len)
                                          : -1);
    }
    return build_token_table(vocab);
}

/* A special token id from the metadata: *id keeps its default when the key is
 * absent; a present value must be a token of the vocabulary. */
static int load_token_id(const struct gguf_file *file, const char *key, int32_t n_tokens,
                         int32_t *id)
{
    if (!gguf_find(file, key))
        return PLM_OK;
    int32_t value;
    if (!gguf_get_i32(file, key, &value) || value < 0 || value >= n_tokens)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %s is not a token id below %d", key, n_tokens);
    *id = value;
    return PLM_OK;
}

static int load_flag(const struct gguf_file *file, const char *key, bool *flag)
{
    if (gguf_find(file, key) && !gguf_get_bool(file, key, flag))
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %s is not a bool", key);
    return PLM_OK;
}

static int load_special_ids(struct plm_vocab *vocab, const struct gguf_file *file)
{
    int32_t n = vocab->n_tokens;
    /* SentencePiece's fixed layout <unk>=0, <s>=1, </s>=2 is the default for
     * "llama" vocabularies, as in llama.cpp; byte-level ones have none. */
    bool spm = vocab->model == VOCAB_SPM;
    vocab->unk = spm && n > 0 ? 0 : -1;
    vocab->bos = spm && n > 1 ? 1 : -1;
    vocab->eos = spm && n > 2 ? 2 : -1;
    vocab->eot = -1;
    int status = load_token_id(file, "tokenizer.ggml.bos_token_id", n, &vocab->bos);
    if (!status)
        status = load_token_id(file, "tokenizer.ggml.eos_token_id", n, &vocab->eos);
    if (!status)
        status = load_token_id(file, "tokenizer.ggml.eot_token_id", n, &vocab->eot);
    if (!status)
        status = load_token_id(file, "tokenizer.ggml.unknown_token_id", n, &vocab->unk);
    if (!status)
        status = load_flag(file, "tokenizer.ggml.add_bos_token", &vocab->add_bos);
    if (!status)
        status = load_flag(file, "tokenizer.ggml.add_eos_token", &vocab->add_eos);
    if (!status)
        status = load_flag(file, "tokenizer.ggml.add_space_prefix", &vocab->add_space_prefix);
    if (status)
        return status;
    /* A default (no key) without the token just does nothing; a file asking
     * for a token it does not have is inconsistent. */
    if (vocab->add_bos && vocab->bos < 0) {
        if (gguf_find(file, "tokenizer.ggml.add_bos_token"))
            return plm_fail(PLM_ERR_FORMAT,
                            "tokenizer: add_bos_token is set but there is no BOS token");
        vocab->add_bos = false;
    }
    if (vocab->add_eos && vocab->eos < 0)
        return plm_fail(PLM_ERR_FORMAT,
                        "tokenizer: add_eos_token is set but there is no EOS token");
    return PLM_OK;
}

static void add_eog(struct plm_vocab *vocab, int32_t id)
{
    if (id < 0 || vocab->n_eog == VOCAB_MAX_EOG)
        return;
    for (int i = 0; i < vocab->n_eog; i++)
        if (vocab->eog[i] == id)
            return;
    vocab->eog[vocab->n_eog++] = id;
}

static void find_eog_tokens(struct plm_vocab *vocab)
{
    add_eog(vocab, vocab->eos);
    add_eog(vocab, vocab->eot);
    for (size_t i = 0; i < sizeof EOG_TEXTS / sizeof EOG_TEXTS[0]; i++) {
        int32_t id = token_table_find(vocab, EOG_TEXTS[i], strlen(EOG_TEXTS[i]));
        if (id >= 0 && vocab->tokens[id].type == PLM_TOKEN_CONTROL)
            add_eog(vocab, id);
    }
}

static int compare_lengths_descending(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x < y) - (x > y);
}

/* Collects the text lengths and first bytes of the special tokens: user-defined
 * ones, and unless user_defined_only also control and unknown ones. */
static int build_special_matcher(struct plm_vocab *vocab, bool user_defined_only,
                                 struct special_matcher *matcher)
{
    int n_lengths = 0;
    for (int32_t id = 0; id < vocab->n_tokens; id++) {
        const struct vocab_token *token = &vocab->tokens[id];
        bool wanted = token->type == PLM_TOKEN_USER_DEFINED ||
                      (!user_defined_only && (token->type == PLM_TOKEN_CONTROL ||
                                              token->type == PLM_TOKEN_UNKNOWN));
        if (!wanted || token->text_len == 0)
            continue;
        matcher->first_byte[(unsigned char)vocab_text_of(vocab, id)[0]] = true;
        bool known = false;
        for (int i = 0; i < n_lengths && !known; i++)
            known = matcher->lengths[i] == token->text_len;
        if (known)
            continue;
        uint32_t *lengths = realloc(matcher->lengths, (size_t)(n_lengths + 1) * sizeof *lengths);
        if (!lengths)
            return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory for special tokens");
        matcher->lengths = lengths;
        matcher->lengths[n_lengths++] = token->text_len;
    }
    if (n_lengths > 0)
        qsort(matcher->lengths, (size_t)n_lengths, sizeof *matcher->lengths,
              compare_lengths_descending);
    matcher->n_lengths = n_lengths;
    vocab->heap_bytes += (size_t)n_lengths * sizeof *matcher->lengths;
    return PLM_OK;
}

/* The byte-level settings from tokenizer.ggml.pre (absent: "default"). */
static int load_pretokenizer(struct plm_vocab *vocab, const struct gguf_file *file)
{
    struct gguf_str pre = {"default", 7};
    if (gguf_find(file, KEY_PRE) && !gguf_get_str(file, KEY_PRE, &pre))
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %s is not a string", KEY_PRE);
    for (size_t i = 0; i < sizeof PRETOKENIZERS / sizeof PRETOKENIZERS[0]; i++) {
        if (str_equals(pre, PRETOKENIZERS[i].name)) {
            vocab->pretokenizer = PRETOKENIZERS[i].rules;
            vocab->ignore_merges = PRETOKENIZERS[i].ignore_merges;
            vocab->add_bos = PRETOKENIZERS[i].add_bos;
            return PLM_OK;
        }
    }
    return plm_fail(PLM_ERR_UNSUPPORTED, "tokenizer: unknown pre-tokenizer '%.*s'",
                    (int)(pre.len > 64 ? 64 : pre.len), pre.ptr);
}

static int load_model(struct plm_vocab *vocab, const struct gguf_file *file)
{
    struct gguf_str model;
    if (!gguf_get_str(file, KEY_MODEL, &model))
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %s is missing", KEY_MODEL);
    if (str_equals(model, "llama")) {
        vocab->model = VOCAB_SPM;
        vocab->add_bos = true;
        vocab->add_space_prefix = true;
        return PLM_OK;
    }
    if (str_equals(model, "gpt2")) {
        vocab->model = VOCAB_BPE;
        return load_pretokenizer(vocab, file);
    }
    return plm_fail(PLM_ERR_UNSUPPORTED, "tokenizer: unsupported tokenizer model '%.*s'",
                    (int)(model.len > 64 ? 64 : model.len), model.ptr);
}

static int load_vocab(struct plm_vocab *vocab, const struct gguf_file *file)
{
    int status = load_model(vocab, file);
    if (!status)
        status = load_tokens(vocab, file);
    if (!status)
        status = load_special_ids(vocab, file);
    if (status)
        return status;
    if (vocab->model == VOCAB_BPE) {
        const struct gguf_kv *merges = gguf_find(file, KEY_MERGES);
        if (!merges)
            return plm_fail(PLM_ERR_FORMAT, "tokenizer: %s is missing", KEY_MERGES);
        status = bpe_load_merges(vocab, merges);
        if (status)
            return status;
    }
    if (vocab->model == VOCAB_SPM)
        spm_map_bytes(vocab);
    else
        bpe_map_bytes(vocab);
    find_eog_tokens(vocab);
    status = build_special_matcher(vocab, false, &vocab->special_all);
    if (!status)
        status = build_special_matcher(vocab, true, &vocab->special_user);
    return status;
}

int vocab_load(const struct gguf_file *file, struct plm_vocab **out)
{
    *out = NULL;
    struct plm_vocab *vocab = calloc(1, sizeof *vocab);
    if (!vocab)
        return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory");
    vocab->heap_bytes = sizeof *vocab;
    int status = load_vocab(vocab, file);
    if (status) {
        vocab_free(vocab);
        return status;
    }
    *out = vocab;
    return PLM_OK;
}

void vocab_free(struct plm_vocab *vocab)
{
    if (!vocab)
        return;
    free(vocab->tokens);
    free(vocab->text);
    free(vocab->table.slots);
    free(vocab->merges.slots);
    free(vocab->special_all.lengths);
    free(vocab->special_user.lengths);
    free(vocab);
}

/* --------------------------------------------------------------- queries */

int vocab_n_tokens(const struct plm_vocab *vocab) { return vocab->n_tokens; }
size_t vocab_heap_bytes(const struct plm_vocab *vocab) { return vocab->heap_bytes; }
int32_t vocab_bos(const struct plm_vocab *vocab) { return vocab->bos; }
int32_t vocab_eos(const struct plm_vocab *vocab) { return vocab->eos; }
int32_t vocab_eot(const struct plm_vocab *vocab) { return vocab->eot; }
bool vocab_add_bos(const struct plm_vocab *vocab) { return vocab->add_bos; }
bool vocab_add_eos(const struct plm_vocab *vocab) { return vocab->add_eos; }

static bool valid_id(const struct plm_vocab *vocab, int32_t token)
{
    return token >= 0 && token < vocab->n_tokens;
}

bool vocab_is_eog(const struct plm_vocab *vocab, int32_t token)
{
    for (int i = 0; i < vocab->n_eog; i++)
        if (vocab->eog[i] == token)
            return true;
    return false;
}

/* An id outside the vocabulary reads as an unused token with empty text. */
enum plm_token_type vocab_token_type(const struct plm_vocab *vocab, int32_t token)
{
    return valid_id(vocab, token) ? (enum plm_token_type)vocab->tokens[token].type
                                  : PLM_TOKEN_UNUSED;
}

struct gguf_str vocab_token_text(const struct plm_vocab *vocab, int32_t token)
{
    struct gguf_str text = {"", 0};
    if (valid_id(vocab, token)) {
        text.ptr = vocab_text_of(vocab, token);
        text.len = vocab->tokens[token].text_len;
    }
    return text;
}

int32_t vocab_find(const struct plm_vocab *vocab, const char *text, size_t len)
{
    return token_table_find(vocab, text, len);
}

/* ---------------------------------------------------------------- encode */

/* The special token that text[0..len) starts with (the longest), or -1. */
static int32_t match_special(const struct plm_vocab *vocab, const struct special_matcher *matcher,
                             bool parse_special, const char *text, size_t len, uint32_t *match_len)
{
    if (!matcher->first_byte[(unsigned char)text[0]])
        return -1;
    for (int i = 0; i < matcher->n_lengths; i++) {
        uint32_t n = matcher->lengths[i];
        if (n > len)
            continue;
        int32_t id = token_table_find(vocab, text, n);
        if (id < 0)
            continue;
        int type = vocab->tokens[id].type;
        if (type == PLM_TOKEN_USER_DEFINED ||
            (parse_special && (type == PLM_TOKEN_CONTROL || type == PLM_TOKEN_UNKNOWN))) {
            *match_len = n;
            return id;
        }
    }
    return -1;
}

/* Tokenizes a stretch of text without special tokens in it. SentencePiece
 * vocabularies put a space in front of the text and after each special token. */
static int encode_plain(const struct plm_vocab *vocab, const char *text, size_t len,
                        bool after_special, struct token_list *out)
{
    if (vocab->model == VOCAB_SPM)
        return spm_encode(vocab, text, len, vocab->add_space_prefix && after_special, out);
    return bpe_encode(vocab, text, len, out);
}

static int encode_all(const struct plm_vocab *vocab, const char *text, size_t len,
                      bool add_special, bool parse_special, struct token_list *out)
{
    const struct special_matcher *matcher =
        parse_special ? &vocab->special_all : &vocab->special_user;
    int status = PLM_OK;
    if (add_special && vocab->add_bos)
        status = token_list_push(out, vocab->bos);
    bool after_special = true; /* the start of the text counts as a boundary */
    size_t start = 0;
    for (size_t pos = 0; pos < len && !status;) {
        uint32_t match_len;
        int32_t id = match_special(vocab, matcher, parse_special, text + pos, len - pos,
                                   &match_len);
        if (id < 0) {
            pos++;
            continue;
        }
        if (pos > start)
            status = encode_plain(vocab, text + start, pos - start, after_special, out);
        if (!status)
            status = token_list_push(out, id);
        after_special = true;
        pos += match_len;
        start = pos;
    }
    if (!status && start < len)
        status = encode_plain(vocab, text + start, len - start, after_special, out);
    if (!status && add_special && vocab->add_eos)
        status = token_list_push(out, vocab->eos);
    return status;
}

int vocab_encode(const struct plm_vocab *vocab, const char *text, size_t len, bool add_special,
                 bool parse_special, int32_t **tokens, size_t *n_tokens)
{
    *tokens = NULL;
    *n_tokens = 0;
    if (!text && len > 0)
        return plm_fail(PLM_ERR_ARG, "tokenizer: NULL text of %zu bytes", len);
    /* Allocated up front so that *tokens is never NULL; sized for the usual
     * three to four bytes per token. */
    struct token_list out = {NULL, 0, 16 + len / 3};
    out.ids = malloc(out.capacity * sizeof *out.ids);
    if (!out.ids)
        return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    int status = encode_all(vocab, text, len, add_special, parse_special, &out);
    if (status) {
        free(out.ids);
        return status;
    }
    *tokens = out.ids;
    *n_tokens = out.count;
    return PLM_OK;
}

/* ---------------------------------------------------------------- decode */

/* SentencePiece text with each "▁" turned back into a space. */
static size_t spm_decode_text(const char *text, size_t len, char *buf, size_t size)
{
    size_t out = 0;
    for (size_t pos = 0; pos < len;) {
        if (len - pos >= 3 && memcmp(text + pos, "\xE2\x96\x81", 3) == 0) {
            sink_put(buf, size, &out, " ", 1);
            pos += 3;
        } else {
            sink_put(buf, size, &out, text + pos, 1);
            pos++;
        }
    }
    return out;
}

int vocab_token_to_piece(const struct plm_vocab *vocab, int32_t token, char *buf, size_t size,
                         bool render_special)
{
    if (!valid_id(vocab, token))
        return plm_fail(PLM_ERR_ARG, "tokenizer: token %d is outside the vocabulary (%d tokens)",
                        token, vocab->n_tokens);
    if (!buf)
        size = 0;
    const struct vocab_token *info = &vocab->tokens[token];
    const char *text = vocab_text_of(vocab, token);
    size_t len = 0;
    switch ((enum plm_token_type)info->type) {
    case PLM_TOKEN_CONTROL:
    case PLM_TOKEN_UNKNOWN:
        if (render_special)
            sink_put(buf, size, &len, text, info->text_len);
        break;
    case PLM_TOKEN_USER_DEFINED:
        sink_put(buf, size, &len, text, info->text_len);
        break;
    case PLM_TOKEN_UNUSED:
        break;
    case PLM_TOKEN_BYTE:
    case PLM_TOKEN_NORMAL:
        if (info->byte_value >= 0) { /* a byte token "<0xAB>" */
            char byte = (char)info->byte_value;
            sink_put(buf, size, &len, &byte, 1);
        } else if (vocab->model == VOCAB_SPM) {
            len = spm_decode_text(text, info->text_len, buf, size);
        } else {
            len = bpe_decode_text(text, info->text_len, buf, size);
        }
        break;
    }
    return (int)len;
}
