/*
 * Byte-level BPE ("gpt2" vocabularies: GPT-2, Llama 3, Qwen2, SmolLM, ...).
 *
 * The text is cut into pieces by the pre-tokenizer regex. Each byte of a
 * piece becomes one symbol: the token of its character in GPT-2's byte
 * alphabet, which gives every byte a printable stand-in (see byte_char). Then
 * the adjacent pair with the best (lowest) merge rank in tokenizer.ggml.merges
 * is merged, again and again. Since merges work on token ids, a rule is only
 * kept when both halves and their concatenation are tokens.
 */
#include "core/error.h"
#include "tokenizer/merge_queue.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_internal.h"

#include <stdlib.h>
#include <string.h>

/* GPT-2's byte alphabet: printable Latin-1 bytes ('!'..'~', '¡'..'¬', '®'..'ÿ')
 * stand for themselves; the 68 others (0x00..0x20, 0x7F..0xA0, 0xAD) are
 * given the code points 256..323 in byte order, so a space is "Ġ" (U+0120)
 * and a newline "Ċ" (U+010A). */
static uint32_t byte_char(unsigned char byte)
{
    if (byte <= 0x20)
        return 256 + byte;
    if (byte >= 0x7F && byte <= 0xA0)
        return 256 + 33 + (byte - 0x7F);
    if (byte == 0xAD)
        return 256 + 33 + 34;
    return byte;
}

/* The inverse of byte_char, or -1 for a code point outside the alphabet. */
static int char_byte(uint32_t cp)
{
    if (cp < 256)
        return byte_char((unsigned char)cp) == cp ? (int)cp : -1;
    if (cp < 256 + 33)
        return (int)(cp - 256);
    if (cp < 256 + 33 + 34)
        return (int)(0x7F + cp - (256 + 33));
    if (cp == 256 + 33 + 34)
        return 0xAD;
    return -1;
}

void bpe_map_bytes(struct plm_vocab *vocab)
{
    for (int byte = 0; byte < 256; byte++) {
        char utf8[4];
        size_t n = utf8_encode(byte_char((unsigned char)byte), utf8);
        vocab->byte_token[byte] = token_table_find(vocab, utf8, n);
    }
}

size_t bpe_decode_text(const char *text, size_t len, char *buf, size_t size)
{
    size_t out = 0;
    for (size_t pos = 0; pos < len;) {
        uint32_t cp;
        size_t n = utf8_decode((const unsigned char *)text + pos, len - pos, &cp);
        int byte = cp == UNICODE_REPLACEMENT ? -1 : char_byte(cp);
        if (byte >= 0) {
            char c = (char)byte;
            sink_put(buf, size, &out, &c, 1);
        } else {
            sink_put(buf, size, &out, text + pos, n); /* not byte-level: as stored */
        }
        pos += n;
    }
    return out;
}

/* ---------------------------------------------------------------- merges */

static uint32_t pair_hash(int32_t left, int32_t right)
{
    uint64_t x = ((uint64_t)(uint32_t)left << 32) | (uint32_t)right;
    x ^= x >> 33;
    x *= 0xFF51AFD7ED558CCDull;
    x ^= x >> 33;
    return (uint32_t)x;
}

static const struct merge_rule *find_merge(const struct merge_table *table, int32_t left,
                                           int32_t right)
{
    if (!table->slots)
        return NULL;
    for (uint32_t i = pair_hash(left, right) & table->mask;; i = (i + 1) & table->mask) {
        const struct merge_rule *rule = &table->slots[i];
        if (rule->left < 0)
            return NULL;
        if (rule->left == left && rule->right == right)
            return rule;
    }
}

/* Keeps the first (best-ranked) rule for a pair. */
static void insert_merge(struct merge_table *table, struct merge_rule rule)
{
    for (uint32_t i = pair_hash(rule.left, rule.right) & table->mask;; i = (i + 1) & table->mask) {
        struct merge_rule *slot = &table->slots[i];
        if (slot->left < 0) {
            *slot = rule;
            return;
        }
        if (slot->left == rule.left && slot->right == rule.right)
            return;
    }
}

/* Parses "left right" (split at the first space after the first byte, so a
 * left half may itself be a space). Returns false for a malformed rule. */
static bool parse_merge(const struct plm_vocab *vocab, struct gguf_str rule, char *scratch,
                        struct merge_rule *parsed)
{
    const char *space = rule.len > 1 ? memchr(rule.ptr + 1, ' ', rule.len - 1) : NULL;
    if (!space)
        return false;
    size_t left_len = (size_t)(space - rule.ptr);
    size_t right_len = rule.len - left_len - 1;
    parsed->left = token_table_find(vocab, rule.ptr, left_len);
    parsed->right = token_table_find(vocab, space + 1, right_len);
    memcpy(scratch, rule.ptr, left_len);
    memcpy(scratch + left_len, space + 1, right_len);
    parsed->result = token_table_find(vocab, scratch, left_len + right_len);
    return parsed->left >= 0 && parsed->right >= 0 && parsed->result >= 0;
}

int bpe_load_merges(struct plm_vocab *vocab, const struct gguf_kv *merges)
{
    if (merges->type != GGUF_TYPE_ARRAY || merges->elem_type != GGUF_TYPE_STRING)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: tokenizer.ggml.merges is not a string array");
    if (merges->count > VOCAB_MAX_TOKENS)
        return plm_fail(PLM_ERR_FORMAT, "tokenizer: %llu merges (the limit is %d)",
                        (unsigned long long)merges->count, VOCAB_MAX_TOKENS);
    uint32_t n_slots = 16;
    while (n_slots < 2 * merges->count)
        n_slots *= 2;
    size_t longest = 0;
    for (uint64_t i = 0; i < merges->count; i++)
        if (merges->strings[i].len > longest)
            longest = merges->strings[i].len;
    struct merge_table table = {malloc(n_slots * sizeof *table.slots), n_slots - 1};
    char *scratch = malloc(longest + 1);
    if (!table.slots || !scratch) {
        free(table.slots), free(scratch);
        return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory for %llu merges",
                        (unsigned long long)merges->count);
    }
    for (uint32_t i = 0; i < n_slots; i++)
        table.slots[i].left = -1;
    for (uint64_t i = 0; i < merges->count; i++) {
        struct merge_rule rule;
        rule.rank = (int32_t)i;
        if (parse_merge(vocab, merges->strings[i], scratch, &rule))
            insert_merge(&table, rule);
    }
    free(scratch);
    vocab->merges = table;
    vocab->heap_bytes += n_slots * sizeof *table.slots;
    return PLM_OK;
}

/* ---------------------------------------------------------------- encode */

/* Scratch reused across the pieces of one text. */
struct bpe_work {
    struct symbol *symbols;
    struct merge_queue queue;
    char *spelled; /* a piece in the byte alphabet (for ignore_merges) */
};

static int push_candidate(const struct plm_vocab *vocab, const struct symbol *symbols,
                          int32_t left, struct merge_queue *queue)
{
    if (left < 0 || symbols[left].next < 0)
        return PLM_OK;
    int32_t right = symbols[left].next;
    if (symbols[left].id < 0 || symbols[right].id < 0)
        return PLM_OK;
    const struct merge_rule *rule = find_merge(&vocab->merges, symbols[left].id, symbols[right].id);
    if (!rule)
        return PLM_OK;
    /* Ranks are below 2^24, so the float priority is exact. */
    struct merge_candidate candidate = {left, right, symbols[left].len + symbols[right].len,
                                        -(float)rule->rank, rule->result};
    return merge_queue_push(queue, candidate);
}

/* Llama 3 style: a piece that is itself a token needs no merging. */
static int32_t whole_piece_token(const struct plm_vocab *vocab, const unsigned char *piece,
                                 size_t len, char *spelled)
{
    size_t n = 0;
    for (size_t i = 0; i < len; i++)
        n += utf8_encode(byte_char(piece[i]), spelled + n);
    return token_table_find(vocab, spelled, n);
}

static int encode_piece(const struct plm_vocab *vocab, const unsigned char *piece, size_t len,
                        struct bpe_work *work, struct token_list *out)
{
    if (vocab->ignore_merges) {
        int32_t id = whole_piece_token(vocab, piece, len, work->spelled);
        if (id >= 0)
            return token_list_push(out, id);
    }
    struct symbol *symbols = work->symbols;
    for (size_t i = 0; i < len; i++)
        symbols[i] = (struct symbol){(int32_t)i - 1, i + 1 < len ? (int32_t)i + 1 : -1,
                                     (uint32_t)i, 1, vocab->byte_token[piece[i]]};

    struct merge_queue *queue = &work->queue;
    queue->count = 0;
    int status = PLM_OK;
    for (size_t i = 0; i + 1 < len && !status; i++)
        status = push_candidate(vocab, symbols, (int32_t)i, queue);
    struct merge_candidate best;
    while (!status && merge_queue_pop(queue, &best)) {
        if (!merge_is_current(symbols, &best))
            continue;
        merge_apply(symbols, &best);
        status = push_candidate(vocab, symbols, symbols[best.left].prev, queue);
        if (!status)
            status = push_candidate(vocab, symbols, best.left, queue);
    }
    for (int32_t i = 0; i >= 0 && !status; i = symbols[i].next) {
        /* id is -1 only for a byte whose character the vocabulary lacks */
        int32_t id = symbols[i].id >= 0 ? symbols[i].id : vocab->unk;
        if (id >= 0)
            status = token_list_push(out, id);
    }
    return status;
}

int bpe_encode(const struct plm_vocab *vocab, const char *text, size_t len, struct token_list *out)
{
    if (len > (size_t)INT32_MAX / 4)
        return plm_fail(PLM_ERR_LIMIT, "tokenizer: text of %zu bytes is too long", len);
    size_t *ends, n_pieces;
    int status = pretokenize(vocab->pretokenizer, text, len, &ends, &n_pieces);
    if (status)
        return status;
    size_t longest = 0;
    for (size_t i = 0, start = 0; i < n_pieces; start = ends[i++])
        if (ends[i] - start > longest)
            longest = ends[i] - start;
    struct bpe_work work = {malloc((longest + 1) * sizeof *work.symbols), {0},
                            malloc(2 * longest + 1)};
    if (!work.symbols || !work.spelled)
        status = plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    for (size_t i = 0, start = 0; i < n_pieces && !status; start = ends[i++])
        status = encode_piece(vocab, (const unsigned char *)text + start, ends[i] - start, &work,
                              out);
    free(work.symbols);
    free(work.spelled);
    merge_queue_free(&work.queue);
    free(ends);
    return status;
}
