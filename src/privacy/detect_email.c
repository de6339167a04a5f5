/*
 * Email addresses: the practical subset of RFC 5322 that people write.
 *
 *   local@domain
 *   local:  1-64 bytes of ASCII letters, digits and . _ % + - ', not
 *           starting with '.' or ', not ending with '.', no "..". (Quoted
 *           local parts and the rarer
 *           symbols are left out: in running text they mostly belong to
 *           something else, and non-ASCII before the '@' is usually the
 *           surrounding CJK text, not the address.)
 *   domain: two or more labels separated by '.', each 1-63 bytes of ASCII
 *           letters, digits, '-' (not at either end) or UTF-8 (IDN); at most
 *           253 bytes; the last label (TLD) is 2+ ASCII letters, or all
 *           non-ASCII, or punycode "xn--...". A TLD that is an image file
 *           extension (logo@2x.png) is not a domain.
 *
 * Each '@' is examined once; the scans left and right stop at the next '@'
 * at the latest, so every byte is read at most twice.
 */
#include "privacy/redact.h"

#include <string.h>

static bool is_local_byte(unsigned char c)
{
    return is_alnum(c) || c == '.' || c == '_' || c == '%' || c == '+' || c == '-' || c == '\'';
}

static bool is_label_byte(unsigned char c) { return is_alnum(c) || c == '-' || c >= 0x80; }

/* The start of the local part ending before the '@' at at, or at if none. */
static size_t local_start(const char *text, size_t at)
{
    size_t start = at;
    while (start > 0 && at - start <= 64 && is_local_byte((unsigned char)text[start - 1]))
        start--;
    if (at - start > 64)
        return at;
    while (start < at && (text[start] == '.' || text[start] == '\'')) /* "'bob@..." : punctuation */
        start++;
    if (start == at || text[at - 1] == '.')
        return at;
    for (size_t i = start; i + 1 < at; i++)
        if (text[i] == '.' && text[i + 1] == '.')
            return at;
    return start;
}

static bool is_file_extension(const char *label, size_t len)
{
    static const char *const extensions[] = {"png", "jpg", "jpeg", "gif", "svg", "webp", NULL};
    for (const char *const *e = extensions; *e; e++)
        if (strlen(*e) == len && strncmp(label, *e, len) == 0)
            return true;
    return false;
}

/* The end of a valid domain starting at from, or from if there is none. */
static size_t domain_end(const char *text, size_t len, size_t from)
{
    size_t i = from, labels = 0, last_label = from, end = from;
    while (i < len && i - from <= 253) {
        size_t label = i;
        while (i < len && is_label_byte((unsigned char)text[i]))
            i++;
        size_t label_len = i - label;
        if (label_len == 0 || label_len > 63 || text[label] == '-' || text[i - 1] == '-')
            break;
        labels++;
        last_label = label;
        end = i;
        if (i + 1 < len && text[i] == '.' && is_label_byte((unsigned char)text[i + 1]))
            i++;
        else
            break;
    }
    if (labels < 2 || end - from > 253)
        return from;
    /* The TLD: ASCII letters (cut before trailing non-ASCII punctuation such
     * as "。"), all non-ASCII, or punycode. */
    const unsigned char *tld = (const unsigned char *)text + last_label;
    size_t tld_len = end - last_label;
    if (tld_len > 4 && strncmp((const char *)tld, "xn--", 4) == 0)
        return end;
    if (tld[0] >= 0x80) {
        for (size_t k = 0; k < tld_len; k++)
            if (tld[k] < 0x80)
                return from;
        return end;
    }
    size_t letters = 0;
    while (letters < tld_len && is_alpha(tld[letters]))
        letters++;
    if (letters < 2 || (letters < tld_len && tld[letters] < 0x80))
        return from;
    if (is_file_extension((const char *)tld, letters))
        return from;
    return last_label + letters;
}

int detect_emails(const char *text, size_t len, struct span_list *out)
{
    for (const char *p = memchr(text, '@', len); p; p = memchr(p + 1, '@', len - (size_t)(p + 1 - text))) {
        size_t at = (size_t)(p - text);
        size_t start = local_start(text, at);
        size_t end = at + 1 < len ? domain_end(text, len, at + 1) : at + 1;
        /* "https://user@host" is the user part of a URL, not an address. */
        bool url_user = start >= 3 && memcmp(text + start - 3, "://", 3) == 0;
        if (start < at && end > at + 1 && !url_user) {
            int rc = span_push(out, PLM_REDACT_EMAIL, start, end);
            if (rc != PLM_OK)
                return rc;
        }
        if (at + 1 >= len)
            break;
    }
    return PLM_OK;
}
