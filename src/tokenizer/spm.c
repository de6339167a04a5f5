/*
 * SentencePiece BPE ("llama" vocabularies such as Llama 2's).
 *
 * The text is normalised by writing every space as "▁" (U+2581), with one more
 * "▁" in front when asked. The word then starts as one symbol per UTF-8
 * character, and the adjacent pair whose concatenation is the vocabulary
 * token with the highest score is merged, again and again, until no pair
 * forms a token. A final symbol that is no token is spelled with byte tokens
 * "<0xAB>" (byte fallback), or the unknown token when the vocabulary has none.
 */
#include "core/error.h"
#include "tokenizer/merge_queue.h"
#include "tokenizer/unicode.h"
#include "tokenizer/vocab_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char SPACE_MARK[] = "\xE2\x96\x81"; /* U+2581 LOWER ONE EIGHTH BLOCK */
#define SPACE_MARK_LEN 3

/* Only tokens a SentencePiece model would produce take part in merges:
 * control, unknown, byte and unused tokens are reserved. */
static bool is_piece(const struct vocab_token *token)
{
    return token->type == PLM_TOKEN_NORMAL || token->type == PLM_TOKEN_USER_DEFINED;
}

static int32_t piece_id(const struct plm_vocab *vocab, const char *text, size_t len)
{
    int32_t id = token_table_find(vocab, text, len);
    return id >= 0 && is_piece(&vocab->tokens[id]) ? id : -1;
}

void spm_map_bytes(struct plm_vocab *vocab)
{
    for (int byte = 0; byte < 256; byte++) {
        char text[8];
        snprintf(text, sizeof text, "<0x%02X>", byte);
        vocab->byte_token[byte] = token_table_find(vocab, text, 6);
    }
    for (int32_t id = 0; id < vocab->n_tokens; id++) {
        if (!is_piece(&vocab->tokens[id]))
            continue;
        const unsigned char *text = (const unsigned char *)vocab_text_of(vocab, id);
        for (uint32_t i = 0; i < vocab->tokens[id].text_len; i++)
            vocab->spm_byte_in_pieces[text[i]] = true;
    }
}

/* Returns the normalised text (malloc'd) or NULL on out of memory. */
static char *normalize(const char *text, size_t len, bool add_prefix, size_t *out_len)
{
    size_t n_spaces = add_prefix;
    for (size_t i = 0; i < len; i++)
        n_spaces += text[i] == ' ';
    char *out = malloc(len + 2 * n_spaces + 1);
    if (!out)
        return NULL;
    size_t n = 0;
    if (add_prefix) {
        memcpy(out, SPACE_MARK, SPACE_MARK_LEN);
        n = SPACE_MARK_LEN;
    }
    for (size_t i = 0; i < len; i++) {
        if (text[i] == ' ') {
            memcpy(out + n, SPACE_MARK, SPACE_MARK_LEN);
            n += SPACE_MARK_LEN;
        } else {
            out[n++] = text[i];
        }
    }
    *out_len = n;
    return out;
}

static int push_candidate(const struct plm_vocab *vocab, const char *text,
                          const struct symbol *symbols, int32_t left, struct merge_queue *queue)
{
    if (left < 0 || symbols[left].next < 0)
        return PLM_OK;
    int32_t right = symbols[left].next;
    uint32_t len = symbols[left].len + symbols[right].len;
    int32_t id = piece_id(vocab, text + symbols[left].start, len);
    if (id < 0)
        return PLM_OK;
    struct merge_candidate candidate = {left, right, len, vocab->tokens[id].score, id};
    return merge_queue_push(queue, candidate);
}

/* A final symbol that is a token is emitted as such; otherwise it is spelled
 * with byte tokens, or, when the vocabulary cannot spell it, is one <unk>. */
static int emit_symbol(const struct plm_vocab *vocab, const char *text, const struct symbol *sym,
                       struct token_list *out)
{
    const unsigned char *bytes = (const unsigned char *)text + sym->start;
    int32_t id = piece_id(vocab, text + sym->start, sym->len);
    if (id >= 0)
        return token_list_push(out, id);
    bool spellable = true;
    for (uint32_t i = 0; i < sym->len; i++)
        spellable = spellable && vocab->byte_token[bytes[i]] >= 0;
    if (!spellable)
        return vocab->unk >= 0 ? token_list_push(out, vocab->unk) : PLM_OK;
    int status = PLM_OK;
    for (uint32_t i = 0; i < sym->len && !status; i++)
        status = token_list_push(out, vocab->byte_token[bytes[i]]);
    return status;
}

/* Merges the symbols of one segment (indices 0..n_symbols-1) and emits them. */
static int merge_and_emit(const struct plm_vocab *vocab, const char *text, struct symbol *symbols,
                          int32_t n_symbols, struct merge_queue *queue, struct token_list *out)
{
    queue->count = 0;
    int status = PLM_OK;
    for (int32_t i = 0; i + 1 < n_symbols && !status; i++)
        status = push_candidate(vocab, text, symbols, i, queue);

    struct merge_candidate best;
    while (!status && merge_queue_pop(queue, &best)) {
        if (!merge_is_current(symbols, &best))
            continue;
        merge_apply(symbols, &best);
        status = push_candidate(vocab, text, symbols, symbols[best.left].prev, queue);
        if (!status)
            status = push_candidate(vocab, text, symbols, best.left, queue);
    }
    for (int32_t i = 0; i >= 0 && !status; i = symbols[i].next)
        status = emit_symbol(vocab, text, &symbols[i], out);
    return status;
}

/* An ASCII byte that occurs in no mergeable token (a newline, in Llama's
 * vocabulary) can never join a neighbour, so it splits the text into
 * segments that merge independently: the same result as one long merge
 * queue, with much smaller heaps on long texts. */
static bool is_wall(const struct plm_vocab *vocab, unsigned char byte)
{
    return byte < 0x80 && !vocab->spm_byte_in_pieces[byte];
}

/* Reads the symbols of the segment at norm[*pos] into symbols[0..]: up to the
 * next wall byte, or that wall byte alone. Returns the symbol count. */
static int32_t read_segment(const struct plm_vocab *vocab, const char *norm, size_t norm_len,
                            size_t *pos, struct symbol *symbols)
{
    const unsigned char *bytes = (const unsigned char *)norm;
    int32_t n_symbols = 0;
    while (*pos < norm_len) {
        bool wall = is_wall(vocab, bytes[*pos]);
        if (wall && n_symbols > 0)
            break;
        uint32_t cp;
        size_t n = utf8_decode(bytes + *pos, norm_len - *pos, &cp);
        symbols[n_symbols] = (struct symbol){n_symbols - 1, -1, (uint32_t)*pos, (uint32_t)n, -1};
        if (n_symbols > 0)
            symbols[n_symbols - 1].next = n_symbols;
        n_symbols++;
        *pos += n;
        if (wall)
            break;
    }
    return n_symbols;
}

int spm_encode(const struct plm_vocab *vocab, const char *text, size_t len, bool add_prefix,
               struct token_list *out)
{
    if (len == 0 && !add_prefix)
        return PLM_OK;
    if (len > (size_t)INT32_MAX / 4)
        return plm_fail(PLM_ERR_LIMIT, "tokenizer: text of %zu bytes is too long", len);
    size_t norm_len = 0;
    char *norm = normalize(text, len, add_prefix, &norm_len);
    struct symbol *symbols = norm ? malloc(norm_len * sizeof *symbols) : NULL;
    if (!norm || !symbols) {
        free(norm), free(symbols);
        return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory for %zu bytes of text", len);
    }
    struct merge_queue queue = {0};
    int status = PLM_OK;
    for (size_t pos = 0; pos < norm_len && !status;) {
        int32_t n_symbols = read_segment(vocab, norm, norm_len, &pos, symbols);
        status = merge_and_emit(vocab, norm, symbols, n_symbols, &queue, out);
    }
    merge_queue_free(&queue);
    free(norm);
    free(symbols);
    return status;
}
