#include "tokenizer/unicode.h"

enum unicode_class unicode_class_of(uint32_t cp)
{
    int lo = 0, hi = unicode_ranges_count - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        if (cp < unicode_ranges[mid].first)
            hi = mid - 1;
        else if (cp > unicode_ranges[mid].last)
            lo = mid + 1;
        else
            return (enum unicode_class)unicode_ranges[mid].cls;
    }
    return UCLASS_OTHER;
}

static int is_continuation(unsigned char byte) { return (byte & 0xC0) == 0x80; }

size_t utf8_decode(const unsigned char *text, size_t len, uint32_t *cp)
{
    unsigned char lead = text[0];
    size_t n;
    uint32_t value, min_value;
    if (lead < 0x80) {
        *cp = lead;
        return 1;
    } else if ((lead & 0xE0) == 0xC0) {
        n = 2, value = lead & 0x1F, min_value = 0x80;
    } else if ((lead & 0xF0) == 0xE0) {
        n = 3, value = lead & 0x0F, min_value = 0x800;
    } else if ((lead & 0xF8) == 0xF0) {
        n = 4, value = lead & 0x07, min_value = 0x10000;
    } else {
        *cp = UNICODE_REPLACEMENT; /* stray continuation byte or 0xF8..0xFF */
        return 1;
    }
    if (n > len) {
        *cp = UNICODE_REPLACEMENT;
        return 1;
    }
    for (size_t i = 1; i < n; i++) {
        if (!is_continuation(text[i])) {
            *cp = UNICODE_REPLACEMENT;
            return 1;
        }
        value = (value << 6) | (text[i] & 0x3F);
    }
    /* Overlong forms, UTF-16 surrogates and values past U+10FFFF are not
     * characters: reject them so that only one decoding of any byte exists. */
    if (value < min_value || (value >= 0xD800 && value <= 0xDFFF) || value > 0x10FFFF) {
        *cp = UNICODE_REPLACEMENT;
        return 1;
    }
    *cp = value;
    return n;
}

size_t utf8_encode(uint32_t cp, char out[4])
{
    if (cp < 0x80) {
        out[0] = (char)cp;
        return 1;
    }
    if (cp < 0x800) {
        out[0] = (char)(0xC0 | (cp >> 6));
        out[1] = (char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        out[0] = (char)(0xE0 | (cp >> 12));
        out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
        out[2] = (char)(0x80 | (cp & 0x3F));
        return 3;
    }
    out[0] = (char)(0xF0 | (cp >> 18));
    out[1] = (char)(0x80 | ((cp >> 12) & 0x3F));
    out[2] = (char)(0x80 | ((cp >> 6) & 0x3F));
    out[3] = (char)(0x80 | (cp & 0x3F));
    return 4;
}
