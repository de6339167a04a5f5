/* Generated text and what of it may be handed on yet (see text_stream.h). */
#include "engine/text_stream.h"

#include "core/error.h"
#include "model/model.h"

#include <stdlib.h>
#include <string.h>

void text_stream_init(struct text_stream *t, bool strip_leading_space)
{
    memset(t, 0, sizeof *t);
    t->strip_leading_space = strip_leading_space;
}

/* SentencePiece prefixes the text with a space ("▁Once"); its decoder drops
 * that space again at the start of the document. Generating right after BOS
 * (an empty prompt) is such a start. */
bool text_stream_starts_document(const struct plm_model *model, const int32_t *prompt, int n_prompt)
{
    if (strcmp(model->tokenizer_model, "llama") != 0)
        return false;
    for (int i = 0; i < n_prompt; i++)
        if (vocab_token_type(model->vocab, prompt[i]) != PLM_TOKEN_CONTROL)
            return false;
    return true;
}

int text_stream_append(struct text_stream *t, const char *bytes, size_t n)
{
    if (n == 0)
        return PLM_OK; /* an empty piece; also keeps memcpy away from a NULL buffer */
    if (t->len + n > t->cap) {
        size_t cap = t->cap ? t->cap : 256;
        while (cap < t->len + n)
            cap *= 2;
        char *grown = realloc(t->bytes, cap);
        if (!grown)
            return plm_fail(PLM_ERR_NOMEM, "out of memory");
        t->bytes = grown;
        t->cap = cap;
    }
    memcpy(t->bytes + t->len, bytes, n);
    t->len += n;
    return PLM_OK;
}

int text_stream_append_token(struct text_stream *t, const struct plm_model *model, int32_t token)
{
    char small[256];
    char *piece = small;
    int n = plm_token_to_piece(model, token, small, sizeof small, false);
    if (n > (int)sizeof small) { /* a rare very long token */
        if (!(piece = malloc((size_t)n)))
            return plm_fail(PLM_ERR_NOMEM, "out of memory");
        n = plm_token_to_piece(model, token, piece, (size_t)n, false);
    }
    const char *text = piece;
    if (n > 0 && t->strip_leading_space && piece[0] == ' ') {
        text++;
        n--;
    }
    if (n > 0)
        t->strip_leading_space = false;
    int rc = n < 0 ? n : text_stream_append(t, text, (size_t)n);
    if (piece != small)
        free(piece);
    return rc;
}

/* Length of an unfinished UTF-8 sequence at the end of the text (0..3). */
static size_t partial_utf8_len(const struct text_stream *t)
{
    for (size_t back = 1; back <= 3 && back <= t->len; back++) {
        unsigned char c = (unsigned char)t->bytes[t->len - back];
        if ((c & 0xC0) == 0x80)
            continue; /* continuation byte: look further back */
        size_t need = c >= 0xF0 ? 4 : c >= 0xE0 ? 3 : c >= 0xC0 ? 2 : 1;
        return need > back ? back : 0;
    }
    return 0;
}

size_t text_stream_ready(const struct text_stream *t, const char *const *stops, int n_stop, bool *stopped)
{
    *stopped = false;
    /* Sent text never holds the start of a stop string: it would have been
     * held back. So searching the unsent part is enough. */
    const char *unsent = t->bytes + t->sent;
    size_t n_unsent = t->len - t->sent;
    size_t first_stop = t->len;
    size_t hold = 0;
    for (int i = 0; i < n_stop; i++) {
        size_t n = strlen(stops[i]);
        if (n == 0)
            continue;
        const char *hit = n <= n_unsent ? memmem(unsent, n_unsent, stops[i], n) : NULL;
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
    size_t partial = partial_utf8_len(t);
    if (partial > hold)
        hold = partial;
    return t->len - hold > t->sent ? t->len - hold : t->sent;
}

void text_stream_free(struct text_stream *t)
{
    free(t->bytes);
    memset(t, 0, sizeof *t);
}
