/*
 * The little Unicode the tokenizers need: strict UTF-8 decoding that never
 * fails (an invalid byte decodes alone, as U+FFFD, so every byte of any input
 * belongs to exactly one "character"), UTF-8 encoding, and the code point
 * classes the pre-tokenizer regexes test (\p{L}, \p{N}, \s).
 */
#ifndef PLM_TOKENIZER_UNICODE_H
#define PLM_TOKENIZER_UNICODE_H

#include <stddef.h>
#include <stdint.h>

#define UNICODE_REPLACEMENT 0xFFFD

enum unicode_class {
    UCLASS_OTHER = 0, /* punctuation, symbols, marks, controls, unassigned, invalid */
    UCLASS_LETTER,    /* \p{L} */
    UCLASS_NUMBER,    /* \p{N} */
    UCLASS_WHITESPACE /* \s: the White_Space property */
};

/* Code points first..last (inclusive) all have class cls. */
struct unicode_range {
    uint32_t first;
    uint32_t last;
    unsigned char cls; /* enum unicode_class */
};

/* Sorted, non-overlapping; code points not covered are UCLASS_OTHER.
 * Generated into unicode_tables.c by scripts/gen_unicode_tables.py. */
extern const struct unicode_range unicode_ranges[];
extern const int unicode_ranges_count;

enum unicode_class unicode_class_of(uint32_t cp);

/* Decodes the character at text[0] (len >= 1 bytes available). Returns its
 * length in bytes (1..4) and stores the code point in *cp. A byte that does
 * not start a well-formed sequence (stray continuation, truncated, overlong,
 * surrogate, above U+10FFFF) is returned alone with *cp = UNICODE_REPLACEMENT. */
size_t utf8_decode(const unsigned char *text, size_t len, uint32_t *cp);

/* Writes cp (<= 0x10FFFF) as UTF-8 into out; returns the length (1..4). */
size_t utf8_encode(uint32_t cp, char out[4]);

#endif
