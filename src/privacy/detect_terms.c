/*
 * Terms the user listed (names, street addresses, project code names):
 * matched without regard to case, as whole words, in UTF-8.
 *
 * Case is folded with the simple one-to-one mappings of Latin-1, Latin
 * Extended-A, Greek and Cyrillic (enough for "Ærø", "Łukasz", "Σοφία",
 * "Дмитрий"); a run of white space in a term matches any run of white space
 * in the text ("221B  Baker\nStreet"). A word boundary is a code point that
 * is not a letter, a digit or '_' (Unicode classes, src/tokenizer/unicode.h).
 * Scripts written without spaces (CJK, Thai) need no boundary. Invalid UTF-8
 * bytes never match and are boundaries.
 */
#include "privacy/redact.h"

#include "core/error.h"
#include "tokenizer/unicode.h"

#include <stdlib.h>
#include <string.h>

#define NOT_A_CHARACTER 0xffffffffu

/* The code point at s; *size receives its length. An invalid byte is
 * returned alone as NOT_A_CHARACTER (utf8_decode gives U+FFFD for it). */
static uint32_t decode(const unsigned char *s, size_t len, size_t *size)
{
    uint32_t cp;
    *size = utf8_decode(s, len, &cp);
    return cp == UNICODE_REPLACEMENT && *size == 1 ? NOT_A_CHARACTER : cp;
}

/* Simple case folding; every mapping keeps the UTF-8 length. */
static uint32_t fold_case(uint32_t cp)
{
    if ((cp >= 'A' && cp <= 'Z') || (cp >= 0xc0 && cp <= 0xde && cp != 0xd7))
        return cp + 0x20;
    if ((cp >= 0x100 && cp <= 0x137) || (cp >= 0x14a && cp <= 0x177))
        return cp | 1; /* pairs: even upper, odd lower */
    if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17e))
        return cp + (cp & 1); /* pairs: odd upper, even lower */
    if (cp == 0x178)
        return 0xff;
    if ((cp >= 0x391 && cp <= 0x3a9 && cp != 0x3a2) || (cp >= 0x410 && cp <= 0x42f))
        return cp + 0x20;
    if (cp == 0x386) /* Greek capitals with tonos */
        return 0x3ac;
    if (cp >= 0x388 && cp <= 0x38a)
        return cp + 0x25;
    if (cp == 0x38c)
        return 0x3cc;
    if (cp == 0x38e || cp == 0x38f)
        return cp + 0x3f;
    if (cp >= 0x400 && cp <= 0x40f)
        return cp + 0x50;
    return cp;
}

static bool is_space(uint32_t cp)
{
    return cp != NOT_A_CHARACTER && unicode_class_of(cp) == UCLASS_WHITESPACE;
}

/* Scripts written without spaces between words. */
static bool unspaced_script(uint32_t cp)
{
    return (cp >= 0x0e00 && cp <= 0x0eff) || (cp >= 0x2e80 && cp <= 0x9fff) || (cp >= 0xf900 && cp <= 0xfaff) ||
           (cp >= 0x20000 && cp <= 0x3ffff);
}

/* Letters, digits (of any script) and '_' make words. */
static bool is_word_character(uint32_t cp)
{
    if (cp == NOT_A_CHARACTER)
        return false;
    enum unicode_class cls = unicode_class_of(cp);
    return cls == UCLASS_LETTER || cls == UCLASS_NUMBER || cp == '_';
}

#define ANY_SPACE 0x20 /* in a folded term: one or more white-space code points */

struct term {
    uint32_t *folded;
    size_t n;
    bool open_start, open_end; /* no word boundary needed on that side */
};

struct term_set {
    struct term *terms;
    int n;
};

void term_set_free(struct term_set *set)
{
    if (!set)
        return;
    for (int i = 0; i < set->n; i++) {
        explicit_bzero(set->terms[i].folded, set->terms[i].n * sizeof(uint32_t));
        free(set->terms[i].folded);
    }
    free(set->terms);
    free(set);
}

/* Folds one term: case folded, white-space runs as one ANY_SPACE, trimmed. */
static int prepare_term(const char *text, int index, struct term *term)
{
    size_t len = strlen(text);
    term->folded = malloc((len + 1) * sizeof(uint32_t));
    if (!term->folded)
        return plm_fail(PLM_ERR_NOMEM, "redact: out of memory for term %d", index + 1);
    term->n = 0;
    for (size_t i = 0, size; i < len; i += size) {
        uint32_t cp = decode((const unsigned char *)text + i, len - i, &size);
        if (cp == NOT_A_CHARACTER)
            return plm_fail(PLM_ERR_ARG, "redact: term %d is not valid UTF-8 (byte %zu)", index + 1, i);
        if (is_space(cp)) {
            if (term->n > 0 && term->folded[term->n - 1] != ANY_SPACE)
                term->folded[term->n++] = ANY_SPACE;
        } else {
            term->folded[term->n++] = fold_case(cp);
        }
    }
    if (term->n > 0 && term->folded[term->n - 1] == ANY_SPACE)
        term->n--;
    if (term->n == 0)
        return plm_fail(PLM_ERR_ARG, "redact: term %d is empty", index + 1);
    term->open_start = unspaced_script(term->folded[0]);
    term->open_end = unspaced_script(term->folded[term->n - 1]);
    return PLM_OK;
}

int term_set_new(const char *const *terms, int n_terms, struct term_set **out)
{
    *out = NULL;
    struct term_set *set = calloc(1, sizeof *set);
    if (set)
        set->terms = calloc((size_t)n_terms, sizeof *set->terms);
    if (!set || !set->terms) {
        free(set);
        return plm_fail(PLM_ERR_NOMEM, "redact: out of memory for %d terms", n_terms);
    }
    for (int i = 0; i < n_terms; i++) {
        int rc = terms[i] ? prepare_term(terms[i], i, &set->terms[i]) : plm_fail(PLM_ERR_ARG, "redact: term %d is NULL", i + 1);
        set->n = i + 1;
        if (rc != PLM_OK) {
            term_set_free(set);
            return rc;
        }
    }
    *out = set;
    return PLM_OK;
}

/* Whether the term matches at pos; *end receives where the match ends. */
static bool term_matches(const struct term *term, const char *text, size_t len, size_t pos, size_t *end)
{
    const unsigned char *s = (const unsigned char *)text;
    size_t i = pos, size;
    for (size_t k = 0; k < term->n; k++) {
        if (i >= len)
            return false;
        uint32_t cp = decode(s + i, len - i, &size);
        if (term->folded[k] == ANY_SPACE) {
            if (!is_space(cp))
                return false;
            while (i < len && is_space(decode(s + i, len - i, &size)))
                i += size;
            continue;
        }
        if (fold_case(cp) != term->folded[k])
            return false;
        i += size;
    }
    if (!term->open_end && i < len && is_word_character(decode(s + i, len - i, &size)))
        return false;
    *end = i;
    return true;
}

int detect_terms(const struct term_set *set, const char *text, size_t len, struct span_list *out)
{
    const unsigned char *s = (const unsigned char *)text;
    bool after_word = false;
    size_t i = 0, size;
    while (i < len) {
        uint32_t cp = decode(s + i, len - i, &size);
        uint32_t folded = fold_case(cp);
        size_t best = 0;
        for (int t = 0; t < set->n; t++) {
            const struct term *term = &set->terms[t];
            size_t end;
            if (term->folded[0] == folded && (!after_word || term->open_start) &&
                term_matches(term, text, len, i, &end) && end > best)
                best = end;
        }
        if (best) {
            int rc = span_push(out, PLM_REDACT_TERM, i, best);
            if (rc != PLM_OK)
                return rc;
            size_t last = best - 1;
            while (last > i && (s[last] & 0xc0) == 0x80)
                last--;
            after_word = is_word_character(decode(s + last, best - last, &size));
            i = best;
            continue;
        }
        after_word = is_word_character(cp);
        i += size;
    }
    return PLM_OK;
}

size_t term_fold_key(const char *value, size_t len, char *key)
{
    size_t n = 0, size;
    bool space = false;
    for (size_t i = 0; i < len; i += size) {
        uint32_t cp = decode((const unsigned char *)value + i, len - i, &size);
        if (is_space(cp)) {
            space = true;
            continue;
        }
        if (space && n > 0)
            key[n++] = ' ';
        space = false;
        if (cp == NOT_A_CHARACTER)
            key[n++] = value[i];
        else
            n += utf8_encode(fold_case(cp), key + n);
    }
    return n;
}
