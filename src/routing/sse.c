/* Server-sent events, parsed incrementally (see sse.h for the format). */
#include "routing/sse.h"

#include "core/error.h"

#include <stdlib.h>
#include <string.h>

void sse_init(struct sse_parser *parser, sse_event_fn on_event, void *user)
{
    *parser = (struct sse_parser){.on_event = on_event, .user = user, .first_line = true};
}

void sse_free(struct sse_parser *parser)
{
    free(parser->line);
    free(parser->data);
    *parser = (struct sse_parser){0};
}

/* Makes room for need bytes plus a NUL, within the event size limit. */
static int reserve(struct sse_parser *parser, char **buf, size_t *cap, size_t need)
{
    if (parser->line_len + parser->data_len + need > SSE_MAX_EVENT_BYTES)
        return plm_fail(PLM_ERR_LIMIT, "event stream: an event is longer than %u bytes", SSE_MAX_EVENT_BYTES);
    if (need + 1 <= *cap)
        return PLM_OK;
    size_t new_cap = *cap ? *cap : 256;
    while (new_cap < need + 1)
        new_cap *= 2;
    char *grown = realloc(*buf, new_cap);
    if (!grown)
        return plm_fail(PLM_ERR_NOMEM, "event stream: out of memory");
    *buf = grown;
    *cap = new_cap;
    return PLM_OK;
}

static int dispatch(struct sse_parser *parser)
{
    int rc = PLM_OK;
    if (parser->has_data) {
        size_t len = parser->data_len - 1; /* without the last line's '\n' */
        parser->data[len] = '\0';
        rc = parser->on_event(parser->user, parser->event[0] ? parser->event : "message", parser->data, len);
    }
    parser->event[0] = '\0';
    parser->data_len = 0;
    parser->has_data = false;
    return rc;
}

/* Acts on the complete line in parser->line. */
static int process_line(struct sse_parser *parser)
{
    const char *line = parser->line ? parser->line : "";
    size_t len = parser->line_len;
    parser->line_len = 0;
    if (parser->first_line && len >= 3 && memcmp(line, "\xEF\xBB\xBF", 3) == 0) {
        line += 3;
        len -= 3;
    }
    parser->first_line = false;
    if (len == 0)
        return dispatch(parser);
    if (line[0] == ':')
        return PLM_OK;
    const char *colon = memchr(line, ':', len);
    size_t name_len = colon ? (size_t)(colon - line) : len;
    const char *value = colon ? colon + 1 : line + len;
    if (value < line + len && *value == ' ')
        value++;
    size_t value_len = (size_t)(line + len - value);
    if (name_len == 4 && memcmp(line, "data", 4) == 0) {
        int rc = reserve(parser, &parser->data, &parser->data_cap, parser->data_len + value_len + 1);
        if (rc)
            return rc;
        memcpy(parser->data + parser->data_len, value, value_len);
        parser->data_len += value_len;
        parser->data[parser->data_len++] = '\n';
        parser->has_data = true;
    } else if (name_len == 5 && memcmp(line, "event", 5) == 0) {
        size_t n = value_len < sizeof parser->event - 1 ? value_len : sizeof parser->event - 1;
        memcpy(parser->event, value, n);
        parser->event[n] = '\0';
    }
    /* "id", "retry" and unknown fields do not matter to a one-shot request. */
    return PLM_OK;
}

int sse_feed(struct sse_parser *parser, const char *bytes, size_t n)
{
    size_t i = 0;
    while (parser->status == PLM_OK && i < n) {
        if (parser->after_cr && bytes[i] == '\n') { /* the LF of a CRLF split after its CR */
            parser->after_cr = false;
            i++;
            continue;
        }
        size_t end = i;
        while (end < n && bytes[end] != '\r' && bytes[end] != '\n')
            end++;
        size_t span = end - i;
        int rc = reserve(parser, &parser->line, &parser->line_cap, parser->line_len + span);
        if (rc == PLM_OK) {
            memcpy(parser->line + parser->line_len, bytes + i, span);
            parser->line_len += span;
        }
        parser->after_cr = false;
        if (rc == PLM_OK && end < n) {
            parser->after_cr = bytes[end] == '\r';
            rc = process_line(parser);
            end++;
            if (parser->after_cr && end < n && bytes[end] == '\n') {
                parser->after_cr = false;
                end++;
            }
        }
        parser->status = rc;
        i = end;
    }
    return parser->status;
}
