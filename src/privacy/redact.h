/*
 * Internals of redaction: the detectors and what they share.
 *
 * Each detector family scans the whole text once and appends the spans it
 * finds to a span_list; within one family spans never overlap. redact.c then
 * settles overlaps between families (the longest span wins: a URL holding an
 * email stays one URL) and replaces what is left. Every detector does bounded
 * work per byte, so redaction is linear in the length of the text.
 */
#ifndef PLM_PRIVACY_REDACT_H
#define PLM_PRIVACY_REDACT_H

#include "pocketlm.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct span_list {
    struct plm_redact_span *items;
    size_t count, capacity;
};

/* Appends a span; PLM_ERR_NOMEM when the list cannot grow. */
int span_push(struct span_list *list, int type, size_t start, size_t end);

/* Character classes of ASCII bytes (bytes >= 0x80 are in none of them). */
static inline bool is_digit(unsigned char c) { return c >= '0' && c <= '9'; }
static inline bool is_upper(unsigned char c) { return c >= 'A' && c <= 'Z'; }
static inline bool is_lower(unsigned char c) { return c >= 'a' && c <= 'z'; }
static inline bool is_alpha(unsigned char c) { return is_upper(c) || is_lower(c); }
static inline bool is_alnum(unsigned char c) { return is_alpha(c) || is_digit(c); }
static inline bool is_hex(unsigned char c)
{
    return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
static inline int hex_value(unsigned char c)
{
    return is_digit(c) ? c - '0' : (c | 0x20) - 'a' + 10;
}
static inline unsigned char to_lower(unsigned char c) { return is_upper(c) ? (unsigned char)(c | 0x20) : c; }

/* A byte that glues a match to a word: ASCII letters, digits and '_'. Matches
 * may touch non-ASCII text ("电话+86 10 1234 5678", "«192.0.2.1»"). */
static inline bool is_ascii_word_byte(unsigned char c) { return is_alnum(c) || c == '_'; }

/* True if one of the NULL-terminated lower-case words appears, as a whole
 * word and without regard to ASCII case, in the `window` bytes before pos.
 * Context for ambiguous layouts: "tel", "SSN", "version". */
bool preceded_by_word(const char *text, size_t pos, size_t window, const char *const *words);

/* The common scan of most detectors: at every pos where may_start holds,
 * match_at returns the end of a match starting there (or 0); a match is
 * pushed as a span of the type and the scan goes on after it. Both look at a
 * bounded number of bytes, so the scan is linear. */
typedef bool (*may_start_fn)(const char *text, size_t len, size_t pos);
typedef size_t (*match_at_fn)(const char *text, size_t len, size_t pos);
int scan_matches(const char *text, size_t len, int type, may_start_fn may_start, match_at_fn match_at,
                 struct span_list *out);

/* The detector families (detect_*.c). Each returns PLM_OK or PLM_ERR_NOMEM. */
int detect_emails(const char *text, size_t len, struct span_list *out);
int detect_cards(const char *text, size_t len, struct span_list *out);
int detect_ibans(const char *text, size_t len, struct span_list *out);
int detect_ssns(const char *text, size_t len, struct span_list *out);
int detect_phones(const char *text, size_t len, struct span_list *out);
int detect_ipv4(const char *text, size_t len, struct span_list *out);
int detect_ipv6(const char *text, size_t len, struct span_list *out);
int detect_macs(const char *text, size_t len, struct span_list *out);
int detect_urls(const char *text, size_t len, struct span_list *out);
int detect_secrets(const char *text, size_t len, struct span_list *out);

/* User-listed terms, prepared once per redactor (detect_terms.c). */
struct term_set;
int term_set_new(const char *const *terms, int n_terms, struct term_set **set);
void term_set_free(struct term_set *set);
int detect_terms(const struct term_set *set, const char *text, size_t len, struct span_list *out);

/* The value a placeholder stands for, in the key two spellings of the same
 * value share (digits of a card, a lower-case email, ...). Writes at most
 * len bytes to key and returns the key's length (detect_terms.c folds terms). */
size_t term_fold_key(const char *value, size_t len, char *key);

/* Looks up "[TYPE_N]" placeholders (redact.c): the value of (type, number),
 * or NULL when this redactor never handed it out. */
const char *redactor_value(const plm_redactor *redactor, int type, uint64_t number, size_t *len);

/* Placeholder grammar shared by redaction and restoration (restore.c).
 * Parses text[0..len) from its '[': returns the placeholder's length when it
 * is complete ("[EMAIL_12]"), 0 when text cannot be a placeholder, and -1
 * when text is a proper prefix of one ("[EMA", "[EMAIL_1") and more bytes
 * could complete it. */
int placeholder_parse(const char *text, size_t len, int *type, uint64_t *number);

/* A growing, NUL-terminated output buffer (redact.c). */
struct out_buffer {
    char *data;
    size_t len, capacity;
};
int out_append(struct out_buffer *out, const char *bytes, size_t n);

/* Placeholder numbers stay below this, so they have at most 10 digits. */
#define PLACEHOLDER_NUMBER_LIMIT 1000000000ull

/* Longest placeholder: '[' + the longest type name + '_' + up to 10 digits + ']'. */
#define PLACEHOLDER_MAX 20

#endif
