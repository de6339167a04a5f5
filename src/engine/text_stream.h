/*
 * The text of one generation as it grows token by token, and how much of it
 * may be handed on yet. Used by plm_generate and by the server's slots.
 *
 * A stop string may arrive split over several tokens, so a tail that could
 * still become one is held back until later tokens decide; an incomplete UTF-8
 * character at the end is held back too, so that whoever receives the text
 * (a callback, a stream chunk) always gets whole characters. The whole text is
 * kept, since a complete (not streamed) response needs it.
 */
#ifndef PLM_ENGINE_TEXT_STREAM_H
#define PLM_ENGINE_TEXT_STREAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct plm_model;

struct text_stream {
    char *bytes;              /* everything generated so far */
    size_t len, cap;
    size_t sent;              /* bytes already handed on */
    bool strip_leading_space; /* the next text starts a SentencePiece document */
};

/* Starts a stream; strip_leading_space as text_stream_starts_document says. */
void text_stream_init(struct text_stream *t, bool strip_leading_space);

/* Whether text generated right after this prompt starts a SentencePiece
 * document, whose decoder drops the space the tokenizer prefixed: the prompt
 * is control tokens only (BOS, or nothing) and the tokenizer is "llama". */
bool text_stream_starts_document(const struct plm_model *model, const int32_t *prompt, int n_prompt);

/* Appends the token's text (without the document's leading space).
 * PLM_OK, or PLM_ERR_NOMEM with the message set. */
int text_stream_append_token(struct text_stream *t, const struct plm_model *model, int32_t token);

/* Appends bytes as they are. PLM_OK, or PLM_ERR_NOMEM with the message set. */
int text_stream_append(struct text_stream *t, const char *bytes, size_t n);

/* How many bytes from the start may be handed on now (>= t->sent). When a
 * stop string has appeared, *stopped is set and the result is where the first
 * one starts: the text ends there. */
size_t text_stream_ready(const struct text_stream *t, const char *const *stops, int n_stop, bool *stopped);

void text_stream_free(struct text_stream *t);

#endif
