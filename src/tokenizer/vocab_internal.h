/*
 * The vocabulary as the two tokenizers (spm.c, bpe.c) and vocab.c share it.
 * Not part of the API: use vocab.h.
 */
#ifndef PLM_TOKENIZER_VOCAB_INTERNAL_H
#define PLM_TOKENIZER_VOCAB_INTERNAL_H

#include "tokenizer/pretokenize.h"
#include "tokenizer/vocab.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define VOCAB_MAX_TOKENS (1 << 24)
#define VOCAB_MAX_TOKEN_BYTES (1 << 20)
#define VOCAB_MAX_EOG 16

enum vocab_model {
    VOCAB_SPM, /* "llama": SentencePiece BPE over characters, scores, byte fallback */
    VOCAB_BPE, /* "gpt2": byte-level BPE over pre-tokenized pieces, ranked merges */
};

struct vocab_token {
    uint32_t text_offset; /* into plm_vocab.text */
    uint32_t text_len;
    float score;          /* SPM merge priority */
    unsigned char type;   /* enum plm_token_type */
    int16_t byte_value;   /* for a well-formed byte token "<0xAB>": 0xAB; else -1 */
};

/* Open-addressing hash from token text to id (the lowest id for duplicates). */
struct token_table {
    int32_t *slots; /* token id or -1 */
    uint32_t mask;  /* slot count - 1, a power of two minus one */
};

/* Open-addressing hash from a merge rule "left right" (as token ids) to its
 * rank and the id of the merged token. */
struct merge_rule {
    int32_t left, right; /* left == -1: empty slot */
    int32_t rank;        /* position in tokenizer.ggml.merges: lower merges first */
    int32_t result;
};

struct merge_table {
    struct merge_rule *slots;
    uint32_t mask;
};

/* Special tokens matched in the input text before tokenizing: the distinct
 * byte lengths of their texts (longest first) and their possible first bytes,
 * to reject most positions with one look-up. */
struct special_matcher {
    bool first_byte[256];
    uint32_t *lengths;
    int n_lengths;
};

struct plm_vocab {
    enum vocab_model model;
    int32_t n_tokens;
    struct vocab_token *tokens;
    char *text; /* every token's text, back to back */
    struct token_table table;

    /* SPM: the byte token "<0xAB>" of each byte (byte fallback).
     * BPE: the token of each byte's byte-level character. -1 when absent. */
    int32_t byte_token[256];

    /* SPM: whether the byte occurs in some token that merges can produce */
    bool spm_byte_in_pieces[256];

    /* BPE only */
    enum pretokenizer pretokenizer;
    bool ignore_merges; /* a piece that is a whole token is taken as is (Llama 3) */
    struct merge_table merges;

    bool add_space_prefix; /* SPM: "▁" before the text and after each special token */
    bool add_bos, add_eos;
    int32_t bos, eos, eot, unk; /* -1 when absent */
    int32_t eog[VOCAB_MAX_EOG];
    int n_eog;

    struct special_matcher special_all;  /* control, user-defined, unknown: parse_special */
    struct special_matcher special_user; /* user-defined only: always matched */

    size_t heap_bytes; /* this struct and every table above: counted where each is allocated */
};

/* A growing array of token ids. */
struct token_list {
    int32_t *ids;
    size_t count, capacity;
};

/* Returns PLM_OK or PLM_ERR_NOMEM. */
int token_list_push(struct token_list *list, int32_t id);

/* Appends n bytes at buf[*len], writing only what fits in size; *len counts
 * them all, so it ends as the length the whole output needs. */
static inline void sink_put(char *buf, size_t size, size_t *len, const char *src, size_t n)
{
    if (*len < size)
        memcpy(buf + *len, src, n < size - *len ? n : size - *len);
    *len += n;
}

static inline const char *vocab_text_of(const struct plm_vocab *vocab, int32_t id)
{
    return vocab->text + vocab->tokens[id].text_offset;
}

/* The id of the token whose text is exactly text[0..len), or -1. */
int32_t token_table_find(const struct plm_vocab *vocab, const char *text, size_t len);

/* spm.c */
void spm_map_bytes(struct plm_vocab *vocab);
/* Tokenizes one stretch of raw text (no special tokens in it). */
int spm_encode(const struct plm_vocab *vocab, const char *text, size_t len, bool add_prefix,
               struct token_list *out);

/* bpe.c */
int bpe_load_merges(struct plm_vocab *vocab, const struct gguf_kv *merges);
void bpe_map_bytes(struct plm_vocab *vocab);
/* Tokenizes one stretch of raw text (no special tokens in it). */
int bpe_encode(const struct plm_vocab *vocab, const char *text, size_t len, struct token_list *out);
/* Appends the bytes a byte-level token text stands for, up to size; returns
 * the full length. */
size_t bpe_decode_text(const char *text, size_t len, char *buf, size_t size);

#endif
