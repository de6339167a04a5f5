/*
 * Pre-tokenizers of byte-level BPE vocabularies: the split regex of
 * tokenizer.ggml.pre, hand-written as scanners over code points (no regex
 * library). Each returns the pieces the regex's successive matches would give;
 * every byte of the input lands in exactly one piece (invalid UTF-8 bytes are
 * single "other" characters).
 *
 *   GPT2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
 *   LLAMA3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}|
 *           ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
 *   QWEN2   LLAMA3 with \p{N} (one digit per piece) instead of \p{N}{1,3}
 *   SMOLLM  every \p{N} is cut out as its own piece first, then GPT2 runs on
 *           the text between them (Digits(individual_digits) + ByteLevel)
 */
#ifndef PLM_TOKENIZER_PRETOKENIZE_H
#define PLM_TOKENIZER_PRETOKENIZE_H

#include <stddef.h>

enum pretokenizer {
    PRETOK_GPT2,
    PRETOK_LLAMA3,
    PRETOK_QWEN2,
    PRETOK_SMOLLM,
};

/* Splits text[0..len) into pieces: *ends (malloc'd, *n_pieces entries) holds
 * the byte offset where each piece ends, ascending, the last equal to len.
 * Returns PLM_OK or PLM_ERR_NOMEM. */
int pretokenize(enum pretokenizer rules, const char *text, size_t len, size_t **ends,
                size_t *n_pieces);

#endif
