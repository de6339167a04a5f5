/*
 * The redaction detectors and placeholders (src/privacy/) on arbitrary text.
 *
 * Input: a flags byte (bit 0: also match two listed terms), two bytes of the
 * detector mask (little-endian; 0 = every detector), a byte giving the chunk
 * size of the streamed restore (1..256), then the text. Checked, as
 * pocketlm.h promises:
 *   - the spans are inside the text, in order, do not overlap, of a known type;
 *   - redacting the same text again in the same conversation gives the same output;
 *   - restoring the output gives the text back, when the text has no '[' of its
 *     own and no two spellings of one value ("Jane@x.org", "jane@x.org" share a
 *     placeholder and are restored as the first);
 *   - the streamed restore, fed in chunks, gives exactly what plm_restore gives.
 */
#include "fuzz_common.h"

#include "pocketlm.h"

#include <stdlib.h>
#include <string.h>

static const char *const listed_terms[] = {"Alice Martin", "12 Rue de la Paix"};

/* Checks the spans; true when no two spans of one type differ in their bytes,
 * so that restoring the redacted text must give the text back exactly. */
static bool check_spans(const plm_redactor *redactor, const char *text, size_t len)
{
    struct plm_redact_span *spans;
    size_t n_spans;
    if (plm_redact_find(redactor, text, len, &spans, &n_spans) != PLM_OK)
        return false;
    bool one_spelling = true;
    size_t previous_end = 0;
    for (size_t i = 0; i < n_spans; i++) {
        if (spans[i].start < previous_end || spans[i].start >= spans[i].end || spans[i].end > len)
            fuzz_fail("redaction spans out of order, empty, overlapping or outside the text");
        if (!plm_redact_type_name(spans[i].type))
            fuzz_fail("a redaction span of an unknown type");
        previous_end = spans[i].end;
        for (size_t j = 0; j < i; j++)
            if (spans[j].type == spans[i].type &&
                (spans[j].end - spans[j].start != spans[i].end - spans[i].start ||
                 memcmp(text + spans[j].start, text + spans[i].start, spans[i].end - spans[i].start)))
                one_spelling = false;
    }
    free(spans);
    return one_spelling;
}

/* Appends piece to *all (malloc'd, *all_len bytes). */
static int append(char **all, size_t *all_len, const char *piece, size_t piece_len)
{
    if (piece_len == 0 && *all)
        return PLM_OK;
    char *grown = realloc(*all, *all_len + piece_len + 1);
    if (!grown)
        return PLM_ERR_NOMEM;
    if (piece_len > 0)
        memcpy(grown + *all_len, piece, piece_len);
    *all = grown;
    *all_len += piece_len;
    return PLM_OK;
}

/* Restores text fed in chunks of chunk bytes, then finished; *out is the
 * concatenation of every output (malloc'd). */
static int restore_streamed(const plm_redactor *redactor, const char *text, size_t len,
                            size_t chunk, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    plm_restorer *restorer;
    int rc = plm_restorer_new(redactor, &restorer);
    if (rc)
        return rc;
    const char *piece;
    size_t piece_len;
    for (size_t pos = 0; rc == PLM_OK && pos < len; pos += chunk) {
        size_t n = len - pos < chunk ? len - pos : chunk;
        rc = plm_restorer_feed(restorer, text + pos, n, &piece, &piece_len);
        if (rc == PLM_OK)
            rc = append(out, out_len, piece, piece_len);
    }
    if (rc == PLM_OK)
        rc = plm_restorer_finish(restorer, &piece, &piece_len);
    if (rc == PLM_OK)
        rc = append(out, out_len, piece, piece_len);
    plm_restorer_free(restorer);
    return rc;
}

static bool same_bytes(const char *a, size_t a_len, const char *b, size_t b_len)
{
    return a_len == b_len && (a_len == 0 || memcmp(a, b, a_len) == 0);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 4)
        return 0;
    struct plm_redact_config config = {
        .types = (uint32_t)(data[1] | data[2] << 8) & ((1u << PLM_REDACT_N_TYPES) - 1),
        .terms = data[0] & 1 ? listed_terms : NULL,
        .n_terms = data[0] & 1 ? 2 : 0,
    };
    size_t chunk = (size_t)data[3] + 1;
    const char *text = (const char *)data + 4;
    size_t len = size - 4;

    plm_redactor *redactor;
    if (plm_redactor_new(&config, &redactor) != PLM_OK)
        return 0;
    bool restorable = check_spans(redactor, text, len) && !memchr(text, '[', len);

    char *redacted = NULL, *again = NULL, *restored = NULL, *streamed = NULL;
    size_t redacted_len, again_len, restored_len, streamed_len;
    if (plm_redact(redactor, text, len, &redacted, &redacted_len, NULL) == PLM_OK) {
        if (redacted[redacted_len] != '\0')
            fuzz_fail("redacted text is not NUL-terminated");
        if (plm_redact(redactor, text, len, &again, &again_len, NULL) == PLM_OK &&
            !same_bytes(redacted, redacted_len, again, again_len))
            fuzz_fail("the same text redacts differently in the same conversation");
        if (plm_restore(redactor, redacted, redacted_len, &restored, &restored_len) == PLM_OK) {
            if (restorable && !same_bytes(text, len, restored, restored_len))
                fuzz_fail("restoring the redacted text does not give the text back");
            if (restore_streamed(redactor, redacted, redacted_len, chunk, &streamed,
                                 &streamed_len) == PLM_OK &&
                !same_bytes(restored, restored_len, streamed, streamed_len))
                fuzz_fail("the streamed restore differs from plm_restore");
        }
    }
    free(redacted);
    free(again);
    free(restored);
    free(streamed);
    plm_redactor_free(redactor);
    return 0;
}
