/*
 * The text of one generation as it grows token by token, and how much of it
 * may be sent to the client yet.
 *
 * A stop string may arrive split over several tokens, so a tail that could
 * still become one is held back until later tokens decide; an incomplete UTF-8
 * character at the end is held back too, so that no stream chunk ever carries
 * half a character. The same rules as plm_generate's (src/engine/generate.c),
 * over a buffer that keeps the whole text, since a complete (not streamed)
 * response needs it.
 */
#ifndef PLM_SERVER_STREAM_TEXT_H
#define PLM_SERVER_STREAM_TEXT_H

#include <stdbool.h>
#include <stddef.h>

struct stream_text {
    char *bytes; /* everything generated so far */
    size_t len, cap;
    size_t sent; /* bytes already given to the client */
};

/* false when out of memory. */
bool stream_text_append(struct stream_text *t, const char *bytes, size_t n);

/* How many bytes from the start may be sent now (>= t->sent). When a stop
 * string has appeared, *stopped is set and the result is where the first one
 * starts: the text ends there. */
size_t stream_text_ready(const struct stream_text *t, char *const *stops, int n_stop, bool *stopped);

void stream_text_free(struct stream_text *t);

#endif
