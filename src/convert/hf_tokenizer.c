/*
 * tokenizer.json (Hugging Face tokenizers) -> GGUF tokenizer.* metadata.
 *
 * Two kinds of BPE tokenizer are recognised:
 *   SentencePiece-style ("▁" for spaces, byte fallback <0xXX> tokens; Llama 2,
 *     Mistral, TinyStories): written as tokenizer.ggml.model "llama", which
 *     merges the adjacent pair whose result has the highest score. Scores are
 *     derived from the merge list (a token made by merge rank r scores -r) so
 *     that this reproduces the BPE merge order; tokens no merge produces score
 *     below all of them.
 *   byte-level (GPT-2 byte-to-unicode alphabet; Llama 3, Qwen2, SmolLM):
 *     written as "gpt2" with the merge list, and tokenizer.ggml.pre naming the
 *     pre-tokenizer split rules, recognised from the Split regex.
 * Special token ids, add_bos/add_eos and the chat template come from
 * tokenizer_config.json, then the post-processor, then config.json.
 */
#include "convert/convert.h"

#include "core/error.h"
#include "core/mapped_file.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SPACE_MARK "\xE2\x96\x81" /* U+2581 "▁", SentencePiece's space */

/* Split regexes of the byte-level pre-tokenizers we know, as tokenizer.json spells them. */
static const struct {
    const char *regex;
    const char *pre;
} known_splits[] = {
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "llama-bpe"},
    {"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+"
     "[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+", "qwen2"},
    {"'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+", "gpt-2"},
};

enum tokenizer_kind { TOKENIZER_SPM, TOKENIZER_BYTE_LEVEL };

/* The vocabulary being assembled, indexed by token id. */
struct token_table {
    int n;               /* the model's n_vocab; ids the tokenizer leaves unused are padding */
    const char **texts;  /* into the parsed JSON, or into pad_names */
    int32_t *types;      /* enum gguf_token_type */
    bool *added;         /* listed in added_tokens */
    bool *special;       /* added and special */
    char *pad_names;     /* "[PAD<id>]" texts */
    int32_t *slots;      /* open-addressing hash of texts -> id; -1 empty */
    size_t n_slots;      /* a power of two */
};

/* ------------------------------------------------------------ JSON helpers */

static const char *json_string(const cJSON *object, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(object, key);
    return cJSON_IsString(item) ? item->valuestring : NULL;
}

static bool json_type_is(const cJSON *node, const char *type)
{
    const char *t = json_string(node, "type");
    return t && strcmp(t, type) == 0;
}

/* The first component of the given type in a normalizer / pre-tokenizer /
 * decoder / post-processor, looking inside "Sequence"s. */
static const cJSON *find_component(const cJSON *node, const char *type)
{
    static const char *const lists[] = {"normalizers", "pretokenizers", "decoders", "processors"};
    if (!cJSON_IsObject(node))
        return NULL;
    if (json_type_is(node, type))
        return node;
    for (size_t i = 0; i < sizeof lists / sizeof lists[0]; i++) {
        const cJSON *item;
        cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(node, lists[i])) {
            const cJSON *found = find_component(item, type);
            if (found)
                return found;
        }
    }
    return NULL;
}

/* A token id: a whole number in [0, limit). */
static bool json_id(const cJSON *item, int limit, int *id)
{
    if (!cJSON_IsNumber(item) || !(item->valuedouble >= 0 && item->valuedouble < limit) ||
        (double)(int)item->valuedouble != item->valuedouble)
        return false;
    *id = (int)item->valuedouble;
    return true;
}

/* ------------------------------------------------------------- hash table */

static uint64_t hash_text(const char *text, size_t len)
{
    uint64_t h = 0xcbf29ce484222325ull; /* FNV-1a */
    for (size_t i = 0; i < len; i++)
        h = (h ^ (uint8_t)text[i]) * 0x100000001b3ull;
    return h;
}

/* The id of the token whose text is text[0..len), or -1. */
static int32_t table_find(const struct token_table *tt, const char *text, size_t len)
{
    for (size_t i = hash_text(text, len) & (tt->n_slots - 1);; i = (i + 1) & (tt->n_slots - 1)) {
        int32_t id = tt->slots[i];
        if (id < 0)
            return -1;
        if (strlen(tt->texts[id]) == len && memcmp(tt->texts[id], text, len) == 0)
            return id;
    }
}

/* Indexes every text; for a text that appears twice the lower id wins. */
static int table_index(struct token_table *tt)
{
    tt->n_slots = 16;
    while (tt->n_slots < 2 * (size_t)tt->n)
        tt->n_slots *= 2;
    tt->slots = malloc(tt->n_slots * sizeof *tt->slots);
    if (!tt->slots)
        return plm_fail(PLM_ERR_NOMEM, "out of memory indexing the vocabulary");
    memset(tt->slots, 0xff, tt->n_slots * sizeof *tt->slots);
    for (int32_t id = 0; id < tt->n; id++) {
        size_t len = strlen(tt->texts[id]);
        if (table_find(tt, tt->texts[id], len) >= 0)
            continue;
        size_t i = hash_text(tt->texts[id], len) & (tt->n_slots - 1);
        while (tt->slots[i] >= 0)
            i = (i + 1) & (tt->n_slots - 1);
        tt->slots[i] = id;
    }
    return PLM_OK;
}

static void table_free(struct token_table *tt)
{
    free(tt->texts);
    free(tt->types);
    free(tt->added);
    free(tt->special);
    free(tt->pad_names);
    free(tt->slots);
}

/* ---------------------------------------------------------- vocabulary */

static int table_init(struct token_table *tt, int n)
{
    memset(tt, 0, sizeof *tt);
    tt->n = n;
    tt->texts = calloc((size_t)n, sizeof *tt->texts);
    tt->types = calloc((size_t)n, sizeof *tt->types);
    tt->added = calloc((size_t)n, sizeof *tt->added);
    tt->special = calloc((size_t)n, sizeof *tt->special);
    if (!tt->texts || !tt->types || !tt->added || !tt->special)
        return plm_fail(PLM_ERR_NOMEM, "out of memory for %d tokens", n);
    return PLM_OK;
}

/* model.vocab ({"text": id}) and added_tokens ([{"id", "content", "special"}]). */
static int read_tokens(struct token_table *tt, const cJSON *root)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
    if (!cJSON_IsObject(vocab))
        return plm_fail(PLM_ERR_FORMAT, "tokenizer.json: model.vocab is not an object");
    const cJSON *item;
    cJSON_ArrayForEach(item, vocab) {
        int id;
        if (!json_id(item, tt->n, &id))
            return plm_fail(PLM_ERR_FORMAT,
                            "tokenizer.json: token '%s' has an id outside the model's %d tokens",
                            item->string, tt->n);
        if (tt->texts[id])
            return plm_fail(PLM_ERR_FORMAT, "tokenizer.json: tokens '%s' and '%s' share id %d",
                            tt->texts[id], item->string, id);
        tt->texts[id] = item->string;
    }
    cJSON_ArrayForEach(item, cJSON_GetObjectItemCaseSensitive(root, "added_tokens")) {
        int id;
        const char *content = json_string(item, "content");
        if (!content || !json_id(cJSON_GetObjectItemCaseSensitive(item, "id"), tt->n, &id))
            return plm_fail(PLM_ERR_FORMAT,
                            "tokenizer.json: an added token has no content or an id outside the "
                            "model's %d tokens", tt->n);
        /* An added token may restate a vocab entry; its content is what the tokenizer uses. */
        tt->texts[id] = content;
        tt->added[id] = true;
        tt->special[id] = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(item, "special"));
    }
    return PLM_OK;
}

/* Ids no token uses (up to the embedding's row count) become unused "[PAD<id>]". */
static int pad_table(struct token_table *tt)
{
    size_t n_missing = 0;
    for (int id = 0; id < tt->n; id++)
        n_missing += !tt->texts[id];
    const size_t pad_size = 24; /* "[PAD" + up to 10 digits + "]" + NUL, rounded up */
    tt->pad_names = malloc(n_missing ? n_missing * pad_size : 1);
    if (!tt->pad_names)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    char *next = tt->pad_names;
    for (int id = 0; id < tt->n; id++) {
        if (tt->texts[id])
            continue;
        snprintf(next, pad_size, "[PAD%d]", id);
        tt->texts[id] = next;
        tt->types[id] = GGUF_TOKEN_UNUSED;
        next += pad_size;
    }
    return PLM_OK;
}

static void assign_types(struct token_table *tt, enum tokenizer_kind kind, int unk_id)
{
    for (int id = 0; id < tt->n; id++) {
        if (tt->types[id] == GGUF_TOKEN_UNUSED)
            continue;
        if (id == unk_id)
            tt->types[id] = GGUF_TOKEN_UNKNOWN;
        else if (tt->added[id])
            tt->types[id] = tt->special[id] ? GGUF_TOKEN_CONTROL : GGUF_TOKEN_USER_DEFINED;
        else if (kind == TOKENIZER_SPM &&
                 convert_is_byte_token(tt->texts[id], strlen(tt->texts[id])))
            tt->types[id] = GGUF_TOKEN_BYTE;
        else
            tt->types[id] = GGUF_TOKEN_NORMAL;
    }
}

/* ----------------------------------------------------------------- merges */

/* A merge is "left right" (one space: tokens never contain one) or ["left", "right"]. */
static int merge_parts(const cJSON *merge, int rank, const char **left, size_t *left_len,
                       const char **right, size_t *right_len)
{
    if (cJSON_IsString(merge)) {
        const char *space = strchr(merge->valuestring, ' ');
        if (space && space != merge->valuestring && space[1] && !strchr(space + 1, ' ')) {
            *left = merge->valuestring;
            *left_len = (size_t)(space - merge->valuestring);
            *right = space + 1;
            *right_len = strlen(space + 1);
            return PLM_OK;
        }
    } else if (cJSON_IsArray(merge) && cJSON_GetArraySize(merge) == 2 &&
               cJSON_IsString(merge->child) && cJSON_IsString(merge->child->next)) {
        *left = merge->child->valuestring;
        *left_len = strlen(*left);
        *right = merge->child->next->valuestring;
        *right_len = strlen(*right);
        return PLM_OK;
    }
    return plm_fail(PLM_ERR_FORMAT,
                    "tokenizer.json: merge %d is neither \"a b\" nor [\"a\", \"b\"]", rank);
}

/* Scores for SentencePiece-style merging: -rank of the first merge that makes
 * the token, and one less than the lowest for every other token. */
static int merge_scores(const struct token_table *tt, const cJSON *merges, float *scores)
{
    int n_merges = cJSON_GetArraySize(merges);
    for (int id = 0; id < tt->n; id++)
        scores[id] = (float)(-n_merges - 1);
    char *joined = NULL;
    size_t joined_cap = 0;
    int rank = 0, rc = PLM_OK;
    const cJSON *merge;
    cJSON_ArrayForEach(merge, merges) {
        const char *left, *right;
        size_t left_len, right_len;
        if ((rc = merge_parts(merge, rank, &left, &left_len, &right, &right_len)))
            break;
        if (left_len + right_len + 1 > joined_cap) {
            joined_cap = 2 * (left_len + right_len + 1);
            char *grown = realloc(joined, joined_cap);
            if (!grown) {
                rc = plm_fail(PLM_ERR_NOMEM, "out of memory");
                break;
            }
            joined = grown;
        }
        memcpy(joined, left, left_len);
        memcpy(joined + left_len, right, right_len);
        int32_t id = table_find(tt, joined, left_len + right_len);
        if (id < 0 || table_find(tt, left, left_len) < 0 || table_find(tt, right, right_len) < 0) {
            rc = plm_fail(PLM_ERR_FORMAT,
                          "tokenizer.json: merge %d (\"%.*s\" + \"%.*s\") uses or makes a token "
                          "not in the vocabulary", rank, (int)left_len, left, (int)right_len,
                          right);
            break;
        }
        if (scores[id] == (float)(-n_merges - 1))
            scores[id] = (float)(-rank);
        rank++;
    }
    free(joined);
    return rc;
}

/* GGUF stores merges as "left right" strings. */
static int write_merges(struct gguf_writer *w, const cJSON *merges)
{
    int n = cJSON_GetArraySize(merges);
    const char **strings = calloc(n ? (size_t)n : 1, sizeof *strings);
    char **owned = calloc(n ? (size_t)n : 1, sizeof *owned);
    int rc = !strings || !owned ? plm_fail(PLM_ERR_NOMEM, "out of memory") : PLM_OK;
    int i = 0;
    const cJSON *merge;
    cJSON_ArrayForEach(merge, merges) {
        const char *left, *right;
        size_t left_len, right_len;
        if (rc || (rc = merge_parts(merge, i, &left, &left_len, &right, &right_len)))
            break;
        if (cJSON_IsString(merge)) {
            strings[i++] = merge->valuestring;
            continue;
        }
        if (!(owned[i] = malloc(left_len + right_len + 2))) {
            rc = plm_fail(PLM_ERR_NOMEM, "out of memory");
            break;
        }
        sprintf(owned[i], "%s %s", left, right);
        strings[i] = owned[i];
        i++;
    }
    if (!rc)
        rc = gguf_writer_set_str_array(w, "tokenizer.ggml.merges", strings, NULL, (uint64_t)n);
    for (int j = 0; owned && j < n; j++)
        free(owned[j]);
    free(owned);
    free(strings);
    return rc;
}

/* ---------------------------------------------------------- tokenizer kind */

static int detect_kind(const cJSON *root, enum tokenizer_kind *kind)
{
    const cJSON *model = cJSON_GetObjectItemCaseSensitive(root, "model");
    const char *type = json_string(model, "type");
    if (!type || strcmp(type, "BPE") != 0)
        return plm_fail(PLM_ERR_UNSUPPORTED,
                        "tokenizer.json: model type '%s' is not supported (only BPE)",
                        type ? type : "(none)");
    const cJSON *pre = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *decoder = cJSON_GetObjectItemCaseSensitive(root, "decoder");
    const cJSON *normalizer = cJSON_GetObjectItemCaseSensitive(root, "normalizer");
    if (find_component(pre, "ByteLevel") || find_component(decoder, "ByteLevel")) {
        *kind = TOKENIZER_BYTE_LEVEL;
        return PLM_OK;
    }
    if (cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "byte_fallback")) ||
        find_component(pre, "Metaspace") || find_component(normalizer, "Prepend") ||
        find_component(decoder, "Metaspace")) {
        *kind = TOKENIZER_SPM;
        return PLM_OK;
    }
    return plm_fail(PLM_ERR_UNSUPPORTED,
                    "tokenizer.json: a BPE tokenizer that is neither byte-level nor "
                    "SentencePiece-style (\xE2\x96\x81, byte fallback) is not supported");
}

/* Whether text starts with a "▁": a Prepend normalizer, or a Metaspace
 * pre-tokenizer that prepends (prepend_scheme, or add_prefix_space in older files). */
static bool adds_space_prefix(const cJSON *root)
{
    const cJSON *prepend =
        find_component(cJSON_GetObjectItemCaseSensitive(root, "normalizer"), "Prepend");
    const char *with = json_string(prepend, "prepend");
    if (with && strcmp(with, SPACE_MARK) == 0)
        return true;
    const cJSON *meta =
        find_component(cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer"), "Metaspace");
    if (!meta)
        return false;
    const char *scheme = json_string(meta, "prepend_scheme");
    if (scheme)
        return strcmp(scheme, "never") != 0;
    return !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(meta, "add_prefix_space"));
}

/* tokenizer.ggml.pre from the byte-level pre-tokenizer's split rules. */
static int detect_pre(const cJSON *root, const char **pre)
{
    const cJSON *pre_tokenizer = cJSON_GetObjectItemCaseSensitive(root, "pre_tokenizer");
    const cJSON *split = find_component(pre_tokenizer, "Split");
    if (split) {
        const cJSON *pattern = cJSON_GetObjectItemCaseSensitive(split, "pattern");
        const char *regex = json_string(pattern, "Regex");
        for (size_t i = 0; regex && i < sizeof known_splits / sizeof known_splits[0]; i++)
            if (strcmp(regex, known_splits[i].regex) == 0) {
                *pre = known_splits[i].pre;
                return PLM_OK;
            }
        return plm_fail(PLM_ERR_UNSUPPORTED,
                        "tokenizer.json: unrecognised pre-tokenizer split regex (known: Llama 3, "
                        "Qwen2, GPT-2)");
    }
    /* SmolLM splits digits one by one, then applies GPT-2's byte-level regex. */
    const cJSON *digits = find_component(pre_tokenizer, "Digits");
    if (digits && cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(digits, "individual_digits"))) {
        *pre = "smollm";
        return PLM_OK;
    }
    const cJSON *byte_level = find_component(pre_tokenizer, "ByteLevel");
    if (byte_level && !digits &&
        !cJSON_IsFalse(cJSON_GetObjectItemCaseSensitive(byte_level, "use_regex"))) {
        *pre = "gpt-2";
        return PLM_OK;
    }
    return plm_fail(PLM_ERR_UNSUPPORTED,
                    "tokenizer.json: unrecognised byte-level pre-tokenizer (known: Llama 3, "
                    "Qwen2, GPT-2, SmolLM)");
}

/* ----------------------------------------------------------- special tokens */

/* tokenizer_config.json names a special token by text: "<s>" or {"content": "<s>"}. */
static const char *config_token_text(const cJSON *tokenizer_config, const char *key)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(tokenizer_config, key);
    if (cJSON_IsString(item))
        return item->valuestring;
    return json_string(item, "content");
}

/* The id of a special token: tokenizer_config.json's text, else config.json's id
 * (a number, or a list whose first entry counts). -1 when neither says. */
static int special_id(const struct token_table *tt, const cJSON *tokenizer_config,
                      const cJSON *config, const char *name)
{
    char key[32];
    snprintf(key, sizeof key, "%s_token", name);
    const char *text = config_token_text(tokenizer_config, key);
    int id = text ? table_find(tt, text, strlen(text)) : -1;
    if (id >= 0)
        return id;
    snprintf(key, sizeof key, "%s_token_id", name);
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(config, key);
    if (cJSON_IsArray(item))
        item = cJSON_GetArrayItem(item, 0);
    return json_id(item, tt->n, &id) ? id : -1;
}

/* add_bos/add_eos: tokenizer_config.json's flags, else whether the post-processor's
 * template for one sequence starts/ends with a special token, else the
 * convention of the tokenizer kind (SentencePiece adds BOS, byte-level nothing). */
static void read_add_flags(const cJSON *root, const cJSON *tokenizer_config,
                           enum tokenizer_kind kind, bool *add_bos, bool *add_eos)
{
    *add_bos = kind == TOKENIZER_SPM;
    *add_eos = false;
    const cJSON *template = find_component(
        cJSON_GetObjectItemCaseSensitive(root, "post_processor"), "TemplateProcessing");
    const cJSON *single = cJSON_GetObjectItemCaseSensitive(template, "single");
    int n = cJSON_GetArraySize(single);
    if (cJSON_IsArray(single) && n > 0) {
        *add_bos = cJSON_HasObjectItem(cJSON_GetArrayItem(single, 0), "SpecialToken");
        *add_eos = n > 1 && cJSON_HasObjectItem(cJSON_GetArrayItem(single, n - 1), "SpecialToken");
    }
    const cJSON *flag = cJSON_GetObjectItemCaseSensitive(tokenizer_config, "add_bos_token");
    if (cJSON_IsBool(flag))
        *add_bos = cJSON_IsTrue(flag);
    flag = cJSON_GetObjectItemCaseSensitive(tokenizer_config, "add_eos_token");
    if (cJSON_IsBool(flag))
        *add_eos = cJSON_IsTrue(flag);
}

/* Writes the special token ids; ids[i] is the id of names[i] below, -1 when absent. */
static int write_special(struct gguf_writer *w, const struct token_table *tt,
                         const cJSON *tokenizer_config, const cJSON *config, int ids[4])
{
    static const char *const names[][2] = {
        {"bos", "tokenizer.ggml.bos_token_id"},
        {"eos", "tokenizer.ggml.eos_token_id"},
        {"unk", "tokenizer.ggml.unknown_token_id"},
        {"pad", "tokenizer.ggml.padding_token_id"},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        int id = ids[i] = special_id(tt, tokenizer_config, config, names[i][0]);
        int rc = id >= 0 ? gguf_writer_set_u32(w, names[i][1], (uint32_t)id) : PLM_OK;
        if (rc)
            return rc;
    }
    return PLM_OK;
}

/* tokenizer_config.json "chat_template" (a string, or a list of named templates
 * of which "default" is the one), else a chat_template.jinja file. */
static int write_chat_template(struct gguf_writer *w, const char *dir,
                               const cJSON *tokenizer_config)
{
    const cJSON *item = cJSON_GetObjectItemCaseSensitive(tokenizer_config, "chat_template");
    if (cJSON_IsString(item))
        return gguf_writer_set_str(w, "tokenizer.chat_template", item->valuestring);
    const cJSON *named = cJSON_IsArray(item) ? item : NULL;
    const cJSON *entry;
    cJSON_ArrayForEach(entry, named) {
        const char *name = json_string(entry, "name");
        const char *text = json_string(entry, "template");
        if (name && text && strcmp(name, "default") == 0)
            return gguf_writer_set_str(w, "tokenizer.chat_template", text);
    }
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/chat_template.jinja", dir) >= sizeof path)
        return PLM_OK;
    FILE *probe = fopen(path, "rb");
    if (!probe)
        return PLM_OK;
    fclose(probe);
    char *text;
    size_t size;
    int rc = read_whole_file(path, &text, &size);
    if (!rc)
        rc = gguf_writer_set_str(w, "tokenizer.chat_template", text);
    free(text);
    return rc;
}

/* ------------------------------------------------------------------ driver */

/* model.merges: an array, or absent for a vocabulary of single characters. */
static int get_merges(const cJSON *root, const cJSON **merges)
{
    *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItemCaseSensitive(root, "model"),
                                               "merges");
    if (*merges && !cJSON_IsArray(*merges))
        return plm_fail(PLM_ERR_FORMAT, "tokenizer.json: model.merges is not an array");
    return PLM_OK;
}

static int write_spm(struct gguf_writer *w, const struct token_table *tt, const cJSON *root)
{
    const cJSON *merges;
    int rc = get_merges(root, &merges);
    if (rc)
        return rc;
    float *scores = malloc((size_t)tt->n * sizeof *scores);
    if (!scores)
        return plm_fail(PLM_ERR_NOMEM, "out of memory");
    rc = merge_scores(tt, merges, scores);
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "llama");
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", "default");
    if (!rc) rc = gguf_writer_set_array(w, "tokenizer.ggml.scores", GGUF_TYPE_FLOAT32, scores,
                                        (uint64_t)tt->n);
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_space_prefix",
                                       adds_space_prefix(root));
    free(scores);
    return rc;
}

static int write_byte_level(struct gguf_writer *w, const cJSON *root)
{
    const char *pre = NULL;
    const cJSON *merges;
    int rc = detect_pre(root, &pre);
    if (!rc) rc = get_merges(root, &merges);
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.model", "gpt2");
    if (!rc) rc = gguf_writer_set_str(w, "tokenizer.ggml.pre", pre);
    if (!rc) rc = write_merges(w, merges);
    return rc;
}

static int convert_tokenizer(struct gguf_writer *w, const char *dir, const cJSON *root,
                             const cJSON *tokenizer_config, const cJSON *config,
                             struct token_table *tt)
{
    enum tokenizer_kind kind = TOKENIZER_SPM;
    int rc;
    if ((rc = detect_kind(root, &kind)) || (rc = read_tokens(tt, root)) || (rc = pad_table(tt)) ||
        (rc = table_index(tt)))
        return rc;
    const char *unk = json_string(cJSON_GetObjectItemCaseSensitive(root, "model"), "unk_token");
    assign_types(tt, kind, unk ? table_find(tt, unk, strlen(unk)) : -1);

    rc = kind == TOKENIZER_SPM ? write_spm(w, tt, root) : write_byte_level(w, root);
    bool add_bos, add_eos;
    read_add_flags(root, tokenizer_config, kind, &add_bos, &add_eos);
    if (!rc) rc = gguf_writer_set_str_array(w, "tokenizer.ggml.tokens", tt->texts, NULL,
                                            (uint64_t)tt->n);
    if (!rc) rc = gguf_writer_set_array(w, "tokenizer.ggml.token_type", GGUF_TYPE_INT32,
                                        tt->types, (uint64_t)tt->n);
    int special_ids[4]; /* bos, eos, unk, pad */
    if (!rc) rc = write_special(w, tt, tokenizer_config, config, special_ids);
    /* A file that asks for a token it does not have would not load. */
    if (!rc && ((add_bos && special_ids[0] < 0) || (add_eos && special_ids[1] < 0)))
        rc = plm_fail(PLM_ERR_FORMAT, "tokenizer: %s token is to be added to every text, but "
                      "neither tokenizer_config.json nor config.json names one in the vocabulary",
                      add_bos && special_ids[0] < 0 ? "a BOS" : "an EOS");
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_bos_token", add_bos);
    if (!rc) rc = gguf_writer_set_bool(w, "tokenizer.ggml.add_eos_token", add_eos);
    if (!rc) rc = write_chat_template(w, dir, tokenizer_config);
    return rc;
}

int hf_tokenizer_convert(const char *dir, const cJSON *config, int n_vocab,
                         struct gguf_writer *writer)
{
    cJSON *root = NULL, *tokenizer_config = NULL;
    struct token_table tt;
    int rc = table_init(&tt, n_vocab);
    if (!rc) rc = convert_read_json(dir, "tokenizer.json", true, &root);
    if (!rc) rc = convert_read_json(dir, "tokenizer_config.json", false, &tokenizer_config);
    if (!rc) rc = convert_tokenizer(writer, dir, root, tokenizer_config, config, &tt);
    table_free(&tt);
    cJSON_Delete(root);
    cJSON_Delete(tokenizer_config);
    return rc;
}
