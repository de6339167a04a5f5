/*
 * Restoration: placeholders in an upstream's answer become the values again.
 *
 * A placeholder is '[', a type name, '_', a number (no leading zero, at most
 * 10 digits) and ']'. Only placeholders the redactor handed out are replaced;
 * anything else is copied as is. When the answer arrives in chunks, a chunk
 * may end inside a placeholder ("... write to [EMA"): that tail, which is
 * always shorter than PLACEHOLDER_MAX, is held back and decided with the next
 * chunk, so the output never depends on where the chunks were cut.
 */
#include "privacy/redact.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

int placeholder_parse(const char *text, size_t len, int *type, uint64_t *number)
{
    size_t i = 1;
    while (i < len && is_upper((unsigned char)text[i]))
        i++;
    size_t name_len = i - 1;
    /* Which type the letters name, or whether they could still grow into one. */
    int named = -1;
    bool could_grow = false;
    for (int t = 0; t < PLM_REDACT_N_TYPES; t++) {
        const char *name = plm_redact_type_name(t);
        if (strncmp(name, text + 1, name_len) != 0)
            continue;
        if (name[name_len] == '\0')
            named = t;
        else
            could_grow = true;
    }
    if (i == len)
        return named >= 0 || could_grow ? -1 : 0;
    if (named < 0 || text[i] != '_')
        return 0;
    i++;
    size_t digits_start = i;
    uint64_t value = 0;
    while (i < len && is_digit((unsigned char)text[i]) && i - digits_start < 10) {
        if (i == digits_start && text[i] == '0')
            return 0;
        value = value * 10 + (uint64_t)(text[i] - '0');
        i++;
    }
    if (i == len)
        return -1;
    if (i == digits_start || text[i] != ']')
        return 0;
    *type = named;
    *number = value;
    return (int)(i + 1);
}

/* Restores text[0..len) into out. Unless final, stops before a tail that
 * could still become a placeholder; *consumed says where. */
static int restore_text(const plm_redactor *r, const char *text, size_t len, bool final, struct out_buffer *out,
                        size_t *consumed)
{
    size_t copied = 0, i = 0;
    *consumed = len;
    while (i < len) {
        const char *open = memchr(text + i, '[', len - i);
        if (!open)
            break;
        size_t at = (size_t)(open - text);
        int type;
        uint64_t number;
        int n = placeholder_parse(open, len - at, &type, &number);
        if (n < 0) {
            if (!final)
                *consumed = at;
            break;
        }
        if (n == 0) {
            i = at + 1;
            continue;
        }
        size_t value_len;
        const char *value = redactor_value(r, type, number, &value_len);
        if (value) {
            int rc = out_append(out, text + copied, at - copied);
            if (rc == PLM_OK)
                rc = out_append(out, value, value_len);
            if (rc != PLM_OK)
                return rc;
            copied = at + (size_t)n;
        }
        i = at + (size_t)n;
    }
    return out_append(out, text + copied, *consumed - copied);
}

int plm_restore(const plm_redactor *redactor, const char *text, size_t len, char **out, size_t *out_len)
{
    *out = NULL;
    *out_len = 0;
    if (!redactor || (!text && len))
        return plm_fail(PLM_ERR_ARG, "restore: no redactor or no text");
    struct out_buffer buffer = {0};
    size_t consumed;
    int rc = restore_text(redactor, text ? text : "", len, true, &buffer, &consumed);
    if (rc != PLM_OK) {
        if (buffer.data)
            explicit_bzero(buffer.data, buffer.capacity);
        free(buffer.data);
        return rc;
    }
    *out = buffer.data;
    *out_len = buffer.len;
    return PLM_OK;
}

struct plm_restorer {
    const plm_redactor *redactor;
    char held[PLACEHOLDER_MAX]; /* the start of a possible placeholder from the last chunk */
    size_t n_held;
    struct out_buffer joined; /* held + the new chunk, when something was held */
    struct out_buffer out;    /* holds restored values: wiped on free */
};

int plm_restorer_new(const plm_redactor *redactor, plm_restorer **restorer)
{
    *restorer = NULL;
    if (!redactor)
        return plm_fail(PLM_ERR_ARG, "restore: no redactor");
    plm_restorer *r = calloc(1, sizeof *r);
    if (!r)
        return plm_fail(PLM_ERR_NOMEM, "restore: out of memory");
    r->redactor = redactor;
    *restorer = r;
    return PLM_OK;
}

static int restorer_run(plm_restorer *r, const char *text, size_t len, bool final, const char **out,
                        size_t *out_len)
{
    r->out.len = 0;
    size_t consumed;
    int rc = restore_text(r->redactor, text, len, final, &r->out, &consumed);
    if (rc == PLM_OK) {
        /* The tail is shorter than a placeholder; it may alias held. */
        memmove(r->held, text + consumed, len - consumed);
        r->n_held = len - consumed;
    }
    *out = r->out.data ? r->out.data : "";
    *out_len = rc == PLM_OK ? r->out.len : 0;
    return rc;
}

int plm_restorer_feed(plm_restorer *r, const char *chunk, size_t len, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (!r || (!chunk && len))
        return plm_fail(PLM_ERR_ARG, "restore: no restorer or no chunk");
    if (!chunk)
        chunk = "";
    if (r->n_held == 0)
        return restorer_run(r, chunk, len, false, out, out_len);
    r->joined.len = 0;
    int rc = out_append(&r->joined, r->held, r->n_held);
    if (rc == PLM_OK)
        rc = out_append(&r->joined, chunk, len);
    if (rc != PLM_OK)
        return rc;
    return restorer_run(r, r->joined.data, r->joined.len, false, out, out_len);
}

int plm_restorer_finish(plm_restorer *r, const char **out, size_t *out_len)
{
    *out = "";
    *out_len = 0;
    if (!r)
        return plm_fail(PLM_ERR_ARG, "restore: no restorer");
    return restorer_run(r, r->held, r->n_held, true, out, out_len);
}

void plm_restorer_free(plm_restorer *r)
{
    if (!r)
        return;
    if (r->out.data)
        explicit_bzero(r->out.data, r->out.capacity);
    free(r->out.data);
    free(r->joined.data);
    free(r);
}
