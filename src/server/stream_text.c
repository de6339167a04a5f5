#include "server/stream_text.h"

#include <stdlib.h>
#include <string.h>

bool stream_text_append(struct stream_text *t, const char *bytes, size_t n)
{
    if (n == 0)
        return true;
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n)
            cap *= 2;
        char *grown = realloc(t->bytes, cap);
        if (!grown)
            return false;
        t->bytes = grown;
        t->cap = cap;
    }
    memcpy(t->bytes + t->len, bytes, n);
    t->len += n;
    return true;
}

/* Bytes at the end that form the start of a UTF-8 character still missing its
 * continuation bytes (0 when the text ends with a whole character). */
static size_t unfinished_char_len(const unsigned char *text, size_t len)
{
    size_t back = 1;
    while (back <= 3 && back <= len && (text[len - back] & 0xC0) == 0x80)
        back++; /* continuation bytes: the lead byte is further back */
    if (back > len)
        return 0;
    unsigned lead = text[len - back];
    size_t want = lead >= 0xF0 ? 4 : lead >= 0xE0 ? 3 : lead >= 0xC0 ? 2 : 1;
    return want > back ? back : 0;
}

size_t stream_text_ready(const struct stream_text *t, char *const *stops, int n_stop, bool *stopped)
{
    *stopped = false;
    /* Unsent text never holds a stop string's start before t->sent: it would
     * have been held back. So searching the unsent part is enough. */
    const char *unsent = t->bytes + t->sent;
    size_t n_unsent = t->len - t->sent;
    size_t first_stop = t->len;
    size_t hold = 0;
    for (int i = 0; i < n_stop; i++) {
        size_t n = strlen(stops[i]);
        if (n == 0)
            continue;
        const char *hit = memmem(unsent, n_unsent, stops[i], n);
        if (hit && (size_t)(hit - t->bytes) < first_stop) {
            first_stop = (size_t)(hit - t->bytes);
            *stopped = true;
        }
        /* The longest proper prefix of this stop string that ends the text. */
        for (size_t k = n - 1 < n_unsent ? n - 1 : n_unsent; k > hold; k--)
            if (memcmp(t->bytes + t->len - k, stops[i], k) == 0) {
                hold = k;
                break;
            }
    }
    if (*stopped)
        return first_stop;
    size_t unfinished = unfinished_char_len((const unsigned char *)t->bytes, t->len);
    if (unfinished > hold)
        hold = unfinished;
    return t->len - hold > t->sent ? t->len - hold : t->sent;
}

void stream_text_free(struct stream_text *t)
{
    free(t->bytes);
    memset(t, 0, sizeof *t);
}
