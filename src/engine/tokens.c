/* The public tokenizer calls: thin wrappers over the model's vocabulary. */
#include "model/model.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

int32_t plm_token_bos(const plm_model *m) { return vocab_bos(m->vocab); }
int32_t plm_token_eos(const plm_model *m) { return vocab_eos(m->vocab); }
bool plm_token_is_eog(const plm_model *m, int32_t token) { return vocab_is_eog(m->vocab, token); }
bool plm_add_bos(const plm_model *m) { return vocab_add_bos(m->vocab); }

int plm_tokenize(const plm_model *m, const char *text, size_t len, bool add_special, bool parse_special,
                 int32_t *tokens, int max_tokens)
{
    int32_t *encoded;
    size_t n;
    int rc = vocab_encode(m->vocab, text, len, add_special, parse_special, &encoded, &n);
    if (rc)
        return rc;
    if (n > (size_t)INT32_MAX) {
        free(encoded);
        return plm_fail(PLM_ERR_LIMIT, "text of %zu bytes has too many tokens", len);
    }
    if (max_tokens > 0)
        memcpy(tokens, encoded, (n < (size_t)max_tokens ? n : (size_t)max_tokens) * sizeof *tokens);
    free(encoded);
    return (int)n;
}

int plm_token_to_piece(const plm_model *m, int32_t token, char *buf, size_t size, bool render_special)
{
    return vocab_token_to_piece(m->vocab, token, buf, size, render_special);
}
