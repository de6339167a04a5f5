#include "tokenizer/pretokenize.h"

#include "core/error.h"
#include "tokenizer/unicode.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* The text decoded once into characters, so the scanners can look ahead. A
 * scan covers characters [begin, end); positions outside it match nothing,
 * which is how a lookahead such as (?!\S) sees the end of the text. */
struct scan {
    const uint32_t *cp;        /* code point of each character */
    const unsigned char *cls;  /* its enum unicode_class */
    size_t begin, end;
};

static bool in_scan(const struct scan *s, size_t i) { return i >= s->begin && i < s->end; }

static bool is_letter(const struct scan *s, size_t i)
{
    return in_scan(s, i) && s->cls[i] == UCLASS_LETTER;
}

static bool is_number(const struct scan *s, size_t i)
{
    return in_scan(s, i) && s->cls[i] == UCLASS_NUMBER;
}

static bool is_space(const struct scan *s, size_t i)
{
    return in_scan(s, i) && s->cls[i] == UCLASS_WHITESPACE;
}

/* [^\s\p{L}\p{N}] */
static bool is_other(const struct scan *s, size_t i)
{
    return in_scan(s, i) && s->cls[i] == UCLASS_OTHER;
}

static bool is_char(const struct scan *s, size_t i, uint32_t cp)
{
    return in_scan(s, i) && s->cp[i] == cp;
}

static bool is_newline(const struct scan *s, size_t i)
{
    return is_char(s, i, '\r') || is_char(s, i, '\n');
}

static uint32_t ascii_lower(uint32_t cp) { return cp >= 'A' && cp <= 'Z' ? cp + 32 : cp; }

/* 's|'t|'re|'ve|'m|'ll|'d at i: the match length, or 0. Llama 3 matches them
 * case-insensitively; only ASCII letters can case-fold into these (as in
 * llama.cpp, which lowercases rather than case-folds). */
static size_t match_contraction(const struct scan *s, size_t i, bool ignore_case)
{
    if (!is_char(s, i, '\'') || !in_scan(s, i + 1))
        return 0;
    uint32_t c1 = s->cp[i + 1];
    if (ignore_case)
        c1 = ascii_lower(c1);
    if (c1 == 's' || c1 == 't' || c1 == 'm' || c1 == 'd')
        return 2;
    if (!in_scan(s, i + 2))
        return 0;
    uint32_t c2 = s->cp[i + 2];
    if (ignore_case)
        c2 = ascii_lower(c2);
    if ((c1 == 'r' && c2 == 'e') || (c1 == 'v' && c2 == 'e') || (c1 == 'l' && c2 == 'l'))
        return 3;
    return 0;
}

/* The whitespace alternatives shared by both regexes, at a whitespace
 * character i: \s+(?!\S)|\s+. Before a non-space the run gives back its last
 * character, so that " word" keeps its leading space. */
static size_t match_trailing_space(const struct scan *s, size_t i)
{
    size_t run_end = i;
    while (is_space(s, run_end))
        run_end++;
    if (run_end - i > 1 && in_scan(s, run_end))
        return run_end - 1;
    return run_end;
}

static size_t gpt2_match(const struct scan *s, size_t i)
{
    size_t n = match_contraction(s, i, false);
    if (n)
        return i + n;
    size_t j = i + is_char(s, i, ' '); /* the optional leading space */
    if (is_letter(s, j)) {
        while (is_letter(s, j))
            j++;
        return j;
    }
    if (is_number(s, j)) {
        while (is_number(s, j))
            j++;
        return j;
    }
    if (is_other(s, j)) {
        while (is_other(s, j))
            j++;
        return j;
    }
    return match_trailing_space(s, i);
}

static size_t llama3_match(const struct scan *s, size_t i, size_t max_digits)
{
    size_t n = match_contraction(s, i, true);
    if (n)
        return i + n;
    /* [^\r\n\p{L}\p{N}]?\p{L}+ */
    if (is_letter(s, i) || (!is_newline(s, i) && !is_number(s, i) && is_letter(s, i + 1))) {
        size_t j = i + 1;
        while (is_letter(s, j))
            j++;
        return j;
    }
    /* \p{N}{1,3} (Qwen2: \p{N}) */
    if (is_number(s, i)) {
        size_t j = i;
        while (is_number(s, j) && j - i < max_digits)
            j++;
        return j;
    }
    /*  ?[^\s\p{L}\p{N}]+[\r\n]* */
    size_t j = i + is_char(s, i, ' ');
    if (is_other(s, j)) {
        while (is_other(s, j))
            j++;
        while (is_newline(s, j))
            j++;
        return j;
    }
    /* \s*[\r\n]+ : a whitespace run up to and including its last newline */
    size_t run_end = i, after_last_newline = 0;
    while (is_space(s, run_end)) {
        if (is_newline(s, run_end))
            after_last_newline = run_end + 1;
        run_end++;
    }
    if (after_last_newline)
        return after_last_newline;
    return match_trailing_space(s, i);
}

static size_t next_match(enum pretokenizer rules, const struct scan *s, size_t i)
{
    switch (rules) {
    case PRETOK_LLAMA3:
        return llama3_match(s, i, 3);
    case PRETOK_QWEN2:
        return llama3_match(s, i, 1);
    case PRETOK_GPT2:
    case PRETOK_SMOLLM:
        break;
    }
    return gpt2_match(s, i);
}

/* Appends the character index where each match in [s->begin, s->end) ends. */
static void split_range(enum pretokenizer rules, const struct scan *s, size_t *ends, size_t *count)
{
    size_t i = s->begin;
    while (i < s->end) {
        size_t next = next_match(rules, s, i);
        if (next <= i) /* cannot happen: every class is matched by some alternative */
            next = i + 1;
        ends[(*count)++] = next;
        i = next;
    }
}

/* SmolLM first isolates every \p{N}, then applies the GPT-2 regex to each
 * stretch between them as a text of its own. */
static void split_smollm(const struct scan *text, size_t *ends, size_t *count)
{
    size_t i = text->begin;
    while (i < text->end) {
        if (is_number(text, i)) {
            ends[(*count)++] = ++i;
            continue;
        }
        struct scan stretch = *text;
        stretch.begin = i;
        while (i < text->end && !is_number(text, i))
            i++;
        stretch.end = i;
        split_range(PRETOK_GPT2, &stretch, ends, count);
    }
}

int pretokenize(enum pretokenizer rules, const char *text, size_t len, size_t **ends,
                size_t *n_pieces)
{
    *ends = NULL;
    *n_pieces = 0;
    if (len == 0)
        return PLM_OK;
    const unsigned char *bytes = (const unsigned char *)text;
    uint32_t *cps = malloc(len * sizeof *cps);
    unsigned char *cls = malloc(len);
    size_t *offsets = malloc((len + 1) * sizeof *offsets); /* byte offset of each character */
    size_t *piece_ends = malloc(len * sizeof *piece_ends);
    if (!cps || !cls || !offsets || !piece_ends) {
        free(cps), free(cls), free(offsets), free(piece_ends);
        return plm_fail(PLM_ERR_NOMEM, "tokenizer: out of memory splitting %zu bytes", len);
    }
    size_t n_chars = 0;
    for (size_t pos = 0; pos < len;) {
        uint32_t cp;
        size_t n = utf8_decode(bytes + pos, len - pos, &cp);
        cps[n_chars] = cp;
        cls[n_chars] = (unsigned char)unicode_class_of(cp);
        offsets[n_chars++] = pos;
        pos += n;
    }
    offsets[n_chars] = len;

    struct scan s = {cps, cls, 0, n_chars};
    size_t count = 0;
    if (rules == PRETOK_SMOLLM)
        split_smollm(&s, piece_ends, &count);
    else
        split_range(rules, &s, piece_ends, &count);
    for (size_t i = 0; i < count; i++)
        piece_ends[i] = offsets[piece_ends[i]];

    free(cps), free(cls), free(offsets);
    *ends = piece_ends;
    *n_pieces = count;
    return PLM_OK;
}
